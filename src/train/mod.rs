//! The training loop: teacher-forced cross-entropy with Adam, gradient clipping, a learning-rate
//! schedule (`config::Schedule`), dev loss + greedy dev BLEU-1..4 / CIDEr-D every epoch, the best
//! epoch and early stopping on the selection score (`--select`; dev mAP for hashtag-only runs),
//! and a run directory written atomically after every epoch (`commit.rs`, shared with
//! restoration training).
//!
//! [`run`] reads top to bottom in phases, as nanoGPT's loop does: open or resume, then per epoch
//! train, validate, select and schedule, commit and log.
//!
//! Exact resume: all randomness of epoch `e` (shuffle order, dropout) is derived from
//! `(seed, e)`, and the optimizer moments and counters are saved by captag, so training N
//! epochs equals training k, stopping and resuming to N.
mod bar;
mod batches;
pub mod commit;
pub use bar::progress;
use bar::EpochBar;
pub mod distill;
pub mod init;
pub mod lora;
pub mod optim;
pub mod prepare;
mod resume;
pub mod scaler;
pub mod scst;
mod step;
pub mod tagdata;
pub mod vl;

use batches::epoch_batches;
pub use batches::{captions_in_turn, length_buckets};

use std::path::PathBuf;
use std::time::Instant;

use tch::{Device, Tensor};

use crate::config::{ModelConfig, Selection, TrainConfig};
use crate::data::LoadOptions;
use crate::eval::bleu::{corpus_bleu, BleuMode};
use crate::eval::tag_metrics::TagScores;
use crate::model::captioner::Captioner;
use crate::model::decoding::Decoding;
use crate::run::{self, TrainState};
use crate::text::vocab::PAD;
use crate::{Error, Result};
pub use prepare::{Images, Prepared};
use scaler::LossScaler;

/// Everything `captag train` was asked, validated.
#[derive(Clone, Debug)]
pub struct TrainJob {
    pub data: PathBuf,
    pub load: LoadOptions,
    pub out: PathBuf,
    pub resume: bool,
    /// Architecture without the vocabulary size (known once the vocabulary is built).
    pub model: ModelConfig,
    pub train: TrainConfig,
    pub encoder_weights: Option<PathBuf>,
    /// ClipCap's pretrained GPT-2 folder (`--lm-weights`): the LM's first weights and the
    /// tokenizer copied into the run.
    pub lm_weights: Option<PathBuf>,
    /// Feature cache to reuse or create (frozen encoders). Default: `<out>/features.safetensors`.
    pub features: Option<PathBuf>,
    /// `--init-from`: a new run starts from this run's best weights ([`init`]).
    pub init_from: Option<PathBuf>,
    pub device: Device,
    pub quiet: bool,
    pub verbose: bool,
}

/// What a finished run reports.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TrainSummary {
    pub out: PathBuf,
    pub epochs: usize,
    pub best_epoch: usize,
    /// Dev BLEU-1..4 of the best epoch, when that epoch ran in this process (None for
    /// hashtag-only runs, and for a resumed run whose best epoch is an earlier one).
    pub best_bleu: Option<[f64; 4]>,
    /// What picked the best epoch ([`SelectionScore::name`]: `BLEU-4`, `CIDEr-D`, `hashtag mAP`).
    pub selected_by: &'static str,
    /// The best epoch's value of that score.
    pub best_score: f64,
    pub seconds: f64,
    pub stopped_early: bool,
}

fn epoch_seed(seed: u64, epoch: usize) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(epoch as u64 + 1)
}

/// Pad `[<start> w.. <end>]` sequences into `(B, L)`.
pub fn pad_batch(seqs: &[&[i64]]) -> Tensor {
    let len = seqs.iter().map(|s| s.len()).max().unwrap_or(2);
    let mut flat = vec![PAD; seqs.len() * len];
    for (i, s) in seqs.iter().enumerate() {
        flat[i * len..i * len + s.len()].copy_from_slice(s);
    }
    Tensor::from_slice(&flat).view([seqs.len() as i64, len as i64])
}

/// `captag train`, top to bottom: open or resume the run, then per epoch train, validate,
/// select and schedule, commit and log.
pub fn run(job: &TrainJob) -> Result<TrainSummary> {
    check_job(job)?;
    let started = Instant::now();
    // Held until training returns: one process per run directory.
    let _lock = run::lock(&job.out)?;
    // A run killed at any instant is brought back to its last committed epoch first.
    say_recovered(job, &run::recover(&job.out)?);
    let (prep, teacher) = prepare_with_teacher(job)?;
    let tc = &prep.run.train;
    let selection = SelectionScore::of(&prep.run);
    let mut t = resume::open_or_resume(job, &prep)?;
    // SCST: the CIDEr-D reward over the training references, built once.
    let mut reward = tc.scst.as_ref().map(|_| scst::Reward::new(&prep));
    let mut best_bleu = None;
    while t.state.epoch < tc.epochs && !t.state.stopped_early {
        let trained = match (&tc.scst, reward.as_mut()) {
            (Some(cfg), Some(r)) => scst::train_epoch(job, &prep, cfg, r, &mut t)?,
            _ => train_epoch(job, &prep, teacher.as_ref(), &mut t)?,
        };
        let dev = validate(&prep, &t.model)?;
        let improved = select_and_schedule(&mut t, tc, selection.score(&dev), dev.loss);
        if improved {
            best_bleu = dev.captions.as_ref().map(|d| d.bleu);
        }
        let log = epoch_log(&trained, &dev);
        commit::commit_and_log(
            &job.out,
            &t.state,
            &t.model.vs,
            &t.adam,
            improved,
            &log,
            job.quiet,
        )?;
    }
    Ok(summary(
        &job.out,
        job.quiet,
        &t.state,
        &selection,
        tc.early_stop,
        best_bleu,
        started,
    ))
}

/// The summary of a finished `train` (said once when it stopped early), for captag's own loop
/// and the BLIP/GIT one.
fn summary(
    out: &std::path::Path,
    quiet: bool,
    state: &TrainState,
    selection: &SelectionScore,
    early_stop: usize,
    best_bleu: Option<[f64; 4]>,
    started: Instant,
) -> TrainSummary {
    if state.stopped_early && !quiet {
        crate::fsio::errln!(
            "stopped early: no better dev {} for {} epochs",
            selection.name(),
            early_stop
        );
    }
    TrainSummary {
        out: out.to_path_buf(),
        epochs: state.epoch,
        best_epoch: state.best_epoch,
        best_bleu,
        selected_by: selection.name(),
        best_score: state.best_score,
        seconds: started.elapsed().as_secs_f64(),
        stopped_early: state.stopped_early,
    }
}

/// Settings that only make sense together, checked before the run directory is touched.
fn check_job(job: &TrainJob) -> Result<()> {
    job.train.validate()?;
    job.train.precision.check(job.device)?;
    // Before the run directory is created or locked: a size the machine cannot hold is one
    // error line, and no dead-end run folder is left behind (config::budget).
    job.model.check_memory(job.train.batch_size, true)?;
    if let Some(max_len) = job.model.decoder.max_len() {
        if job.train.max_words as i64 + 2 > max_len {
            return Err(Error::invalid(format!(
                "--max-words {}: the {} decoder has positions for {} words (max_len {max_len})",
                job.train.max_words,
                job.model.decoder.name(),
                max_len - 2,
            )));
        }
    }
    Ok(())
}

/// Tell the user what [`run::recover`] had to do.
fn say_recovered(job: &TrainJob, rec: &run::Recovered) {
    say_recovered_in(&job.out, job.quiet, rec)
}

fn say_recovered_in(out: &std::path::Path, quiet: bool, rec: &run::Recovered) {
    if quiet {
        return;
    }
    for (done, what) in [
        (
            rec.rolled_back,
            "removed an epoch that was being saved when training stopped",
        ),
        (rec.rolled_forward, "finished saving the last epoch"),
        (
            rec.metrics_repaired,
            "repaired metrics.jsonl (one line per saved epoch)",
        ),
    ] {
        if done {
            crate::fsio::errln!("{}: {what}", out.display());
        }
    }
}

/// The data and run directory ([`prepare::prepare`]), and the distillation teacher when the run
/// has one (sequence level: its captions join the training captions here).
fn prepare_with_teacher(job: &TrainJob) -> Result<(Prepared, Option<distill::Teacher>)> {
    let mut prep = prepare::prepare(job)?;
    let Some(d) = prep.run.train.distill.clone() else {
        return Ok((prep, None));
    };
    let t = distill::Teacher::open(&d, &prep.run, &prep, job.device)?;
    if !job.quiet {
        crate::fsio::errln!("{}", distill::describe(&d));
    }
    if d.method.sequence_level() {
        let max_words = prep.run.train.max_words;
        let n = distill::add_teacher_captions(&t, &mut prep, &job.out, max_words, job.quiet)?;
        if !job.quiet {
            let with = if d.teacher_only {
                " only"
            } else {
                " and the references"
            };
            crate::fsio::errln!(
                "training on {n} teacher captions{with} ({})",
                distill::TEACHER_CAPTIONS
            );
        }
    }
    Ok((prep, Some(t)))
}

/// What the loop carries from epoch to epoch: the model, its optimizer and `train_state.json`.
struct Training {
    model: Captioner,
    adam: optim::Adam,
    state: TrainState,
    /// fp16 runs: the dynamic loss scale.
    scaler: Option<LossScaler>,
}

/// The training half of one epoch.
struct Trained {
    /// Sum of the per-example losses, and the examples seen (captions; images for SCST).
    loss_sum: f64,
    seen: usize,
    seconds: f64,
    unit: commit::Unit,
    /// The objective's own epoch means (SCST: `reward`), logged after the loss.
    extra: Vec<(&'static str, f64)>,
}

impl Trained {
    fn new(unit: commit::Unit) -> Self {
        Trained {
            loss_sum: 0.0,
            seen: 0,
            seconds: 0.0,
            unit,
            extra: vec![],
        }
    }

    fn loss(&self) -> f64 {
        self.loss_sum / self.seen.max(1) as f64
    }
}

/// Train epoch `t.state.epoch` (0-based): its batches in the order `(seed, epoch)` fixes, one
/// optimizer step each, with the per-step learning rate of the schedule.
fn train_epoch(
    job: &TrainJob,
    prep: &Prepared,
    teacher: Option<&distill::Teacher>,
    t: &mut Training,
) -> Result<Trained> {
    let tc = &prep.run.train;
    let e = t.state.epoch;
    let t0 = Instant::now();
    tch::manual_seed(epoch_seed(tc.seed, e) as i64);
    let batches = epoch_batches(
        prep,
        tc.batch_size,
        epoch_seed(tc.seed, e),
        tags_only(prep),
        tc.batching,
        tc.captions_per_image.map(|k| (k, e)),
    );
    let steps = batches.len();
    let bar = EpochBar::new(job.quiet, steps, e, tc.epochs, t0);
    let mut done = Trained::new(commit::Unit::Captions);
    for (b, chunk) in batches.iter().enumerate() {
        // bf16/fp16: the forward pass under autocast; weights and moments stay float32.
        let loss = tc.precision.autocast(job.device, || {
            batch_loss(job, prep, teacher, &t.model, chunk)
        })?;
        let progress = (e as f64 + b as f64 / steps as f64) / tc.epochs as f64;
        let l = step::update(t, tc, &loss, progress)?;
        bar.step(&mut done, b, l, chunk.len());
    }
    bar.finish(&mut done);
    Ok(done)
}

/// The loss of one batch of training captions (indices into `prep.train`): caption loss (with
/// the teacher's word-level term when distilling), plus the hashtag loss when the run has a
/// hashtag model; the hashtag loss alone for hashtag-only runs.
fn batch_loss(
    job: &TrainJob,
    prep: &Prepared,
    teacher: Option<&distill::Teacher>,
    model: &Captioner,
    chunk: &[usize],
) -> Result<Tensor> {
    let rows: Vec<i64> = chunk.iter().map(|&i| prep.train[i].0).collect();
    let seqs: Vec<&[i64]> = chunk.iter().map(|&i| prep.train[i].1.as_slice()).collect();
    let tokens = pad_batch(&seqs).to_device(job.device); // (B, L)
    let feats = prep.images.features(model, &rows, true)?; // (B, ..)
    let caption_loss = || match teacher {
        Some(t) => t.loss(model, prep, &feats, &rows, &tokens),
        None => Ok(model.loss(&feats, &tokens, true)),
    };
    let (Some(tagger), Some(td)) = (&model.tagger, &prep.tags) else {
        return caption_loss();
    };
    let targets = td
        .batch(&rows, tagger.generator().is_some())
        .to_device(job.device);
    let tag_loss = tagger.loss(&feats.rows_pooled(), &targets, true);
    if tags_only(prep) {
        Ok(tag_loss)
    } else {
        Ok(caption_loss()? + tag_loss)
    }
}

/// Whether the run trains its hashtag model alone.
fn tags_only(prep: &Prepared) -> bool {
    prep.run.model.hashtags.as_ref().is_some_and(|t| t.only)
}

/// One epoch's validation on the dev images.
struct Dev {
    /// Teacher-forced caption loss; the hashtag loss for hashtag-only runs.
    loss: f64,
    /// Greedy caption scores (None for hashtag-only runs).
    captions: Option<DevScores>,
    /// Hashtag P@5 / R@5 / mAP (runs with a hashtag model).
    tags: Option<TagScores>,
}

/// Dev loss, greedy dev caption scores and dev hashtag scores of the model after an epoch.
fn validate(prep: &Prepared, model: &Captioner) -> Result<Dev> {
    let batch = prep.run.train.batch_size;
    let tags = prep.dev_tag_scores(model)?;
    if tags_only(prep) {
        return Ok(Dev {
            loss: prep.dev_tag_loss(model, batch)?,
            captions: None,
            tags,
        });
    }
    let loss = prep.dev_loss(model, batch)?;
    let greedy = Decoding::Greedy {
        max_len: prep.run.train.max_words,
    };
    let captions = Some(prep.dev_scores(model, &greedy, crate::infer::SPECIALS)?);
    Ok(Dev {
        loss,
        captions,
        tags,
    })
}

/// The dev score that picks the best epoch (`model.safetensors`) and drives early stopping:
/// `--select` (BLEU-4 or CIDEr-D of greedy captions) for captioning runs, dev hashtag mAP for
/// hashtag-only runs. Saved in `train_state.json` as `best_score`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SelectionScore {
    Captions(Selection),
    TagMap,
}

impl SelectionScore {
    pub fn of(run: &run::RunConfig) -> Self {
        if run.model.hashtags.as_ref().is_some_and(|t| t.only) {
            SelectionScore::TagMap
        } else {
            SelectionScore::Captions(run.train.select)
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SelectionScore::Captions(s) => s.name(),
            SelectionScore::TagMap => "hashtag mAP",
        }
    }

    fn score(self, dev: &Dev) -> f64 {
        match (self, &dev.captions) {
            (SelectionScore::TagMap, _) => dev.tags.as_ref().map_or(0.0, |t| t.map),
            (SelectionScore::Captions(Selection::Cider), Some(d)) => d.cider,
            (SelectionScore::Captions(Selection::Bleu4), Some(d)) => d.bleu[3],
            (SelectionScore::Captions(_), None) => 0.0,
        }
    }
}

/// Close the epoch in `t.state`: is it the best so far (higher `score`, ties to the lower dev
/// loss), the schedule's per-epoch learning rate, early stopping. Returns whether it is the best.
fn select_and_schedule(t: &mut Training, tc: &TrainConfig, score: f64, dev_loss: f64) -> bool {
    close_epoch(&mut t.state, &mut t.adam, tc, score, dev_loss)
}

/// [`select_and_schedule`] on the state and optimizer alone.
fn close_epoch(
    s: &mut TrainState,
    adam: &mut optim::Adam,
    tc: &TrainConfig,
    score: f64,
    dev_loss: f64,
) -> bool {
    s.epoch += 1;
    s.step = adam.step;
    let improved = s.epoch == 1
        || score > s.best_score
        || (score == s.best_score && dev_loss < s.best_dev_loss);
    if improved {
        s.best_score = score;
        s.best_dev_loss = dev_loss;
        s.best_epoch = s.epoch;
        s.bad_epochs = 0;
    } else {
        s.bad_epochs += 1;
    }
    adam.lr = tc
        .schedule
        .after_epoch(adam.lr, s.epoch, dev_loss, &mut s.plateau);
    s.lr = adam.lr;
    s.stopped_early = tc.early_stop > 0 && s.bad_epochs >= tc.early_stop;
    improved
}

/// The epoch's `metrics.jsonl` fields and console line (captioning runs).
fn epoch_log(trained: &Trained, dev: &Dev) -> commit::EpochLog {
    let mut metrics: Vec<(&'static str, serde_json::Value)> = vec![("dev_loss", dev.loss.into())];
    let mut console = format!("loss {:.3}", trained.loss());
    for &(k, v) in &trained.extra {
        metrics.push((k, v.into()));
        console += &format!("  {k} {v:.3}");
    }
    console += &format!("  dev loss {:.3}", dev.loss);
    if let Some(d) = &dev.captions {
        let b = d.bleu;
        for (k, v) in ["bleu1", "bleu2", "bleu3", "bleu4"].into_iter().zip(b) {
            metrics.push((k, v.into()));
        }
        metrics.push(("cider", d.cider.into()));
        metrics.push(("rouge_l", d.rouge_l.into()));
        metrics.push(("distinct", d.distinct.into()));
        console += &format!(
            "  BLEU-1..4 {:.3} {:.3} {:.3} {:.3}  CIDEr-D {:.3}  distinct {}",
            b[0], b[1], b[2], b[3], d.cider, d.distinct
        );
    }
    if let Some(t) = &dev.tags {
        metrics.push(("tag_p5", t.precision.into()));
        metrics.push(("tag_r5", t.recall.into()));
        metrics.push(("tag_f1_5", t.f1.into()));
        metrics.push(("tag_map", t.map.into()));
        console += &format!(
            "  tags P@5 {:.3} R@5 {:.3} mAP {:.3}",
            t.precision, t.recall, t.map
        );
    }
    commit::EpochLog {
        train_loss: trained.loss(),
        seen: trained.seen,
        seconds: trained.seconds,
        unit: trained.unit,
        metrics,
        console,
    }
}

/// Greedy dev scores of one epoch.
#[derive(Clone, Debug)]
pub struct DevScores {
    /// BLEU-1..4, coco mode.
    pub bleu: [f64; 4],
    pub cider: f64,
    pub rouge_l: f64,
    /// Distinct captions among the dev images'.
    pub distinct: usize,
}

/// BLEU-1..4 (coco mode), CIDEr-D and ROUGE-L of generated token lists against tokenized
/// references.
pub fn dev_scores(hyps: &[Vec<String>], refs: &[Vec<Vec<String>>]) -> Result<DevScores> {
    Ok(DevScores {
        bleu: corpus_bleu(hyps, refs, BleuMode::Coco)?.bleu,
        cider: crate::eval::cider::cider_d(hyps, refs)
            .map_err(Error::invalid)?
            .score,
        rouge_l: crate::eval::rouge::rouge_l(hyps, refs)
            .map_err(Error::invalid)?
            .score,
        distinct: hyps.iter().collect::<std::collections::HashSet<_>>().len(),
    })
}

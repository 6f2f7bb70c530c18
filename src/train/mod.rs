//! The training loop: teacher-forced cross-entropy with Adam, gradient clipping, a learning-rate
//! schedule, dev loss + dev BLEU-1..4 (greedy) every epoch, early stopping on dev BLEU-4, and a
//! run directory written atomically after every epoch.
//!
//! Exact resume: all randomness of epoch `e` (shuffle order, dropout) is derived from
//! `(seed, e)`, and the optimizer moments and counters are saved by captag, so training N
//! epochs equals training k, stopping and resuming to N.
mod batches;
pub mod distill;
pub mod optim;
pub mod prepare;
pub mod tagdata;

use batches::epoch_batches;
pub use batches::{captions_in_turn, length_buckets};

use std::path::PathBuf;
use std::time::Instant;

use tch::{Device, Tensor};

use crate::config::{ModelConfig, Schedule, Selection, TrainConfig};
use crate::data::LoadOptions;
use crate::eval::bleu::{corpus_bleu, BleuMode};
use crate::model::captioner::Captioner;
use crate::model::decoding::Decoding;
use crate::model::tagger::Tagger;
use crate::run::{self, TrainState};
use crate::text::vocab::PAD;
use crate::{Error, Result};
pub use prepare::{Images, Prepared};

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
    pub best_bleu: [f64; 4],
    /// The best epoch's value of the `--select` metric (dev mAP for hashtag-only runs).
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

pub fn run(job: &TrainJob) -> Result<TrainSummary> {
    job.train.validate()?;
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
    let started = Instant::now();
    // Held until training returns: one process per run directory.
    let _lock = run::lock(&job.out)?;
    // A run killed at any instant is brought back to its last committed epoch first.
    let rec = run::recover(&job.out)?;
    if !job.quiet {
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
                crate::commands::out::errln!("{}: {what}", job.out.display());
            }
        }
    }
    let mut prep = prepare::prepare(job)?;
    let teacher = match prep.run.train.distill.clone() {
        Some(d) => {
            let t = distill::Teacher::open(&d, &prep.run, &prep, job.device)?;
            if !job.quiet {
                crate::commands::out::errln!("{}", distill::describe(&d));
            }
            if d.method.sequence_level() {
                let max_words = prep.run.train.max_words;
                let n =
                    distill::add_teacher_captions(&t, &mut prep, &job.out, max_words, job.quiet)?;
                if !job.quiet {
                    crate::commands::out::errln!(
                        "training on {n} teacher captions{} ({})",
                        if d.teacher_only {
                            " only"
                        } else {
                            " and the references"
                        },
                        distill::TEACHER_CAPTIONS
                    );
                }
            }
            Some(t)
        }
        None => None,
    };
    let prep = prep;
    let cfg = &prep.run.model;
    let tc = &prep.run.train;
    let mut model = Captioner::new(cfg, job.device, false);
    if let (Some(Tagger::Head(head)), Some(td)) = (model.tagger.as_mut(), &prep.tags) {
        head.set_pos_weight(&td.pos_weight);
    }
    let mut adam = optim::Adam::new(&model.vs, tc.lr, 0.0);
    let mut state = TrainState {
        lr: tc.lr,
        ..Default::default()
    };
    let dir = &job.out;
    let from_epoch_0 = !(job.resume && dir.join(run::STATE).is_file());
    if let (Some(lm), true) = (&job.lm_weights, from_epoch_0) {
        crate::model::decoder::clipcap::load_pretrained_lm(&mut model.vs, lm)?;
    }
    if job.resume && !dir.join(run::STATE).is_file() {
        // Stopped during its first epoch (killed, diverged, disk full): no epoch was saved, so
        // there is nothing to continue; the run starts over under its saved config.
        if !job.quiet {
            crate::commands::out::errln!(
                "{}: no epoch was saved yet; training from the first epoch",
                dir.display()
            );
        }
    } else if job.resume {
        state = run::read_json(&dir.join(run::STATE))?;
        // The best epoch's weights are what the run's score stands for: check they load before
        // training on (a damaged file would otherwise surface only at eval time).
        let mut best = Captioner::new(cfg, job.device, false);
        run::load_vars(&mut best.vs, &dir.join(run::BEST)).map_err(|e| {
            Error::invalid(format!(
                "--resume: the best epoch's weights cannot be read ({e}); restore {}, or copy {} \
                 over it to make the last epoch the best",
                run::BEST,
                run::LAST
            ))
        })?;
        run::load_vars(&mut model.vs, &dir.join(run::LAST))?;
        adam.load(&dir.join(run::OPTIM), state.step, state.lr)?;
        if !job.quiet {
            crate::commands::out::errln!(
                "resuming {} after epoch {} (step {})",
                dir.display(),
                state.epoch,
                state.step
            );
        }
    }
    let sp = crate::infer::SPECIALS;
    let tags_only = cfg.hashtags.as_ref().is_some_and(|t| t.only);
    let mut best_bleu = [0.0; 4];
    let plain_log = !job.quiet && !std::io::IsTerminal::is_terminal(&std::io::stderr());
    while state.epoch < tc.epochs && !state.stopped_early {
        let e = state.epoch;
        let t0 = Instant::now();
        tch::manual_seed(epoch_seed(tc.seed, e) as i64);
        let batches = epoch_batches(
            &prep,
            tc.batch_size,
            epoch_seed(tc.seed, e),
            tags_only,
            tc.batching,
            tc.captions_per_image.map(|k| (k, e)),
        );
        let steps = batches.len();
        let bar = progress(
            job.quiet,
            steps as u64,
            &format!("epoch {}/{}", e + 1, tc.epochs),
        );
        let (mut loss_sum, mut loss_n) = (0.0, 0usize);
        for (b, chunk) in batches.iter().enumerate() {
            let rows: Vec<i64> = chunk.iter().map(|&i| prep.train[i].0).collect();
            let seqs: Vec<&[i64]> = chunk.iter().map(|&i| prep.train[i].1.as_slice()).collect();
            let tokens = pad_batch(&seqs).to_device(job.device); // (B, L)
            let feats = prep.images.features(&model, &rows, true)?; // (B, ..)
            let caption_loss = || match &teacher {
                Some(t) => t.loss(&model, &prep, &feats, &rows, &tokens),
                None => Ok(model.loss(&feats, &tokens, true)),
            };
            let loss = match (&model.tagger, &prep.tags) {
                (Some(tagger), Some(td)) => {
                    let targets = td
                        .batch(&rows, tagger.generator().is_some())
                        .to_device(job.device);
                    let tag_loss = tagger.loss(&feats.rows_pooled(), &targets, true);
                    if tags_only {
                        tag_loss
                    } else {
                        caption_loss()? + tag_loss
                    }
                }
                _ => caption_loss()?,
            };
            let progress = (e as f64 + b as f64 / steps as f64) / tc.epochs as f64;
            if let Some(lr) = tc.schedule.step_lr(tc.lr, adam.step + 1, progress) {
                adam.lr = lr;
            }
            adam.zero_grad();
            loss.backward();
            adam.step(tc.clip);
            crate::fsio::fault_point();
            let l = loss.double_value(&[]);
            if !l.is_finite() {
                return Err(Error::invalid(format!(
                    "training diverged (loss {l}) at epoch {}: lower --lr",
                    e + 1
                )));
            }
            loss_sum += l * chunk.len() as f64;
            loss_n += chunk.len();
            bar.set_position(b as u64 + 1);
            let rate = loss_n as f64 / t0.elapsed().as_secs_f64().max(1e-9);
            // Logs and CI see no progress bar: a line every tenth of an epoch instead.
            if plain_log && (b + 1) % steps.div_ceil(10).max(1) == 0 && b + 1 < steps {
                crate::commands::out::errln!(
                    "epoch {}/{}: step {}/{steps}  loss {:.3}  {rate:.0} captions/s",
                    e + 1,
                    tc.epochs,
                    b + 1,
                    loss_sum / loss_n as f64
                );
            }
            bar.set_message(format!(
                "loss {:.3} · {rate:.0} captions/s",
                loss_sum / loss_n as f64
            ));
        }
        bar.finish_and_clear();
        let train_secs = t0.elapsed().as_secs_f64();
        // Validation: teacher-forced loss and greedy BLEU on the dev images.
        // Hashtags-only runs: dev loss is the tag loss, and the "BLEU-4" slot of the best-epoch
        // bookkeeping holds dev mAP.
        let tag_scores = prep.dev_tag_scores(&model)?;
        let (dev_loss, bleu, others) = if tags_only {
            let s = tag_scores.unwrap_or_default();
            (
                prep.dev_tag_loss(&model, tc.batch_size)?,
                [0.0, 0.0, 0.0, s.map],
                None,
            )
        } else {
            let dev_loss = prep.dev_loss(&model, tc.batch_size)?;
            let d = prep.dev_scores(
                &model,
                &Decoding::Greedy {
                    max_len: tc.max_words,
                },
                sp,
            )?;
            (dev_loss, d.bleu, Some(d))
        };
        state.epoch += 1;
        state.step = adam.step;
        let score = match (tc.select, &others) {
            (Selection::Cider, Some(d)) => d.cider,
            _ => bleu[3],
        };
        let improved = state.epoch == 1
            || score > state.best_score
            || (score == state.best_score && dev_loss < state.best_dev_loss);
        if improved {
            state.best_score = score;
            state.best_dev_loss = dev_loss;
            state.best_epoch = state.epoch;
            state.bad_epochs = 0;
            best_bleu = bleu;
        } else {
            state.bad_epochs += 1;
        }
        match tc.schedule {
            Schedule::Constant | Schedule::Warmup { .. } | Schedule::Cosine { .. } => {}
            Schedule::Step { every, gamma } => {
                if every > 0 && state.epoch.is_multiple_of(every) {
                    adam.lr *= gamma;
                }
            }
            // On dev loss, which is far less noisy than dev BLEU on small dev sets.
            Schedule::Plateau { patience, factor } => {
                if state.lowest_dev_loss.is_none_or(|l| dev_loss < l) {
                    state.lowest_dev_loss = Some(dev_loss);
                    state.loss_bad_epochs = 0;
                } else {
                    state.loss_bad_epochs += 1;
                    if patience > 0 && state.loss_bad_epochs.is_multiple_of(patience) {
                        adam.lr *= factor;
                    }
                }
            }
        }
        state.lr = adam.lr;
        state.stopped_early = tc.early_stop > 0 && state.bad_epochs >= tc.early_stop;
        let mut line = serde_json::json!({
            "epoch": state.epoch, "step": state.step, "lr": state.lr,
            "train_loss": loss_sum / loss_n.max(1) as f64, "dev_loss": dev_loss,
            "seconds": train_secs, "captions_per_s": loss_n as f64 / train_secs.max(1e-9),
        });
        if !tags_only {
            line["bleu1"] = bleu[0].into();
            line["bleu2"] = bleu[1].into();
            line["bleu3"] = bleu[2].into();
            line["bleu4"] = bleu[3].into();
        }
        if let Some(d) = &others {
            line["cider"] = d.cider.into();
            line["rouge_l"] = d.rouge_l.into();
            line["distinct"] = d.distinct.into();
        }
        if let Some(t) = &tag_scores {
            line["tag_p5"] = t.precision.into();
            line["tag_r5"] = t.recall.into();
            line["tag_f1_5"] = t.f1.into();
            line["tag_map"] = t.map.into();
        }
        // The epoch's one commit point: weights, optimizer, state and metrics line together.
        run::commit_epoch(
            dir,
            run::Epoch {
                state: &state,
                weights: &model.vs,
                best: improved,
                optimizer: &|p| adam.save(p),
                metrics: &line,
            },
        )?;
        if !job.quiet {
            let mut msg = format!(
                "epoch {:>3}  loss {:.3}  dev loss {:.3}",
                state.epoch,
                loss_sum / loss_n.max(1) as f64,
                dev_loss
            );
            if !tags_only {
                msg += &format!(
                    "  BLEU-1..4 {:.3} {:.3} {:.3} {:.3}",
                    bleu[0], bleu[1], bleu[2], bleu[3]
                );
            }
            if let Some(d) = &others {
                msg += &format!("  CIDEr-D {:.3}  distinct {}", d.cider, d.distinct);
            }
            if let Some(t) = &tag_scores {
                msg += &format!(
                    "  tags P@5 {:.3} R@5 {:.3} mAP {:.3}",
                    t.precision, t.recall, t.map
                );
            }
            let rate = loss_n as f64 / train_secs.max(1e-9);
            let best = if improved { "  *best" } else { "" };
            crate::commands::out::errln!("{msg}  {rate:.0} captions/s{best}");
        }
    }
    if state.stopped_early && !job.quiet {
        crate::commands::out::errln!(
            "stopped early: no better dev {} for {} epochs",
            tc.select.name(),
            tc.early_stop
        );
    }
    if best_bleu == [0.0; 4] && tags_only {
        best_bleu[3] = state.best_score;
    }
    Ok(TrainSummary {
        out: dir.clone(),
        epochs: state.epoch,
        best_epoch: state.best_epoch,
        best_bleu,
        best_score: state.best_score,
        seconds: started.elapsed().as_secs_f64(),
        stopped_early: state.stopped_early,
    })
}

pub fn progress(quiet: bool, len: u64, prefix: &str) -> indicatif::ProgressBar {
    if quiet {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    let style = indicatif::ProgressStyle::with_template(
        "{prefix} [{bar:30}] {pos}/{len} {msg} (eta {eta})",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(prefix.to_string());
    bar
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

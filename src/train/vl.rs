//! `train --init-from HF_DIR`: fine-tuning a BLIP or GIT Hugging Face folder (or a run
//! fine-tuned from one; docs/vision-language.md, "Fine-tuning") with teacher-forced
//! cross-entropy on the folder's own tokenizer (the loss on caption tokens only, padding left
//! out) and AdamW, or with `--objective scst` self-critically (below). The loop is the
//! captioning loop's, phase for phase, on its shared pieces: the run's lock and crash recovery,
//! the per-epoch seeds (shuffle order and dropout from `(seed, epoch)`), the optimizer update
//! (`step.rs`), best-epoch selection on dev (`--select`) with the schedule and early stopping,
//! the epoch log and the one atomic epoch commit (`commit.rs`) — so a BLIP/GIT run resumes
//! exactly as any run does. Only the model and the data differ: pixels in the folder's
//! preprocessing and captions in its WordPiece tokens, in place of `Prepared`'s.
use std::path::PathBuf;
use std::time::Instant;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use tch::{Device, Kind, Tensor};

use super::scst::{advantages, loss, step_seed, Reward, Step, Tally};
use super::step::{update_parts, Parts};
use super::{commit, Dev, SelectionScore, TrainSummary, Trained};
use crate::config::scst::{Baseline, Scst};
use crate::config::TrainConfig;
use crate::data::{LoadOptions, Sample, Split};
use crate::model::decoding::{Decoding, Draw, Drawn};
use crate::model::vl::VlCaptioner;
use crate::run::vl::{self as vlrun, VlRunConfig};
use crate::run::{self, TrainState};
use crate::text::tokenize;
use crate::{Error, Result};

/// AdamW's weight decay (`torch.optim.AdamW`'s default).
pub const WEIGHT_DECAY: f64 = 0.01;
/// Images per forward pass when captioning the dev split.
const DEV_IMAGES: usize = 16;

/// `captag train --init-from HF_DIR` (or `--resume` of such a run), validated.
#[derive(Clone, Debug)]
pub struct VlTrainJob {
    pub data: PathBuf,
    pub load: LoadOptions,
    pub out: PathBuf,
    pub resume: bool,
    /// The BLIP/GIT folder a new run starts from (a resumed run reads its own files).
    pub folder: Option<PathBuf>,
    pub freeze_vision: bool,
    pub train: TrainConfig,
    pub device: Device,
    pub quiet: bool,
    pub verbose: bool,
}

/// The train and dev splits in the model's terms.
struct VlData {
    /// Every usable image, preprocessed by the folder's image processor: `(N, 3, S, S)`.
    pixels: Tensor,
    /// `(image row, [start, tokens.., end])` per caption.
    train: Vec<(i64, Vec<i64>)>,
    /// `(image row, its references as words)` per training image (SCST's rewards).
    train_refs: Vec<(i64, Vec<Vec<String>>)>,
    dev: Vec<(i64, Vec<i64>)>,
    /// One row per dev image, with its references as words (the common evaluation).
    dev_images: Vec<i64>,
    dev_refs: Vec<Vec<Vec<String>>>,
}

/// What the loop carries: the model, its optimizer and `train_state.json`.
struct Fine {
    m: VlCaptioner,
    adam: super::optim::Adam,
    state: TrainState,
    scaler: Option<super::scaler::LossScaler>,
}

impl Fine {
    /// One optimizer step on `loss` at `progress` (0..1 of the whole training).
    fn update(&mut self, tc: &TrainConfig, loss: &Tensor, progress: f64) -> Result<f64> {
        let mut parts = Parts {
            adam: &mut self.adam,
            scaler: self.scaler.as_mut(),
            vs: &self.m.vs,
            state: &mut self.state,
        };
        update_parts(&mut parts, tc, loss, progress)
    }
}

pub fn run(job: &VlTrainJob) -> Result<TrainSummary> {
    job.train.validate()?;
    job.train.precision.check(job.device)?;
    let started = Instant::now();
    let _lock = run::lock(&job.out)?;
    super::say_recovered_in(&job.out, job.quiet, &run::recover(&job.out)?);
    let ds = crate::data::load(&job.data, &job.load)?;
    ds.report(&job.data, job.quiet, job.verbose);
    let data_fp = super::prepare::data_fingerprint(&ds);
    let (cfg, mut t) = open_or_create(job, &data_fp)?;
    let tc = &cfg.train;
    let data = prepare(job, &t.m, &ds.samples, tc.max_words)?;
    let selection = SelectionScore::Captions(tc.select);
    let mut best_bleu = None;
    // `--objective scst`: the rewards' references and document frequencies, built once.
    let mut scst = tc
        .scst
        .as_ref()
        .map(|c| (c, Reward::from_refs(&data.train_refs)));
    while t.state.epoch < tc.epochs && !t.state.stopped_early {
        let trained = match scst.as_mut() {
            Some((c, reward)) => scst_epoch(job, tc, c, &data, reward, &mut t)?,
            None => train_epoch(job, tc, &data, &mut t)?,
        };
        let dev = validate(&data, &t.m, tc)?;
        let improved = super::close_epoch(
            &mut t.state,
            &mut t.adam,
            tc,
            selection.score(&dev),
            dev.loss,
        );
        if improved {
            best_bleu = dev.captions.as_ref().map(|d| d.bleu);
        }
        let log = super::epoch_log(&trained, &dev);
        commit::commit_and_log(
            &job.out, &t.state, &t.m.vs, &t.adam, improved, &log, job.quiet,
        )?;
    }
    Ok(super::summary(
        &job.out,
        job.quiet,
        &t.state,
        &selection,
        tc.early_stop,
        best_bleu,
        started,
    ))
}

/// A new run from the folder, or with `--resume` the run's last epoch: its weights, optimizer
/// moments and state (a run that saved no epoch starts again from its folder).
fn open_or_create(job: &VlTrainJob, data_fp: &str) -> Result<(VlRunConfig, Fine)> {
    let dir = &job.out;
    let (cfg, mut m, saved) = if job.resume {
        if !vlrun::is_vl_run(dir) {
            return Err(Error::invalid(format!(
                "--resume: {} holds no BLIP/GIT run",
                dir.display()
            )));
        }
        let cfg = vlrun::reopen(dir, &job.train, job.freeze_vision, data_fp)?;
        if dir.join(run::STATE).is_file() {
            // The best epoch's weights are what the run's score stands for: they must load.
            vlrun::open(dir, job.device, false).map_err(|e| {
                Error::invalid(format!(
                    "--resume: the best epoch's weights cannot be read ({e}); restore {}, or \
                     copy {} over it",
                    run::BEST,
                    run::LAST
                ))
            })?;
            let (_, m) = vlrun::open(dir, job.device, true)?;
            (cfg, m, true)
        } else {
            let src = vlrun::source(&cfg)?;
            if !job.quiet {
                crate::fsio::errln!(
                    "{}: no epoch was saved yet; training from the first epoch",
                    dir.display()
                );
            }
            (cfg, vlrun::load_source(&src, job.device)?.0, false)
        }
    } else {
        run::ensure_new(dir)?;
        let src = job
            .folder
            .as_ref()
            .ok_or_else(|| Error::invalid("--init-from: no BLIP/GIT folder given"))?;
        let (m, files) = vlrun::load_source(src, job.device)?;
        let cfg = VlRunConfig {
            captag_version: env!("CARGO_PKG_VERSION").to_string(),
            vl: m.config.clone(),
            freeze_vision: job.freeze_vision,
            train: job.train.clone(),
            data_path: job.data.display().to_string(),
            data_fingerprint: data_fp.to_string(),
        };
        vlrun::create(dir, &files, &cfg)?;
        (cfg, m, false)
    };
    if cfg.freeze_vision {
        m.freeze_vision();
    }
    let tc = &cfg.train;
    let mut adam = super::optim::Adam::adamw(&m.vs, tc.lr, WEIGHT_DECAY);
    let state = if saved {
        let state: TrainState = run::read_json(&dir.join(run::STATE))?;
        adam.load(&dir.join(run::OPTIMIZER), state.step, state.lr)?;
        if !job.quiet {
            crate::fsio::errln!(
                "resuming {} after epoch {} (step {})",
                dir.display(),
                state.epoch,
                state.step
            );
        }
        state
    } else {
        TrainState {
            lr: tc.lr,
            ..Default::default()
        }
    };
    let scaler = super::resume::loss_scaler(tc, &state, job.device);
    Ok((
        cfg,
        Fine {
            m,
            adam,
            state,
            scaler,
        },
    ))
}

/// Decode every train and dev image once with the folder's preprocessing, and tokenize the
/// captions with its tokenizer (`max_words` WordPiece tokens at most).
fn prepare(
    job: &VlTrainJob,
    m: &VlCaptioner,
    samples: &[Sample],
    max_words: usize,
) -> Result<VlData> {
    let used: Vec<&Sample> = samples
        .iter()
        .filter(|s| matches!(s.split, Split::Train | Split::Dev))
        .collect();
    let bar = super::progress(job.quiet, used.len() as u64, "images");
    let mut d = VlData {
        pixels: Tensor::new(),
        train: vec![],
        train_refs: vec![],
        dev: vec![],
        dev_images: vec![],
        dev_refs: vec![],
    };
    let (mut pics, mut skipped) = (vec![], 0);
    for s in used {
        bar.inc(1);
        let img = match crate::data::image::decode_rgb(&s.path) {
            Ok(img) => img,
            Err(e) => {
                skipped += 1;
                if job.verbose {
                    crate::fsio::errln!("  skipped {e}");
                }
                continue;
            }
        };
        let row = pics.len() as i64;
        pics.push(m.preprocess.tensor(&img)); // (3, S, S)
        let caps = s
            .captions
            .iter()
            .map(|c| (row, m.caption_ids(c, max_words)));
        let words = || s.captions.iter().map(|c| tokenize(c)).collect::<Vec<_>>();
        if s.split == Split::Train {
            d.train.extend(caps);
            d.train_refs.push((row, words()));
        } else {
            d.dev.extend(caps);
            d.dev_images.push(row);
            d.dev_refs.push(words());
        }
    }
    bar.finish_and_clear();
    if skipped > 0 && !job.quiet {
        crate::fsio::errln!("skipped {skipped} undecodable images");
    }
    if d.train.is_empty() || d.dev_images.is_empty() {
        return Err(Error::invalid(format!(
            "{}: need readable images in both the train and dev splits",
            job.data.display()
        )));
    }
    d.pixels = Tensor::stack(&pics, 0); // (N, 3, S, S)
    Ok(d)
}

/// Pad caption id lists into `ids (B, T)` and `keep (B, T)` (true at real tokens).
fn pad(seqs: &[&[i64]], device: Device) -> (Tensor, Tensor) {
    let t = seqs.iter().map(|s| s.len()).max().unwrap_or(2);
    let mut ids = vec![0i64; seqs.len() * t];
    let mut keep = vec![false; seqs.len() * t];
    for (i, s) in seqs.iter().enumerate() {
        ids[i * t..i * t + s.len()].copy_from_slice(s);
        keep[i * t..i * t + s.len()]
            .iter_mut()
            .for_each(|k| *k = true);
    }
    let shape = [seqs.len() as i64, t as i64];
    (
        Tensor::from_slice(&ids).view(shape).to_device(device),
        Tensor::from_slice(&keep).view(shape).to_device(device),
    )
}

/// The mean caption-token loss of `pairs` (image row, caption ids); each distinct image runs
/// through the image tower once.
fn batch_loss(m: &VlCaptioner, pixels: &Tensor, pairs: &[&(i64, Vec<i64>)], train: bool) -> Tensor {
    let dev = m.device();
    let rows: Vec<i64> = pairs.iter().map(|p| p.0).collect();
    let (uniq, owner) = super::prepare::distinct(&rows);
    let px = pixels.index_select(0, &uniq).to_device(dev); // (U, 3, S, S)
    let memory = m.model.image_memory(&px, train); // (U, I, D)
    let memory = memory.index_select(0, &owner.to_device(dev)); // (B, I, D)
    let seqs: Vec<&[i64]> = pairs.iter().map(|p| p.1.as_slice()).collect();
    let (ids, keep) = pad(&seqs, dev); // (B, T)
    m.loss(&memory, &ids, &keep, train)
}

/// One epoch's batches of caption indices: the images shuffled by `seed`, each image's captions
/// kept together and packed into batches of about `batch_size` captions, so the image tower
/// runs once per image and epoch rather than once per caption.
fn image_batches(train: &[(i64, Vec<i64>)], batch_size: usize, seed: u64) -> Vec<Vec<usize>> {
    let mut groups: std::collections::BTreeMap<i64, Vec<usize>> = Default::default();
    for (i, (row, _)) in train.iter().enumerate() {
        groups.entry(*row).or_default().push(i);
    }
    let mut groups: Vec<Vec<usize>> = groups.into_values().collect();
    groups.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
    let mut batches: Vec<Vec<usize>> = vec![];
    let mut cur: Vec<usize> = vec![];
    for g in groups {
        if !cur.is_empty() && cur.len() + g.len() > batch_size.max(1) {
            batches.push(std::mem::take(&mut cur));
        }
        cur.extend(g);
    }
    if !cur.is_empty() {
        batches.push(cur);
    }
    batches
}

/// Train epoch `t.state.epoch`: the batches `(seed, epoch)` fixes, one update per batch.
fn train_epoch(job: &VlTrainJob, tc: &TrainConfig, data: &VlData, t: &mut Fine) -> Result<Trained> {
    let e = t.state.epoch;
    let seed = super::epoch_seed(tc.seed, e);
    let t0 = Instant::now();
    tch::manual_seed(seed as i64);
    let batches = image_batches(&data.train, tc.batch_size, seed);
    let steps = batches.len();
    let bar = super::EpochBar::new(job.quiet, steps, e, tc.epochs, t0);
    let mut done = Trained::new(commit::Unit::Captions);
    for (b, chunk) in batches.iter().enumerate() {
        let pairs: Vec<&(i64, Vec<i64>)> = chunk.iter().map(|&i| &data.train[i]).collect();
        let loss = tc
            .precision
            .autocast(job.device, || batch_loss(&t.m, &data.pixels, &pairs, true));
        let l = t.update(
            tc,
            &loss,
            (e as f64 + b as f64 / steps as f64) / tc.epochs as f64,
        )?;
        bar.step(&mut done, b, l, chunk.len());
    }
    bar.finish(&mut done);
    Ok(done)
}

/// Dev loss (teacher forced, eval mode) and greedy dev captions scored on words.
fn validate(data: &VlData, m: &VlCaptioner, tc: &TrainConfig) -> Result<Dev> {
    let (mut sum, mut n) = (0.0, 0usize);
    for chunk in data.dev.chunks(tc.batch_size.max(1)) {
        let pairs: Vec<&(i64, Vec<i64>)> = chunk.iter().collect();
        let l = tch::no_grad(|| batch_loss(m, &data.pixels, &pairs, false));
        sum += l.to_kind(Kind::Double).double_value(&[]) * chunk.len() as f64;
        n += chunk.len();
    }
    let prefix = m.prefix(None);
    let greedy = Decoding::Greedy {
        max_len: tc.max_words,
    };
    let mut hyps = Vec::with_capacity(data.dev_images.len());
    for rows in data.dev_images.chunks(DEV_IMAGES) {
        let px = data
            .pixels
            .index_select(0, &Tensor::from_slice(rows))
            .to_device(m.device()); // (n, 3, S, S)
        for hs in m.decode(&px, &prefix, &greedy)? {
            let ids = hs.first().map(|h| h.tokens.as_slice()).unwrap_or(&[]);
            hyps.push(tokenize(&m.text(&prefix, ids)));
        }
    }
    Ok(Dev {
        loss: sum / n.max(1) as f64,
        captions: Some(super::dev_scores(&hyps, &data.dev_refs)?),
        tags: None,
    })
}

// Self-critical training (`--objective scst`; docs/vision-language.md, "Self-critical
// training"): the objective of captag's own decoders (`train::scst`: K captions drawn per
// image from the model's distribution, CIDEr-D rewards with the training references' document
// frequencies and the end counted, advantage against the mean of the other samples or the
// greedy caption, loss −Σ advantage · log p / Σ scored tokens) on the folder's own tokenizer:
// captions drawn as WordPiece ids after the start token, rewarded on their words (the common
// evaluation's tokenisation, as the dev scores are), scored by one teacher-forced pass with
// gradient.

/// One SCST epoch over the training images (each once, `--batch-size` images a step, in an
/// order seeded by `(seed, epoch)`, so a resumed run draws what the uninterrupted one drew).
fn scst_epoch(
    job: &VlTrainJob,
    tc: &TrainConfig,
    cfg: &Scst,
    data: &VlData,
    reward: &mut Reward,
    t: &mut Fine,
) -> Result<Trained> {
    let e = t.state.epoch;
    let seed = super::epoch_seed(tc.seed, e);
    let t0 = Instant::now();
    tch::manual_seed(seed as i64);
    let mut order = reward.rows().to_vec();
    order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
    let batches: Vec<&[i64]> = order.chunks(tc.batch_size.max(1)).collect();
    let steps = batches.len();
    let bar = super::EpochBar::new(job.quiet, steps, e, tc.epochs, t0);
    let mut done = Trained::new(commit::Unit::Images);
    let mut tally = Tally::default();
    for (b, rows) in batches.iter().enumerate() {
        let s = scst_step(&t.m, data, tc, cfg, reward, rows, step_seed(seed, b))?;
        let l = t.update(
            tc,
            &s.loss,
            (e as f64 + b as f64 / steps as f64) / tc.epochs as f64,
        )?;
        bar.step(&mut done, b, l, rows.len());
        tally.add(&s);
    }
    bar.finish(&mut done);
    tally.log(cfg, &mut done);
    Ok(done)
}

/// Draw, reward and score the captions of the images `rows` (rows of `data.pixels`).
fn scst_step(
    m: &VlCaptioner,
    data: &VlData,
    tc: &TrainConfig,
    cfg: &Scst,
    reward: &mut Reward,
    rows: &[i64],
    seed: u64,
) -> Result<Step> {
    let dev = m.device();
    let k = cfg.samples;
    let px = data
        .pixels
        .index_select(0, &Tensor::from_slice(rows))
        .to_device(dev); // (B, 3, S, S)
    let prefix = m.prefix(None);
    let t0 = Instant::now();
    let how = Draw::model_samples(tc.max_words, k, seed);
    let drawn = m.draw(&px, &prefix, how)?; // B·K, image-major
    let greedy_drawn = match cfg.baseline {
        Baseline::Greedy => m.draw(
            &px,
            &prefix,
            Draw::Greedy {
                max_len: tc.max_words,
            },
        )?,
        Baseline::Mean => vec![],
    };
    let t1 = Instant::now();
    let (rewards, greedy) = super::scst::rewards(reward, &drawn, &greedy_drawn, rows, k, |d| {
        tokenize(&m.text(&prefix, &d.hyp.tokens))
    })?;
    let reward_seconds = t1.elapsed().as_secs_f64();
    let draw_seconds = (t1 - t0).as_secs_f64();
    let adv = advantages(&rewards, k, cfg.baseline, &greedy);
    let scored: Vec<i64> = drawn
        .iter()
        .map(|d| d.hyp.tokens.len() as i64 + i64::from(d.finished))
        .collect();
    let owner: Vec<i64> = (0..rows.len() as i64)
        .flat_map(|i| std::iter::repeat_n(i, k))
        .collect();
    let owner = Tensor::from_slice(&owner).to_device(dev);
    let loss = tc.precision.autocast(dev, || {
        // The image tower runs once per image, with gradient unless it is frozen.
        let memory = m.model.image_memory(&px, false).index_select(0, &owner); // (B·K, I, D)
        let refs: Vec<&Drawn> = drawn.iter().collect();
        let logp = m.caption_logp(&memory, &prefix, &refs); // (B·K,)
        loss(&logp, &adv, &scored)
    });
    Ok(Step {
        loss,
        rewards,
        greedy,
        draw_seconds,
        reward_seconds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_keep_each_images_captions_together_and_use_every_caption_once() {
        let train: Vec<(i64, Vec<i64>)> = (0..23).map(|i| (i % 5, vec![i])).collect();
        let b = image_batches(&train, 8, 7);
        let mut all: Vec<usize> = b.iter().flatten().copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..23).collect::<Vec<_>>());
        for batch in &b {
            let rows: std::collections::HashSet<i64> = batch.iter().map(|&i| train[i].0).collect();
            // Whole images only: every caption of an image in the batch is in it.
            for r in rows {
                assert!(train
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| c.0 == r)
                    .all(|(i, _)| batch.contains(&i)));
            }
        }
        assert_eq!(b, image_batches(&train, 8, 7));
        assert_ne!(b, image_batches(&train, 8, 8));
    }
}

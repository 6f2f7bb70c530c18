//! `captag restore train`: both restoration networks trained together on a dataset's training
//! images, damaged on the fly, into a run directory with the captioning runs' guarantees (the
//! run's lock, recovery of an interrupted epoch, one atomic commit per epoch through
//! `run::commit_epoch`, Adam moments saved for exact resume, `metrics.jsonl`; docs/ARCHITECTURE.md,
//! "Run directory").
//!
//! Exact resume: the damage of epoch `e` on image `i` is drawn from `mix(mix(seed, e), i)` and
//! the batch order from `mix(seed, e)`, so nothing random depends on how many epochs ran in this
//! process. The dev images carry fixed, held-out damage (their own seed stream), and the epoch
//! with the lowest dev loss is the best (`model.safetensors`).
use std::path::{Path, PathBuf};
use std::time::Instant;

use image::RgbImage;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

use super::damage::{self, mix, DamageConfig, Damaged};
use super::metrics::{psnr, MaskCounts};
use super::unet::{inpaint_loss, mask_loss, NetConfig, Perceptual};
use super::{images_tensor, masks_tensor, tensor_image, tensor_mask, Restorer};
use crate::data::image::ResizeMode;
use crate::data::{Dataset, LoadOptions, Split};
use crate::run::{self, TrainState};
use crate::train::commit::{EpochLog, Unit};
use crate::train::optim::Adam;
use crate::{Error, Result};

/// Salt of the dev images' damage seeds during training (`restore eval` uses another).
pub const DEV_SALT: u64 = 0xDE5E_ED00;

/// Training settings saved in the run's `config.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RestoreTrain {
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub seed: u64,
    /// Train on the first N training images (by id) only.
    pub limit: Option<usize>,
    /// Dev images scored each epoch (the first N by id).
    pub dev_limit: usize,
    /// The perceptual and style terms over frozen SqueezeNet features (`--encoder-weights`).
    pub perceptual: bool,
    /// Every epoch sees the same damage per image: the damage `restore eval` draws for that
    /// image under the same seed (an overfitting check, not a way to train).
    #[serde(default)]
    pub fixed_damage: bool,
}

/// A restoration run's `config.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RestoreRun {
    pub captag_version: String,
    /// Always `"restore"`: tells this run from a captioning run.
    pub kind: String,
    pub net: NetConfig,
    pub damage: DamageConfig,
    pub train: RestoreTrain,
    pub data_path: String,
    /// Fingerprint of the training and dev image ids.
    pub data_fingerprint: String,
    /// Fingerprint of the frozen feature network's weights (perceptual runs).
    pub encoder_fingerprint: Option<String>,
}

impl RestoreRun {
    pub fn read(dir: &Path) -> Result<RestoreRun> {
        let path = dir.join(run::CONFIG);
        if !path.is_file() {
            return Err(Error::invalid(format!(
                "{}: not a restoration run (no config.json)",
                dir.display()
            )));
        }
        let v: serde_json::Value = run::read_json(&path)?;
        if v.get("kind").and_then(|k| k.as_str()) != Some("restore") {
            return Err(Error::invalid(format!(
                "{}: a captioning run, not a restoration run (train one with `captag restore \
                 train`)",
                dir.display()
            )));
        }
        let r: RestoreRun = serde_json::from_value(v).map_err(|e| {
            Error::invalid(format!("{}: {}", path.display(), crate::input::one_line(e)))
        })?;
        r.net.validate()?;
        Ok(r)
    }
}

/// Everything `captag restore train` was asked, validated by [`run`].
#[derive(Clone, Debug)]
pub struct RestoreJob {
    pub data: PathBuf,
    pub load: LoadOptions,
    pub out: PathBuf,
    pub resume: bool,
    pub net: NetConfig,
    pub damage: DamageConfig,
    pub train: RestoreTrain,
    pub encoder_weights: Option<PathBuf>,
    pub device: Device,
    pub quiet: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct RestoreSummary {
    pub epochs: usize,
    pub best_epoch: usize,
    pub best_dev_loss: f64,
    pub seconds: f64,
}

/// The images of one split (sorted by id, the first `limit`), decoded and squashed to
/// `size × size`; unreadable ones are skipped and returned as messages.
pub fn split_images(
    ds: &Dataset,
    split: Split,
    size: u32,
    limit: Option<usize>,
) -> (Vec<(String, RgbImage)>, Vec<String>) {
    let mut list: Vec<(String, PathBuf)> = ds
        .split(split)
        .map(|s| (s.id.clone(), s.path.clone()))
        .collect();
    list.sort();
    list.dedup();
    let mut out = vec![];
    let mut bad = vec![];
    for (id, path) in list {
        if limit.is_some_and(|n| out.len() >= n) {
            break;
        }
        match crate::data::image::decode_rgb(&path) {
            Ok(img) => out.push((
                id,
                crate::data::image::resize_crop_rgb(&img, ResizeMode::Squash, size),
            )),
            Err(e) => bad.push(e.to_string()),
        }
    }
    (out, bad)
}

/// One batch of damaged images as tensors: clean, damaged `[B, 3, S, S]`, hole `[B, 1, S, S]`.
pub struct Batch {
    pub clean: Tensor,
    pub damaged: Tensor,
    pub hole: Tensor,
}

pub fn batch(clean: &[&RgbImage], damaged: &[&Damaged], device: Device) -> Batch {
    let imgs: Vec<&RgbImage> = damaged.iter().map(|d| &d.image).collect();
    let masks: Vec<&image::GrayImage> = damaged.iter().map(|d| &d.mask).collect();
    Batch {
        clean: images_tensor(clean, device),
        damaged: images_tensor(&imgs, device),
        hole: masks_tensor(&masks, device),
    }
}

/// Loss of one batch: (mask loss, inpainting loss).
fn losses(r: &Restorer, b: &Batch, perc: Option<&Perceptual>, train: bool) -> (Tensor, Tensor) {
    let logits = r.mask.forward_t(&b.damaged, train);
    let valid = 1.0f64 - &b.hole;
    let out = r.inpaint.forward_t(&b.damaged, &valid, train);
    let l = inpaint_loss(&out, &b.clean, &valid, perc);
    (mask_loss(&logits, &b.hole), l.total)
}

/// Dev scores of one epoch.
struct Dev {
    loss: f64,
    iou: f64,
    f1: f64,
    psnr: f64,
}

fn dev_scores(
    r: &Restorer,
    dev: &[(String, RgbImage)],
    dev_damage: &[Damaged],
    batch_size: usize,
    perc: Option<&Perceptual>,
) -> Result<Dev> {
    let (mut loss, mut counts, mut psnr_sum) = (0.0, MaskCounts::default(), 0.0);
    for (chunk, dmg) in dev.chunks(batch_size).zip(dev_damage.chunks(batch_size)) {
        let clean: Vec<&RgbImage> = chunk.iter().map(|(_, i)| i).collect();
        let d: Vec<&Damaged> = dmg.iter().collect();
        let b = batch(&clean, &d, r.vs.device());
        let (lm, li) = tch::no_grad(|| losses(r, &b, perc, false));
        loss += (lm + li).double_value(&[]) * chunk.len() as f64;
        let prob = r.detect(&b.damaged);
        let restored = r.fill(&b.damaged, &b.hole);
        for (i, (img, dm)) in clean.iter().zip(&d).enumerate() {
            let pred = tensor_mask(&prob, i as i64, 0.5)?;
            counts.add(&MaskCounts::of(
                &super::holes(&pred),
                &super::holes(&dm.mask),
            ));
            psnr_sum += psnr(&tensor_image(&restored, i as i64)?, img);
        }
    }
    let n = dev.len().max(1) as f64;
    Ok(Dev {
        loss: loss / n,
        iou: counts.iou(),
        f1: counts.f1(),
        psnr: psnr_sum / n,
    })
}

fn fingerprint(train: &[(String, RgbImage)], dev: &[(String, RgbImage)]) -> String {
    let mut f = crate::fsio::Fingerprint::default();
    for (id, _) in train {
        f.update(id.as_bytes());
    }
    f.update(b"--dev--");
    for (id, _) in dev {
        f.update(id.as_bytes());
    }
    f.hex()
}

/// `captag restore train`, in the phases of captioning training (`train::run`): open or
/// resume, then per epoch train, validate, select, commit and log.
pub fn run(job: &RestoreJob) -> Result<RestoreSummary> {
    check_job(job)?;
    let started = Instant::now();
    let dir = &job.out;
    if job.resume && !dir.join(run::CONFIG).is_file() {
        return Err(Error::invalid(format!(
            "--resume: {} holds no run (no config.json)",
            dir.display()
        )));
    }
    let _lock = run::lock(dir)?;
    run::recover(dir)?;
    let data = load_images(job)?;
    let cfg = create_or_reopen(job, &data)?;
    let perc = match (&job.encoder_weights, cfg.train.perceptual) {
        (Some(w), true) => Some(Perceptual::new(w, job.device)?),
        _ => None,
    };
    let tc = &cfg.train;
    let mut t = open_or_resume(job, &cfg)?;
    let dev_damage: Vec<Damaged> = data
        .dev
        .iter()
        .map(|(id, img)| damage::damage(img, &cfg.damage, damage::seed_for(tc.seed ^ DEV_SALT, id)))
        .collect();
    while t.state.epoch < tc.epochs {
        let trained = train_epoch(job, &cfg, &data.train, perc.as_ref(), &mut t)?;
        let dev = if data.dev.is_empty() {
            None
        } else {
            let (model, batch) = (&t.model, tc.batch_size);
            Some(dev_scores(
                model,
                &data.dev,
                &dev_damage,
                batch,
                perc.as_ref(),
            )?)
        };
        let improved = select(&mut t, dev.as_ref().map_or(trained.loss(), |d| d.loss));
        let log = epoch_log(&trained, dev.as_ref());
        let (state, vs) = (&t.state, &t.model.vs);
        crate::train::commit::commit_and_log(dir, state, vs, &t.adam, improved, &log, job.quiet)?;
    }
    Ok(RestoreSummary {
        epochs: t.state.epoch,
        best_epoch: t.state.best_epoch,
        best_dev_loss: t.state.best_dev_loss,
        seconds: started.elapsed().as_secs_f64(),
    })
}

fn check_job(job: &RestoreJob) -> Result<()> {
    job.net.validate()?;
    job.net.check_memory(job.train.batch_size, true)?;
    job.damage.validate()?;
    // `partial_cmp`: a NaN rate is refused too.
    let lr_positive = job.train.lr.partial_cmp(&0.0) == Some(std::cmp::Ordering::Greater);
    if job.train.batch_size == 0 || job.train.epochs == 0 || !lr_positive {
        return Err(Error::invalid(
            "restore train: --batch-size, --epochs and --lr must be positive",
        ));
    }
    Ok(())
}

/// The training and dev images, decoded and squashed to the network's size.
struct Images {
    train: Vec<(String, RgbImage)>,
    dev: Vec<(String, RgbImage)>,
}

fn load_images(job: &RestoreJob) -> Result<Images> {
    let ds = crate::data::load(&job.data, &job.load)?;
    let size = job.net.size;
    let (train, bad_t) = split_images(&ds, Split::Train, size, job.train.limit);
    let (dev, bad_d) = split_images(&ds, Split::Dev, size, Some(job.train.dev_limit));
    if !job.quiet && (!bad_t.is_empty() || !bad_d.is_empty()) {
        crate::fsio::errln!(
            "skipped {} unreadable image(s) (first: {})",
            bad_t.len() + bad_d.len(),
            bad_t.iter().chain(&bad_d).next().map_or("", |s| s.as_str())
        );
    }
    if train.is_empty() {
        return Err(Error::invalid(format!(
            "{}: no readable training images",
            job.data.display()
        )));
    }
    Ok(Images { train, dev })
}

/// The run's `config.json`: written for a new run; for `--resume` the saved one, refused when
/// anything but `--epochs` changed, with the new epoch total recorded.
fn create_or_reopen(job: &RestoreJob, data: &Images) -> Result<RestoreRun> {
    let dir = &job.out;
    let encoder_fp = match (&job.encoder_weights, job.train.perceptual) {
        (Some(w), true) => Some(crate::fsio::Fingerprint::of_file(w)?),
        _ => None,
    };
    let asked = RestoreRun {
        captag_version: env!("CARGO_PKG_VERSION").to_string(),
        kind: "restore".into(),
        net: job.net.clone(),
        damage: job.damage.clone(),
        train: job.train.clone(),
        data_path: job.data.display().to_string(),
        data_fingerprint: fingerprint(&data.train, &data.dev),
        encoder_fingerprint: encoder_fp,
    };
    if !job.resume {
        run::ensure_new(dir)?;
        run::write_json(&asked, &dir.join(run::CONFIG))?;
        return Ok(asked);
    }
    let mut saved = RestoreRun::read(dir)?;
    let mut same = asked.clone();
    same.train.epochs = saved.train.epochs;
    same.captag_version = saved.captag_version.clone();
    same.data_path = saved.data_path.clone();
    if same != saved {
        let diff = difference(
            &serde_json::to_value(&same).unwrap_or_default(),
            &serde_json::to_value(&saved).unwrap_or_default(),
            "",
        )
        .unwrap_or_default();
        return Err(Error::invalid(format!(
            "--resume: {} was trained with other settings or data ({diff}); only --epochs \
             can change when resuming",
            dir.display()
        )));
    }
    saved.train.epochs = job.train.epochs;
    run::write_json(&saved, &dir.join(run::CONFIG))?;
    Ok(saved)
}

/// What the loop carries from epoch to epoch.
struct Training {
    model: Restorer,
    adam: Adam,
    state: TrainState,
}

/// Fresh networks, or with `--resume` the last epoch's weights, optimizer moments and state.
fn open_or_resume(job: &RestoreJob, cfg: &RestoreRun) -> Result<Training> {
    let (tc, dir) = (&cfg.train, &job.out);
    tch::manual_seed(tc.seed as i64);
    let mut model = Restorer::new(&cfg.net, job.device);
    let mut adam = Adam::new(&model.vs, tc.lr, 0.0);
    let mut state = TrainState {
        lr: tc.lr,
        ..Default::default()
    };
    if job.resume && dir.join(run::STATE).is_file() {
        state = run::read_json(&dir.join(run::STATE))?;
        run::load_vars(&mut model.vs, &dir.join(run::LAST))?;
        adam.load(&dir.join(run::OPTIMIZER), state.step, state.lr)?;
        if !job.quiet {
            crate::fsio::errln!("resuming {} after epoch {}", dir.display(), state.epoch);
        }
    }
    Ok(Training { model, adam, state })
}

/// The training half of one epoch: summed mask and inpainting losses over the images seen.
struct Trained {
    mask: f64,
    inpaint: f64,
    seen: usize,
    seconds: f64,
}

impl Trained {
    fn loss(&self) -> f64 {
        (self.mask + self.inpaint) / self.seen.max(1) as f64
    }
}

/// Train epoch `t.state.epoch` (0-based): the images in the order `mix(seed, epoch)` fixes,
/// each damaged afresh (or with its fixed damage, `fixed_damage`), one Adam step per batch.
fn train_epoch(
    job: &RestoreJob,
    cfg: &RestoreRun,
    train: &[(String, RgbImage)],
    perc: Option<&Perceptual>,
    t: &mut Training,
) -> Result<Trained> {
    let tc = &cfg.train;
    let e = t.state.epoch;
    let t0 = Instant::now();
    let eseed = mix(tc.seed, e as u64 + 1);
    tch::manual_seed(eseed as i64);
    let mut order: Vec<usize> = (0..train.len()).collect();
    order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(eseed));
    let bar = crate::train::progress(
        job.quiet,
        order.len().div_ceil(tc.batch_size) as u64,
        &format!("epoch {}/{}", e + 1, tc.epochs),
    );
    let mut done = Trained {
        mask: 0.0,
        inpaint: 0.0,
        seen: 0,
        seconds: 0.0,
    };
    for (bi, chunk) in order.chunks(tc.batch_size).enumerate() {
        let dmg: Vec<Damaged> = chunk
            .iter()
            .map(|&i| {
                let (id, img) = &train[i];
                let s = if tc.fixed_damage {
                    damage::seed_for(tc.seed ^ damage::EVAL_SALT, id)
                } else {
                    mix(eseed, i as u64)
                };
                damage::damage(img, &cfg.damage, s)
            })
            .collect();
        let clean: Vec<&RgbImage> = chunk.iter().map(|&i| &train[i].1).collect();
        let b = batch(&clean, &dmg.iter().collect::<Vec<_>>(), job.device);
        let (lm, li) = losses(&t.model, &b, perc, true);
        let loss = &lm + &li;
        t.adam.zero_grad();
        loss.f_backward()?;
        t.adam.step(0.0);
        crate::fsio::fault_point();
        let (m, i) = (lm.double_value(&[]), li.double_value(&[]));
        if !(m + i).is_finite() {
            return Err(Error::invalid(format!(
                "training diverged (loss {}) at epoch {}: lower --lr",
                m + i,
                e + 1
            )));
        }
        done.mask += m * chunk.len() as f64;
        done.inpaint += i * chunk.len() as f64;
        done.seen += chunk.len();
        bar.set_position(bi as u64 + 1);
        bar.set_message(format!(
            "loss {:.4} · {:.1} images/s",
            done.loss(),
            done.seen as f64 / t0.elapsed().as_secs_f64().max(1e-9)
        ));
    }
    bar.finish_and_clear();
    done.seconds = t0.elapsed().as_secs_f64();
    Ok(done)
}

/// Close the epoch in `t.state`; the best epoch has the lowest dev loss (the training loss
/// without dev images). Returns whether it is the best.
fn select(t: &mut Training, loss: f64) -> bool {
    let s = &mut t.state;
    s.epoch += 1;
    s.step = t.adam.step;
    s.lr = t.adam.lr;
    let improved = s.epoch == 1 || loss < s.best_dev_loss;
    if improved {
        s.best_dev_loss = loss;
        s.best_score = -loss;
        s.best_epoch = s.epoch;
    }
    improved
}

/// The epoch's `metrics.jsonl` fields and console line.
fn epoch_log(trained: &Trained, dev: Option<&Dev>) -> EpochLog {
    let n = trained.seen.max(1) as f64;
    let (mask, inpaint) = (trained.mask / n, trained.inpaint / n);
    let mut metrics: Vec<(&'static str, serde_json::Value)> = vec![
        ("train_mask_loss", mask.into()),
        ("train_inpaint_loss", inpaint.into()),
    ];
    let mut console = format!(
        "loss {:.4} (mask {mask:.4}, inpaint {inpaint:.4})",
        trained.loss()
    );
    if let Some(d) = dev {
        metrics.push(("dev_loss", d.loss.into()));
        metrics.push(("dev_mask_iou", d.iou.into()));
        metrics.push(("dev_mask_f1", d.f1.into()));
        metrics.push(("dev_psnr_true_mask", d.psnr.into()));
        console += &format!(
            "  dev loss {:.4}  mask IoU {:.3}  PSNR {:.2} dB",
            d.loss, d.iou, d.psnr
        );
    }
    EpochLog {
        train_loss: trained.loss(),
        seen: trained.seen,
        seconds: trained.seconds,
        unit: Unit::Images,
        metrics,
        console,
    }
}

/// The first setting where `asked` differs from `saved`, as `path asked vs saved`.
fn difference(asked: &serde_json::Value, saved: &serde_json::Value, at: &str) -> Option<String> {
    use serde_json::Value;
    match (asked, saved) {
        (Value::Object(a), Value::Object(b)) => a.keys().chain(b.keys()).find_map(|k| {
            let null = Value::Null;
            let at = if at.is_empty() {
                k.clone()
            } else {
                format!("{at}.{k}")
            };
            difference(a.get(k).unwrap_or(&null), b.get(k).unwrap_or(&null), &at)
        }),
        _ if asked == saved => None,
        _ => Some(format!("{at}: asked {asked}, the run has {saved}")),
    }
}

/// A trained restoration run loaded for restoring or evaluation.
pub struct Opened {
    pub run: RestoreRun,
    pub model: Restorer,
}

/// Open `dir` with its best weights (`last` for the last epoch's).
pub fn open(dir: &Path, device: Device, last: bool) -> Result<Opened> {
    let cfg = RestoreRun::read(dir)?;
    let mut model = Restorer::new(&cfg.net, device);
    let name = if last { run::LAST } else { run::BEST };
    // A run killed after committing an epoch reads the committed copies (docs/ARCHITECTURE.md).
    let path = run::committed_path(dir, name);
    if !path.is_file() {
        return Err(Error::invalid(format!(
            "{}: no trained epoch yet ({} is missing)",
            dir.display(),
            name
        )));
    }
    run::load_vars(&mut model.vs, &path)?;
    Ok(Opened { run: cfg, model })
}

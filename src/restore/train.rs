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

pub fn run(job: &RestoreJob) -> Result<RestoreSummary> {
    job.net.validate()?;
    job.net.check_memory(job.train.batch_size, true)?;
    job.damage.validate()?;
    if job.train.batch_size == 0 || job.train.epochs == 0 || !(job.train.lr > 0.0) {
        return Err(Error::invalid(
            "restore train: --batch-size, --epochs and --lr must be positive",
        ));
    }
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
    let ds = crate::data::load(&job.data, &job.load)?;
    let size = job.net.size;
    let (train, bad_t) = split_images(&ds, Split::Train, size, job.train.limit);
    let (dev, bad_d) = split_images(&ds, Split::Dev, size, Some(job.train.dev_limit));
    if !job.quiet && !(bad_t.is_empty() && bad_d.is_empty()) {
        crate::commands::out::errln!(
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
    let data_fp = fingerprint(&train, &dev);
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
        data_fingerprint: data_fp,
        encoder_fingerprint: encoder_fp,
    };
    let cfg = if job.resume {
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
        saved
    } else {
        run::ensure_new(dir)?;
        run::write_json(&asked, &dir.join(run::CONFIG))?;
        asked
    };
    let perc = match (&job.encoder_weights, cfg.train.perceptual) {
        (Some(w), true) => Some(Perceptual::new(w, job.device)?),
        _ => None,
    };
    let tc = &cfg.train;
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
        adam.load(&dir.join(run::OPTIM), state.step, state.lr)?;
        if !job.quiet {
            crate::commands::out::errln!("resuming {} after epoch {}", dir.display(), state.epoch);
        }
    }
    let dev_damage: Vec<Damaged> = dev
        .iter()
        .map(|(id, img)| damage::damage(img, &cfg.damage, damage::seed_for(tc.seed ^ DEV_SALT, id)))
        .collect();
    while state.epoch < tc.epochs {
        let e = state.epoch;
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
        let (mut sum_m, mut sum_i, mut n) = (0.0, 0.0, 0usize);
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
            let (lm, li) = losses(&model, &b, perc.as_ref(), true);
            let loss = &lm + &li;
            adam.zero_grad();
            loss.backward();
            adam.step(0.0);
            crate::fsio::fault_point();
            let (m, i) = (lm.double_value(&[]), li.double_value(&[]));
            if !(m + i).is_finite() {
                return Err(Error::invalid(format!(
                    "training diverged (loss {}) at epoch {}: lower --lr",
                    m + i,
                    e + 1
                )));
            }
            sum_m += m * chunk.len() as f64;
            sum_i += i * chunk.len() as f64;
            n += chunk.len();
            bar.set_position(bi as u64 + 1);
            bar.set_message(format!(
                "loss {:.4} · {:.1} images/s",
                (sum_m + sum_i) / n as f64,
                n as f64 / t0.elapsed().as_secs_f64().max(1e-9)
            ));
        }
        bar.finish_and_clear();
        let secs = t0.elapsed().as_secs_f64();
        let d = if dev.is_empty() {
            None
        } else {
            Some(dev_scores(
                &model,
                &dev,
                &dev_damage,
                tc.batch_size,
                perc.as_ref(),
            )?)
        };
        let train_loss = (sum_m + sum_i) / n.max(1) as f64;
        let score_loss = d.as_ref().map_or(train_loss, |d| d.loss);
        state.epoch += 1;
        state.step = adam.step;
        state.lr = adam.lr;
        let improved = state.epoch == 1 || score_loss < state.best_dev_loss;
        if improved {
            state.best_dev_loss = score_loss;
            state.best_score = -score_loss;
            state.best_epoch = state.epoch;
        }
        let mut line = serde_json::json!({
            "epoch": state.epoch, "step": state.step, "lr": state.lr,
            "train_loss": train_loss, "train_mask_loss": sum_m / n.max(1) as f64,
            "train_inpaint_loss": sum_i / n.max(1) as f64,
            "seconds": secs, "images_per_s": n as f64 / secs.max(1e-9),
        });
        if let Some(d) = &d {
            line["dev_loss"] = d.loss.into();
            line["dev_mask_iou"] = d.iou.into();
            line["dev_mask_f1"] = d.f1.into();
            line["dev_psnr_true_mask"] = d.psnr.into();
        }
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
                "epoch {:>3}  loss {:.4} (mask {:.4}, inpaint {:.4})",
                state.epoch,
                train_loss,
                sum_m / n.max(1) as f64,
                sum_i / n.max(1) as f64
            );
            if let Some(d) = &d {
                msg += &format!(
                    "  dev loss {:.4}  mask IoU {:.3}  PSNR {:.2} dB",
                    d.loss, d.iou, d.psnr
                );
            }
            let best = if improved { "  *best" } else { "" };
            crate::commands::out::errln!("{msg}  {:.1} images/s{best}", n as f64 / secs.max(1e-9));
        }
    }
    Ok(RestoreSummary {
        epochs: state.epoch,
        best_epoch: state.best_epoch,
        best_dev_loss: state.best_dev_loss,
        seconds: started.elapsed().as_secs_f64(),
    })
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

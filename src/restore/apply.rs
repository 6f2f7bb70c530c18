//! Using a trained restoration run: restore one photo at its own resolution, evaluate a split
//! with held-out synthetic damage against the two baselines, and write a damaged copy of a
//! dataset (`captag damage`).
//!
//! The networks run at the run's training size; a photo of another size is squashed to it, its
//! mask shrunk so that no damaged pixel disappears ([`super::shrink_mask`]), and the prediction
//! scaled back: the restored photo keeps every known pixel at full resolution and takes only
//! the holes from the (upscaled) inpainter.
use std::path::{Path, PathBuf};

use image::{GrayImage, RgbImage};
use serde::Serialize;

use super::damage::{self, DamageConfig};
use super::fill;
use super::metrics::{psnr, ssim, MaskCounts};
use super::train::{split_images, Opened};
use super::{images_tensor, masks_tensor, shrink_mask, tensor_image, tensor_mask};
use crate::data::image::{resize_crop_rgb, ResizeMode};
use crate::data::{Dataset, Split};
use crate::{Error, Result};

/// Diffusion sweeps of the classical baseline.
pub const DIFFUSION_ITERS: usize = 200;

/// σ (px) of the blur-fill baseline.
pub const BLUR_SIGMA: f32 = 2.0;

/// The restored photo and the hole mask used (given or predicted), both at the photo's size.
pub struct Restored {
    pub mask: GrayImage,
    pub image: RgbImage,
}

/// Restore `img`: with `known` (a hole mask of the photo's size, non-zero = damaged) the
/// inpainter fills exactly it; without, the mask network's prediction (probability > 0.5) is
/// filled.
pub fn restore_image(m: &Opened, img: &RgbImage, known: Option<&GrayImage>) -> Result<Restored> {
    let (w, h) = img.dimensions();
    if let Some(k) = known {
        if k.dimensions() != (w, h) {
            return Err(Error::invalid(format!(
                "--mask is {}×{} but the image is {w}×{h}: the mask must have the image's size",
                k.width(),
                k.height()
            )));
        }
    }
    let s = m.run.net.size;
    let dev = m.model.vs.device();
    let small = resize_crop_rgb(img, ResizeMode::Squash, s);
    let x = images_tensor(&[&small], dev); // [1, 3, S, S]
    let (small_mask, full_mask) = match known {
        Some(k) => (shrink_mask(k, s), k.clone()),
        None => {
            let p = tensor_mask(&m.model.detect(&x), 0, 0.5)?;
            let full = image::imageops::resize(&p, w, h, image::imageops::FilterType::Nearest);
            // The full-resolution mask decides which pixels are replaced; the small one must
            // cover all of them.
            (shrink_mask(&full, s), full)
        }
    };
    let hole = masks_tensor(&[&small_mask], dev); // [1, 1, S, S]
    let filled = tensor_image(&m.model.fill(&x, &hole), 0)?;
    let up = image::imageops::resize(&filled, w, h, image::imageops::FilterType::Triangle);
    let mut out = img.clone();
    for (x, y, p) in out.enumerate_pixels_mut() {
        if full_mask.get_pixel(x, y).0[0] > 0 {
            *p = *up.get_pixel(x, y);
        }
    }
    let mask = GrayImage::from_fn(w, h, |x, y| {
        image::Luma([if full_mask.get_pixel(x, y).0[0] > 0 {
            255
        } else {
            0
        }])
    });
    Ok(Restored { mask, image: out })
}

/// Image quality of one way of restoring, averaged over images.
#[derive(Clone, Debug, Serialize)]
pub struct QualityRow {
    pub method: String,
    pub psnr: f64,
    pub ssim: f64,
}

/// What `captag restore eval` prints.
#[derive(Clone, Debug, Serialize)]
pub struct EvalReport {
    pub split: String,
    pub images: usize,
    pub size: u32,
    /// Pixel-level over all images.
    pub mask_iou: f64,
    pub mask_f1: f64,
    /// Mean over images of each image's IoU.
    pub mean_image_iou: f64,
    /// Share of pixels damaged.
    pub damaged_share: f64,
    /// Whether the run trained on exactly this damage (`--fixed-damage`), i.e. it is not held out.
    pub seen_in_training: bool,
    pub rows: Vec<QualityRow>,
    pub seconds_per_image: f64,
}

/// Damage every image of `split` (the first `limit` by id) with held-out damage seeded by
/// `(seed, image id)`, then score: the predicted mask against the true one; PSNR/SSIM against
/// the undamaged image of the damaged image itself, the blur fill (true mask), and the diffusion
/// fill and the inpainter, each with the true and with the predicted mask.
pub fn evaluate(
    m: &Opened,
    ds: &Dataset,
    split: Split,
    limit: Option<usize>,
    seed: u64,
    bar: &indicatif::ProgressBar,
) -> Result<EvalReport> {
    let s = m.run.net.size;
    let (imgs, bad) = split_images(ds, split, s, limit);
    if imgs.is_empty() {
        return Err(Error::invalid(format!(
            "no readable images in the {split} split{}",
            bad.first().map(|b| format!(" ({b})")).unwrap_or_default()
        )));
    }
    bar.set_length(imgs.len() as u64);
    let dev = m.model.vs.device();
    const METHODS: [&str; 6] = [
        "damaged input",
        "blur fill, true mask",
        "diffusion fill, true mask",
        "partial-conv U-Net, true mask",
        "diffusion fill, predicted mask",
        "partial-conv U-Net, predicted mask",
    ];
    let mut sums = [[0.0f64; 2]; 6];
    let (mut counts, mut iou_sum, mut damaged) = (MaskCounts::default(), 0.0, 0usize);
    let mut restore_secs = 0.0;
    for chunk in imgs.chunks(16) {
        let dmg: Vec<damage::Damaged> = chunk
            .iter()
            .map(|(id, img)| {
                damage::damage(
                    img,
                    &m.run.damage,
                    damage::seed_for(seed ^ damage::EVAL_SALT, id),
                )
            })
            .collect();
        let t0 = std::time::Instant::now();
        let x = images_tensor(&dmg.iter().map(|d| &d.image).collect::<Vec<_>>(), dev);
        let prob = m.model.detect(&x);
        let pred_hole = prob.gt(0.5).to_kind(tch::Kind::Float);
        let true_hole = masks_tensor(&dmg.iter().map(|d| &d.mask).collect::<Vec<_>>(), dev);
        let by_true = m.model.fill(&x, &true_hole);
        let by_pred = m.model.fill(&x, &pred_hole);
        restore_secs += t0.elapsed().as_secs_f64();
        for (i, ((_, clean), d)) in chunk.iter().zip(&dmg).enumerate() {
            let i = i as i64;
            let truth = super::holes(&d.mask);
            let pred = super::holes(&tensor_mask(&pred_hole, i, 0.5)?);
            let c = MaskCounts::of(&pred, &truth);
            counts.add(&c);
            iou_sum += c.iou();
            damaged += truth.iter().filter(|&&t| t).count();
            let outs = [
                d.image.clone(),
                fill::blur(&d.image, &truth, BLUR_SIGMA),
                fill::diffusion(&d.image, &truth, DIFFUSION_ITERS),
                tensor_image(&by_true, i)?,
                fill::diffusion(&d.image, &pred, DIFFUSION_ITERS),
                tensor_image(&by_pred, i)?,
            ];
            for (sum, out) in sums.iter_mut().zip(&outs) {
                sum[0] += psnr(out, clean);
                sum[1] += ssim(out, clean);
            }
            bar.inc(1);
        }
    }
    let n = imgs.len() as f64;
    Ok(EvalReport {
        split: split.to_string(),
        images: imgs.len(),
        size: s,
        mask_iou: counts.iou(),
        mask_f1: counts.f1(),
        mean_image_iou: iou_sum / n,
        damaged_share: damaged as f64 / (n * (s * s) as f64),
        seen_in_training: m.run.train.fixed_damage && split == Split::Train,
        rows: METHODS
            .iter()
            .zip(sums)
            .map(|(name, [p, q])| QualityRow {
                method: name.to_string(),
                psnr: p / n,
                ssim: q / n,
            })
            .collect(),
        seconds_per_image: restore_secs / n,
    })
}

/// What `captag damage` wrote.
#[derive(Clone, Debug, Serialize)]
pub struct DamageSummary {
    pub images: usize,
    /// Mean share of damaged pixels per image.
    pub damaged_share: f64,
    pub skipped: Vec<String>,
}

/// One entry of `damage.json`.
#[derive(Clone, Debug, Serialize)]
struct Entry {
    id: String,
    split: Split,
    image: String,
    mask: String,
    clean: Option<String>,
    ops: Vec<damage::DamageKind>,
}

/// Write a damaged copy of every image of `ds` into `out` (which must not exist or be empty):
/// `images/NAME.png`, `masks/NAME.png` (255 = damaged), with `size` also `clean/NAME.png` (the
/// resized original the scores compare against), and `damage.json` (seed, size, config, and per
/// image its split, files and damage operations). Damage is seeded by `(seed, image id)`.
pub fn write_damaged(
    ds: &Dataset,
    out: &Path,
    cfg: &DamageConfig,
    seed: u64,
    size: Option<u32>,
    bar: &indicatif::ProgressBar,
) -> Result<DamageSummary> {
    cfg.validate()?;
    if size == Some(0) {
        return Err(Error::invalid("--size must be positive"));
    }
    if let Some(s) = size {
        // The resized image, its damaged copy and mask, and the drawing's float buffers.
        use crate::config::budget;
        let need = budget::product(&[s as i64, s as i64, 3, 4, 4]);
        budget::check(need, || format!("damage --size {s}"))?;
    }
    if out.exists() {
        let empty = std::fs::read_dir(out)
            .map_err(|e| Error::io(out, e))?
            .next()
            .is_none();
        if !empty {
            return Err(Error::invalid(format!(
                "{}: exists and is not empty; choose a new --out",
                out.display()
            )));
        }
    }
    let dirs: Vec<PathBuf> = ["images", "masks", "clean"]
        .iter()
        .filter(|d| size.is_some() || **d != "clean")
        .map(|d| out.join(d))
        .collect();
    for d in &dirs {
        std::fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
    }
    let mut samples: Vec<(&str, &Path, Split)> = ds
        .samples
        .iter()
        .map(|s| (s.id.as_str(), s.path.as_path(), s.split))
        .collect();
    samples.sort();
    samples.dedup_by(|a, b| a.0 == b.0);
    bar.set_length(samples.len() as u64);
    let (mut entries, mut skipped, mut share) = (vec![], vec![], 0.0);
    for (id, path, split) in samples {
        bar.inc(1);
        let img = match crate::data::image::decode_rgb(path) {
            Ok(i) => i,
            Err(e) => {
                skipped.push(e.to_string());
                continue;
            }
        };
        let img = match size {
            Some(s) => resize_crop_rgb(&img, ResizeMode::Squash, s),
            None => img,
        };
        let d = damage::damage(&img, cfg, damage::seed_for(seed, id));
        let holes = d.mask.as_raw().iter().filter(|&&v| v > 0).count();
        share += holes as f64 / d.mask.as_raw().len().max(1) as f64;
        let stem = Path::new(id)
            .file_stem()
            .map_or_else(|| id.to_string(), |s| s.to_string_lossy().into_owned());
        let name = format!("{stem}.png");
        let write = |dir: &str, bytes: Vec<u8>| {
            crate::fsio::write_atomic(&out.join(dir).join(&name), &bytes, false)
        };
        write("images", super::encode_png(&d.image)?)?;
        write("masks", super::encode_png(&d.mask)?)?;
        if size.is_some() {
            write("clean", super::encode_png(&img)?)?;
        }
        entries.push(Entry {
            id: id.to_string(),
            split,
            image: format!("images/{name}"),
            mask: format!("masks/{name}"),
            clean: size.map(|_| format!("clean/{name}")),
            ops: d.ops,
        });
    }
    let manifest = serde_json::json!({
        "seed": seed, "size": size, "damage": cfg, "images": entries,
    });
    let text = serde_json::to_vec_pretty(&manifest).map_err(|e| Error::invalid(e.to_string()))?;
    crate::fsio::write_atomic(&out.join("damage.json"), &text, true)?;
    Ok(DamageSummary {
        images: entries.len(),
        damaged_share: share / entries.len().max(1) as f64,
        skipped,
    })
}

/// A hole mask file: any image captag reads; a pixel is damaged when its luma is ≥ 128.
pub fn read_mask(path: &Path) -> Result<GrayImage> {
    let rgb = crate::data::image::decode_rgb(path)?;
    Ok(GrayImage::from_fn(rgb.width(), rgb.height(), |x, y| {
        let p = rgb.get_pixel(x, y).0;
        let luma = (299 * p[0] as u32 + 587 * p[1] as u32 + 114 * p[2] as u32) / 1000;
        image::Luma([if luma >= 128 { 255 } else { 0 }])
    }))
}

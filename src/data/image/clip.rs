//! CLIP's image preprocessing as `CLIPImageProcessor` runs it on PIL images (the PIL backend of
//! `transformers` 5, and OpenAI's own `Resize(BICUBIC) → CenterCrop → Normalize`): the shorter
//! side resized to `shortest_edge` with Pillow's resampling (bicubic by default), the centre
//! `crop × crop` cut with `transformers`' floor offsets (torchvision rounds, so captag's
//! bilinear path in `data::image` is not reused here), `/ 255`, then `(x − mean) / std` with
//! the folder's `preprocessor_config.json` or CLIP's defaults.
//!
//! It lives with the other preprocessing because it is one: a [`ClipPreprocess`] becomes a
//! [`Preprocess`] (`ResizeMode::ClipCrop` + `Normalization::MeanStd`) stored in a `clip`
//! encoder run's config, and the batch loader, `caption`, `eval` and `serve` then run it through
//! [`super::preprocess_rgb_into`] like every encoder's (docs/ARCHITECTURE.md, "Features").
//!
//! Pillow's separable resampling is reproduced exactly (`libImaging/Resample.c`: the filter's
//! support widens with the downscale factor, 22-bit fixed-point weights, a horizontal then a
//! vertical pass each rounded to `u8`), so the `u8` picture equals PIL's.
use std::path::Path;

use image::RgbImage;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tch::Tensor;

use super::{Normalization, Preprocess, ResizeMode};
use crate::{Error, Result};

/// OpenAI CLIP's normalisation (`OPENAI_CLIP_MEAN`, `OPENAI_CLIP_STD`).
pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
pub const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];

/// Pillow's resampling filter (`resample` 2 or 3 in `preprocessor_config.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Filter {
    Bilinear,
    Bicubic,
}

impl Filter {
    fn support(self) -> f64 {
        match self {
            Filter::Bilinear => 1.0,
            Filter::Bicubic => 2.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        let x = x.abs();
        match self {
            Filter::Bilinear => (1.0 - x).max(0.0),
            Filter::Bicubic => {
                const A: f64 = -0.5;
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
        }
    }
}

/// What `preprocessor_config.json` says (or CLIP's defaults: 224, bicubic, OpenAI mean/std).
#[derive(Debug, Clone, PartialEq)]
pub struct ClipPreprocess {
    pub shortest_edge: u32,
    pub crop: u32,
    pub filter: Filter,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Default for ClipPreprocess {
    fn default() -> Self {
        ClipPreprocess {
            shortest_edge: 224,
            crop: 224,
            filter: Filter::Bicubic,
            mean: CLIP_MEAN,
            std: CLIP_STD,
        }
    }
}

impl ClipPreprocess {
    /// `dir/preprocessor_config.json` when present (both the old `"size": 224` and the newer
    /// `{"shortest_edge": 224}` / `{"height", "width"}` forms), else the defaults with
    /// `image_size` as the size.
    pub fn read(dir: &Path, image_size: i64) -> Result<Self> {
        let mut p = ClipPreprocess {
            shortest_edge: image_size as u32,
            crop: image_size as u32,
            ..Default::default()
        };
        let path = dir.join("preprocessor_config.json");
        if !path.exists() {
            return Ok(p);
        }
        let bad = |why: &str| Error::invalid(format!("{}: {why}", path.display()));
        let text = crate::input::read_text(&path, crate::input::TEXT, "a preprocessor config")?;
        let v: Value = serde_json::from_str(&text).map_err(|_| bad("not valid JSON"))?;
        let side = |v: &Value, keys: &[&str]| -> Option<u32> {
            v.as_u64()
                .or_else(|| keys.iter().find_map(|k| v[*k].as_u64()))
                .map(|n| n as u32)
        };
        if let Some(s) = side(&v["size"], &["shortest_edge"]) {
            p.shortest_edge = s;
        } else if !v["size"].is_null() {
            return Err(bad("`size` must be a number or {\"shortest_edge\": N}"));
        }
        if let Some(c) = side(&v["crop_size"], &["height"]) {
            if side(&v["crop_size"], &["width"]).is_some_and(|w| w != c) {
                return Err(bad("a non-square crop_size is not supported"));
            }
            p.crop = c;
        }
        p.filter = match v["resample"].as_u64() {
            None | Some(3) => Filter::Bicubic,
            Some(2) => Filter::Bilinear,
            Some(r) => return Err(bad(&format!("resample {r} is not supported (2 or 3)"))),
        };
        let triple = |v: &Value| -> Option<[f32; 3]> {
            let a = v.as_array()?;
            (a.len() == 3).then(|| [0, 1, 2].map(|i| a[i].as_f64().unwrap_or(f64::NAN) as f32))
        };
        if !v["image_mean"].is_null() {
            p.mean = triple(&v["image_mean"]).ok_or_else(|| bad("image_mean must be 3 numbers"))?;
        }
        if !v["image_std"].is_null() {
            p.std = triple(&v["image_std"]).ok_or_else(|| bad("image_std must be 3 numbers"))?;
        }
        if p.shortest_edge < p.crop || p.crop == 0 {
            return Err(bad(
                "the crop must be at least 1 and at most the resized shorter side",
            ));
        }
        // Refused where read: a std of 0 (or a NaN) makes every pixel infinite, and every
        // caption empty with no error.
        if p.mean.iter().chain(&p.std).any(|x| !x.is_finite()) || p.std.contains(&0.0) {
            return Err(bad(
                "image_mean and image_std must be finite, image_std non-zero",
            ));
        }
        Ok(p)
    }

    /// The same steps as a [`Preprocess`] (what a run stores and the loader runs).
    pub fn preprocess(&self) -> Preprocess {
        Preprocess {
            size: self.crop,
            resize: ResizeMode::ClipCrop {
                shortest_edge: self.shortest_edge,
                filter: self.filter,
            },
            norm: Normalization::MeanStd {
                mean: self.mean,
                std: self.std,
            },
        }
    }

    /// An image file (JPEG or PNG, read through the bounded reader and decoded as captag
    /// decodes every image) ⇒ `(3, crop, crop)`.
    pub fn load(&self, path: &Path) -> Result<Tensor> {
        Ok(self.tensor(&super::decode_rgb(path)?))
    }

    /// An RGB picture ⇒ `(3, crop, crop)` float tensor, normalised (through
    /// [`super::preprocess_rgb`], the loader's path).
    pub fn tensor(&self, img: &RgbImage) -> Tensor {
        let c = self.crop as i64;
        Tensor::from_slice(&super::preprocess_rgb(img, &self.preprocess())).view([3, c, c])
    }

    /// The `crop × crop` RGB bytes (row-major, interleaved) after resize and centre crop.
    pub fn resize_crop(&self, img: &RgbImage) -> Vec<u8> {
        resize_crop(img, self.shortest_edge, self.crop, self.filter)
    }
}

/// Where CLIP's resize puts a `w × h` picture: the resized size (`transformers`
/// `get_resize_output_image_size`: the shorter side to `edge`, the longer `int(edge · long /
/// short)`, truncated) and the floor-centred crop's corner. `edge` is raised to `crop` if less.
pub(super) fn geometry(w: u32, h: u32, edge: u32, crop: u32) -> ((u32, u32), u32, u32) {
    let edge = edge.max(crop);
    let s = edge as f64;
    let (rw, rh) = if w <= h {
        (edge, ((s * h as f64 / w.max(1) as f64) as u32).max(edge))
    } else {
        (((s * w as f64 / h.max(1) as f64) as u32).max(edge), edge)
    };
    ((rw, rh), (rw - crop) / 2, (rh - crop) / 2)
}

/// CLIP's resize (Pillow, `filter`) and floor-centred `crop × crop` cut: interleaved RGB bytes.
pub fn resize_crop(img: &RgbImage, shortest_edge: u32, crop: u32, filter: Filter) -> Vec<u8> {
    let (w, h) = img.dimensions();
    if w == 0 || h == 0 || crop == 0 {
        return vec![0; 3 * crop as usize * crop as usize];
    }
    let ((rw, rh), x0, y0) = geometry(w, h, shortest_edge, crop);
    let resized = resample(img, rw, rh, filter);
    let mut out = Vec::with_capacity(3 * (crop * crop) as usize);
    for y in y0..y0 + crop {
        let row = (y as usize * rw as usize + x0 as usize) * 3;
        out.extend_from_slice(&resized[row..row + 3 * crop as usize]);
    }
    out
}

const PRECISION_BITS: u32 = 22;

/// Pillow `precompute_coeffs` + `normalize_coeffs_8bpc` for an `input → output` axis: per output
/// pixel, the first input pixel and its fixed-point weights.
fn coeffs(input: u32, output: u32, filter: Filter) -> Vec<(usize, Vec<i32>)> {
    let scale = input as f64 / output as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    (0..output)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            // C's `(int)` truncates toward zero; both bounds are then clamped into the image.
            let xmin = ((center - support + 0.5) as i64).max(0);
            let xmax = ((center + support + 0.5) as i64).min(input as i64);
            let w: Vec<f64> = (xmin..xmax)
                .map(|x| filter.weight((x as f64 - center + 0.5) / filterscale))
                .collect();
            let total: f64 = w.iter().sum();
            let fixed = w
                .iter()
                .map(|&k| {
                    let k = if total != 0.0 { k / total } else { k };
                    let f = k * (1u32 << PRECISION_BITS) as f64;
                    if k < 0.0 {
                        (f - 0.5) as i32
                    } else {
                        (f + 0.5) as i32
                    }
                })
                .collect();
            (xmin as usize, fixed)
        })
        .collect()
}

/// Pillow `clip8` after the rounding offset: drop the fraction bits, clamp to a byte.
fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Pillow's `Image.resize((w, h), filter)` of an 8-bit RGB image: interleaved RGB bytes.
pub fn resample(img: &RgbImage, w: u32, h: u32, filter: Filter) -> Vec<u8> {
    let (iw, ih) = img.dimensions();
    let src = img.as_raw();
    let half = 1i32 << (PRECISION_BITS - 1);
    // Horizontal pass (skipped, as in Pillow, when the width does not change).
    let horiz: Vec<u8> = if w != iw {
        let k = coeffs(iw, w, filter);
        let mut out = vec![0u8; (w * ih * 3) as usize];
        for y in 0..ih as usize {
            let row = &src[y * iw as usize * 3..(y + 1) * iw as usize * 3];
            for (x, (start, ws)) in k.iter().enumerate() {
                let mut acc = [half; 3];
                for (j, &wt) in ws.iter().enumerate() {
                    let p = &row[(start + j) * 3..(start + j) * 3 + 3];
                    for c in 0..3 {
                        acc[c] += p[c] as i32 * wt;
                    }
                }
                let o = (y * w as usize + x) * 3;
                for c in 0..3 {
                    out[o + c] = clip8(acc[c]);
                }
            }
        }
        out
    } else {
        src.clone()
    };
    if h == ih {
        return horiz;
    }
    let k = coeffs(ih, h, filter);
    let mut out = vec![0u8; (w * h * 3) as usize];
    let stride = w as usize * 3;
    for (y, (start, ws)) in k.iter().enumerate() {
        for x in 0..stride {
            let mut acc = half;
            for (j, &wt) in ws.iter().enumerate() {
                acc += horiz[(start + j) * stride + x] as i32 * wt;
            }
            out[y * stride + x] = clip8(acc);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bicubic_weights_sum_to_one_and_identity_is_exact() {
        for (i, o) in [(100, 37), (37, 100), (224, 224)] {
            for (_, ws) in coeffs(i, o, Filter::Bicubic) {
                let s: i64 = ws.iter().map(|&w| w as i64).sum();
                assert!((s - (1 << PRECISION_BITS)).abs() <= ws.len() as i64, "{s}");
            }
        }
        let img = RgbImage::from_fn(9, 7, |x, y| image::Rgb([x as u8 * 20, y as u8 * 30, 7]));
        assert_eq!(resample(&img, 9, 7, Filter::Bicubic), img.as_raw().clone());
    }

    /// A run stores CLIP's preprocessing as a `Preprocess` in config.json: it reads back equal,
    /// and the loader's path (`preprocess_rgb`, `resize_crop_rgb`) cuts the same pixels.
    #[test]
    fn the_stored_preprocess_round_trips_and_cuts_the_same_pixels() {
        let p = ClipPreprocess {
            shortest_edge: 40,
            crop: 32,
            filter: Filter::Bilinear,
            mean: [0.1, 0.2, 0.3],
            std: [0.5, 0.25, 0.125],
        };
        let pre = p.preprocess();
        let json = serde_json::to_string(&pre).unwrap();
        assert_eq!(serde_json::from_str::<Preprocess>(&json).unwrap(), pre);
        let img = RgbImage::from_fn(70, 45, |x, y| {
            image::Rgb([(x * 3) as u8, (y * 5) as u8, 90])
        });
        let bytes = p.resize_crop(&img);
        assert_eq!(
            super::super::resize_crop_rgb(&img, pre.resize, 32).into_raw(),
            bytes
        );
        let chw = super::super::preprocess_rgb(&img, &pre);
        // Red of the first pixel, by CLIPImageProcessor's formula.
        assert_eq!(chw[0], (bytes[0] as f32 * (1.0 / 255.0) - 0.1) / 0.5);
        let mut bad = pre;
        bad.size = 48;
        assert!(bad.check().unwrap_err().contains("shortest_edge 40"));
    }
}

//! `captag synth`: the built-in synthetic dataset for demos and tests. Images of 1–3 coloured
//! shapes with captions that are only right if the model looks at the image, written in the
//! on-disk layout of Flickr8k (Kaggle `Images/` + `captions.txt`, plus the UIUC split lists) or
//! of the Kaggle Instagram dataset (`captions_csv.csv` + `img/`), so the real loaders read it.
//!
//! Everything is a function of the config: image `i` draws from its own ChaCha8 stream keyed by
//! (seed, i), so the output is byte-identical across runs and thread counts.
pub mod caption;
pub mod draw;
pub mod scene;
pub mod truth;

use std::fs;
use std::path::{Path, PathBuf};

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
pub use caption::{instagram_caption, scene_captions, CAPTIONS_PER_IMAGE};
pub use scene::{random_scene, Scene};

/// Which real dataset's files to imitate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SynthLayout {
    /// `Images/synth_00001.jpg`, `captions.txt` (5 per image), `Flickr_8k.*Images.txt` splits.
    Flickr8k,
    /// `img/insta1.jpg`, `captions_csv.csv` (one hashtagged caption per image, noisy rows).
    Instagram,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SynthConfig {
    /// Number of images (Instagram: rows, a few of whose images are deliberately absent).
    pub count: usize,
    /// Image side in pixels (at least 32).
    pub size: u32,
    pub seed: u64,
    pub layout: SynthLayout,
    /// Pixel noise, colour jitter and a background drawn from several muted tones.
    pub noise: bool,
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig {
            count: 1000,
            size: 96,
            seed: 0,
            layout: SynthLayout::Flickr8k,
            noise: true,
        }
    }
}

/// Smallest image side at which small shapes are still a few pixels across.
pub const MIN_SIZE: u32 = 32;
/// Largest image side accepted (beyond this the dataset is only slower, not better).
pub const MAX_SIZE: u32 = 1024;
const JPEG_QUALITY: u8 = 95;
/// Marker file naming the output directory as ours, so it may be overwritten by a later run.
pub const MARKER: &str = "synth.json";
const GENERATOR: &str = "captag synth";

impl SynthConfig {
    /// Rejects a config before any file is touched.
    pub fn validate(&self) -> Result<()> {
        if self.count == 0 {
            return Err(Error::invalid("synth: --count must be at least 1"));
        }
        if !(MIN_SIZE..=MAX_SIZE).contains(&self.size) {
            return Err(Error::invalid(format!(
                "synth: --size must be between {MIN_SIZE} and {MAX_SIZE} pixels, got {}",
                self.size
            )));
        }
        Ok(())
    }
}

/// What [`generate`] wrote; also stored in `synth.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SynthSummary {
    /// Not stored in `synth.json`, which must not depend on where the dataset was written.
    #[serde(skip)]
    pub out: PathBuf,
    pub layout: SynthLayout,
    /// JPEG files written.
    pub images: usize,
    /// Caption rows written (Flickr8k: 5 per image; Instagram: one per row, empty ones included).
    pub captions: usize,
    /// Instagram rows whose image was deliberately not written.
    pub missing_images: usize,
    /// Instagram rows with an empty caption.
    pub empty_captions: usize,
    /// Flickr8k train/dev/test image counts; `None` for Instagram, which has no splits.
    pub splits: Option<[usize; 3]>,
}

impl std::fmt::Display for SynthSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "wrote {} images and {} captions to {}",
            self.images,
            self.captions,
            self.out.display()
        )?;
        if let Some([tr, dv, te]) = self.splits {
            write!(f, " (train {tr}, dev {dv}, test {te})")?;
        }
        if self.layout == SynthLayout::Instagram {
            write!(
                f,
                " ({} images left out on purpose, {} empty captions)",
                self.missing_images, self.empty_captions
            )?;
        }
        Ok(())
    }
}

/// Contents of `synth.json`. `complete` is false while a run is in progress, so an interrupted
/// run is recognisable and a rerun may overwrite it.
#[derive(Serialize, Deserialize)]
struct Marker {
    generator: String,
    version: String,
    complete: bool,
    config: SynthConfig,
    summary: Option<SynthSummary>,
}

/// Image `index`'s RNG for one `purpose`: independent ChaCha8 streams, so the scene (and hence the
/// captions) does not depend on the layout or on whether noise was drawn.
fn rng_for(seed: u64, index: usize, purpose: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(((index as u64) << 2) | purpose);
    rng
}
const SCENE: u64 = 0;
const PIXELS: u64 = 1;
const LAYOUT: u64 = 2;

/// The scene of image `index` (0-based) under `cfg`, exactly as [`generate`] draws it.
pub fn scene_for(cfg: &SynthConfig, index: usize) -> Scene {
    random_scene(&mut rng_for(cfg.seed, index, SCENE), cfg.size, cfg.noise)
}

/// What the caption files need to know about one image once its JPEG is written.
struct Item {
    /// False for the Instagram rows whose image is left out on purpose.
    has_image: bool,
    captions: Vec<String>,
}

/// Image `index`'s JPEG bytes (`None`: deliberately absent) and captions.
fn make_item(cfg: &SynthConfig, index: usize) -> Result<(Option<Vec<u8>>, Vec<String>)> {
    let mut rng = rng_for(cfg.seed, index, SCENE);
    let scene = random_scene(&mut rng, cfg.size, cfg.noise);
    let (captions, missing) = match cfg.layout {
        SynthLayout::Flickr8k => (scene_captions(&scene, &mut rng), false),
        SynthLayout::Instagram => {
            let mut lr = rng_for(cfg.seed, index, LAYOUT);
            // About 1% of rows point at an image that is not there, as in the real dataset.
            let missing = lr.gen_bool(0.01);
            (vec![instagram_caption(&scene, &mut lr)], missing)
        }
    };
    let jpeg = if missing {
        None
    } else {
        let img = draw::render(&scene, cfg.noise, &mut rng_for(cfg.seed, index, PIXELS));
        Some(draw::encode_jpeg(&img, JPEG_QUALITY)?)
    };
    Ok((jpeg, captions))
}

/// Where image `index` (0-based) goes, relative to the output directory.
fn image_rel(layout: SynthLayout, index: usize) -> String {
    match layout {
        SynthLayout::Flickr8k => format!("Images/synth_{:05}.jpg", index + 1),
        SynthLayout::Instagram => format!("img/insta{}.jpg", index + 1),
    }
}

fn is_ours(name: &str) -> bool {
    const TOP: [&str; 6] = [
        "captions.txt",
        "captions_csv.csv",
        "Flickr_8k.trainImages.txt",
        "Flickr_8k.devImages.txt",
        "Flickr_8k.testImages.txt",
        MARKER,
    ];
    TOP.contains(&name)
        || (name.starts_with("synth_") && name.ends_with(".jpg"))
        || (name.starts_with("insta") && name.ends_with(".jpg"))
        || (name.starts_with('.') && name.ends_with(".tmp"))
}

/// Makes `out` ready: created if absent; if it holds anything, it must carry our marker, and
/// the files a previous run wrote are removed (a smaller rerun must not leave stale images).
fn prepare_out(out: &Path) -> Result<()> {
    if out.exists() {
        if !out.is_dir() {
            return Err(Error::invalid(format!(
                "{}: exists and is not a directory",
                out.display()
            )));
        }
        let mut entries = fs::read_dir(out).map_err(|e| Error::io(out, e))?;
        if entries.next().is_some() {
            let marker_path = out.join(MARKER);
            let text = crate::input::read_text(&marker_path, crate::input::TEXT, "a synth marker")
                .map_err(|_| {
                Error::invalid(format!(
                    "{}: directory is not empty and has no {MARKER} from a previous `captag synth`; \
                     refusing to write a synthetic dataset into it",
                    out.display()
                ))
            })?;
            let ours =
                serde_json::from_str::<Marker>(&text).is_ok_and(|m| m.generator == GENERATOR);
            if !ours {
                return Err(Error::invalid(format!(
                    "{}: not written by `captag synth`; refusing to overwrite the directory",
                    marker_path.display()
                )));
            }
            for dir in [out.to_path_buf(), out.join("Images"), out.join("img")] {
                remove_ours(&dir)?;
            }
        }
    }
    fs::create_dir_all(out).map_err(|e| Error::io(out, e))
}

/// Removes our files in `dir` (non-recursive), and `dir` itself if that leaves it empty.
fn remove_ours(dir: &Path) -> Result<()> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.path().is_file() && is_ours(&name) {
            fs::remove_file(entry.path()).map_err(|e| Error::io(entry.path(), e))?;
        }
    }
    // Only succeeds when empty: an `Images/` left behind by a Flickr8k run would make a
    // later Instagram output look like Flickr8k to layout detection.
    let _ = fs::remove_dir(dir);
    Ok(())
}

fn write_marker(out: &Path, cfg: &SynthConfig, summary: Option<&SynthSummary>) -> Result<()> {
    let marker = Marker {
        generator: GENERATOR.to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        complete: summary.is_some(),
        config: cfg.clone(),
        summary: summary.cloned(),
    };
    let mut json = serde_json::to_vec_pretty(&marker)
        .map_err(|e| Error::invalid(format!("cannot serialize {MARKER}: {e}")))?;
    json.push(b'\n');
    crate::fsio::write_atomic(&out.join(MARKER), &json, true)
}

/// Builds and writes images `0..count` on a few threads (contiguous index ranges, each image from
/// its own RNG, so the thread count cannot change the output); returns the items in index order.
fn write_images(out: &Path, cfg: &SynthConfig) -> Result<Vec<Item>> {
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 8);
    let chunk = cfg.count.div_ceil(threads).max(1);
    let indices: Vec<usize> = (0..cfg.count).collect();
    let results: Vec<Result<Vec<Item>>> = std::thread::scope(|s| {
        let handles: Vec<_> = indices
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .map(|&i| {
                            let (jpeg, captions) = make_item(cfg, i)?;
                            if let Some(jpeg) = &jpeg {
                                // Not fsynced: one sync per image would dominate the run time, and
                                // `synth.json` stays `complete: false` until everything is written.
                                crate::fsio::write_atomic(
                                    &out.join(image_rel(cfg.layout, i)),
                                    jpeg,
                                    false,
                                )?;
                            }
                            Ok(Item {
                                has_image: jpeg.is_some(),
                                captions,
                            })
                        })
                        .collect::<Result<Vec<Item>>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::invalid("synth: a worker thread panicked")))
            })
            .collect()
    });
    let mut items = Vec::with_capacity(cfg.count);
    for r in results {
        items.extend(r?);
    }
    Ok(items)
}

fn csv_bytes(header: &[&str], rows: impl Iterator<Item = Vec<String>>) -> Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let err = |e: csv::Error| Error::invalid(format!("cannot write synthetic CSV: {e}"));
    w.write_record(header).map_err(err)?;
    for row in rows {
        w.write_record(&row).map_err(err)?;
    }
    w.into_inner()
        .map_err(|e| Error::invalid(format!("cannot write synthetic CSV: {e}")))
}

/// Deterministic 80/10/10 split of `n` images (at least one dev and one test image from 3 up).
fn split_indices(n: usize, seed: u64) -> [Vec<usize>; 3] {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rng_for(seed, usize::MAX >> 2, LAYOUT));
    let tenth = |n: usize| if n >= 3 { ((n + 5) / 10).max(1) } else { 0 };
    let (dev, test) = (tenth(n), tenth(n));
    let mut parts = [
        order[dev + test..].to_vec(),
        order[..dev].to_vec(),
        order[dev..dev + test].to_vec(),
    ];
    for p in &mut parts {
        p.sort_unstable();
    }
    parts
}

fn write_flickr8k(out: &Path, cfg: &SynthConfig, items: &[Item]) -> Result<SynthSummary> {
    let name = |i: usize| format!("synth_{:05}.jpg", i + 1);
    let rows = items
        .iter()
        .enumerate()
        .flat_map(|(i, it)| it.captions.iter().map(move |c| vec![name(i), c.clone()]));
    let bytes = csv_bytes(&["image", "caption"], rows)?;
    let splits = split_indices(items.len(), cfg.seed);
    let files = [
        "Flickr_8k.trainImages.txt",
        "Flickr_8k.devImages.txt",
        "Flickr_8k.testImages.txt",
    ];
    for (file, part) in files.iter().zip(&splits) {
        let text: String = part.iter().map(|&i| name(i) + "\n").collect();
        crate::fsio::write_atomic(&out.join(file), text.as_bytes(), true)?;
    }
    crate::fsio::write_atomic(&out.join("captions.txt"), &bytes, true)?;
    Ok(SynthSummary {
        out: out.to_path_buf(),
        layout: SynthLayout::Flickr8k,
        images: items.len(),
        captions: items.iter().map(|it| it.captions.len()).sum(),
        missing_images: 0,
        empty_captions: 0,
        splits: Some([splits[0].len(), splits[1].len(), splits[2].len()]),
    })
}

fn write_instagram(out: &Path, items: &[Item]) -> Result<SynthSummary> {
    let rows = items.iter().enumerate().map(|(i, it)| {
        let caption = it.captions.first().cloned().unwrap_or_default();
        vec![(i + 1).to_string(), format!("img/insta{}", i + 1), caption]
    });
    let bytes = csv_bytes(&["Sr No", "Image File", "Caption"], rows)?;
    crate::fsio::write_atomic(&out.join("captions_csv.csv"), &bytes, true)?;
    let missing = items.iter().filter(|it| !it.has_image).count();
    Ok(SynthSummary {
        out: out.to_path_buf(),
        layout: SynthLayout::Instagram,
        images: items.len() - missing,
        captions: items.len(),
        missing_images: missing,
        empty_captions: items
            .iter()
            .filter(|it| it.captions.iter().all(|c| c.is_empty()))
            .count(),
        splits: None,
    })
}

/// Writes the synthetic dataset described by `cfg` into `out` (created if needed). Refuses a
/// non-empty `out` that a previous run did not mark as its own. Images are written first, the
/// caption files (atomically) after, and `synth.json` last with `complete: true`.
pub fn generate(out: &Path, cfg: &SynthConfig) -> Result<SynthSummary> {
    cfg.validate()?;
    prepare_out(out)?;
    write_marker(out, cfg, None)?;
    let image_dir = out.join(match cfg.layout {
        SynthLayout::Flickr8k => "Images",
        SynthLayout::Instagram => "img",
    });
    fs::create_dir_all(&image_dir).map_err(|e| Error::io(&image_dir, e))?;
    let items = write_images(out, cfg)?;
    let summary = match cfg.layout {
        SynthLayout::Flickr8k => write_flickr8k(out, cfg, &items)?,
        SynthLayout::Instagram => write_instagram(out, &items)?,
    };
    write_marker(out, cfg, Some(&summary))?;
    Ok(summary)
}

#[cfg(test)]
mod tests;

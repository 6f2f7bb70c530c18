//! Inference: a run directory opened by [`crate::run::open`] becomes a ready [`Loaded`] that
//! captions image files (decoded on worker threads, batched through the encoder and the
//! decoder) or images of a feature cache.
pub mod attention_map;
pub mod llm_post;
pub mod moods;
mod result;
pub mod social;
pub mod tags;
pub mod translate;
pub mod vl;

pub use result::{CaptionResult, Extras};

use std::path::{Path, PathBuf};

use tch::{Device, Tensor};

use crate::data::features::FeatureCache;
use crate::data::loader::{BatchLoader, THREADS_BESIDE_MODEL};
use crate::model::captioner::Captioner;
use crate::model::decoding::{Decoding, Specials};
use crate::model::ImageFeatures;
use crate::run::RunConfig;
use crate::text::taglist::TagList;
use crate::text::tokens::Tokens;
use crate::text::vocab::{END, START, UNK};
use crate::Result;

/// A checkpoint ready to caption: the run's `run::Contents` with its model and the inference
/// options.
#[derive(Debug)]
pub struct Loaded {
    pub dir: PathBuf,
    pub run: RunConfig,
    pub vocab: Tokens,
    pub model: Captioner,
    /// The hashtag label list, when the run has a hashtag model.
    pub tags: Option<TagList>,
    /// Head scores at or above this are emitted as tags (see [`tags::Ranked`]).
    pub tag_threshold: f64,
    /// Also recover each word's attention weights (attention decoders): one more teacher-forced
    /// pass per batch, so only `caption --json`/`--attention` ask for it.
    pub with_attention: bool,
    /// Let captions contain `<unk>` (`--allow-unk`: the behaviour before it was masked).
    pub allow_unk: bool,
}

/// Caption decoding's special ids: `<unk>` is masked (never written); see
/// [`Loaded::allow_unk`].
pub const SPECIALS: Specials = Specials {
    start: START,
    end: END,
    unk: Some(UNK),
    allow_unk: false,
};

/// Open `dir` (a run directory) and load its best weights (`model.safetensors`), or
/// `last.safetensors` with `last = true`.
pub fn load_checkpoint(dir: &Path, device: Device, last: bool) -> Result<Loaded> {
    let (c, model) = crate::run::open(dir, device, last)?;
    Ok(Loaded {
        dir: dir.to_path_buf(),
        run: c.run,
        vocab: c.vocab,
        model,
        tags: c.tags,
        tag_threshold: crate::config::defaults::TAG_THRESHOLD,
        with_attention: false,
        allow_unk: false,
    })
}

impl Loaded {
    /// Decode in `p` (`--precision` of `caption`, `eval`, `serve`): bf16/fp16 weights under
    /// autocast, on CUDA only ([`crate::model::precision::Precision::check`]).
    pub fn in_precision(mut self, p: crate::model::precision::Precision) -> Result<Self> {
        p.check(self.model.device())?;
        self.model.set_precision(p);
        Ok(self)
    }
}

/// The result for one input file: its caption, or why it could not be read.
#[derive(Debug, Clone)]
pub struct Captioned {
    pub path: PathBuf,
    pub caption: std::result::Result<Caption, String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Caption {
    pub words: Vec<String>,
    pub logp: f64,
    /// The hashtag model's full ranking, when the run has one.
    pub tags: Option<tags::Ranked>,
    /// Attention decoders: per word (and `<end>`), its weights over the grid cells (row-major
    /// `side × side`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attention: Option<Vec<Vec<f32>>>,
    /// The other captions of the n-best list (beam search) or the other distinct samples
    /// (`--top-p --samples N`), most probable first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub alternatives: Vec<Alternative>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Alternative {
    pub text: String,
    pub logp: f64,
}

impl Caption {
    pub fn text(&self) -> String {
        self.words.join(" ")
    }
}

/// See [`Loaded::features`].
pub type Features = (ImageFeatures, Vec<usize>, Vec<(usize, String)>);

impl Loaded {
    /// The special ids caption decoding uses: `<unk>` masked unless [`Loaded::allow_unk`].
    pub fn specials(&self) -> Specials {
        Specials {
            allow_unk: self.allow_unk,
            ..SPECIALS
        }
    }

    /// Features of the readable image files, the input indices they belong to, and
    /// `(input index, reason)` for the files that failed.
    pub fn features(&self, paths: &[PathBuf], batch: usize) -> Result<Features> {
        let (mut feats, mut ok, mut failed) = (vec![], vec![], vec![]);
        for b in BatchLoader::new(
            paths.to_vec(),
            self.run.model.preprocess,
            batch,
            THREADS_BESIDE_MODEL,
        ) {
            failed.extend(b.failed.iter().cloned());
            if b.indices.is_empty() {
                continue;
            }
            feats.push(tch::no_grad(|| self.model.encode(&b.to_tensor(), false))?);
            ok.extend(b.indices.iter().copied());
        }
        let d = self.run.model.pooled_dim();
        let feats = if feats.is_empty() {
            ImageFeatures::new(
                Tensor::zeros([0, d], (tch::Kind::Float, self.model.device())),
                None,
            )
        } else {
            ImageFeatures::cat(&feats)
        };
        Ok((feats, ok, failed))
    }

    /// Caption images by id from a feature cache (ids missing from it get an error entry).
    pub fn caption_cached(
        &self,
        cache: &FeatureCache,
        ids: &[String],
        decoding: &Decoding,
    ) -> Result<Vec<Captioned>> {
        let index = cache.index();
        let rows: Vec<Option<i64>> = ids
            .iter()
            .map(|id| index.get(id.as_str()).copied())
            .collect();
        let present: Vec<i64> = rows.iter().flatten().copied().collect();
        let feats = self
            .model
            .trim(ImageFeatures::of_cache(cache))
            .select(&Tensor::from_slice(&present));
        let mut hyps = self.captions(&feats, decoding)?.into_iter();
        Ok(ids
            .iter()
            .zip(rows)
            .map(|(id, row)| Captioned {
                path: PathBuf::from(id),
                caption: match (row, row.and(hyps.next())) {
                    (Some(_), Some(c)) => Ok(c),
                    _ => Err("not in the feature cache".to_string()),
                },
            })
            .collect())
    }

    /// Caption every file; unreadable files get an error entry, the others are captioned.
    pub fn caption_files(&self, paths: &[PathBuf], decoding: &Decoding) -> Result<Vec<Captioned>> {
        let (feats, ok, failed) = self.features(paths, 32)?;
        let mut out: Vec<Captioned> = paths
            .iter()
            .map(|p| Captioned {
                path: p.clone(),
                caption: Err(String::new()),
            })
            .collect();
        for (i, why) in failed {
            out[i].caption = Err(why);
        }
        if !ok.is_empty() {
            for (i, c) in ok.into_iter().zip(self.captions(&feats, decoding)?) {
                out[i].caption = Ok(c);
            }
        }
        Ok(out)
    }

    /// Caption decoded images (restored or damaged pictures that exist only in memory), in one
    /// encoder batch per 32: preprocessed exactly as [`Loaded::caption_image`] does.
    pub fn caption_images(
        &self,
        imgs: &[image::RgbImage],
        decoding: &Decoding,
    ) -> Result<Vec<Caption>> {
        let pre = self.run.model.preprocess;
        let side = pre.size as i64;
        let mut out = Vec::with_capacity(imgs.len());
        for chunk in imgs.chunks(32) {
            let mut flat = Vec::with_capacity(chunk.len() * pre.output_len());
            for img in chunk {
                flat.extend(crate::data::image::preprocess_rgb(img, &pre));
            }
            let x = Tensor::from_slice(&flat).view([chunk.len() as i64, 3, side, side]);
            let feats = tch::no_grad(|| self.model.encode(&x, false))?;
            out.extend(self.captions(&feats, decoding)?);
        }
        Ok(out)
    }

    /// One decoded image (the web server's uploads, `caption --restore`'s restored pictures):
    /// the caption `caption` prints for it, with the hashtag ranking and the rest of the n-best
    /// list (beam `K`: up to `K − 1` alternatives; top-p: the other samples).
    pub fn caption_image(&self, img: &image::RgbImage, decoding: &Decoding) -> Result<Caption> {
        let pre = self.run.model.preprocess;
        let chw = crate::data::image::preprocess_rgb(img, &pre);
        let side = pre.size as i64;
        let x = Tensor::from_slice(&chw).view([1, 3, side, side]);
        let feats = tch::no_grad(|| self.model.encode(&x, false))?;
        let nbest = self
            .model
            .generate_nbest(&feats, decoding, self.specials(), 1)?;
        let ranked = match &self.tags {
            Some(list) => tags::rank(&self.model, list, &feats, self.tag_threshold)?
                .into_iter()
                .next(),
            None => None,
        };
        let mut hyps = nbest.into_iter().next().unwrap_or_default().into_iter();
        let best = hyps
            .next()
            .ok_or_else(|| crate::Error::invalid("the model produced no caption for this image"))?;
        Ok(Caption {
            words: self.vocab.decode(&best.tokens),
            logp: best.logp,
            tags: ranked,
            attention: None,
            alternatives: hyps
                .map(|h| Alternative {
                    text: self.vocab.decode(&h.tokens).join(" "),
                    logp: h.logp,
                })
                .collect(),
        })
    }

    /// Captions (hashtag rankings, attention weights) for the features of `N` images.
    fn captions(&self, feats: &ImageFeatures, decoding: &Decoding) -> Result<Vec<Caption>> {
        let nbest = self
            .model
            .generate_nbest(feats, decoding, self.specials(), 64)?;
        let mut others: Vec<Vec<Alternative>> = Vec::with_capacity(nbest.len());
        let mut hyps = Vec::with_capacity(nbest.len());
        for hs in nbest {
            let mut it = hs.into_iter();
            hyps.push(crate::model::decoding::first_or_empty(
                it.next().into_iter().collect(),
            ));
            others.push(
                it.map(|h| Alternative {
                    text: self.vocab.decode(&h.tokens).join(" "),
                    logp: h.logp,
                })
                .collect(),
            );
        }
        let mut others = others.into_iter();
        let weights = if self.with_attention {
            self.model.attention(feats, &hyps, SPECIALS)?
        } else {
            None
        };
        let mut attention = match weights {
            Some(a) => a.into_iter().map(Some).collect(),
            None => vec![None; hyps.len()],
        }
        .into_iter();
        let mut ranked = match &self.tags {
            Some(list) => tags::rank(&self.model, list, feats, self.tag_threshold)?
                .into_iter()
                .map(Some)
                .collect(),
            None => vec![None; hyps.len()],
        }
        .into_iter();
        Ok(hyps
            .into_iter()
            .map(|h| Caption {
                words: self.vocab.decode(&h.tokens),
                logp: h.logp,
                tags: ranked.next().flatten(),
                attention: attention.next().flatten(),
                alternatives: others.next().unwrap_or_default(),
            })
            .collect())
    }
}

//! Inference: a run directory opened by [`crate::run::open`] becomes a ready [`Loaded`] that
//! captions image files (decoded on worker threads, batched through the encoder and the
//! decoder) or images of a feature cache.
pub mod attention_map;
mod ensemble;
pub mod llm_post;
pub mod moods;
mod result;
pub mod social;
pub mod tags;
pub mod translate;
pub mod vl;

pub use ensemble::Partner;
pub use result::{CaptionResult, Extras};

use std::path::{Path, PathBuf};

use tch::{Device, Tensor};

use crate::data::features::FeatureCache;
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
    /// Runs that caption with this one as an ensemble (`--ensemble`; `ensemble.rs`).
    pub partners: Vec<Partner>,
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
        partners: vec![],
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
        ensemble::encode_files(&self.model, self.run.model.preprocess, paths, batch)
    }

    /// Caption images by id from feature caches, one per member (the leader's first, then each
    /// partner's); ids missing from any of them get an error entry.
    pub fn caption_cached(
        &self,
        caches: &[&FeatureCache],
        ids: &[String],
        decoding: &Decoding,
    ) -> Result<Vec<Captioned>> {
        if caches.len() != 1 + self.partners.len() {
            return Err(crate::Error::invalid(format!(
                "{} feature caches for an ensemble of {} runs",
                caches.len(),
                1 + self.partners.len()
            )));
        }
        let indices: Vec<_> = caches.iter().map(|c| c.index()).collect();
        let rows: Vec<Option<Vec<i64>>> = ids
            .iter()
            .map(|id| {
                indices
                    .iter()
                    .map(|ix| ix.get(id.as_str()).copied())
                    .collect()
            })
            .collect();
        let members = std::iter::once(&self.model).chain(self.partners.iter().map(|p| &p.model));
        let feats: Vec<ImageFeatures> = members
            .zip(caches)
            .enumerate()
            .map(|(m, (model, cache))| {
                let present: Vec<i64> = rows.iter().flatten().map(|r| r[m]).collect();
                model
                    .trim(ImageFeatures::of_cache(cache))
                    .select(&Tensor::from_slice(&present))
            })
            .collect();
        let mut hyps = self.captions(&feats[0], &feats[1..], decoding)?.into_iter();
        Ok(ids
            .iter()
            .zip(rows)
            .map(|(id, row)| Captioned {
                path: PathBuf::from(id),
                caption: match (row.as_ref(), row.as_ref().and(hyps.next())) {
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
            let read: Vec<PathBuf> = ok.iter().map(|&i| paths[i].clone()).collect();
            let others = self.partner_features(&read)?;
            for (i, c) in ok
                .into_iter()
                .zip(self.captions(&feats, &others, decoding)?)
            {
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
        let mut out = Vec::with_capacity(imgs.len());
        for chunk in imgs.chunks(32) {
            let feats = self.encode_rgb_all(chunk)?;
            out.extend(self.captions(&feats[0], &feats[1..], decoding)?);
        }
        Ok(out)
    }

    /// One decoded image (the web server's uploads, `caption --restore`'s restored pictures):
    /// the caption `caption` prints for it, with the hashtag ranking and the rest of the n-best
    /// list (beam `K`: up to `K − 1` alternatives; top-p: the other samples).
    pub fn caption_image(&self, img: &image::RgbImage, decoding: &Decoding) -> Result<Caption> {
        let all = self.encode_rgb_all(std::slice::from_ref(img))?;
        let feats = &all[0];
        let nbest = self.model.generate_nbest_with(
            feats,
            &self.partner_pairs(&all[1..]),
            decoding,
            self.specials(),
            1,
        )?;
        let ranked = match &self.tags {
            Some(list) => tags::rank(&self.model, list, feats, self.tag_threshold)?
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

    /// Captions (hashtag rankings, attention weights) for the features of `N` images, with the
    /// partners' features of the same images (none without an ensemble).
    fn captions(
        &self,
        feats: &ImageFeatures,
        others: &[ImageFeatures],
        decoding: &Decoding,
    ) -> Result<Vec<Caption>> {
        let nbest = self.model.generate_nbest_with(
            feats,
            &self.partner_pairs(others),
            decoding,
            self.specials(),
            64,
        )?;
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

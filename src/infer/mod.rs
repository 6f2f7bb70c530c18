//! Inference: loading a run directory into a ready [`Captioner`] and captioning image files
//! (decoded on worker threads, batched through the encoder and the decoder).
pub mod decoding;
pub mod tags;

use std::path::{Path, PathBuf};

use tch::{Device, Tensor};

use crate::data::features::FeatureCache;
use crate::data::loader::{BatchLoader, THREADS_BESIDE_MODEL};
use crate::model::captioner::Captioner;
use crate::text::taglist::TagList;
use crate::text::vocab::{Vocab, END, START};
use crate::train::checkpoint::{self, RunConfig};
use crate::{Error, Result};
use decoding::{Decoding, Specials};

/// A checkpoint ready to caption.
#[derive(Debug)]
pub struct Loaded {
    pub dir: PathBuf,
    pub run: RunConfig,
    pub vocab: Vocab,
    pub model: Captioner,
    /// The hashtag label list, when the run has a hashtag model.
    pub tags: Option<TagList>,
    /// Head scores at or above this are emitted as tags (see [`tags::Ranked`]).
    pub tag_threshold: f64,
}

pub const SPECIALS: Specials = Specials {
    start: START,
    end: END,
};

/// Open `dir` (a run directory) and load its best weights (`model.safetensors`), or
/// `last.safetensors` with `last = true`.
pub fn load_checkpoint(dir: &Path, device: Device, last: bool) -> Result<Loaded> {
    let cfg_path = dir.join(checkpoint::CONFIG);
    if !cfg_path.is_file() {
        return Err(Error::invalid(format!(
            "{}: not a captag run directory (no config.json)",
            dir.display()
        )));
    }
    let run: RunConfig = checkpoint::read_json(&cfg_path)?;
    run.model.validate()?;
    let vocab = Vocab::load(&dir.join(checkpoint::VOCAB))?;
    if vocab.len() as i64 != run.model.vocab_size {
        return Err(Error::invalid(format!(
            "{}: vocab.json has {} words but config.json says {}",
            dir.display(),
            vocab.len(),
            run.model.vocab_size
        )));
    }
    let mut model = Captioner::new(&run.model, device, true);
    let weights = dir.join(if last {
        checkpoint::LAST
    } else {
        checkpoint::BEST
    });
    checkpoint::load_vars(&mut model.vs, &weights)?;
    if let Some(fvs) = model.frozen_vs.as_mut() {
        checkpoint::load_vars(fvs, &dir.join(checkpoint::ENCODER))?;
    }
    let tags = match &run.model.hashtags {
        Some(_) => Some(checkpoint::load_tag_list(dir, &run)?),
        None => None,
    };
    Ok(Loaded {
        dir: dir.to_path_buf(),
        run,
        vocab,
        model,
        tags,
        tag_threshold: 0.5,
    })
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
}

impl Caption {
    pub fn text(&self) -> String {
        self.words.join(" ")
    }
}

/// See [`Loaded::features`].
pub type Features = (Tensor, Vec<usize>, Vec<(usize, String)>);

impl Loaded {
    /// Pooled features `(N, D)` for image files, the input indices they belong to, and
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
        let d = self.run.model.encoder.pooled_dim();
        let feats = if feats.is_empty() {
            Tensor::zeros([0, d], (tch::Kind::Float, self.model.device()))
        } else {
            Tensor::cat(&feats, 0)
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
        let feats = cache.pooled.index_select(0, &Tensor::from_slice(&present)); // (N, D)
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

    /// Captions (and hashtag rankings) for pooled features `(N, D)`.
    fn captions(&self, feats: &Tensor, decoding: &Decoding) -> Result<Vec<Caption>> {
        let hyps = self.model.generate(feats, decoding, SPECIALS, 64)?;
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
            })
            .collect())
    }
}

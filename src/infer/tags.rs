//! Hashtags for images: the run's hashtag model turns pooled features into a full ranking of
//! its label list (for P@k and mAP) and into the tags it would print (for `captag caption`).
use serde::Serialize;
use tch::{Device, Kind};

use super::SPECIALS;
use crate::model::captioner::Captioner;
use crate::model::decoding::{Decoding, Specials};
use crate::model::tagger::{Tagger, MAX_TAGS, TAG_OFFSET};
use crate::model::ImageFeatures;
use crate::text::taglist::TagList;
use crate::{Error, Result};

/// One suggested tag.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TagScore {
    pub tag: String,
    /// Head: sigmoid probability; gru: probability of being the first tag; text: model score.
    pub score: f64,
    /// Which model produced it: `head`, `gru` or `text`.
    pub model: &'static str,
}

/// Every tag of the label list, best first, and how many leading tags the model itself
/// emits: head ⇒ those scoring ≥ the threshold; gru ⇒ those it generated.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Ranked {
    pub tags: Vec<TagScore>,
    pub emitted: usize,
}

impl Ranked {
    /// The tags to print: the emitted ones, at most `n`.
    pub fn top(&self, n: usize) -> &[TagScore] {
        &self.tags[..self.emitted.min(n)]
    }

    pub fn names(&self) -> Vec<String> {
        self.tags.iter().map(|t| t.tag.clone()).collect()
    }
}

/// The hashtags shown for a caption: the image model's emitted tags (at most `n`), then the
/// caption-text model's `n` suggestions for `caption` that the image model did not give.
pub fn shown(
    image: Option<&Ranked>,
    text_model: Option<&crate::model::text_tagger::TextTagger>,
    caption: &str,
    n: usize,
) -> Vec<TagScore> {
    let mut tags: Vec<TagScore> = image.map(|t| t.top(n).to_vec()).unwrap_or_default();
    if let Some(m) = text_model {
        for (tag, score) in m.suggest(caption, n) {
            if !tags.iter().any(|t| t.tag == tag) {
                tags.push(TagScore {
                    tag,
                    score,
                    model: "text",
                });
            }
        }
    }
    tags
}

/// Rank the label list for the features of `N` images (the pooled part is read).
pub fn rank(
    model: &Captioner,
    list: &TagList,
    feats: &ImageFeatures,
    threshold: f64,
) -> Result<Vec<Ranked>> {
    let tagger = model.tagger.as_ref().ok_or_else(|| {
        Error::invalid("this checkpoint has no hashtag model (train with --hashtags)")
    })?;
    if feats.is_empty() {
        return Ok(vec![]);
    }
    let feats = ImageFeatures::new(feats.rows_pooled().to_device(model.device()), None);
    let scores = model
        .in_precision(|| tagger.scores(&feats.pooled))
        .to_kind(Kind::Double)
        .to_device(Device::Cpu); // (N, T)
    let t = scores.size()[1] as usize;
    let flat = Vec::<f64>::try_from(&scores.view([-1])).map_err(Error::Torch)?;
    let generated: Option<Vec<Vec<usize>>> = match tagger {
        Tagger::Head(_) => None,
        Tagger::Gru(gen) => {
            let dec = Decoding::Greedy { max_len: MAX_TAGS };
            let hyps = model.generate_tags(
                gen,
                &feats,
                &dec,
                Specials {
                    unk: None,
                    ..SPECIALS
                },
                256,
            )?;
            Some(
                hyps.into_iter()
                    .map(|h| {
                        let mut ids: Vec<usize> = vec![];
                        for tok in h.tokens {
                            let id = tok - TAG_OFFSET;
                            if id >= 0 && (id as usize) < t && !ids.contains(&(id as usize)) {
                                ids.push(id as usize);
                            }
                        }
                        ids
                    })
                    .collect(),
            )
        }
    };
    let name = match tagger {
        Tagger::Head(_) => "head",
        Tagger::Gru(_) => "gru",
    };
    Ok((0..feats.len() as usize)
        .map(|i| {
            let row = &flat[i * t..(i + 1) * t];
            let mut order: Vec<usize> = (0..t).collect();
            order.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
            let emitted = match &generated {
                Some(g) => {
                    let first = &g[i];
                    order.retain(|o| !first.contains(o));
                    order.splice(0..0, first.iter().copied());
                    first.len()
                }
                None => order.iter().take_while(|&&o| row[o] >= threshold).count(),
            };
            Ranked {
                tags: order
                    .into_iter()
                    .map(|o| TagScore {
                        tag: list.tags[o].clone(),
                        score: row[o],
                        model: name,
                    })
                    .collect(),
                emitted,
            }
        })
        .collect())
}

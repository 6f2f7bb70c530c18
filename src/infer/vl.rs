//! A BLIP or GIT model's n-best list as captag's [`Caption`] (the caption line, JSON, hashtags
//! from its text, the web page's answer): the folder's tokenizer turns ids into text, the
//! first hypothesis is the caption and the others its alternatives.
use image::RgbImage;

use super::{Alternative, Caption};
use crate::model::decoding::{Decoding, Hypothesis};
use crate::model::vl::{Prefix, VlCaptioner};
use crate::Result;

/// One image's hypotheses (best first) as a caption.
pub fn to_caption(m: &VlCaptioner, prefix: &Prefix, hs: &[Hypothesis]) -> Caption {
    let text = |h: &Hypothesis| m.text(prefix, &h.tokens);
    let best = hs.first();
    Caption {
        words: best
            .map(|h| text(h).split_whitespace().map(str::to_string).collect())
            .unwrap_or_default(),
        logp: best.map_or(f64::NEG_INFINITY, |h| h.logp),
        tags: None,
        attention: None,
        alternatives: hs
            .iter()
            .skip(1)
            .map(|h| Alternative {
                text: text(h),
                logp: h.logp,
            })
            .collect(),
    }
}

/// Caption one picture (no prompt).
pub fn caption_image(m: &VlCaptioner, img: &RgbImage, decoding: &Decoding) -> Result<Caption> {
    let prefix = m.prefix(None);
    let pixels = m.pixels(std::slice::from_ref(img));
    let hs = m.decode(&pixels, &prefix, decoding)?;
    Ok(to_caption(
        m,
        &prefix,
        hs.first().map(Vec::as_slice).unwrap_or(&[]),
    ))
}

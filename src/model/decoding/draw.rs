//! Captions drawn for self-critical training (`train::scst`): greedy or every sample of an
//! image (duplicates kept), each with whether it ended with `<end>` — through the same masked
//! step and walk as [`super::decode_nbest_counted`].
use super::{argmax, masked, sample, walk, Hypothesis, Nucleus, Specials, UnkStats};
use crate::Result;

/// How [`draw_counted`] picks each word.
#[derive(Clone, Copy, Debug)]
pub enum Draw {
    /// The most probable word (SCST's greedy baseline).
    Greedy { max_len: usize },
    /// `samples` captions per image from the nucleus (SCST: `top_p` 1, temperature 1, i.e. the
    /// model's own distribution), duplicates kept.
    Sample(Nucleus),
}

impl Draw {
    /// `samples` captions per image from the model's own distribution (top-p 1, temperature
    /// 1), as SCST draws them.
    pub fn model_samples(max_len: usize, samples: usize, seed: u64) -> Draw {
        Draw::Sample(Nucleus {
            max_len,
            top_p: 1.0,
            temperature: 1.0,
            samples,
            seed,
        })
    }
}

/// A caption drawn for training: the hypothesis and whether it ended with `<end>` (a caption
/// cut at the length limit did not).
#[derive(Clone, Debug, PartialEq)]
pub struct Drawn {
    pub hyp: Hypothesis,
    pub finished: bool,
}

/// Captions for `n` images as self-critical training needs them, `<unk>` masked and counted as
/// in [`decode_nbest_counted`]: greedy (one per image) or every sample (`samples` per image,
/// caption `c = image · samples + s`, seeded as [`sample`] says), each with its `finished` flag.
pub fn draw_counted<F>(
    n: usize,
    how: Draw,
    sp: Specials,
    step: F,
    stats: &mut UnkStats,
) -> Result<Vec<Drawn>>
where
    F: FnMut(&[usize], &[i64]) -> Result<Vec<f32>>,
{
    let step = masked(sp, step, stats);
    match how {
        Draw::Greedy { max_len } => {
            walk((0..n).collect(), max_len, sp, step, |_, row| argmax(row).0)
        }
        Draw::Sample(cfg) => sample::sample_each(n, &cfg, sp, step),
    }
}

//! The interface BLIP and GIT implement ([`VlModel`]) and the state it passes around: kept
//! apart from the loader in `mod.rs`, which builds the models, so the models import this file
//! and the loader imports the models (no loop).
use tch::{Device, Tensor};

use crate::model::blocks::KvCache;

/// The model's running state for `R` rows (images × beams): the self-attention cache and, for
/// BLIP, each layer's cross-attention keys/values of the image tokens.
#[derive(Debug, Default)]
pub struct VlCache {
    pub self_kv: KvCache,
    pub cross: Vec<(Tensor, Tensor)>,
    /// Caption tokens seen (GIT's cache also holds the image tokens).
    pub text_len: i64,
}

impl VlCache {
    /// The state of rows `rows (R,)`.
    pub fn select(&self, rows: &Tensor) -> VlCache {
        VlCache {
            self_kv: self.self_kv.select(rows),
            cross: self
                .cross
                .iter()
                .map(|(k, v)| (k.index_select(0, rows), v.index_select(0, rows)))
                .collect(),
            text_len: self.text_len,
        }
    }
}

/// The caption's first tokens: the start token, then the prompt's.
#[derive(Debug, Clone)]
pub struct Prefix(pub Vec<i64>);

impl Prefix {
    /// All but the last token, for `n` rows `(n, T - 1)` (`None` when only the start token).
    pub fn before_last(&self, n: i64, device: Device) -> Option<Tensor> {
        let k = self.0.len().checked_sub(1).filter(|&k| k > 0)?;
        let row = Tensor::from_slice(&self.0[..k]).to_device(device);
        Some(row.unsqueeze(0).expand([n, k as i64], false).contiguous())
    }

    pub fn last(&self) -> i64 {
        self.0.last().copied().unwrap_or(0)
    }
}

/// A captioner that reads an image and writes text token by token.
pub trait VlModel: std::fmt::Debug {
    fn vocab(&self) -> i64;
    fn image_size(&self) -> i64;
    fn max_positions(&self) -> i64;
    /// `[DEC]` for BLIP, `[CLS]` for GIT.
    fn start_token(&self) -> i64;
    /// `[SEP]` for both.
    fn end_token(&self) -> i64;
    /// `pixels (N, 3, S, S)` ⇒ the image tokens the text reads `(N, I, D)`.
    fn image_memory(&self, pixels: &Tensor, train: bool) -> Tensor;
    /// The cache after the image and all prefix tokens but the last (which the first step feeds).
    fn begin(&self, memory: &Tensor, prefix: &Prefix) -> VlCache;
    /// Feed `ids (R, T)` ⇒ the last position's logits `(R, V)`; the cache grows by `T`.
    fn step(&self, cache: &mut VlCache, ids: &Tensor) -> Tensor;
    /// Teacher forcing: `ids (B, T)` with `pad (B, T)` (true at real tokens) ⇒ logits of the text
    /// positions `(B, T, V)`.
    fn logits_t(&self, memory: &Tensor, ids: &Tensor, pad: &Tensor, train: bool) -> Tensor;
}

//! Token-id checks and left-padded greedy generation shared by the decoder-only LMs (GPT-2,
//! the Llama family): the bookkeeping of `transformers`' `generate(do_sample=False)` with
//! `padding_side="left"` — pad the prompts to the longest, one pass over all of them, then one
//! cached step per token for every row, the padding mask growing by one real column each step.
//! The model supplies only its padded forward pass.
use tch::{Device, Kind, Tensor};

use super::KvCache;
use crate::{Error, Result};

/// `ids` must be `[B, T]`, non-empty, within `0..vocab`; `what` names the model in the error.
pub fn check_ids(ids: &Tensor, vocab: i64, what: &str) -> Result<()> {
    if ids.dim() != 2 || ids.numel() == 0 {
        return Err(Error::invalid(format!(
            "{what} ids must be [B, T], got {:?}",
            ids.size()
        )));
    }
    let (lo, hi) = (ids.min().int64_value(&[]), ids.max().int64_value(&[]));
    if lo < 0 || hi >= vocab {
        return Err(Error::invalid(format!(
            "{what} ids must be in 0..{vocab}, got {lo}..={hi}"
        )));
    }
    Ok(())
}

/// Each prompt's `steps` greedy new ids. `forward(ids (B, T), past, pad (B, S))` returns the
/// logits of the last position `(B, V)` and the extended cache.
pub fn greedy_left_padded(
    prompts: &[Vec<i64>],
    steps: i64,
    vocab: i64,
    what: &str,
    device: Device,
    mut forward: impl FnMut(&Tensor, Option<&KvCache>, &Tensor) -> Result<(Tensor, KvCache)>,
) -> Result<Vec<Vec<i64>>> {
    if prompts.is_empty() || steps <= 0 {
        return Ok(vec![vec![]; prompts.len()]);
    }
    if prompts.iter().any(Vec::is_empty) {
        return Err(Error::invalid(format!(
            "{what} prompts must hold at least one id"
        )));
    }
    let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let (mut ids, mut keep) = (Vec::new(), Vec::new());
    for p in prompts {
        let pads = longest - p.len();
        ids.extend(std::iter::repeat_n(0, pads).chain(p.iter().copied()));
        keep.extend(std::iter::repeat_n(false, pads).chain(p.iter().map(|_| true)));
    }
    let b = prompts.len() as i64;
    let ids = Tensor::from_slice(&ids).view([b, -1]).to_device(device); // (B, T)
    check_ids(&ids, vocab, what)?;
    let mut pad = Tensor::from_slice(&keep).view([b, -1]).to_device(device); // (B, T)
    let ones = Tensor::ones([b, 1], (Kind::Bool, device));
    let (mut logits, mut cache) = tch::no_grad(|| forward(&ids, None, &pad))?;
    let mut out = Vec::with_capacity(steps as usize);
    for i in 0..steps {
        let next = logits.argmax(-1, true); // (B, 1)
        out.push(next.shallow_clone());
        if i + 1 == steps {
            break;
        }
        pad = Tensor::cat(&[&pad, &ones], 1); // (B, S + 1)
        (logits, cache) = tch::no_grad(|| forward(&next, Some(&cache), &pad))?;
    }
    let new = Tensor::cat(&out, 1).to_device(Device::Cpu); // (B, steps)
    Ok((0..b)
        .map(|r| Vec::<i64>::try_from(new.get(r)).unwrap_or_default())
        .collect())
}

//! The captioner as a policy, for self-critical training (`train::scst`): captions drawn from it
//! without gradient ([`Captioner::draw`], through the shared decoding walk of
//! [`super::decoding`]), then the log-probability of each drawn caption *with* gradient
//! ([`Captioner::sequence_logp`]).
//!
//! Why two passes instead of a sampling loop that keeps the graph: one teacher-forced pass over
//! the drawn tokens is the decoder's ordinary training forward (batched over time for the
//! transformer and ClipCap, the cuDNN/fused recurrence for the RNNs), works the same for every
//! decoder, and in eval mode reproduces the decoding steps exactly (the decoders' tests check
//! stepping against teacher forcing) — so the log-probabilities are those of the distribution
//! the words were drawn from. Both passes run in eval mode: no dropout, so the policy that
//! samples is the policy that is differentiated.
use tch::{Device, Kind, Tensor};

use super::captioner::Captioner;
use super::decoder::State;
use super::decoding::{draw_counted, Draw, Drawn, Specials};
use super::features::ImageFeatures;
use crate::text::vocab::PAD;
use crate::{Error, Result};

impl Captioner {
    /// Captions for the `N` rows of `f` (greedy: one per row; sampling: `samples` per row,
    /// caption `c = row · samples + s`), without gradient, in eval mode; `<unk>` masked unless
    /// `sp.allow_unk`, and `<pad>`/`<start>` never drawn ([`masked_ids`]); each row renormalised
    /// over what may be drawn.
    pub fn draw(&self, f: &ImageFeatures, how: Draw, sp: Specials) -> Result<Vec<Drawn>> {
        let feats = f.expanded().to_device(self.device());
        let masked = masked_ids(sp);
        let n = feats.len() as usize;
        let dec = &self.decoder;
        let mut stats = self.unk_stats.get();
        let drawn = tch::no_grad(|| -> Result<Vec<Drawn>> {
            let mut state = dec.start(&feats);
            let device = self.device();
            let step = |parents: &[usize], tokens: &[i64]| {
                let rows: Vec<i64> = parents.iter().map(|&p| p as i64).collect();
                let rows = Tensor::from_slice(&rows).to_device(device);
                let toks = Tensor::from_slice(tokens).to_device(device);
                let (lp, next) = dec.step(&toks, &State::select(&state, &rows)); // (R, V)
                state = next;
                let lp = lp.to_kind(Kind::Float).to_device(Device::Cpu).view([-1]);
                let mut lp = Vec::<f32>::try_from(&lp).map_err(Error::Torch)?;
                let v = lp.len() / tokens.len().max(1);
                for row in lp.chunks_exact_mut(v.max(1)) {
                    renormalise_without(row, &masked);
                }
                Ok(lp)
            };
            draw_counted(n, how, sp, step, &mut stats)
        })?;
        self.unk_stats.set(stats);
        Ok(drawn)
    }

    /// `log p(caption | image)` of each row of `tokens (B, L)` = `[<start> w.. (<end>) <pad>..]`
    /// with gradient, in eval mode: `(B,)` float32. Row `i` scores its first `scored[i]` tokens
    /// after `<start>` (by count, not by `<pad>`: an untrained model may draw the `<pad>` id).
    /// `sp`: as the captions were drawn — the words [`Captioner::draw`] never picks have their
    /// probability taken out and the rest renormalised, the distribution the sampler drew from.
    pub fn sequence_logp(
        &self,
        f: &ImageFeatures,
        tokens: &Tensor,
        scored: &[i64],
        sp: Specials,
    ) -> Tensor {
        let len = tokens.size()[1];
        let out = self.decoder.forward_t(f, tokens, false);
        let logits = self.decoder.project(&out.hidden).to_kind(Kind::Float); // (B, L-1, V)
        let v = logits.size()[2];
        let masked: Vec<i64> = masked_ids(sp).into_iter().filter(|&w| w < v).collect();
        let idx = Tensor::from_slice(&masked).to_device(logits.device());
        let logits = logits.index_fill(2, &idx, f64::NEG_INFINITY);
        let lp = logits.log_softmax(-1, Kind::Float);
        let targets = tokens.narrow(1, 1, len - 1); // (B, L-1)
        let picked = lp.gather(2, &targets.unsqueeze(-1), false).squeeze_dim(-1); // (B, L-1)
        let device = picked.device();
        let lens = Tensor::from_slice(scored).to_device(device).unsqueeze(1); // (B, 1)
        let pos = Tensor::arange(len - 1, (Kind::Int64, device)).unsqueeze(0); // (1, L-1)
                                                                               // Padding may pick a −∞ (a masked word's slot): zero it rather than multiply by 0.
        picked
            .masked_fill(&pos.ge_tensor(&lens), 0.0)
            .sum_dim_intlist(1, false, Kind::Float)
    }
}

/// Ids a drawn caption never holds: `<pad>` and `<start>` (an untrained output layer gives them
/// mass; a caption with them is no caption, and teacher forcing reads `<pad>` as the end), and
/// `<unk>` unless allowed.
fn masked_ids(sp: Specials) -> Vec<i64> {
    let mut ids = vec![PAD, sp.start];
    if let Some(u) = sp.unk.filter(|_| !sp.allow_unk) {
        ids.push(u);
    }
    ids.retain(|&w| w >= 0);
    ids
}

/// One row of log-probabilities with `ids` taken out and the rest renormalised (so a drawn
/// caption's accumulated log-probability is the policy's, as [`Captioner::sequence_logp`]
/// computes it).
fn renormalise_without(row: &mut [f32], ids: &[i64]) {
    for &w in ids {
        if let Some(x) = row.get_mut(w as usize) {
            *x = f32::NEG_INFINITY;
        }
    }
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return;
    }
    let total: f64 = row.iter().map(|&x| ((x - max) as f64).exp()).sum();
    let shift = max + total.ln() as f32;
    for x in row.iter_mut() {
        *x -= shift;
    }
}

/// Drawn captions as decoder input `(B, L)`: `[<start> w.. <end>]` for a finished caption, no
/// `<end>` for one cut at the length limit, padded; and the number of scored tokens per row.
pub fn drawn_tokens(drawn: &[Drawn], sp: Specials) -> (Tensor, Vec<i64>) {
    let rows: Vec<Vec<i64>> = drawn
        .iter()
        .map(|d| {
            let mut r = Vec::with_capacity(d.hyp.tokens.len() + 2);
            r.push(sp.start);
            r.extend_from_slice(&d.hyp.tokens);
            if d.finished {
                r.push(sp.end);
            }
            r
        })
        .collect();
    let scored = rows.iter().map(|r| r.len() as i64 - 1).collect();
    // At least two columns: a row's first scored token is column 1.
    let len = rows.iter().map(Vec::len).max().unwrap_or(2).max(2);
    let mut flat = vec![PAD; rows.len() * len];
    for (i, r) in rows.iter().enumerate() {
        flat[i * len..i * len + r.len()].copy_from_slice(r);
    }
    (
        Tensor::from_slice(&flat).view([rows.len() as i64, len as i64]),
        scored,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DecoderPreset, EncoderKind, ModelConfig};
    use crate::model::decoding::TEST_SPECIALS as SP;

    /// For every decoder: the log-probability with gradient of each drawn caption is the
    /// sampler's, renormalised over the words it may draw, and gradients reach the decoder.
    #[test]
    fn sequence_logp_is_the_samplers_and_has_gradient() {
        for p in [
            DecoderPreset::Lstm,
            DecoderPreset::Gru,
            DecoderPreset::Attention,
            DecoderPreset::Transformer,
            DecoderPreset::Clipcap,
        ] {
            let cfg = ModelConfig::preset(EncoderKind::SmallCnn, false, p, 12);
            tch::manual_seed(3);
            let m = Captioner::new(&cfg, Device::Cpu, true);
            let images = Tensor::randn([2, 3, 64, 64], (Kind::Float, Device::Cpu));
            let f = m.encode(&images, false).unwrap();
            let sp = SP;
            let how = Draw::model_samples(5, 4, 9);
            let drawn = m.draw(&f, how, sp).unwrap();
            assert_eq!(drawn.len(), 8);
            let (tokens, scored) = drawn_tokens(&drawn, sp);
            let owner = Tensor::from_slice(&[0i64, 0, 0, 0, 1, 1, 1, 1]);
            let f8 = ImageFeatures {
                owner: Some(owner),
                ..f.shallow_clone()
            };
            let lp = m.sequence_logp(&f8, &tokens, &scored, sp);
            let got = Vec::<f32>::try_from(&lp.detach()).unwrap();
            for (i, d) in drawn.iter().enumerate() {
                assert!(
                    (got[i] as f64 - d.hyp.logp).abs() < 1e-3,
                    "{p:?} caption {i}: {} vs {} ({d:?})",
                    got[i],
                    d.hyp.logp
                );
                assert_eq!(
                    scored[i] as usize,
                    d.hyp.tokens.len() + usize::from(d.finished)
                );
            }
            lp.sum(Kind::Float).backward();
            let moved: f64 =
                m.vs.trainable_variables()
                    .iter()
                    .filter(|v| v.grad().defined())
                    .map(|v| v.grad().abs().sum(Kind::Float).double_value(&[]))
                    .sum();
            assert!(moved > 0.0, "{p:?}: no gradient");
        }
    }

    #[test]
    fn masking_unk_renormalises_and_padding_adds_nothing() {
        let cfg = ModelConfig::preset(EncoderKind::SmallCnn, false, DecoderPreset::Lstm, 12);
        tch::manual_seed(4);
        let m = Captioner::new(&cfg, Device::Cpu, true);
        let f = m
            .encode(
                &Tensor::randn([1, 3, 64, 64], (Kind::Float, Device::Cpu)),
                false,
            )
            .unwrap();
        let short = Tensor::from_slice(&[1i64, 5, 2]).view([1, 3]);
        let padded = Tensor::from_slice(&[1i64, 5, 2, 0, 0]).view([1, 5]);
        let a = m.sequence_logp(&f, &short, &[2], SP).double_value(&[0]);
        let b = m.sequence_logp(&f, &padded, &[2], SP).double_value(&[0]);
        assert!((a - b).abs() < 1e-5, "{a} {b}");
        let allow = Specials {
            allow_unk: true,
            ..SP
        };
        let plain = m.sequence_logp(&f, &short, &[2], allow).double_value(&[0]);
        assert!(
            a > plain,
            "without <unk> the other words are likelier: {a} {plain}"
        );
        assert!(a.is_finite() && a < 0.0);
    }
}

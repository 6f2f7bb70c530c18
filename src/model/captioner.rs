//! A whole captioner: encoder + Show-and-Tell decoder, with the two variable stores of
//! DESIGN.md habit 3 — trainable weights in `vs` (`decoder.*`, and `encoder.*` when the encoder
//! is trained end to end), a pretrained encoder frozen in its own store under torchvision's
//! names — and batched generation over [`crate::infer::decoding`].
use tch::{nn::VarStore, Device, Kind, Tensor};

use super::decoder::Decoder;
use super::tagger::Tagger;
use super::Encoder;
use crate::config::ModelConfig;
use crate::infer::decoding::{decode, Decoding, Hypothesis, Specials};
use crate::{Error, Result};

#[derive(Debug)]
pub struct Captioner {
    pub cfg: ModelConfig,
    /// Trainable variables.
    pub vs: VarStore,
    pub decoder: Decoder,
    /// The hashtag model (`tags.*` in `vs`), when the run has one.
    pub tagger: Option<Tagger>,
    /// Absent when training a frozen encoder's decoder from a feature cache.
    pub encoder: Option<Encoder>,
    pub frozen_vs: Option<VarStore>,
}

impl Captioner {
    /// `with_encoder = false` skips building a frozen encoder (training from cached features).
    pub fn new(cfg: &ModelConfig, device: Device, with_encoder: bool) -> Self {
        let vs = VarStore::new(device);
        let decoder = Decoder::new(vs.root() / "decoder", cfg);
        let tagger = cfg
            .hashtags
            .as_ref()
            .map(|t| Tagger::new(vs.root() / "tags", cfg, t));
        let (encoder, frozen_vs) = if !cfg.frozen_encoder {
            (Some(Encoder::new(vs.root() / "encoder", cfg.encoder)), None)
        } else if with_encoder {
            let mut fvs = VarStore::new(device);
            let enc = Encoder::new(fvs.root(), cfg.encoder);
            fvs.freeze();
            (Some(enc), Some(fvs))
        } else {
            (None, None)
        };
        Captioner {
            cfg: cfg.clone(),
            vs,
            decoder,
            tagger,
            encoder,
            frozen_vs,
        }
    }

    pub fn device(&self) -> Device {
        self.vs.device()
    }

    /// Preprocessed images `(B,3,S,S)` ⇒ pooled features `(B,D)`.
    pub fn encode(&self, images: &Tensor, train: bool) -> Result<Tensor> {
        let enc = self
            .encoder
            .as_ref()
            .ok_or_else(|| Error::invalid("this model was built without its image encoder"))?;
        let images = images.to_device(self.device());
        Ok(if self.cfg.frozen_encoder {
            tch::no_grad(|| enc.forward_t(&images, false).pooled)
        } else {
            enc.forward_t(&images, train).pooled
        })
    }

    /// Captions for pooled features `(N,D)`, decoded in chunks of `chunk` images.
    pub fn generate(
        &self,
        features: &Tensor,
        decoding: &Decoding,
        sp: Specials,
        chunk: usize,
    ) -> Result<Vec<Hypothesis>> {
        self.generate_with(&self.decoder, features, decoding, sp, chunk)
    }

    /// Sequences from any Show-and-Tell decoder of this model (captions, or the GRU tag
    /// generator) for pooled features `(N,D)`.
    pub fn generate_with(
        &self,
        decoder: &Decoder,
        features: &Tensor,
        decoding: &Decoding,
        sp: Specials,
        chunk: usize,
    ) -> Result<Vec<Hypothesis>> {
        let n = features.size()[0];
        let mut out = Vec::with_capacity(n as usize);
        let mut start = 0;
        while start < n {
            let len = (chunk as i64).min(n - start);
            let feats = features.narrow(0, start, len).to_device(self.device());
            let hyps = tch::no_grad(|| -> Result<Vec<Hypothesis>> {
                let mut state = decoder.start(&feats, false);
                decode(len as usize, decoding, sp, |parents, tokens| {
                    let rows: Vec<i64> = parents.iter().map(|&p| p as i64).collect();
                    let rows = Tensor::from_slice(&rows).to_device(self.device());
                    let toks = Tensor::from_slice(tokens).to_device(self.device());
                    let (lp, next) = decoder.step(&toks, &state.select(&rows)); // (R, V)
                    state = next;
                    let lp = lp.to_kind(Kind::Float).to_device(Device::Cpu).view([-1]);
                    Vec::<f32>::try_from(&lp).map_err(Error::Torch)
                })
            })?;
            out.extend(hyps);
            start += len;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EncoderKind;
    use crate::model::rnn::CellKind;
    use crate::train::checkpoint::{load_vars, save_vars};

    #[test]
    fn save_then_load_gives_identical_captions() {
        let dir = tempfile::tempdir().unwrap();
        for cell in [CellKind::Lstm, CellKind::Gru] {
            let cfg = ModelConfig::preset(EncoderKind::SmallCnn, false, cell, 20);
            tch::manual_seed(1);
            let a = Captioner::new(&cfg, Device::Cpu, true);
            let images = Tensor::randn([3, 3, 64, 64], (Kind::Float, Device::Cpu));
            let feats = a.encode(&images, false).unwrap(); // (3, D)
            let dec = Decoding::Beam {
                width: 3,
                max_len: 8,
                alpha: 0.0,
            };
            let sp = Specials { start: 1, end: 2 };
            let before = a.generate(&feats, &dec, sp, 2).unwrap();
            let path = dir.path().join("m.safetensors");
            save_vars(&a.vs, &path).unwrap();
            tch::manual_seed(2); // a different random init, overwritten by the load
            let mut b = Captioner::new(&cfg, Device::Cpu, true);
            load_vars(&mut b.vs, &path).unwrap();
            let feats_b = b.encode(&images, false).unwrap();
            assert_eq!(before, b.generate(&feats_b, &dec, sp, 2).unwrap());
        }
    }
}

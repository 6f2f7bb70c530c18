//! A whole captioner: encoder + caption decoder (+ hashtag model), with the two variable stores
//! of docs/ARCHITECTURE.md "Variable stores" — trainable weights in `vs` (`decoder.*`, `tags.*`,
//! and `encoder.*` when the encoder is trained end to end), a pretrained encoder frozen in its own
//! store under torchvision's names. It owns the training loss and batched generation over
//! [`super::decoding`], so the training loop, the evaluation runner and inference never
//! name a decoder architecture.
use tch::{nn::VarStore, Device, Kind, Tensor};

use super::decoder::{Decoder, ShowTell, State};
use super::features::ImageFeatures;
use super::rnn::RnnState;
use super::tagger::Tagger;
use super::Encoder;
use crate::config::ModelConfig;
use crate::model::decoding::{decode_nbest_counted, Decoding, Hypothesis, Specials, UnkStats};
use crate::model::precision::Precision;
use crate::text::vocab::PAD;
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
    /// Every decoding step since the model was built: how often `<unk>` was the most probable
    /// word (`eval` reports it; the word itself is masked unless `--allow-unk`).
    pub unk_stats: std::cell::Cell<UnkStats>,
    /// Inference precision (`--precision`): fp32, or the weights in bf16/fp16 and every
    /// forward pass under autocast (docs/ARCHITECTURE.md, "Mixed precision").
    pub precision: Precision,
}

impl Captioner {
    /// `with_encoder = false` skips building a frozen encoder (training from cached features).
    pub fn new(cfg: &ModelConfig, device: Device, with_encoder: bool) -> Self {
        let vs = VarStore::new(device);
        let decoder = Decoder::new(
            vs.root() / "decoder",
            &cfg.decoder,
            cfg.dims(),
            cfg.vocab_size,
        );
        // ClipCap's frozen LM: its variables stay in the store (saved, loaded) but never train
        // (the optimizer takes the variables that require gradients).
        if let Some(frozen) = cfg.decoder.frozen_prefix() {
            for (name, t) in vs.variables() {
                if name.starts_with(frozen) {
                    let _ = t.set_requires_grad(false);
                }
            }
        }
        let tagger = cfg
            .hashtags
            .as_ref()
            .map(|t| Tagger::new(vs.root() / "tags", cfg, t));
        let (encoder, frozen_vs) = if !cfg.frozen_encoder {
            let p = vs.root() / "encoder";
            let enc = Encoder::new(p, cfg.encoder, cfg.clip.as_ref());
            if let Some(f) = &cfg.fine_tune {
                freeze_encoder_but(&vs, cfg, f);
            }
            (Some(enc), None)
        } else if with_encoder {
            let mut fvs = VarStore::new(device);
            let enc = Encoder::new(fvs.root(), cfg.encoder, cfg.clip.as_ref());
            fvs.freeze();
            enc.frozen_layout(&fvs);
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
            unk_stats: Default::default(),
            precision: Precision::Fp32,
        }
    }

    /// Decode in `p` from now on: the weights (trainable and frozen) are cast to its 16-bit
    /// type, halving their memory, and [`Captioner::in_precision`] runs every forward pass
    /// under autocast so float32 inputs, states and masks meet them in one type. For inference
    /// only (training keeps float32 master weights; see `train --precision`). The CUDA-only
    /// rule is the caller's ([`Precision::check`]); CPU works, which is how it is tested.
    pub fn set_precision(&mut self, p: Precision) {
        let kind = p.half_kind().unwrap_or(Kind::Float);
        self.vs.set_kind(kind);
        if let Some(fvs) = &mut self.frozen_vs {
            fvs.set_kind(kind);
        }
        self.precision = p;
    }

    /// `f` under this captioner's inference precision (as it is in fp32).
    pub fn in_precision<T>(&self, f: impl FnOnce() -> T) -> T {
        self.precision.autocast(self.device(), f)
    }

    pub fn device(&self) -> Device {
        self.vs.device()
    }

    /// Keep the grid only for decoders that read it (it is large).
    pub fn trim(&self, f: ImageFeatures) -> ImageFeatures {
        if self.cfg.decoder.needs_grid() {
            f
        } else {
            f.without_grid()
        }
    }

    /// Preprocessed images `(B,3,S,S)` ⇒ features (pooled `(B,D)`, grid `(B,N,C)` when the
    /// decoder reads one).
    pub fn encode(&self, images: &Tensor, train: bool) -> Result<ImageFeatures> {
        let enc = self
            .encoder
            .as_ref()
            .ok_or_else(|| Error::invalid("this model was built without its image encoder"))?;
        let images = images.to_device(self.device());
        let f = self.in_precision(|| {
            if self.cfg.frozen_encoder {
                tch::no_grad(|| enc.forward_t(&images, false))
            } else if self.cfg.fine_tune.is_some() {
                // Eval mode while training: BatchNorm normalises with (and keeps) the
                // pretrained running statistics; gradients still reach the trainable blocks.
                enc.forward_t(&images, false)
            } else {
                enc.forward_t(&images, train)
            }
        });
        Ok(self.trim(f))
    }

    /// The caption objective (teacher forcing, pad masked, plus the decoder's regulariser).
    pub fn loss(&self, f: &ImageFeatures, tokens: &Tensor, train: bool) -> Tensor {
        self.decoder.loss(f, tokens, train)
    }

    /// Captions for features of `N` images, decoded in chunks of `chunk` images.
    pub fn generate(
        &self,
        f: &ImageFeatures,
        decoding: &Decoding,
        sp: Specials,
        chunk: usize,
    ) -> Result<Vec<Hypothesis>> {
        Ok(self
            .generate_nbest(f, decoding, sp, chunk)?
            .into_iter()
            .map(crate::model::decoding::first_or_empty)
            .collect())
    }

    /// Per image, the n-best captions (see [`crate::model::decoding::decode_nbest`]).
    pub fn generate_nbest(
        &self,
        f: &ImageFeatures,
        decoding: &Decoding,
        sp: Specials,
        chunk: usize,
    ) -> Result<Vec<Vec<Hypothesis>>> {
        self.generate_nbest_with(f, &[], decoding, sp, chunk)
    }

    /// An ensemble's n-best captions: this captioner and `partners` (each with its own features
    /// of the same `N` images, in the same order) decode as one model whose next-word
    /// distribution is the mean of the members' probabilities (ruotianluo's `eval_ensemble`).
    /// The members must share the token ids (the caller checks their vocabularies); decoding
    /// runs under this captioner's precision.
    pub fn generate_nbest_with(
        &self,
        f: &ImageFeatures,
        partners: &[(&Captioner, &ImageFeatures)],
        decoding: &Decoding,
        sp: Specials,
        chunk: usize,
    ) -> Result<Vec<Vec<Hypothesis>>> {
        let members: Vec<(&Captioner, &ImageFeatures)> = std::iter::once((self, f))
            .chain(partners.iter().copied())
            .collect();
        if let Some((_, g)) = members.iter().find(|(_, g)| g.len() != f.len()) {
            return Err(Error::invalid(format!(
                "ensemble: a member has features of {} images, the first {}",
                g.len(),
                f.len()
            )));
        }
        self.decode_chunks(
            f.len(),
            decoding,
            sp,
            chunk,
            |first, len| {
                members
                    .iter()
                    .map(|(m, g)| m.decoder.start(&g.narrow(first, len).to_device(m.device())))
                    .collect::<Vec<_>>()
            },
            |t, states: &Vec<State>| {
                let (lps, next): (Vec<Tensor>, Vec<State>) = members
                    .iter()
                    .zip(states)
                    .map(|((m, _), s)| m.decoder.step(t, s))
                    .unzip();
                (mean_probability(lps), next)
            },
            |states, rows| states.iter().map(|s| s.select(rows)).collect(),
        )
    }

    /// Tag sequences from the GRU tag generator for features of `N` images.
    pub fn generate_tags(
        &self,
        gen: &ShowTell,
        f: &ImageFeatures,
        decoding: &Decoding,
        sp: Specials,
        chunk: usize,
    ) -> Result<Vec<Hypothesis>> {
        Ok(self
            .decode_chunks(
                f.len(),
                decoding,
                sp,
                chunk,
                |first, len| {
                    let g = f.narrow(first, len).to_device(self.device());
                    gen.start(&g.rows_pooled(), false)
                },
                |t, s| gen.step(t, s),
                RnnState::select,
            )?
            .into_iter()
            .map(crate::model::decoding::first_or_empty)
            .collect())
    }

    /// Decode `n` images in chunks of `chunk`: `start(first, len)` builds the state of images
    /// `first..first + len`, `step` gives the next words' log-probabilities `(R, V)` and state,
    /// `select` reorders the state's rows for beam search.
    #[allow(clippy::too_many_arguments)]
    fn decode_chunks<S>(
        &self,
        n: i64,
        decoding: &Decoding,
        sp: Specials,
        chunk: usize,
        start: impl Fn(i64, i64) -> S,
        step: impl Fn(&Tensor, &S) -> (Tensor, S),
        select: impl Fn(&S, &Tensor) -> S,
    ) -> Result<Vec<Vec<Hypothesis>>> {
        let mut out = Vec::with_capacity(n as usize);
        let mut first = 0;
        while first < n {
            let len = (chunk.max(1) as i64).min(n - first);
            let mut stats = self.unk_stats.get();
            let hyps = self.in_precision(|| {
                tch::no_grad(|| -> Result<Vec<Vec<Hypothesis>>> {
                    let mut state = start(first, len);
                    let decoding = decoding.from_image(first as usize);
                    let step = |parents: &[usize], tokens: &[i64]| {
                        let rows: Vec<i64> = parents.iter().map(|&p| p as i64).collect();
                        let rows = Tensor::from_slice(&rows).to_device(self.device());
                        let toks = Tensor::from_slice(tokens).to_device(self.device());
                        let (lp, next) = step(&toks, &select(&state, &rows)); // (R, V)
                        state = next;
                        let lp = lp.to_kind(Kind::Float).to_device(Device::Cpu).view([-1]);
                        Vec::<f32>::try_from(&lp).map_err(Error::Torch)
                    };
                    decode_nbest_counted(len as usize, &decoding, sp, step, &mut stats)
                })
            })?;
            self.unk_stats.set(stats);
            out.extend(hyps);
            first += len;
        }
        Ok(out)
    }

    /// Per-word attention over the grid cells for finished captions (teacher forcing on
    /// `[<start> words <end>]`, which in eval mode reproduces the decoding steps exactly):
    /// per hypothesis, one row of `N` weights per word and one for `<end>`. `None` for
    /// decoders without attention weights.
    pub fn attention(
        &self,
        f: &ImageFeatures,
        hyps: &[Hypothesis],
        sp: Specials,
    ) -> Result<Option<Vec<Vec<Vec<f32>>>>> {
        if hyps.is_empty() || !matches!(self.decoder, Decoder::Attention(_)) {
            return Ok(None);
        }
        let len = hyps.iter().map(|h| h.tokens.len()).max().unwrap_or(0) + 2;
        let mut flat = vec![PAD; hyps.len() * len];
        for (i, h) in hyps.iter().enumerate() {
            let row = &mut flat[i * len..(i + 1) * len];
            row[0] = sp.start;
            row[1..=h.tokens.len()].copy_from_slice(&h.tokens);
            row[h.tokens.len() + 1] = sp.end;
        }
        let tokens = Tensor::from_slice(&flat)
            .view([hyps.len() as i64, len as i64])
            .to_device(self.device());
        let feats = f.to_device(self.device());
        let out =
            self.in_precision(|| tch::no_grad(|| self.decoder.forward_t(&feats, &tokens, false)));
        let Some(a) = out.attention else {
            return Ok(None);
        };
        let a = a.to_kind(Kind::Float).to_device(Device::Cpu); // (B, L-1, N)
        let n = a.size()[2] as usize;
        let all = Vec::<f32>::try_from(a.contiguous().view([-1])).map_err(Error::Torch)?;
        Ok(Some(
            hyps.iter()
                .enumerate()
                .map(|(i, h)| {
                    (0..=h.tokens.len())
                        .map(|t| {
                            let at = (i * (len - 1) + t) * n;
                            all[at..at + n].to_vec()
                        })
                        .collect()
                })
                .collect(),
        ))
    }
}

/// The ensemble's next-word log-probabilities: `log mean_m exp(lp_m)` over the members'
/// `(R, V)` rows (one member: its own, unchanged).
fn mean_probability(mut lps: Vec<Tensor>) -> Tensor {
    if lps.len() == 1 {
        return lps.remove(0);
    }
    let m = lps.len() as f64;
    let lps: Vec<Tensor> = lps.iter().map(|l| l.to_kind(Kind::Float)).collect();
    Tensor::stack(&lps, 0).logsumexp([0], false) - m.ln() // (R, V)
}

/// A fine-tuned encoder (`encoder.*` in the trainable store): every variable but those of the
/// last `f.blocks` blocks and the head stops requiring gradients, so the optimizer (which takes
/// the variables that do) leaves it as the pretrained weights have it (config::FineTune).
fn freeze_encoder_but(vs: &VarStore, cfg: &ModelConfig, f: &crate::config::FineTune) {
    for (name, t) in vs.variables() {
        if let Some(rest) = name.strip_prefix("encoder.") {
            // BatchNorm's running statistics never require gradients (they are buffers).
            let trains = f.trains(cfg.encoder, rest) && t.requires_grad();
            let _ = t.set_requires_grad(trains);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DecoderPreset, EncoderKind};
    use crate::model::decoding::TEST_SPECIALS as SP;
    use crate::model::weights::{load_vars, save_vars};

    #[test]
    fn an_ensemble_averages_probabilities_and_of_one_model_twice_is_that_model() {
        let lps = [
            Tensor::from_slice(&[0.7f32, 0.2, 0.1]).log().view([1, 3]),
            Tensor::from_slice(&[0.1f32, 0.2, 0.7]).log().view([1, 3]),
            Tensor::from_slice(&[0.1f32, 0.8, 0.1]).log().view([1, 3]),
        ];
        let mean = mean_probability(lps.iter().map(|t| t.shallow_clone()).collect()).exp();
        let got = Vec::<f32>::try_from(mean.view([-1])).unwrap();
        for (g, want) in got.iter().zip([0.3f32, 0.4, 0.3]) {
            assert!((g - want).abs() < 1e-6, "{got:?}");
        }
        let alone = mean_probability(vec![lps[0].shallow_clone()]);
        assert!(alone.equal(&lps[0]));

        let cfg = ModelConfig::preset(EncoderKind::SmallCnn, false, DecoderPreset::Attention, 20);
        tch::manual_seed(3);
        let a = Captioner::new(&cfg, Device::Cpu, true);
        tch::manual_seed(4);
        let b = Captioner::new(&cfg, Device::Cpu, true);
        let images = Tensor::randn([4, 3, 64, 64], (Kind::Float, Device::Cpu));
        let (fa, fb) = (
            a.encode(&images, false).unwrap(),
            b.encode(&images, false).unwrap(),
        );
        for dec in [
            Decoding::Greedy { max_len: 8 },
            Decoding::Beam {
                width: 3,
                max_len: 8,
                alpha: 0.0,
            },
        ] {
            let alone = a.generate_nbest(&fa, &dec, SP, 3).unwrap();
            let twice = a
                .generate_nbest_with(&fa, &[(&a, &fa)], &dec, SP, 3)
                .unwrap();
            let words = |h: &Vec<Vec<Hypothesis>>| -> Vec<Vec<Vec<i64>>> {
                h.iter()
                    .map(|n| n.iter().map(|x| x.tokens.clone()).collect())
                    .collect()
            };
            assert_eq!(words(&alone), words(&twice), "{dec:?}");
        }
        // Two different models: each image's greedy first word is the argmax of the mean of
        // their first-step distributions.
        let start = Tensor::from_slice(&[1i64; 4]);
        let first = |m: &Captioner, f: &ImageFeatures| {
            tch::no_grad(|| m.decoder.step(&start, &m.decoder.start(f)).0)
        };
        let mean = mean_probability(vec![first(&a, &fa), first(&b, &fb)]);
        let _ = mean.narrow(1, 3, 1).fill_(f64::NEG_INFINITY); // <unk> is masked
        let want = Vec::<i64>::try_from(mean.argmax(1, false)).unwrap();
        let pair = a
            .generate_nbest_with(&fa, &[(&b, &fb)], &Decoding::Greedy { max_len: 8 }, SP, 3)
            .unwrap();
        let got: Vec<i64> = pair
            .iter()
            .map(|n| n[0].tokens.first().copied().unwrap_or(2))
            .collect();
        assert_eq!(got, want);
        let short = fb.narrow(0, 2);
        assert!(a
            .generate_nbest_with(
                &fa,
                &[(&b, &short)],
                &Decoding::Greedy { max_len: 8 },
                SP,
                3
            )
            .is_err());
    }

    #[test]
    fn save_then_load_gives_identical_captions() {
        let dir = tempfile::tempdir().unwrap();
        for p in [
            DecoderPreset::Lstm,
            DecoderPreset::Gru,
            DecoderPreset::Attention,
            DecoderPreset::Transformer,
            DecoderPreset::Clipcap,
        ] {
            let cfg = ModelConfig::preset(EncoderKind::SmallCnn, false, p, 20);
            tch::manual_seed(1);
            let a = Captioner::new(&cfg, Device::Cpu, true);
            let images = Tensor::randn([3, 3, 64, 64], (Kind::Float, Device::Cpu));
            let feats = a.encode(&images, false).unwrap();
            let dec = Decoding::Beam {
                width: 3,
                max_len: 8,
                alpha: 0.0,
            };
            let before = a.generate(&feats, &dec, SP, 2).unwrap();
            let path = dir.path().join("m.safetensors");
            save_vars(&a.vs, &path).unwrap();
            tch::manual_seed(2); // a different random init, overwritten by the load
            let mut b = Captioner::new(&cfg, Device::Cpu, true);
            load_vars(&mut b.vs, &path).unwrap();
            let feats_b = b.encode(&images, false).unwrap();
            assert_eq!(before, b.generate(&feats_b, &dec, SP, 2).unwrap(), "{p:?}");
        }
    }

    /// `--fine-tune-encoder`: only the last blocks and the head require gradients and get
    /// them, and a training step leaves BatchNorm's running statistics as they were (the
    /// encoder runs in eval mode while the decoder trains).
    #[test]
    fn a_fine_tuned_encoder_trains_its_last_blocks_with_frozen_batchnorm_statistics() {
        let mut cfg = ModelConfig::preset(
            EncoderKind::EfficientnetLite0,
            false,
            DecoderPreset::Attention,
            20,
        );
        cfg.preprocess.size = 64;
        cfg.fine_tune = Some(crate::config::FineTune { blocks: 2 });
        tch::manual_seed(4);
        let m = Captioner::new(&cfg, Device::Cpu, true);
        let trains = |n: &str| {
            [
                "encoder._blocks.14.",
                "encoder._blocks.15.",
                "encoder._conv_head.",
                "encoder._bn1.",
            ]
            .iter()
            .any(|p| n.starts_with(p))
                && !n.contains("running_")
        };
        let vars = m.vs.variables();
        for (name, t) in &vars {
            let want = !name.starts_with("encoder.") || trains(name);
            assert_eq!(t.requires_grad(), want, "{name}");
        }
        let before: Vec<(String, Tensor)> = vars
            .iter()
            .filter(|(n, _)| n.contains("running_"))
            .map(|(n, t)| (n.clone(), t.copy()))
            .collect();
        assert_eq!(
            before.len(),
            2 * 49,
            "running mean and var of 49 BatchNorms"
        );
        let images = Tensor::rand([3, 3, 64, 64], (Kind::Float, Device::Cpu));
        let tokens =
            Tensor::from_slice(&[1i64, 5, 6, 7, 2, 1, 8, 9, 2, 0, 1, 4, 2, 0, 0]).view([3, 5]);
        let f = m.encode(&images, true).unwrap();
        m.loss(&f, &tokens, true).backward();
        for (name, t) in &vars {
            if name.starts_with("encoder.") {
                assert_eq!(t.grad().defined(), trains(name), "{name}");
            }
        }
        for (name, t0) in &before {
            assert_eq!(&vars[name], t0, "{name} changed in a training step");
        }
    }

    /// bf16 inference (`--precision bf16`) on every decoder: weights stored in bf16, forward
    /// passes under autocast. Run on the CPU here (the command line allows it on CUDA only):
    /// the teacher-forced loss stays within bf16's rounding of float32's and decoding runs.
    #[test]
    fn bf16_inference_matches_float32_within_rounding() {
        for p in [
            DecoderPreset::Lstm,
            DecoderPreset::Gru,
            DecoderPreset::Attention,
            DecoderPreset::Transformer,
            DecoderPreset::Clipcap,
        ] {
            let cfg = ModelConfig::preset(EncoderKind::SmallCnn, false, p, 20);
            tch::manual_seed(3);
            let mut m = Captioner::new(&cfg, Device::Cpu, true);
            let images = Tensor::rand([3, 3, 64, 64], (Kind::Float, Device::Cpu));
            let tokens =
                Tensor::from_slice(&[1i64, 5, 6, 7, 2, 1, 8, 9, 2, 0, 1, 4, 2, 0, 0]).view([3, 5]);
            let loss = |m: &Captioner| {
                let f = m.encode(&images, false).unwrap();
                let l = m.in_precision(|| tch::no_grad(|| m.loss(&f, &tokens, false)));
                l.to_kind(Kind::Float).double_value(&[])
            };
            let fp32 = loss(&m);
            m.set_precision(Precision::Bf16);
            for (name, t) in m.vs.variables() {
                assert_eq!(t.kind(), Kind::BFloat16, "{p:?}: {name}");
            }
            let bf16 = loss(&m);
            assert!(
                (bf16 - fp32).abs() <= 0.02 * fp32.abs(),
                "{p:?}: loss fp32 {fp32} vs bf16 {bf16}"
            );
            let feats = m.encode(&images, false).unwrap();
            for dec in [
                Decoding::Greedy { max_len: 6 },
                Decoding::Beam {
                    width: 3,
                    max_len: 6,
                    alpha: 0.0,
                },
            ] {
                let hyps = m.generate(&feats, &dec, SP, 2).unwrap();
                assert_eq!(hyps.len(), 3, "{p:?}");
                for h in hyps {
                    assert!(h.logp.is_finite() && h.logp <= 0.0, "{p:?}: {h:?}");
                    assert!(h.tokens.iter().all(|&t| (0..20).contains(&t) && t != 3));
                }
            }
            m.set_precision(Precision::Fp32);
            assert!(
                (loss(&m) - fp32).abs() <= 0.02 * fp32.abs(),
                "{p:?}: back to fp32"
            );
        }
    }
}

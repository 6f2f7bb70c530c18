//! Pretrained vision–language captioners read from Hugging Face folders — BLIP
//! ([`crate::model::blip`]) and GIT ([`crate::model::git`]) — behind one interface
//! ([`VlModel`]): image tokens from pixels, a key/value cache started from them (and an optional
//! text prompt), and one cached step per token. Captions are decoded by the shared strategies of
//! [`crate::model::decoding`] (greedy, beam, top-p) through their `step` closure, batched over
//! images, so these models caption exactly as captag's own decoders do (docs/vision-language.md).
use std::path::{Path, PathBuf};

use image::RgbImage;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tch::{nn, Device, Kind, Tensor};

use crate::data::image::clip::{resample, ClipPreprocess, Filter};
use crate::model::blip::{Blip, BlipConfig};
use crate::model::decoding::hf::{generate_nbest, Generate, Generated, GenerationConfig};
use crate::model::decoding::{
    decode_nbest, draw_counted, Decoding, Draw, Drawn, Hypothesis, Specials, UnkStats,
};
use crate::model::git::{Git, GitConfig};
use crate::model::hf::{read_config, HfWeights};
use crate::text::hf_tokenizer::{Family, HfTokenizer};
use crate::{Error, Result};

pub mod interface;
pub use interface::{Prefix, VlCache, VlModel};

/// A finished `generate` sequence as a caption hypothesis (the end token not written).
fn hypothesis(h: Generated, end: i64) -> Hypothesis {
    let mut tokens = h.ids;
    if tokens.last() == Some(&end) {
        tokens.pop();
    }
    Hypothesis {
        tokens,
        logp: h.logp as f64,
        score: h.score as f64,
    }
}

/// Which architecture a folder (or run) holds, with its config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "architecture", rename_all = "lowercase")]
pub enum VlConfig {
    Blip(BlipConfig),
    Git(GitConfig),
}

impl VlConfig {
    /// `dir/config.json` of a BLIP or GIT folder.
    pub fn read(dir: &Path) -> Result<VlConfig> {
        let (v, _) = read_config::<Value>(dir, "BLIP or GIT")?;
        let place = dir.join("config.json").display().to_string();
        let bad = |why: String| Error::invalid(format!("{place}: {why}"));
        let parse = |e: serde_json::Error| bad(crate::input::one_line(e));
        let cfg = match v["model_type"].as_str() {
            Some("blip") => VlConfig::Blip(serde_json::from_value(v.clone()).map_err(parse)?),
            Some("git") => VlConfig::Git(serde_json::from_value(v.clone()).map_err(parse)?),
            other => {
                return Err(bad(format!(
                    "model_type is {}, not blip or git (captag captions with \
                     BlipForConditionalGeneration and GitForCausalLM folders)",
                    other.map_or("missing".into(), |t| format!("`{t}`"))
                )))
            }
        };
        match &cfg {
            VlConfig::Blip(c) => c.check(&place)?,
            VlConfig::Git(c) => c.check(&place)?,
        }
        Ok(cfg)
    }

    pub fn name(&self) -> &'static str {
        match self {
            VlConfig::Blip(_) => "BLIP",
            VlConfig::Git(_) => "GIT",
        }
    }

    /// The modules under `p` (the variables named as in the folder).
    pub fn build(&self, p: &nn::Path) -> Box<dyn VlModel> {
        match self {
            VlConfig::Blip(c) => Box::new(Blip::new(p, c)),
            VlConfig::Git(c) => Box::new(Git::new(p, c)),
        }
    }

    /// The variables of the image tower (`--freeze-vision` keeps them as loaded).
    pub fn vision_prefix(&self) -> &'static str {
        match self {
            VlConfig::Blip(_) => "vision_model.",
            VlConfig::Git(_) => "git.image_encoder.",
        }
    }

    /// The folder names a variable may have.
    pub fn weight_names(&self, var: &str) -> Vec<String> {
        match self {
            VlConfig::Blip(_) => Blip::weight_names(var),
            VlConfig::Git(c) => Git::weight_names(c, var),
        }
    }
}

/// `preprocessor_config.json`: BLIP's `BlipImageProcessor` (resize to `size × size`, no crop) or
/// GIT's `CLIPImageProcessor` (shorter side, centre crop); both Pillow-resampled as
/// `transformers`' PIL processors, rescaled by 1/255 and normalised by the folder's mean/std.
#[derive(Debug, Clone, PartialEq)]
pub enum VlPreprocess {
    Resize {
        size: u32,
        filter: Filter,
        mean: [f32; 3],
        std: [f32; 3],
    },
    Clip(ClipPreprocess),
}

impl VlPreprocess {
    pub fn read(dir: &Path, cfg: &VlConfig) -> Result<VlPreprocess> {
        match cfg {
            VlConfig::Git(c) => {
                let p = ClipPreprocess::read(dir, c.vision_config.image_size)?;
                if p.crop as i64 != c.vision_config.image_size {
                    return Err(Error::invalid(format!(
                        "{}: preprocessor_config.json crops to {} pixels, the model takes {}",
                        dir.display(),
                        p.crop,
                        c.vision_config.image_size
                    )));
                }
                Ok(VlPreprocess::Clip(p))
            }
            VlConfig::Blip(c) => blip_preprocess(dir, c.vision_config.image_size as u32),
        }
    }

    pub fn size(&self) -> u32 {
        match self {
            VlPreprocess::Resize { size, .. } => *size,
            VlPreprocess::Clip(p) => p.crop,
        }
    }

    /// An RGB picture ⇒ `(3, S, S)` float.
    pub fn tensor(&self, img: &RgbImage) -> Tensor {
        match self {
            VlPreprocess::Clip(p) => p.tensor(img),
            VlPreprocess::Resize {
                size,
                filter,
                mean,
                std,
            } => {
                let bytes = resample(img, *size, *size, *filter); // interleaved RGB
                let s = *size as i64;
                let x = Tensor::from_slice(&bytes)
                    .view([s, s, 3])
                    .permute([2, 0, 1])
                    .to_kind(Kind::Float)
                    * (1.0 / 255.0); // (3, S, S)
                let m = Tensor::from_slice(mean).view([3, 1, 1]);
                let d = Tensor::from_slice(std).view([3, 1, 1]);
                (x - m) / d
            }
        }
    }
}

fn blip_preprocess(dir: &Path, image_size: u32) -> Result<VlPreprocess> {
    let mut out = VlPreprocess::Resize {
        size: image_size,
        filter: Filter::Bicubic,
        mean: crate::data::image::clip::CLIP_MEAN,
        std: crate::data::image::clip::CLIP_STD,
    };
    let path = dir.join("preprocessor_config.json");
    if !path.exists() {
        return Ok(out);
    }
    let bad = |why: &str| Error::invalid(format!("{}: {why}", path.display()));
    let text = crate::input::read_text(&path, crate::input::TEXT, "a preprocessor config")?;
    let v: Value = serde_json::from_str(&text).map_err(|_| bad("not valid JSON"))?;
    let VlPreprocess::Resize {
        size,
        filter,
        mean,
        std,
    } = &mut out
    else {
        unreachable!()
    };
    let s = &v["size"];
    let (h, w) = match (s.as_u64(), s["height"].as_u64(), s["width"].as_u64()) {
        (Some(n), _, _) => (n, n),
        (None, Some(h), Some(w)) => (h, w),
        _ if s.is_null() => (*size as u64, *size as u64),
        _ => {
            return Err(bad(
                "`size` must be a number or {\"height\": N, \"width\": N}",
            ))
        }
    };
    if h != w || h != image_size as u64 {
        return Err(bad(&format!(
            "resizes to {w}×{h}, the model takes {image_size}×{image_size}"
        )));
    }
    *filter = match v["resample"].as_u64() {
        None | Some(3) => Filter::Bicubic,
        Some(2) => Filter::Bilinear,
        Some(r) => return Err(bad(&format!("resample {r} is not supported (2 or 3)"))),
    };
    let triple = |v: &Value| -> Option<[f32; 3]> {
        let a = v.as_array()?;
        (a.len() == 3).then(|| [0, 1, 2].map(|i| a[i].as_f64().unwrap_or(f64::NAN) as f32))
    };
    if !v["image_mean"].is_null() {
        *mean = triple(&v["image_mean"]).ok_or_else(|| bad("image_mean must be 3 numbers"))?;
    }
    if !v["image_std"].is_null() {
        *std = triple(&v["image_std"]).ok_or_else(|| bad("image_std must be 3 numbers"))?;
    }
    if mean.iter().chain(std.iter()).any(|x| !x.is_finite()) || std.contains(&0.0) {
        return Err(bad(
            "image_mean and image_std must be finite, image_std non-zero",
        ));
    }
    Ok(out)
}

/// A loaded BLIP or GIT captioner: the model, its variables, tokenizer and preprocessing.
pub struct VlCaptioner {
    pub config: VlConfig,
    pub model: Box<dyn VlModel>,
    pub vs: nn::VarStore,
    pub tokenizer: HfTokenizer,
    pub preprocess: VlPreprocess,
    /// Where the weights came from.
    pub dir: PathBuf,
}

impl std::fmt::Debug for VlCaptioner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "VlCaptioner({}, {})",
            self.config.name(),
            self.dir.display()
        )
    }
}

/// Whether `dir` is a BLIP or GIT folder (its config.json says `model_type` blip or git).
pub fn is_vl_folder(dir: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(dir.join("config.json")) else {
        return false;
    };
    serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| v["model_type"].as_str().map(|t| t == "blip" || t == "git"))
        .unwrap_or(false)
}

impl VlCaptioner {
    /// A user's folder as downloaded: config.json, model.safetensors (or shards),
    /// preprocessor_config.json, tokenizer.json or vocab.txt.
    pub fn load(dir: &Path, device: Device) -> Result<VlCaptioner> {
        Self::load_with(dir, None, device)
    }

    /// The folder's config, preprocessing and tokenizer from `dir`, the weights from `weights`
    /// (a safetensors file under the same names, as a fine-tuned run saves them) or else from
    /// the folder.
    pub fn load_with(dir: &Path, weights: Option<&Path>, device: Device) -> Result<VlCaptioner> {
        let config = VlConfig::read(dir)?;
        let preprocess = VlPreprocess::read(dir, &config)?;
        let tokenizer = HfTokenizer::load(dir, Family::Bert)?;
        let mut vs = nn::VarStore::new(device);
        let model = config.build(&vs.root());
        let weights = match weights {
            None => HfWeights::read(dir)?,
            Some(f) => HfWeights {
                path: f.to_path_buf(),
                tensors: crate::model::weights::read_tensors(f)?
                    .into_iter()
                    .collect(),
            },
        };
        weights.load_into(&mut vs, |n| config.weight_names(n))?;
        if (tokenizer.vocab_size() as i64) > model.vocab() {
            return Err(Error::invalid(format!(
                "{}: the tokenizer has {} tokens, the model {}",
                dir.display(),
                tokenizer.vocab_size(),
                model.vocab()
            )));
        }
        Ok(VlCaptioner {
            config,
            model,
            vs,
            tokenizer,
            preprocess,
            dir: dir.to_path_buf(),
        })
    }

    pub fn device(&self) -> Device {
        self.vs.device()
    }

    /// Keep the image tower's weights as they are: its variables leave the trainable set
    /// (before the optimizer is built).
    pub fn freeze_vision(&mut self) {
        let prefix = self.config.vision_prefix();
        for (name, t) in self.vs.variables() {
            if name.starts_with(prefix) {
                let _ = t.set_requires_grad(false);
            }
        }
    }

    /// The caption ids of `text` for teacher forcing: the start token, the tokenizer's
    /// WordPiece ids (at most `max_tokens`, the model's positions permitting), the end token.
    pub fn caption_ids(&self, text: &str, max_tokens: usize) -> Vec<i64> {
        let room = (self.model.max_positions() - 2).max(0) as usize;
        let mut ids = vec![self.model.start_token()];
        ids.extend(
            self.tokenizer
                .encode_plain(text)
                .into_iter()
                .take(max_tokens.min(room))
                .map(i64::from),
        );
        ids.push(self.model.end_token());
        ids
    }

    /// Teacher-forced cross-entropy of `ids (B, T)` (`keep (B, T)`: true at real tokens) after
    /// the image tokens `memory (B, I, D)`: every caption token after the start predicted from
    /// the ones before it, padding left out; the mean over predicted tokens.
    pub fn loss(&self, memory: &Tensor, ids: &Tensor, keep: &Tensor, train: bool) -> Tensor {
        let t = ids.size()[1];
        let logits = self.model.logits_t(memory, ids, keep, train); // (B, T, V)
        let logits = logits.narrow(1, 0, t - 1).to_kind(Kind::Float); // (B, T-1, V)
        let target = ids.narrow(1, 1, t - 1); // (B, T-1)
        let mask = keep.narrow(1, 1, t - 1).to_kind(Kind::Float); // (B, T-1)
        let v = logits.size()[2];
        let nll = logits
            .log_softmax(-1, Kind::Float)
            .view([-1, v])
            .gather(1, &target.reshape([-1, 1]), false)
            .neg()
            .view_as(&mask); // (B, T-1)
        (nll * &mask).sum(Kind::Float) / mask.sum(Kind::Float).clamp_min(1.0)
    }

    /// The prefix of every caption: the start token and the prompt's tokens (no `[CLS]`/`[SEP]`).
    pub fn prefix(&self, prompt: Option<&str>) -> Prefix {
        let mut ids = vec![self.model.start_token()];
        if let Some(p) = prompt.filter(|p| !p.trim().is_empty()) {
            ids.extend(self.tokenizer.encode_plain(p).into_iter().map(i64::from));
        }
        Prefix(ids)
    }

    /// Pictures ⇒ `(N, 3, S, S)` on the model's device.
    pub fn pixels(&self, images: &[RgbImage]) -> Tensor {
        let t: Vec<Tensor> = images.iter().map(|i| self.preprocess.tensor(i)).collect();
        Tensor::stack(&t, 0).to_device(self.device())
    }

    /// The decoding walk's `step` closure over `n` images' cache (see `model::decoding`): the
    /// cache starts from `memory (n, I, D)` and `prefix`; a step whose parents are exactly the
    /// rows held (every greedy step, and sampling) keeps the cache as it is instead of copying.
    fn stepper<'a>(
        &'a self,
        memory: &Tensor,
        prefix: &Prefix,
        n: usize,
    ) -> impl FnMut(&[usize], &[i64]) -> Result<Vec<f32>> + 'a {
        let mut cache = Some(self.model.begin(memory, prefix));
        let dev = self.device();
        let mut held = n;
        move |parents: &[usize], tokens: &[i64]| -> Result<Vec<f32>> {
            let c = cache.take().unwrap_or_default();
            let mut c = if is_identity(parents, held) {
                c
            } else {
                let rows: Vec<i64> = parents.iter().map(|&p| p as i64).collect();
                c.select(&Tensor::from_slice(&rows).to_device(dev))
            };
            held = parents.len();
            let ids = Tensor::from_slice(tokens).to_device(dev).unsqueeze(1); // (R, 1)
            let logits = self.model.step(&mut c, &ids); // (R, V)
            cache = Some(c);
            let lp = logits.to_kind(Kind::Float).log_softmax(-1, Kind::Float);
            Ok(Vec::<f32>::try_from(
                lp.to_device(Device::Cpu).flatten(0, -1),
            )?)
        }
    }

    /// The special tokens decoding needs after `prefix` (no unknown word is masked: the
    /// folder's tokenizer decides what it writes, as `generate` does).
    fn specials(&self, prefix: &Prefix) -> Specials {
        Specials {
            start: prefix.last(),
            end: self.model.end_token(),
            unk: None,
            allow_unk: true,
        }
    }

    /// Each image's hypotheses (token ids after the prefix, without `[SEP]`), best first.
    pub fn decode(
        &self,
        pixels: &Tensor,
        prefix: &Prefix,
        decoding: &Decoding,
    ) -> Result<Vec<Vec<Hypothesis>>> {
        let n = pixels.size()[0] as usize;
        let limit = self.model.max_positions() - prefix.0.len() as i64;
        let decoding = clamp_len(decoding, limit.max(1) as usize);
        tch::no_grad(|| {
            let memory = self.model.image_memory(pixels, false);
            let step = self.stepper(&memory, prefix, n);
            let sp = self.specials(prefix);
            match decoding {
                // `transformers`' beam bookkeeping, so a folder's beam captions are the ones
                // `generate(num_beams=K)` writes (`decoding::hf`, after the prefix).
                Decoding::Beam {
                    width,
                    max_len,
                    alpha,
                } => {
                    let g = Generate {
                        beams: width,
                        max_length: prefix.0.len() + max_len,
                        length_penalty: alpha,
                        ..GenerationConfig::default().resolve(sp.start, sp.end, 0)
                    };
                    let nbest = generate_nbest(n, &prefix.0, &g, step)?;
                    Ok(nbest
                        .into_iter()
                        .map(|hs| hs.into_iter().map(|h| hypothesis(h, sp.end)).collect())
                        .collect())
                }
                d => decode_nbest(n, &d, sp, step),
            }
        })
    }

    /// Captions drawn for self-critical training (`train::vl`), without gradient in eval
    /// mode: greedy, or `samples` per image (image-major), each with whether it ended with
    /// `[SEP]` — the walk `decode` uses, through `model::decoding::draw_counted`.
    pub fn draw(&self, pixels: &Tensor, prefix: &Prefix, how: Draw) -> Result<Vec<Drawn>> {
        let n = pixels.size()[0] as usize;
        let limit = (self.model.max_positions() - prefix.0.len() as i64).max(1) as usize;
        let how = match how {
            Draw::Greedy { max_len } => Draw::Greedy {
                max_len: max_len.min(limit),
            },
            Draw::Sample(mut c) => {
                c.max_len = c.max_len.min(limit);
                Draw::Sample(c)
            }
        };
        tch::no_grad(|| {
            let memory = self.model.image_memory(pixels, false);
            let step = self.stepper(&memory, prefix, n);
            draw_counted(
                n,
                how,
                self.specials(prefix),
                step,
                &mut UnkStats::default(),
            )
        })
    }

    /// `log p(caption | image)` of each drawn caption, with gradient, in eval mode: `(B,)`
    /// float32. `memory (B, I, D)` is each caption's image tokens, `prefix` what the captions
    /// were drawn after; only the drawn tokens (and their `[SEP]` when finished) are scored.
    pub fn caption_logp(&self, memory: &Tensor, prefix: &Prefix, drawn: &[&Drawn]) -> Tensor {
        let dev = self.device();
        let p = prefix.0.len();
        let seqs: Vec<Vec<i64>> = drawn
            .iter()
            .map(|d| {
                let mut ids = prefix.0.clone();
                ids.extend(&d.hyp.tokens);
                if d.finished {
                    ids.push(self.model.end_token());
                }
                ids
            })
            .collect();
        let t = seqs.iter().map(Vec::len).max().unwrap_or(p).max(p + 1);
        let (mut ids, mut keep, mut scored) = (vec![0i64; seqs.len() * t], vec![], vec![]);
        for (i, s) in seqs.iter().enumerate() {
            ids[i * t..i * t + s.len()].copy_from_slice(s);
            keep.extend((0..t).map(|j| j < s.len()));
            // Target j is token j + 1: the drawn ones are targets p - 1 .. len - 1.
            scored.extend((0..t - 1).map(|j| j + 1 >= p && j + 1 < s.len()));
        }
        let b = seqs.len() as i64;
        let ids = Tensor::from_slice(&ids).view([b, t as i64]).to_device(dev);
        let keep = Tensor::from_slice(&keep).view([b, t as i64]).to_device(dev);
        let scored = Tensor::from_slice(&scored)
            .view([b, t as i64 - 1])
            .to_device(dev);
        let logits = self.model.logits_t(memory, &ids, &keep, false); // (B, T, V)
        let lp = logits
            .narrow(1, 0, t as i64 - 1)
            .to_kind(Kind::Float)
            .log_softmax(-1, Kind::Float); // (B, T-1, V)
        let picked = lp
            .gather(2, &ids.narrow(1, 1, t as i64 - 1).unsqueeze(-1), false)
            .squeeze_dim(-1); // (B, T-1)
                              // Zeroed rather than multiplied by 0: a padded position may pick a −∞.
        picked
            .masked_fill(&scored.logical_not(), 0.0)
            .sum_dim_intlist(1, false, Kind::Float)
    }

    /// Image files, `batch` at a time: each one's hypotheses (best first), or why it could not be
    /// read (one line naming the file). Sampling seeds image `i` of the list with `seed + i`,
    /// whatever the batch.
    pub fn caption_paths(
        &self,
        paths: &[PathBuf],
        prefix: &Prefix,
        decoding: &Decoding,
        batch: usize,
    ) -> Result<Vec<std::result::Result<Vec<Hypothesis>, String>>> {
        let mut out = Vec::with_capacity(paths.len());
        for (c, chunk) in paths.chunks(batch.max(1)).enumerate() {
            let read: Vec<std::result::Result<RgbImage, String>> = chunk
                .iter()
                .map(|p| crate::data::image::decode_rgb(p).map_err(|e| e.to_string()))
                .collect();
            let ok: Vec<RgbImage> = read
                .iter()
                .filter_map(|r| r.as_ref().ok().cloned())
                .collect();
            let mut hyps = if ok.is_empty() {
                vec![]
            } else {
                let d = decoding.from_image(c * batch.max(1));
                self.decode(&self.pixels(&ok), prefix, &d)?
            }
            .into_iter();
            for r in read {
                out.push(match r {
                    Ok(_) => Ok(hyps.next().unwrap_or_default()),
                    Err(e) => Err(e),
                });
            }
        }
        Ok(out)
    }

    /// Token ids ⇒ text, special tokens skipped (`batch_decode(skip_special_tokens=True)`).
    pub fn text(&self, prefix: &Prefix, ids: &[i64]) -> String {
        let all: Vec<u32> = prefix.0[1..].iter().chain(ids).map(|&i| i as u32).collect();
        self.tokenizer.decode(&all, true)
    }
}

/// Whether `parents` is `0, 1, …, held - 1`: the rows stay as they are.
fn is_identity(parents: &[usize], held: usize) -> bool {
    parents.len() == held && parents.iter().enumerate().all(|(i, &p)| i == p)
}

/// `decoding` with at most `limit` words (the model's positions bound the caption).
fn clamp_len(d: &Decoding, limit: usize) -> Decoding {
    let mut d = *d;
    match &mut d {
        Decoding::Greedy { max_len }
        | Decoding::Beam { max_len, .. }
        | Decoding::Sample { max_len, .. } => *max_len = (*max_len).min(limit),
    }
    d
}

#[cfg(test)]
pub(crate) mod tests;

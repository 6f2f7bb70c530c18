//! A translation folder ready to use: the model, its tokenizer and its `generate` settings
//! (`generation_config.json` over `config.json`), translating batches of texts into one target
//! language with padding masks (docs/translation.md).
use std::path::Path;

use tch::{nn, Device, Kind, Tensor};

use super::{DecoderState, Seq2Seq};
use crate::model::decoding::hf::{generate, Generate, GenerationConfig};
use crate::text::mt_tokenizer::{long_lang, short_lang, MtTokenizer};
use crate::{Error, Result};

pub struct Translator {
    pub vs: nn::VarStore,
    pub model: Seq2Seq,
    pub tok: MtTokenizer,
    /// The folder's `generate` settings.
    pub generation: Generate,
    /// Marian's `tokenizer_config.json` `target_lang`, when it names one.
    marian_target: Option<String>,
}

impl std::fmt::Debug for Translator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Translator")
            .field("family", &self.tok.family)
            .finish()
    }
}

fn read_json<T: serde::de::DeserializeOwned + Default>(path: &Path) -> Result<T> {
    if !path.is_file() {
        return Ok(T::default());
    }
    let text = crate::input::read_text(path, crate::input::TEXT, "a generation config")?;
    serde_json::from_str(&text).map_err(|e| {
        Error::invalid(format!(
            "{}: not a generation config ({})",
            path.display(),
            crate::input::one_line(e)
        ))
    })
}

/// What to translate into and how.
#[derive(Debug, Clone, Default)]
pub struct TranslateOptions {
    /// `hin_Deva`, `hi`, …; `None`: the folder's own target.
    pub lang: Option<String>,
    /// Beams (1: greedy); `None`: the folder's `num_beams`.
    pub beams: Option<usize>,
    /// At most this many generated tokens; `None`: the folder's `max_length`.
    pub max_new: Option<usize>,
}

impl Translator {
    pub fn load(dir: &Path, device: Device) -> Result<Translator> {
        let (vs, model) = Seq2Seq::load(dir, device)?;
        let tok = MtTokenizer::load(dir)?;
        let base: GenerationConfig = read_json(&dir.join("config.json"))?;
        let gen: GenerationConfig = read_json(&dir.join("generation_config.json"))?;
        let c = &model.config;
        let generation = gen.or(base).resolve(c.start(), c.eos(), c.pad());
        let tc: serde_json::Value = read_json(&dir.join("tokenizer_config.json"))?;
        let marian_target = tc["target_lang"].as_str().map(str::to_string);
        Ok(Translator {
            vs,
            model,
            tok,
            generation,
            marian_target,
        })
    }

    /// The `generate` settings for `opts`, with the token that selects the language: a forced
    /// first token (M2M100, NLLB) or a `>>xxx<<` prefix (multilingual Marian). A language the
    /// folder cannot produce is an error, never a silent translation into another one.
    pub fn settings(&self, opts: &TranslateOptions) -> Result<(Generate, Option<i64>, String)> {
        let mut g = self.generation.clone();
        if let Some(b) = opts.beams {
            g.beams = b.max(1);
        }
        if let Some(m) = opts.max_new {
            g.max_length = g.max_length.min(m + 1);
        }
        let lang = opts.lang.as_deref();
        let none = |l: &str| {
            Error::invalid(format!(
                "this {} folder has no `{l}` language token (try a code like hin_Deva, ben_Beng, tam_Taml)",
                self.tok.family
            ))
        };
        match self.tok.family {
            "Marian" if self.tok.has_langs() => {
                let l = lang.ok_or_else(|| {
                    Error::invalid("this multilingual Marian folder needs --lang (e.g. hin)")
                })?;
                let code = [l, short_lang(l), &l[..l.len().min(3)]]
                    .into_iter()
                    .find_map(|c| self.tok.lang_id(c))
                    .ok_or_else(|| none(l))?;
                Ok((g, Some(code), l.to_string()))
            }
            "Marian" => {
                let target = self.marian_target.clone().unwrap_or_default();
                if let Some(l) = lang {
                    let known = !target.is_empty();
                    if known && short_lang(l) != target && l != target && long_lang(&target) != l {
                        return Err(Error::invalid(format!(
                            "this Marian folder translates into `{target}` only, not `{l}`"
                        )));
                    }
                }
                let label = lang.map(str::to_string).unwrap_or(target);
                Ok((g, None, label))
            }
            _ => {
                let (id, label) = match lang {
                    Some(l) => (self.tok.lang_id(l).ok_or_else(|| none(l))?, l.to_string()),
                    None => {
                        let id = g.forced_bos.or_else(|| self.tok.lang_id("hin_Deva"));
                        let id = id.ok_or_else(|| none("hin_Deva"))?;
                        (id, self.lang_name(id))
                    }
                };
                g.forced_bos = Some(id);
                Ok((g, None, label))
            }
        }
    }

    fn lang_name(&self, id: i64) -> String {
        self.tok
            .decode_raw(id)
            .map(|t| t.trim_matches('_').to_string())
            .unwrap_or_default()
    }

    /// Generated ids (after the start token) of tokenized inputs, as `generate` gives them.
    pub fn generate_ids(&self, inputs: &[Vec<i64>], g: &Generate) -> Result<Vec<Vec<i64>>> {
        if inputs.is_empty() {
            return Ok(vec![]);
        }
        let dev = self.vs.device();
        let s = inputs.iter().map(Vec::len).max().unwrap_or(0).max(1);
        let pad = self.model.config.pad();
        let (mut ids, mut keep) = (Vec::new(), Vec::new());
        for x in inputs {
            ids.extend(
                x.iter()
                    .copied()
                    .chain(std::iter::repeat_n(pad, s - x.len())),
            );
            keep.extend(
                x.iter()
                    .map(|_| true)
                    .chain(std::iter::repeat_n(false, s - x.len())),
            );
        }
        let b = inputs.len() as i64;
        let ids = Tensor::from_slice(&ids).view([b, -1]).to_device(dev); // (B, S)
        let keep = Tensor::from_slice(&keep).view([b, -1]).to_device(dev); // (B, S)
        tch::no_grad(|| {
            let memory = self.model.encode(&ids, &keep)?; // (B, S, d)
            let base = self.model.start(&memory, &keep);
            let mut state: Option<DecoderState> = None;
            let mut row_item: Vec<usize> = (0..inputs.len()).collect();
            let step = |parents: &[usize], tokens: &[i64]| -> Result<Vec<f32>> {
                let items: Vec<usize> = parents.iter().map(|&p| row_item[p]).collect();
                let identity = parents.iter().enumerate().all(|(i, &p)| i == p);
                let rows =
                    Tensor::from_slice(&parents.iter().map(|&p| p as i64).collect::<Vec<_>>())
                        .to_device(dev);
                let mut st = match state.take() {
                    None => base.select(&rows, true),
                    Some(st) if identity && items.len() == row_item.len() => st,
                    Some(st) => st.select(&rows, items != row_item),
                };
                row_item = items;
                let toks = Tensor::from_slice(tokens).view([-1, 1]).to_device(dev); // (R, 1)
                let logits = self.model.decode(&toks, &mut st)?; // (R, 1, V)
                state = Some(st);
                let lp = logits
                    .squeeze_dim(1)
                    .to_kind(Kind::Float)
                    .log_softmax(-1, Kind::Float); // (R, V)
                Vec::<f32>::try_from(lp.flatten(0, -1).to_device(Device::Cpu))
                    .map_err(|e| Error::invalid(format!("translation logits: {e}")))
            };
            generate(inputs.len(), g, step)
        })
    }

    /// Translations of `texts` (one per text, in order) and the target language's label.
    pub fn translate(
        &self,
        texts: &[String],
        opts: &TranslateOptions,
    ) -> Result<(Vec<String>, String)> {
        let (g, prefix, label) = self.settings(opts)?;
        // A text longer than the model's positions keeps its first tokens and its `</s>`
        // (`transformers` would fail on it; a caption should still be translated).
        let limit = (self.model.config.max_position_embeddings as usize).max(2);
        let eos = self.tok.eos;
        let inputs: Vec<Vec<i64>> = texts
            .iter()
            .map(|t| {
                let mut ids = self.tok.encode(t, prefix);
                if ids.len() > limit {
                    ids.truncate(limit - 1);
                    ids.push(eos);
                }
                ids
            })
            .collect();
        let out = self.generate_ids(&inputs, &g)?;
        Ok((out.iter().map(|ids| self.tok.decode(ids)).collect(), label))
    }
}

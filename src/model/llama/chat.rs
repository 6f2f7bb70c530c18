//! Chat generation with a Llama-family folder (`captag llm generate`, docs/llm.md): the
//! folder's chat template renders the request, the prompt fills the key/value cache once, and
//! the shared decoding strategies (greedy, beam, top-p in `model::decoding`) choose each new
//! token through one cached step per token. Greedy and sampled text streams out as it is
//! chosen; beam search prints its best hypothesis at the end. A LoRA adapter (`--adapter`) is
//! merged into the weights when loaded, so it costs nothing per token.
use std::path::Path;

use tch::{Device, Kind, Tensor};

use super::{lora, Llama};
use crate::model::blocks::KvCache;
use crate::model::decoding::{decode_nbest, first_or_empty, Decoding, Hypothesis, Specials};
use crate::model::precision::Precision;
use crate::text::chat::{one_turn, ChatTemplate};
use crate::text::hf_tokenizer::{Family, HfTokenizer};
use crate::{Error, Result};

/// A folder's model, tokenizer and chat template, ready to answer.
pub struct ChatLm {
    pub llama: Llama,
    pub tok: HfTokenizer,
    pub template: Option<ChatTemplate>,
}

impl ChatLm {
    /// `dir` as downloaded (or as `make weights` writes SmolLM2), with the adapter in `adapter`
    /// merged into its weights.
    pub fn load(dir: &Path, adapter: Option<&Path>, device: Device) -> Result<ChatLm> {
        let mut llama = Llama::load(dir, device)?;
        if let Some(a) = adapter {
            let layers = llama.model.config.num_hidden_layers as usize;
            lora::merge_into(&mut llama.vs, layers, a)?;
        }
        let tok = HfTokenizer::load(dir, Family::Any)?;
        if tok.vocab_size() as i64 > llama.model.config.vocab_size {
            return Err(Error::invalid(format!(
                "{}: the tokenizer has {} tokens, the model {}",
                dir.display(),
                tok.vocab_size(),
                llama.model.config.vocab_size
            )));
        }
        Ok(ChatLm {
            llama,
            tok,
            template: ChatTemplate::load(dir)?,
        })
    }

    /// Run in `p` (`--precision`): refused on the CPU ([`Precision::check`]); see
    /// [`super::Llama::set_precision`].
    pub fn in_precision(mut self, p: Precision) -> Result<Self> {
        p.check(self.llama.vs.device())?;
        self.llama.set_precision(p);
        Ok(self)
    }

    /// The prompt's ids: the chat template's rendering of `[system?, user]` with the assistant's
    /// turn opened, tokenized without added specials (as `apply_chat_template(tokenize=True)`);
    /// `raw`: the text as it is, tokenized as `tokenizer(text)` does.
    pub fn prompt_ids(&self, system: Option<&str>, user: &str, raw: bool) -> Result<Vec<i64>> {
        let ids = if raw {
            self.tok.encode(user)
        } else {
            self.tok.encode_plain(&self.chat_text(system, user)?)
        };
        if ids.is_empty() {
            return Err(Error::invalid("the prompt is empty"));
        }
        Ok(ids.into_iter().map(i64::from).collect())
    }

    /// The rendered chat prompt (assistant turn opened).
    pub fn chat_text(&self, system: Option<&str>, user: &str) -> Result<String> {
        let t = self.template.as_ref().ok_or_else(|| {
            Error::invalid(
                "the model folder has no chat_template (tokenizer_config.json or \
                 chat_template.jinja); pass --raw to continue plain text",
            )
        })?;
        t.render(&one_turn(system, user), true)
    }

    /// The end-of-turn id generation stops at (the tokenizer's `eos_token`).
    pub fn end_id(&self) -> i64 {
        i64::from(self.tok.eos_id())
    }

    /// Continues `prompt` under `decoding`; `on_text` receives the text as it grows (greedy and
    /// sampling: token by token; beam search: once at the end).
    pub fn generate(
        &self,
        prompt: &[i64],
        decoding: &Decoding,
        mut on_text: impl FnMut(&str),
    ) -> Result<Hypothesis> {
        let m = &self.llama.model;
        let dev = self.llama.vs.device();
        let (&last, head) = prompt
            .split_last()
            .ok_or_else(|| Error::invalid("the prompt is empty"))?;
        let mut cache: Option<KvCache> = if head.is_empty() {
            None
        } else {
            let ids = Tensor::from_slice(head).view([1, -1]).to_device(dev); // (1, P − 1)
            Some(
                self.llama
                    .in_precision(|| tch::no_grad(|| m.forward_t(&ids, None, false)))?
                    .1,
            )
        };
        let streams = !matches!(decoding, Decoding::Beam { .. });
        let mut stream = TextStream::default();
        let (mut first, mut rows) = (true, 1usize);
        let sp = Specials {
            // The prompt's last token is fed by the first step.
            start: last,
            end: self.end_id(),
            unk: None,
            allow_unk: true,
        };
        let step = |parents: &[usize], tokens: &[i64]| -> Result<Vec<f32>> {
            if streams && !first {
                for &t in tokens.iter().take(1) {
                    stream.push(t, &self.tok, &mut on_text);
                }
            }
            first = false;
            let identity =
                parents.len() == rows && parents.iter().enumerate().all(|(i, &p)| i == p);
            let past = match cache.take() {
                Some(c) if !identity => {
                    let idx: Vec<i64> = parents.iter().map(|&p| p as i64).collect();
                    Some(c.select(&Tensor::from_slice(&idx).to_device(dev)))
                }
                other => other,
            };
            rows = tokens.len();
            let ids = Tensor::from_slice(tokens).view([-1, 1]).to_device(dev); // (R, 1)
            let (logits, next) = self
                .llama
                .in_precision(|| tch::no_grad(|| m.forward_t(&ids, past.as_ref(), false)))?;
            cache = Some(next);
            let lp = logits.select(1, -1).log_softmax(-1, Kind::Float); // (R, V)
            Ok(Vec::<f32>::try_from(
                lp.flatten(0, -1).to_device(Device::Cpu),
            )?)
        };
        let best = first_or_empty(decode_nbest(1, decoding, sp, step)?.remove(0));
        if streams {
            stream.finish(&self.tok, &mut on_text);
        } else {
            on_text(&self.decode(&best.tokens));
        }
        Ok(best)
    }

    /// Ids ⇒ text, special tokens dropped.
    pub fn decode(&self, ids: &[i64]) -> String {
        let ids: Vec<u32> = ids.iter().filter_map(|&i| u32::try_from(i).ok()).collect();
        self.tok.decode(&ids, true)
    }
}

/// Incremental detokenization: the text of all ids so far, handing on only what is new and
/// holding back a trailing partial UTF-8 character (byte-level BPE splits characters).
#[derive(Default)]
struct TextStream {
    ids: Vec<u32>,
    sent: usize,
}

impl TextStream {
    fn push(&mut self, id: i64, tok: &HfTokenizer, out: &mut impl FnMut(&str)) {
        if let Ok(id) = u32::try_from(id) {
            self.ids.push(id);
        }
        let text = tok.decode(&self.ids, true);
        if text.ends_with('\u{FFFD}') {
            return;
        }
        self.flush(&text, out);
    }

    fn finish(&mut self, tok: &HfTokenizer, out: &mut impl FnMut(&str)) {
        let text = tok.decode(&self.ids, true);
        self.flush(&text, out);
    }

    fn flush(&mut self, text: &str, out: &mut impl FnMut(&str)) {
        if let Some(new) = text.get(self.sent..) {
            if !new.is_empty() {
                out(new);
            }
            self.sent = text.len();
        }
    }
}

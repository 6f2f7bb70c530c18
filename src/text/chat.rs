//! Chat formatting from a Hugging Face folder: the Jinja `chat_template` of
//! `tokenizer_config.json` (or the `chat_template.jinja` file `transformers` 5 saves beside it)
//! rendered with `minijinja`, as text-generation-inference does, in the environment
//! `transformers`' `apply_chat_template` sets up: `trim_blocks` and `lstrip_blocks`, Python's
//! string methods (`.strip()`, `.startswith()`, … through `minijinja-contrib`'s pycompat),
//! `raise_exception`, `tojson`, and the folder's special tokens (`bos_token`, `eos_token`, …) as
//! variables. Parity with `apply_chat_template(..., add_generation_prompt=True)` is tested on
//! `tests/fixtures/chat/cases.json` (written by `notebooks/make_chat_fixtures.py`).
use std::path::Path;

use minijinja::{Environment, ErrorKind, Value as Jinja};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{Error, Result};

/// One turn of a conversation (`{"role": "user", "content": "…"}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: &str, content: &str) -> Self {
        Message {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// A folder's chat template with the special-token variables it is rendered with.
#[derive(Debug, Clone)]
pub struct ChatTemplate {
    source: String,
    /// `bos_token`, `eos_token`, … as `tokenizer_config.json` names them (strings only).
    specials: Map<String, Value>,
}

const SPECIAL_KEYS: [&str; 6] = [
    "bos_token",
    "eos_token",
    "unk_token",
    "pad_token",
    "sep_token",
    "cls_token",
];

impl ChatTemplate {
    /// A template given as text, with these special-token variables.
    pub fn new(source: &str, specials: Map<String, Value>) -> Result<Self> {
        let t = ChatTemplate {
            source: source.to_string(),
            specials,
        };
        // Compile once here so a broken template is refused when the folder is read.
        t.env()?;
        Ok(t)
    }

    /// The template of folder `dir`: `chat_template` in `tokenizer_config.json` (a string, or
    /// a list of named templates of which `default` is used), else `chat_template.jinja`.
    /// `None` when the folder has neither.
    pub fn load(dir: &Path) -> Result<Option<Self>> {
        let cfg_path = dir.join("tokenizer_config.json");
        let cfg: Value = if cfg_path.is_file() {
            let text =
                crate::input::read_text(&cfg_path, crate::input::TEXT, "a tokenizer config")?;
            serde_json::from_str(&text).map_err(|e| {
                Error::invalid(format!("{}: not valid JSON ({e})", cfg_path.display()))
            })?
        } else {
            Value::Null
        };
        let mut specials = Map::new();
        for key in SPECIAL_KEYS {
            // A token is a string or an AddedToken object `{"content": …}`.
            let v = &cfg[key];
            if let Some(s) = v.as_str().or(v["content"].as_str()) {
                specials.insert(key.into(), Value::String(s.into()));
            }
        }
        let source = match &cfg["chat_template"] {
            Value::String(s) => Some(s.clone()),
            Value::Array(list) => list
                .iter()
                .find(|t| t["name"] == "default")
                .and_then(|t| t["template"].as_str())
                .map(str::to_string),
            _ => None,
        };
        let source = match source {
            Some(s) => s,
            None => {
                let file = dir.join("chat_template.jinja");
                if !file.is_file() {
                    return Ok(None);
                }
                crate::input::read_text(&file, crate::input::TEXT, "a chat template")?
            }
        };
        Self::new(&source, specials)
            .map(Some)
            .map_err(|e| Error::invalid(format!("{}: {e}", dir.display())))
    }

    fn env(&self) -> Result<Environment<'_>> {
        let mut env = Environment::new();
        // `transformers` compiles with trim_blocks and lstrip_blocks (Jinja2's defaults are off).
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |msg: String| -> std::result::Result<Jinja, _> {
                Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
            },
        );
        env.add_template("chat", &self.source)
            .map_err(|e| Error::invalid(format!("chat template does not compile ({e:#})")))?;
        Ok(env)
    }

    /// The conversation as the model reads it; `add_generation_prompt` opens the assistant's
    /// turn (`apply_chat_template(..., add_generation_prompt=True)`).
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        let env = self.env()?;
        let tmpl = env
            .get_template("chat")
            .map_err(|e| Error::invalid(format!("chat template ({e})")))?;
        let mut ctx = self.specials.clone();
        ctx.insert(
            "messages".into(),
            serde_json::to_value(messages).map_err(|e| Error::invalid(e.to_string()))?,
        );
        ctx.insert("add_generation_prompt".into(), add_generation_prompt.into());
        tmpl.render(Jinja::from_serialize(&ctx))
            .map_err(|e| Error::invalid(format!("chat template: {e:#}")))
    }
}

/// `[system?, user]`: the messages of a one-turn request.
pub fn one_turn(system: Option<&str>, user: &str) -> Vec<Message> {
    system
        .map(|s| Message::new("system", s))
        .into_iter()
        .chain([Message::new("user", user)])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

    #[test]
    fn chatml_opens_the_assistant_turn() {
        let t = ChatTemplate::new(CHATML, Map::new()).unwrap();
        let got = t.render(&one_turn(Some("Be brief."), "Hi"), true).unwrap();
        assert_eq!(
            got,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        let closed = t.render(&one_turn(None, "Hi"), false).unwrap();
        assert_eq!(closed, "<|im_start|>user\nHi<|im_end|>\n");
    }

    /// `transformers`' `apply_chat_template` on four templates (SmolLM2's ChatML, Qwen2.5's,
    /// a Llama-3 style one with `bos_token` and `| trim`, and one of block tags on their own
    /// lines with `namespace`, `.strip()`, `.startswith()`, `loop.length`), three conversations,
    /// the assistant turn opened and not: `notebooks/make_chat_fixtures.py`.
    #[test]
    fn templates_render_as_transformers_apply_chat_template() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/chat");
        let text = std::fs::read_to_string(dir.join("cases.json")).unwrap();
        let cases: Vec<Value> = serde_json::from_str(&text).unwrap();
        assert_eq!(cases.len(), 24);
        for c in &cases {
            let specials = c["specials"].as_object().unwrap().clone();
            let t = ChatTemplate::new(c["template"].as_str().unwrap(), specials).unwrap();
            let messages: Vec<Message> = serde_json::from_value(c["messages"].clone()).unwrap();
            let got = t
                .render(&messages, c["add_generation_prompt"].as_bool().unwrap())
                .unwrap();
            assert_eq!(got, c["expected"].as_str().unwrap(), "{}", c["name"]);
        }
        // The tiny parity folders carry theirs in tokenizer_config.json, read as a download.
        let hf = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf");
        let smol = ChatTemplate::load(&hf.join("llama")).unwrap().unwrap();
        let want = &cases
            .iter()
            .find(|c| c["name"] == "smollm2/0/open")
            .unwrap()["expected"];
        let msgs: Vec<Message> = serde_json::from_value(cases[0]["messages"].clone()).unwrap();
        assert_eq!(smol.render(&msgs, true).unwrap(), want.as_str().unwrap());
        let qwen = ChatTemplate::load(&hf.join("qwen2")).unwrap().unwrap();
        let want = &cases.iter().find(|c| c["name"] == "qwen2/0/open").unwrap()["expected"];
        assert_eq!(qwen.render(&msgs, true).unwrap(), want.as_str().unwrap());
        assert!(ChatTemplate::load(&dir).unwrap().is_none());
    }

    #[test]
    fn raise_exception_and_broken_templates_are_errors() {
        let t = ChatTemplate::new("{{ raise_exception('no system role') }}", Map::new()).unwrap();
        let e = t.render(&[], true).unwrap_err().to_string();
        assert!(e.contains("no system role"), "{e}");
        let e = ChatTemplate::new("{% for m in messages %}", Map::new())
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not compile"), "{e}");
    }
}

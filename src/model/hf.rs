//! Reading a Hugging Face model folder (`config.json` + `model.safetensors`, or the shards that
//! `model.safetensors.index.json` lists) into a variable store whose names are the
//! `transformers` state-dict names, so a user's download loads as it is
//! (docs/ARCHITECTURE.md, "CLIP and GPT-2 on Hugging Face folders"). Every file goes through the
//! bounded reader; a missing file, a missing tensor or a shape that disagrees with the config is
//! one error line that names the folder.
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use tch::{nn::VarStore, Tensor};

pub use crate::config::clip::Activation;
use crate::{Error, Result};

/// `dir/config.json` as `T` (the JSON itself is also returned, for fields read by hand).
pub fn read_config<T: DeserializeOwned>(dir: &Path, what: &str) -> Result<(T, serde_json::Value)> {
    let path = dir.join("config.json");
    if !dir.is_dir() {
        return Err(Error::invalid(format!(
            "{}: not a folder (a Hugging Face {what} download is a folder with config.json and \
             model.safetensors)",
            dir.display()
        )));
    }
    if !path.exists() {
        return Err(Error::invalid(format!(
            "{}: no config.json — not a Hugging Face {what} folder",
            dir.display()
        )));
    }
    let text = crate::input::read_text(&path, crate::input::TEXT, "a model config")?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::invalid(format!("{}: not valid JSON ({e})", path.display())))?;
    check_sizes(&value, &path)?;
    let cfg = serde_json::from_value(value.clone()).map_err(|e| {
        Error::invalid(format!(
            "{}: not a {what} config ({})",
            path.display(),
            crate::input::one_line(e)
        ))
    })?;
    Ok((cfg, value))
}

/// The dimension fields of a Hugging Face config (top level and the `text_config` /
/// `vision_config` sections of CLIP, under either naming: BERT/CLIP's `hidden_size`, GPT-2's
/// `n_embd`), estimated as transformer weights before any model code sees them
/// (`config::budget`): a `hidden_size` of 10⁹ is one error line naming the fields, not an
/// abort inside libtorch. Every model read from a folder (CLIP's towers, GPT-2) comes here.
fn check_sizes(v: &serde_json::Value, path: &Path) -> Result<()> {
    use crate::config::budget;
    let mut total: u128 = 0;
    let mut named: Vec<(String, i64)> = Vec::new();
    let sections = [
        "",
        "text_config",
        "vision_config",
        "text_config_dict",
        "vision_config_dict",
    ];
    for name in sections {
        let s = if name.is_empty() { v } else { &v[name] };
        if !s.is_object() {
            continue;
        }
        let before = named.len();
        let mut get = |keys: &[&str]| {
            keys.iter().find_map(|k| {
                let x = s.get(*k)?.as_i64()?;
                let field = if name.is_empty() {
                    k.to_string()
                } else {
                    format!("{name}.{k}")
                };
                named.push((field, x));
                Some(x)
            })
        };
        // A missing width is at least 1: the other fields still bound the model from below
        // (an `intermediate_size` of 10¹² alone is refused).
        let h = get(&["hidden_size", "n_embd", "d_model"]).unwrap_or(1);
        let layers = get(&["num_hidden_layers", "n_layer"]).unwrap_or(1);
        let inner = get(&["intermediate_size", "n_inner"]).unwrap_or(h.saturating_mul(4));

        let vocab = get(&["vocab_size"]).unwrap_or(0);
        let positions = get(&["max_position_embeddings", "n_positions"]).unwrap_or(0);
        let projection = get(&["projection_dim"]).unwrap_or(0);
        if named.len() == before {
            continue;
        }
        total = total
            .saturating_add(budget::gpt2_params(h, layers, vocab, positions, inner))
            .saturating_add(budget::product(&[h, projection]));
    }
    // The file's tensors and the model's variables are both in memory while loading.
    budget::check(budget::f32s(total).saturating_mul(2), || {
        let fields: Vec<(&str, i64)> = named.iter().map(|(n, x)| (n.as_str(), *x)).collect();
        format!("{}: a model of {}", path.display(), budget::fields(&fields))
    })
}

/// Every tensor of a folder's weights, by state-dict name.
pub struct HfWeights {
    /// The file named in errors (the index for sharded weights).
    pub path: PathBuf,
    pub tensors: HashMap<String, Tensor>,
}

impl HfWeights {
    pub fn read(dir: &Path) -> Result<HfWeights> {
        let single = dir.join("model.safetensors");
        let index = dir.join("model.safetensors.index.json");
        let files: Vec<PathBuf> = if single.exists() {
            vec![single.clone()]
        } else if index.exists() {
            let text = crate::input::read_text(&index, crate::input::TEXT, "a weights index")?;
            let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
                Error::invalid(format!("{}: not valid JSON ({e})", index.display()))
            })?;
            let map = v["weight_map"].as_object().ok_or_else(|| {
                Error::invalid(format!("{}: has no weight_map object", index.display()))
            })?;
            let names: BTreeSet<&str> = map.values().filter_map(|f| f.as_str()).collect();
            names
                .into_iter()
                .map(|f| {
                    crate::data::resolve_inside(dir, f).ok_or_else(|| {
                        Error::invalid(format!(
                            "{}: shard `{f}` is outside the folder",
                            index.display()
                        ))
                    })
                })
                .collect::<Result<_>>()?
        } else if dir.join("pytorch_model.bin").exists() {
            return Err(Error::invalid(format!(
                "{}: has pytorch_model.bin but no model.safetensors; captag reads safetensors \
                 only (download the safetensors files of the model)",
                dir.display()
            )));
        } else {
            return Err(Error::invalid(format!(
                "{}: no model.safetensors — not a Hugging Face model folder",
                dir.display()
            )));
        };
        let mut tensors = HashMap::new();
        for f in &files {
            tensors.extend(crate::model::weights::read_tensors(f)?);
        }
        let path = if files.len() == 1 { single } else { index };
        Ok(HfWeights { path, tensors })
    }

    /// Copies a tensor into every variable of `vs`; `names(var)` lists the state-dict names the
    /// variable may have in the file, in order of preference (GPT-2's with and without
    /// `transformer.`); a variable it names nothing for keeps its value (ClipCap's mapper beside
    /// its pretrained LM). Tensors the store does not name (buffers such as `attn.bias`,
    /// `position_ids`) are ignored.
    pub fn load_into(&self, vs: &mut VarStore, names: impl Fn(&str) -> Vec<String>) -> Result<()> {
        let mut vars = vs.variables();
        let mut order: Vec<String> = vars.keys().cloned().collect();
        order.sort();
        let mut chosen = Vec::with_capacity(order.len());
        for var in &order {
            let dst = &vars[var];
            let candidates = names(var);
            if candidates.is_empty() {
                continue;
            }
            let (_, src) = candidates
                .iter()
                .find_map(|n| self.tensors.get(n).map(|t| (n, t)))
                .ok_or_else(|| {
                    Error::invalid(format!(
                        "{}: has no tensor `{}` — the weights are of another architecture than \
                         config.json says",
                        self.path.display(),
                        candidates.first().unwrap_or(var)
                    ))
                })?;
            if src.size() != dst.size() {
                return Err(Error::invalid(format!(
                    "{}: `{var}` has shape {:?}, config.json implies {:?}",
                    self.path.display(),
                    src.size(),
                    dst.size()
                )));
            }
            chosen.push((var.clone(), src));
        }
        tch::no_grad(|| {
            for (var, src) in chosen {
                if let Some(dst) = vars.get_mut(&var) {
                    dst.copy_(&src.to_kind(dst.kind()).to_device(dst.device()));
                }
            }
        });
        Ok(())
    }
}

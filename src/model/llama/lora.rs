//! LoRA adapters (Hu et al. 2021) on the Llama family, in `peft`'s format so an adapter moves
//! between captag and `peft` unchanged: `adapter_config.json` (`peft_type` LORA, `r`,
//! `lora_alpha`, `target_modules`, …) and `adapter_model.safetensors` with `peft`'s key names,
//! `base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight` `(r, in)` and `…lora_B.weight`
//! `(out, r)`. A wrapped projection computes `W x + (alpha / r) · B A x` (the blocks' `Proj::Lora`);
//! `A` starts as `peft` initialises it (Kaiming-uniform, `a = √5`: U(±1/√in)) and `B` at zero, so a
//! fresh adapter leaves the model unchanged. The adapter's variables live in their own
//! `VarStore`, named as in the file, so the base stays frozen and only they train. Parity with
//! `peft` on the tiny Llama folder: `tests.rs` (`notebooks/make_lora_fixtures.py`).
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tch::nn;

use super::LlamaModel;
use crate::model::blocks::Proj;
use crate::model::hf::HfWeights;
use crate::{Error, Result};

pub const CONFIG_FILE: &str = "adapter_config.json";
pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";

/// The projections LoRA may wrap, and which sub-block holds each.
const ATTENTION: [&str; 4] = ["q_proj", "k_proj", "v_proj", "o_proj"];
const MLP: [&str; 3] = ["gate_proj", "up_proj", "down_proj"];

/// `peft`'s `LoraConfig` as `adapter_config.json` stores it (the fields captag reads or
/// writes; others are kept as they are when read).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraConfig {
    pub peft_type: String,
    pub task_type: Option<String>,
    pub r: i64,
    pub lora_alpha: f64,
    pub lora_dropout: f64,
    pub target_modules: Vec<String>,
    pub bias: String,
    pub fan_in_fan_out: bool,
    pub use_rslora: bool,
    pub use_dora: bool,
    pub base_model_name_or_path: Option<String>,
    pub inference_mode: bool,
    pub init_lora_weights: bool,
    pub modules_to_save: Option<Value>,
    pub layers_to_transform: Option<Value>,
    pub rank_pattern: Value,
    pub alpha_pattern: Value,
}

impl LoraConfig {
    /// A new adapter of rank `r` on `targets` (module names such as `q_proj`).
    pub fn new(r: i64, alpha: f64, targets: &[String]) -> Self {
        LoraConfig {
            peft_type: "LORA".into(),
            task_type: Some("CAUSAL_LM".into()),
            r,
            lora_alpha: alpha,
            lora_dropout: 0.0,
            target_modules: targets.to_vec(),
            bias: "none".into(),
            fan_in_fan_out: false,
            use_rslora: false,
            use_dora: false,
            base_model_name_or_path: None,
            inference_mode: true,
            init_lora_weights: true,
            modules_to_save: None,
            layers_to_transform: None,
            rank_pattern: Value::Object(Default::default()),
            alpha_pattern: Value::Object(Default::default()),
        }
    }

    /// `alpha / r` (`peft`'s `scaling`).
    pub fn scale(&self) -> f64 {
        self.lora_alpha / self.r as f64
    }

    /// Reads `dir/adapter_config.json`, refusing what captag does not run.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(CONFIG_FILE);
        if !path.is_file() {
            return Err(Error::invalid(format!(
                "{}: no {CONFIG_FILE} — not a LoRA adapter folder (captag llm train writes one)",
                dir.display()
            )));
        }
        let text = crate::input::read_text(&path, crate::input::TEXT, "an adapter config")?;
        let raw: Value = serde_json::from_str(&text)
            .map_err(|e| Error::invalid(format!("{}: not valid JSON ({e})", path.display())))?;
        let mut full = serde_json::to_value(LoraConfig::new(8, 8.0, &[]))
            .map_err(|e| Error::invalid(e.to_string()))?;
        if let (Some(dst), Some(src)) = (full.as_object_mut(), raw.as_object()) {
            for (k, v) in src {
                if dst.contains_key(k) && !v.is_null() || k == "modules_to_save" {
                    dst.insert(k.clone(), v.clone());
                }
            }
        }
        // `target_modules` may be one string (a regex in peft); captag takes a plain name only.
        if let Some(s) = raw["target_modules"].as_str() {
            full["target_modules"] = Value::Array(vec![Value::String(s.into())]);
        }
        let cfg: LoraConfig = serde_json::from_value(full)
            .map_err(|e| Error::invalid(format!("{}: {e}", path.display())))?;
        cfg.validate()
            .map_err(|e| Error::invalid(format!("{}: {e}", path.display())))?;
        Ok(cfg)
    }

    /// What captag's LoRA runs: plain LoRA on the Llama projections.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::invalid(m));
        if self.peft_type != "LORA" {
            return bad(format!(
                "peft_type is `{}`, captag reads LORA",
                self.peft_type
            ));
        }
        if self.r <= 0 || !(self.lora_alpha.is_finite() && self.lora_alpha > 0.0) {
            return bad(format!(
                "r {} and lora_alpha {} must be positive",
                self.r, self.lora_alpha
            ));
        }
        if self.target_modules.is_empty() {
            return bad("target_modules is empty".into());
        }
        for t in &self.target_modules {
            if !ATTENTION.contains(&t.as_str()) && !MLP.contains(&t.as_str()) {
                return bad(format!(
                    "target module `{t}` is not one of {} {}",
                    ATTENTION.join(", "),
                    MLP.join(", ")
                ));
            }
        }
        let unsupported = [
            (self.use_dora, "use_dora"),
            (self.use_rslora, "use_rslora"),
            (self.fan_in_fan_out, "fan_in_fan_out"),
            (self.bias != "none", "bias other than none"),
            (
                self.modules_to_save.as_ref().is_some_and(|v| !v.is_null()),
                "modules_to_save",
            ),
            (self.layers_to_transform.is_some(), "layers_to_transform"),
            (has_entries(&self.rank_pattern), "rank_pattern"),
            (has_entries(&self.alpha_pattern), "alpha_pattern"),
        ];
        if let Some((_, what)) = unsupported.iter().find(|(on, _)| *on) {
            return bad(format!("{what} is not supported by captag's LoRA"));
        }
        Ok(())
    }

    pub fn write(&self, dir: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(|e| Error::invalid(e.to_string()))?;
        crate::fsio::write_atomic(&dir.join(CONFIG_FILE), text.as_bytes(), true)
    }
}

fn has_entries(v: &Value) -> bool {
    v.as_object().is_some_and(|m| !m.is_empty())
}

/// `peft`'s name of layer `i`'s module `target`, without the `.lora_A.weight` end.
pub fn peft_name(i: usize, target: &str) -> String {
    let section = if MLP.contains(&target) {
        "mlp"
    } else {
        "self_attn"
    };
    format!("base_model.model.model.layers.{i}.{section}.{target}")
}

/// The base state-dict name of the weight an adapter module wraps.
pub fn base_name(i: usize, target: &str) -> String {
    peft_name(i, target)
        .trim_start_matches("base_model.model.")
        .to_string()
        + ".weight"
}

impl LlamaModel {
    fn proj_mut(&mut self, i: usize, target: &str) -> Option<&mut Proj> {
        let l = self.layers.get_mut(i)?;
        if MLP.contains(&target) {
            l.mlp.proj_mut(target)
        } else {
            l.self_attn.proj_mut(target)
        }
    }

    /// Wraps every target projection of every layer with a LoRA update whose variables are
    /// created under `p` (the root of the adapter's own `VarStore`) with `peft`'s names.
    pub fn add_lora(&mut self, p: &nn::Path, cfg: &LoraConfig) -> Result<()> {
        cfg.validate()?;
        let scale = cfg.scale();
        for i in 0..self.layers.len() {
            for target in &cfg.target_modules {
                let proj = self
                    .proj_mut(i, target)
                    .ok_or_else(|| Error::invalid(format!("layer {i} has no `{target}`")))?;
                let size = proj
                    .linear_weight()
                    .ok_or_else(|| Error::invalid(format!("`{target}` is not a Linear")))?
                    .size(); // [out, in]
                let (out, inp) = (size[0], size[1]);
                let name = peft_name(i, target);
                let bound = 1.0 / (inp as f64).sqrt();
                let at = |s: &str| {
                    name.split('.')
                        .chain([s])
                        .fold(p.clone(), |p, part| &p / part)
                };
                let a = at("lora_A").var(
                    "weight",
                    &[cfg.r, inp],
                    nn::Init::Uniform {
                        lo: -bound,
                        up: bound,
                    },
                );
                let b = at("lora_B").var("weight", &[out, cfg.r], nn::Init::Const(0.0));
                if !proj.add_lora(a, b, scale) {
                    return Err(Error::invalid(format!(
                        "layer {i} `{target}` already has an adapter"
                    )));
                }
            }
        }
        Ok(())
    }
}

/// The tensors of `dir/adapter_model.safetensors`, by name.
pub fn read_tensors(dir: &Path) -> Result<HfWeights> {
    let path = dir.join(WEIGHTS_FILE);
    if !path.is_file() {
        return Err(Error::invalid(format!(
            "{}: no {WEIGHTS_FILE} beside {CONFIG_FILE}",
            dir.display()
        )));
    }
    let tensors = crate::model::weights::read_tensors(&path)?
        .into_iter()
        .collect();
    Ok(HfWeights { path, tensors })
}

/// Reads the adapter in `dir` into `vs` (whose variables [`LlamaModel::add_lora`] created).
pub fn load_adapter(dir: &Path, vs: &mut nn::VarStore) -> Result<()> {
    read_tensors(dir)?.load_into(vs, |name| vec![name.to_string()])
}

/// `W + scale · B A` for every weight the adapter in `dir` wraps, written into the base model's
/// variables `base` (`llm merge`, and generation with `--adapter` at the base model's speed).
pub fn merge_into(base: &mut nn::VarStore, layers: usize, dir: &Path) -> Result<LoraConfig> {
    let cfg = LoraConfig::read(dir)?;
    let file = read_tensors(dir)?;
    let mut weights = base.variables();
    tch::no_grad(|| {
        for i in 0..layers {
            for target in &cfg.target_modules {
                let name = peft_name(i, target);
                let get = |s: &str| {
                    file.tensors
                        .get(&format!("{name}.{s}.weight"))
                        .ok_or_else(|| {
                            Error::invalid(format!(
                                "{}: has no {name}.{s}.weight",
                                file.path.display()
                            ))
                        })
                };
                let (a, b) = (get("lora_A")?, get("lora_B")?);
                let w = weights.get_mut(&base_name(i, target)).ok_or_else(|| {
                    Error::invalid(format!("the base model has no {}", base_name(i, target)))
                })?;
                let (out, inp) = (w.size()[0], w.size()[1]);
                if a.size() != [cfg.r, inp] || b.size() != [out, cfg.r] {
                    return Err(Error::invalid(format!(
                        "{}: {name} has lora_A {:?} and lora_B {:?}, the base weight is [{out}, {inp}] \
                         and r is {} — an adapter for another model",
                        file.path.display(),
                        a.size(),
                        b.size(),
                        cfg.r
                    )));
                }
                let delta = b
                    .to_kind(tch::Kind::Float)
                    .matmul(&a.to_kind(tch::Kind::Float))
                    * cfg.scale(); // (out, in)
                let _ = w.g_add_(&delta.to_kind(w.kind()).to_device(w.device()));
            }
        }
        Ok(cfg)
    })
}

#[cfg(test)]
#[path = "lora_tests.rs"]
mod tests;

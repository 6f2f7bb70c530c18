//! LoRA fine-tuning of a Llama-family folder on prompt/response pairs (`captag llm train`,
//! docs/llm.md), and the held-out perplexity `captag llm eval` reports. The base model is loaded
//! frozen; the adapter's variables (`model::llama::lora`, `peft`'s names) are the only ones the
//! optimizer sees. Each pair becomes the chat template's prompt (assistant turn opened)
//! followed by the response and the end-of-turn token; the loss is the mean cross-entropy over
//! the response tokens only (the prompt's positions carry no loss, as `transformers`' `-100`
//! labels). Batches are right-padded, so padding sits after every real token and the causal
//! mask keeps it out of sight.
//!
//! The run directory reuses captag's epoch commit (`run::commit_epoch`: `last.safetensors` =
//! the adapter, the optimizer's moments, `train_state.json`, `metrics.jsonl`, staged and renamed
//! at once) and lock; after each commit the adapter is exported as `peft` reads it
//! (`adapter_config.json` + `adapter_model.safetensors`). Shuffling is seeded by
//! `(seed, epoch)`, so a resumed run continues exactly as an uninterrupted one.
use std::path::{Path, PathBuf};

use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tch::{nn, Device, Kind, Tensor};

pub use crate::data::llm_pairs::{read_pairs, Pair};
use crate::model::llama::chat::ChatLm;
use crate::model::llama::lora::{self, LoraConfig};
use crate::model::precision::Precision;
use crate::run::{self, Epoch, TrainState};
use crate::text::chat::one_turn;
use crate::train::optim::Adam;
use crate::train::scaler::LossScaler;
use crate::{Error, Result};

/// The training settings, saved as `llm_train.json` in the run and checked on resume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraTrain {
    pub model: PathBuf,
    pub data: PathBuf,
    pub data_fingerprint: String,
    pub rank: i64,
    pub alpha: f64,
    pub targets: Vec<String>,
    pub lr: f64,
    pub batch_size: usize,
    pub max_len: usize,
    pub seed: u64,
    /// `--precision`: the base weights' type and the forward pass's autocast (runs written
    /// before the flag existed are fp32). LoRA's A and B and Adam's moments stay float32.
    #[serde(default)]
    pub precision: Precision,
}

pub const SETTINGS: &str = "llm_train.json";

/// A pair as ids: the prompt (no loss) then the response and the end-of-turn id (the loss),
/// cut to `max_len` ids. `None` when the prompt leaves no room for a response token.
pub fn encode_pair(lm: &ChatLm, p: &Pair, max_len: usize) -> Result<Option<(Vec<i64>, usize)>> {
    let t = lm.template.as_ref().ok_or_else(|| {
        Error::invalid("the model folder has no chat_template; LoRA pairs are chat-formatted")
    })?;
    let prompt = t.render(&one_turn(p.system.as_deref(), &p.prompt), true)?;
    let mut ids: Vec<i64> = lm
        .tok
        .encode_plain(&prompt)
        .into_iter()
        .map(i64::from)
        .collect();
    let n_prompt = ids.len();
    if n_prompt + 1 >= max_len {
        return Ok(None);
    }
    ids.extend(lm.tok.encode_plain(&p.response).into_iter().map(i64::from));
    ids.push(lm.end_id());
    ids.truncate(max_len);
    Ok(Some((ids, n_prompt)))
}

/// Summed response-token cross-entropy of a batch and the number of response tokens:
/// `examples` are `(ids, prompt length)`.
pub fn batch_loss(
    lm: &ChatLm,
    examples: &[&(Vec<i64>, usize)],
    train: bool,
) -> Result<(Tensor, i64)> {
    let m = &lm.llama.model;
    let dev = lm.llama.vs.device();
    let longest = examples.iter().map(|(ids, _)| ids.len()).max().unwrap_or(0);
    let (b, t) = (examples.len() as i64, longest as i64 - 1);
    let (mut inp, mut at, mut tgt) = (Vec::new(), Vec::new(), Vec::new());
    for (row, (ids, n_prompt)) in examples.iter().enumerate() {
        let mut padded = ids[..ids.len() - 1].to_vec();
        padded.resize(longest - 1, 0);
        inp.extend(padded);
        // Position j predicts ids[j + 1]; response ids start at n_prompt.
        for j in n_prompt.saturating_sub(1)..ids.len() - 1 {
            at.push(row as i64 * t + j as i64);
            tgt.push(ids[j + 1]);
        }
    }
    let inp = Tensor::from_slice(&inp).view([b, t]).to_device(dev); // (B, T)
    let at = Tensor::from_slice(&at).to_device(dev); // (N,)
    let tgt = Tensor::from_slice(&tgt).to_device(dev); // (N,)
                                                       // bf16/fp16: the forward pass under autocast; the loss below is taken in float32.
    let logits = lm.llama.in_precision(|| -> Result<Tensor> {
        let (h, _) = m.hidden_t(&m.embed(&inp), None, None, train)?; // (B, T, D)
        Ok(m.lm_head(&h.flatten(0, 1).index_select(0, &at))) // (N, V)
    })?;
    let n = tgt.size()[0];
    let loss = logits.to_kind(Kind::Float).cross_entropy_loss::<Tensor>(
        &tgt,
        None,
        tch::Reduction::Sum,
        -100,
        0.0,
    );
    Ok((loss, n))
}

/// Mean response-token negative log-likelihood over `pairs` (perplexity = its exp), and the
/// number of tokens; pairs whose prompt fills `max_len` are skipped.
pub fn mean_nll(lm: &ChatLm, pairs: &[Pair], max_len: usize, batch: usize) -> Result<(f64, i64)> {
    let examples: Vec<(Vec<i64>, usize)> = pairs
        .iter()
        .map(|p| encode_pair(lm, p, max_len))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .flatten()
        .collect();
    let (mut sum, mut count) = (0.0, 0i64);
    for chunk in examples.chunks(batch.max(1)) {
        let refs: Vec<&(Vec<i64>, usize)> = chunk.iter().collect();
        let (loss, n) = tch::no_grad(|| batch_loss(lm, &refs, false))?;
        sum += loss.double_value(&[]);
        count += n;
    }
    if count == 0 {
        return Err(Error::invalid("no response tokens to score"));
    }
    Ok((sum / count as f64, count))
}

/// What `llm train` prints per epoch.
pub struct EpochReport {
    pub epoch: usize,
    pub loss: f64,
    pub tokens: i64,
    pub seconds: f64,
}

/// Trains (or resumes) the run `out` for `epochs` epochs in all; `report` sees each epoch.
/// `settings.precision` is not checked against the device here (the command refuses a 16-bit
/// one on the CPU before anything is written; tests run it on the CPU).
pub fn train(
    settings: LoraTrain,
    epochs: usize,
    out: &Path,
    device: Device,
    mut report: impl FnMut(&EpochReport),
) -> Result<()> {
    let _lock = run::lock(out)?;
    run::recover(out)?;
    let state_path = out.join(run::STATE);
    let resuming = resumes(&settings, out)?;
    let mut lm = ChatLm::load(&settings.model, None, device)?;
    lm.llama.vs.freeze();
    lm.llama.set_precision(settings.precision);
    let cfg = LoraConfig {
        base_model_name_or_path: Some(settings.model.display().to_string()),
        ..LoraConfig::new(settings.rank, settings.alpha, &settings.targets)
    };
    let mut adapter = nn::VarStore::new(device);
    tch::manual_seed(settings.seed as i64);
    lm.llama.model.add_lora(&adapter.root(), &cfg)?;
    let mut opt = Adam::new(&adapter, settings.lr, 0.0);
    let mut state = TrainState {
        lr: settings.lr,
        ..Default::default()
    };
    if resuming {
        state = run::read_json(&state_path)?;
        run::load_vars(&mut adapter, &out.join(run::LAST))?;
        opt.load(&out.join(run::OPTIMIZER), state.step, state.lr)?;
    } else {
        run::write_json(&settings, &out.join(SETTINGS))?;
        cfg.write(out)?;
    }
    // fp16: GradScaler's loss scale, where the run left it.
    let mut scaler = settings
        .precision
        .scales_loss()
        .then(|| LossScaler::new(state.loss_scale.unwrap_or_default(), device));
    let pairs = read_pairs(&settings.data)?;
    let train_pairs: Vec<Pair> = pairs.iter().filter(|p| !p.is_test()).cloned().collect();
    let examples: Vec<(Vec<i64>, usize)> = train_pairs
        .iter()
        .map(|p| encode_pair(&lm, p, settings.max_len))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .flatten()
        .collect();
    if examples.is_empty() {
        return Err(Error::invalid(format!(
            "{}: no training pair fits --max-len {}",
            settings.data.display(),
            settings.max_len
        )));
    }
    for epoch in state.epoch + 1..=epochs {
        let started = std::time::Instant::now();
        let mut order: Vec<usize> = (0..examples.len()).collect();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(settings.seed ^ (epoch as u64) << 32);
        order.shuffle(&mut rng);
        let (mut sum, mut tokens) = (0.0, 0i64);
        for chunk in order.chunks(settings.batch_size.max(1)) {
            let batch: Vec<&(Vec<i64>, usize)> = chunk.iter().map(|&i| &examples[i]).collect();
            opt.zero_grad();
            let (loss, n) = batch_loss(&lm, &batch, true)?;
            let mean = loss / n.max(1) as f64;
            backward_and_step(&mean, &mut opt, scaler.as_mut(), &adapter, &mut state)?;
            sum += mean.double_value(&[]) * n as f64;
            tokens += n;
        }
        state.epoch = epoch;
        state.step = opt.step;
        let r = EpochReport {
            epoch,
            loss: sum / tokens.max(1) as f64,
            tokens,
            seconds: started.elapsed().as_secs_f64(),
        };
        let metrics = json!({"epoch": epoch, "train_loss": r.loss, "tokens": tokens,
                             "seconds": r.seconds, "tokens_per_s": tokens as f64 / r.seconds});
        let save_opt = |p: &Path| opt.save(p);
        run::commit_epoch(
            out,
            Epoch {
                state: &state,
                weights: &adapter,
                best: false,
                optimizer: &save_opt,
                metrics: &metrics,
            },
        )?;
        export_adapter(out)?;
        report(&r);
    }
    if resuming && state.epoch >= epochs {
        export_adapter(out)?;
    }
    Ok(())
}

/// Whether `out` is this LoRA run to resume (its saved settings must equal `settings`); a new
/// run needs an empty or new folder (the lock file aside).
fn resumes(settings: &LoraTrain, out: &Path) -> Result<bool> {
    if out.join(run::STATE).is_file() {
        let saved: LoraTrain = run::read_json(&out.join(SETTINGS))?;
        if saved != *settings {
            return Err(Error::invalid(format!(
                "{}: a LoRA run with other settings ({}); resume with the same --model, --data \
                 and LoRA flags, or choose another --out",
                out.display(),
                first_difference(&saved, settings)
            )));
        }
        return Ok(true);
    }
    if std::fs::read_dir(out)
        .map_err(|e| Error::io(out, e))?
        .flatten()
        .any(|e| e.file_name() != run::LOCK)
    {
        return Err(Error::invalid(format!(
            "{}: exists and is not a LoRA run of captag llm train; choose an empty or new --out",
            out.display()
        )));
    }
    Ok(false)
}

/// Backward pass and Adam step on the adapter; with fp16's scaler a scaled backward, unscaled
/// gradients and the step skipped on inf/NaN, the loss scale kept in `state` for resume.
fn backward_and_step(
    mean: &Tensor,
    opt: &mut Adam,
    scaler: Option<&mut LossScaler>,
    adapter: &nn::VarStore,
    state: &mut TrainState,
) -> Result<()> {
    match scaler {
        None => {
            mean.f_backward()?;
            opt.step(1.0);
        }
        Some(s) => {
            s.scale_loss(mean).f_backward()?;
            let mut grads: Vec<Tensor> = adapter
                .trainable_variables()
                .iter()
                .map(Tensor::grad)
                .collect();
            let (found_inf, overflow) = s.unscale(&mut grads);
            if !overflow {
                opt.step(1.0);
            }
            s.update(&found_inf);
            state.loss_scale = Some(s.state());
        }
    }
    Ok(())
}

/// `adapter_model.safetensors` = the committed `last.safetensors` (the names are `peft`'s).
fn export_adapter(out: &Path) -> Result<()> {
    let src = out.join(run::LAST);
    let bytes = crate::input::read_bytes(&src, crate::input::CHECKPOINT, "an adapter")?;
    crate::fsio::write_atomic(&out.join(lora::WEIGHTS_FILE), &bytes, true)
}

fn first_difference(a: &LoraTrain, b: &LoraTrain) -> String {
    let (a, b) = (json!(a), json!(b));
    a.as_object()
        .and_then(|m| {
            m.iter()
                .find(|(k, v)| b.get(k.as_str()) != Some(v))
                .map(|(k, v)| format!("{k} was {v}, now {}", b[k.as_str()]))
        })
        .unwrap_or_default()
}

#[cfg(test)]
#[path = "lora_tests.rs"]
mod tests;

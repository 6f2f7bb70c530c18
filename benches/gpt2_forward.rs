//! GPT-2 forward and key/value-cache decoding speed of captag's `model::gpt2` against
//! `transformers`' `GPT2LMHeadModel` (`bench/gpt2_reference.py`) on the same random-weight
//! folder, the same ids, the same thread count, on the same machine (docs/ARCHITECTURE.md,
//! "Benchmarks"; `bench/gpt2_bench.sh` runs both sides and prints the ratios).
//!
//! The folder is one the Python side wrote (`save_pretrained` of a randomly initialised model,
//! plus `bench_inputs.safetensors`: the forward batch `ids (B, T)`, the decoding prompt, and
//! `transformers`' last-position logits and greedy ids for a parity check). Timed, best of
//! `--reps`: one full forward pass of the batch under `no_grad` (logits for every position), and
//! greedy decoding of 1 prompt token + `N` new tokens with the cache for each `--lengths` N, as
//! time per generated token. Prints one JSON line.
//!
//!     cargo bench --bench gpt2_forward -- DIR [--threads 1] [--reps 5] [--lengths 10,20,40]
mod common;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use captag::model::gpt2::Gpt2;
use tch::{Device, Kind, Tensor};

fn main() -> anyhow::Result<()> {
    let parsed = common::Args::from_env();
    let args = parsed.all();
    let flag = |name: &str, default: &str| parsed.flag(name, default);
    let dir = PathBuf::from(
        args.first()
            .filter(|a| !a.starts_with("--"))
            .context("usage: gpt2_forward DIR [--threads T] [--reps N] [--lengths 10,20,40]")?,
    );
    let threads: i32 = flag("--threads", "1").parse()?;
    let reps: usize = flag("--reps", "5").parse()?;
    let lengths: Vec<i64> = flag("--lengths", "10,20,40")
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    tch::set_num_threads(threads);

    let g = Gpt2::load(&dir, Device::Cpu)?;
    let m = &g.model;
    let inputs: std::collections::HashMap<String, Tensor> =
        Tensor::read_safetensors(dir.join("bench_inputs.safetensors"))?
            .into_iter()
            .collect();
    let get = |k: &str| {
        inputs
            .get(k)
            .with_context(|| format!("bench_inputs: no `{k}`"))
    };
    let ids = get("ids")?.to_kind(Kind::Int64); // (B, T)
    let prompt = get("prompt")?.to_kind(Kind::Int64); // (1, 1)
    let (b, t) = ids.size2()?;

    // Parity first: the same model, so the same numbers.
    let (logits, _) = tch::no_grad(|| m.forward_t(&ids, None, false))?;
    let last_diff = (logits.select(1, -1) - get("last_logits")?)
        .abs()
        .max()
        .double_value(&[]);
    let longest = lengths.iter().copied().max().unwrap_or(1);
    let greedy = tch::no_grad(|| m.greedy(&prompt, longest))?;
    let same_ids = greedy.equal(&get("greedy_ids")?.to_kind(Kind::Int64));

    let best = |f: &mut dyn FnMut() -> anyhow::Result<()>| -> anyhow::Result<f64> {
        f()?; // warm-up
        let mut best = f64::INFINITY;
        for _ in 0..reps {
            let t0 = Instant::now();
            f()?;
            best = best.min(t0.elapsed().as_secs_f64());
        }
        Ok(best)
    };
    let forward_s = best(&mut || {
        let (l, _) = tch::no_grad(|| m.forward_t(&ids, None, false))?;
        let _ = l.double_value(&[0, 0, 0]);
        Ok(())
    })?;
    let mut per_token_ms = serde_json::Map::new();
    for &n in &lengths {
        let s = best(&mut || {
            let out = tch::no_grad(|| m.greedy(&prompt, n))?;
            let _ = out.int64_value(&[0, 0]);
            Ok(())
        })?;
        per_token_ms.insert(n.to_string(), (1e3 * s / n as f64).into());
    }
    println!(
        "{}",
        serde_json::json!({
            "side": "captag", "dir": dir.display().to_string(), "threads": threads,
            "n_layer": m.config.n_layer, "n_embd": m.config.n_embd, "batch": b, "tokens": t,
            "forward_s": forward_s, "tokens_per_s": (b * t) as f64 / forward_s,
            "decode_ms_per_token": per_token_ms,
            "parity_last_logits_max_abs_diff": last_diff, "greedy_ids_identical": same_ids,
        })
    );
    Ok(())
}

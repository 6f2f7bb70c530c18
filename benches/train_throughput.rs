//! Training-throughput benchmark: captag's decoder training step (forward, loss, backward,
//! clip, Adam) for any `--decoder` against `bench/train_reference.py` (the same models in
//! PyTorch) on the same cached features, captions, batch order and batch size, on the same
//! machine. Attention and transformer decoders read the cache's grids (`features --grid`).
//!
//! This side builds the workload from a dataset and a feature cache, writes it to
//! `bench/out/train_workload.safetensors` (+ `.json`) for the Python side, and times captag.
//! `bench/train_bench.sh` runs both and prints the ratio.
//!
//! `--order buckets` puts the captions in the order `captag train --batching buckets` draws
//! them (length-sorted pools, batches shuffled; the default for feature-cache training),
//! `--order shuffle` (the default here) in a plain shuffled order, as the seed notebooks do.
//!
//!     cargo bench --bench train_throughput -- DATA FEATURES [--steps N] [--batch B] [--decoder lstm|gru|attention|transformer] [--device cpu|cuda] [--order shuffle|buckets]
mod common;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use captag::config::{DecoderConfig, DecoderPreset, EncoderKind, ModelConfig};
use captag::data::features::FeatureCache;
use captag::data::{LoadOptions, Split};
use captag::model::captioner::Captioner;
use captag::model::ImageFeatures;
use captag::text::tokens::encode_words;
use captag::text::{tokenize, Vocab};
use captag::train::optim::Adam;
use captag::train::pad_batch;
use tch::{Device, Tensor};

fn main() -> anyhow::Result<()> {
    let parsed = common::Args::from_env();
    let args = parsed.all();
    let flag = |name: &str, default: &str| parsed.flag(name, default);
    let pos: Vec<&String> = {
        let mut v = vec![];
        let mut skip = false;
        for a in args {
            if skip {
                skip = false;
            } else if a.starts_with("--") {
                skip = true;
            } else {
                v.push(a);
            }
        }
        v
    };
    let (data, feats) = match pos.as_slice() {
        [d, f, ..] => (PathBuf::from(d), PathBuf::from(f)),
        _ => anyhow::bail!(
            "usage: train_throughput DATA FEATURES [--steps N] [--batch B] [--decoder lstm|gru|attention|transformer] [--device cpu|cuda]"
        ),
    };
    let steps: usize = flag("--steps", "200").parse()?;
    let warmup = 10;
    let batch: usize = flag("--batch", "64").parse()?;
    let preset = match flag("--decoder", &flag("--cell", "lstm")).as_str() {
        "gru" => DecoderPreset::Gru,
        "attention" => DecoderPreset::Attention,
        "transformer" => DecoderPreset::Transformer,
        _ => DecoderPreset::Lstm,
    };
    let device = match flag("--device", "cpu").as_str() {
        "cuda" => Device::Cuda(0),
        _ => Device::Cpu,
    };

    // Workload: every training caption whose image has a cached feature, in a seeded order.
    let ds = captag::data::load(&data, &LoadOptions::default())?;
    let cache = FeatureCache::load(&feats)?;
    let index: HashMap<&str, i64> = cache.index();
    let train: Vec<_> = ds
        .samples
        .iter()
        .filter(|s| s.split == Split::Train)
        .collect();
    let tokens: Vec<Vec<String>> = train
        .iter()
        .flat_map(|s| s.captions.iter().map(|c| tokenize(c)))
        .collect();
    let vocab = Vocab::build(&tokens, 5);
    let mut items: Vec<(i64, Vec<i64>)> = vec![];
    for s in &train {
        if let Some(&r) = index.get(s.id.as_str()) {
            items.extend(s.captions.iter().map(|c| (r, encode_words(&vocab, c, 30))));
        }
    }
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    items.shuffle(&mut rng);
    let order = flag("--order", "shuffle");
    match order.as_str() {
        "shuffle" => {}
        "buckets" => {
            let idx: Vec<usize> = (0..items.len()).collect();
            let batches =
                captag::train::length_buckets(&idx, |i| items[i].1.len(), batch, &mut rng);
            // Only whole batches, so that consecutive chunks are exactly the buckets' batches.
            let full = batches.into_iter().filter(|b| b.len() == batch);
            items = full.flatten().map(|i| items[i].clone()).collect();
        }
        other => anyhow::bail!("--order {other}: shuffle or buckets"),
    }
    let n = items.len();
    anyhow::ensure!(n > batch * 2, "too few captions ({n}) for batch {batch}");
    let seqs: Vec<&[i64]> = items.iter().map(|(_, t)| t.as_slice()).collect();
    let all_tokens = pad_batch(&seqs); // (N, Lmax)
    let rows = Tensor::from_slice(&items.iter().map(|(r, _)| *r).collect::<Vec<_>>());
    let lens = Tensor::from_slice(
        &items
            .iter()
            .map(|(_, t)| t.len() as i64)
            .collect::<Vec<_>>(),
    );

    let encoder = EncoderKind::from_name(&cache.encoder)
        .with_context(|| format!("unknown encoder {:?} in the cache", cache.encoder))?;
    let cfg = ModelConfig::preset(encoder, true, preset, vocab.len() as i64);
    if encoder == EncoderKind::SmallCnn {
        anyhow::bail!("the benchmark needs a frozen encoder's feature cache");
    }
    anyhow::ensure!(
        !cfg.decoder.needs_grid() || cache.grid.is_some(),
        "the {} decoder needs a grid cache (captag features --grid)",
        cfg.decoder.name()
    );
    let lr = 2e-3;
    let clip = 5.0;
    std::fs::create_dir_all("bench/out")?;
    let wl = PathBuf::from("bench/out/train_workload.safetensors");
    Tensor::write_safetensors(
        &[
            ("features", &cache.pooled),
            ("rows", &rows),
            ("tokens", &all_tokens),
            ("lens", &lens),
        ],
        &wl,
    )?;
    let mut meta = serde_json::json!({
        "vocab": cfg.vocab_size, "decoder": cfg.decoder.name(),
        "config": serde_json::to_value(&cfg.decoder)?, "dropout": cfg.dropout(),
        "lr": lr, "clip": clip, "batch_size": batch, "captions": n, "order": order,
        "grid_cache": feats.display().to_string(),
    });
    if let DecoderConfig::ShowTell(c) = &cfg.decoder {
        meta["embed"] = c.embed_dim.into();
        meta["hidden"] = c.hidden_dim.into();
        meta["cell"] = cfg.decoder.name().into();
    }
    std::fs::write(
        "bench/out/train_workload.safetensors.json",
        meta.to_string(),
    )
    .context("writing workload")?;

    tch::manual_seed(0);
    let model = Captioner::new(&cfg, device, false);
    let mut adam = Adam::new(&model.vs, lr, 0.0);
    let features = model.trim(ImageFeatures::of_cache(&cache));
    // Pooled vectors fit on the device; a grid cache stays on the host, batches are copied.
    let features = if features.grid.is_none() {
        features.to_device(device)
    } else {
        features
    };
    let all_tokens = all_tokens.to_device(device);
    let rows = rows.to_device(device);
    let lens_v: Vec<i64> = items.iter().map(|(_, t)| t.len() as i64).collect();
    // Like the Python side, the loss is read (a device sync) only once, after the timed loop.
    let mut step = |i: usize| -> Tensor {
        let lo = (i * batch) % (n - n % batch - batch);
        let len = *lens_v[lo..lo + batch].iter().max().unwrap_or(&2);
        let r = rows.narrow(0, lo as i64, batch as i64);
        let t = all_tokens
            .narrow(0, lo as i64, batch as i64)
            .narrow(1, 0, len); // (B, L)
        let f = features.select(&r).to_device(device); // (B, ..)
        let loss = model.loss(&f, &t, true);
        adam.zero_grad();
        loss.backward();
        adam.step(clip);
        loss
    };
    let mut last = Tensor::from(0.0);
    for i in 0..warmup {
        last = step(i);
    }
    last.double_value(&[]);
    let t0 = Instant::now();
    for i in warmup..warmup + steps {
        last = step(i);
    }
    let final_loss = last.double_value(&[]);
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({"impl": "captag", "decoder": cfg.decoder.name(), "order": order, "threads": tch::get_num_threads(), "steps": steps,
                           "device": format!("{device:?}"), "loss": final_loss,
                           "captions_per_s": (steps * batch) as f64 / secs})
    );
    Ok(())
}

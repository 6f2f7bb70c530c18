//! A synthetic feature cache of any size, for measuring `train --features` on a cache larger
//! than memory (docs/scale.md, "Training from a cache larger than memory"): the cache
//! `captag features --encoder squeezenet1_1 --encoder-weights WEIGHTS --grid` would write for
//! DATA — the same fingerprint and ids, so `train` accepts it — but with pseudo-random values
//! and `--cells` grid cells per image (SqueezeNet's own grid has 169) to make it large with a
//! small dataset. Rows are generated and written one at a time, so writing it needs no memory.
//!
//!     cargo bench --bench big_feature_cache -- DATA WEIGHTS OUT [--cells 1024]
mod common;
use std::path::PathBuf;

use captag::config::EncoderKind;
use captag::data::feature_file;
use captag::data::features::{cache_meta, cache_specs, CacheKey};
use captag::data::LoadOptions;
use captag::fsio::Fingerprint;

fn main() -> anyhow::Result<()> {
    let args = common::Args::from_env();
    let pos: Vec<&String> = args
        .all()
        .iter()
        .enumerate()
        .filter(|(i, a)| !a.starts_with("--") && (*i == 0 || !args.all()[i - 1].starts_with("--")))
        .map(|(_, a)| a)
        .collect();
    let [data, weights, out] = pos.as_slice() else {
        anyhow::bail!("usage: big_feature_cache DATA WEIGHTS OUT [--cells N]");
    };
    let (data, weights, out) = (
        PathBuf::from(data),
        PathBuf::from(weights),
        PathBuf::from(out),
    );
    let cells: usize = args.flag("--cells", "1024").parse()?;
    let kind = EncoderKind::Squeezenet1_1;
    let (dim, channels) = (512, 512); // SqueezeNet 1.1's pooled width and grid channels
    let ds = captag::data::load(&data, &LoadOptions::default())?;
    let list = ds.image_list();
    let key = CacheKey::of(
        kind.as_str(),
        &Fingerprint::of_file(&weights)?,
        &kind.default_preprocess(),
        &list,
    );
    let ids: Vec<String> = list.into_iter().map(|(id, _)| id).collect();
    let meta = cache_meta(&key, kind.as_str(), &ids, true)?;
    let specs = cache_specs(ids.len(), dim, Some((cells, channels)));
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        // xorshift64*: values in [-1, 1)
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    };
    feature_file::write(&out, &meta, &specs, |t, w| {
        let per_row = if t == 0 { dim } else { cells * channels };
        let mut row = Vec::with_capacity(per_row * 4);
        for _ in 0..ids.len() {
            row.clear();
            for _ in 0..per_row {
                let v = next();
                match t {
                    0 => row.extend_from_slice(&v.to_le_bytes()),
                    _ => row.extend_from_slice(&f16_bits(v).to_le_bytes()),
                }
            }
            w.write_all(&row).map_err(|e| captag::Error::io(&out, e))?;
        }
        Ok(())
    })?;
    let bytes = std::fs::metadata(&out)?.len();
    println!(
        "{} images × ({dim} + {cells}×{channels} grid) → {} ({:.2} GiB)",
        ids.len(),
        out.display(),
        bytes as f64 / (1u64 << 30) as f64
    );
    Ok(())
}

/// float16 bits of `v`, |v| < 2 (normal range, truncated mantissa: enough for noise).
fn f16_bits(v: f32) -> u16 {
    let b = v.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let exp = ((b >> 23) & 0xff) as i32 - 127 + 15;
    if exp <= 0 {
        return sign; // tiny: zero
    }
    sign | ((exp as u16) << 10) | ((b >> 13) & 0x3ff) as u16
}

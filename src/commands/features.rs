//! `features` (whole, or one shard with `--shard I/N`) and `features merge` (docs/scale.md).
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::out::outln;
use super::{load_dataset, load_options, Ctx};
use crate::cli::{FeaturesArgs, FeaturesCommand, FeaturesMergeArgs};
use crate::data::feature_file::FeatureFile;
use crate::data::feature_merge::{self, ShardInfo};
use crate::data::features;
use crate::data::shard::Shard;
use crate::model::encoder::{self, ExtractSpec};
use crate::train as training;

pub fn features(ctx: &Ctx, a: &FeaturesArgs) -> anyhow::Result<()> {
    match &a.command {
        Some(FeaturesCommand::Merge(m)) => merge(ctx, m),
        None => extract(ctx, a),
    }
}

/// A flag clap requires when there is no subcommand.
fn required<'a, T>(v: &'a Option<T>, flag: &str) -> anyhow::Result<&'a T> {
    v.as_ref()
        .ok_or_else(|| anyhow::anyhow!("features: {flag} is required"))
}

fn extract(ctx: &Ctx, a: &FeaturesArgs) -> anyhow::Result<()> {
    // The output was checked against the data and weights by `commands::guard`.
    let (data, kind) = (
        required(&a.data, "--data")?,
        *required(&a.encoder, "--encoder")?,
    );
    let weights = required(&a.encoder_weights, "--encoder-weights")?;
    let out: PathBuf = match (&a.shard, &a.shard_out, &a.out) {
        (Some(_), Some(p), _) => p.clone(),
        (Some(s), None, Some(o)) => s.path_for(o),
        (None, _, Some(o)) => o.clone(),
        _ => anyhow::bail!("features: --out is required"),
    };
    let ds = load_dataset(ctx, data, &load_options(ctx, &a.dataset))?;
    // A CLIP folder's weights and preprocessing, or a CNN's weights file.
    let pre = encoder::pretrained(kind, weights, ctx.device)?;
    let (enc, preprocess, weights_fp) = (pre.encoder, pre.preprocess, pre.fingerprint);
    {
        // One batch of pixels and its copy on the way to the encoder (config::budget).
        use crate::config::budget;
        let per_image = preprocess.output_len() as i64;
        let need = budget::f32s(budget::product(&[a.batch_size as i64, per_image, 2]));
        budget::check(need, || format!("features --batch-size {}", a.batch_size))?;
    }
    let all = ds.image_list();
    let all_key = features::CacheKey::of(kind.as_str(), &weights_fp, &preprocess, &all);
    let whole = all_key.fingerprint.clone();
    let list = match a.shard {
        Some(s) => s.select(&all),
        None => all.clone(),
    };
    // A shard's key is its own list's; the whole cache's (`whole`) is what merge writes.
    let key = match a.shard {
        Some(_) => features::CacheKey::of(kind.as_str(), &weights_fp, &preprocess, &list),
        None => all_key.clone(),
    };
    if a.skip_existing && up_to_date(&out, &key.fingerprint, &whole, a.grid, a.shard) {
        outln!(
            "{} is up to date ({} images{}): skipped",
            out.display(),
            list.len(),
            a.shard.map(|s| format!(", shard {s}")).unwrap_or_default()
        )?;
        return Ok(());
    }
    let bar = training::progress(ctx.quiet, list.len() as u64, "features");
    let t0 = std::time::Instant::now();
    let spec = ExtractSpec {
        kind,
        weights_fp: &weights_fp,
        preprocess,
        batch_size: a.batch_size,
        device: ctx.device,
        keep_grid: a.grid,
    };
    let mut ex = match a.shard {
        // A shard may get no decodable image; it is still written, so that merge sees it.
        Some(_) => encoder::extract_any(&enc, &spec, &list, &bar)?,
        None => encoder::extract(&enc, &spec, &list, &bar)?,
    };
    bar.finish_and_clear();
    ex.cache.key = key;
    for (_, why) in &ex.failed {
        if ctx.verbose {
            // `why` names the file already.
            crate::fsio::errln!("  skipped {why}");
        }
    }
    let extra = match a.shard {
        Some(shard) => ShardInfo {
            shard,
            dataset: whole,
            weights: weights_fp.clone(),
            preprocess: serde_json::to_string(&preprocess)?,
            images: all_key.image_files.clone(),
            assigned: list.len(),
            skipped: ex.failed.len(),
        }
        .to_meta(),
        None => BTreeMap::new(),
    };
    ex.cache.save_with(&out, &extra)?;
    let secs = t0.elapsed().as_secs_f64();
    let n = ex.cache.ids.len();
    outln!(
        "{}{n} images → {} ({} features each{}), {} unreadable skipped, {:.1} images/s",
        a.shard
            .map(|s| format!("shard {s}: {} of {} images, ", list.len(), all.len()))
            .unwrap_or_default(),
        out.display(),
        ex.cache.pooled.size()[1],
        if a.grid { " + grids" } else { "" },
        ex.failed.len(),
        n as f64 / secs.max(1e-9)
    )?;
    Ok(())
}

/// Whether `out` already holds this extraction (`--skip-existing`): the same fingerprint,
/// `--grid` and, for a shard, the same shard of the same whole. A file that cannot be read as
/// a cache is not up to date (it is rewritten).
fn up_to_date(
    out: &Path,
    fingerprint: &str,
    whole: &str,
    grid: bool,
    shard: Option<Shard>,
) -> bool {
    let Ok(f) = FeatureFile::open(out) else {
        return false;
    };
    let info = ShardInfo::of(&f).ok().flatten();
    f.meta.get("fingerprint").map(String::as_str) == Some(fingerprint)
        && f.meta.get("grid").map(String::as_str) == Some(if grid { "true" } else { "false" })
        && f.ids().is_ok()
        && match (shard, info) {
            (Some(s), Some(i)) => i.shard == s && i.dataset == whole,
            (None, None) => true,
            _ => false,
        }
}

fn merge(_ctx: &Ctx, m: &FeaturesMergeArgs) -> anyhow::Result<()> {
    let t0 = std::time::Instant::now();
    let r = feature_merge::merge(&m.shards, &m.out)?;
    outln!(
        "{} shards, {} images → {} ({} features each{}), {} unreadable skipped by the shards, {:.1} s",
        r.shards,
        r.images,
        m.out.display(),
        r.pooled_dim,
        if r.grid { " + grids" } else { "" },
        r.skipped,
        t0.elapsed().as_secs_f64()
    )?;
    Ok(())
}

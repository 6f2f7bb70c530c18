//! `captag features merge`: the shards of one sharded extraction (`features --shard i/N`,
//! docs/scale.md) put back into the one cache a single process would have written, byte for
//! byte. Shards of another encoder, weights, preprocessing, dataset or shard count, and a
//! missing or repeated shard, are refused before anything is written; rows are copied from
//! the shard files in bounded reads, so merging needs no more memory than the id list.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::feature_file::{self, FeatureFile, TensorSpec};
use super::features::{cache_meta, cache_specs, CacheKey};
use super::shard::Shard;
use crate::{Error, Result};

/// Bytes copied per read while merging.
const COPY_CHUNK: u64 = 8 << 20;

/// What a shard records beside the standard cache keys, so that `merge` can check that its
/// inputs belong together and write the whole cache's fingerprint without the dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardInfo {
    pub shard: Shard,
    /// The fingerprint of the whole extraction: the merged cache's `fingerprint`.
    pub dataset: String,
    /// The encoder weights' fingerprint.
    pub weights: String,
    /// The preprocessing, as JSON.
    pub preprocess: String,
    /// The fingerprint of the dataset's whole image list (`features::images_fingerprint`).
    pub images: String,
    /// Images this shard was given, and those of them that could not be decoded.
    pub assigned: usize,
    pub skipped: usize,
}

impl ShardInfo {
    pub fn to_meta(&self) -> BTreeMap<String, String> {
        [
            ("shard", self.shard.to_string()),
            ("dataset", self.dataset.clone()),
            ("weights", self.weights.clone()),
            ("preprocess", self.preprocess.clone()),
            ("images", self.images.clone()),
            ("assigned", self.assigned.to_string()),
            ("skipped", self.skipped.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// The shard keys of a cache file; `None` for a cache written without `--shard`.
    pub fn of(f: &FeatureFile) -> Result<Option<ShardInfo>> {
        let Some(shard) = f.meta.get("shard") else {
            return Ok(None);
        };
        let bad =
            |m: String| Error::invalid(format!("{}: not a feature shard: {m}", f.path.display()));
        let num = |k: &str| -> Result<usize> {
            f.get(k)?
                .parse()
                .map_err(|_| bad(format!("`{k}` is not a count")))
        };
        Ok(Some(ShardInfo {
            shard: shard.parse().map_err(bad)?,
            dataset: f.get("dataset")?.to_string(),
            weights: f.get("weights")?.to_string(),
            preprocess: f.get("preprocess")?.to_string(),
            images: f.get("images")?.to_string(),
            assigned: num("assigned")?,
            skipped: num("skipped")?,
        }))
    }
}

/// What a merge wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merged {
    pub images: usize,
    pub shards: usize,
    /// Images the shards could not decode, summed.
    pub skipped: usize,
    pub pooled_dim: usize,
    pub grid: bool,
}

struct Input {
    file: FeatureFile,
    info: ShardInfo,
    ids: Vec<String>,
}

/// Merges the shard files `paths` into `out` (written atomically).
pub fn merge(paths: &[PathBuf], out: &Path) -> Result<Merged> {
    let mut inputs = vec![];
    for p in paths {
        let file = FeatureFile::open(p)?;
        let info = ShardInfo::of(&file)?.ok_or_else(|| {
            Error::invalid(format!(
                "{}: a whole feature cache, not a shard (written without `features --shard`)",
                p.display()
            ))
        })?;
        let ids = file.ids()?;
        inputs.push(Input { file, info, ids });
    }
    let first = inputs
        .first()
        .ok_or_else(|| Error::invalid("features merge: no shard given"))?;
    for other in &inputs[1..] {
        agree(first, other)?;
    }
    complete(&inputs)?;
    let (pooled_dim, grid) = dims(&inputs)?;
    // Every shard's ids are its own (hash) and ascending, so sorting by id gives the single
    // process's row order (`Dataset::image_list`, minus undecodable images).
    let mut order: Vec<(&str, usize, u64)> = vec![];
    for (k, inp) in inputs.iter().enumerate() {
        for (row, id) in inp.ids.iter().enumerate() {
            if !inp.info.shard.owns(id) || (row > 0 && inp.ids[row - 1] >= *id) {
                return Err(Error::invalid(format!(
                    "{}: image `{id}` is out of place in shard {} (a renamed or edited file?)",
                    inp.file.path.display(),
                    inp.info.shard
                )));
            }
            order.push((id, k, row as u64));
        }
    }
    order.sort_unstable();
    if order.is_empty() {
        return Err(Error::invalid(
            "no image could be decoded in any shard: nothing to merge",
        ));
    }
    let ids: Vec<String> = order.iter().map(|(id, _, _)| id.to_string()).collect();
    let enc = first.file.get("encoder")?;
    let key = CacheKey {
        fingerprint: first.info.dataset.clone(),
        image_files: first.info.images.clone(),
    };
    let meta = cache_meta(&key, enc, &ids, grid.is_some())?;
    let specs = cache_specs(ids.len(), pooled_dim, grid);
    feature_file::write(out, &meta, &specs, |t, w| {
        copy_rows(&inputs, &order, &specs[t], w)
    })?;
    Ok(Merged {
        images: ids.len(),
        shards: inputs.len(),
        skipped: inputs.iter().map(|i| i.info.skipped).sum(),
        pooled_dim,
        grid: grid.is_some(),
    })
}

/// Refuses two shards that are not parts of one extraction, naming what differs.
fn agree(a: &Input, b: &Input) -> Result<()> {
    let get = |i: &Input, k: &str| i.file.meta.get(k).cloned().unwrap_or_default();
    let checks: [(&str, String, String); 6] = [
        (
            "shard count",
            a.info.shard.count.to_string(),
            b.info.shard.count.to_string(),
        ),
        ("encoder", get(a, "encoder"), get(b, "encoder")),
        (
            "encoder weights",
            a.info.weights.clone(),
            b.info.weights.clone(),
        ),
        (
            "preprocessing",
            a.info.preprocess.clone(),
            b.info.preprocess.clone(),
        ),
        (
            "dataset (image list)",
            a.info.images.clone(),
            b.info.images.clone(),
        ),
        ("--grid", get(a, "grid"), get(b, "grid")),
    ];
    for (what, x, y) in checks {
        if x != y {
            return Err(Error::invalid(format!(
                "{}: {what} differs from {}'s ({y} vs {x}); merge shards of one extraction only",
                b.file.path.display(),
                a.file.path.display()
            )));
        }
    }
    if a.info.dataset != b.info.dataset {
        return Err(Error::invalid(format!(
            "{}: computed for another extraction than {}",
            b.file.path.display(),
            a.file.path.display()
        )));
    }
    Ok(())
}

/// Every shard `0..N` exactly once.
fn complete(inputs: &[Input]) -> Result<()> {
    let n = inputs[0].info.shard.count;
    let mut seen: Vec<Option<&Path>> = vec![None; n];
    for i in inputs {
        let s = i.info.shard;
        if let Some(earlier) = seen[s.index] {
            return Err(Error::invalid(format!(
                "shard {s} given twice: {} and {}",
                earlier.display(),
                i.file.path.display()
            )));
        }
        seen[s.index] = Some(&i.file.path);
    }
    let missing: Vec<String> = (0..n)
        .filter(|&k| seen[k].is_none())
        .map(|k| format!("{k}/{n}"))
        .collect();
    if !missing.is_empty() {
        let shown = missing
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        let more = if missing.len() > 10 { ", …" } else { "" };
        return Err(Error::invalid(format!(
            "{} of {n} shards missing ({shown}{more}): merge needs every shard",
            missing.len()
        )));
    }
    Ok(())
}

/// A pooled width and, with grids, their `(cells, channels)`.
type Dims = (usize, Option<(usize, usize)>);

/// The pooled width and grid shape every non-empty shard shares.
fn dims(inputs: &[Input]) -> Result<Dims> {
    let mut seen: Option<(Dims, &Path)> = None;
    let grid = inputs[0].file.meta.get("grid").map(String::as_str) == Some("true");
    for i in inputs.iter().filter(|i| !i.ids.is_empty()) {
        let p = &i.file.tensor("pooled")?.spec.shape;
        let g = if grid {
            let s = &i.file.tensor("grid")?.spec.shape;
            (s.len() == 3).then(|| (s[1], s[2]))
        } else {
            None
        };
        let here: Dims = (p.get(1).copied().unwrap_or(0), g);
        match seen {
            Some((dims, path)) if dims != here => {
                return Err(Error::invalid(format!(
                    "{}: feature shapes differ from {}'s",
                    i.file.path.display(),
                    path.display()
                )))
            }
            Some(_) => {}
            None => seen = Some((here, &i.file.path)),
        }
    }
    Ok(seen.map(|(dims, _)| dims).unwrap_or((0, None)))
}

/// Writes tensor `spec`'s rows in `order`, reading runs of consecutive rows of one shard
/// together (at most [`COPY_CHUNK`] bytes a read) and refusing non-finite values.
fn copy_rows(
    inputs: &[Input],
    order: &[(&str, usize, u64)],
    spec: &TensorSpec,
    w: &mut dyn std::io::Write,
) -> Result<()> {
    let rb = spec.row_bytes();
    let per_read = (COPY_CHUNK / rb.max(1)).max(1);
    let mut i = 0;
    while i < order.len() {
        let (_, k, first) = order[i];
        let mut j = i + 1;
        while j < order.len()
            && order[j].1 == k
            && order[j].2 == order[j - 1].2 + 1
            && ((j - i) as u64) < per_read
        {
            j += 1;
        }
        let f = &inputs[k].file;
        let t = f.tensor(&spec.name)?;
        if t.spec.row_bytes() != rb {
            return Err(Error::invalid(format!(
                "{}: `{}` rows have another size",
                f.path.display(),
                spec.name
            )));
        }
        let bytes = f.read_at(t.start + first * rb, ((j - i) as u64 * rb) as usize)?;
        if !spec.dtype.all_finite(&bytes) {
            return Err(Error::invalid(format!(
                "{}: not a captag feature cache: `{}` holds NaN or infinite values",
                f.path.display(),
                spec.name
            )));
        }
        w.write_all(&bytes).map_err(|e| Error::io(&f.path, e))?;
        i = j;
    }
    Ok(())
}

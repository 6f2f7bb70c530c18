//! The feature cache: a frozen encoder is run once over a dataset's images
//! (`model::encoder::extract`) and its pooled vectors (float32) and, with `--grid`, its grids
//! (`(N, cells, C)`, float16) are stored in one safetensors file, keyed by image id (safetensors
//! metadata). A fingerprint of encoder + weights + preprocessing + image list is stored with
//! them; training reuses a cache only when the fingerprint matches, and the `grid` metadata
//! flag says whether an attention decoder can train from it.
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use safetensors::tensor::{Dtype as StDtype, SafeTensors};
use tch::{Kind, Tensor};

use super::feature_file::{self, Dtype, FeatureFile, TensorSpec};
use crate::data::image::Preprocess;
use crate::fsio::Fingerprint;
use crate::{Error, Result};

#[derive(Debug)]
pub struct FeatureCache {
    pub key: CacheKey,
    /// The encoder's name (`squeezenet1_1`, `vgg19`, ...), as `EncoderKind::as_str` writes it.
    pub encoder: String,
    /// Image ids, row order of `pooled`.
    pub ids: Vec<String>,
    /// `(N, D)` float32 on the CPU.
    pub pooled: Tensor,
    /// `(N, cells, C)` float16, when asked for (`captag features --grid`).
    pub grid: Option<Tensor>,
}

/// What a cache must have been computed from: the encoder, its weights, the preprocessing,
/// and every image by id *and* file identity (size and modification time), so a cache built
/// from other pictures under the same names (another copy of a dataset, a re-synthesized
/// folder) is refused instead of silently training on the wrong features. Size and mtime
/// survive `cp -a` and `rsync -a` of the same files; a file that cannot be read counts as
/// absent.
pub fn fingerprint(
    encoder: &str,
    weights_fp: &str,
    pre: &Preprocess,
    images: &[(String, std::path::PathBuf)],
) -> String {
    let mut f = Fingerprint::default();
    f.update(encoder.as_bytes()).update(weights_fp.as_bytes());
    f.update(serde_json::to_string(pre).unwrap_or_default().as_bytes());
    hash_images(&mut f, images);
    f.hex()
}

/// What a cache was computed from, as two fingerprints: the whole key ([`fingerprint`]: encoder,
/// weights, preprocessing and image files), which alone decides whether a cache is reused, and
/// the image files alone ([`images_fingerprint`]), stored beside it so that a refusal can say
/// which side changed (a fresh copy of the dataset, or another encoder) instead of only "another
/// cache". Caches written before the second was kept have it empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheKey {
    pub fingerprint: String,
    pub image_files: String,
}

impl CacheKey {
    pub fn of(
        encoder: &str,
        weights_fp: &str,
        pre: &Preprocess,
        images: &[(String, std::path::PathBuf)],
    ) -> Self {
        CacheKey {
            fingerprint: fingerprint(encoder, weights_fp, pre, images),
            image_files: images_fingerprint(images),
        }
    }
}

/// Refuses (one line, naming the file) a cache that `want` — this run's key over `images`, the
/// dataset's list — does not fit, and says why: another image list (how many ids differ),
/// the same names with other files (sizes or modification times: a fresh copy of the
/// dataset), or another encoder, weights or preprocessing. Training and evaluation both ask
/// here, so the reasons read the same everywhere.
pub fn check_fits(
    file: &FeatureFile,
    want: &CacheKey,
    images: &[(String, std::path::PathBuf)],
) -> Result<()> {
    if file.get("fingerprint")? == want.fingerprint {
        return Ok(());
    }
    let fix = "recompute it with `captag features` (or delete it to have train make one) or pass another --features";
    let why = match file.meta.get("image_files") {
        Some(stored) if *stored != want.image_files => {
            let ids = file.ids()?;
            let have: std::collections::HashSet<&str> = ids.iter().map(String::as_str).collect();
            let wanted: std::collections::HashSet<&str> =
                images.iter().map(|(id, _)| id.as_str()).collect();
            let (gone, new) = (
                have.difference(&wanted).count(),
                wanted.difference(&have).count(),
            );
            if gone + new > 0 {
                format!(
                    "was computed on another image list ({gone} of its {} images are not in this \
                     dataset, {new} of this dataset's {} are not in it)",
                    have.len(),
                    wanted.len()
                )
            } else {
                "was computed from other image files under the same names (their sizes or \
                 modification times differ: the dataset was changed or copied again without \
                 keeping times)"
                    .to_string()
            }
        }
        Some(_) => format!(
            "was computed from these images by another encoder, weights or preprocessing \
             (it holds {} features)",
            file.get("encoder")?
        ),
        None => "was computed for another encoder, weights, preprocessing or image list".into(),
    };
    Err(Error::invalid(format!(
        "{}: the feature cache {why}; {fix}",
        file.path.display()
    )))
}

/// A fingerprint of the image list alone (ids and file identities, as [`fingerprint`] hashes
/// them): shards of one dataset agree on it whatever their encoder.
pub fn images_fingerprint(images: &[(String, std::path::PathBuf)]) -> String {
    let mut f = Fingerprint::default();
    hash_images(&mut f, images);
    f.hex()
}

fn hash_images(f: &mut Fingerprint, images: &[(String, std::path::PathBuf)]) {
    use std::os::unix::fs::MetadataExt;
    let mut sorted: Vec<&(String, std::path::PathBuf)> = images.iter().collect();
    sorted.sort();
    for (id, path) in sorted {
        f.update(id.as_bytes());
        let identity = std::fs::metadata(path)
            .map(|m| format!("{}:{}.{}", m.size(), m.mtime(), m.mtime_nsec()))
            .unwrap_or_default();
        f.update(identity.as_bytes());
    }
}

/// Little-endian bytes of `t` as `kind` (Float or Half).
fn to_bytes(t: &Tensor, kind: Kind) -> Vec<u8> {
    let flat = t.to_kind(kind).contiguous().view([-1]);
    let n = flat.numel();
    let mut bytes = vec![0u8; n * kind.elt_size_in_bytes()];
    flat.copy_data_u8(&mut bytes, n);
    bytes
}

/// The metadata of a cache: the same keys and values whether one process or a merge of
/// shards writes it (`extra` adds a shard's own keys).
pub fn cache_meta(
    key: &CacheKey,
    encoder: &str,
    ids: &[String],
    grid: bool,
) -> Result<BTreeMap<String, String>> {
    let ids = serde_json::to_string(ids).map_err(|e| Error::invalid(e.to_string()))?;
    Ok([
        ("format", "captag-features-1".to_string()),
        ("fingerprint", key.fingerprint.clone()),
        ("image_files", key.image_files.clone()),
        ("encoder", encoder.to_string()),
        ("ids", ids),
        ("grid", grid.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect())
}

/// The tensors of a cache of `rows` images: pooled `(rows, D)` float32 and, with a grid,
/// `(rows, cells, C)` float16, in this order in the file.
pub fn cache_specs(
    rows: usize,
    pooled_dim: usize,
    grid: Option<(usize, usize)>,
) -> Vec<TensorSpec> {
    let mut v = vec![TensorSpec {
        name: "pooled".into(),
        dtype: Dtype::F32,
        shape: vec![rows, pooled_dim],
    }];
    if let Some((cells, c)) = grid {
        v.push(TensorSpec {
            name: "grid".into(),
            dtype: Dtype::F16,
            shape: vec![rows, cells, c],
        });
    }
    v
}

impl FeatureCache {
    pub fn save(&self, path: &Path) -> Result<()> {
        self.save_with(path, &BTreeMap::new())
    }

    /// Writes the cache (atomically, the bytes a function of the content alone) with `extra`
    /// metadata beside the standard keys.
    pub fn save_with(&self, path: &Path, extra: &BTreeMap<String, String>) -> Result<()> {
        let dims = |t: &Tensor| t.size().iter().map(|&d| d as usize).collect::<Vec<_>>();
        let p = dims(&self.pooled);
        let g = self.grid.as_ref().map(dims);
        let specs = cache_specs(
            p[0],
            p.get(1).copied().unwrap_or(0),
            g.map(|g| (g[1], g[2])),
        );
        let mut meta = cache_meta(&self.key, &self.encoder, &self.ids, self.grid.is_some())?;
        meta.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
        feature_file::write(path, &meta, &specs, |i, w| {
            let bytes = match i {
                0 => to_bytes(&self.pooled, Kind::Float),
                _ => to_bytes(self.grid.as_ref().unwrap_or(&self.pooled), Kind::Half),
            };
            w.write_all(&bytes).map_err(|e| Error::io(path, e))
        })
    }

    pub fn load(path: &Path) -> Result<FeatureCache> {
        let bytes = crate::input::read_bytes(path, crate::input::FEATURE_CACHE, "a feature cache")?;
        let bad = |m: &str| {
            Error::invalid(format!(
                "{}: not a captag feature cache: {m}",
                path.display()
            ))
        };
        let (_, meta) =
            SafeTensors::read_metadata(&bytes).map_err(|e| bad(&crate::input::one_line(e)))?;
        let meta = meta.metadata().clone().ok_or_else(|| bad("no metadata"))?;
        if meta.get("format").map(String::as_str) != Some("captag-features-1") {
            return Err(bad("missing format tag"));
        }
        let get = |k: &str| {
            meta.get(k)
                .cloned()
                .ok_or_else(|| bad(&format!("no `{k}`")))
        };
        let ids: Vec<String> =
            serde_json::from_str(&get("ids")?).map_err(|e| bad(&crate::input::one_line(e)))?;
        let encoder = get("encoder")?;
        let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(&crate::input::one_line(e)))?;
        let tensor = |name: &str| -> Result<Tensor> {
            let v = st
                .tensor(name)
                .map_err(|e| bad(&crate::input::one_line(e)))?;
            let kind = match v.dtype() {
                StDtype::F32 => Kind::Float,
                StDtype::F16 => Kind::Half,
                d => return Err(bad(&format!("`{name}` has dtype {d:?}"))),
            };
            let shape = crate::input::shape_i64(v.shape())
                .ok_or_else(|| bad(&format!("`{name}` has an impossible shape")))?;
            let t = Tensor::f_from_data_size(v.data(), &shape, kind)
                .map_err(|e| bad(&crate::input::one_line(e)))?;
            // NaN/inf features would train and caption silently wrong: refused here.
            if t.numel() > 0 && t.isfinite().all().int64_value(&[]) == 0 {
                return Err(bad(&format!("`{name}` holds NaN or infinite values")));
            }
            Ok(t)
        };
        let pooled = tensor("pooled")?;
        if pooled.size().first().copied() != Some(ids.len() as i64) {
            return Err(bad("row count differs from the id list"));
        }
        let grid = if st.names().iter().any(|n| *n == "grid") {
            let g = tensor("grid")?;
            if g.dim() != 3 || g.size()[0] != ids.len() as i64 {
                return Err(bad("grid is not (images, cells, channels)"));
            }
            Some(g)
        } else {
            None
        };
        Ok(FeatureCache {
            key: CacheKey {
                fingerprint: get("fingerprint")?,
                image_files: meta.get("image_files").cloned().unwrap_or_default(),
            },
            encoder,
            ids,
            pooled,
            grid,
        })
    }

    /// The rows of `wanted` ids that the cache holds (in the cache's order), read from `file`
    /// in bounded reads: evaluating a split of a cache larger than memory holds that split's
    /// rows only, as training does (docs/scale.md). Ids the cache lacks are left out; the
    /// key is the whole cache's ([`check_fits`] is the caller's check).
    pub fn read_rows(file: &FeatureFile, wanted: &[String]) -> Result<FeatureCache> {
        let want: std::collections::HashSet<&str> = wanted.iter().map(String::as_str).collect();
        let (mut ids, mut rows) = (vec![], vec![]);
        for (i, id) in file.ids()?.into_iter().enumerate() {
            if want.contains(id.as_str()) {
                rows.push(i as i64);
                ids.push(id);
            }
        }
        let read = |name: &str| -> Result<Tensor> {
            let t = file.rows(name, &rows)?;
            if t.numel() > 0 && t.isfinite().all().int64_value(&[]) == 0 {
                return Err(Error::invalid(format!(
                    "{}: not a captag feature cache: `{name}` holds NaN or infinite values",
                    file.path.display()
                )));
            }
            Ok(t)
        };
        let grid = match file.tensors.get("grid") {
            Some(g) if g.spec.shape.len() != 3 => {
                return Err(Error::invalid(format!(
                    "{}: not a captag feature cache: grid is not (images, cells, channels)",
                    file.path.display()
                )))
            }
            Some(_) => Some(read("grid")?),
            None => None,
        };
        Ok(FeatureCache {
            key: CacheKey {
                fingerprint: file.get("fingerprint")?.to_string(),
                image_files: file.meta.get("image_files").cloned().unwrap_or_default(),
            },
            encoder: file.get("encoder")?.to_string(),
            pooled: read("pooled")?.to_kind(Kind::Float),
            grid,
            ids,
        })
    }

    /// Row of every id (for aligning samples with features).
    pub fn index(&self) -> HashMap<&str, i64> {
        self.ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.as_str(), i as i64))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    /// A two-image cache of `key` written under `dir`, opened as a file.
    fn cache(dir: &Path, key: CacheKey) -> FeatureFile {
        let path = dir.join("f.safetensors");
        FeatureCache {
            key,
            encoder: "small-cnn".into(),
            ids: vec!["a.jpg".into(), "b.jpg".into()],
            pooled: Tensor::zeros([2, 3], (Kind::Float, Device::Cpu)),
            grid: None,
        }
        .save(&path)
        .unwrap();
        FeatureFile::open(&path).unwrap()
    }

    #[test]
    fn a_refused_cache_says_which_side_changed() {
        let d = tempfile::tempdir().unwrap();
        let list: Vec<(String, std::path::PathBuf)> = ["a.jpg", "b.jpg"]
            .iter()
            .map(|n| {
                let p = d.path().join(n);
                std::fs::write(&p, n.as_bytes()).unwrap();
                (n.to_string(), p)
            })
            .collect();
        let pre = Preprocess::clip_default();
        let key = |enc: &str, l: &[(String, std::path::PathBuf)]| CacheKey::of(enc, "w", &pre, l);
        let file = cache(d.path(), key("small-cnn", &list));
        check_fits(&file, &key("small-cnn", &list), &list).unwrap();
        let why = |want: &CacheKey, l: &[(String, std::path::PathBuf)]| {
            check_fits(&file, want, l).unwrap_err().to_string()
        };
        let e = why(&key("squeezenet1_1", &list), &list);
        assert!(
            e.contains("another encoder, weights or preprocessing (it holds small-cnn"),
            "{e}"
        );
        let mut more = list.clone();
        more.push(("c.jpg".into(), d.path().join("c.jpg")));
        let e = why(&key("small-cnn", &more), &more);
        assert!(e.contains("another image list (0 of its 2 images are not in this dataset, 1 of this dataset's 3"), "{e}");
        // A fresh copy: the same names and bytes, another modification time.
        let t = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        std::fs::File::options()
            .write(true)
            .open(&list[0].1)
            .unwrap()
            .set_modified(t)
            .unwrap();
        let e = why(&key("small-cnn", &list), &list);
        assert!(e.contains("other image files under the same names"), "{e}");
        assert!(
            e.starts_with(&file.path.display().to_string()) && !e.contains('\n'),
            "{e}"
        );
        // A cache from before the image-files key was kept: the general reason.
        let mut f = cache(d.path(), key("small-cnn", &list));
        f.meta.remove("image_files");
        let e = check_fits(&f, &key("squeezenet1_1", &list), &list)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("another encoder, weights, preprocessing or image list"),
            "{e}"
        );
    }
}

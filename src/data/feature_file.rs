//! A feature cache as a file on disk rather than tensors in memory: the safetensors layout
//! written deterministically (one byte stream for one content, so a merged cache can be
//! compared byte for byte with a single-process one — docs/scale.md), its header read alone,
//! and rows read with positioned reads, so `train --features` works from a cache larger than
//! memory while holding one batch of it.
//!
//! The layout is safetensors' own: an 8-byte little-endian header length, the JSON header
//! (`__metadata__` first, its keys sorted, then the tensors), padded with spaces to a multiple
//! of 8, then the tensors' bytes in header order. `safetensors` and `tch` read it as any other
//! safetensors file.
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use tch::{Kind, Tensor};

use crate::{Error, Result};

/// safetensors' own bound on a header (`MAX_HEADER_SIZE` in the crate): the `ids` metadata
/// lives there, which caps a cache at about 3 million ids of 30 characters (docs/scale.md).
pub const MAX_HEADER: u64 = 100_000_000;

/// Largest cache file read row by row. Nothing is loaded whole, so the bound only refuses
/// absurd sizes (a sparse file of exabytes) before any offset arithmetic.
pub const ON_DISK_LIMIT: u64 = 1 << 50;

/// Bytes moved per read when a file is scanned or copied (memory stays at this).
const CHUNK: usize = 8 << 20;

/// Element types a feature cache holds: pooled vectors are float32, grids float16.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    F32,
    F16,
}

impl Dtype {
    pub fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F16 => 2,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "F32",
            Dtype::F16 => "F16",
        }
    }
    pub fn kind(self) -> Kind {
        match self {
            Dtype::F32 => Kind::Float,
            Dtype::F16 => Kind::Half,
        }
    }
    /// Whether every element of `bytes` (little-endian) is finite.
    pub fn all_finite(self, bytes: &[u8]) -> bool {
        match self {
            Dtype::F32 => bytes
                .chunks_exact(4)
                .all(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) & 0x7f80_0000 != 0x7f80_0000),
            Dtype::F16 => bytes
                .chunks_exact(2)
                .all(|b| u16::from_le_bytes([b[0], b[1]]) & 0x7c00 != 0x7c00),
        }
    }
}

/// One tensor of a cache: its name, type and shape; rows are the first dimension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
}

impl TensorSpec {
    pub fn bytes(&self) -> u64 {
        checked_bytes(&self.shape, self.dtype).unwrap_or(u64::MAX)
    }
    /// Bytes of one row (one image).
    pub fn row_bytes(&self) -> u64 {
        checked_bytes(self.shape.get(1..).unwrap_or(&[]), self.dtype).unwrap_or(u64::MAX)
    }
    pub fn rows(&self) -> u64 {
        self.shape.first().copied().unwrap_or(0) as u64
    }
}

/// Bytes of `shape` elements of `dtype`, `None` past u64.
fn checked_bytes(shape: &[usize], dtype: Dtype) -> Option<u64> {
    shape
        .iter()
        .try_fold(dtype.size() as u64, |a, &d| a.checked_mul(d as u64))
}

/// The header bytes (length prefix included) of a cache holding `tensors` in this order.
pub fn header_bytes(meta: &BTreeMap<String, String>, tensors: &[TensorSpec]) -> Result<Vec<u8>> {
    let mut h = format!("{{\"__metadata__\":{}", json(meta)?);
    let mut offset = 0u64;
    for t in tensors {
        let end = offset + t.bytes();
        h.push_str(&format!(
            ",{}:{{\"dtype\":\"{}\",\"shape\":{},\"data_offsets\":[{offset},{end}]}}",
            json(&t.name)?,
            t.dtype.name(),
            json(&t.shape)?
        ));
        offset = end;
    }
    h.push('}');
    while h.len() % 8 != 0 {
        h.push(' ');
    }
    if h.len() as u64 > MAX_HEADER {
        return Err(Error::invalid(format!(
            "the feature cache's header (its id list) would be {} bytes, over the {MAX_HEADER} \
             that safetensors reads; split the dataset (docs/scale.md)",
            h.len()
        )));
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(h.as_bytes());
    Ok(out)
}

fn json<T: serde::Serialize + ?Sized>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::invalid(e.to_string()))
}

/// Writes a cache atomically (temp file, fsync, rename): the header, then each tensor's bytes
/// as `fill(index, writer)` writes them. A `fill` that writes more or fewer bytes than the
/// header promised is an error and leaves nothing behind.
pub fn write(
    path: &Path,
    meta: &BTreeMap<String, String>,
    tensors: &[TensorSpec],
    mut fill: impl FnMut(usize, &mut dyn Write) -> Result<()>,
) -> Result<()> {
    let header = header_bytes(meta, tensors)?;
    let tmp = crate::fsio::tmp_path(path);
    let result = (|| -> Result<()> {
        let file = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let mut w = Counted {
            inner: BufWriter::with_capacity(CHUNK, file),
            n: 0,
        };
        w.write_all(&header).map_err(|e| Error::io(&tmp, e))?;
        for (i, t) in tensors.iter().enumerate() {
            let before = w.n;
            fill(i, &mut w)?;
            if w.n - before != t.bytes() {
                return Err(Error::invalid(format!(
                    "{}: tensor `{}` got {} bytes for shape {:?}",
                    path.display(),
                    t.name,
                    w.n - before,
                    t.shape
                )));
            }
        }
        w.inner.flush().map_err(|e| Error::io(&tmp, e))
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    crate::fsio::commit(&tmp, path, true)
}

/// A writer that counts what went through it.
struct Counted<W: Write> {
    inner: W,
    n: u64,
}

impl<W: Write> Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let k = self.inner.write(buf)?;
        self.n += k as u64;
        Ok(k)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Where a tensor's bytes are in the file.
#[derive(Debug, Clone)]
pub struct Located {
    pub spec: TensorSpec,
    /// Absolute offset of the first byte.
    pub start: u64,
}

/// An open cache file: its metadata and tensor table, nothing of its data.
#[derive(Debug)]
pub struct FeatureFile {
    pub path: PathBuf,
    file: File,
    pub meta: BTreeMap<String, String>,
    pub tensors: BTreeMap<String, Located>,
}

#[derive(serde::Deserialize)]
struct RawInfo {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: (u64, u64),
}

impl FeatureFile {
    /// Opens `path` and reads its header (at most [`MAX_HEADER`] bytes). Tensor types, shapes
    /// and offsets are checked against each other and the file's size.
    pub fn open(path: &Path) -> Result<FeatureFile> {
        let file = crate::input::open_regular(path, ON_DISK_LIMIT, "a feature cache")?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        let bad = |m: &str| {
            Error::invalid(format!(
                "{}: not a captag feature cache: {m}",
                path.display()
            ))
        };
        let mut n = [0u8; 8];
        file.read_exact_at(&mut n, 0)
            .map_err(|_| bad("shorter than a header"))?;
        let n = u64::from_le_bytes(n);
        if n > MAX_HEADER || 8 + n > len {
            return Err(bad("impossible header length"));
        }
        let mut h = vec![0u8; n as usize];
        file.read_exact_at(&mut h, 8)
            .map_err(|e| Error::io(path, e))?;
        let mut raw: BTreeMap<String, serde_json::Value> =
            serde_json::from_slice(&h).map_err(|e| bad(&crate::input::one_line(e)))?;
        let meta: BTreeMap<String, String> = match raw.remove("__metadata__") {
            Some(m) => serde_json::from_value(m).map_err(|e| bad(&crate::input::one_line(e)))?,
            None => return Err(bad("no metadata")),
        };
        if meta.get("format").map(String::as_str) != Some("captag-features-1") {
            return Err(bad("missing format tag"));
        }
        let data_start = 8 + n;
        let mut tensors = BTreeMap::new();
        for (name, v) in raw {
            let info: RawInfo =
                serde_json::from_value(v).map_err(|e| bad(&crate::input::one_line(e)))?;
            let dtype = match info.dtype.as_str() {
                "F32" => Dtype::F32,
                "F16" => Dtype::F16,
                d => return Err(bad(&format!("`{name}` has dtype {d}"))),
            };
            let spec = TensorSpec {
                name: name.clone(),
                dtype,
                shape: info.shape,
            };
            let (s, e) = info.data_offsets;
            let size = checked_bytes(&spec.shape, dtype);
            let row = checked_bytes(spec.shape.get(1..).unwrap_or(&[]), dtype);
            if spec.shape.is_empty()
                || row.is_none()
                || size != Some(e.wrapping_sub(s))
                || s > e
                || data_start.checked_add(e).is_none_or(|end| end > len)
            {
                return Err(bad(&format!("`{name}` does not fit its offsets")));
            }
            let start = data_start + s;
            tensors.insert(name, Located { spec, start });
        }
        Ok(FeatureFile {
            path: path.to_path_buf(),
            file,
            meta,
            tensors,
        })
    }

    /// A metadata entry, or an error naming it.
    pub fn get(&self, key: &str) -> Result<&str> {
        self.meta.get(key).map(String::as_str).ok_or_else(|| {
            Error::invalid(format!(
                "{}: not a captag feature cache: no `{key}`",
                self.path.display()
            ))
        })
    }

    /// The image ids, row order, checked against the row count of every tensor.
    pub fn ids(&self) -> Result<Vec<String>> {
        let ids: Vec<String> = serde_json::from_str(self.get("ids")?).map_err(|e| {
            Error::invalid(format!(
                "{}: not a captag feature cache: {}",
                self.path.display(),
                crate::input::one_line(e)
            ))
        })?;
        for t in self.tensors.values() {
            if t.spec.rows() != ids.len() as u64 {
                return Err(Error::invalid(format!(
                    "{}: not a captag feature cache: `{}` has {} rows for {} ids",
                    self.path.display(),
                    t.spec.name,
                    t.spec.rows(),
                    ids.len()
                )));
            }
        }
        Ok(ids)
    }

    pub fn tensor(&self, name: &str) -> Result<&Located> {
        self.tensors.get(name).ok_or_else(|| {
            Error::invalid(format!(
                "{}: not a captag feature cache: no `{name}` tensor",
                self.path.display()
            ))
        })
    }

    /// `len` bytes at absolute offset `at`.
    pub fn read_at(&self, at: u64, len: usize) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        self.file
            .read_exact_at(&mut buf, at)
            .map_err(|e| Error::io(&self.path, e))?;
        Ok(buf)
    }

    /// Reads every tensor once, in bounded chunks, and refuses NaN or infinite values (they
    /// would train and caption silently wrong).
    pub fn check_finite(&self) -> Result<()> {
        for t in self.tensors.values() {
            let (total, elt) = (t.spec.bytes(), t.spec.dtype.size() as u64);
            let step = (CHUNK as u64 / elt) * elt;
            let mut done = 0;
            while done < total {
                let k = step.min(total - done);
                if !t
                    .spec
                    .dtype
                    .all_finite(&self.read_at(t.start + done, k as usize)?)
                {
                    return Err(Error::invalid(format!(
                        "{}: not a captag feature cache: `{}` holds NaN or infinite values",
                        self.path.display(),
                        t.spec.name
                    )));
                }
                done += k;
            }
        }
        Ok(())
    }

    /// Rows `rows` (ascending or not) of tensor `name` as one `(R, ..)` tensor of its type;
    /// consecutive rows are read together.
    pub fn rows(&self, name: &str, rows: &[i64]) -> Result<Tensor> {
        let t = self.tensor(name)?;
        let rb = t.spec.row_bytes();
        let n = t.spec.rows() as i64;
        let mut bytes = vec![];
        let mut i = 0;
        while i < rows.len() {
            let first = rows[i];
            if !(0..n).contains(&first) {
                return Err(Error::invalid(format!(
                    "{}: row {first} of `{name}` is out of range",
                    self.path.display()
                )));
            }
            let mut j = i + 1;
            while j < rows.len() && rows[j] == rows[j - 1] + 1 && rows[j] < n {
                j += 1;
            }
            let at = t.start + first as u64 * rb;
            bytes.extend(self.read_at(at, ((j - i) as u64 * rb) as usize)?);
            i = j;
        }
        let mut shape: Vec<i64> = t.spec.shape.iter().map(|&d| d as i64).collect();
        shape[0] = rows.len() as i64;
        Tensor::f_from_data_size(&bytes, &shape, t.spec.dtype.kind())
            .map_err(|e| Error::invalid(crate::input::one_line(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs() -> Vec<TensorSpec> {
        vec![
            TensorSpec {
                name: "pooled".into(),
                dtype: Dtype::F32,
                shape: vec![3, 2],
            },
            TensorSpec {
                name: "grid".into(),
                dtype: Dtype::F16,
                shape: vec![3, 2, 2],
            },
        ]
    }

    fn meta() -> BTreeMap<String, String> {
        [
            ("format", "captag-features-1"),
            ("ids", "[\"a\",\"b\",\"c\"]"),
            ("z", "last"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn write_sample(path: &Path) {
        let pooled = Tensor::arange(6, (Kind::Float, tch::Device::Cpu)).view([3, 2]);
        let grid = Tensor::arange(12, (Kind::Float, tch::Device::Cpu))
            .view([3, 2, 2])
            .to_kind(Kind::Half);
        write(path, &meta(), &specs(), |i, w| {
            let t = if i == 0 { &pooled } else { &grid };
            let mut b = vec![0u8; t.numel() * t.kind().elt_size_in_bytes()];
            t.copy_data_u8(&mut b, t.numel());
            w.write_all(&b).map_err(|e| Error::io(path, e))
        })
        .unwrap();
    }

    #[test]
    fn the_header_is_deterministic_padded_and_readable_by_safetensors() {
        let a = header_bytes(&meta(), &specs()).unwrap();
        assert_eq!(a, header_bytes(&meta(), &specs()).unwrap());
        assert_eq!((a.len() - 8) % 8, 0);
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("c.safetensors");
        write_sample(&p);
        let bytes = std::fs::read(&p).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(st.tensor("pooled").unwrap().shape(), [3, 2]);
        assert_eq!(st.tensor("grid").unwrap().shape(), [3, 2, 2]);
        let (_, m) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        assert_eq!(m.metadata().as_ref().unwrap()["z"], "last");
    }

    #[test]
    fn rows_are_read_back_in_any_order_and_out_of_range_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("c.safetensors");
        write_sample(&p);
        let f = FeatureFile::open(&p).unwrap();
        assert_eq!(f.ids().unwrap(), ["a", "b", "c"]);
        f.check_finite().unwrap();
        let r = f.rows("pooled", &[2, 0, 1]).unwrap();
        assert_eq!(
            Vec::<f32>::try_from(r.view([-1])).unwrap(),
            [4., 5., 0., 1., 2., 3.]
        );
        let g = f.rows("grid", &[1, 2]).unwrap();
        assert_eq!(g.kind(), Kind::Half);
        assert_eq!(
            Vec::<f32>::try_from(g.to_kind(Kind::Float).view([-1])).unwrap(),
            [4., 5., 6., 7., 8., 9., 10., 11.]
        );
        assert!(f.rows("pooled", &[3]).is_err());
        assert!(f.rows("pooled", &[-1]).is_err());
    }

    #[test]
    fn a_fill_of_the_wrong_size_leaves_nothing() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("c.safetensors");
        let e = write(&p, &meta(), &specs(), |_, w| {
            w.write_all(&[0u8; 3])
                .map_err(|e| Error::io(Path::new("x"), e))
        });
        assert!(e.is_err());
        assert_eq!(std::fs::read_dir(t.path()).unwrap().count(), 0);
    }

    #[test]
    fn non_finite_values_and_truncated_files_are_refused() {
        assert!(Dtype::F32.all_finite(&1.5f32.to_le_bytes()));
        assert!(!Dtype::F32.all_finite(&f32::NAN.to_le_bytes()));
        assert!(!Dtype::F32.all_finite(&f32::NEG_INFINITY.to_le_bytes()));
        assert!(Dtype::F16.all_finite(&0x3c00u16.to_le_bytes())); // 1.0
        assert!(!Dtype::F16.all_finite(&0x7c00u16.to_le_bytes())); // inf
        assert!(!Dtype::F16.all_finite(&0xfe00u16.to_le_bytes())); // NaN
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("c.safetensors");
        write_sample(&p);
        let mut bytes = std::fs::read(&p).unwrap();
        bytes.truncate(bytes.len() - 1);
        std::fs::write(&p, &bytes).unwrap();
        let e = FeatureFile::open(&p).unwrap_err().to_string();
        assert!(e.contains("does not fit"), "{e}");
    }
}

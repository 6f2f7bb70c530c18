//! Sharded feature extraction (docs/scale.md): which images `features --shard i/N` encodes,
//! and where its cache goes. An image belongs to shard `FNV-1a(name) mod N`: every task of a
//! Slurm array or Kubernetes Indexed Job computes the same partition from the name alone
//! (no coordination, no list to ship), and adding images to a dataset moves none of the
//! others.
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::fsio::Fingerprint;

/// Task `index` of `count` (`0 <= index < count`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

/// Most shards a dataset is split into (a million tasks is past any scheduler's array size).
pub const MAX_SHARDS: usize = 1_000_000;

impl FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> Result<Shard, String> {
        let bad =
            || format!("`{s}` is not a shard: write INDEX/COUNT with 0 <= INDEX < COUNT, e.g. 0/8");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count): (usize, usize) = (
            i.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        if count == 0 || index >= count || count > MAX_SHARDS {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The shard of `count` an image id belongs to.
pub fn shard_of(id: &str, count: usize) -> usize {
    // The 64-bit hash is stable across versions and machines (fsio::Fingerprint is FNV-1a).
    let hex = Fingerprint::default().update(id.as_bytes()).hex();
    (u64::from_str_radix(&hex, 16).unwrap_or(0) % count as u64) as usize
}

impl Shard {
    /// Whether image `id` is this shard's.
    pub fn owns(&self, id: &str) -> bool {
        shard_of(id, self.count) == self.index
    }

    /// This shard's part of `images` (order kept).
    pub fn select<T: Clone>(&self, images: &[(String, T)]) -> Vec<(String, T)> {
        images
            .iter()
            .filter(|(id, _)| self.owns(id))
            .cloned()
            .collect()
    }

    /// `OUT.shard-I-of-N.safetensors` beside `out` (a `.safetensors` extension is replaced).
    pub fn path_for(&self, out: &Path) -> PathBuf {
        let stem = match out.extension().and_then(|e| e.to_str()) {
            Some("safetensors") => out.with_extension(""),
            _ => out.to_path_buf(),
        };
        let mut name = stem.file_name().unwrap_or_default().to_os_string();
        name.push(format!(
            ".shard-{}-of-{}.safetensors",
            self.index, self.count
        ));
        stem.with_file_name(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_index_slash_count_and_refuses_the_rest() {
        assert_eq!(
            "2/8".parse::<Shard>().unwrap(),
            Shard { index: 2, count: 8 }
        );
        assert_eq!("0/1".parse::<Shard>().unwrap().to_string(), "0/1");
        for bad in ["8/8", "1/0", "-1/3", "a/3", "3", "", "1/2/3", "0/2000000"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_partition_is_complete_stable_and_moves_nothing_when_images_are_added() {
        let ids: Vec<(String, ())> = (0..1000).map(|i| (format!("{i:05}.jpg"), ())).collect();
        let n = 7;
        let parts: Vec<_> = (0..n)
            .map(|index| Shard { index, count: n }.select(&ids))
            .collect();
        assert_eq!(parts.iter().map(Vec::len).sum::<usize>(), ids.len());
        // Roughly balanced: each shard within 30% of the mean.
        for p in &parts {
            assert!((p.len() as f64 - 1000.0 / 7.0).abs() < 43.0, "{}", p.len());
        }
        let more: Vec<(String, ())> = (0..1100).map(|i| (format!("{i:05}.jpg"), ())).collect();
        for (index, p) in parts.iter().enumerate() {
            let again = Shard { index, count: n }.select(&more);
            assert_eq!(&again[..p.len()], &p[..], "old images stay where they were");
        }
    }

    #[test]
    fn the_hash_is_pinned() {
        // The hash must never change, or shards written by one version would not merge with
        // another's. FNV-1a 64 of the name's bytes then one 0xff separator, in Python:
        // h = 0xcbf29ce484222325; for b in name + b"\xff": h = ((h ^ b) * 0x100000001b3) % 2**64
        // gives 0xdaa4d2f2ae625e5a for a.jpg, 0x36402f4764ed315e for 1000268201_693b08cb0e.jpg.
        assert_eq!(shard_of("a.jpg", 1000), 490);
        assert_eq!(shard_of("a.jpg", 8), 2);
        assert_eq!(shard_of("1000268201_693b08cb0e.jpg", 1000), 286);
        assert_eq!(shard_of("1000268201_693b08cb0e.jpg", 8), 6);
    }

    #[test]
    fn shard_paths_sit_beside_the_output() {
        let s = Shard {
            index: 3,
            count: 16,
        };
        assert_eq!(
            s.path_for(Path::new("/c/feat.safetensors")),
            Path::new("/c/feat.shard-3-of-16.safetensors")
        );
        assert_eq!(
            s.path_for(Path::new("feat")),
            Path::new("feat.shard-3-of-16.safetensors")
        );
    }
}

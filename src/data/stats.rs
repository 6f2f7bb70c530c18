//! Dataset statistics (`captag data stats`): what a loaded [`Dataset`] holds, as a serde value
//! for `--json` and as a readable report through `Display`. Token counts use
//! [`crate::text::tokenize`], the tokenizer training and BLEU use.
use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::Serialize;

use super::{Dataset, Format, Split};
use crate::text::tokenize;

/// How many hashtags the report lists.
pub const TOP_HASHTAGS: usize = 20;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DatasetStats {
    pub format: Format,
    pub root: String,
    /// Distinct images the captions file(s) list (with a usable caption or hashtag).
    pub images_listed: usize,
    pub images_found: usize,
    pub images_missing: usize,
    /// Samples kept (with `keep_missing`, including the ones whose image is missing).
    pub samples: usize,
    pub samples_per_split: SplitCounts,
    pub captions: usize,
    pub captions_per_image: MinMeanMax,
    /// Distinct caption words of the training split seen at least once / at least 5 times
    /// (the vocabulary size at that min-count, without the 4 specials).
    pub train_vocab_min1: usize,
    pub train_vocab_min5: usize,
    /// Caption length in tokens over all kept captions (nearest-rank percentiles).
    pub caption_tokens: Percentiles,
    pub samples_with_hashtags: usize,
    pub distinct_hashtags: usize,
    /// Most frequent hashtags by number of samples carrying them (ties: alphabetical).
    pub top_hashtags: Vec<TagCount>,
    /// Skip reason → count.
    pub skipped: BTreeMap<String, usize>,
    pub skip_summary: String,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct SplitCounts {
    pub train: usize,
    pub dev: usize,
    pub test: usize,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct MinMeanMax {
    pub min: usize,
    pub mean: f64,
    pub max: usize,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Percentiles {
    pub p5: usize,
    pub p25: usize,
    pub p50: usize,
    pub p75: usize,
    pub p95: usize,
    pub max: usize,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TagCount {
    pub tag: String,
    pub count: usize,
}

pub fn compute(ds: &Dataset) -> DatasetStats {
    let [train, dev, test] = ds.split_counts();
    let per_image: Vec<usize> = ds.samples.iter().map(|s| s.captions.len()).collect();
    let captions: usize = per_image.iter().sum();
    let captions_per_image = MinMeanMax {
        min: per_image.iter().copied().min().unwrap_or(0),
        mean: if per_image.is_empty() {
            0.0
        } else {
            captions as f64 / per_image.len() as f64
        },
        max: per_image.iter().copied().max().unwrap_or(0),
    };

    let mut lengths = Vec::with_capacity(captions);
    let mut train_counts: HashMap<String, usize> = HashMap::new();
    for s in &ds.samples {
        for c in &s.captions {
            let toks = tokenize(c);
            lengths.push(toks.len());
            if s.split == Split::Train {
                for t in toks {
                    *train_counts.entry(t).or_insert(0) += 1;
                }
            }
        }
    }
    lengths.sort_unstable();

    let mut tag_counts: HashMap<&str, usize> = HashMap::new();
    for s in &ds.samples {
        for h in &s.hashtags {
            *tag_counts.entry(h.as_str()).or_insert(0) += 1;
        }
    }
    let mut top: Vec<(&str, usize)> = tag_counts.iter().map(|(t, n)| (*t, *n)).collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));

    DatasetStats {
        format: ds.format,
        root: ds.root.display().to_string(),
        images_listed: ds.images_listed,
        images_found: ds.images_listed - ds.images_missing.min(ds.images_listed),
        images_missing: ds.images_missing,
        samples: ds.samples.len(),
        samples_per_split: SplitCounts { train, dev, test },
        captions,
        captions_per_image,
        train_vocab_min1: train_counts.len(),
        train_vocab_min5: train_counts.values().filter(|n| **n >= 5).count(),
        caption_tokens: Percentiles {
            p5: percentile(&lengths, 5.0),
            p25: percentile(&lengths, 25.0),
            p50: percentile(&lengths, 50.0),
            p75: percentile(&lengths, 75.0),
            p95: percentile(&lengths, 95.0),
            max: lengths.last().copied().unwrap_or(0),
        },
        samples_with_hashtags: ds.samples.iter().filter(|s| !s.hashtags.is_empty()).count(),
        distinct_hashtags: tag_counts.len(),
        top_hashtags: top
            .into_iter()
            .take(TOP_HASHTAGS)
            .map(|(t, n)| TagCount {
                tag: t.to_string(),
                count: n,
            })
            .collect(),
        skipped: ds
            .skipped
            .counts()
            .into_iter()
            .map(|(r, n)| (r.as_str().to_string(), n))
            .collect(),
        skip_summary: ds.skipped.summary(),
    }
}

/// Nearest-rank percentile of sorted values (0 for none): the smallest value with at least
/// `p`% of the values at or below it.
fn percentile(sorted: &[usize], p: f64) -> usize {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl fmt::Display for DatasetStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.samples_per_split;
        let c = &self.captions_per_image;
        let l = &self.caption_tokens;
        writeln!(f, "format          {} ({})", self.format, self.root)?;
        writeln!(
            f,
            "images          {} listed, {} found, {} missing",
            self.images_listed, self.images_found, self.images_missing
        )?;
        writeln!(
            f,
            "samples         {} (train {}, dev {}, test {})",
            self.samples, s.train, s.dev, s.test
        )?;
        writeln!(
            f,
            "captions        {} ({} min / {:.2} mean / {} max per image)",
            self.captions, c.min, c.mean, c.max
        )?;
        writeln!(
            f,
            "vocabulary      {} words at min-count 1, {} at min-count 5 (training split, without specials)",
            self.train_vocab_min1, self.train_vocab_min5
        )?;
        writeln!(
            f,
            "caption tokens  p5 {} / p25 {} / p50 {} / p75 {} / p95 {} / max {}",
            l.p5, l.p25, l.p50, l.p75, l.p95, l.max
        )?;
        writeln!(
            f,
            "hashtags        {} distinct on {} samples",
            self.distinct_hashtags, self.samples_with_hashtags
        )?;
        if !self.top_hashtags.is_empty() {
            let top: Vec<String> = self
                .top_hashtags
                .iter()
                .map(|t| format!("#{} {}", t.tag, t.count))
                .collect();
            for chunk in top.chunks(5) {
                writeln!(f, "                {}", chunk.join(", "))?;
            }
        }
        write!(f, "{}", self.skip_summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Sample, SkipReason, SkipReport};
    use std::path::PathBuf;

    fn sample(id: &str, split: Split, captions: &[&str], tags: &[&str]) -> Sample {
        Sample {
            id: id.into(),
            path: PathBuf::from(id),
            captions: captions.iter().map(|s| s.to_string()).collect(),
            hashtags: tags.iter().map(|s| s.to_string()).collect(),
            split,
        }
    }

    #[test]
    fn percentiles_nearest_rank() {
        let v: Vec<usize> = (1..=20).collect();
        assert_eq!(percentile(&v, 5.0), 1);
        assert_eq!(percentile(&v, 50.0), 10);
        assert_eq!(percentile(&v, 95.0), 19);
        assert_eq!(percentile(&[7], 5.0), 7);
        assert_eq!(percentile(&[], 50.0), 0);
    }

    #[test]
    fn counts_and_report() {
        let mut skipped = SkipReport::default();
        skipped.push(SkipReason::MissingImage, "x.jpg");
        let ds = Dataset {
            format: Format::Instagram,
            root: PathBuf::from("/data"),
            samples: vec![
                sample(
                    "a",
                    Split::Train,
                    &["a dog runs", "a dog"],
                    &["dog", "pets"],
                ),
                sample("b", Split::Train, &["a cat ."], &["pets"]),
                sample("c", Split::Dev, &[], &["zoo"]),
                sample("d", Split::Test, &["the dog"], &[]),
            ],
            skipped,
            images_listed: 5,
            images_missing: 1,
        };
        let st = compute(&ds);
        assert_eq!((st.images_found, st.samples, st.captions), (4, 4, 4));
        assert_eq!(
            st.samples_per_split,
            SplitCounts {
                train: 2,
                dev: 1,
                test: 1
            }
        );
        assert_eq!(
            (st.captions_per_image.min, st.captions_per_image.max),
            (0, 2)
        );
        assert_eq!(st.train_vocab_min1, 4); // a dog runs cat
        assert_eq!(st.train_vocab_min5, 0);
        assert_eq!(st.caption_tokens.max, 3);
        assert_eq!(st.samples_with_hashtags, 3);
        assert_eq!(st.distinct_hashtags, 3);
        let top: Vec<(&str, usize)> = st
            .top_hashtags
            .iter()
            .map(|t| (t.tag.as_str(), t.count))
            .collect();
        assert_eq!(top, [("pets", 2), ("dog", 1), ("zoo", 1)]);
        let text = st.to_string();
        assert!(
            text.contains("images          5 listed, 4 found, 1 missing"),
            "{text}"
        );
        assert!(text.contains("#pets 2, #dog 1, #zoo 1"), "{text}");
        assert!(text.ends_with("skipped 1 missing image"), "{text}");
        let json = serde_json::to_value(&st).unwrap();
        assert_eq!(json["format"], "instagram");
        assert_eq!(json["skipped"]["missing image"], 1);
    }

    /// The numbers on real data, run by hand (the data is not part of the repo):
    /// `CAPTAG_STATS_PATH=../shared/data/flickr8k [CAPTAG_STATS_FORMAT=flickr8k-uiuc]
    /// [CAPTAG_STATS_KEEP_MISSING=1] [CAPTAG_STATS_VERIFY=1]
    /// cargo test --release --lib stats_of_real_data -- --ignored --nocapture`
    #[test]
    #[ignore = "needs CAPTAG_STATS_PATH pointing at a dataset"]
    fn stats_of_real_data() {
        use crate::data::{load, LoadOptions};
        let Ok(path) = std::env::var("CAPTAG_STATS_PATH") else {
            crate::fsio::errln!("CAPTAG_STATS_PATH not set; nothing to do");
            return;
        };
        let opts = LoadOptions {
            format: std::env::var("CAPTAG_STATS_FORMAT")
                .ok()
                .map(|f| f.parse().unwrap()),
            keep_missing: std::env::var("CAPTAG_STATS_KEEP_MISSING").is_ok(),
            verify_images: std::env::var("CAPTAG_STATS_VERIFY").is_ok(),
            ..LoadOptions::default()
        };
        let t = std::time::Instant::now();
        let ds = load(std::path::Path::new(&path), &opts).unwrap();
        let loaded = t.elapsed();
        let st = compute(&ds);
        crate::fsio::errln!(
            "{st}\nload {:.3}s, stats {:.3}s",
            loaded.as_secs_f64(),
            (t.elapsed() - loaded).as_secs_f64()
        );
    }
}

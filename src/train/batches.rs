//! The batches of one training epoch: which captions an epoch uses (`--captions-per-image`),
//! and how they are cut into batches (image groups for end-to-end encoders and grids, length
//! buckets or plain shuffle for cached features). Pure index bookkeeping, seeded per epoch, so
//! a resumed run sees the same batches (docs/ARCHITECTURE.md, "Run directory").
use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::prepare::Prepared;
use crate::config::Batching;

/// The caption indices of every batch of one epoch, in a seeded random order. With an
/// end-to-end encoder, whole images (all their captions) are shuffled and packed into batches
/// of about `batch_size` captions; otherwise captions are shuffled individually. Hashtag-only
/// runs see each image once per epoch (its first caption's entry stands for the image).
/// `pick = Some((k, epoch))`: only `k` captions of each image, chosen by [`captions_in_turn`].
pub(super) fn epoch_batches(
    prep: &Prepared,
    batch_size: usize,
    seed: u64,
    per_image: bool,
    batching: Batching,
    pick: Option<(usize, usize)>,
) -> Vec<Vec<usize>> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let images: Vec<i64> = prep.train.iter().map(|(row, _)| *row).collect();
    let chosen = match pick {
        Some((k, epoch)) if !per_image => captions_in_turn(&images, k, epoch),
        _ => (0..prep.train.len()).collect(),
    };
    if per_image {
        let mut seen = std::collections::HashSet::new();
        let mut order: Vec<usize> = (0..prep.train.len())
            .filter(|&i| seen.insert(prep.train[i].0))
            .collect();
        order.shuffle(&mut rng);
        return order.chunks(batch_size).map(<[usize]>::to_vec).collect();
    }
    if !prep.group_by_image {
        let mut order = chosen;
        order.shuffle(&mut rng);
        if batching == Batching::Shuffle {
            return order.chunks(batch_size).map(<[usize]>::to_vec).collect();
        }
        return length_buckets(&order, |i| prep.train[i].1.len(), batch_size, &mut rng);
    }
    let mut groups: std::collections::BTreeMap<i64, Vec<usize>> = Default::default();
    for i in chosen {
        groups.entry(images[i]).or_default().push(i);
    }
    let mut groups: Vec<Vec<usize>> = groups.into_values().collect();
    groups.shuffle(&mut rng);
    let mut batches: Vec<Vec<usize>> = vec![];
    let mut cur: Vec<usize> = vec![];
    for g in groups {
        if !cur.is_empty() && cur.len() + g.len() > batch_size {
            batches.push(std::mem::take(&mut cur));
        }
        cur.extend(g);
    }
    if !cur.is_empty() {
        batches.push(cur);
    }
    batches
}

/// The captions (indices into `image_of`, one entry per caption naming its image row) that
/// epoch `epoch` trains on when each image contributes `k`: an image's `n` captions in their
/// listed order, positions `epoch·k .. epoch·k + k` mod `n` — so over `n / k` epochs every
/// caption is used, and an image with fewer than `k` captions gives all of them. Sorted.
pub fn captions_in_turn(image_of: &[i64], k: usize, epoch: usize) -> Vec<usize> {
    let mut of_image: std::collections::BTreeMap<i64, Vec<usize>> = Default::default();
    for (i, row) in image_of.iter().enumerate() {
        of_image.entry(*row).or_default().push(i);
    }
    let mut out: Vec<usize> = of_image
        .values()
        .flat_map(|caps| {
            let n = caps.len();
            let take = k.min(n);
            (0..take).map(move |j| caps[(epoch * k + j) % n])
        })
        .collect();
    out.sort_unstable();
    out
}

/// Batches pools of [`BUCKET_POOL`] batches' worth of the shuffled `order`, each pool sorted
/// by `len` (stable, so equal lengths keep the shuffled order) and cut into batches; then the
/// batches are shuffled, so lengths do not rise through the epoch.
pub fn length_buckets(
    order: &[usize],
    len: impl Fn(usize) -> usize,
    batch_size: usize,
    rng: &mut impl rand::Rng,
) -> Vec<Vec<usize>> {
    let mut batches: Vec<Vec<usize>> = Vec::new();
    for pool in order.chunks(batch_size * BUCKET_POOL) {
        let mut pool = pool.to_vec();
        pool.sort_by_key(|&i| len(i));
        batches.extend(pool.chunks(batch_size).map(<[usize]>::to_vec));
    }
    batches.shuffle(rng);
    batches
}

/// Batches per length-sorted pool: large enough that a pool holds every common length many
/// times over, small enough that the epoch stays well mixed.
const BUCKET_POOL: usize = 50;

#[cfg(test)]
mod tests {
    use super::*;

    /// Caption lengths like Flickr8k's (9–30 tokens with `<start>`/`<end>`), one per index.
    fn lengths(n: usize) -> Vec<usize> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        (0..n)
            .map(|_| 9 + (rand::Rng::gen_range(&mut rng, 0..22usize)))
            .collect()
    }

    fn padded_steps(batches: &[Vec<usize>], len: &[usize]) -> usize {
        batches
            .iter()
            .map(|b| b.len() * b.iter().map(|&i| len[i]).max().unwrap_or(0))
            .sum()
    }

    #[test]
    fn length_buckets_keep_every_caption_once_and_cut_padding() {
        let len = lengths(10_000);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let mut order: Vec<usize> = (0..len.len()).collect();
        order.shuffle(&mut rng);
        let plain: Vec<Vec<usize>> = order.chunks(64).map(<[usize]>::to_vec).collect();
        let buckets = length_buckets(&order, |i| len[i], 64, &mut rng);
        let mut seen: Vec<usize> = buckets.iter().flatten().copied().collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..len.len()).collect::<Vec<_>>());
        assert!(buckets.iter().all(|b| !b.is_empty() && b.len() <= 64));
        // Within a batch lengths differ by little; padded positions fall from ~30 to ~len.
        let real: usize = len.iter().sum();
        let (p, b) = (padded_steps(&plain, &len), padded_steps(&buckets, &len));
        assert!(b < p, "{b} vs {p}");
        assert!((b as f64) < 1.05 * real as f64, "{b} vs {real} real tokens");
        // Batches are shuffled: the first ones are not all the shortest.
        let first_max = buckets[..10]
            .iter()
            .flatten()
            .map(|&i| len[i])
            .max()
            .unwrap();
        assert!(first_max > 12, "{first_max}");
    }

    #[test]
    fn captions_in_turn_uses_every_caption_once_per_cycle() {
        // Image 7 has 5 captions, image 3 has 2, image 9 has 1 (rows interleaved).
        let image_of = [7, 3, 7, 7, 9, 3, 7, 7];
        let mut seen = vec![0; image_of.len()];
        for epoch in 0..5 {
            let got = captions_in_turn(&image_of, 1, epoch);
            let mut imgs: Vec<i64> = got.iter().map(|&i| image_of[i]).collect();
            imgs.sort_unstable();
            assert_eq!(imgs, [3, 7, 9], "one caption per image, epoch {epoch}");
            for i in got {
                seen[i] += 1;
            }
        }
        // Image 7's five captions once each; image 3's two alternate (3 + 2); image 9's always.
        assert_eq!(seen, [1, 3, 1, 1, 5, 2, 1, 1]);
        assert_eq!(captions_in_turn(&image_of, 2, 0), [0, 1, 2, 4, 5]);
        assert_eq!(captions_in_turn(&image_of, 9, 3).len(), image_of.len());
    }

    #[test]
    fn length_buckets_are_seeded() {
        let len = lengths(3_000);
        let order: Vec<usize> = (0..len.len()).collect();
        let run = |seed| {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            length_buckets(&order, |i| len[i], 32, &mut rng)
        };
        assert_eq!(run(3), run(3));
        assert_ne!(run(3), run(4));
    }
}

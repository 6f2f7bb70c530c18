//! The batch loader: decodes and preprocesses images ([`super::image`]) on background threads
//! while the caller's thread runs the model, and hands over batches in input order.
//!
//! `tch::Tensor` is `Send` but not `Sync` (docs/ARCHITECTURE.md, "libtorch"), so workers only fill plain
//! `Vec<f32>` buffers; the consuming thread turns a batch into a tensor with
//! [`ImageBatch::to_tensor`]. One producer thread builds batch after batch: for each batch it
//! splits the images among `threads` scoped workers (itself included) that write straight into
//! the batch's buffer, then sends the batch down a bounded channel. Order is therefore
//! deterministic and memory stays at a few batches whatever the dataset size.
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::image::{load_chw_into, Preprocess};

/// Finished batches that may wait in the channel while the caller is busy; with the one being
/// built and the one the caller holds, at most `PREFETCH + 2` batches exist at once.
const PREFETCH: usize = 2;

/// Decoding threads to use while the consuming thread runs a network: one thread decodes
/// ~1,400 Flickr8k images/s, far more than a CNN consumes on a CPU, and a second one would only
/// compete with libtorch's own threads for the cores.
pub const THREADS_BESIDE_MODEL: usize = 1;

/// A batch of preprocessed images, in input order.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageBatch {
    /// Positions in the loader's input list of the images in `data`, ascending.
    pub indices: Vec<usize>,
    /// `(B, 3, S, S)` row-major, `B = indices.len()`.
    pub data: Vec<f32>,
    /// `S`, the side of every image.
    pub size: u32,
    /// Inputs of this batch's range that could not be loaded, with the reason; not in `data`.
    pub failed: Vec<(usize, String)>,
}

impl ImageBatch {
    /// The batch as a `(B, 3, S, S)` float tensor on the CPU. May have `B = 0` when every image
    /// of the batch failed.
    pub fn to_tensor(&self) -> tch::Tensor {
        let s = self.size as i64;
        // (B, 3, S, S)
        tch::Tensor::from_slice(&self.data).reshape([self.len() as i64, 3, s, s])
    }

    /// Number of images that loaded.
    pub fn len(&self) -> usize {
        self.indices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }
}

/// An iterator of [`ImageBatch`]es over a list of image paths. Each batch covers the next
/// `batch_size` inputs; images that fail to load are listed in that batch's `failed` and left
/// out (a batch can therefore be smaller, even empty). Dropping the loader stops its threads.
pub struct BatchLoader {
    source: Source,
    stop: Arc<AtomicBool>,
}

enum Source {
    /// The usual case: a producer thread and a channel.
    Threaded {
        rx: Option<Receiver<ImageBatch>>,
        handle: Option<JoinHandle<()>>,
    },
    /// The OS refused a thread: build each batch on demand in `next` instead.
    Inline(Producer),
}

impl BatchLoader {
    /// Starts loading at once. `threads` = decoding threads, 0 meaning
    /// `std::thread::available_parallelism()`; `batch_size` 0 is taken as 1.
    pub fn new(paths: Vec<PathBuf>, p: Preprocess, batch_size: usize, threads: usize) -> Self {
        let threads = match threads {
            0 => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            n => n,
        };
        let batch_size = batch_size.max(1);
        // More workers than images in a batch would only idle.
        let threads = threads.min(batch_size);
        let stop = Arc::new(AtomicBool::new(false));
        let paths: Arc<[PathBuf]> = paths.into();
        let make = || Producer {
            paths: Arc::clone(&paths),
            p,
            batch_size,
            threads,
            next: 0,
        };
        let (tx, rx) = sync_channel(PREFETCH);
        let mut producer = make();
        let thread_stop = Arc::clone(&stop);
        let spawned = std::thread::Builder::new()
            .name("captag-loader".into())
            .spawn(move || {
                while let Some(batch) = producer.next_batch(&thread_stop) {
                    if tx.send(batch).is_err() {
                        break; // the loader was dropped
                    }
                }
            });
        let source = match spawned {
            Ok(handle) => Source::Threaded {
                rx: Some(rx),
                handle: Some(handle),
            },
            Err(_) => Source::Inline(make()),
        };
        BatchLoader { source, stop }
    }
}

/// Cuts the input list into batches and fills them.
struct Producer {
    paths: Arc<[PathBuf]>,
    p: Preprocess,
    batch_size: usize,
    threads: usize,
    next: usize,
}

impl Producer {
    /// The next batch, or `None` at the end of the input or when asked to stop.
    fn next_batch(&mut self, stop: &AtomicBool) -> Option<ImageBatch> {
        if self.next >= self.paths.len() || stop.load(Ordering::Relaxed) {
            return None;
        }
        let start = self.next;
        let end = (start + self.batch_size).min(self.paths.len());
        self.next = end;
        let n = end - start;
        let per = self.p.output_len();
        // `chunks_mut(0)` panics; a zero-sized output still needs one slot per image.
        let slot = per.max(1);
        let mut data = vec![0f32; n * slot];
        let mut errors: Vec<Option<String>> = vec![None; n];
        {
            let jobs = Mutex::new(data.chunks_mut(slot).zip(errors.iter_mut()).enumerate());
            let paths = &self.paths[start..end];
            let p = &self.p;
            let work = || loop {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                // A poisoned lock only means another worker panicked between `next` calls,
                // which cannot happen; the iterator is still sound.
                let job = jobs.lock().unwrap_or_else(|e| e.into_inner()).next();
                let Some((i, (buf, err))) = job else { break };
                let path = &paths[i];
                // A decoder bug must cost one image, not the whole run.
                match catch_unwind(AssertUnwindSafe(|| load_chw_into(path, p, &mut buf[..per]))) {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => *err = Some(e.to_string()),
                    Err(_) => *err = Some(format!("{}: image decoder panicked", path.display())),
                }
            };
            std::thread::scope(|s| {
                for _ in 1..self.threads {
                    // If the OS refuses a thread the remaining workers do its share.
                    let _ = std::thread::Builder::new().spawn_scoped(s, work);
                }
                work();
            });
        }
        if stop.load(Ordering::Relaxed) {
            return None;
        }
        // Close the gaps failed images left so `data` holds exactly the loaded ones.
        let mut indices = Vec::with_capacity(n);
        let mut failed = Vec::new();
        for (i, err) in errors.into_iter().enumerate() {
            match err {
                None => {
                    let w = indices.len();
                    if w != i {
                        data.copy_within(i * per..(i + 1) * per, w * per);
                    }
                    indices.push(start + i);
                }
                Some(reason) => failed.push((start + i, reason)),
            }
        }
        data.truncate(indices.len() * per);
        Some(ImageBatch {
            indices,
            data,
            size: self.p.size,
            failed,
        })
    }
}

impl Iterator for BatchLoader {
    type Item = ImageBatch;

    fn next(&mut self) -> Option<ImageBatch> {
        match &mut self.source {
            Source::Threaded { rx, .. } => rx.as_ref()?.recv().ok(),
            Source::Inline(producer) => producer.next_batch(&self.stop),
        }
    }
}

impl Drop for BatchLoader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Source::Threaded { rx, handle } = &mut self.source {
            // Dropping the receiver first wakes a producer blocked on a full channel.
            drop(rx.take());
            if let Some(h) = handle.take() {
                let _ = h.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::image::{Normalization, ResizeMode};
    use std::path::Path;

    const P: Preprocess = Preprocess {
        size: 4,
        resize: ResizeMode::Squash,
        norm: Normalization::MinusOneOne,
    };

    /// `n` PNGs of constant grey `10 * i`, so each output reveals which input it came from.
    fn greys(dir: &Path, n: usize) -> Vec<PathBuf> {
        (0..n)
            .map(|i| {
                let path = dir.join(format!("{i}.png"));
                image::RgbImage::from_pixel(6, 5, image::Rgb([10 * i as u8; 3]))
                    .save(&path)
                    .unwrap();
                path
            })
            .collect()
    }

    fn grey_of(image: &[f32]) -> u8 {
        ((image[0] + 1.0) * 127.5).round() as u8
    }

    #[test]
    fn batches_come_in_input_order() {
        let dir = tempfile::tempdir().unwrap();
        let paths = greys(dir.path(), 10);
        for threads in [1, 3, 0] {
            let batches: Vec<ImageBatch> = BatchLoader::new(paths.clone(), P, 3, threads).collect();
            let sizes: Vec<usize> = batches.iter().map(|b| b.len()).collect();
            assert_eq!(sizes, [3, 3, 3, 1]);
            let mut seen = Vec::new();
            for b in &batches {
                assert!(b.failed.is_empty());
                assert_eq!(b.data.len(), b.len() * P.output_len());
                for (k, &i) in b.indices.iter().enumerate() {
                    assert_eq!(grey_of(&b.data[k * P.output_len()..]), 10 * i as u8);
                    seen.push(i);
                }
            }
            assert_eq!(seen, (0..10).collect::<Vec<_>>());
        }
    }

    #[test]
    fn failures_are_counted_and_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let mut paths = greys(dir.path(), 6);
        std::fs::write(&paths[2], "not an image").unwrap();
        paths[4] = dir.path().join("missing.png");
        let batches: Vec<ImageBatch> = BatchLoader::new(paths, P, 4, 2).collect();
        assert_eq!(batches.len(), 2);
        let failed: Vec<usize> = batches
            .iter()
            .flat_map(|b| b.failed.iter().map(|f| f.0))
            .collect();
        assert_eq!(failed, [2, 4]);
        assert!(batches[0].failed[0].1.contains("2.png"));
        assert_eq!(batches[0].indices, [0, 1, 3]);
        assert_eq!(batches[1].indices, [5]);
        // The gap left by the failure is closed: image 3 follows image 1.
        assert_eq!(grey_of(&batches[0].data[2 * P.output_len()..]), 30);
        assert_eq!(batches[1].data.len(), P.output_len());
    }

    #[test]
    fn a_batch_of_failures_is_empty_but_reported() {
        let dir = tempfile::tempdir().unwrap();
        let paths = vec![dir.path().join("a.jpg"), dir.path().join("b.jpg")];
        let batches: Vec<ImageBatch> = BatchLoader::new(paths, P, 8, 2).collect();
        assert_eq!(batches.len(), 1);
        assert!(batches[0].is_empty());
        assert_eq!(batches[0].failed.len(), 2);
        assert_eq!(batches[0].to_tensor().size(), [0, 3, 4, 4]);
    }

    #[test]
    fn to_tensor_is_b_3_s_s() {
        let dir = tempfile::tempdir().unwrap();
        let batch = BatchLoader::new(greys(dir.path(), 3), P, 3, 2)
            .next()
            .unwrap();
        let t = batch.to_tensor();
        assert_eq!(t.size(), [3, 3, 4, 4]);
        assert_eq!(t.kind(), tch::Kind::Float);
        assert_eq!(Vec::<f32>::try_from(t.flatten(0, -1)).unwrap(), batch.data);
    }

    #[test]
    fn dropping_early_stops_the_workers() {
        let dir = tempfile::tempdir().unwrap();
        let few = greys(dir.path(), 4);
        let many: Vec<PathBuf> = few.iter().cycle().take(5000).cloned().collect();
        let t0 = std::time::Instant::now();
        let mut loader = BatchLoader::new(many.clone(), P, 2, 2);
        assert_eq!(loader.next().map(|b| b.indices), Some(vec![0, 1]));
        drop(loader);
        drop(BatchLoader::new(many, P, 2, 2)); // never consumed
                                               // A producer left blocked on its full channel would make `drop` hang here for good;
                                               // finishing all 10,000 images instead of stopping would take far longer than this.
        assert!(t0.elapsed() < std::time::Duration::from_secs(5));
    }
}

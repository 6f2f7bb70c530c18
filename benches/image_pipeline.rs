//! Throughput of captag's image pipeline (decode → Resize(224) → CenterCrop(224) → ImageNet
//! normalization → CHW f32) on real files, to compare with `bench/image_reference.py` (PIL +
//! torchvision) on the same machine; `bench/image_bench.sh` runs both and prints the ratios.
//!
//! Usage: cargo bench --bench image_pipeline -- IMAGES_DIR [N] [--dump-first OUT.f32] [--only-dump]
//!
//! Times the first N files (sorted by name; default 1000): `load_chw` one after another on this
//! thread (wall clock, and this thread's CPU time, which stays honest on a shared machine), and
//! a `BatchLoader` with 2 decoding threads (batch 32) drained by this thread. Best of 5 passes
//! after a warm-up pass that also fills the page cache. Prints `key=value` lines.
use std::path::{Path, PathBuf};
use std::time::Instant;

use captag::data::image::{load_chw, Normalization, Preprocess, ResizeMode};
use captag::data::loader::BatchLoader;

const REPEATS: usize = 5;
const P: Preprocess = Preprocess {
    size: 224,
    resize: ResizeMode::CenterCrop,
    norm: Normalization::ImageNet,
};

fn list_images(dir: &Path, n: usize) -> std::io::Result<Vec<PathBuf>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let ext = p
                .extension()
                .and_then(|e| e.to_str())
                .unwrap_or("")
                .to_ascii_lowercase();
            matches!(ext.as_str(), "jpg" | "jpeg" | "png")
        })
        .collect();
    // Python sorts names by code point; so does this for the ASCII names in question.
    paths.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    paths.truncate(n);
    Ok(paths)
}

/// CPU time this thread has run, from `/proc/thread-self/schedstat` (nanoseconds; Linux only).
/// Unlike wall time it does not grow when other processes share the cores.
fn thread_cpu_seconds() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: f64 = s.split_whitespace().next()?.parse().ok()?;
    Some(ns / 1e9)
}

/// Images per second (wall clock, and CPU time of this thread) of the fastest of `REPEATS` runs
/// of `f` over `n` images.
fn best_rate(n: usize, mut f: impl FnMut() -> usize) -> (f64, f64) {
    let (mut wall, mut cpu) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..REPEATS {
        let (t0, c0) = (Instant::now(), thread_cpu_seconds());
        let done = f();
        wall = wall.min(t0.elapsed().as_secs_f64());
        if let (Some(c0), Some(c1)) = (c0, thread_cpu_seconds()) {
            cpu = cpu.min(c1 - c0);
        }
        assert_eq!(done, n, "some images failed to load");
    }
    (n as f64 / wall, n as f64 / cpu)
}

fn sequential(paths: &[PathBuf]) -> usize {
    paths
        .iter()
        .filter(|p| {
            load_chw(p, &P)
                .map(|v| std::hint::black_box(v).len())
                .is_ok()
        })
        .count()
}

fn threaded(paths: &[PathBuf], threads: usize) -> usize {
    BatchLoader::new(paths.to_vec(), P, 32, threads)
        .map(|b| std::hint::black_box(b).len())
        .sum()
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` appends `--bench`; keep only our own arguments.
    let mut args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let mut dump = None;
    if let Some(i) = args.iter().position(|a| a == "--dump-first") {
        anyhow::ensure!(i + 1 < args.len(), "--dump-first needs a file name");
        dump = Some(PathBuf::from(args.remove(i + 1)));
        args.remove(i);
    }
    let only_dump = args.iter().any(|a| a == "--only-dump");
    args.retain(|a| a != "--only-dump");
    let Some(dir) = args.first() else {
        anyhow::bail!("usage: image_pipeline IMAGES_DIR [N] [--dump-first OUT.f32] [--only-dump]");
    };
    let n = match args.get(1) {
        Some(s) => s.parse()?,
        None => 1000,
    };
    let paths = list_images(Path::new(dir), n)?;
    anyhow::ensure!(!paths.is_empty(), "no images in {dir}");
    if let Some(out) = dump {
        let first = load_chw(&paths[0], &P)?;
        let bytes: Vec<u8> = first.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(out, bytes)?;
    }
    if only_dump {
        return Ok(());
    }
    sequential(&paths); // warm-up
    let n = paths.len();
    println!("images={n}");
    let (wall, cpu) = best_rate(n, || sequential(&paths));
    println!("captag_1thread_ips={wall:.1}");
    println!("captag_1thread_cpu_ips={cpu:.1}");
    let (wall, _) = best_rate(n, || threaded(&paths, 2));
    println!("captag_2thread_ips={wall:.1}");
    Ok(())
}

//! BLEU benchmark: captag's `corpus_bleu` against NLTK `corpus_bleu` (and pycocoevalcap
//! `Bleu(4)`) on the same 5,000 × 5 Flickr8k token lists, timed on the same machine.
//! `bench/bleu_reference.py` builds the corpus, times the Python side and writes
//! `bench/out/bleu_corpus.json`; this reads it, times captag (best of several runs), checks the
//! scores agree to 1e-12 and prints the speed ratios. Procedure and numbers: bench/README.md.
//!
//!     cargo bench --bench bleu [-- PATH] [--runs N]
//!
//! Both sides report wall-clock and thread-CPU time (best of their runs). On a shared machine
//! the CPU-time ratio is the steadier one: it leaves out time spent waiting for a core.
use std::time::Instant;

use anyhow::{bail, Context};
use captag::eval::bleu::{corpus_bleu, corpus_stats, BleuMode};
use serde::Deserialize;

#[derive(Deserialize)]
struct Corpus {
    hyps: Vec<Vec<String>>,
    refs: Vec<Vec<Vec<String>>>,
    runs: usize,
    nltk_bleu4_seconds: f64,
    nltk_bleu4_cpu_seconds: f64,
    nltk_bleu1to4_seconds: f64,
    coco_seconds: f64,
    coco_cpu_seconds: f64,
    nltk_bits: [u64; 4],
    coco_bits: [u64; 4],
    versions: serde_json::Value,
}

/// CPU time of the calling thread in seconds (Linux `schedstat`, nanoseconds), if available.
fn thread_cpu() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = s.split_whitespace().next()?.parse().ok()?;
    Some(ns as f64 * 1e-9)
}

/// Best wall-clock and best CPU seconds (NaN without schedstat) over `runs` timed calls, after
/// one untimed warm-up (page faults, allocator), and the last result.
fn best_of<T>(
    runs: usize,
    mut f: impl FnMut() -> anyhow::Result<T>,
) -> anyhow::Result<(f64, f64, T)> {
    let (mut wall, mut cpu) = (f64::INFINITY, f64::INFINITY);
    let mut out = f()?;
    for _ in 0..runs {
        let (t0, c0) = (Instant::now(), thread_cpu());
        out = f()?;
        wall = wall.min(t0.elapsed().as_secs_f64());
        cpu = cpu.min(match (c0, thread_cpu()) {
            (Some(a), Some(b)) => b - a,
            _ => f64::NAN,
        });
    }
    Ok((wall, cpu, out))
}

fn check(what: &str, got: [f64; 4], want_bits: [u64; 4]) -> anyhow::Result<()> {
    let want = want_bits.map(f64::from_bits);
    let max_diff = (0..4).map(|k| (got[k] - want[k]).abs()).fold(0.0, f64::max);
    let identical = (0..4).filter(|&k| got[k].to_bits() == want_bits[k]).count();
    println!(
        "{what:5} BLEU-1..4 {:.6} {:.6} {:.6} {:.6}  max |captag - reference| = {max_diff:.1e} ({identical}/4 bit-identical)",
        got[0], got[1], got[2], got[3]
    );
    if max_diff > 1e-12 {
        bail!("{what}: scores differ from the reference by {max_diff:e}");
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; everything else is ours.
    let mut path = "bench/out/bleu_corpus.json".to_string();
    let mut runs = 50;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--bench" => {}
            "--runs" => runs = args.next().context("--runs needs a value")?.parse()?,
            _ if a.starts_with("--") => bail!("unknown flag {a}"),
            _ => path = a,
        }
    }
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("{path}: run bench/bleu_reference.py first (bench/README.md)"))?;
    let c: Corpus = serde_json::from_str(&text).with_context(|| format!("{path}: bad corpus"))?;
    let n_tok: usize = c.hyps.iter().map(Vec::len).sum::<usize>()
        + c.refs.iter().flatten().map(Vec::len).sum::<usize>();
    println!(
        "corpus {path}: {} hypotheses, {n_tok} tokens; reference {}",
        c.hyps.len(),
        c.versions
    );

    let (w_nltk, c_nltk, nltk) =
        best_of(runs, || Ok(corpus_bleu(&c.hyps, &c.refs, BleuMode::Nltk)?))?;
    let (w_coco, c_coco, coco) =
        best_of(runs, || Ok(corpus_bleu(&c.hyps, &c.refs, BleuMode::Coco)?))?;
    // One pass, both definitions: what `captag bleu` does.
    let (w_both, _, (both_nltk, both_coco)) = best_of(runs, || {
        let st = corpus_stats(&c.hyps, &c.refs)?;
        Ok((st.score(BleuMode::Nltk), st.score(BleuMode::Coco)))
    })?;
    check("nltk", nltk.bleu, c.nltk_bits)?;
    check("coco", coco.bleu, c.coco_bits)?;
    check("nltk", both_nltk.bleu, c.nltk_bits)?;
    check("coco", both_coco.bleu, c.coco_bits)?;

    let ms = |s: f64| s * 1e3;
    println!(
        "best of {runs} (captag, after one warm-up) / best of {} (Python); wall, CPU:",
        c.runs
    );
    println!(
        "  captag corpus_bleu(.., Nltk), BLEU-1..4     {:9.2} ms {:9.2} ms",
        ms(w_nltk),
        ms(c_nltk)
    );
    println!(
        "  captag corpus_bleu(.., Coco), BLEU-1..4     {:9.2} ms {:9.2} ms",
        ms(w_coco),
        ms(c_coco)
    );
    println!(
        "  captag corpus_stats + both scores           {:9.2} ms",
        ms(w_both)
    );
    println!(
        "  nltk corpus_bleu, BLEU-4 (default weights)  {:9.2} ms {:9.2} ms",
        ms(c.nltk_bleu4_seconds),
        ms(c.nltk_bleu4_cpu_seconds)
    );
    println!(
        "  nltk corpus_bleu, BLEU-1..4 (4 weights)     {:9.2} ms",
        ms(c.nltk_bleu1to4_seconds)
    );
    println!(
        "  pycocoevalcap Bleu(4).compute_score         {:9.2} ms {:9.2} ms",
        ms(c.coco_seconds),
        ms(c.coco_cpu_seconds)
    );
    println!(
        "speed-up vs nltk corpus_bleu (BLEU-4): {:.0}x wall, {:.0}x CPU",
        c.nltk_bleu4_seconds / w_nltk,
        c.nltk_bleu4_cpu_seconds / c_nltk
    );
    println!(
        "speed-up vs pycocoevalcap Bleu(4):     {:.0}x wall, {:.0}x CPU",
        c.coco_seconds / w_coco,
        c.coco_cpu_seconds / c_coco
    );
    Ok(())
}

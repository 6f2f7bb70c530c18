//! One function per subcommand: turn parsed arguments into validated library calls and print
//! the results. Progress and diagnostics go to stderr, results to stdout.
mod compare;
mod demo;
mod features;
mod guard;
mod llm;
mod model;
pub mod out;
mod restore;
mod serve;
mod shared;
mod tags;
mod translate;
mod vl;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use out::outln;
use tch::Device;

use crate::cli::{
    BleuModeArg, Cli, Command, DataArgs, DataCommand, FormatArg, LayoutArg, SplitArg, VocabCommand,
};
use crate::data::{Format, LoadOptions, Split};
use crate::eval::bleu::BleuMode;
use crate::text::tokenize;
use crate::text::vocab::Vocab;

/// Global flags every command sees.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub device: Device,
    pub seed: u64,
    pub quiet: bool,
    pub verbose: bool,
}

/// Cores not running another process right now: the machine's cores minus the runnable
/// processes other than this one (`/proc/loadavg`'s fourth field), at least 1.
fn free_cores() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let running = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| {
            let field = s.split_whitespace().nth(3)?.split('/').next()?.to_string();
            field.parse::<usize>().ok()
        })
        .unwrap_or(1);
    cores.saturating_sub(running.saturating_sub(1)).max(1)
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    let ctx = Ctx {
        device: parse_device(&cli.device)?,
        seed: cli.seed,
        quiet: cli.quiet,
        verbose: cli.verbose,
    };
    if cli.max_megapixels == 0 {
        bail!("--max-megapixels must be ≥ 1");
    }
    crate::data::image::set_max_pixels(cli.max_megapixels.saturating_mul(1_000_000));
    tch::manual_seed(cli.seed as i64);
    let threads = match cli.threads {
        Some(0) => anyhow::bail!("--threads must be ≥ 1"),
        Some(n) => n,
        None => free_cores(),
    };
    tch::set_num_threads(threads as i32);
    if ctx.verbose {
        crate::fsio::errln!(
            "using {threads} CPU thread(s){}",
            if cli.threads.is_none() {
                " (cores not busy at start; --threads overrides)"
            } else {
                ""
            }
        );
    }
    guard::check(&cli.command)?;
    match cli.command {
        Command::Synth(a) => synth(&ctx, &a),
        Command::Data(DataCommand::Stats {
            dir,
            data,
            verify,
            json,
        }) => stats(&ctx, &dir, &data, verify, json),
        Command::Vocab(VocabCommand::Build {
            dir,
            out,
            min_count,
            split,
            data,
        }) => vocab_build(&ctx, &dir, &out, min_count, split, &data),
        Command::Bleu(a) => bleu(&ctx, &a),
        Command::Features(a) => features::features(&ctx, &a),
        Command::Train(a) => model::train(&ctx, &a),
        Command::Eval(a) => model::eval(&ctx, &a),
        Command::Caption(a) => model::caption(&ctx, &a),
        Command::Tags(c) => tags::run(&ctx, &c),
        Command::Emoji(c) => tags::run_emoji(&ctx, &c),
        Command::Serve(a) => serve::serve(&ctx, &a),
        Command::Ratings(c) => serve::ratings(&ctx, &c),
        Command::Demo(a) => demo::demo(&ctx, &a),
        Command::Compare(a) => compare::compare(&ctx, &a),
        Command::Plot(a) => compare::plot(&a),
        Command::Damage(a) => restore::damage(&ctx, &a),
        Command::Restore(a) => restore::restore(&ctx, &a),
        Command::Translate(a) => translate::translate(&ctx, &a),
        Command::Llm(c) => llm::run(&ctx, &c),
    }
}

pub fn parse_device(s: &str) -> anyhow::Result<Device> {
    let cuda = |i: usize| -> anyhow::Result<Device> {
        if !tch::Cuda::is_available() {
            bail!("--device {s}: no CUDA device is available (use --device cpu or auto)");
        }
        if i >= tch::Cuda::device_count() as usize {
            bail!(
                "--device {s}: only {} CUDA device(s)",
                tch::Cuda::device_count()
            );
        }
        Ok(Device::Cuda(i))
    };
    match s {
        "auto" => Ok(Device::cuda_if_available()),
        "cpu" => Ok(Device::Cpu),
        "cuda" => cuda(0),
        _ => match s.strip_prefix("cuda:").and_then(|i| i.parse().ok()) {
            Some(i) => cuda(i),
            None => bail!("--device {s}: expected auto, cpu, cuda or cuda:N"),
        },
    }
}

impl From<SplitArg> for Split {
    fn from(s: SplitArg) -> Split {
        match s {
            SplitArg::Train => Split::Train,
            SplitArg::Dev => Split::Dev,
            SplitArg::Test => Split::Test,
        }
    }
}

impl From<BleuModeArg> for BleuMode {
    fn from(m: BleuModeArg) -> BleuMode {
        match m {
            BleuModeArg::Coco => BleuMode::Coco,
            BleuModeArg::Nltk => BleuMode::Nltk,
        }
    }
}

pub fn load_options(ctx: &Ctx, a: &DataArgs) -> LoadOptions {
    LoadOptions {
        format: a.format.map(|f| match f {
            FormatArg::Flickr8k => Format::Flickr8kKaggle,
            FormatArg::Flickr8kUiuc => Format::Flickr8kUiuc,
            FormatArg::Karpathy => Format::Karpathy,
            FormatArg::Instagram => Format::Instagram,
        }),
        ratios: a.ratios,
        seed: ctx.seed,
        ..LoadOptions::default()
    }
}

/// Load a dataset and say on one line what was skipped (every item with `-v`).
pub fn load_dataset(
    ctx: &Ctx,
    dir: &Path,
    opts: &LoadOptions,
) -> anyhow::Result<crate::data::Dataset> {
    let ds = crate::data::load(dir, opts)?;
    ds.report(dir, ctx.quiet, ctx.verbose);
    Ok(ds)
}

fn synth(ctx: &Ctx, a: &crate::cli::SynthArgs) -> anyhow::Result<()> {
    use crate::data::synth::{generate, SynthConfig, SynthLayout};
    let cfg = SynthConfig {
        count: a.count,
        size: a.size,
        seed: ctx.seed,
        layout: match a.layout {
            LayoutArg::Flickr8k => SynthLayout::Flickr8k,
            LayoutArg::Instagram => SynthLayout::Instagram,
        },
        noise: !a.no_noise,
    };
    let s = generate(&a.out, &cfg)?;
    outln!(
        "wrote {} images and {} captions to {}",
        s.images,
        s.captions,
        a.out.display()
    )?;
    Ok(())
}

fn stats(ctx: &Ctx, dir: &Path, data: &DataArgs, verify: bool, json: bool) -> anyhow::Result<()> {
    let mut opts = load_options(ctx, data);
    opts.keep_missing = true;
    opts.verify_images = verify;
    let ds = load_dataset(ctx, dir, &opts)?;
    let st = crate::data::stats::compute(&ds);
    if json {
        outln!("{}", serde_json::to_string_pretty(&st)?)?;
    } else {
        outln!("{st}")?;
    }
    Ok(())
}

fn vocab_build(
    ctx: &Ctx,
    dir: &Path,
    out: &Path,
    min_count: usize,
    split: SplitArg,
    data: &DataArgs,
) -> anyhow::Result<()> {
    let mut opts = load_options(ctx, data);
    opts.keep_missing = true;
    let ds = load_dataset(ctx, dir, &opts)?;
    let split: Split = split.into();
    let tokens: Vec<Vec<String>> = ds
        .samples
        .iter()
        .filter(|s| s.split == split)
        .flat_map(|s| s.captions.iter().map(|c| tokenize(c)))
        .collect();
    if tokens.is_empty() {
        bail!("{}: no captions in the {split} split", dir.display());
    }
    let vocab = Vocab::build(&tokens, min_count);
    vocab
        .save(out)
        .with_context(|| format!("writing {}", out.display()))?;
    outln!(
        "{} words (min count {min_count}, {} captions of the {split} split) written to {}",
        vocab.len(),
        tokens.len(),
        out.display()
    )?;
    Ok(())
}

fn bleu(ctx: &Ctx, a: &crate::cli::BleuArgs) -> anyhow::Result<()> {
    use crate::eval::bleu_io;
    let preds = bleu_io::read_predictions(&a.predictions)?;
    // References: a JSON object, or a dataset directory's split (ordered by image id, which is
    // also the order plain-text predictions are paired in).
    let refs: std::collections::BTreeMap<String, Vec<String>> =
        if a.references.is_file() && a.references.extension().is_some_and(|e| e == "json") {
            bleu_io::read_references_json(&a.references)?
        } else {
            let mut opts = load_options(ctx, &a.data);
            opts.keep_missing = true;
            let ds = load_dataset(ctx, &a.references, &opts)?;
            let split: Split = a.split.into();
            ds.samples
                .iter()
                .filter(|s| s.split == split)
                .map(|s| (s.id.clone(), s.captions.clone()))
                .collect()
        };
    let order: Vec<String> = refs.keys().cloned().collect();
    let paired = bleu_io::pair_predictions(preds, &refs, Some(&order))?;
    let (hyps, refs) = paired.tokenize(tokenize);
    let mode: BleuMode = a.mode.into();
    use crate::cli::MetricArg;
    let want = |m| a.metrics.contains(&m);
    let bleu = want(MetricArg::Bleu)
        .then(|| crate::eval::bleu::corpus_bleu(&hyps, &refs, mode))
        .transpose()?;
    let cider = want(MetricArg::Cider)
        .then(|| crate::eval::cider::cider_d(&hyps, &refs))
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let rouge = want(MetricArg::Rouge)
        .then(|| crate::eval::rouge::rouge_l(&hyps, &refs))
        .transpose()
        .map_err(anyhow::Error::msg)?;
    if a.json {
        // `captag bleu --json` alone keeps its original shape (the BLEU object).
        let out = match (&bleu, &cider, &rouge) {
            (Some(b), None, None) => serde_json::to_value(b)?,
            _ => serde_json::json!({
                "bleu": bleu, "cider": cider.as_ref().map(|c| c.score),
                "rouge_l": rouge.as_ref().map(|r| r.score),
            }),
        };
        outln!("{}", serde_json::to_string_pretty(&out)?)?;
    } else {
        if let Some(s) = &bleu {
            outln!(
                "{}",
                bleu_table(&[(format!("{} hypotheses", hyps.len()), s.bleu)])
            )?;
        }
        if let Some(c) = &cider {
            outln!("CIDEr-D  {:.2}", 100.0 * c.score)?;
        }
        if let Some(r) = &rouge {
            outln!("ROUGE-L  {:.2}", 100.0 * r.score)?;
        }
    }
    Ok(())
}

/// A small aligned BLEU table (scores ×100).
pub fn bleu_table(rows: &[(String, [f64; 4])]) -> String {
    let w = rows.iter().map(|r| r.0.len()).max().unwrap_or(0).max(6);
    let mut s = format!("{:<w$}  BLEU-1  BLEU-2  BLEU-3  BLEU-4\n", "");
    for (name, b) in rows {
        s += &format!(
            "{name:<w$}  {:>6.2}  {:>6.2}  {:>6.2}  {:>6.2}\n",
            100.0 * b[0],
            100.0 * b[1],
            100.0 * b[2],
            100.0 * b[3]
        );
    }
    s.trim_end().to_string()
}

/// Image files under the inputs (folders: their .jpg/.jpeg/.png files, sorted by name).
pub fn collect_images(inputs: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = vec![];
    for p in inputs {
        if p.is_dir() {
            let mut v: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("reading {}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| {
                    f.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                        matches!(e.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png")
                    })
                })
                .collect();
            v.sort();
            out.extend(v);
        } else {
            out.push(p.clone());
        }
    }
    if out.is_empty() {
        bail!(
            "no images found in {}",
            inputs
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(out)
}

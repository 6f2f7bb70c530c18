//! `compare` and `plot`: turn a comparison spec into trained runs (each trained run is a
//! `captag train` command line, resumed if it stopped early and skipped if finished), then hand
//! the evaluated runs to `experiments::compare`.
use super::out::outln;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Parser;

use super::{load_options, Ctx};
use crate::cli::{Cli, Command, CompareArgs, PlotArgs};
use crate::data::feature_file::FeatureFile;
use crate::eval::runner::EvalSpec;
use crate::experiments::compare::{self, RunSpec, Spec};
use crate::experiments::plot;
use crate::run::{self, TrainState};

/// Whether `dir` holds a run that trained all the epochs it was asked for (or stopped early).
fn finished(dir: &Path) -> anyhow::Result<Option<bool>> {
    if !dir.join(run::CONFIG).is_file() {
        return Ok(None);
    }
    let Ok(state) = run::read_json::<TrainState>(&dir.join(run::STATE)) else {
        return Ok(Some(false));
    };
    let epochs = match run::vl::is_vl_run(dir) {
        true => run::vl::read(dir)?.train.epochs,
        false => run::read_config(&dir.join(run::CONFIG))?.train.epochs,
    };
    Ok(Some(state.stopped_early || state.epoch >= epochs))
}

fn train_run(
    ctx: &Ctx,
    spec: &Spec,
    r: &RunSpec,
    dir: &Path,
    args: &[String],
    resume: bool,
) -> anyhow::Result<()> {
    let mut argv: Vec<String> = vec!["captag".into(), "train".into()];
    argv.extend(["--data".into(), spec.data.display().to_string()]);
    argv.extend(["--out".into(), dir.display().to_string()]);
    if let Some(f) = spec.features_of(r) {
        argv.extend(["--features".into(), f.display().to_string()]);
    }
    argv.extend(spec.train.iter().cloned());
    argv.extend(args.iter().cloned());
    if resume {
        argv.push("--resume".into());
    }
    let cli = Cli::try_parse_from(&argv)
        .map_err(|e| anyhow::anyhow!("{}", e.to_string().lines().next().unwrap_or("bad flags")))
        .with_context(|| format!("training flags of {}", dir.display()))?;
    let Command::Train(a) = cli.command else {
        bail!("not a train command line");
    };
    super::model::run_train(ctx, &a)?;
    Ok(())
}

pub fn compare(ctx: &Ctx, a: &CompareArgs) -> anyhow::Result<()> {
    let spec = Spec::load(&a.spec)?;
    let decoding = super::shared::decoding(&a.decode, ctx.seed)?;
    let baseline = match &a.baseline {
        Some(b) => spec
            .runs
            .iter()
            .position(|r| &r.name == b)
            .with_context(|| format!("--baseline {b}: no run of that name in the spec"))?,
        None => 0,
    };
    // 1. Train what is missing (an ensemble is its members).
    for r in spec.runs.iter().filter(|r| r.ensemble.is_none()) {
        let dir = spec.run_dir(r, &a.out);
        match (finished(&dir)?, &r.args) {
            (Some(true), _) => {
                if !ctx.quiet {
                    crate::fsio::errln!("{}: trained ({})", r.name, dir.display());
                }
            }
            (None, None) => bail!(
                "run {}: {} holds no run and the spec gives no args",
                r.name,
                dir.display()
            ),
            (state, Some(args)) => {
                let resume = state.is_some();
                if !ctx.quiet {
                    crate::fsio::errln!(
                        "{}: {} {}",
                        r.name,
                        if resume { "resuming" } else { "training" },
                        dir.display()
                    );
                }
                train_run(ctx, &spec, r, &dir, args, resume)?;
            }
            (Some(false), None) => {
                if !ctx.quiet {
                    crate::fsio::errln!(
                        "{}: unfinished run without args, evaluated as it is",
                        r.name
                    );
                }
            }
        }
    }
    // 2. Evaluate every run identically (each frozen-encoder run from its feature cache; runs
    // sharing one cache share one open file).
    let mut caches: Vec<(PathBuf, FeatureFile)> = vec![];
    let opts = load_options(ctx, &a.dataset);
    let es = EvalSpec {
        split: a.split.into(),
        decoding,
        mode: crate::eval::bleu::BleuMode::Coco,
        tag_k: 5,
    };
    let mut evaluated = vec![];
    for r in &spec.runs {
        let dir: PathBuf = spec.run_dir(r, &a.out);
        if super::vl::is_vl(&dir) {
            // A BLIP/GIT run or folder: its own tokenizer, the same scoring on words.
            let m = super::vl::open(&dir, ctx.device, false)?;
            let report =
                crate::eval::vl::evaluate(&m, &spec.data, &opts, es.split, &es.decoding, es.mode)?;
            let how = match run::vl::is_vl_run(&dir) {
                true => "fine-tuned",
                false => "folder as given",
            };
            let arch = format!("{} ({how})", m.config.name());
            say_scores(ctx, &r.name, &report);
            evaluated.push((r.name.clone(), vec![dir], arch, report));
            continue;
        }
        // An ensemble: its members' directories and caches, the first leading.
        let members: Vec<&RunSpec> = match &r.ensemble {
            Some(names) => spec.members(names).collect(),
            None => vec![r],
        };
        let dirs: Vec<PathBuf> = members.iter().map(|m| spec.run_dir(m, &a.out)).collect();
        let mut loaded = crate::infer::load_checkpoint(&dirs[0], ctx.device, false)?
            .with_partners(&dirs[1..], ctx.device, false)?;
        loaded.allow_unk = a.decode.allow_unk;
        let runs = std::iter::once(&loaded.run).chain(loaded.partners.iter().map(|p| &p.run));
        let mut used = vec![];
        for (m, run) in members.iter().zip(runs) {
            if let (Some(f), true) = (spec.features_of(m), run.model.frozen_encoder) {
                used.push(open_cache(&mut caches, f)?);
            }
        }
        let files: Vec<&FeatureFile> = used.iter().map(|&i| &caches[i].1).collect();
        let report = crate::eval::runner::evaluate(&loaded, &spec.data, &opts, &es, &files)?;
        let arch = architecture(&loaded);
        say_scores(ctx, &r.name, &report);
        evaluated.push((r.name.clone(), dirs, arch, report));
    }
    let name = decoding.name();
    let split: crate::data::Split = a.split.into();
    let cmp = compare::build(
        &evaluated,
        baseline,
        a.resamples,
        ctx.seed,
        split.as_str(),
        &name,
    )?;
    cmp.write(&a.out)?;
    outln!("{}", cmp.markdown())?;
    outln!(
        "wrote {}/compare.{{md,json,csv}}, curves.{{svg,png}}, metrics.{{svg,png}}",
        a.out.display()
    )?;
    Ok(())
}

fn say_scores(ctx: &Ctx, name: &str, report: &crate::eval::runner::EvalReport) {
    if !ctx.quiet {
        crate::fsio::errln!(
            "{name}: BLEU-4 {:.2}  CIDEr-D {:.2}",
            100.0 * report.bleu.bleu[3],
            100.0 * report.cider
        );
    }
}

pub fn plot(a: &PlotArgs) -> anyhow::Result<()> {
    let curves: Vec<plot::Curves> = a
        .runs
        .iter()
        .map(|d| {
            let name = d.file_name().map_or(d.display().to_string(), |n| {
                n.to_string_lossy().into_owned()
            });
            plot::read_curves(&name, &d.join(run::METRICS))
        })
        .collect::<crate::Result<_>>()?;
    if let Some(parent) = a.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    plot::curves_chart(&curves).save(&a.out)?;
    outln!("wrote {}.svg and {}.png", a.out.display(), a.out.display())?;
    Ok(())
}

/// The index in `caches` of the open cache `f` (opened on first use: runs sharing one cache
/// share one open file).
fn open_cache(caches: &mut Vec<(PathBuf, FeatureFile)>, f: &Path) -> anyhow::Result<usize> {
    if let Some(i) = caches.iter().position(|(p, _)| p == f) {
        return Ok(i);
    }
    caches.push((f.to_path_buf(), FeatureFile::open(f)?));
    Ok(caches.len() - 1)
}

/// "encoder + decoder", or for an ensemble its members' joined by ", ".
fn architecture(loaded: &crate::infer::Loaded) -> String {
    let one =
        |m: &crate::config::ModelConfig| format!("{} + {}", m.encoder.as_str(), m.decoder.name());
    let all: Vec<String> = std::iter::once(&loaded.run.model)
        .chain(loaded.partners.iter().map(|p| &p.run.model))
        .map(one)
        .collect();
    match all.len() {
        1 => all.join(""),
        _ => format!("ensemble: {}", all.join(", ")),
    }
}

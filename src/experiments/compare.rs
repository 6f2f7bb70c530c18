//! `captag compare`: every run of a comparison evaluated on one split with identical decoding,
//! written as `compare.md` (best value per column in bold), `compare.json` and `compare.csv`,
//! with paired bootstrap 95% intervals of BLEU-4 and CIDEr-D against a baseline run, training
//! curves (`curves.svg/png`) and a bar chart with the intervals (`metrics.svg/png`).
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::bootstrap::{self, Interval};
use super::plot;
use crate::eval::runner::EvalReport;
use crate::{Error, Result};

/// The comparison file (`--spec`, JSON): shared training flags, the data, and the runs.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// Dataset directory (training and evaluation).
    pub data: PathBuf,
    /// Feature cache shared by the frozen-encoder runs (training and evaluation); a run's own
    /// `features` replaces it for that run (runs on different encoders each need their own).
    #[serde(default)]
    pub features: Option<PathBuf>,
    /// `captag train` flags every trained run gets (e.g. `["--encoder", "squeezenet1_1"]`).
    #[serde(default)]
    pub train: Vec<String>,
    pub runs: Vec<RunSpec>,
}

/// One run: an existing run directory (`dir`), or flags to train it with (`args`, trained into
/// `OUT/runs/NAME` unless `dir` is given).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSpec {
    pub name: String,
    #[serde(default)]
    pub dir: Option<PathBuf>,
    #[serde(default)]
    pub args: Option<Vec<String>>,
    /// This run's feature cache, in place of the spec's `features` (e.g. another encoder's).
    #[serde(default)]
    pub features: Option<PathBuf>,
    /// An ensemble of other runs of the spec, by name (the first leads): evaluated, never
    /// trained; each member reads its own feature cache (docs/training.md, "Ensembles").
    #[serde(default)]
    pub ensemble: Option<Vec<String>>,
}

impl Spec {
    pub fn load(path: &Path) -> Result<Spec> {
        let text = crate::input::read_text(path, crate::input::TEXT, "a comparison spec")?;
        let spec: Spec = serde_json::from_str(&text).map_err(|e| {
            Error::invalid(format!("{}: {}", path.display(), crate::input::one_line(e)))
        })?;
        if spec.runs.is_empty() {
            return Err(Error::invalid(format!("{}: no runs", path.display())));
        }
        let mut names = std::collections::HashSet::new();
        // Two runs in one directory are one run: with different `args` the second would
        // silently be the first's model under another name.
        let mut dirs: std::collections::HashMap<PathBuf, &RunSpec> = Default::default();
        for r in &spec.runs {
            if let Some(d) = &r.dir {
                let key = d
                    .canonicalize()
                    .unwrap_or_else(|_| d.components().collect::<PathBuf>());
                if let Some(first) = dirs.get(&key) {
                    if first.args != r.args {
                        return Err(Error::invalid(format!(
                            "{}: runs {:?} and {:?} share the directory {} with different \
                             `args`; give each its own `dir`",
                            path.display(),
                            first.name,
                            r.name,
                            d.display()
                        )));
                    }
                }
                dirs.insert(key, r);
            }
        }
        for r in &spec.runs {
            let ok_name = !r.name.is_empty()
                && r.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                && !r.name.starts_with('.');
            if !ok_name {
                return Err(Error::invalid(format!(
                    "{}: run name {:?} must be letters, digits, '-', '_' or '.'",
                    path.display(),
                    r.name
                )));
            }
            if !names.insert(&r.name) {
                return Err(Error::invalid(format!(
                    "{}: run name {:?} appears twice",
                    path.display(),
                    r.name
                )));
            }
            if r.dir.is_none() && r.args.is_none() && r.ensemble.is_none() {
                return Err(Error::invalid(format!(
                    "{}: run {:?} needs `dir` (an existing run), `args` (flags to train it) or \
                     `ensemble` (runs of the spec)",
                    path.display(),
                    r.name
                )));
            }
            if let Some(members) = &r.ensemble {
                spec.check_ensemble(path, r, members)?;
            }
        }
        Ok(spec)
    }

    /// An ensemble entry names at least two runs of the spec, none of them an ensemble, and
    /// has no `dir`, `args` or `features` of its own (its members have theirs).
    fn check_ensemble(&self, path: &Path, r: &RunSpec, members: &[String]) -> Result<()> {
        let bad = |why: String| {
            Error::invalid(format!("{}: ensemble {:?}: {why}", path.display(), r.name))
        };
        if r.dir.is_some() || r.args.is_some() || r.features.is_some() {
            return Err(bad(
                "give `dir`, `args` and `features` to its member runs, not to the ensemble".into(),
            ));
        }
        if members.len() < 2 {
            return Err(bad("an ensemble needs at least two runs".into()));
        }
        for m in members {
            match self.runs.iter().find(|x| &x.name == m) {
                None => return Err(bad(format!("no run named {m:?} in the spec"))),
                Some(x) if x.ensemble.is_some() => {
                    return Err(bad(format!("{m:?} is itself an ensemble")))
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// The member runs of an ensemble entry (checked by [`Spec::load`]).
    pub fn members<'a>(&'a self, names: &'a [String]) -> impl Iterator<Item = &'a RunSpec> {
        names
            .iter()
            .filter_map(|n| self.runs.iter().find(|x| &x.name == n))
    }

    /// The feature cache run `r` trains and is evaluated from: its own, else the spec's.
    pub fn features_of<'a>(&'a self, r: &'a RunSpec) -> Option<&'a Path> {
        r.features.as_deref().or(self.features.as_deref())
    }

    /// Where run `r` lives.
    pub fn run_dir(&self, r: &RunSpec, out: &Path) -> PathBuf {
        r.dir
            .clone()
            .unwrap_or_else(|| out.join("runs").join(&r.name))
    }
}

/// One row of the table.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub name: String,
    pub dir: String,
    pub architecture: String,
    pub parameters: usize,
    pub epochs: usize,
    pub train_seconds: f64,
    pub decode_ms_per_image: f64,
    pub bleu: [f64; 4],
    pub cider: f64,
    pub rouge_l: f64,
    pub distinct_captions: usize,
    pub images: usize,
    pub tag_p5: Option<f64>,
    pub tag_map: Option<f64>,
    /// Shares of fully true captions and of true claims (synthetic data only).
    pub true_captions: Option<f64>,
    pub true_claims: Option<f64>,
    /// Against the baseline run (None for the baseline itself).
    pub bleu4_vs_baseline: Option<Interval>,
    pub cider_vs_baseline: Option<Interval>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    pub split: String,
    pub decoding: String,
    pub baseline: String,
    pub resamples: usize,
    pub rows: Vec<Row>,
}

/// The `(epochs, seconds)` of training recorded in a run's `metrics.jsonl`.
fn training_time(dir: &Path) -> (usize, f64) {
    let path = dir.join(crate::run::METRICS);
    let Ok(text) = crate::input::read_text(&path, crate::input::TEXT, "a metrics file") else {
        return (0, 0.0);
    };
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .fold((0, 0.0), |(n, s), v| {
            (n + 1, s + v["seconds"].as_f64().unwrap_or(0.0))
        })
}

/// Assemble the table from evaluated runs `(name, directories, architecture, report)`: one
/// directory for a run, its members' for an ensemble.
pub fn build(
    runs: &[(String, Vec<PathBuf>, String, EvalReport)],
    baseline: usize,
    resamples: usize,
    seed: u64,
    split: &str,
    decoding: &str,
) -> Result<Comparison> {
    let base = &runs[baseline].3;
    let mut rows = vec![];
    for (i, (name, dirs, arch, r)) in runs.iter().enumerate() {
        if r.per_image.ids != base.per_image.ids {
            return Err(Error::invalid(format!(
                "run {name} was scored on other images than the baseline (unreadable images differ)"
            )));
        }
        // An ensemble's training is its members'.
        let (epochs, train_seconds) = dirs
            .iter()
            .map(|d| training_time(d))
            .fold((0, 0.0), |(n, t), (m, u)| (n + m, t + u));
        let tags = r.hashtags.as_ref().and_then(|t| t.rows.first());
        let vs = i != baseline;
        rows.push(Row {
            name: name.clone(),
            dir: dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(" + "),
            architecture: arch.clone(),
            parameters: r.parameters,
            epochs,
            train_seconds,
            decode_ms_per_image: 1000.0 * r.caption_seconds / r.images.max(1) as f64,
            bleu: r.bleu.bleu,
            cider: r.cider,
            rouge_l: r.rouge_l,
            distinct_captions: r.distinct_captions,
            images: r.images,
            tag_p5: tags.map(|t| t.1.precision),
            tag_map: tags.map(|t| t.1.map),
            true_captions: r.grounded.map(|g| g.caption_rate()),
            true_claims: r.grounded.map(|g| g.claim_rate()),
            bleu4_vs_baseline: vs.then(|| {
                bootstrap::bleu4(&r.per_image.bleu, &base.per_image.bleu, resamples, seed)
            }),
            cider_vs_baseline: vs.then(|| {
                bootstrap::mean(&r.per_image.cider, &base.per_image.cider, resamples, seed)
            }),
        });
    }
    Ok(Comparison {
        split: split.to_string(),
        decoding: decoding.to_string(),
        baseline: runs[baseline].0.clone(),
        resamples,
        rows,
    })
}

fn interval(i: &Option<Interval>) -> String {
    match i {
        Some(i) => format!(
            "{:+.2} [{:+.2}, {:+.2}]",
            100.0 * i.diff,
            100.0 * i.lo,
            100.0 * i.hi
        ),
        None => "baseline".into(),
    }
}

impl Comparison {
    /// Markdown table, scores ×100, the best value of each score column in bold.
    pub fn markdown(&self) -> String {
        type Column = (&'static str, Box<dyn Fn(&Row) -> Option<f64>>);
        let mut cols: Vec<Column> = vec![
            ("BLEU-1", Box::new(|r: &Row| Some(r.bleu[0]))),
            ("BLEU-2", Box::new(|r: &Row| Some(r.bleu[1]))),
            ("BLEU-3", Box::new(|r: &Row| Some(r.bleu[2]))),
            ("BLEU-4", Box::new(|r: &Row| Some(r.bleu[3]))),
            ("CIDEr-D", Box::new(|r: &Row| Some(r.cider))),
            ("ROUGE-L", Box::new(|r: &Row| Some(r.rouge_l))),
            ("tags P@5", Box::new(|r: &Row| r.tag_p5)),
            ("tags mAP", Box::new(|r: &Row| r.tag_map)),
            ("true captions", Box::new(|r: &Row| r.true_captions)),
            ("true claims", Box::new(|r: &Row| r.true_claims)),
        ];
        // Columns no run has (tags without a tag model, truth on real data) are left out.
        cols.retain(|(_, f)| self.rows.iter().any(|r| f(r).is_some()));
        let mut s = format!(
            "{} split, {} decoding, scores ×100; intervals: paired bootstrap 95% ({} resamples) of the difference to `{}`.\n\n",
            self.split, self.decoding, self.resamples, self.baseline
        );
        s += "| run | architecture | parameters | epochs | training | ms/image |";
        for (c, _) in &cols {
            s += &format!(" {c} |");
        }
        s += " distinct | ΔBLEU-4 | ΔCIDEr-D |\n|---|---|---:|---:|---:|---:|";
        s += &"---:|".repeat(cols.len());
        s += "---:|---|---|\n";
        for r in &self.rows {
            s += &format!(
                "| {} | {} | {:.2}M | {} | {:.0} s | {:.2} |",
                r.name,
                r.architecture,
                r.parameters as f64 / 1e6,
                r.epochs,
                r.train_seconds,
                r.decode_ms_per_image
            );
            for (_, f) in &cols {
                let best = self.rows.iter().filter_map(f).fold(f64::MIN, f64::max);
                s += &match f(r) {
                    Some(v) if v == best && self.rows.len() > 1 => {
                        format!(" **{:.2}** |", 100.0 * v)
                    }
                    Some(v) => format!(" {:.2} |", 100.0 * v),
                    None => " – |".into(),
                };
            }
            s += &format!(
                " {}/{} | {} | {} |\n",
                r.distinct_captions,
                r.images,
                interval(&r.bleu4_vs_baseline),
                interval(&r.cider_vs_baseline)
            );
        }
        s
    }

    pub fn csv(&self) -> String {
        let mut s = String::from(
            "run,architecture,parameters,epochs,train_seconds,decode_ms_per_image,bleu1,bleu2,bleu3,bleu4,cider,rouge_l,tag_p5,tag_map,true_captions,true_claims,distinct_captions,images,bleu4_diff,bleu4_lo,bleu4_hi,cider_diff,cider_lo,cider_hi\n",
        );
        let opt = |v: Option<f64>| v.map(|x| format!("{x}")).unwrap_or_default();
        for r in &self.rows {
            let iv = |i: &Option<Interval>| match i {
                Some(i) => format!("{},{},{}", i.diff, i.lo, i.hi),
                None => ",,".into(),
            };
            s += &format!(
                "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
                r.name,
                r.architecture,
                r.parameters,
                r.epochs,
                r.train_seconds,
                r.decode_ms_per_image,
                r.bleu[0],
                r.bleu[1],
                r.bleu[2],
                r.bleu[3],
                r.cider,
                r.rouge_l,
                opt(r.tag_p5),
                opt(r.tag_map),
                opt(r.true_captions),
                opt(r.true_claims),
                r.distinct_captions,
                r.images,
                iv(&r.bleu4_vs_baseline),
                iv(&r.cider_vs_baseline)
            );
        }
        s
    }

    /// `compare.{md,json,csv}`, `curves.{svg,png}`, `metrics.{svg,png}` in `out`.
    pub fn write(&self, out: &Path) -> Result<()> {
        std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
        let w = |name: &str, text: &str| {
            crate::fsio::write_atomic(&out.join(name), text.as_bytes(), true)
        };
        w("compare.md", &self.markdown())?;
        let json = serde_json::to_string_pretty(self).map_err(|e| Error::invalid(e.to_string()))?;
        w("compare.json", &json)?;
        w("compare.csv", &self.csv())?;
        // A row without training (a BLIP/GIT folder as downloaded) has no curve.
        let curves: Vec<plot::Curves> = self
            .rows
            .iter()
            .filter(|r| Path::new(&r.dir).join(crate::run::METRICS).is_file())
            .map(|r| plot::read_curves(&r.name, &Path::new(&r.dir).join(crate::run::METRICS)))
            .collect::<Result<_>>()?;
        plot::curves_chart(&curves).save(&out.join("curves"))?;
        let names: Vec<String> = self.rows.iter().map(|r| r.name.clone()).collect();
        let whisker =
            |v: f64, i: &Option<Interval>| i.map(|i| (v + i.lo - i.diff, v + i.hi - i.diff));
        let bars = vec![
            self.rows
                .iter()
                .map(|r| {
                    (
                        100.0 * r.bleu[3],
                        whisker(100.0 * r.bleu[3], &r.bleu4_vs_baseline.map(scale)),
                    )
                })
                .collect(),
            self.rows
                .iter()
                .map(|r| {
                    (
                        100.0 * r.cider,
                        whisker(100.0 * r.cider, &r.cider_vs_baseline.map(scale)),
                    )
                })
                .collect(),
        ];
        plot::bar_chart(&["BLEU-4", "CIDEr-D"], &names, &bars).save(&out.join("metrics"))
    }
}

fn scale(i: Interval) -> Interval {
    Interval {
        diff: 100.0 * i.diff,
        lo: 100.0 * i.lo,
        hi: 100.0 * i.hi,
    }
}

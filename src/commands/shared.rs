//! What captag's own commands (`model.rs`) and the BLIP/GIT ones (`vl.rs`) share: the
//! training and decoding flags turned into configs, and the plain caption line. Kept below both
//! so neither imports the other for it.
use std::path::Path;

use super::out::outln;
use super::Ctx;
use crate::cli::{DecodeArgs, ScheduleArg, TrainArgs};
use crate::config::{Batching, Distill, Schedule, TrainConfig};
use crate::infer::CaptionResult;
use crate::model::decoding::{cli_flag, DecodeRequest, Decoding};
use crate::run;
use crate::train as training;

/// The training settings `train` asks for; resuming without `--batching` or
/// `--captions-per-image` keeps the run's.
pub fn train_config(ctx: &Ctx, a: &TrainArgs) -> anyhow::Result<TrainConfig> {
    let (scst, init_from) = training::scst::settings(&a.scst)?;
    Ok(TrainConfig {
        epochs: a.epochs,
        batch_size: a.batch_size,
        // Resuming without --lr continues with the run's rate (a changed one is refused).
        lr: match (a.lr, a.resume) {
            (Some(lr), _) => lr,
            (None, true) => run::read_config(&a.out.join(run::CONFIG))
                .map(|c| c.train.lr)
                .unwrap_or(crate::config::defaults::LR),
            (None, false) if scst.is_some() => crate::config::defaults::SCST_LR,
            (None, false) => crate::config::defaults::LR,
        },
        grad_clip: a.grad_clip,
        schedule: match a.schedule {
            ScheduleArg::Constant => Schedule::Constant,
            ScheduleArg::Step => Schedule::step(),
            ScheduleArg::Plateau => Schedule::plateau(),
            ScheduleArg::Warmup => Schedule::Warmup { warmup: a.warmup },
            ScheduleArg::Cosine => Schedule::Cosine { warmup: a.warmup },
        },
        early_stop: a.early_stop,
        min_count: a.min_count,
        max_words: a.max_words,
        seed: ctx.seed,
        tag_min_agree: a.tag_min_agree,
        tag_min_count: a.tag_min_count,
        // Self-critical runs optimise CIDEr-D and are selected by it.
        select: if scst.is_some() {
            crate::config::Selection::Cider
        } else {
            a.select
        },
        scst,
        init_from,
        batching: match (a.batching, a.resume) {
            (Some(b), _) => b,
            // Resuming: the order the run was trained in (an older run's is `shuffle`).
            (None, true) => run::read_config(&a.out.join(run::CONFIG))
                .map(|c| c.train.batching)
                .unwrap_or(Batching::Buckets),
            (None, false) => Batching::Buckets,
        },
        // Resuming without the flag keeps the run's setting, as for --batching.
        captions_per_image: match (a.captions_per_image, a.resume) {
            (None, true) => run::read_config(&a.out.join(run::CONFIG))
                .ok()
                .and_then(|c| c.train.captions_per_image),
            (k, _) => k,
        },
        // Resuming without --encoder-lr continues with the run's, as --lr does.
        encoder_lr: match (a.fine_tune_encoder, a.encoder_lr, a.resume) {
            (false, _, _) => None,
            (true, Some(lr), _) => Some(lr),
            (true, None, true) => run::read_config(&a.out.join(run::CONFIG))
                .ok()
                .and_then(|c| c.train.encoder_lr)
                .or(Some(crate::config::defaults::ENCODER_LR)),
            (true, None, false) => Some(crate::config::defaults::ENCODER_LR),
        },
        precision: match (a.precision, a.resume) {
            (Some(p), _) => p,
            (None, true) => run::read_config(&a.out.join(run::CONFIG))
                .map(|c| c.train.precision)
                .unwrap_or_default(),
            (None, false) => Default::default(),
        },
        distill: match &a.distill.teacher {
            Some(dir) => Some(Distill {
                teacher: dir.display().to_string(),
                teacher_fingerprint: crate::train::distill::teacher_fingerprint(dir)?,
                method: a.distill.kd,
                temperature: a.distill.temperature,
                kd_alpha: a.distill.kd_alpha,
                beam: a.distill.kd_beam,
                teacher_only: a.distill.kd_teacher_only,
            }),
            None => None,
        },
    })
}

/// The decoding flags, checked by the rule the web API uses too ([`DecodeRequest`]).
pub fn decoding(d: &DecodeArgs, seed: u64) -> anyhow::Result<Decoding> {
    let request = DecodeRequest {
        beam: d.beam,
        length_alpha: d.length_alpha,
        max_len: d.max_len,
        top_p: d.top_p,
        temperature: d.temperature,
        samples: d.samples,
        seed,
    };
    Ok(request.validate(cli_flag)?)
}

/// `PATH<TAB>caption emoji #tags`, then `<TAB>moods: ...` when ranked.
pub fn print_plain(path: &Path, r: &CaptionResult) -> anyhow::Result<()> {
    let line: Vec<String> = std::iter::once(r.caption_text().to_string())
        .chain(r.emoji.iter().flatten().cloned())
        .chain(r.hashtags.iter().map(|t| format!("#{}", t.tag)))
        .filter(|w| !w.is_empty())
        .collect();
    let mood: String = r
        .moods
        .iter()
        .flatten()
        .map(|m| format!("{} ({:.3})", m.label, m.score))
        .collect::<Vec<_>>()
        .join(", ");
    if mood.is_empty() {
        outln!("{}\t{}", path.display(), line.join(" "))?;
    } else {
        outln!("{}\t{}\tmoods: {mood}", path.display(), line.join(" "))?;
    }
    Ok(())
}

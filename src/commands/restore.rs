//! `damage`, `restore train`, `restore eval` and `restore RUN IMAGE|DIR`.
use anyhow::{bail, Context};

use super::out::outln;
use super::{collect_images, load_dataset, load_options, Ctx};
use crate::cli::{DamageArgs, DamageFlags, RestoreArgs, RestoreCommand, RestoreEvalArgs};
use crate::cli::{RestoreApplyArgs, RestoreTrainArgs};
use crate::restore::apply::{self, EvalReport};
use crate::restore::captioning::{self, CaptionReport};
use crate::restore::damage::DamageConfig;
use crate::restore::train::{self as rtrain, RestoreJob, RestoreTrain};
use crate::restore::unet::NetConfig;

fn damage_config(f: &DamageFlags) -> DamageConfig {
    DamageConfig {
        min_ops: f.min_ops,
        max_ops: f.max_ops,
        ..DamageConfig::default()
    }
}

pub fn damage(ctx: &Ctx, a: &DamageArgs) -> anyhow::Result<()> {
    let cfg = damage_config(&a.damage);
    cfg.validate()?;
    let ds = load_dataset(ctx, &a.data, &load_options(ctx, &a.dataset))?;
    let bar = crate::train::progress(ctx.quiet, 0, "damage");
    let s = apply::write_damaged(&ds, &a.out, &cfg, ctx.seed, a.size, &bar)?;
    bar.finish_and_clear();
    for why in &s.skipped {
        if ctx.verbose {
            crate::fsio::errln!("  skipped {why}");
        }
    }
    outln!(
        "wrote {} damaged images with their masks to {} ({:.1}% of pixels damaged on average; \
         seed {}{}){}",
        s.images,
        a.out.display(),
        100.0 * s.damaged_share,
        ctx.seed,
        a.size.map(|s| format!(", {s} px")).unwrap_or_default(),
        if s.skipped.is_empty() {
            String::new()
        } else {
            format!(", {} unreadable skipped", s.skipped.len())
        }
    )?;
    Ok(())
}

pub fn restore(ctx: &Ctx, a: &RestoreArgs) -> anyhow::Result<()> {
    match &a.command {
        Some(RestoreCommand::Train(t)) => train(ctx, t),
        Some(RestoreCommand::Eval(e)) => eval(ctx, e),
        None => apply_files(ctx, &a.apply),
    }
}

fn train(ctx: &Ctx, a: &RestoreTrainArgs) -> anyhow::Result<()> {
    if let Some(w) = &a.encoder_weights {
        if !w.is_file() {
            bail!("--encoder-weights {}: no such file", w.display());
        }
    }
    let job = RestoreJob {
        data: a.data.clone(),
        load: load_options(ctx, &a.dataset),
        out: a.out.clone(),
        resume: a.resume,
        net: NetConfig {
            size: a.size,
            mask_channels: a.mask_channels,
            mask_depth: a.mask_depth,
            inpaint_channels: a.inpaint_channels,
            inpaint_depth: a.inpaint_depth,
        },
        damage: damage_config(&a.damage),
        train: RestoreTrain {
            epochs: a.epochs,
            batch_size: a.batch_size,
            lr: a.lr,
            seed: ctx.seed,
            limit: a.limit,
            dev_limit: a.dev_limit,
            perceptual: a.encoder_weights.is_some(),
            fixed_damage: a.fixed_damage,
        },
        encoder_weights: a.encoder_weights.clone(),
        device: ctx.device,
        quiet: ctx.quiet,
    };
    let s = rtrain::run(&job)?;
    outln!(
        "trained {} epochs into {} in {:.1} s; best epoch {} (dev loss {:.4})",
        s.epochs,
        a.out.display(),
        s.seconds,
        s.best_epoch,
        s.best_dev_loss
    )?;
    Ok(())
}

fn eval(ctx: &Ctx, a: &RestoreEvalArgs) -> anyhow::Result<()> {
    let m = rtrain::open(&a.run, ctx.device, a.last)?;
    // Both runs are opened before any work, so a wrong path fails at once.
    let captioner = match &a.captioner {
        Some(dir) => Some((
            crate::infer::Loaded {
                allow_unk: a.decode.allow_unk,
                ..crate::infer::load_checkpoint(dir, ctx.device, false)?
            },
            super::shared::decoding(&a.decode, ctx.seed)?,
        )),
        None => None,
    };
    let ds = load_dataset(ctx, &a.data, &load_options(ctx, &a.dataset))?;
    let bar = crate::train::progress(ctx.quiet, 0, "restore eval");
    let r = apply::evaluate(&m, &ds, a.split.into(), a.limit, ctx.seed, &bar)?;
    bar.finish_and_clear();
    let c = match &captioner {
        Some((loaded, decoding)) => {
            let bar = crate::train::progress(ctx.quiet, 0, "captioning");
            let scope = captioning::Scope {
                split: a.split.into(),
                limit: a.limit,
                seed: ctx.seed,
                decoding: *decoding,
            };
            let c = captioning::evaluate(&m, loaded, &ds, &scope, &bar)?;
            bar.finish_and_clear();
            Some(c)
        }
        None => None,
    };
    if a.json {
        let mut v = serde_json::to_value(&r)?;
        if let Some(c) = &c {
            v["captioning"] = serde_json::to_value(c)?;
        }
        outln!("{}", serde_json::to_string_pretty(&v)?)?;
    } else {
        outln!("{}", table(&r))?;
        if let Some(c) = &c {
            outln!("{}", caption_table(c))?;
        }
    }
    Ok(())
}

/// The captioning scores of each version (×100, coco BLEU).
pub fn caption_table(c: &CaptionReport) -> String {
    let mut s = format!(
        "captioning {} {} images at their own size, {:.1}% of pixels damaged (held-out \
         damage), {} by {}\n",
        c.images,
        c.split,
        100.0 * c.damaged_share,
        c.decoding.name(),
        c.captioner
    );
    let w = c.rows.iter().map(|x| x.version.len()).max().unwrap_or(6);
    s += &format!(
        "{:<w$}  BLEU-1  BLEU-2  BLEU-3  BLEU-4  CIDEr-D  ROUGE-L  distinct\n",
        ""
    );
    for row in &c.rows {
        let b = row.bleu.bleu;
        s += &format!(
            "{:<w$}  {:>6.2}  {:>6.2}  {:>6.2}  {:>6.2}  {:>7.2}  {:>7.2}  {:>8}\n",
            row.version,
            100.0 * b[0],
            100.0 * b[1],
            100.0 * b[2],
            100.0 * b[3],
            100.0 * row.cider,
            100.0 * row.rouge_l,
            row.distinct
        );
    }
    if c.unreadable > 0 {
        s += &format!("{} unreadable images skipped\n", c.unreadable);
    }
    s += &format!("{:.1} s", c.seconds);
    s
}

/// The evaluation as a small aligned table.
pub fn table(r: &EvalReport) -> String {
    let mut s = format!(
        "{} {} images at {} px, {:.1}% of pixels damaged ({})\n\
         mask: IoU {:.3}  F1 {:.3}  (mean per-image IoU {:.3})\n",
        r.images,
        r.split,
        r.size,
        100.0 * r.damaged_share,
        if r.seen_in_training {
            "the damage the run was trained on: --fixed-damage"
        } else {
            "held-out damage"
        },
        r.mask_iou,
        r.mask_f1,
        r.mean_image_iou
    );
    let w = r.rows.iter().map(|x| x.method.len()).max().unwrap_or(6);
    s += &format!("{:<w$}  PSNR dB   SSIM\n", "");
    for row in &r.rows {
        s += &format!("{:<w$}  {:>7.2}  {:>5.3}\n", row.method, row.psnr, row.ssim);
    }
    s += &format!(
        "networks: {:.1} ms per image (mask + two fills)",
        1000.0 * r.seconds_per_image
    );
    s
}

fn apply_files(ctx: &Ctx, a: &RestoreApplyArgs) -> anyhow::Result<()> {
    let (Some(run), Some(out)) = (&a.run, &a.out) else {
        bail!("usage: captag restore RUN IMAGE|DIR... --out DIR");
    };
    let files = collect_images(&a.inputs)?;
    let mut ins: Vec<crate::fsio::Input> =
        files.iter().map(|p| crate::fsio::Input::File(p)).collect();
    ins.push(crate::fsio::Input::Folder(run));
    if let Some(m) = &a.mask {
        ins.push(crate::fsio::Input::File(m));
    }
    let known = match &a.mask {
        Some(_) if files.len() != 1 => bail!("--mask needs exactly one input image"),
        Some(p) => Some(apply::read_mask(p)?),
        None => None,
    };
    let m = rtrain::open(run, ctx.device, a.last)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut failed = 0;
    for f in &files {
        let stem = f
            .file_stem()
            .map_or_else(|| "image".into(), |s| s.to_string_lossy().into_owned());
        let (mp, rp) = (
            out.join(format!("{stem}.mask.png")),
            out.join(format!("{stem}.restored.png")),
        );
        for p in [&mp, &rp] {
            crate::fsio::refuse_overwriting_inputs("--out", p, &ins)?;
        }
        let done = crate::data::image::decode_rgb(f).and_then(|img| {
            let r = apply::restore_image(&m, &img, known.as_ref())?;
            crate::fsio::write_atomic(&mp, &crate::restore::encode_png(&r.mask)?, false)?;
            crate::fsio::write_atomic(&rp, &crate::restore::encode_png(&r.image)?, false)?;
            let holes = r.mask.as_raw().iter().filter(|&&v| v > 0).count();
            Ok(holes as f64 / r.mask.as_raw().len().max(1) as f64)
        });
        match done {
            Ok(share) => outln!(
                "{}: {:.1}% damaged → {}",
                f.display(),
                100.0 * share,
                rp.display()
            )?,
            Err(e) if files.len() > 1 => {
                crate::fsio::errln!("error: {e}");
                failed += 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
    if failed > 0 {
        return Err(crate::Error::Partial(format!(
            "{failed} of {} images could not be restored",
            files.len()
        ))
        .into());
    }
    Ok(())
}

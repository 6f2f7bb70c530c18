//! `captag serve` and `captag ratings export` (README, "Web page and API").
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context};

use super::out::outln;
use super::Ctx;
use crate::cli::{RatingsCommand, ServeArgs};
use crate::model::llama::chat::ChatLm;
use crate::model::text_tagger::TextTagger;
use crate::serve::{self, db, worker};

pub fn serve(ctx: &Ctx, a: &ServeArgs) -> anyhow::Result<()> {
    let addr: SocketAddr = a
        .addr
        .parse()
        .with_context(|| format!("--addr {}: expected IP:PORT, e.g. 127.0.0.1:8080", a.addr))?;
    if a.queue == 0 || a.max_upload_mb == 0 || a.timeout_s == 0 {
        bail!("--queue, --max-upload-mb and --timeout-s must be ≥ 1");
    }
    let cap = crate::model::decoding::SERVER_MAX_BEAM;
    if !(1..=cap).contains(&a.beam) {
        bail!("--beam must be 1 to {cap}");
    }
    // Checked here, before the port opens, so a typo is one error line.
    let vl = super::vl::is_vl(&a.checkpoint);
    let folder = vl && !crate::run::vl::is_vl_run(&a.checkpoint);
    if vl && !a.precision.is_fp32() {
        bail!("--precision: BLIP/GIT models are served in fp32");
    }
    if folder && a.last {
        bail!("--last needs a run directory, not a Hugging Face BLIP/GIT folder");
    }
    if vl && !a.ensemble.is_empty() {
        bail!("--ensemble needs captag's own runs, not a BLIP/GIT model");
    }
    if !vl {
        crate::run::read(&a.checkpoint)?;
    }
    let name = a
        .checkpoint
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let fingerprint = match folder {
        true => crate::run::vl::folder_fingerprint(&a.checkpoint)?,
        false => crate::run::fingerprint(&a.checkpoint)?,
    };
    // An ensemble's ratings name every member.
    let mut run_id = format!("{name}@{fingerprint}");
    for dir in &a.ensemble {
        run_id += &format!("+{}@{}", dir.display(), crate::run::fingerprint(dir)?);
    }
    let config = serve::Config {
        addr,
        db: a.db.clone(),
        keep_images: a.keep_images.clone(),
        max_upload_bytes: a.max_upload_mb << 20,
        // The global --max-megapixels (checked ≥ 1 in `commands::run`).
        max_pixels: crate::data::image::max_pixels(),
        queue: a.queue,
        timeout: Duration::from_secs(a.timeout_s),
        beam: a.beam,
        run_id,
    };
    // A 16-bit precision on the CPU is refused here, before the server binds.
    a.precision.check(ctx.device)?;
    let (dir, device, last, allow_unk) = (a.checkpoint.clone(), ctx.device, a.last, a.allow_unk);
    let partners = a.ensemble.clone();
    let precision = a.precision;
    let (text_tags, emoji) = (a.text_tags.clone(), a.emoji.clone());
    let translate = a.translate.translate.clone();
    let opts = super::translate::options(a.translate.lang.as_deref(), None, None)?;
    let (llm, adapter) = (a.llm.clone(), a.adapter.clone());
    let load = move || -> crate::Result<worker::Models> {
        let captioner = match vl {
            true => worker::Captioner::Vl(Box::new(super::vl::open(&dir, device, last)?)),
            false => worker::Captioner::Run(Box::new(crate::infer::Loaded {
                allow_unk,
                ..crate::infer::load_checkpoint(&dir, device, last)?
                    .in_precision(precision)?
                    .with_partners(&partners, device, last)?
            })),
        };
        Ok(worker::Models {
            captioner,
            text_tags: text_tags.as_deref().map(TextTagger::load).transpose()?,
            emoji: emoji.as_deref().map(TextTagger::load_emoji).transpose()?,
            translator: match &translate {
                Some(d) => {
                    let t = crate::model::seq2seq::Translator::load(d, device)?;
                    t.settings(&opts)?;
                    Some((t, opts))
                }
                None => None,
            },
            // Loaded before the port opens (`serve::run` binds once the models are ready), so
            // a wrong folder or adapter is one error line and exit 2.
            llm: llm
                .as_deref()
                .map(|d| ChatLm::load(d, adapter.as_deref(), device)?.in_precision(precision))
                .transpose()?,
        })
    };
    serve::run(config, load, |bound| {
        // The one line scripts (and the tests) wait for.
        let _ = outln!("listening on http://{bound}");
    })?;
    Ok(())
}

pub fn ratings(_ctx: &Ctx, c: &RatingsCommand) -> anyhow::Result<()> {
    match c {
        RatingsCommand::Export {
            db,
            out,
            images,
            min_rating,
        } => {
            if !(1..=5).contains(min_rating) {
                bail!("--min-rating must be 1 to 5");
            }
            let ratings = db::Ratings::open_existing(db)?;
            let done = db::export(&ratings, images, out, *min_rating)?;
            outln!(
                "wrote {} captions of {} images to {} ({} ratings below {min_rating} without an \
                 edit, {} without a kept image, {} of LLM posts, {} with a malformed image hash \
                 skipped)",
                done.captions,
                done.images,
                out.display(),
                done.below_threshold,
                done.no_image,
                done.llm_posts,
                done.bad_rows
            )?;
            Ok(())
        }
    }
}

//! `train --init-from PATH`: a new run whose first weights are another run's best. The source
//! is read in one place ([`open`]): today a captag run directory, whose architecture,
//! vocabulary, hashtag list and frozen encoder weights the new run takes over unchanged (so
//! its weights fit). A Hugging Face BLIP or GIT folder, or a run fine-tuned from one, is the
//! other kind of source: `train::vl` trains it into a run of its own architecture ([`record`]
//! notes it).
use std::path::{Path, PathBuf};

use tch::nn::VarStore;

use crate::config::{scst::InitFrom, EncoderKind, ModelConfig};
use crate::run;
use crate::{Error, Result};

/// What a run can start from.
pub struct Source {
    pub dir: PathBuf,
    pub contents: run::Contents,
}

/// Read `--init-from PATH`.
pub fn open(path: &Path) -> Result<Source> {
    let contents = run::read(path).map_err(|e| Error::invalid(format!("--init-from: {e}")))?;
    let model = &contents.run.model;
    if model.hashtags.as_ref().is_some_and(|t| t.only) {
        return Err(Error::invalid(format!(
            "--init-from {}: a hashtag-only run has no trained caption decoder",
            path.display()
        )));
    }
    if model.frozen_encoder && model.encoder == EncoderKind::Clip {
        return Err(Error::invalid(format!(
            "--init-from {}: runs on CLIP features cannot be continued into a new run yet",
            path.display()
        )));
    }
    Ok(Source {
        dir: path.to_path_buf(),
        contents,
    })
}

/// `train`'s flags meet the source: the architecture is the source's, and its feature cache is
/// reused when it was made for the same data (unless `--features` says otherwise).
pub fn adopt(
    path: &Path,
    data: &Path,
    model: &mut ModelConfig,
    features: &mut Option<PathBuf>,
) -> Result<()> {
    let src = open(path)?;
    *model = src.contents.run.model.clone();
    let cache = path.join("features.safetensors");
    let same_data = src.contents.run.data_path == data.display().to_string();
    if features.is_none() && same_data && cache.is_file() {
        *features = Some(cache);
    }
    Ok(())
}

/// What `config.json` records of the source: a run, or a BLIP/GIT folder (`train::vl`).
pub fn record(path: &Path) -> Result<InitFrom> {
    if crate::model::vl::is_vl_folder(path) {
        return Ok(InitFrom {
            run: path.display().to_string(),
            fingerprint: run::vl::folder_fingerprint(path)?,
        });
    }
    if run::vl::is_vl_run(path) {
        return Ok(InitFrom {
            run: path.display().to_string(),
            fingerprint: run::fingerprint(path)?,
        });
    }
    open(path)?;
    Ok(InitFrom {
        run: path.display().to_string(),
        fingerprint: run::fingerprint(path)?,
    })
}

/// The new run directory: the source's architecture, vocabulary (or GPT-2 tokenizer files),
/// hashtag list and frozen encoder weights, with this run's training settings and data.
pub fn new_run(job: &super::TrainJob, src: &Path, data_fp: &str) -> Result<run::Contents> {
    let s = open(src)?;
    let c = &s.contents;
    let encoder = src.join(run::ENCODER);
    let lm = src.join(run::LM);
    let run = run::create(run::NewRun {
        dir: &job.out,
        model: c.run.model.clone(),
        train: job.train.clone(),
        data_path: &job.data,
        data_fingerprint: data_fp,
        vocab: &c.vocab,
        tags: c.tags.as_ref(),
        lm: lm.is_dir().then_some(lm.as_path()),
        encoder_weights: c.run.model.frozen_encoder.then_some(encoder.as_path()),
    })?;
    Ok(run::Contents {
        run,
        vocab: s.contents.vocab,
        tags: s.contents.tags,
    })
}

/// The source's best weights into a fresh model's store (names and shapes must match).
pub fn load_weights(src: &Path, vs: &mut VarStore) -> Result<()> {
    run::load_vars(vs, &run::committed_path(src, run::BEST))
        .map_err(|e| Error::invalid(format!("--init-from {}: {e}", src.display())))
}

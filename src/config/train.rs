//! The training settings of a run (`TrainConfig`: epochs, batches, learning rate and schedule,
//! selection, distillation, batching order, precision), saved in `config.json` beside the model
//! config so `--resume` continues with the same ones.
use serde::{Deserialize, Serialize};

use super::{defaults, precision, Schedule};
use crate::{Error, Result};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    /// Global gradient-norm clip (0 = off). `clip` in config.json of older runs.
    #[serde(alias = "clip")]
    pub grad_clip: f64,
    pub schedule: Schedule,
    /// Stop after this many epochs without a better selection score (`select`; dev mAP for
    /// hashtag-only runs) (0 = never).
    pub early_stop: usize,
    /// Words seen fewer times in the training captions become `<unk>`.
    pub min_count: usize,
    /// Captions are cut to this many words (plus `<start>`/`<end>`).
    pub max_words: usize,
    pub seed: u64,
    /// Caption-derived hashtags: a word must be used by this many of an image's captions.
    #[serde(default = "default_tag_min_agree")]
    pub tag_min_agree: usize,
    /// Tags on fewer training images than this stay out of the label list.
    #[serde(default = "default_tag_min_count")]
    pub tag_min_count: usize,
    /// The dev metric that picks the best epoch (and drives early stopping).
    #[serde(default)]
    pub select: Selection,
    /// Knowledge distillation from a teacher run (`train --teacher`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distill: Option<Distill>,
    /// How an epoch's captions are cut into batches. Runs written before this setting existed
    /// read as `shuffle`, the order they were trained (and resume) in.
    #[serde(default)]
    pub batching: Batching,
    /// Captions each image contributes to one epoch (`None`: all of them). Epoch `e` takes an
    /// image's captions `e·k .. e·k + k` (cyclically), so every caption is used in turn; with
    /// k = 1 a batch holds about `batch_size` distinct images instead of `batch_size / 5`, and
    /// an end-to-end encoder learns from 5× more pictures per step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub captions_per_image: Option<usize>,
    /// `--precision`: fp32, or bf16/fp16 autocast on CUDA (runs before this field: fp32).
    #[serde(default, skip_serializing_if = "precision::Precision::is_fp32")]
    pub precision: precision::Precision,
    /// `--objective scst`: self-critical training instead of cross-entropy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scst: Option<super::scst::Scst>,
    /// `--init-from`: the run whose best weights this run started from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_from: Option<super::scst::InitFrom>,
    /// `--encoder-lr`: the fine-tuned encoder's learning rate where `lr` is the decoder's;
    /// the schedule scales both alike (PyTorch parameter groups under one scheduler).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoder_lr: Option<f64>,
}

/// `--batching`: the order of an epoch's captions (feature-cache training; with an
/// end-to-end encoder an image's captions stay together in either mode).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Batching {
    /// Captions shuffled, then cut into batches: every batch is padded to its longest caption.
    #[default]
    Shuffle,
    /// Length buckets: captions shuffled, then each pool of 50 batches sorted by length and cut
    /// into batches, and the batches shuffled — a batch holds captions of about one length, so
    /// the recurrence runs over little padding. Same captions per epoch, seeded the same way.
    Buckets,
}

/// `--kd`: what the student learns from the teacher.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum KdMethod {
    /// Word level (Hinton et al. 2015, per step as in Kim & Rush 2016): at every teacher-forced
    /// position `alpha · T² · KL(p_teacher^T ‖ p_student^T) + (1 − alpha) · CE`.
    Word,
    /// Sequence level (Kim & Rush 2016): the teacher's beam-search caption of every training
    /// image joins the training captions (or replaces them, `--kd-teacher-only`).
    Sequence,
    /// Both: the word-level loss on references and teacher captions.
    Both,
}

impl KdMethod {
    pub fn word_level(self) -> bool {
        matches!(self, KdMethod::Word | KdMethod::Both)
    }
    pub fn sequence_level(self) -> bool {
        matches!(self, KdMethod::Sequence | KdMethod::Both)
    }
}

/// The teacher of a distilled student and how it teaches; saved in the student's `config.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Distill {
    /// The teacher's run directory, as given.
    pub teacher: String,
    /// Fingerprint of the teacher's `config.json` and best weights: a resumed student refuses a
    /// teacher that changed since.
    pub teacher_fingerprint: String,
    pub method: KdMethod,
    pub temperature: f64,
    /// Weight of the soft (teacher) term; `1 − kd_alpha` goes to cross-entropy on the data.
    /// `alpha` in config.json of older runs.
    #[serde(alias = "alpha")]
    pub kd_alpha: f64,
    /// Beam width of the teacher's captions (sequence level).
    pub beam: usize,
    /// Sequence level: train on the teacher's captions only, not the references as well.
    pub teacher_only: bool,
}

impl Distill {
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::invalid(format!("invalid distillation: {m}")));
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return bad("--temperature must be a positive number");
        }
        if !(0.0..=1.0).contains(&self.kd_alpha) {
            return bad("--kd-alpha must be between 0 and 1");
        }
        if self.beam == 0 {
            return bad("--kd-beam must be at least 1");
        }
        if self.teacher_only && !self.method.sequence_level() {
            return bad("--kd-teacher-only needs --kd sequence or both");
        }
        Ok(())
    }
}

/// `--select`: which greedy dev score picks `model.safetensors`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Selection {
    #[default]
    Bleu4,
    Cider,
}

impl Selection {
    pub fn name(self) -> &'static str {
        match self {
            Selection::Bleu4 => "BLEU-4",
            Selection::Cider => "CIDEr-D",
        }
    }
}

fn default_tag_min_agree() -> usize {
    defaults::TAG_MIN_AGREE
}

fn default_tag_min_count() -> usize {
    defaults::TAG_MIN_COUNT
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: defaults::EPOCHS,
            batch_size: defaults::BATCH_SIZE,
            lr: defaults::LR,
            grad_clip: defaults::GRAD_CLIP,
            schedule: Schedule::plateau(),
            early_stop: defaults::EARLY_STOP,
            min_count: defaults::MIN_COUNT,
            max_words: defaults::MAX_WORDS,
            seed: 0,
            tag_min_agree: default_tag_min_agree(),
            tag_min_count: default_tag_min_count(),
            select: Selection::Bleu4,
            distill: None,
            batching: Batching::Shuffle,
            captions_per_image: None,
            precision: Default::default(),
            scst: None,
            init_from: None,
            encoder_lr: None,
        }
    }
}

impl TrainConfig {
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::invalid(format!("invalid training config: {m}")));
        if self.captions_per_image == Some(0) {
            return bad("captions_per_image must be at least 1");
        }
        if self.epochs == 0 || self.batch_size == 0 || self.max_words == 0 {
            return bad("epochs, batch size and max words must be ≥ 1");
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad("learning rate must be a positive number");
        }
        if self
            .encoder_lr
            .is_some_and(|lr| !(lr > 0.0 && lr.is_finite()))
        {
            return bad("--encoder-lr must be a positive number");
        }
        if let Some(s) = &self.scst {
            s.validate()?;
            if self.init_from.is_none() {
                return bad("--objective scst starts from a trained run: pass --init-from RUN");
            }
            if self.distill.is_some() {
                return bad("--objective scst and --teacher cannot be combined");
            }
        }
        match &self.distill {
            Some(d) => d.validate(),
            None => Ok(()),
        }
    }
}

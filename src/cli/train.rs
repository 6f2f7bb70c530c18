//! `captag train`'s flags: data, architecture overrides, optimisation, hashtags and
//! distillation (README, "Training" and "Distillation").
use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::DataArgs;
use crate::config::{
    defaults, DecoderPreset, EncoderKind, ImageFeed, LmMode, MapperKind, Positions, TagModelKind,
};

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Dataset directory.
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long, value_enum, default_value = "small-cnn")]
    pub encoder: EncoderKind,
    /// Decoder architecture (sizes from its preset for the encoder; override below).
    #[arg(long, value_enum, default_value = "lstm")]
    pub decoder: DecoderPreset,
    /// Pretrained encoder weights: the encoder is then frozen and its features cached.
    /// Without them the encoder is trained end to end from scratch. `clip`: the Hugging Face
    /// CLIP folder (required).
    #[arg(long)]
    pub encoder_weights: Option<PathBuf>,
    /// clipcap: a Hugging Face `gpt2` folder (config.json, model.safetensors, tokenizer.json or
    /// vocab.json + merges.txt): the LM starts from its weights and captions are its BPE tokens.
    #[arg(long)]
    pub lm_weights: Option<PathBuf>,
    /// Fine-tune the pretrained encoder (--encoder-weights; efficientnet_lite0/2,
    /// squeezenet1_1): its last --fine-tune-blocks blocks train with the decoder at
    /// --encoder-lr, BatchNorm statistics stay frozen. Trains from images, not a feature cache.
    #[arg(long)]
    pub fine_tune_encoder: bool,
    /// With --fine-tune-encoder: the encoder's learning rate (default 1e-4; --lr is the
    /// decoder's, and the schedule scales both).
    #[arg(long)]
    pub encoder_lr: Option<f64>,
    /// With --fine-tune-encoder: how many of the encoder's last blocks train (default:
    /// EfficientNet-Lite's last two stages, SqueezeNet's last two fire modules).
    #[arg(long)]
    pub fine_tune_blocks: Option<usize>,
    /// Feature cache to reuse or create (default: OUT/features.safetensors).
    #[arg(long)]
    pub features: Option<PathBuf>,
    /// With --init-from a BLIP/GIT folder: keep the image tower as loaded (only the text side
    /// and GIT's visual projection are trained).
    #[arg(long)]
    pub freeze_vision: bool,
    /// Total number of epochs (with --resume: the new total).
    #[arg(long, default_value_t = defaults::EPOCHS)]
    pub epochs: usize,
    /// Run directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Continue the run in --out exactly where it stopped.
    #[arg(long)]
    pub resume: bool,
    #[arg(long, default_value_t = defaults::BATCH_SIZE)]
    pub batch_size: usize,
    /// Learning rate (default 2e-3; with --resume, the run's own).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Global gradient-norm clip (0 = off). `--clip` is its old spelling.
    #[arg(long, default_value_t = defaults::GRAD_CLIP, alias = "clip")]
    pub grad_clip: f64,
    /// Learning-rate schedule.
    #[arg(long, value_enum, default_value = "plateau")]
    pub schedule: ScheduleArg,
    /// Dev metric that picks the best epoch and drives early stopping.
    #[arg(long, value_enum, default_value = "bleu4")]
    pub select: crate::config::Selection,
    /// Batch order: `buckets` (default for new runs) groups captions of similar length so
    /// the recurrence runs over less padding; `shuffle` is the plain shuffled order. A resumed
    /// run keeps the order it was trained in.
    #[arg(long, value_enum)]
    pub batching: Option<crate::config::Batching>,
    /// Captions each image contributes to an epoch, taken in turn across epochs (default: all).
    /// 1 makes a batch of about --batch-size distinct images: an end-to-end encoder sees 5×
    /// more pictures per step, and an epoch is a fifth as long.
    #[arg(long)]
    pub captions_per_image: Option<usize>,
    /// Numeric precision: fp32 (default; the only one on CPU), or bf16/fp16 autocast on CUDA
    /// with float32 master weights (fp16 adds a dynamic loss scale). --resume without it keeps
    /// the run's.
    #[arg(long, value_enum)]
    pub precision: Option<crate::config::precision::Precision>,
    /// Early stopping patience in epochs on the --select metric (0 = off).
    #[arg(long, default_value_t = defaults::EARLY_STOP)]
    pub early_stop: usize,
    /// Minimum count for a word to enter the vocabulary.
    #[arg(long, default_value_t = defaults::MIN_COUNT)]
    pub min_count: usize,
    /// Captions are cut to this many words.
    #[arg(long, default_value_t = defaults::MAX_WORDS)]
    pub max_words: usize,
    /// Word embedding size (transformer: model width; default: the preset's).
    #[arg(long)]
    pub embed: Option<i64>,
    /// Hidden size (LSTM/GRU/attention cell; default: the preset's).
    #[arg(long)]
    pub hidden: Option<i64>,
    /// Recurrent or transformer layers (default: the preset's).
    #[arg(long)]
    pub layers: Option<i64>,
    /// Dropout (default: the preset's).
    #[arg(long)]
    pub dropout: Option<f64>,
    /// lstm/gru: how the image enters the decoder.
    #[arg(long, value_enum)]
    pub feed: Option<ImageFeed>,
    /// attention: size of the additive attention layer.
    #[arg(long)]
    pub attention_dim: Option<i64>,
    /// attention: weight of the doubly stochastic attention regulariser.
    #[arg(long)]
    pub alpha_c: Option<f64>,
    /// transformer and clipcap: attention heads.
    #[arg(long)]
    pub heads: Option<i64>,
    /// transformer: feed-forward width.
    #[arg(long)]
    pub ff_dim: Option<i64>,
    /// transformer: learned or sinusoidal positions.
    #[arg(long, value_enum)]
    pub positions: Option<Positions>,
    /// clipcap: how the image vector becomes the prefix (mlp, or a transformer mapper).
    #[arg(long, value_enum)]
    pub mapper: Option<MapperKind>,
    /// clipcap: prefix embeddings per image (default 10).
    #[arg(long)]
    pub prefix_len: Option<i64>,
    /// clipcap transformer mapper: tokens the image vector is projected into (default 10).
    #[arg(long)]
    pub clip_len: Option<i64>,
    /// clipcap transformer mapper: encoder layers (default 8).
    #[arg(long)]
    pub mapper_layers: Option<i64>,
    /// clipcap: `finetune` trains the language model with the mapper; `frozen` trains only the
    /// mapper.
    #[arg(long, value_enum)]
    pub lm: Option<LmMode>,
    /// Steps of linear warm-up for `--schedule warmup`.
    #[arg(long, default_value_t = defaults::WARMUP)]
    pub warmup: usize,
    /// Image side in pixels (default: the encoder's preset).
    #[arg(long)]
    pub image_size: Option<u32>,
    /// Also train a hashtag model on the image features (label list saved as hashtags.json).
    #[arg(long)]
    pub hashtags: bool,
    /// Train only the hashtag model (the caption decoder is left untrained).
    #[arg(long)]
    pub hashtags_only: bool,
    /// Which hashtag model: a multi-label head, or a GRU that generates the tag sequence.
    #[arg(long, value_enum, default_value = "head")]
    pub hashtag_model: TagModelKind,
    /// Hidden size of the hashtag model.
    #[arg(long, default_value_t = defaults::TAG_HIDDEN)]
    pub tag_hidden: i64,
    /// Caption-only data: a word becomes a tag when this many of an image's captions use it.
    #[arg(long, default_value_t = defaults::TAG_MIN_AGREE)]
    pub tag_min_agree: usize,
    /// Tags on fewer training images stay out of the label list.
    #[arg(long, default_value_t = defaults::TAG_MIN_COUNT)]
    pub tag_min_count: usize,
    #[command(flatten)]
    pub distill: DistillArgs,
    #[command(flatten)]
    pub scst: super::ScstArgs,
    #[command(flatten)]
    pub dataset: DataArgs,
}

/// `train --teacher RUN`: knowledge distillation into the run being trained (the student).
#[derive(Debug, Clone, Args)]
pub struct DistillArgs {
    /// Distil from this teacher run (any decoder; the same data, vocabulary and image features).
    #[arg(long)]
    pub teacher: Option<PathBuf>,
    /// word: soft teacher targets at every position; sequence: train on the teacher's beam
    /// captions too; both.
    #[arg(long, value_enum, default_value = "word", requires = "teacher")]
    pub kd: crate::config::KdMethod,
    /// Softmax temperature of the word-level loss.
    #[arg(long, default_value_t = defaults::KD_TEMPERATURE, requires = "teacher")]
    pub temperature: f64,
    /// Weight of the teacher term (1 − kd-alpha goes to cross-entropy on the data). `--alpha`
    /// is its old spelling.
    #[arg(long, default_value_t = defaults::KD_ALPHA, requires = "teacher", alias = "alpha")]
    pub kd_alpha: f64,
    /// Beam width of the teacher's captions (sequence level).
    #[arg(long, default_value_t = defaults::KD_BEAM, requires = "teacher")]
    pub kd_beam: usize,
    /// Sequence level: train on the teacher's captions only, without the references.
    #[arg(long, requires = "teacher")]
    pub kd_teacher_only: bool,
}

impl Default for DistillArgs {
    fn default() -> Self {
        DistillArgs {
            teacher: None,
            kd: crate::config::KdMethod::Word,
            temperature: defaults::KD_TEMPERATURE,
            kd_alpha: defaults::KD_ALPHA,
            kd_beam: defaults::KD_BEAM,
            kd_teacher_only: false,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ScheduleArg {
    Constant,
    /// Halve every 5 epochs (`config::defaults::STEP_EVERY`, `STEP_GAMMA`).
    Step,
    /// Halve after 2 epochs without a lower dev loss (`PLATEAU_PATIENCE`, `PLATEAU_FACTOR`).
    Plateau,
    /// Linear warm-up over --warmup steps, then inverse square-root decay (per step).
    Warmup,
    /// Linear warm-up over --warmup steps, then a cosine down to zero at the last epoch's end.
    Cosine,
}

//! Every default of a training or decoding setting, in one place: the clap attributes of
//! `src/cli/` (`default_value_t = defaults::LR`), [`super::TrainConfig::default`], the
//! `--schedule` presets and the decoding request (`model::decoding::DecodeRequest`) all read
//! these, so `--help`, a config built in code and the web API cannot drift apart.

/// `train --epochs`.
pub const EPOCHS: usize = 10;
/// `train --batch-size`.
pub const BATCH_SIZE: usize = 64;
/// `train --lr`.
pub const LR: f64 = 2e-3;
/// `train --encoder-lr`: the fine-tuned encoder's rate (the Show-Attend-Tell tutorial's 1e-4).
pub const ENCODER_LR: f64 = 1e-4;
/// `train --lr` of `--objective scst` (ruotianluo's self-critical rate).
pub const SCST_LR: f64 = 5e-5;
/// Learning rate of BLIP/GIT fine-tuning from a Hugging Face folder (`train --init-from HF_DIR`).
pub const VL_LR: f64 = 5e-5;
/// `train --scst-samples`: captions sampled per image.
pub const SCST_SAMPLES: usize = 5;
/// `train --grad-clip`: global gradient-norm clip (0 = off).
pub const GRAD_CLIP: f64 = 5.0;
/// `train --early-stop`: epochs without a better selection score (0 = never stop).
pub const EARLY_STOP: usize = 4;
/// `train --min-count`: words seen fewer times become `<unk>`.
pub const MIN_COUNT: usize = 5;
/// `train --max-words`.
pub const MAX_WORDS: usize = 30;
/// `train --warmup`: warm-up steps of `--schedule warmup` and `cosine`.
pub const WARMUP: usize = 2000;
/// `--schedule step`: multiply by `STEP_GAMMA` every `STEP_EVERY` epochs.
pub const STEP_EVERY: usize = 5;
pub const STEP_GAMMA: f64 = 0.5;
/// `--schedule plateau`: multiply by `PLATEAU_FACTOR` after `PLATEAU_PATIENCE` epochs without a
/// lower dev loss.
pub const PLATEAU_PATIENCE: usize = 2;
pub const PLATEAU_FACTOR: f64 = 0.5;
/// `train --tag-min-agree` (caption-derived hashtags).
pub const TAG_MIN_AGREE: usize = 2;
/// `train --tag-min-count`.
pub const TAG_MIN_COUNT: usize = 5;
/// `train --tag-hidden`.
pub const TAG_HIDDEN: i64 = 256;

/// `train --temperature` (word-level distillation).
pub const KD_TEMPERATURE: f64 = 2.0;
/// `train --kd-alpha`: weight of the teacher term.
pub const KD_ALPHA: f64 = 0.5;
/// `train --kd-beam`: beam width of the teacher's captions.
pub const KD_BEAM: usize = 3;

/// `--beam` (1 = greedy).
pub const BEAM: usize = 1;
/// `--length-alpha`: beam search's length exponent (score = logp / len^alpha; 0 = off).
pub const LENGTH_ALPHA: f64 = 0.0;
/// `--max-len`: caption length in words (the web API uses it too).
pub const MAX_LEN: usize = 30;
/// `--temperature` of top-p sampling.
pub const SAMPLE_TEMPERATURE: f64 = 1.0;
/// `--samples` of top-p sampling.
pub const SAMPLES: usize = 1;

/// `caption --hashtags` and the web API's `hashtags`: tags shown per image.
pub const HASHTAGS_SHOWN: usize = 5;
/// Emoji shown per image (`caption` shows at least this many with `--emoji`; the API's `emoji`).
pub const EMOJI_SHOWN: usize = 3;
/// `caption --tag-threshold`: the hashtag head emits tags scoring at least this probability.
pub const TAG_THRESHOLD: f64 = 0.5;

//! `captag llm …`: chat generation, LoRA fine-tuning, merging, pairs and evaluation with a
//! Llama-family Hugging Face folder (docs/llm.md).
use std::path::PathBuf;

use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum LlmCommand {
    /// Chat-formatted generation, streamed to stdout as the tokens come.
    Generate(LlmGenerateArgs),
    /// LoRA fine-tuning on prompt/response pairs (base frozen; a `peft`-format adapter in --out).
    Train(LlmTrainArgs),
    /// Write a folder with the adapter merged into the weights.
    Merge(LlmMergeArgs),
    /// Prompt/response pairs from Instagram captions (held-out split by post).
    Pairs(LlmPairsArgs),
    /// Held-out perplexity of the pairs' responses; with --generate, hashtag precision,
    /// distinct-2 and the generated posts.
    Eval(LlmEvalArgs),
}

/// The model folder and an optional adapter.
#[derive(Debug, Clone, Args)]
pub struct LlmModelArgs {
    /// Hugging Face folder of a Llama, SmolLM2 or Qwen2 model (`make weights` writes
    /// data/models/smollm2-135m-instruct).
    #[arg(long)]
    pub model: PathBuf,
    /// LoRA adapter folder (`adapter_config.json` + `adapter_model.safetensors`; a run of
    /// `captag llm train` is one).
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// Numeric precision: fp32 (default; the only one on CPU), or the model's weights in
    /// bf16/fp16 and its forward passes under autocast, on CUDA (half the weights' memory).
    #[arg(long, value_enum, default_value = "fp32")]
    pub precision: crate::config::precision::Precision,
}

#[derive(Debug, Args)]
pub struct LlmGenerateArgs {
    #[command(flatten)]
    pub model: LlmModelArgs,
    /// The user's message.
    #[arg(long)]
    pub prompt: String,
    /// A system message (the template's default when omitted).
    #[arg(long)]
    pub system: Option<String>,
    /// Continue the prompt as plain text, without the chat template.
    #[arg(long)]
    pub raw: bool,
    /// Most new tokens.
    #[arg(long, default_value_t = 128)]
    pub max_new_tokens: usize,
    /// Nucleus sampling with this top-p (seeded by --seed) instead of greedy decoding.
    #[arg(long, conflicts_with = "beam")]
    pub top_p: Option<f64>,
    /// Sampling temperature (with --top-p).
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f64,
    /// Beam search of this width (printed when finished, not streamed).
    #[arg(long, default_value_t = 1)]
    pub beam: usize,
}

#[derive(Debug, Args)]
pub struct LlmTrainArgs {
    /// Base model folder (frozen).
    #[arg(long)]
    pub model: PathBuf,
    /// JSON lines `{"prompt", "response", "system"?, "split"?}` (`captag llm pairs`); pairs
    /// with `"split": "test"` are left out.
    #[arg(long)]
    pub data: PathBuf,
    /// Run directory (created; an existing LoRA run resumes from its last epoch).
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 8)]
    pub lora_rank: i64,
    #[arg(long, default_value_t = 16.0)]
    pub lora_alpha: f64,
    /// Projections to adapt, comma-separated: q_proj, k_proj, v_proj, o_proj, gate_proj,
    /// up_proj, down_proj.
    #[arg(long, default_value = "q_proj,v_proj", value_delimiter = ',')]
    pub lora_targets: Vec<String>,
    /// Epochs in all (a resumed run trains the ones it lacks).
    #[arg(long, default_value_t = 1)]
    pub epochs: usize,
    #[arg(long, default_value_t = 2e-4)]
    pub lr: f64,
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Longest prompt + response in tokens (longer responses are cut; pairs whose prompt fills
    /// it are skipped).
    #[arg(long, default_value_t = 256)]
    pub max_len: usize,
    /// Numeric precision of training: fp32 (default; the only one on CPU), or the frozen base
    /// weights in bf16/fp16 and the forward pass under autocast, on CUDA; the LoRA adapter and
    /// Adam's moments stay float32 (fp16 adds a dynamic loss scale). A resumed run keeps its
    /// precision.
    #[arg(long, value_enum, default_value = "fp32")]
    pub precision: crate::config::precision::Precision,
}

#[derive(Debug, Args)]
pub struct LlmMergeArgs {
    #[arg(long)]
    pub model: PathBuf,
    #[arg(long)]
    pub adapter: PathBuf,
    /// Output folder (created; refused if it exists).
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct LlmPairsArgs {
    /// Folder with the Instagram captions CSVs (captions_csv.csv, captions_csv2.csv or
    /// captions_csv_extended.csv).
    #[arg(long)]
    pub data: PathBuf,
    /// Output JSON-lines file.
    #[arg(long)]
    pub out: PathBuf,
    /// Share of posts held out as `"split": "test"` (chosen by a hash of the post's name).
    #[arg(long, default_value_t = 0.1)]
    pub test_share: f64,
    /// Keep only posts with at least one hashtag.
    #[arg(long)]
    pub with_hashtags: bool,
    /// At most this many pairs (a seeded random subset, held-out split unchanged; with
    /// --captioner, of the posts whose picture is a file, before captioning).
    #[arg(long)]
    pub limit: Option<usize>,
    /// The image recipe: a captioning run (`captag train`) describes each post's picture, and
    /// the prompt is built as `caption RUN IMAGE --llm` builds it (its caption, its hashtag
    /// head's tags, CLIP moods with --clip). Posts whose picture is missing or unreadable are
    /// left out and counted. Without it: the text recipe (the caption's own words).
    #[arg(long, value_name = "RUN")]
    pub captioner: Option<PathBuf>,
    /// A Hugging Face CLIP folder: with --captioner, the prompt names the picture's top moods
    /// of the built-in list, as `caption --moods --clip HF_DIR` ranks them.
    #[arg(long, value_name = "HF_DIR", requires = "captioner")]
    pub clip: Option<PathBuf>,
    /// How many mood labels go into each prompt (with --clip).
    #[arg(long, default_value_t = 3)]
    pub top_moods: usize,
    /// The captioner's decoding (as `caption`'s flags).
    #[command(flatten)]
    pub decode: super::DecodeArgs,
}

#[derive(Debug, Args)]
pub struct LlmEvalArgs {
    #[command(flatten)]
    pub model: LlmModelArgs,
    /// Pairs file; its `"split": "test"` pairs are scored.
    #[arg(long)]
    pub data: PathBuf,
    /// Score at most this many held-out pairs.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Also generate posts for the first N held-out pairs (greedy) and score their hashtags and
    /// distinct-2.
    #[arg(long, default_value_t = 0)]
    pub generate: usize,
    #[arg(long, default_value_t = 96)]
    pub max_new_tokens: usize,
    #[arg(long, default_value_t = 256)]
    pub max_len: usize,
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
}

//! The web server's and the ratings database's flags (README, "Web page and API").
use std::path::PathBuf;

use clap::{Args, Subcommand};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Run directory of the captioner (or a Hugging Face BLIP/GIT folder, or a run fine-tuned
    /// from one).
    pub checkpoint: PathBuf,
    /// Caption as an ensemble with this run (repeatable), as `eval --ensemble` does.
    #[arg(long, value_name = "RUN")]
    pub ensemble: Vec<PathBuf>,
    /// Caption-text hashtag model (`captag tags train`).
    #[arg(long)]
    pub text_tags: Option<PathBuf>,
    /// Caption-text emoji model (`captag emoji train`).
    #[arg(long)]
    pub emoji: Option<PathBuf>,
    /// SQLite database of ratings (created, WAL mode).
    #[arg(long, default_value = "ratings.sqlite")]
    pub db: PathBuf,
    /// Address to listen on (loopback by default; another address exposes the server).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: String,
    /// Save every uploaded image under DIR by its hash, so `ratings export` can write them.
    #[arg(long, value_name = "DIR")]
    pub keep_images: Option<PathBuf>,
    /// Largest upload accepted (MiB); larger bodies get 413.
    #[arg(long, default_value_t = 16)]
    pub max_upload_mb: usize,
    /// Requests waiting for the model beyond this get 503.
    #[arg(long, default_value_t = 16)]
    pub queue: usize,
    /// Seconds a request may wait for its captions before 503.
    #[arg(long, default_value_t = 30)]
    pub timeout_s: u64,
    /// Beam width of the alternatives (n-best list).
    #[arg(long, default_value_t = 3)]
    pub beam: usize,
    /// Let captions contain `<unk>` (by default the unknown word is never chosen).
    #[arg(long)]
    pub allow_unk: bool,
    /// Use the last epoch's weights instead of the best.
    #[arg(long)]
    pub last: bool,
    /// Numeric precision of decoding: fp32 (default; the only one on CPU), or bf16/fp16
    /// weights under autocast on CUDA (half the weights' memory);
    /// the --llm model too.
    #[arg(long, value_enum, default_value = "fp32")]
    pub precision: crate::config::precision::Precision,
    #[command(flatten)]
    pub translate: super::TranslateFlags,
    /// Also show the social post an instruction-tuned LLM folder (Llama/SmolLM2/Qwen2,
    /// docs/llm.md) writes from the caption and hashtags, beside the plain caption (rated and
    /// edited like the others). Each answer then takes the LLM's time too: raise --timeout-s.
    #[arg(long, value_name = "HF_DIR")]
    pub llm: Option<PathBuf>,
    /// A LoRA adapter for --llm (`captag llm train`).
    #[arg(long, requires = "llm")]
    pub adapter: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum RatingsCommand {
    /// Write the rated and edited captions as a Kaggle Flickr8k-layout dataset (captions.txt +
    /// Images/) that `captag train` reads: the feedback loop.
    Export {
        /// The ratings database `captag serve --db` wrote.
        #[arg(long)]
        db: PathBuf,
        /// Output dataset folder (created; must not exist or be empty).
        #[arg(long)]
        out: PathBuf,
        /// Where `serve --keep-images` saved the uploads.
        #[arg(long)]
        images: PathBuf,
        /// Keep captions rated at least this (edited captions are always kept).
        #[arg(long, default_value_t = 4)]
        min_rating: u8,
    },
}

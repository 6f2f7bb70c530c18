//! The command line (clap derive): global flags, one subcommand per job, `ValueEnum`s for
//! choices. Doc comments are the `--help` text.
mod features;
mod llm;
mod restore;
mod scst;
mod serve;
mod train;
pub use features::{FeaturesArgs, FeaturesCommand, FeaturesMergeArgs};
mod translate;
pub use llm::*;
pub use restore::*;
pub use scst::{Objective, ScstArgs};
pub use serve::{RatingsCommand, ServeArgs};
use std::path::PathBuf;
pub use train::{DistillArgs, ScheduleArg, TrainArgs};
pub use translate::{TranslateArgs, TranslateFlags};

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::{defaults, DecoderPreset};

#[derive(Debug, Parser)]
#[command(
    name = "captag",
    version,
    about = "Train, evaluate and run image-captioning and hashtag models on libtorch"
)]
pub struct Cli {
    /// Where tensors live: auto (a GPU when there is one), cpu, cuda, or cuda:N.
    #[arg(long, global = true, default_value = "auto")]
    pub device: String,
    /// Seed for everything random (data split, initialisation, shuffling, dropout, synthesis).
    #[arg(long, global = true, default_value_t = 0)]
    pub seed: u64,
    /// Print only results and errors (no progress bars).
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Print details, e.g. every skipped row and image.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// CPU threads for tensor operations (default: the cores not busy with other processes when
    /// captag starts; oversubscribed threads spin and can make training 3× slower).
    #[arg(long, global = true)]
    pub threads: Option<usize>,
    /// Largest image any command decodes (megapixels: width × height / 10⁶), checked from the
    /// file's header before decoding, so a small file that unpacks to gigabytes is refused (a
    /// dataset image over it is skipped and counted; `serve` answers 413).
    #[arg(long, global = true, default_value_t = crate::data::image::DEFAULT_MAX_MEGAPIXELS)]
    pub max_megapixels: u64,
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per process: the size of the largest variant (train's flags) costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Synthesize the built-in dataset (shapes with true captions) for demos and tests.
    Synth(SynthArgs),
    /// Inspect a dataset.
    #[command(subcommand)]
    Data(DataCommand),
    /// Build a vocabulary.
    #[command(subcommand)]
    Vocab(VocabCommand),
    /// Score captions with corpus BLEU-1..4 (pycocoevalcap or NLTK definitions).
    Bleu(BleuArgs),
    /// Run a frozen pretrained encoder once over a dataset and cache its features (one shard of
    /// them with --shard; `features merge` joins the shards).
    Features(FeaturesArgs),
    /// Train a captioner (encoder + LSTM/GRU decoder) into a run directory.
    Train(TrainArgs),
    /// Evaluate a checkpoint on a split: BLEU-1..4 and a COCO results file.
    Eval(EvalArgs),
    /// Caption one image or every image in a folder (with hashtags when the run has a hashtag model).
    Caption(CaptionArgs),
    /// Caption text ⇒ hashtags: train, evaluate and query the Instagram-style text model.
    #[command(subcommand)]
    Tags(TagsCommand),
    /// Caption text ⇒ emoji: train, evaluate and query a model learnt from Instagram posts.
    #[command(subcommand)]
    Emoji(TagsCommand),
    /// Serve a web page and a JSON API: upload a photo, get captions, hashtags and emoji, rate
    /// and edit them (ratings kept in SQLite).
    Serve(ServeArgs),
    /// The ratings the web page collected.
    #[command(subcommand)]
    Ratings(RatingsCommand),
    /// Compare runs side by side: train what a spec lacks (resumable), evaluate every run on one
    /// split with the same decoding, write compare.md/json/csv with bootstrap intervals and plots.
    Compare(CompareArgs),
    /// Draw the training curves of run directories (SVG and PNG).
    Plot(PlotArgs),
    /// Synthesize data, train a small model, evaluate it and caption a few images (~4 min on 2 CPU cores).
    Demo(DemoArgs),
    /// Write a damaged copy of a dataset's images with their exact damage masks (PNG).
    Damage(DamageArgs),
    /// Restore damaged photos: `restore train`, `restore eval`, or `restore RUN IMAGE|DIR --out DIR`.
    Restore(RestoreArgs),
    /// Translate texts (captions) with a Hugging Face translation folder: Marian opus-mt,
    /// M2M100 or NLLB, e.g. into Hindi, Bengali or Tamil (docs/translation.md).
    Translate(TranslateArgs),
    /// Chat with a Llama/SmolLM2/Qwen2 folder, LoRA-fine-tune it on prompt/response pairs,
    /// merge adapters, build pairs from Instagram captions (docs/llm.md).
    #[command(subcommand)]
    Llm(LlmCommand),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LayoutArg {
    Flickr8k,
    Instagram,
}

#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Output directory (created; refused if it holds something else).
    #[arg(long)]
    pub out: PathBuf,
    /// Number of images.
    #[arg(long, default_value_t = 1000)]
    pub count: usize,
    /// Image side in pixels.
    #[arg(long, default_value_t = 96)]
    pub size: u32,
    /// Directory layout to write.
    #[arg(long, value_enum, default_value = "flickr8k")]
    pub layout: LayoutArg,
    /// Plain backgrounds without pixel noise.
    #[arg(long)]
    pub no_noise: bool,
}

/// How to read a dataset directory (shared by every command that takes `--data`).
#[derive(Debug, Clone, Args)]
pub struct DataArgs {
    /// Layout of the dataset; detected from the directory when omitted.
    #[arg(long, value_enum)]
    pub format: Option<FormatArg>,
    /// Train/dev/test ratios for datasets without split lists, e.g. 0.8,0.1,0.1.
    #[arg(long, default_value = "0.8,0.1,0.1", value_parser = parse_ratios)]
    pub ratios: [f64; 3],
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FormatArg {
    /// Kaggle Flickr8k: Images/ + captions.txt.
    Flickr8k,
    /// Original UIUC Flickr8k: Flickr8k.token.txt + split lists.
    Flickr8kUiuc,
    /// Karpathy's dataset_*.json.
    Karpathy,
    /// Kaggle Instagram captions: captions_csv.csv (+ img/).
    Instagram,
}

fn parse_ratios(s: &str) -> Result<[f64; 3], String> {
    let v: Vec<f64> = s
        .split(',')
        .map(|x| x.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    match v.as_slice() {
        [a, b, c] if *a >= 0.0 && *b >= 0.0 && *c >= 0.0 && (a + b + c - 1.0).abs() < 1e-6 => {
            Ok([*a, *b, *c])
        }
        _ => Err("expected three non-negative numbers summing to 1, e.g. 0.8,0.1,0.1".into()),
    }
}

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Images found/missing, captions per image, vocabulary sizes, caption lengths, top hashtags.
    Stats {
        /// Dataset directory or captions file.
        dir: PathBuf,
        #[command(flatten)]
        data: DataArgs,
        /// Fully decode every image to find unreadable ones (slower).
        #[arg(long)]
        verify: bool,
        /// Print JSON instead of a report.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum VocabCommand {
    /// Build a vocabulary from a split's captions and write it as JSON.
    Build {
        /// Dataset directory or captions file.
        dir: PathBuf,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
        /// Words seen fewer times become <unk>.
        #[arg(long, default_value_t = 5)]
        min_count: usize,
        /// Split whose captions are counted.
        #[arg(long, value_enum, default_value = "train")]
        split: SplitArg,
        #[command(flatten)]
        data: DataArgs,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SplitArg {
    Train,
    Dev,
    Test,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum BleuModeArg {
    /// pycocoevalcap Bleu(4), corpus score.
    Coco,
    /// nltk corpus_bleu with default weights, no smoothing.
    Nltk,
}

#[derive(Debug, Args)]
pub struct BleuArgs {
    /// Predictions: COCO results JSON [{"image_id","caption"}] or one caption per line.
    #[arg(long)]
    pub predictions: PathBuf,
    /// References: a dataset directory (with --split) or JSON {"image_id": ["ref", ...]}.
    #[arg(long)]
    pub references: PathBuf,
    /// Split of a reference dataset directory.
    #[arg(long, value_enum, default_value = "dev")]
    pub split: SplitArg,
    #[arg(long, value_enum, default_value = "coco")]
    pub mode: BleuModeArg,
    /// Metrics to compute, comma-separated: bleu, cider (CIDEr-D), rouge (ROUGE-L).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "bleu")]
    pub metrics: Vec<MetricArg>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub data: DataArgs,
}

/// A caption metric (pycocoevalcap's definitions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MetricArg {
    Bleu,
    Cider,
    Rouge,
}

/// Decoding flags shared by eval and caption.
#[derive(Debug, Clone, Args)]
pub struct DecodeArgs {
    /// Beam width (1 = greedy).
    #[arg(long, default_value_t = defaults::BEAM)]
    pub beam: usize,
    /// Length normalisation exponent for beam search (score = logp / len^alpha). `--alpha` is
    /// its old spelling.
    #[arg(long, default_value_t = defaults::LENGTH_ALPHA, alias = "alpha")]
    pub length_alpha: f64,
    /// Maximum caption length in words.
    #[arg(long, default_value_t = defaults::MAX_LEN)]
    pub max_len: usize,
    /// Sample instead of searching: nucleus (top-p) sampling keeps, at each word, the most
    /// probable words whose probability reaches P (0 < P ≤ 1); seeded by --seed.
    #[arg(long, conflicts_with = "beam")]
    pub top_p: Option<f64>,
    /// With --top-p: divide log-probabilities by T before sampling (below 1 sharper, above 1
    /// more varied).
    #[arg(long, default_value_t = defaults::SAMPLE_TEMPERATURE, requires = "top_p")]
    pub temperature: f64,
    /// With --top-p: captions drawn per image (`caption` prints the distinct ones, most
    /// probable first; `eval` scores the most probable). At most 100.
    #[arg(long, default_value_t = defaults::SAMPLES, requires = "top_p")]
    pub samples: usize,
    /// Let captions contain `<unk>` (by default the unknown word is never chosen, whatever the
    /// decoding).
    #[arg(long)]
    pub allow_unk: bool,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Run directory, or a Hugging Face BLIP/GIT folder (zero-shot; docs/vision-language.md).
    pub checkpoint: PathBuf,
    /// Dataset directory.
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long, value_enum, default_value = "dev")]
    pub split: SplitArg,
    #[command(flatten)]
    pub decode: DecodeArgs,
    #[arg(long, value_enum, default_value = "coco")]
    pub mode: BleuModeArg,
    /// Where to write the predictions (COCO results JSON); default CHECKPOINT/predictions_SPLIT.json.
    #[arg(long)]
    pub predictions: Option<PathBuf>,
    /// Feature cache of this checkpoint's frozen encoder over DATA (skips running the encoder).
    /// Repeat it for an ensemble on several encoders: each run reads the cache its encoder
    /// computed.
    #[arg(long)]
    pub features: Vec<PathBuf>,
    /// Caption as an ensemble with this run (repeatable): every step's next word comes from the
    /// mean of the runs' probabilities. The runs must share their vocabulary; each may have
    /// its own encoder (docs/training.md, "Ensembles").
    #[arg(long, value_name = "RUN")]
    pub ensemble: Vec<PathBuf>,
    /// Use the last epoch's weights instead of the best.
    #[arg(long)]
    pub last: bool,
    /// Numeric precision of decoding: fp32 (default; the only one on CPU), or bf16/fp16
    /// weights under autocast on CUDA (half the weights' memory).
    #[arg(long, value_enum, default_value = "fp32")]
    pub precision: crate::config::precision::Precision,
    /// Hashtag metrics cut-off (P@k, R@k, F1@k).
    #[arg(long, default_value_t = 5)]
    pub k: usize,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub dataset: DataArgs,
}

#[derive(Debug, Args)]
pub struct CaptionArgs {
    /// Run directory, or a Hugging Face BLIP/GIT folder (docs/vision-language.md).
    pub checkpoint: PathBuf,
    /// Image files or folders.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    #[command(flatten)]
    pub decode: DecodeArgs,
    /// One JSON object per image.
    #[arg(long)]
    pub json: bool,
    /// Use the last epoch's weights instead of the best.
    #[arg(long)]
    pub last: bool,
    /// Caption as an ensemble with this run (repeatable), as `eval --ensemble` does.
    #[arg(long, value_name = "RUN")]
    pub ensemble: Vec<PathBuf>,
    /// Numeric precision of decoding: fp32 (default; the only one on CPU), or bf16/fp16
    /// weights under autocast on CUDA (half the weights' memory);
    /// the --llm model too.
    #[arg(long, value_enum, default_value = "fp32")]
    pub precision: crate::config::precision::Precision,
    /// Attention decoders: write one PNG per caption into DIR showing each word's attention
    /// over the picture.
    #[arg(long, value_name = "DIR")]
    pub attention: Option<PathBuf>,
    /// Zero-shot mood and aesthetic labels with CLIP (needs --clip): ranks the built-in list of
    /// 40, or LABELS (one a line), by cosine similarity with the picture, prompted as "a photo
    /// that feels {label}.". Write it after the images, or as --moods=LABELS.
    #[arg(long, value_name = "LABELS", num_args = 0..=1)]
    pub moods: Option<Option<PathBuf>>,
    /// A Hugging Face CLIP folder (config.json, model.safetensors, tokenizer files), e.g.
    /// openai/clip-vit-base-patch32, for --moods.
    #[arg(long, value_name = "HF_DIR")]
    pub clip: Option<PathBuf>,
    /// How many mood labels to print per image.
    #[arg(long, default_value_t = 3)]
    pub top_moods: usize,
    /// Restore each photo first with a restoration run (`captag restore train`): its mask
    /// network finds the damage, its inpainter fills it, and the restored picture is captioned
    /// (the caption of the photo as it was is printed too).
    #[arg(long, value_name = "RUN")]
    pub restore: Option<PathBuf>,
    #[command(flatten)]
    pub tags: TagOutArgs,
    /// BLIP/GIT folders: the text every caption starts with (BLIP's "a picture of").
    #[arg(long)]
    pub prompt: Option<String>,
    #[command(flatten)]
    pub translate: TranslateFlags,
    /// Write the social post with an instruction-tuned LLM folder (Llama/SmolLM2/Qwen2,
    /// docs/llm.md) from the caption, moods and hashtags, in place of the template post.
    #[arg(long, value_name = "HF_DIR")]
    pub llm: Option<PathBuf>,
    /// A LoRA adapter for --llm (`captag llm train`).
    #[arg(long, requires = "llm")]
    pub adapter: Option<PathBuf>,
}

/// Hashtag output flags.
#[derive(Debug, Clone, Args)]
pub struct TagOutArgs {
    /// How many hashtags to print per image (0 = none).
    #[arg(long, default_value_t = defaults::HASHTAGS_SHOWN)]
    pub hashtags: usize,
    /// The hashtag head prints tags scoring at least this (sigmoid) probability.
    #[arg(long, default_value_t = defaults::TAG_THRESHOLD)]
    pub tag_threshold: f64,
    /// A caption-text hashtag model (`captag tags train`): adds Instagram-style tags suggested
    /// from the generated caption.
    #[arg(long)]
    pub text_tags: Option<PathBuf>,
    /// A caption-text emoji model (`captag emoji train`): adds emoji suggested from the caption.
    #[arg(long)]
    pub emoji: Option<PathBuf>,
    /// `plain`: the description; `social`: one post text (description, emoji, hashtags).
    #[arg(long, value_enum, default_value = "plain")]
    pub style: StyleArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StyleArg {
    Plain,
    Social,
}

#[derive(Debug, Subcommand)]
pub enum TagsCommand {
    /// Learn caption text ⇒ hashtags from an Instagram CSV (train split; smoothing tuned on dev).
    Train {
        /// Instagram captions CSV (or a folder holding one).
        #[arg(long)]
        data: PathBuf,
        /// Model file to write (JSON).
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        dataset: DataArgs,
    },
    /// P@k / R@k / F1@k / mAP of a text model on a split, against the most-frequent-tags baseline.
    Eval {
        model: PathBuf,
        #[arg(long)]
        data: PathBuf,
        #[arg(long, value_enum, default_value = "test")]
        split: SplitArg,
        #[arg(long, default_value_t = 5)]
        k: usize,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        dataset: DataArgs,
    },
    /// Suggest hashtags for a caption.
    Suggest {
        model: PathBuf,
        /// The caption text.
        text: String,
        #[arg(short, default_value_t = 5)]
        n: usize,
    },
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Working directory for the synthetic data and the run.
    #[arg(long, default_value = "checkpoints/demo")]
    pub out: PathBuf,
    /// Training epochs (each uses one caption per image unless --captions-per-image says more).
    #[arg(long, default_value_t = 30)]
    pub epochs: usize,
    /// Number of synthetic images.
    #[arg(long, default_value_t = 3000)]
    pub count: usize,
    /// Decoder architecture to train.
    #[arg(long, value_enum, default_value = "transformer")]
    pub decoder: DecoderPreset,
    /// Captions each image contributes to an epoch (as `train --captions-per-image`).
    #[arg(long, default_value_t = 1)]
    pub captions_per_image: usize,
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The comparison (JSON): {"data", "features"?, "train": [flags], "runs": [{"name", "dir"?,
    /// "args"?}]} — see the README, "Comparing architectures".
    #[arg(long)]
    pub spec: PathBuf,
    /// Output folder (trained runs go to OUT/runs/NAME).
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, value_enum, default_value = "dev")]
    pub split: SplitArg,
    #[command(flatten)]
    pub decode: DecodeArgs,
    /// The run the intervals compare against (default: the first).
    #[arg(long)]
    pub baseline: Option<String>,
    /// Bootstrap resamples.
    #[arg(long, default_value_t = 1000)]
    pub resamples: usize,
    #[command(flatten)]
    pub dataset: DataArgs,
}

#[derive(Debug, Args)]
pub struct PlotArgs {
    /// Run directories (each with a metrics.jsonl).
    #[arg(required = true)]
    pub runs: Vec<PathBuf>,
    /// Output path without extension: writes OUT.svg and OUT.png.
    #[arg(long, default_value = "curves")]
    pub out: PathBuf,
}

#[cfg(test)]
mod tests;

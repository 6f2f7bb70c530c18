//! `captag features` and `captag features merge` (docs/scale.md for the sharded form).
use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::DataArgs;
use crate::config::EncoderKind;
use crate::data::shard::Shard;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct FeaturesArgs {
    #[command(subcommand)]
    pub command: Option<FeaturesCommand>,
    /// Dataset directory.
    #[arg(long, required = true)]
    pub data: Option<PathBuf>,
    #[arg(long, value_enum, required = true)]
    pub encoder: Option<EncoderKind>,
    /// Pretrained weights (.safetensors with torchvision names; see notebooks/), or for `clip`
    /// a Hugging Face CLIP folder as downloaded (e.g. openai/clip-vit-base-patch32).
    #[arg(long, required = true)]
    pub encoder_weights: Option<PathBuf>,
    /// Output feature cache (.safetensors); with --shard, the shard goes to
    /// OUT.shard-I-of-N.safetensors beside it unless --shard-out names another file.
    #[arg(long, required_unless_present = "shard_out")]
    pub out: Option<PathBuf>,
    /// Also store the last conv grid of every image (for attention models; large; `clip`: the
    /// patch tokens).
    #[arg(long)]
    pub grid: bool,
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Encode only shard I of N (I counts from 0): the images whose name hashes to I mod N, as
    /// a complete cache of its own that `captag features merge` joins with the others.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<Shard>,
    /// Where the --shard cache goes (default OUT.shard-I-of-N.safetensors).
    #[arg(long, requires = "shard")]
    pub shard_out: Option<PathBuf>,
    /// Do nothing when the output already exists and matches this extraction (encoder,
    /// weights, preprocessing, images, --grid, shard), so a re-submitted array job only redoes
    /// the tasks that failed.
    #[arg(long)]
    pub skip_existing: bool,
    #[command(flatten)]
    pub dataset: DataArgs,
}

#[derive(Debug, Subcommand)]
pub enum FeaturesCommand {
    /// Join the shards of `features --shard I/N` into one cache, byte for byte the one a single
    /// `captag features` run writes; refuses shards of another encoder, weights,
    /// preprocessing, dataset or N, and a missing or repeated shard.
    Merge(FeaturesMergeArgs),
}

#[derive(Debug, Args)]
pub struct FeaturesMergeArgs {
    /// Every shard file (OUT.shard-I-of-N.safetensors for I = 0..N-1).
    #[arg(required = true)]
    pub shards: Vec<PathBuf>,
    /// The merged cache.
    #[arg(long)]
    pub out: PathBuf,
}

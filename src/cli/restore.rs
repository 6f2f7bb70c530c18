//! `captag damage` and `captag restore` (README, "Restoring damaged photos").
use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::{DataArgs, DecodeArgs, SplitArg};

#[derive(Debug, Args)]
pub struct DamageArgs {
    /// Dataset directory (any layout captag reads).
    #[arg(long)]
    pub data: PathBuf,
    /// Output folder (created; refused unless empty): images/, masks/, clean/ (with --size),
    /// damage.json.
    #[arg(long)]
    pub out: PathBuf,
    /// Squash every image to SIZE × SIZE first (default: keep each image's size).
    #[arg(long)]
    pub size: Option<u32>,
    #[command(flatten)]
    pub damage: DamageFlags,
    #[command(flatten)]
    pub dataset: DataArgs,
}

/// How much damage each image gets.
#[derive(Debug, Clone, Args)]
pub struct DamageFlags {
    /// Fewest damage operations per image.
    #[arg(long, default_value_t = 2)]
    pub min_ops: usize,
    /// Most damage operations per image.
    #[arg(long, default_value_t = 5)]
    pub max_ops: usize,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct RestoreArgs {
    #[command(subcommand)]
    pub command: Option<RestoreCommand>,
    #[command(flatten)]
    pub apply: RestoreApplyArgs,
}

/// `captag restore RUN IMAGE|DIR... --out DIR`.
#[derive(Debug, Args)]
pub struct RestoreApplyArgs {
    /// Restoration run directory (`captag restore train`).
    #[arg(required = true)]
    pub run: Option<PathBuf>,
    /// Image files or folders.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Output folder: NAME.mask.png (255 = damaged) and NAME.restored.png per image.
    #[arg(long, required = true)]
    pub out: Option<PathBuf>,
    /// A known damage mask (non-zero = damaged, the image's size) instead of the predicted one;
    /// one input image only.
    #[arg(long)]
    pub mask: Option<PathBuf>,
    /// Use the last epoch's weights instead of the best.
    #[arg(long)]
    pub last: bool,
}

#[derive(Debug, Subcommand)]
pub enum RestoreCommand {
    /// Train the mask U-Net (BCE + Dice) and the partial-convolution inpainter (hole/valid L1 +
    /// total variation) on a dataset's training images, damaged on the fly.
    Train(RestoreTrainArgs),
    /// Mask IoU/F1 and PSNR/SSIM on a split with held-out damage, against the damaged image, a
    /// blur fill and a diffusion fill; with --captioner, captioning scores of clean, damaged and
    /// restored photos.
    Eval(RestoreEvalArgs),
}

#[derive(Debug, Args)]
pub struct RestoreTrainArgs {
    /// Dataset directory.
    #[arg(long)]
    pub data: PathBuf,
    /// Run directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Continue the run in --out exactly where it stopped.
    #[arg(long)]
    pub resume: bool,
    /// Image side in pixels (a multiple of 2^depth: 32 with the default depths).
    #[arg(long, default_value_t = 128)]
    pub size: u32,
    /// Total number of epochs (with --resume: the new total).
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Train on the first N training images (by id) only.
    #[arg(long)]
    pub limit: Option<usize>,
    /// The same damage every epoch (the damage `restore eval` draws with the same --seed): a
    /// check that the networks can overfit a few images, not a way to train.
    #[arg(long)]
    pub fixed_damage: bool,
    /// Dev images scored after every epoch.
    #[arg(long, default_value_t = 64)]
    pub dev_limit: usize,
    /// Channels of the mask U-Net's first level (doubling per level, at most 8×).
    #[arg(long, default_value_t = 16)]
    pub mask_channels: i64,
    /// Levels of the mask U-Net.
    #[arg(long, default_value_t = 4)]
    pub mask_depth: usize,
    /// Channels of the inpainter's first level.
    #[arg(long, default_value_t = 16)]
    pub inpaint_channels: i64,
    /// Levels of the inpainter (stride-2 partial convolutions).
    #[arg(long, default_value_t = 5)]
    pub inpaint_depth: usize,
    /// SqueezeNet 1.1 weights (.safetensors, torchvision names): adds the perceptual and style
    /// loss terms over its frozen features.
    #[arg(long)]
    pub encoder_weights: Option<PathBuf>,
    #[command(flatten)]
    pub damage: DamageFlags,
    #[command(flatten)]
    pub dataset: DataArgs,
}

#[derive(Debug, Args)]
pub struct RestoreEvalArgs {
    /// Restoration run directory.
    pub run: PathBuf,
    /// Dataset directory.
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long, value_enum, default_value = "dev")]
    pub split: SplitArg,
    /// Score the first N images of the split (by id).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Use the last epoch's weights instead of the best.
    #[arg(long)]
    pub last: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// A captioning run: also caption each photo clean, damaged (at its own size) and restored
    /// four ways, and print BLEU-1..4, CIDEr-D and ROUGE-L of each version.
    #[arg(long, value_name = "CKPT")]
    pub captioner: Option<PathBuf>,
    /// How the captioner decodes (with --captioner).
    #[command(flatten)]
    pub decode: DecodeArgs,
    #[command(flatten)]
    pub dataset: DataArgs,
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use crate::cli::{Cli, Command};

    #[test]
    fn the_command_line_is_consistent_and_restore_parses_both_forms() {
        Cli::command().debug_assert();
        let c = Cli::try_parse_from(["captag", "restore", "RUN", "a.jpg", "--out", "o"]).unwrap();
        let Command::Restore(r) = c.command else {
            panic!("not restore")
        };
        assert!(r.command.is_none() && r.apply.inputs.len() == 1);
        let c = Cli::try_parse_from(["captag", "restore", "eval", "RUN", "--data", "d"]).unwrap();
        let Command::Restore(r) = c.command else {
            panic!("not restore")
        };
        assert!(matches!(r.command, Some(super::RestoreCommand::Eval(_))));
        // RUN and IMAGE are required without a subcommand.
        assert!(Cli::try_parse_from(["captag", "restore", "--out", "o"]).is_err());
    }
}

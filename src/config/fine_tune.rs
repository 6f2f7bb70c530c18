//! `train --fine-tune-encoder`: which part of a pretrained CNN trains with the decoder (the
//! Show-Attend-Tell tutorial's `fine_tune_encoder` option). The last `blocks` blocks and the
//! layers after them train, everything before stays as the pretrained weights have it, and
//! BatchNorm keeps the ImageNet statistics (the encoder always runs in eval mode: batches of a
//! few images would give noisy statistics and undo what the weights learned).
//!
//! The blocks are the network's repeated units: EfficientNet-Lite's MBConv blocks
//! (`_blocks.N`, then `_conv_head` and `_bn1` always train with them), SqueezeNet 1.1's fire
//! modules (`features.N`). `model::captioner` turns this into `requires_grad` per variable.
use serde::{Deserialize, Serialize};

use super::EncoderKind;

/// Saved in the run's `config.json` (`model.fine_tune`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FineTune {
    /// Trainable blocks, counted from the last.
    pub blocks: usize,
}

impl EncoderKind {
    /// How many blocks the encoder has, for encoders that can be fine-tuned.
    pub fn fine_tune_blocks(self) -> Option<usize> {
        match self {
            EncoderKind::EfficientnetLite0 => Some(16),
            EncoderKind::EfficientnetLite2 => Some(21),
            EncoderKind::Squeezenet1_1 => Some(8),
            _ => None,
        }
    }

    /// `--fine-tune-blocks`' default: EfficientNet-Lite's last two stages (the 7×7 ones at
    /// 224 px: Lite0 4 + 1 blocks, Lite2 5 + 1), SqueezeNet's last two fire modules (fire8,
    /// fire9) — the layers closest to the features the decoder reads, and the cheapest to
    /// train, as the tutorial fine-tunes ResNet's last three of four stages.
    pub fn default_fine_tune_blocks(self) -> usize {
        match self {
            EncoderKind::EfficientnetLite0 => 5,
            EncoderKind::EfficientnetLite2 => 6,
            _ => 2,
        }
    }
}

impl FineTune {
    /// Refuses an encoder that cannot be fine-tuned and a block count it does not have.
    pub fn check(&self, kind: EncoderKind) -> std::result::Result<(), String> {
        let Some(n) = kind.fine_tune_blocks() else {
            return Err(format!(
                "--fine-tune-encoder: the {} encoder cannot be fine-tuned (efficientnet_lite0, \
                 efficientnet_lite2 and squeezenet1_1 can)",
                kind.as_str()
            ));
        };
        if self.blocks == 0 || self.blocks > n {
            return Err(format!(
                "--fine-tune-blocks {}: the {} encoder has {n} blocks (give 1 to {n})",
                self.blocks,
                kind.as_str()
            ));
        }
        Ok(())
    }

    /// Whether the encoder variable `name` (relative to the encoder's root, under its
    /// pretrained names) trains.
    pub fn trains(&self, kind: EncoderKind, name: &str) -> bool {
        let Some(n) = kind.fine_tune_blocks() else {
            return false;
        };
        let first = n.saturating_sub(self.blocks);
        match kind {
            EncoderKind::EfficientnetLite0 | EncoderKind::EfficientnetLite2 => {
                if name.starts_with("_conv_head.") || name.starts_with("_bn1.") {
                    return true;
                }
                block_index(name, "_blocks.").is_some_and(|b| b >= first)
            }
            // torchvision indices of the fire modules: 3, 4, 6, 7, 9, 10, 11, 12.
            EncoderKind::Squeezenet1_1 => {
                const FIRES: [usize; 8] = [3, 4, 6, 7, 9, 10, 11, 12];
                block_index(name, "features.")
                    .and_then(|i| FIRES.iter().position(|&f| f == i))
                    .is_some_and(|b| b >= first)
            }
            _ => false,
        }
    }
}

/// `N` of a name `PREFIX N.rest`.
fn block_index(name: &str, prefix: &str) -> Option<usize> {
    let rest = name.strip_prefix(prefix)?;
    rest.split('.').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_blocks_and_the_head_train() {
        let k = EncoderKind::EfficientnetLite0;
        let f = FineTune { blocks: 5 };
        for (name, want) in [
            ("_conv_stem.weight", false),
            ("_bn0.running_mean", false),
            ("_blocks.10._project_conv.weight", false),
            ("_blocks.11._expand_conv.weight", true),
            ("_blocks.15._bn2.bias", true),
            ("_conv_head.weight", true),
            ("_bn1.weight", true),
            ("_fc.weight", false),
        ] {
            assert_eq!(f.trains(k, name), want, "{name}");
        }
        let sq = FineTune { blocks: 2 };
        let s = EncoderKind::Squeezenet1_1;
        assert!(sq.trains(s, "features.12.expand3x3.weight"));
        assert!(sq.trains(s, "features.11.squeeze.bias"));
        assert!(!sq.trains(s, "features.10.squeeze.bias"));
        assert!(!sq.trains(s, "features.0.weight"));
    }

    #[test]
    fn block_counts_are_checked() {
        let k = EncoderKind::EfficientnetLite2;
        assert!(FineTune { blocks: 21 }.check(k).is_ok());
        let e = FineTune { blocks: 22 }.check(k).unwrap_err();
        assert!(e.contains("has 21 blocks"), "{e}");
        assert!(FineTune { blocks: 0 }.check(k).is_err());
        let e = FineTune { blocks: 1 }
            .check(EncoderKind::Vgg19)
            .unwrap_err();
        assert!(e.contains("cannot be fine-tuned"), "{e}");
    }
}

//! The numeric precision of a run (`--precision`): a config value stored in the run's
//! `config.json` (so `--resume` continues in the same precision) and the loss-scale state saved
//! with the training state. Running in it is `model::precision`'s business.
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Float32 everywhere (the only choice on CPU).
    #[default]
    Fp32,
    /// bfloat16 autocast on CUDA: float32's range, no loss scaling needed.
    Bf16,
    /// float16 autocast on CUDA with a dynamic loss scale.
    Fp16,
}

impl Precision {
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
            Precision::Fp16 => "fp16",
        }
    }

    /// Whether training needs a loss scale (fp16's narrow range underflows small gradients).
    pub fn scales_loss(self) -> bool {
        self == Precision::Fp16
    }

    pub fn is_fp32(&self) -> bool {
        *self == Precision::Fp32
    }
}

/// An fp16 run's loss scale and the good steps since it last changed (PyTorch's `GradScaler`
/// state), saved for exact resume.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScalerState {
    pub scale: f64,
    pub growth_tracker: i64,
}

impl Default for ScalerState {
    fn default() -> Self {
        ScalerState {
            scale: 65536.0,
            growth_tracker: 0,
        }
    }
}

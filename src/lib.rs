//! captag: train, evaluate and run classic image-captioning and hashtag models on libtorch.
//!
//! The crate is laid out along the pipeline a caption goes through:
//! - [`data`]: dataset layouts (Flickr8k, Karpathy, Instagram, synthetic) into one representation,
//!   image decoding, batching and the feature cache;
//! - [`text`]: caption normalization, hashtag extraction, vocabulary, Hugging Face tokenizers;
//! - [`model`]: encoders (VGG19, SqueezeNet 1.1, EfficientNet-Lite, a small CNN, CLIP's image
//!   tower), the image features they produce, the caption decoders (Show-and-Tell LSTM/GRU, soft
//!   attention, transformer, ClipCap) behind one interface; decoding strategies over a `step`
//!   closure and the one validated decoding request (`model::decoding`); the shared transformer
//!   blocks (`model::blocks`) and the Hugging Face families on them (CLIP, GPT-2, Llama/Qwen2);
//! - [`run`]: the run directory (create, lock, reopen, open; config, vocabulary, tags, weights);
//! - [`train`]: the training loop in phases, its optimizer state and the epoch commit;
//! - [`infer`]: the caption runner and its one JSON result type (`caption --json`, the web API),
//!   hashtags, emoji, moods, attention maps;
//! - [`eval`]: metrics in pure Rust (BLEU exactly as pycocoevalcap and NLTK compute it, CIDEr-D,
//!   ROUGE-L), baselines and the evaluation runner;
//! - [`experiments`]: `captag compare` and `captag plot`;
//! - [`restore`]: damaged-photo restoration (damage masks, partial-convolution inpainting);
//! - [`serve`]: the web page and JSON API;
//! - [`config`], [`cli`], [`commands`]: configuration structs, the command line and its jobs.
//!
//! docs/ARCHITECTURE.md draws the layers and says where a new decoder goes.
pub mod cli;
pub mod commands;
pub mod config;
pub mod data;
pub mod error;
pub mod eval;
pub mod experiments;
pub mod font;
pub mod fsio;
pub mod infer;
pub mod input;
pub mod model;
pub mod restore;
pub mod run;
pub mod serve;
pub mod text;
pub mod train;

pub use error::{Error, Result};

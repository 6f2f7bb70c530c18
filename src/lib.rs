//! captag: train, evaluate and run classic image-captioning and hashtag models on libtorch.
//!
//! The crate is laid out along the pipeline a caption goes through:
//! - [`data`]: dataset layouts (Flickr8k, Karpathy, Instagram, synthetic) into one representation,
//!   image decoding and batching;
//! - [`text`]: caption normalization, hashtag extraction, vocabulary;
//! - [`eval`]: metrics in pure Rust (BLEU exactly as pycocoevalcap and NLTK compute it).
pub mod data;
pub mod error;
pub mod eval;
pub mod text;

pub use error::{Error, Result};

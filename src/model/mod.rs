//! Networks: image encoders ([`encoder`], [`cnn`]), the features they hand on ([`features`]),
//! caption decoders behind one interface ([`decoder`]), hashtag models ([`tagger`],
//! [`text_tagger`]) and the [`captioner::Captioner`] that owns loss and generation. Every module
//! is built as `new(p: nn::Path, cfg)` + `forward_t(&self, xs, train)`; variable paths mirror
//! field names (docs/ARCHITECTURE.md).
pub mod bert;
pub mod blip;
pub mod blocks;
pub mod captioner;
pub mod clip;
pub mod cnn;
pub mod decoder;
pub mod decoding;
pub mod effnet;
pub mod encoder;
pub mod features;
pub mod git;
pub mod gpt2;
pub mod hf;
pub mod llama;
pub mod policy;
pub mod precision;
pub mod rnn;
pub mod seq2seq;
pub mod tagger;
pub mod text_tagger;
pub mod vl;
pub mod weights;

pub use encoder::Encoder;
pub use features::ImageFeatures;

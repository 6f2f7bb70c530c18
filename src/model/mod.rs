//! Networks: image encoders ([`cnn`]), recurrent layers with PyTorch names ([`rnn`]) and the
//! Show-and-Tell caption decoder ([`decoder`]). Every module is built as
//! `new(p: nn::Path, cfg)` + `forward_t(&self, xs, train)`, variable paths mirror field names.
pub mod captioner;
pub mod cnn;
pub mod decoder;
pub mod rnn;
pub mod tagger;
pub mod text_tagger;

use tch::{nn, Tensor};

use crate::config::EncoderKind;

/// One interface over the three encoders.
#[derive(Debug)]
pub enum Encoder {
    SmallCnn(cnn::SmallCnn),
    SqueezeNet(cnn::SqueezeNet),
    Vgg19(cnn::Vgg19),
}

/// What an encoder gives a decoder.
#[derive(Debug)]
pub struct EncoderOutput {
    /// `(B, D)` image vector.
    pub pooled: Tensor,
    /// `(B, C, H, W)` last conv feature grid (for attention decoders).
    pub grid: Tensor,
}

impl Encoder {
    pub fn new(p: nn::Path, kind: EncoderKind) -> Self {
        match kind {
            EncoderKind::SmallCnn => Encoder::SmallCnn(cnn::SmallCnn::new(p)),
            EncoderKind::Squeezenet1_1 => Encoder::SqueezeNet(cnn::SqueezeNet::new(p)),
            EncoderKind::Vgg19 => Encoder::Vgg19(cnn::Vgg19::new(p)),
        }
    }

    /// `xs (B,3,S,S)` preprocessed as [`EncoderKind::default_preprocess`] says.
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> EncoderOutput {
        let (pooled, grid) = match self {
            Encoder::SmallCnn(m) => m.forward_t(xs, train),
            Encoder::SqueezeNet(m) => m.forward_t(xs, train),
            Encoder::Vgg19(m) => m.forward_t(xs, train),
        };
        EncoderOutput { pooled, grid }
    }
}

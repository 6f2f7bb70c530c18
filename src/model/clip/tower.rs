//! CLIP's two transformer towers under `transformers`' names: the ViT image tower
//! (`vision_model.*`: patch convolution, class token, learned positions, `pre_layrnorm` (sic),
//! pre-LN encoder layers, `post_layernorm` on the class token) and the text tower
//! (`text_model.*`: token + position embeddings, the same encoder layers under a causal mask,
//! `final_layer_norm`, pooled at the end-of-text position).
use tch::{nn, Kind, Tensor};

use super::{Activation, ClipTextConfig, ClipVisionConfig};
use crate::model::blocks::{layer_norm, Attention, AttentionConfig, LayerNorm, Mlp, MlpConfig};

/// One pre-LN encoder layer: `x + attn(ln1(x))`, then `x + mlp(ln2(x))`.
#[derive(Debug)]
struct EncoderLayer {
    self_attn: Attention,
    layer_norm1: LayerNorm,
    layer_norm2: LayerNorm,
    mlp: Mlp,
}

/// The sizes shared by the two towers' encoders.
struct EncoderSizes {
    layers: i64,
    d: i64,
    ff: i64,
    heads: i64,
    eps: f64,
    act: Activation,
    /// The text tower's causal mask.
    causal: bool,
}

impl EncoderLayer {
    fn new(p: nn::Path, c: &EncoderSizes) -> Self {
        let mut attn = AttentionConfig::new(c.d, c.heads);
        attn.causal = c.causal;
        EncoderLayer {
            self_attn: Attention::new(&p / "self_attn", &attn),
            layer_norm1: layer_norm(&p / "layer_norm1", c.d, c.eps),
            layer_norm2: layer_norm(&p / "layer_norm2", c.d, c.eps),
            mlp: Mlp::new(&p / "mlp", &MlpConfig::new(c.d, c.ff, c.act)),
        }
    }

    /// `x (B, T, D)` ⇒ `(B, T, D)`.
    fn forward(&self, x: &Tensor) -> Tensor {
        let (a, _) = self
            .self_attn
            .forward_t(&x.apply(&self.layer_norm1), None, None, None, false);
        let x = x + a;
        &x + self.mlp.forward_t(&x.apply(&self.layer_norm2), false)
    }
}

#[derive(Debug)]
struct Encoder {
    layers: Vec<EncoderLayer>,
}

impl Encoder {
    fn new(p: nn::Path, c: &EncoderSizes) -> Self {
        let l = &p / "layers";
        Encoder {
            layers: (0..c.layers)
                .map(|i| EncoderLayer::new(&l / i, c))
                .collect(),
        }
    }

    fn forward(&self, x: Tensor) -> Tensor {
        self.layers.iter().fold(x, |x, l| l.forward(&x))
    }
}

/// The ViT image tower (`vision_model`).
#[derive(Debug)]
pub struct VisionTower {
    class_embedding: Tensor,
    patch_embedding: nn::Conv2D,
    position_embedding: nn::Embedding,
    pre_layrnorm: LayerNorm,
    encoder: Encoder,
    post_layernorm: LayerNorm,
    pub image_size: i64,
    pub patch_size: i64,
}

impl VisionTower {
    pub fn new(p: nn::Path, c: &ClipVisionConfig) -> Self {
        let d = c.hidden_size;
        let e = &p / "embeddings";
        let grid = c.image_size / c.patch_size;
        let conv = nn::ConvConfig {
            stride: c.patch_size,
            bias: false,
            ..Default::default()
        };
        VisionTower {
            class_embedding: e.var("class_embedding", &[d], nn::Init::Const(0.0)),
            patch_embedding: nn::conv2d(
                &e / "patch_embedding",
                c.num_channels,
                d,
                c.patch_size,
                conv,
            ),
            position_embedding: nn::embedding(
                &e / "position_embedding",
                grid * grid + 1,
                d,
                Default::default(),
            ),
            pre_layrnorm: layer_norm(&p / "pre_layrnorm", d, c.layer_norm_eps),
            encoder: Encoder::new(
                &p / "encoder",
                &EncoderSizes {
                    layers: c.num_hidden_layers,
                    d,
                    ff: c.intermediate_size,
                    heads: c.num_attention_heads,
                    eps: c.layer_norm_eps,
                    act: c.hidden_act,
                    causal: false,
                },
            ),
            post_layernorm: layer_norm(&p / "post_layernorm", d, c.layer_norm_eps),
            image_size: c.image_size,
            patch_size: c.patch_size,
        }
    }

    /// `pixels (B, C, S, S)` ⇒ `(last_hidden_state (B, 1 + P, D), pooled (B, D))`: the encoder's
    /// output (class token first, then the patches in row-major order) and the class token
    /// after `post_layernorm`.
    pub fn forward(&self, pixels: &Tensor) -> (Tensor, Tensor) {
        let b = pixels.size()[0];
        let patches = pixels
            .apply(&self.patch_embedding) // (B, D, S/p, S/p)
            .flatten(2, 3)
            .transpose(1, 2); // (B, P, D)
        let d = self.class_embedding.size()[0];
        let cls = self
            .class_embedding
            .view([1, 1, d])
            .expand([b, 1, d], false); // (B, 1, D)
        let x = Tensor::cat(&[cls, patches], 1) + &self.position_embedding.ws; // (B, 1 + P, D)
        let last = self.encoder.forward(x.apply(&self.pre_layrnorm)); // (B, 1 + P, D)
        let pooled = last.select(1, 0).apply(&self.post_layernorm); // (B, D)
        (last, pooled)
    }

    /// `pixels (B, C, S, S)` ⇒ every token after `post_layernorm` `(B, 1 + P, D)`: GIT's image
    /// encoder (`GitVisionTransformer`), which normalises all tokens, not only the class token.
    pub fn forward_all(&self, pixels: &Tensor) -> Tensor {
        self.forward(pixels).0.apply(&self.post_layernorm)
    }
}

/// The text tower (`text_model`).
#[derive(Debug)]
pub struct TextTower {
    token_embedding: nn::Embedding,
    position_embedding: nn::Embedding,
    encoder: Encoder,
    final_layer_norm: LayerNorm,
    pub max_positions: i64,
    /// `None`: the legacy pooling (`eos_token_id == 2` in the config: the position of the
    /// largest id, which is `<|endoftext|>` in CLIP's vocabulary); `Some(id)`: the first
    /// position of `id`.
    pool_eos: Option<i64>,
}

impl TextTower {
    pub fn new(p: nn::Path, c: &ClipTextConfig) -> Self {
        let d = c.hidden_size;
        let e = &p / "embeddings";
        TextTower {
            token_embedding: nn::embedding(
                &e / "token_embedding",
                c.vocab_size,
                d,
                Default::default(),
            ),
            position_embedding: nn::embedding(
                &e / "position_embedding",
                c.max_position_embeddings,
                d,
                Default::default(),
            ),
            encoder: Encoder::new(
                &p / "encoder",
                &EncoderSizes {
                    layers: c.num_hidden_layers,
                    d,
                    ff: c.intermediate_size,
                    heads: c.num_attention_heads,
                    eps: c.layer_norm_eps,
                    act: c.hidden_act,
                    causal: true,
                },
            ),
            final_layer_norm: layer_norm(&p / "final_layer_norm", d, c.layer_norm_eps),
            max_positions: c.max_position_embeddings,
            pool_eos: c.eos_token_id().filter(|&id| id != 2),
        }
    }

    /// `ids (B, T)` int64 ⇒ `(last_hidden_state (B, T, D), pooled (B, D))`. Every row must hold
    /// its end-of-text token (the tokenizer puts it there); padding after it does not change
    /// the pooled vector, the mask being causal.
    pub fn forward(&self, ids: &Tensor) -> (Tensor, Tensor) {
        let t = *ids.size().last().unwrap_or(&0);
        let pos = self.position_embedding.ws.narrow(0, 0, t); // (T, D)
        let x = ids.apply(&self.token_embedding) + pos; // (B, T, D)
        let last = self.encoder.forward(x).apply(&self.final_layer_norm); // (B, T, D), causal
        let at = match self.pool_eos {
            None => ids.argmax(-1, false),                                 // (B,)
            Some(eos) => ids.eq(eos).to_kind(Kind::Int).argmax(-1, false), // (B,) first match
        };
        let rows = Tensor::arange(ids.size()[0], (Kind::Int64, ids.device()));
        let pooled = last.index(&[Some(rows), Some(at)]); // (B, D)
        (last, pooled)
    }
}

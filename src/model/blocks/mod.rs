//! The transformer building blocks every transformer in captag is made of — CLIP's towers,
//! GPT-2, captag's own transformer decoder and ClipCap's mapper today, and each Hugging Face
//! family added later (docs/ARCHITECTURE.md, "Transformer blocks"). One attention
//! ([`Attention`]: self or cross, causal or not, separate or fused q/k/v projections,
//! grouped-query heads, rotary positions, a key/value cache, padding masks) computed by
//! libtorch's fused `scaled_dot_product_attention`; LayerNorm and RMSNorm ([`norm`]); GELU,
//! quick-GELU and SwiGLU feed-forwards ([`mlp`]); sinusoidal and rotary positions
//! ([`positions`]). Each is built as `new(p, cfg)` under the names the folders store, so a
//! family's module is wiring, not arithmetic.
pub mod attention;
pub mod generate;
pub mod linear;
pub mod mlp;
pub mod norm;
pub mod positions;

pub use attention::{Attention, AttentionConfig, KvCache, Layout};
pub use linear::Proj;
pub use mlp::{Mlp, MlpConfig, SwiGlu};
pub use norm::{layer_norm, LayerNorm, RmsNorm};
pub use positions::{sinusoidal, RopeAt, Rotary};

use tch::nn;

/// `p / "a" / "b"` for the dotted name `"a.b"` (BERT-style folders nest a layer's projections
/// under different parents: `attention.self.query`, `attention.output.dense`).
pub fn sub<'a>(p: &nn::Path<'a>, dotted: &str) -> nn::Path<'a> {
    dotted
        .split('.')
        .filter(|part| !part.is_empty())
        .fold(p.clone(), |q, part| q.sub(part))
}

#[cfg(test)]
mod tests;

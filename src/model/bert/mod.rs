//! The BERT stack (Devlin et al. 2019) under `transformers`' names, shared by the three
//! families that use it: BLIP's text decoder (causal, with cross-attention to the image),
//! GIT's text/image stack (one self-attention over image and caption tokens) and the plain
//! encoder `BertModel` (all-MiniLM-L6-v2, the real-weights check of this stack;
//! docs/vision-language.md). Post-LN layers: `attention.self.{query,key,value}`,
//! `attention.output.{dense,LayerNorm}`, optional `crossattention.*` of the same shape,
//! `intermediate.dense`, `output.{dense,LayerNorm}`; embeddings `word_embeddings`,
//! `position_embeddings`, optional `token_type_embeddings`, `LayerNorm`. Built on the shared
//! blocks: the attentions are [`Attention`]s with BERT's dotted names, the feed-forward an
//! [`Mlp`] named `intermediate.dense` / `output.dense`.
use std::path::Path;

use serde::{Deserialize, Serialize};
use tch::{nn, Device, Kind, Tensor};

use crate::model::blocks::{
    layer_norm, Attention, AttentionConfig, LayerNorm, Layout, Mlp, MlpConfig,
};
use crate::model::hf::{read_config, Activation, HfWeights};
use crate::{Error, Result};

/// BERT's attention names, relative to `attention` / `crossattention`.
pub const BERT_ATTENTION: Layout = Layout::Separate {
    q: "self.query",
    k: "self.key",
    v: "self.value",
    out: "output.dense",
};

/// The sizes of one BERT-style stack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BertSizes {
    pub vocab: i64,
    pub d: i64,
    pub layers: i64,
    pub heads: i64,
    pub ff: i64,
    pub act: Activation,
    pub eps: f64,
    pub max_positions: i64,
    /// `token_type_embeddings` rows (0: none, as in BLIP and GIT).
    pub type_vocab: i64,
    /// Width of the memory cross-attention reads (`None`: no cross-attention).
    pub cross: Option<i64>,
    /// Dropout on the attention weights and the hidden states, in training.
    pub dropout: f64,
}

impl BertSizes {
    pub fn check(&self, place: &str) -> Result<()> {
        let bad = |why: String| Error::invalid(format!("{place}: {why}"));
        for (name, x) in [
            ("hidden_size", self.d),
            ("vocab_size", self.vocab),
            ("num_attention_heads", self.heads),
            ("intermediate_size", self.ff),
            ("max_position_embeddings", self.max_positions),
        ] {
            if x <= 0 {
                return Err(bad(format!("{name} is {x}, it must be positive")));
            }
        }
        if self.layers < 0 || self.type_vocab < 0 {
            return Err(bad("negative num_hidden_layers or type_vocab_size".into()));
        }
        if self.d % self.heads != 0 {
            return Err(bad(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.d, self.heads
            )));
        }
        Ok(())
    }
}

/// `word_embeddings` + `position_embeddings` (+ `token_type_embeddings[0]`), `LayerNorm`.
#[derive(Debug)]
pub struct BertEmbeddings {
    pub word: nn::Embedding,
    position: nn::Embedding,
    token_type: Option<nn::Embedding>,
    norm: LayerNorm,
    dropout: f64,
}

impl BertEmbeddings {
    pub fn new(p: nn::Path, c: &BertSizes) -> Self {
        let e = Default::default();
        BertEmbeddings {
            word: nn::embedding(&p / "word_embeddings", c.vocab, c.d, e),
            position: nn::embedding(&p / "position_embeddings", c.max_positions, c.d, e),
            token_type: (c.type_vocab > 0)
                .then(|| nn::embedding(&p / "token_type_embeddings", c.type_vocab, c.d, e)),
            norm: layer_norm(&p / "LayerNorm", c.d, c.eps),
            dropout: c.dropout,
        }
    }

    /// `ids (B, T)` at positions `offset..offset + T` ⇒ `(B, T, d)`.
    pub fn forward_t(&self, ids: &Tensor, offset: i64, train: bool) -> Tensor {
        let t = ids.size()[1];
        let mut x = ids.apply(&self.word) + self.position.ws.narrow(0, offset, t); // (B, T, d)
        if let Some(tt) = &self.token_type {
            x = &x + tt.ws.get(0);
        }
        x.apply(&self.norm).dropout(self.dropout, train)
    }
}

/// One post-LN BERT layer, self-attention causal or not, with optional cross-attention.
#[derive(Debug)]
pub struct BertLayer {
    pub attention: Attention,
    attention_norm: LayerNorm,
    cross: Option<(Attention, LayerNorm)>,
    mlp: Mlp,
    output_norm: LayerNorm,
    dropout: f64,
}

impl BertLayer {
    pub fn new(p: nn::Path, c: &BertSizes, causal: bool) -> Self {
        let mut a = AttentionConfig::new(c.d, c.heads)
            .layout(BERT_ATTENTION)
            .dropout(c.dropout);
        a.causal = causal;
        let mut mlp = MlpConfig::new(c.d, c.ff, c.act);
        mlp.names = ("intermediate.dense", "output.dense");
        let cross = c.cross.map(|kv_in| {
            let x = &p / "crossattention";
            let cfg = AttentionConfig::new(c.d, c.heads)
                .layout(BERT_ATTENTION)
                .dropout(c.dropout)
                .cross(kv_in);
            (
                Attention::new(x.clone(), &cfg),
                layer_norm(&x / "output" / "LayerNorm", c.d, c.eps),
            )
        });
        BertLayer {
            attention: Attention::new(&p / "attention", &a),
            attention_norm: layer_norm(&p / "attention" / "output" / "LayerNorm", c.d, c.eps),
            cross,
            mlp: Mlp::new(p.clone(), &mlp),
            output_norm: layer_norm(&p / "output" / "LayerNorm", c.d, c.eps),
            dropout: c.dropout,
        }
    }

    /// Keys/values of the memory `(B, M, kv_in)` for the cross-attention (computed once per
    /// image, reused at every step).
    pub fn cross_kv(&self, memory: &Tensor) -> Option<(Tensor, Tensor)> {
        self.cross.as_ref().map(|(a, _)| a.keys_values(memory))
    }

    /// The rest of the layer after its self-attention output `a` of input `x`: residual and
    /// LayerNorm, cross-attention to `cross_kv`, feed-forward.
    fn finish(
        &self,
        x: &Tensor,
        a: Tensor,
        cross_kv: Option<&(Tensor, Tensor)>,
        train: bool,
    ) -> Tensor {
        let mut x = (a.dropout(self.dropout, train) + x).apply(&self.attention_norm);
        if let (Some((attn, norm)), Some((k, v))) = (&self.cross, cross_kv) {
            let c = attn.attend(&x, k, v, None, train);
            x = (c.dropout(self.dropout, train) + &x).apply(norm);
        }
        let h = self.mlp.forward_t(&x, train); // (B, T, d)
        (h.dropout(self.dropout, train) + x).apply(&self.output_norm)
    }

    /// `x (B, T, d)` after `past`; `pad (B, S)` true at real keys. ⇒ `(B, T, d)` and this
    /// layer's keys/values of all positions.
    pub fn forward_t(
        &self,
        x: &Tensor,
        past: Option<&(Tensor, Tensor)>,
        pad: Option<&Tensor>,
        cross_kv: Option<&(Tensor, Tensor)>,
        train: bool,
    ) -> (Tensor, (Tensor, Tensor)) {
        let (a, kv) = self.attention.forward_t(x, past, pad, None, train);
        (self.finish(x, a, cross_kv, train), kv)
    }

    /// [`BertLayer::forward_t`] under an explicit mask `(B | 1, 1, T, S)` (GIT).
    pub fn forward_masked(
        &self,
        x: &Tensor,
        past: Option<&(Tensor, Tensor)>,
        mask: Option<&Tensor>,
        train: bool,
    ) -> (Tensor, (Tensor, Tensor)) {
        let (a, kv) = self.attention.forward_masked(x, past, mask, train);
        (self.finish(x, a, None, train), kv)
    }
}

/// `encoder.layer.N` under `p`.
pub fn layers(p: &nn::Path, c: &BertSizes, causal: bool) -> Vec<BertLayer> {
    let l = p / "layer";
    (0..c.layers)
        .map(|i| BertLayer::new(&l / i, c, causal))
        .collect()
}

/// `BertConfig` as `config.json` stores it, `transformers`' defaults for absent fields.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct BertConfig {
    pub vocab_size: i64,
    pub hidden_size: i64,
    pub num_hidden_layers: i64,
    pub num_attention_heads: i64,
    pub intermediate_size: i64,
    pub hidden_act: Activation,
    pub max_position_embeddings: i64,
    pub type_vocab_size: i64,
    pub layer_norm_eps: f64,
    pub model_type: Option<String>,
}

impl Default for BertConfig {
    fn default() -> Self {
        BertConfig {
            vocab_size: 30522,
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            hidden_act: Activation::Gelu,
            max_position_embeddings: 512,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
            model_type: None,
        }
    }
}

impl BertConfig {
    pub fn sizes(&self) -> BertSizes {
        BertSizes {
            vocab: self.vocab_size,
            d: self.hidden_size,
            layers: self.num_hidden_layers,
            heads: self.num_attention_heads,
            ff: self.intermediate_size,
            act: self.hidden_act,
            eps: self.layer_norm_eps,
            max_positions: self.max_position_embeddings,
            type_vocab: self.type_vocab_size,
            cross: None,
            dropout: 0.0,
        }
    }
}

/// `BertModel` (the encoder, no pooler): a folder such as sentence-transformers'
/// all-MiniLM-L6-v2, whose last hidden states are compared with `transformers` on real weights.
#[derive(Debug)]
pub struct BertModel {
    pub vs: nn::VarStore,
    embeddings: BertEmbeddings,
    layers: Vec<BertLayer>,
    pub sizes: BertSizes,
}

impl BertModel {
    /// `dir/config.json` + `model.safetensors`, names with or without the `bert.` prefix.
    pub fn load(dir: &Path, device: Device) -> Result<Self> {
        let (cfg, _) = read_config::<BertConfig>(dir, "BERT")?;
        if let Some(t) = cfg.model_type.as_deref().filter(|t| *t != "bert") {
            return Err(Error::invalid(format!(
                "{}: model_type is `{t}`, not `bert`",
                dir.join("config.json").display()
            )));
        }
        let sizes = cfg.sizes();
        sizes.check(&dir.join("config.json").display().to_string())?;
        let mut vs = nn::VarStore::new(device);
        let root = vs.root();
        let embeddings = BertEmbeddings::new(&root / "embeddings", &sizes);
        let layers = layers(&(&root / "encoder"), &sizes, false);
        HfWeights::read(dir)?.load_into(&mut vs, |n| vec![n.to_string(), format!("bert.{n}")])?;
        vs.freeze();
        Ok(BertModel {
            vs,
            embeddings,
            layers,
            sizes,
        })
    }

    /// `ids (B, T)`, `mask (B, T)` (1 at real tokens) ⇒ `last_hidden_state (B, T, d)`.
    pub fn forward(&self, ids: &Tensor, mask: &Tensor) -> Tensor {
        let dev = self.vs.device();
        let ids = ids.to_kind(Kind::Int64).to_device(dev);
        let pad = mask.to_kind(Kind::Bool).to_device(dev);
        tch::no_grad(|| {
            let x = self.embeddings.forward_t(&ids, 0, false);
            self.layers
                .iter()
                .fold(x, |x, l| l.forward_t(&x, None, Some(&pad), None, false).0)
        })
    }
}

#[cfg(test)]
mod tests;

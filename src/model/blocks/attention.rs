//! Multi-head attention, the one implementation in captag: self or cross, causal or not,
//! separate `q/k/v/out` projections under the folder's names or GPT-2's fused `c_attn`
//! (`Conv1D`, q | k | v), grouped-query heads (`kv_heads < heads`, Llama/Qwen2), optional rotary
//! positions, a key/value cache, and a key-padding mask for padded batches. The product
//! `softmax(QKᵀ·scale + mask)·V` is libtorch's `scaled_dot_product_attention`, which picks a
//! fused kernel (flash attention on CPU and CUDA) when the call allows one: no mask for a
//! causal prefill or a single query, dropout only in training. `tests` check it against the
//! explicit formula and that the fused kernel is the one chosen.
use tch::{nn, Kind, Tensor};

use super::{sub, Proj, RopeAt};

/// How the projections are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `nn.Linear`s under these dotted names, relative to the attention's path.
    Separate {
        q: &'static str,
        k: &'static str,
        v: &'static str,
        out: &'static str,
    },
    /// GPT-2: `c_attn` (`Conv1D`, `d → 3d`, q | k | v) and `c_proj` (`Conv1D`).
    FusedConv1D,
    /// One `nn.Linear` `d → 3d` (q | k | v) and an output `nn.Linear` under these names (BLIP's
    /// ViT: `qkv`, `projection`).
    FusedLinear {
        qkv: &'static str,
        out: &'static str,
    },
}

/// PyTorch's `nn.MultiheadAttention`-style and CLIP/Marian/captag names.
pub const Q_K_V_OUT: Layout = Layout::Separate {
    q: "q_proj",
    k: "k_proj",
    v: "v_proj",
    out: "out_proj",
};

/// An attention's shape, names and behaviour.
#[derive(Debug, Clone)]
pub struct AttentionConfig {
    /// Width of the queries' input and of the output.
    pub d_model: i64,
    /// Width of the keys' and values' source (`d_model` for self-attention).
    pub kv_in: i64,
    pub heads: i64,
    /// Key/value heads: `heads` for multi-head, fewer for grouped-query attention.
    pub kv_heads: i64,
    pub head_dim: i64,
    pub layout: Layout,
    pub qkv_bias: bool,
    pub out_bias: bool,
    /// Query `i` sees keys up to its own position only.
    pub causal: bool,
    /// On the attention weights, in training.
    pub dropout: f64,
    /// Multiplies `QKᵀ`; `None` is `1/√head_dim`.
    pub scale: Option<f64>,
}

impl AttentionConfig {
    /// Multi-head self-attention of width `d` with `heads` heads, `q_proj/k_proj/v_proj/out_proj`
    /// with biases, not causal, no dropout.
    pub fn new(d: i64, heads: i64) -> Self {
        AttentionConfig {
            d_model: d,
            kv_in: d,
            heads,
            kv_heads: heads,
            head_dim: d / heads.max(1),
            layout: Q_K_V_OUT,
            qkv_bias: true,
            out_bias: true,
            causal: false,
            dropout: 0.0,
            scale: None,
        }
    }

    pub fn causal(self) -> Self {
        AttentionConfig {
            causal: true,
            ..self
        }
    }

    pub fn dropout(self, dropout: f64) -> Self {
        AttentionConfig { dropout, ..self }
    }

    /// Keys and values read from a source of width `kv_in` (cross-attention).
    pub fn cross(self, kv_in: i64) -> Self {
        AttentionConfig { kv_in, ..self }
    }

    pub fn layout(self, layout: Layout) -> Self {
        AttentionConfig { layout, ..self }
    }

    pub fn scale(self, scale: f64) -> Self {
        AttentionConfig {
            scale: Some(scale),
            ..self
        }
    }

    /// Grouped-query attention: `kv_heads` key/value heads shared by `heads / kv_heads` queries.
    pub fn kv_heads(self, kv_heads: i64) -> Self {
        AttentionConfig { kv_heads, ..self }
    }

    pub fn head_dim(self, head_dim: i64) -> Self {
        AttentionConfig { head_dim, ..self }
    }

    pub fn bias(self, qkv_bias: bool, out_bias: bool) -> Self {
        AttentionConfig {
            qkv_bias,
            out_bias,
            ..self
        }
    }
}

#[derive(Debug)]
enum Qkv {
    Separate { q: Proj, k: Proj, v: Proj },
    Fused(Proj),
}

#[derive(Debug)]
pub struct Attention {
    qkv: Qkv,
    out: Proj,
    cfg: AttentionConfig,
}

/// Keys and values of every position seen so far, per layer, `(B, kv_heads, S, head_dim)` each:
/// a decoder's self-attention cache, or a cross-attention's keys/values of the memory.
#[derive(Debug, Default)]
pub struct KvCache {
    pub layers: Vec<(Tensor, Tensor)>,
}

impl KvCache {
    /// Positions cached (0 for an empty cache).
    pub fn len(&self) -> i64 {
        self.layers.first().map_or(0, |(k, _)| k.size()[2])
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The cache of rows `rows (R,)` (beam search reorders hypotheses).
    pub fn select(&self, rows: &Tensor) -> KvCache {
        KvCache {
            layers: self
                .layers
                .iter()
                .map(|(k, v)| (k.index_select(0, rows), v.index_select(0, rows)))
                .collect(),
        }
    }

    /// The same tensors, shared (no copy).
    pub fn share(&self) -> KvCache {
        KvCache {
            layers: self
                .layers
                .iter()
                .map(|(k, v)| (k.shallow_clone(), v.shallow_clone()))
                .collect(),
        }
    }
}

impl Attention {
    pub fn new(p: nn::Path, cfg: &AttentionConfig) -> Self {
        let (d, hd) = (cfg.d_model, cfg.head_dim);
        let (q_out, kv_out) = (cfg.heads * hd, cfg.kv_heads * hd);
        let (qkv, out) = match cfg.layout {
            Layout::Separate { q, k, v, out } => (
                Qkv::Separate {
                    q: Proj::linear(sub(&p, q), d, q_out, cfg.qkv_bias),
                    k: Proj::linear(sub(&p, k), cfg.kv_in, kv_out, cfg.qkv_bias),
                    v: Proj::linear(sub(&p, v), cfg.kv_in, kv_out, cfg.qkv_bias),
                },
                Proj::linear(sub(&p, out), q_out, d, cfg.out_bias),
            ),
            Layout::FusedConv1D => (
                Qkv::Fused(Proj::conv1d(&p / "c_attn", d, q_out + 2 * kv_out)),
                Proj::conv1d(&p / "c_proj", q_out, d),
            ),
            Layout::FusedLinear { qkv, out } => (
                Qkv::Fused(Proj::linear(
                    sub(&p, qkv),
                    d,
                    q_out + 2 * kv_out,
                    cfg.qkv_bias,
                )),
                Proj::linear(sub(&p, out), q_out, d, cfg.out_bias),
            ),
        };
        Attention {
            qkv,
            out,
            cfg: cfg.clone(),
        }
    }

    /// The projection stored under `name` (`q_proj`, `k_proj`, `v_proj`, `o_proj`, … as the
    /// layout names them), for adapters (LoRA) that wrap it.
    pub fn proj_mut(&mut self, name: &str) -> Option<&mut Proj> {
        let Layout::Separate { q, k, v, out } = self.cfg.layout else {
            return None;
        };
        match (&mut self.qkv, name) {
            (Qkv::Separate { q: p, .. }, n) if n == q => Some(p),
            (Qkv::Separate { k: p, .. }, n) if n == k => Some(p),
            (Qkv::Separate { v: p, .. }, n) if n == v => Some(p),
            (_, n) if n == out => Some(&mut self.out),
            _ => None,
        }
    }

    /// `(B, T, n·hd)` ⇒ `(B, n, T, hd)`.
    fn split(&self, x: &Tensor, n: i64) -> Tensor {
        x.unflatten(-1, [n, self.cfg.head_dim]).transpose(1, 2)
    }

    /// Queries, keys and values of `x (B, T, d)` for self-attention: `(B, h, T, hd)`,
    /// `(B, kvh, T, hd)` twice.
    fn project_self(&self, x: &Tensor) -> (Tensor, Tensor, Tensor) {
        let c = &self.cfg;
        match &self.qkv {
            Qkv::Separate { q, k, v } => (
                self.split(&q.forward(x), c.heads),
                self.split(&k.forward(x), c.kv_heads),
                self.split(&v.forward(x), c.kv_heads),
            ),
            Qkv::Fused(w) => {
                let (q_out, kv_out) = (c.heads * c.head_dim, c.kv_heads * c.head_dim);
                let parts = w.forward(x).split_with_sizes([q_out, kv_out, kv_out], -1);
                (
                    self.split(&parts[0], c.heads),
                    self.split(&parts[1], c.kv_heads),
                    self.split(&parts[2], c.kv_heads),
                )
            }
        }
    }

    /// Keys and values of a source `src (B, S, kv_in)`: `(B, kvh, S, hd)` each (cross-attention
    /// computes them once per memory and reuses them at every step).
    pub fn keys_values(&self, src: &Tensor) -> (Tensor, Tensor) {
        match &self.qkv {
            Qkv::Separate { k, v, .. } => (
                self.split(&k.forward(src), self.cfg.kv_heads),
                self.split(&v.forward(src), self.cfg.kv_heads),
            ),
            Qkv::Fused(_) => {
                let (_, k, v) = self.project_self(src);
                (k, v)
            }
        }
    }

    /// Self-attention of `x (B, T, d)` at positions `past.len()..`: returns `(B, T, d)` and the
    /// keys/values of all `past + T` positions (the layer's new cache entry). `pad (B, S)`, when
    /// given, is true at real keys (`S = past + T`); `rope` rotates queries and keys by
    /// position (the angles of these `T` positions, [`super::Rotary::at`]).
    pub fn forward_t(
        &self,
        x: &Tensor,
        past: Option<&(Tensor, Tensor)>,
        pad: Option<&Tensor>,
        rope: Option<&RopeAt>,
        train: bool,
    ) -> (Tensor, (Tensor, Tensor)) {
        let (mut q, mut k, mut v) = self.project_self(x);
        if let Some(r) = rope {
            q = r.apply(&q);
            k = r.apply(&k);
        }
        if let Some((pk, pv)) = past {
            k = Tensor::cat(&[pk, &k], 2); // (B, kvh, S, hd)
            v = Tensor::cat(&[pv, &v], 2);
        }
        let y = self.product(&q, &k, &v, self.cfg.causal, pad, train);
        (y, (k, v))
    }

    /// Self-attention of `x (B, T, d)` after `past` under an explicit boolean mask
    /// `(B | 1, 1, T, S)`, true where a query may look (`None`: every key), whatever the config's
    /// causal flag says: GIT's image tokens see each other but not the caption. Returns `(B, T, d)`
    /// and the keys/values of all `S = past + T` positions.
    pub fn forward_masked(
        &self,
        x: &Tensor,
        past: Option<&(Tensor, Tensor)>,
        mask: Option<&Tensor>,
        train: bool,
    ) -> (Tensor, (Tensor, Tensor)) {
        let (q, mut k, mut v) = self.project_self(x);
        if let Some((pk, pv)) = past {
            k = Tensor::cat(&[pk, &k], 2); // (B, kvh, S, hd)
            v = Tensor::cat(&[pv, &v], 2);
        }
        let mask = Mask {
            tensor: mask.map(Tensor::shallow_clone),
            is_causal: false,
        };
        let y = self.sdpa(&q, &k, &v, &mask, train);
        (y, (k, v))
    }

    /// Queries from `x (B, T, d)` against given keys/values `(B, kvh, S, hd)` (cross-attention,
    /// or self-attention whose keys the caller keeps): `(B, T, d)`. `pad (B, S)` as in
    /// [`Attention::forward_t`]; causal only when the config says so.
    pub fn attend(
        &self,
        x: &Tensor,
        k: &Tensor,
        v: &Tensor,
        pad: Option<&Tensor>,
        train: bool,
    ) -> Tensor {
        let q = match &self.qkv {
            Qkv::Separate { q, .. } => self.split(&q.forward(x), self.cfg.heads),
            Qkv::Fused(_) => self.project_self(x).0,
        };
        self.product(&q, k, v, self.cfg.causal, pad, train)
    }

    /// `softmax(q kᵀ · scale + mask) v`, heads merged and projected: `(B, T, d)`. With `causal`,
    /// the `T` queries are the last `T` of the `S` key positions.
    fn product(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        causal: bool,
        pad: Option<&Tensor>,
        train: bool,
    ) -> Tensor {
        let mask = Mask::new(causal, q.size()[2], k.size()[2], pad, q.device());
        self.sdpa(q, k, v, &mask, train)
    }

    /// The fused kernel under `mask`, heads merged and projected: `(B, T, d)`.
    fn sdpa(&self, q: &Tensor, k: &Tensor, v: &Tensor, mask: &Mask, train: bool) -> Tensor {
        let (k, v) = self.repeat_kv(k, v);
        let dropout = if train { self.cfg.dropout } else { 0.0 };
        let y = Tensor::scaled_dot_product_attention(
            q,
            &k,
            &v,
            mask.tensor.as_ref(),
            dropout,
            mask.is_causal,
            self.cfg.scale,
            false,
        ); // (B, h, T, hd)
        self.out.forward(&y.transpose(1, 2).flatten(2, 3)) // (B, T, d)
    }

    /// Grouped-query heads: each key/value head repeated for its `heads / kv_heads` queries
    /// (`transformers`' `repeat_kv`).
    fn repeat_kv(&self, k: &Tensor, v: &Tensor) -> (Tensor, Tensor) {
        let groups = self.cfg.heads / self.cfg.kv_heads.max(1);
        if groups <= 1 {
            return (k.shallow_clone(), v.shallow_clone());
        }
        let r = |x: &Tensor| x.repeat_interleave_self_int(groups, 1, None::<i64>);
        (r(k), r(v))
    }
}

/// What `scaled_dot_product_attention` is told: its own causal flag where that is exact (a
/// square causal block, no padding), otherwise a boolean mask `(B | 1, 1, T, S)`, true where a
/// query may look, or nothing.
pub struct Mask {
    pub tensor: Option<Tensor>,
    pub is_causal: bool,
}

impl Mask {
    pub fn new(causal: bool, t: i64, s: i64, pad: Option<&Tensor>, dev: tch::Device) -> Mask {
        // A single query that is the last position sees every key: no causal mask needed.
        let causal = causal && t > 1;
        match pad {
            None if !causal => Mask {
                tensor: None,
                is_causal: false,
            },
            None if t == s => Mask {
                tensor: None,
                is_causal: true,
            },
            _ => {
                // Query i is position s − t + i.
                let mut m = if causal {
                    Tensor::ones([t, s], (Kind::Bool, dev)).tril(s - t) // (T, S)
                } else {
                    Tensor::ones([t, s], (Kind::Bool, dev))
                };
                if let Some(keep) = pad {
                    let keep = keep.to_kind(Kind::Bool).unsqueeze(1); // (B, 1, S)
                    m = m.logical_and(&keep); // (B, T, S)
                    if causal {
                        // A query always sees itself, so a padded query's row is never empty
                        // (an all-masked row would be NaN); its output is ignored by the caller.
                        let own = Tensor::eye_m(t, s, (Kind::Bool, dev)).roll([s - t], [1]); // (T, S)
                        m = m.logical_or(&own);
                    }
                }
                let m = if m.dim() == 2 { m.unsqueeze(0) } else { m };
                Mask {
                    tensor: Some(m.unsqueeze(1)), // (B | 1, 1, T, S)
                    is_causal: false,
                }
            }
        }
    }
}

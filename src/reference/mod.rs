//! The CPU f32 decoder: slow, obvious, and the oracle every GPU kernel is held against.
//!
//! Weights stay in their GGUF block format (memory is about the file size); `matvec`
//! dequantizes one row at a time into f32 and accumulates in f32. Everything else (norms,
//! RoPE, attention, the gate activation) is plain f32 arithmetic on small vectors. `forward` is
//! one function that follows the math of a block, with the shapes in comments, in the manner of
//! llama2.c's `run.c`; the options of each architecture (`arch.rs`) are the `if`s in it.

use crate::arch::{Activation, BlockTensor};
use crate::config::{Config, OUTPUT, OUTPUT_NORM, TOKEN_EMBD};
use crate::error::{Error, Result};
use crate::gguf::{Header, TensorInfo};
use crate::quant;

mod ops;

pub use ops::threads;
use ops::{
    add, attention, gelu_tanh, matvec, rmsnorm, rmsnorm_heads, silu, Projection, QuantMatrix, Rope,
};

struct Layer {
    attn_norm: Vec<f32>,
    /// Outputs q, k, v one after another.
    wqkv: Projection,
    /// q, k and v biases, concatenated (qwen2).
    qkv_bias: Option<Vec<f32>>,
    /// Per-head RMSNorm weights of q and k (qwen3, gemma3).
    q_norm: Option<Vec<f32>>,
    k_norm: Option<Vec<f32>>,
    wo: QuantMatrix,
    post_attn_norm: Option<Vec<f32>>,
    ffn_norm: Vec<f32>,
    /// Outputs gate, then up.
    w_gate_up: Projection,
    w_down: QuantMatrix,
    post_ffn_norm: Option<Vec<f32>>,
    rope: Rope,
    window: Option<usize>,
}

/// Activations of one step, allocated once.
struct Scratch {
    x: Vec<f32>,       // residual stream [n_embd]
    h: Vec<f32>,       // normed input / block output [n_embd]
    qkv: Vec<f32>,     // queries, keys, values [q_dim + 2 kv_dim]
    att: Vec<f32>,     // attention output [q_dim]
    gate_up: Vec<f32>, // gate, up [2 n_ff]
    logits: Vec<f32>,  // [n_vocab]
}

/// The CPU decoder with its KV cache. One `forward` call runs one token at the next position.
pub struct ReferenceModel {
    config: Config,
    context: usize,
    token_embd: QuantMatrix,
    /// `None` when the LM head is tied to `token_embd`.
    output: Option<QuantMatrix>,
    output_norm: Vec<f32>,
    layers: Vec<Layer>,
    /// [layer][pos][kv_dim], context positions per layer.
    key_cache: Vec<f32>,
    value_cache: Vec<f32>,
    pos: usize,
    s: Scratch,
    /// Store keys and values rounded to f16, as the GPU's f16 KV cache (and llama.cpp's
    /// default cache) does; the arithmetic stays f32.
    f16_cache: bool,
}

impl ReferenceModel {
    /// Load from a GGUF file on disk; the context is min(trained context, `max_context`).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load(file: &crate::gguf::GgufFile, max_context: usize) -> Result<ReferenceModel> {
        Self::from_tensors(&file.header, max_context, |info| file.read_tensor(info))
    }

    /// Load from a parsed header and a function that returns a tensor's raw bytes (for sources
    /// other than a local file, e.g. bytes already in memory in wasm).
    pub fn from_tensors(
        header: &Header,
        max_context: usize,
        mut read: impl FnMut(&TensorInfo) -> Result<Vec<u8>>,
    ) -> Result<ReferenceModel> {
        let config = Config::from_header(header)?;
        if max_context == 0 {
            return Err(Error::InvalidArgument(
                "max_context must be at least 1".into(),
            ));
        }
        let context = config.context_length.min(max_context);

        // A tensor's table entry and raw bytes, by name.
        let mut load = |name: &str| {
            let t = header
                .tensor(name)
                .ok_or_else(|| Error::ModelInvalid(format!("tensor `{name}` is missing")))?;
            Ok::<_, Error>((t, read(t)?))
        };
        let token_embd = matrix(load(TOKEN_EMBD)?)?;
        let output = match config.tied_embeddings {
            true => None,
            false => Some(matrix(load(OUTPUT)?)?),
        };
        let output_norm = vector(load(OUTPUT_NORM)?)?;
        let rope_factors = match config.rope_factor_tensor(context) {
            Some(name) => Some(vector(load(name)?)?),
            None => None,
        };
        let a = config.arch;
        let mut layers = Vec::with_capacity(config.n_layer);
        for l in 0..config.n_layer {
            use BlockTensor::*;
            let mut t = |role: BlockTensor| load(&role.name(l));
            let mut optional = |on: bool, role: BlockTensor| match on {
                true => vector(t(role)?).map(Some),
                false => Ok(None),
            };
            let q_norm = optional(a.qk_norm, QNorm)?;
            let k_norm = optional(a.qk_norm, KNorm)?;
            let post_attn_norm = optional(a.post_norms, PostAttnNorm)?;
            let post_ffn_norm = optional(a.post_norms, PostFfnNorm)?;
            let qkv_bias = match a.qkv_bias {
                true => Some(
                    [
                        optional(true, QBias)?,
                        optional(true, KBias)?,
                        optional(true, VBias)?,
                    ]
                    .into_iter()
                    .flatten()
                    .flatten()
                    .collect(),
                ),
                false => None,
            };
            let mut t = |role: BlockTensor| load(&role.name(l));
            let mut projection = |roles: &[BlockTensor]| {
                let matrices = roles.iter().map(|&r| matrix(t(r)?));
                matrices.collect::<Result<Vec<_>>>().map(Projection)
            };
            let wqkv = projection(a.qkv_tensors())?;
            let w_gate_up = projection(a.gate_up_tensors())?;
            let mut t = |role: BlockTensor| load(&role.name(l));
            layers.push(Layer {
                wqkv,
                w_gate_up,
                qkv_bias,
                q_norm,
                k_norm,
                post_attn_norm,
                post_ffn_norm,
                attn_norm: vector(t(AttnNorm)?)?,
                wo: matrix(t(AttnOutput)?)?,
                ffn_norm: vector(t(FfnNorm)?)?,
                w_down: matrix(t(Down)?)?,
                rope: Rope {
                    style: config.rope_style,
                    head_dim: config.head_dim,
                    table: config.rope(l, rope_factors.as_deref())?,
                },
                window: config.window(l),
            });
        }

        let cache_len = config
            .n_layer
            .checked_mul(context)
            .and_then(|n| n.checked_mul(config.kv_dim()));
        let key_cache = zeroed(cache_len, context)?;
        let value_cache = zeroed(cache_len, context)?;
        let s = Scratch {
            x: vec![0.0; config.n_embd],
            h: vec![0.0; config.n_embd],
            qkv: vec![0.0; config.q_dim() + 2 * config.kv_dim()],
            att: vec![0.0; config.q_dim()],
            gate_up: vec![0.0; 2 * config.n_ff],
            logits: vec![0.0; config.n_vocab],
        };
        Ok(ReferenceModel {
            config,
            context,
            token_embd,
            output,
            output_norm,
            layers,
            key_cache,
            value_cache,
            pos: 0,
            s,
            f16_cache: false,
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Round each key and value to f16 as it enters the cache (to compare with a GPU model
    /// whose cache is f16), or keep them f32 (the default).
    pub fn set_f16_cache(&mut self, on: bool) {
        self.f16_cache = on;
    }

    /// Tokens the KV cache holds at most.
    pub fn context_length(&self) -> usize {
        self.context
    }

    /// Tokens run so far (the position the next token takes).
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Forget everything after the first `n` tokens (e.g. to reuse a shared prompt prefix);
    /// like `Vec::truncate`, no effect when `n` is not below `position()`.
    pub fn truncate(&mut self, n: usize) {
        self.pos = self.pos.min(n);
    }

    pub fn reset(&mut self) {
        self.pos = 0;
    }

    /// Run `token` at the next position and return the logits for the token after it
    /// (n_vocab values).
    pub fn forward(&mut self, token: u32) -> Result<&[f32]> {
        let c = &self.config;
        if token as usize >= c.n_vocab {
            return Err(Error::InvalidArgument(format!(
                "token id {token} is outside the vocabulary of {} tokens",
                c.n_vocab
            )));
        }
        let pos = self.pos;
        if pos >= self.context {
            return Err(Error::ContextOverflow {
                tokens: pos + 1,
                context: self.context,
            });
        }
        let s = &mut self.s;
        let (kv_dim, eps) = (c.kv_dim(), c.rms_eps);
        let layer_cache = self.context * kv_dim;

        // x = token_embd[token] * embedding_scale                                   [n_embd]
        self.token_embd.dequantize_row(token as usize, &mut s.x)?;
        if c.embedding_scale != 1.0 {
            s.x.iter_mut().for_each(|v| *v *= c.embedding_scale);
        }

        for (l, layer) in self.layers.iter().enumerate() {
            // This layer's cache                                           [context][kv_dim]
            let keys = &mut self.key_cache[l * layer_cache..][..layer_cache];
            let values = &mut self.value_cache[l * layer_cache..][..layer_cache];

            // h = rmsnorm(x) * attn_norm                                              [n_embd]
            rmsnorm(&mut s.h, &s.x, &layer.attn_norm, eps);

            // q, k, v = Wq h, Wk h, Wv h (+ biases)                     [q_dim | kv_dim | kv_dim]
            layer.wqkv.apply(&s.h, &mut s.qkv)?;
            if let Some(b) = &layer.qkv_bias {
                add(&mut s.qkv, b);
            }
            let (q, kv) = s.qkv.split_at_mut(c.q_dim());
            let (k, v) = kv.split_at_mut(kv_dim);

            // q, k = rmsnorm of each head * q_norm, k_norm                 (qwen3, gemma3)
            if let (Some(qn), Some(kn)) = (&layer.q_norm, &layer.k_norm) {
                rmsnorm_heads(q, qn, eps);
                rmsnorm_heads(k, kn, eps);
            }

            // RoPE on every query head and every key head; k and v into the cache at pos
            layer.rope.apply(q, pos);
            layer.rope.apply(k, pos);
            let k_row = &mut keys[pos * kv_dim..][..kv_dim];
            let v_row = &mut values[pos * kv_dim..][..kv_dim];
            k_row.copy_from_slice(k);
            v_row.copy_from_slice(v);
            if self.f16_cache {
                for x in k_row.iter_mut().chain(v_row.iter_mut()) {
                    *x = half::f16::from_f32(*x).to_f32();
                }
            }

            // att = softmax(q k^T * attention_scale) v, per query head over the keys it sees:
            // 0..=pos, or the last `window` of them in a sliding-window layer        [q_dim]
            let first = layer.window.map_or(0, |w| (pos + 1).saturating_sub(w));
            let seen = first * kv_dim..(pos + 1) * kv_dim;
            attention(&mut s.att, q, &keys[seen.clone()], &values[seen], c)?;

            // x += Wo att, normed first with post_attention_norm (gemma3)             [n_embd]
            matvec(&layer.wo, &s.att, &mut s.h)?;
            if let Some(w) = &layer.post_attn_norm {
                let o = s.h.clone();
                rmsnorm(&mut s.h, &o, w, eps);
            }
            add(&mut s.x, &s.h);

            // h = rmsnorm(x) * ffn_norm                                               [n_embd]
            rmsnorm(&mut s.h, &s.x, &layer.ffn_norm, eps);

            // gate = act(Wgate h) * (Wup h)                                            [n_ff]
            layer.w_gate_up.apply(&s.h, &mut s.gate_up)?;
            let (gate, up) = s.gate_up.split_at_mut(c.n_ff);
            let act = match c.arch.activation {
                Activation::Silu => silu,
                Activation::GeluTanh => gelu_tanh,
            };
            for (g, &u) in gate.iter_mut().zip(up.iter()) {
                *g = act(*g) * u;
            }

            // x += Wdown gate, normed first with post_ffw_norm (gemma3)               [n_embd]
            matvec(&layer.w_down, gate, &mut s.h)?;
            if let Some(w) = &layer.post_ffn_norm {
                let o = s.h.clone();
                rmsnorm(&mut s.h, &o, w, eps);
            }
            add(&mut s.x, &s.h);
        }

        // logits = Woutput (rmsnorm(x) * output_norm); Woutput = token_embd when tied [n_vocab]
        rmsnorm(&mut s.h, &s.x, &self.output_norm, eps);
        let lm_head = self.output.as_ref().unwrap_or(&self.token_embd);
        matvec(lm_head, &s.h, &mut s.logits)?;

        self.pos += 1;
        Ok(&s.logits)
    }
}

/// A weight matrix from its table entry and bytes, kept quantized.
fn matrix((info, data): (&TensorInfo, Vec<u8>)) -> Result<QuantMatrix> {
    QuantMatrix::new(info, data)
}

/// A small tensor (norm weights, RoPE factors) dequantized to f32.
fn vector((info, data): (&TensorInfo, Vec<u8>)) -> Result<Vec<f32>> {
    quant::dequantize_tensor(info, &data)
}

/// A zeroed cache of `len` floats, or an error (not an abort) when it cannot be allocated.
fn zeroed(len: Option<usize>, context: usize) -> Result<Vec<f32>> {
    let too_big = || {
        Error::InvalidArgument(format!(
            "the KV cache for a context of {context} tokens does not fit in memory; \
             lower max_context"
        ))
    };
    let len = len.ok_or_else(too_big)?;
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| too_big())?;
    v.resize(len, 0.0);
    Ok(v)
}

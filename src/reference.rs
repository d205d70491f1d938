//! The CPU f32 decoder: slow, obvious, and the oracle every GPU kernel is held against.
//!
//! Weights stay in their GGUF block format (memory is about the file size); `matvec`
//! dequantizes one row at a time into f32 and accumulates in f32. Everything else (norms,
//! RoPE, attention, the gate activation) is plain f32 arithmetic on small vectors. `forward` is
//! one function that follows the math of a block, with the shapes in comments, in the manner of
//! llama2.c's `run.c`; the options of each architecture (`arch.rs`) are the `if`s in it.

use crate::arch::{Activation, BlockTensor};
use crate::config::{Config, RopeStyle, RopeTable, OUTPUT, OUTPUT_NORM, TOKEN_EMBD};
use crate::error::{Error, Result};
use crate::gguf::{Header, TensorInfo};
use crate::quant::{self, GgmlType};

/// A weight matrix in its GGUF block format: `rows` rows of `cols` contiguous values (GGUF dims
/// `[cols, rows]`), each row `row_bytes` bytes of whole blocks.
struct QuantMatrix {
    ty: GgmlType,
    rows: usize,
    cols: usize,
    row_bytes: usize,
    data: Vec<u8>,
}

impl QuantMatrix {
    fn new(info: &TensorInfo, data: Vec<u8>) -> Result<QuantMatrix> {
        if !info.ty.is_supported() {
            return Err(Error::UnsupportedTensorType {
                tensor: info.name.clone(),
                ty: info.ty.name().to_string(),
                hint: " by the CPU reference decoder",
            });
        }
        let invalid = || Error::ModelInvalid(format!("tensor `{}` has an invalid size", info.name));
        let (&cols, &rows) = match info.dims.as_slice() {
            [cols, rows] => (cols, rows),
            _ => return Err(invalid()),
        };
        let row_bytes = info.ty.bytes_for(cols).ok_or_else(invalid)?;
        if row_bytes.checked_mul(rows) != Some(data.len() as u64) {
            return Err(invalid());
        }
        Ok(QuantMatrix {
            ty: info.ty,
            rows: rows as usize,
            cols: cols as usize,
            row_bytes: row_bytes as usize,
            data,
        })
    }

    /// Row `r` (< rows) as f32 into `out` (cols values).
    fn dequantize_row(&self, r: usize, out: &mut [f32]) -> Result<()> {
        let bytes = self
            .data
            .get(r * self.row_bytes..(r + 1) * self.row_bytes)
            .ok_or_else(|| Error::InvalidArgument(format!("row {r} of {}", self.rows)))?;
        quant::dequantize(self.ty, bytes, out)
    }
}

/// Rows of a matvec handed to one task: enough to amortize the task and its row buffer.
const ROWS_PER_TASK: usize = 32;

/// y = W x, W `rows` x `cols`: y[r] = dot(row r of W, x).
fn matvec(w: &QuantMatrix, x: &[f32], y: &mut [f32]) -> Result<()> {
    debug_assert_eq!((x.len(), y.len()), (w.cols, w.rows));
    for_each_chunk(y, ROWS_PER_TASK, |first_row, ys| {
        let mut row = vec![0f32; w.cols];
        for (r, y) in (first_row..).zip(ys) {
            w.dequantize_row(r, &mut row)?;
            *y = dot(&row, x);
        }
        Ok(())
    })
}

/// Run `f(start, chunk)` on consecutive `size`-element chunks of `out`: across threads
/// natively, one after another in wasm (no threads there).
/// Threads the decoder splits its work over (1 on wasm32).
pub fn threads() -> usize {
    #[cfg(not(target_arch = "wasm32"))]
    return rayon::current_num_threads();
    #[cfg(target_arch = "wasm32")]
    return 1;
}

fn for_each_chunk<F>(out: &mut [f32], size: usize, f: F) -> Result<()>
where
    F: Fn(usize, &mut [f32]) -> Result<()> + Send + Sync,
{
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        out.par_chunks_mut(size)
            .enumerate()
            .try_for_each(|(i, chunk)| f(i * size, chunk))
    }
    #[cfg(target_arch = "wasm32")]
    {
        out.chunks_mut(size)
            .enumerate()
            .try_for_each(|(i, chunk)| f(i * size, chunk))
    }
}

/// Dot product in f32 with eight partial sums (which lets the compiler use SIMD lanes).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a8
        .remainder()
        .iter()
        .zip(b8.remainder())
        .map(|(a, b)| a * b)
        .sum();
    for (a, b) in a8.zip(b8) {
        for i in 0..8 {
            acc[i] += a[i] * b[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// out = x / sqrt(mean(x^2) + eps) * w
fn rmsnorm(out: &mut [f32], x: &[f32], w: &[f32], eps: f32) {
    let mean_square = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
    let scale = 1.0 / (mean_square + eps).sqrt();
    for ((o, &x), &w) in out.iter_mut().zip(x).zip(w) {
        *o = x * scale * w;
    }
}

fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// GELU, tanh approximation: 0.5 x (1 + tanh(y)), y = sqrt(2/pi) (x + 0.044715 x^3), written
/// as x / (1 + exp(-2y)), the same value without the cancellation of 1 + tanh(y) near -1.
fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    let y = SQRT_2_OVER_PI * (x + 0.044715 * x * x * x);
    x / (1.0 + (-2.0 * y).exp())
}

/// RMSNorm of each `dim`-wide slice of `v` in place (per-head q/k norms).
fn rmsnorm_heads(v: &mut [f32], w: &[f32], eps: f32) {
    for head in v.chunks_exact_mut(w.len()) {
        let x = head.to_vec();
        rmsnorm(head, &x, w, eps);
    }
}

/// Rotary position embedding of one layer: the angle of pair i at position p is
/// `p * freqs[i]`, cos and sin scaled by `mscale` (`Config::rope` folds every scaling scheme
/// into these).
struct Rope {
    style: RopeStyle,
    head_dim: usize,
    table: RopeTable,
}

impl Rope {
    /// Rotate every head of `v` (heads of head_dim values) for position `pos`. Dimensions at
    /// and past rope_dims are left as they are.
    fn apply(&self, v: &mut [f32], pos: usize) {
        let p = pos as f32;
        let half = self.table.freqs.len();
        let m = self.table.mscale;
        for head in v.chunks_exact_mut(self.head_dim) {
            for (i, &freq) in self.table.freqs.iter().enumerate() {
                let (sin, cos) = (p * freq).sin_cos();
                let (sin, cos) = (sin * m, cos * m);
                let (a, b) = match self.style {
                    RopeStyle::Adjacent => (2 * i, 2 * i + 1),
                    RopeStyle::Half => (i, i + half),
                };
                let (x0, x1) = (head[a], head[b]);
                head[a] = x0 * cos - x1 * sin;
                head[b] = x0 * sin + x1 * cos;
            }
        }
    }
}

/// Matrices whose outputs are concatenated: one fused tensor, or several (q, k, v) in order.
struct Projection(Vec<QuantMatrix>);

impl Projection {
    /// y = [W_0 x; W_1 x; ...]
    fn apply(&self, x: &[f32], y: &mut [f32]) -> Result<()> {
        let mut rest = y;
        for w in &self.0 {
            let (head, tail) = rest.split_at_mut(w.rows);
            matvec(w, x, head)?;
            rest = tail;
        }
        Ok(())
    }
}

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

/// Multi-head attention of one query position over `n_pos = keys.len() / kv_dim` cached
/// positions, with grouped KV heads: query head h reads KV head h / (n_head / n_head_kv).
fn attention(out: &mut [f32], q: &[f32], keys: &[f32], values: &[f32], c: &Config) -> Result<()> {
    let (hd, kv_dim) = (c.head_dim, c.kv_dim());
    let group = c.n_head / c.n_head_kv;
    let scale = c.attention_scale;
    for_each_chunk(out, hd, |start, out| {
        let h = start / hd;
        let q = &q[start..][..hd];
        let kv_offset = (h / group) * hd;
        // scores[t] = q . k_t * attention_scale                                       [n_pos]
        let mut scores: Vec<f32> = keys
            .chunks_exact(kv_dim)
            .map(|k_t| dot(q, &k_t[kv_offset..][..hd]) * scale)
            .collect();
        softmax(&mut scores);
        // out = sum_t scores[t] v_t                                                [head_dim]
        out.fill(0.0);
        for (&a, v_t) in scores.iter().zip(values.chunks_exact(kv_dim)) {
            for (o, &v) in out.iter_mut().zip(&v_t[kv_offset..][..hd]) {
                *o += a * v;
            }
        }
        Ok(())
    })
}

/// In place, shifted by the maximum so that exp never overflows.
fn softmax(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in x.iter_mut() {
        *v /= sum;
    }
}

fn add(x: &mut [f32], y: &[f32]) {
    for (x, &y) in x.iter_mut().zip(y) {
        *x += y;
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_matches_a_plain_sum_for_every_length() {
        for n in 0..40 {
            let a: Vec<f32> = (0..n).map(|i| i as f32 * 0.5 - 3.0).collect();
            let b: Vec<f32> = (0..n).map(|i| 1.0 + (i % 3) as f32).collect();
            let plain: f32 = a.iter().zip(&b).map(|(a, b)| a * b).sum();
            assert!((dot(&a, &b) - plain).abs() < 1e-4, "n = {n}");
        }
    }

    #[test]
    fn softmax_is_stable_for_large_values() {
        let mut x = vec![1000.0, 1000.0, 0.0];
        softmax(&mut x);
        assert!((x[0] - 0.5).abs() < 1e-6 && (x[1] - 0.5).abs() < 1e-6 && x[2] < 1e-30);
    }

    fn rope(style: RopeStyle, rope_dims: usize) -> Rope {
        Rope {
            style,
            head_dim: 8,
            table: RopeTable {
                freqs: (0..rope_dims / 2)
                    .map(|i| 10000f32.powf(-((2 * i) as f32) / rope_dims as f32))
                    .collect(),
                mscale: 1.0,
            },
        }
    }

    #[test]
    fn rope_rotates_adjacent_pairs_and_leaves_the_rest() {
        let r = rope(RopeStyle::Adjacent, 4);
        let mut v = [1.0, 0.0, 1.0, 0.0, 7.0, 8.0, 9.0, 10.0];
        r.apply(&mut v, 1);
        // pair 0 turns by 1 rad, pair 1 by 1 / 100 rad
        assert!((v[0] - 1f32.cos()).abs() < 1e-6 && (v[1] - 1f32.sin()).abs() < 1e-6);
        assert!((v[2] - 0.01f32.cos()).abs() < 1e-6 && (v[3] - 0.01f32.sin()).abs() < 1e-6);
        assert_eq!(&v[4..], &[7.0, 8.0, 9.0, 10.0]);
    }

    #[test]
    fn rope_half_rotates_i_with_i_plus_half() {
        let r = rope(RopeStyle::Half, 8);
        let mut v = [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        r.apply(&mut v, 2);
        assert!((v[0] - 2f32.cos()).abs() < 1e-6 && (v[4] - 2f32.sin()).abs() < 1e-6);
        assert_eq!(v[1], 0.0);
    }

    #[test]
    fn rope_at_position_zero_is_the_identity() {
        let r = rope(RopeStyle::Adjacent, 8);
        let mut v = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
        r.apply(&mut v, 0);
        assert_eq!(v, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
    }
}

//! `CpuModel`: the decoder on the CPU, fast — the engine for machines and browsers without a
//! usable GPU. It reads like `ReferenceModel::forward` (the f32 oracle) and shares its small
//! ops (`reference/ops.rs`: norms, RoPE, attention, activations); what differs is where the
//! time goes:
//!
//! - every projection is a quantized matmul (`cpu::matmul`): the weights stay in their block
//!   format and each layer input is quantized once to 8-bit blocks (`Q8Activations`), so the
//!   inner loops are SIMD integer dot products instead of a dequantized f32 row per output;
//! - a prompt runs batch-first: up to `PREFILL_BATCH` tokens per pass, each weight row read
//!   once for the whole batch (`[T][n_embd]` activations), attention causal within the batch;
//! - only the last token of a pass goes through the LM head.

use crate::arch::Activation;
use crate::config::Config;
use crate::cpu::matmul::matmul;
use crate::cpu::q8::Q8Activations;
use crate::cpu::weights::{CpuWeights, Matrix};
use crate::error::{Error, Result};
use crate::gguf::{Header, TensorInfo};
use crate::lora::{self, LoraStack, Place, Place::Block, Slot};
use crate::reference::ops::{
    add, attention, gelu_tanh, rmsnorm, rmsnorm_heads, silu, zeroed_cache, Rope,
};

/// Prompt tokens per batched pass: enough that a weight row read from memory serves many
/// tokens, few enough that a pass's activations stay in cache and an abort between passes
/// comes soon.
pub const PREFILL_BATCH: usize = 64;

/// Activations of one pass of `T` tokens, each `[T][width]`; grown to the largest batch seen.
#[derive(Default)]
struct Batch {
    x: Vec<f32>,       // residual stream [T][n_embd]
    h: Vec<f32>,       // normed input / block output [T][n_embd]
    qkv: Vec<f32>,     // queries | keys | values [T][q_dim + 2 kv_dim]
    att: Vec<f32>,     // attention output [T][q_dim]
    gate_up: Vec<f32>, // gate | up [T][2 n_ff]
    gate: Vec<f32>,    // act(gate) * up [T][n_ff]
    part: Vec<f32>,    // one matrix's outputs while a projection is assembled [T][rows]
    acts: Vec<Q8Activations>,
}

/// The CPU engine's decoder with its KV cache.
pub struct CpuModel {
    config: Config,
    context: usize,
    w: CpuWeights,
    /// [layer][pos][kv_dim], context positions per layer.
    keys: Vec<f32>,
    values: Vec<f32>,
    pos: usize,
    b: Batch,
    logits: Vec<f32>,
    /// The active LoRA adapters, combined (`lora::LoraStack`).
    lora: Option<LoraStack>,
}

impl CpuModel {
    /// Load from a GGUF file on disk; the context is min(trained context, `max_context`).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load(file: &crate::gguf::GgufFile, max_context: usize) -> Result<CpuModel> {
        Self::from_tensors(&file.header, max_context, |info| file.read_tensor(info))
    }

    /// Load from a parsed header and a function that returns a tensor's raw bytes.
    pub fn from_tensors(
        header: &Header,
        max_context: usize,
        read: impl FnMut(&TensorInfo) -> Result<Vec<u8>>,
    ) -> Result<CpuModel> {
        let config = Config::from_header(header)?;
        let context = config.context_length.min(max_context);
        let w = CpuWeights::load(header, &config, context, read)?;
        Self::new(config, w, context)
    }

    /// A model over weights already loaded, with a KV cache of `context` positions.
    pub fn new(config: Config, w: CpuWeights, context: usize) -> Result<CpuModel> {
        if context == 0 {
            return Err(Error::InvalidArgument(
                "the context must be at least 1".into(),
            ));
        }
        Ok(CpuModel {
            context,
            keys: zeroed_cache(&config, context)?,
            values: zeroed_cache(&config, context)?,
            pos: 0,
            b: Batch::default(),
            logits: vec![0.0; config.n_vocab],
            lora: None,
            config,
            w,
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Tokens the KV cache holds at most.
    pub fn context_length(&self) -> usize {
        self.context
    }

    /// Tokens run so far (the position the next token takes).
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Forget everything after the first `n` tokens.
    pub fn truncate(&mut self, n: usize) {
        self.pos = self.pos.min(n);
    }

    /// Apply these adapters from the next pass on (`None`: none). The cached keys and values
    /// were computed without them: the caller starts over.
    pub fn set_lora(&mut self, lora: Option<LoraStack>) {
        self.lora = lora;
    }

    /// Bytes held: weights, KV cache, the activations of the largest pass so far and the
    /// active adapters.
    pub fn memory_bytes(&self) -> u64 {
        let matrices = self
            .w
            .layers
            .iter()
            .flat_map(|l| l.qkv.iter().chain(&l.gate_up).chain([&l.wo, &l.w_down]));
        let weights: usize = matrices
            .chain([&self.w.token_embd])
            .chain(self.w.output.as_ref())
            .map(|m| m.data.len())
            .sum();
        let b = &self.b;
        let floats = [&b.x, &b.h, &b.qkv, &b.att, &b.gate_up, &b.gate, &b.part]
            .iter()
            .map(|v| v.capacity())
            .sum::<usize>()
            + self.keys.len()
            + self.values.len()
            + self.logits.len()
            + self.lora.as_ref().map_or(0, LoraStack::floats);
        (weights + 4 * floats) as u64
    }

    /// Run `tokens` at the next positions in passes of at most `PREFILL_BATCH` and return the
    /// logits after the last (n_vocab values). Bad ids or too many tokens are refused before
    /// anything runs.
    pub fn forward(&mut self, tokens: &[u32]) -> Result<&[f32]> {
        self.check(tokens)?;
        crate::cpu::pool::install(|| {
            tokens.chunks(PREFILL_BATCH).try_for_each(|batch| {
                self.blocks(batch)?;
                self.head()
            })
        })?;
        Ok(&self.logits)
    }

    /// Run `tokens` at the next positions without the LM head and return each one's final
    /// hidden state, rmsnorm(x) * output_norm (`[T][n_embd]`): what embeddings pool.
    pub fn hidden_states(&mut self, tokens: &[u32]) -> Result<Vec<f32>> {
        self.check(tokens)?;
        let (e, eps) = (self.config.n_embd, self.config.rms_eps);
        let mut hidden = vec![0.0; tokens.len() * e];
        crate::cpu::pool::install(|| {
            for (batch, out) in tokens
                .chunks(PREFILL_BATCH)
                .zip(hidden.chunks_mut(PREFILL_BATCH * e))
            {
                self.blocks(batch)?;
                // h[t] = rmsnorm(x[t]) * output_norm                               [T][n_embd]
                rmsnorm_rows(out, &self.b.x, &self.w.output_norm, eps);
            }
            Ok::<_, Error>(())
        })?;
        Ok(hidden)
    }

    /// Refuse an empty run, ids outside the vocabulary, or more tokens than the cache has room
    /// for, before anything runs.
    fn check(&self, tokens: &[u32]) -> Result<()> {
        let n_vocab = self.config.n_vocab;
        if tokens.is_empty() {
            return Err(Error::InvalidArgument("no tokens to run".into()));
        }
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= n_vocab) {
            return Err(Error::InvalidArgument(format!(
                "token id {bad} is outside the vocabulary of {n_vocab} tokens"
            )));
        }
        if self.pos + tokens.len() > self.context {
            return Err(Error::ContextOverflow {
                tokens: self.pos + tokens.len(),
                context: self.context,
            });
        }
        Ok(())
    }

    /// One pass of the blocks over `tokens` (checked ids, at positions pos..pos + T that fit
    /// the cache), leaving the residual stream of each in `b.x`.
    fn blocks(&mut self, tokens: &[u32]) -> Result<()> {
        let c = &self.config;
        let (t_len, pos0) = (tokens.len(), self.pos);
        let (e, q_dim, kv_dim, ff, eps) = (c.n_embd, c.q_dim(), c.kv_dim(), c.n_ff, c.rms_eps);
        let qkv_dim = q_dim + 2 * kv_dim;
        let (b, lora) = (&mut self.b, &mut self.lora);
        for (v, width) in [
            (&mut b.x, e),
            (&mut b.h, e),
            (&mut b.qkv, qkv_dim),
            (&mut b.att, q_dim),
            (&mut b.gate_up, 2 * ff),
            (&mut b.gate, ff),
        ] {
            v.resize(t_len * width, 0.0);
        }
        b.acts.resize_with(t_len, Q8Activations::new);
        let layer_cache = self.context * kv_dim;

        // x[t] = token_embd[tokens[t]] * embedding_scale                          [T][n_embd]
        for (x, &token) in b.x.chunks_exact_mut(e).zip(tokens) {
            self.w.token_embd.dequantize_row(token as usize, x)?;
            if c.embedding_scale != 1.0 {
                x.iter_mut().for_each(|v| *v *= c.embedding_scale);
            }
        }

        for (l, layer) in self.w.layers.iter().enumerate() {
            let keys = &mut self.keys[l * layer_cache..][..layer_cache];
            let values = &mut self.values[l * layer_cache..][..layer_cache];

            // h[t] = rmsnorm(x[t]) * attn_norm                                     [T][n_embd]
            rmsnorm_rows(&mut b.h, &b.x, &layer.attn_norm, eps);

            // q, k, v = Wq h, Wk h, Wv h (+ LoRA, + biases)       [T][q_dim | kv_dim | kv_dim]
            quantize_rows(&mut b.acts, &b.h, e)?;
            project(&layer.qkv, &b.acts, &mut b.qkv, &mut b.part)?;
            lora::apply(lora, Block(l, Slot::Qkv), &b.h, &mut b.qkv);
            let rope = Rope {
                style: c.rope_style,
                head_dim: c.head_dim,
                table: &layer.rope,
            };
            for (t, qkv) in b.qkv.chunks_exact_mut(qkv_dim).enumerate() {
                if let Some(bias) = &layer.qkv_bias {
                    add(qkv, bias);
                }
                let (q, kv) = qkv.split_at_mut(q_dim);
                let (k, v) = kv.split_at_mut(kv_dim);
                // q, k = rmsnorm of each head * q_norm, k_norm                  (qwen3, gemma3)
                if let (Some(qn), Some(kn)) = (&layer.q_norm, &layer.k_norm) {
                    rmsnorm_heads(q, qn, eps);
                    rmsnorm_heads(k, kn, eps);
                }
                // RoPE at position pos0 + t; k and v into the cache there
                rope.apply(q, pos0 + t);
                rope.apply(k, pos0 + t);
                keys[(pos0 + t) * kv_dim..][..kv_dim].copy_from_slice(k);
                values[(pos0 + t) * kv_dim..][..kv_dim].copy_from_slice(v);
            }

            // att[t] = softmax(q[t] k^T * scale) v over the keys token t sees: 0..=pos0 + t,
            // or the last `window` of them                                          [T][q_dim]
            for (t, (att, qkv)) in b
                .att
                .chunks_exact_mut(q_dim)
                .zip(b.qkv.chunks_exact(qkv_dim))
                .enumerate()
            {
                let pos = pos0 + t;
                let first = layer.window.map_or(0, |w| (pos + 1).saturating_sub(w));
                let seen = first * kv_dim..(pos + 1) * kv_dim;
                attention(att, &qkv[..q_dim], &keys[seen.clone()], &values[seen], c)?;
            }

            // x += Wo att, normed first with post_attention_norm (gemma3)         [T][n_embd]
            quantize_rows(&mut b.acts, &b.att, q_dim)?;
            project(
                std::slice::from_ref(&layer.wo),
                &b.acts,
                &mut b.h,
                &mut b.part,
            )?;
            lora::apply(lora, Block(l, Slot::AttnOutput), &b.att, &mut b.h);
            add_block_output(&mut b.x, &mut b.h, layer.post_attn_norm.as_deref(), e, eps);

            // h = rmsnorm(x) * ffn_norm                                           [T][n_embd]
            rmsnorm_rows(&mut b.h, &b.x, &layer.ffn_norm, eps);

            // gate = act(Wgate h) * (Wup h)                                          [T][n_ff]
            quantize_rows(&mut b.acts, &b.h, e)?;
            project(&layer.gate_up, &b.acts, &mut b.gate_up, &mut b.part)?;
            lora::apply(lora, Block(l, Slot::GateUp), &b.h, &mut b.gate_up);
            let act = match c.arch.activation {
                Activation::Silu => silu,
                Activation::GeluTanh => gelu_tanh,
            };
            for (g, gu) in b
                .gate
                .chunks_exact_mut(ff)
                .zip(b.gate_up.chunks_exact(2 * ff))
            {
                let (gate, up) = gu.split_at(ff);
                for ((g, &x), &u) in g.iter_mut().zip(gate).zip(up) {
                    *g = act(x) * u;
                }
            }

            // x += Wdown gate, normed first with post_ffw_norm (gemma3)           [T][n_embd]
            quantize_rows(&mut b.acts, &b.gate, ff)?;
            project(
                std::slice::from_ref(&layer.w_down),
                &b.acts,
                &mut b.h,
                &mut b.part,
            )?;
            lora::apply(lora, Block(l, Slot::Down), &b.gate, &mut b.h);
            add_block_output(&mut b.x, &mut b.h, layer.post_ffn_norm.as_deref(), e, eps);
        }
        self.pos += t_len;
        Ok(())
    }

    /// The logits after the last token of the pass `blocks` ran.
    fn head(&mut self) -> Result<()> {
        let (e, eps, b) = (self.config.n_embd, self.config.rms_eps, &mut self.b);
        // logits = Woutput (rmsnorm(x[T - 1]) * output_norm); Woutput = token_embd when tied
        let last = &b.x[b.x.len() - e..];
        let h = &mut b.h[..e];
        rmsnorm(h, last, &self.w.output_norm, eps);
        quantize_rows(&mut b.acts[..1], h, e)?;
        let head = self.w.lm_head();
        matmul(
            head.ty,
            head.rows,
            head.row_bytes,
            &head.data,
            &b.acts[..1],
            &mut self.logits,
        )?;
        lora::apply(&mut self.lora, Place::Head, h, &mut self.logits);
        Ok(())
    }
}

/// out[t] = rmsnorm(x[t]) * w for each `w.len()`-wide row.
fn rmsnorm_rows(out: &mut [f32], x: &[f32], w: &[f32], eps: f32) {
    let n = w.len();
    for (o, x) in out.chunks_exact_mut(n).zip(x.chunks_exact(n)) {
        rmsnorm(o, x, w, eps);
    }
}

/// x[t] += h[t], with h[t] normed by `post_norm` first where the architecture has one.
fn add_block_output(x: &mut [f32], h: &mut [f32], post_norm: Option<&[f32]>, n: usize, eps: f32) {
    for (x, h) in x.chunks_exact_mut(n).zip(h.chunks_exact_mut(n)) {
        if let Some(w) = post_norm {
            let o = h.to_vec();
            rmsnorm(h, &o, w, eps);
        }
        add(x, h);
    }
}

/// Each `width`-wide row of `x` quantized into `acts` (one per row; `acts` is sized to them).
fn quantize_rows(acts: &mut [Q8Activations], x: &[f32], width: usize) -> Result<()> {
    for (act, row) in acts.iter_mut().zip(x.chunks_exact(width)) {
        act.quantize_into(row)?;
    }
    Ok(())
}

/// out[t] = [W_0 a[t]; W_1 a[t]; ...] for every token: matrices whose outputs are
/// concatenated (q, k, v, or one fused tensor). A single matrix writes `out` directly; with
/// several, each fills `part` and its rows are copied to their columns.
fn project(
    ws: &[Matrix],
    acts: &[Q8Activations],
    out: &mut [f32],
    part: &mut Vec<f32>,
) -> Result<()> {
    let width: usize = ws.iter().map(|w| w.rows).sum();
    let n = acts.len();
    if let [w] = ws {
        return matmul(
            w.ty,
            w.rows,
            w.row_bytes,
            &w.data,
            acts,
            &mut out[..n * width],
        );
    }
    let mut col = 0;
    for w in ws {
        part.resize(n * w.rows, 0.0);
        matmul(w.ty, w.rows, w.row_bytes, &w.data, acts, part)?;
        for (row, values) in out.chunks_exact_mut(width).zip(part.chunks_exact(w.rows)) {
            row[col..col + w.rows].copy_from_slice(values);
        }
        col += w.rows;
    }
    Ok(())
}

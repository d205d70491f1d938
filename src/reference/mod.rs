//! The CPU f32 decoder: slow, obvious, and the oracle every GPU kernel is held against.
//!
//! Weights stay in their GGUF block format (memory is about the file size); `matvec`
//! dequantizes one row at a time into f32 and accumulates in f32. Everything else (norms,
//! RoPE, attention, the gate activation) is plain f32 arithmetic on small vectors. `forward` is
//! one function that follows the math of a block, with the shapes in comments, in the manner of
//! llama2.c's `run.c`; the options of each architecture (`arch.rs`) are the `if`s in it.

use crate::arch::Activation;
use crate::config::Config;
use crate::cpu::weights::CpuWeights;
use crate::error::{Error, Result};
use crate::gguf::{Header, TensorInfo};
use crate::lora::{self, LoraStack, Place, Place::Block, Slot};

pub(crate) mod ops;

pub use crate::cpu::threads;
use ops::{
    add, attention, gelu_tanh, matvec, project, rmsnorm, rmsnorm_heads, silu, zeroed_cache, Rope,
};

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
    w: CpuWeights,
    /// [layer][pos][kv_dim], context positions per layer.
    key_cache: Vec<f32>,
    value_cache: Vec<f32>,
    pos: usize,
    s: Scratch,
    /// Store keys and values rounded to f16, as the GPU's f16 KV cache (and llama.cpp's
    /// default cache) does; the arithmetic stays f32.
    f16_cache: bool,
    /// The active LoRA adapters, combined (`lora::LoraStack`).
    lora: Option<LoraStack>,
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
        read: impl FnMut(&TensorInfo) -> Result<Vec<u8>>,
    ) -> Result<ReferenceModel> {
        let config = Config::from_header(header)?;
        let context = config.context_length.min(max_context);
        let w = CpuWeights::load(header, &config, context, read)?;
        Self::new(config, w, context)
    }

    /// A decoder over weights already loaded, with a KV cache of `context` positions.
    pub fn new(config: Config, w: CpuWeights, context: usize) -> Result<ReferenceModel> {
        if context == 0 {
            return Err(Error::InvalidArgument(
                "the context must be at least 1".into(),
            ));
        }
        let key_cache = zeroed_cache(&config, context)?;
        let value_cache = zeroed_cache(&config, context)?;
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
            w,
            key_cache,
            value_cache,
            pos: 0,
            s,
            f16_cache: false,
            lora: None,
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

    /// Apply these adapters from the next token on (`None`: none). The cached keys and values
    /// were computed without them: the caller starts over.
    pub fn set_lora(&mut self, lora: Option<LoraStack>) {
        self.lora = lora;
    }

    /// Run `token` at the next position and return the logits for the token after it
    /// (n_vocab values).
    pub fn forward(&mut self, token: u32) -> Result<&[f32]> {
        self.hidden(token)?;
        // logits = Woutput h; Woutput = token_embd when tied                        [n_vocab]
        matvec(self.w.lm_head(), &self.s.h, &mut self.s.logits)?;
        lora::apply(&mut self.lora, Place::Head, &self.s.h, &mut self.s.logits);
        Ok(&self.s.logits)
    }

    /// Run `token` at the next position and return its final hidden state, rmsnorm(x) *
    /// output_norm (n_embd values): what the LM head reads, and what embeddings pool.
    pub fn hidden(&mut self, token: u32) -> Result<&[f32]> {
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
        let (s, lora) = (&mut self.s, &mut self.lora);
        let (kv_dim, eps) = (c.kv_dim(), c.rms_eps);
        let layer_cache = self.context * kv_dim;

        // x = token_embd[token] * embedding_scale                                   [n_embd]
        self.w.token_embd.dequantize_row(token as usize, &mut s.x)?;
        if c.embedding_scale != 1.0 {
            s.x.iter_mut().for_each(|v| *v *= c.embedding_scale);
        }

        for (l, layer) in self.w.layers.iter().enumerate() {
            // This layer's cache                                           [context][kv_dim]
            let keys = &mut self.key_cache[l * layer_cache..][..layer_cache];
            let values = &mut self.value_cache[l * layer_cache..][..layer_cache];

            // h = rmsnorm(x) * attn_norm                                              [n_embd]
            rmsnorm(&mut s.h, &s.x, &layer.attn_norm, eps);

            // q, k, v = Wq h, Wk h, Wv h (+ LoRA B (A h), + biases)   [q_dim | kv_dim | kv_dim]
            project(&layer.qkv, &s.h, &mut s.qkv)?;
            lora::apply(lora, Block(l, Slot::Qkv), &s.h, &mut s.qkv);
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
            let rope = Rope {
                style: c.rope_style,
                head_dim: c.head_dim,
                table: &layer.rope,
            };
            rope.apply(q, pos);
            rope.apply(k, pos);
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
            lora::apply(lora, Block(l, Slot::AttnOutput), &s.att, &mut s.h);
            if let Some(w) = &layer.post_attn_norm {
                let o = s.h.clone();
                rmsnorm(&mut s.h, &o, w, eps);
            }
            add(&mut s.x, &s.h);

            // h = rmsnorm(x) * ffn_norm                                               [n_embd]
            rmsnorm(&mut s.h, &s.x, &layer.ffn_norm, eps);

            // gate = act(Wgate h) * (Wup h)                                            [n_ff]
            project(&layer.gate_up, &s.h, &mut s.gate_up)?;
            lora::apply(lora, Block(l, Slot::GateUp), &s.h, &mut s.gate_up);
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
            lora::apply(lora, Block(l, Slot::Down), gate, &mut s.h);
            if let Some(w) = &layer.post_ffn_norm {
                let o = s.h.clone();
                rmsnorm(&mut s.h, &o, w, eps);
            }
            add(&mut s.x, &s.h);
        }

        // h = rmsnorm(x) * output_norm                                               [n_embd]
        rmsnorm(&mut s.h, &s.x, &self.w.output_norm, eps);

        self.pos += 1;
        Ok(&s.h)
    }
}

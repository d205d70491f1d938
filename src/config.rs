//! Model hyperparameters from GGUF metadata, checked against the tensor table.
//!
//! Keys follow llama.cpp's GGUF conventions: `{arch}.embedding_length`, `{arch}.block_count`,
//! `{arch}.attention.head_count`, ... What differs between architectures (the tensors of a
//! block, norms, activation, RoPE pairing, sliding windows) is the [`Architecture`]
//! description in `arch.rs`; this module reads the numbers. A model is accepted only when every
//! tensor the decoder reads is present with the shape these numbers imply, so later stages can
//! index without checks.

use crate::arch::{Architecture, BlockDims, WindowLayers};
use crate::error::{Error, GgufProblem, Result};
use crate::gguf::{Header, Metadata, Value};

/// How RoPE pairs the dimensions of a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeStyle {
    /// Rotate (2i, 2i+1). GGUF llama files store Q and K permuted for this.
    Adjacent,
    /// Rotate (i, i + rope_dims/2): the NeoX / Hugging Face layout (qwen2, qwen3, gemma3, phi3).
    Half,
}

/// Context-extension scaling of RoPE frequencies, from `{arch}.rope.scaling.*`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RopeScaling {
    /// Positions divided by `factor` (`rope.scaling.type = linear`).
    Linear { factor: f32 },
    /// YaRN (`rope.scaling.type = yarn`): low frequencies interpolated by `factor`, high ones
    /// kept, a ramp between the dimensions that turn `beta_fast` and `beta_slow` times over
    /// the original context; cos and sin scaled by `1 + 0.1 ln(factor)`.
    Yarn {
        factor: f32,
        original_context: usize,
        beta_fast: f32,
        beta_slow: f32,
        ext_factor: f32,
    },
}

/// Per-frequency divisors read from tensors (their factors divide each pair's frequency).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeFactors {
    None,
    /// `rope_freqs.weight` (Llama 3.1-style long context baked in by the converter).
    Freqs,
    /// `rope_factors_short.weight` / `rope_factors_long.weight` (Phi-3 LongRoPE): the long
    /// ones when the context used exceeds `original_context`, as llama.cpp chooses.
    ShortLong {
        original_context: usize,
    },
}

pub const ROPE_FACTORS_SHORT: &str = "rope_factors_short.weight";
pub const ROPE_FACTORS_LONG: &str = "rope_factors_long.weight";

/// RoPE of one layer: the angle of pair i at position p is `p * freqs[i]`; cos and sin are
/// multiplied by `mscale`. Every scaling scheme reduces to these two (see [`Config::rope`]).
#[derive(Debug, Clone, PartialEq)]
pub struct RopeTable {
    pub freqs: Vec<f32>,
    pub mscale: f32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// What a block computes (`arch.rs`).
    pub arch: &'static Architecture,
    pub architecture: String,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub n_ff: usize,
    pub n_vocab: usize,
    /// Context length the model was trained for.
    pub context_length: usize,
    pub rope_base: f32,
    /// The base of sliding-window layers (gemma3's local layers).
    pub rope_base_swa: f32,
    /// Dimensions of each head that RoPE rotates (the rest pass through).
    pub rope_dims: usize,
    pub rope_style: RopeStyle,
    /// Scaling of the full-attention layers (sliding-window layers are never scaled).
    pub rope_scaling: Option<RopeScaling>,
    pub rope_factors: RopeFactors,
    /// `rope.scaling.attn_factor` (Phi-3 LongRoPE): multiplies cos and sin.
    pub rope_attn_factor: f32,
    pub rms_eps: f32,
    /// Multiplies q.k before the softmax: 1/sqrt(key_length) unless the architecture says
    /// otherwise.
    pub attention_scale: f32,
    /// Multiplies the embedding row (sqrt(n_embd) for Gemma, else 1).
    pub embedding_scale: f32,
    /// Keys a sliding-window layer sees: query p sees keys p - window + 1 ..= p.
    pub sliding_window: Option<usize>,
    /// Per layer: whether it attends through `sliding_window`.
    pub local_layers: Vec<bool>,
    /// No `output.weight`: the LM head reuses `token_embd.weight`.
    pub tied_embeddings: bool,
    /// `{arch}.pooling_type` as the file gives it (embedding models; `embed::Pooling::of`
    /// reads it), `None` in a generation model.
    pub pooling_type: Option<u64>,
}

pub const TOKEN_EMBD: &str = "token_embd.weight";
pub const OUTPUT_NORM: &str = "output_norm.weight";
pub const OUTPUT: &str = "output.weight";
pub const ROPE_FREQS: &str = "rope_freqs.weight";

impl Config {
    pub fn from_header(header: &Header) -> Result<Config> {
        let md = &header.metadata;
        let architecture = md
            .get_str("general.architecture")
            .ok_or_else(|| {
                Error::gguf(
                    0,
                    GgufProblem::MissingKey("general.architecture".to_string()),
                )
            })?
            .to_string();
        let arch = Architecture::by_name(&architecture)
            .ok_or_else(|| Error::UnsupportedArchitecture(architecture.clone()))?;
        let key = |k: &str| format!("{architecture}.{k}");
        let usize_key = |k: &str| -> Result<usize> {
            let v = md.require_u64(&key(k))?;
            usize::try_from(v)
                .ok()
                .filter(|&v| v > 0 && v <= 1 << 24)
                .ok_or_else(|| Error::ModelInvalid(format!("{} = {v} is out of range", key(k))))
        };
        let opt_usize = |k: &str| -> Result<Option<usize>> {
            match md.get(&key(k)) {
                None => Ok(None),
                Some(_) => usize_key(k).map(Some),
            }
        };
        let opt_f32 = |k: &str, default: f32| -> Result<f32> {
            let v = md.get_f64(&key(k)).map_or(default, |v| v as f32);
            match v.is_finite() && v > 0.0 {
                true => Ok(v),
                false => Err(Error::ModelInvalid(format!(
                    "{} = {v} is out of range",
                    key(k)
                ))),
            }
        };

        if md.get_u64(&key("expert_count")).unwrap_or(0) > 0 {
            return Err(Error::UnsupportedArchitecture(format!(
                "{architecture} with mixture-of-experts layers"
            )));
        }

        // Embedding models with bidirectional attention (llama.cpp's `attention.causal`):
        // every decoder here masks causally, which would compute other numbers.
        if md.get_bool(&key("attention.causal")) == Some(false) {
            return Err(Error::UnsupportedArchitecture(format!(
                "{architecture} with bidirectional attention ({architecture}.attention.causal = \
                 false)"
            )));
        }

        let n_embd = usize_key("embedding_length")?;
        let n_layer = usize_key("block_count")?;
        let n_head = usize_key("attention.head_count")?;
        let n_head_kv = opt_usize("attention.head_count_kv")?.unwrap_or(n_head);
        // Each block has at least 5 tensors: a larger count cannot match the tensor table, and
        // checking it here keeps a corrupt count from driving a long validation loop.
        let per_block = arch.block_tensors().len();
        if n_layer.saturating_mul(per_block) > header.tensors.len() {
            return Err(Error::ModelInvalid(format!(
                "block_count {n_layer} needs {} tensors but the file has {}",
                n_layer.saturating_mul(per_block),
                header.tensors.len()
            )));
        }
        let n_ff = usize_key("feed_forward_length")?;
        let context_length = usize_key("context_length")?;
        let head_dim = match opt_usize("attention.key_length")? {
            Some(d) => d,
            None if n_embd % n_head == 0 => n_embd / n_head,
            None => {
                return Err(Error::ModelInvalid(format!(
                    "embedding length {n_embd} is not divisible by {n_head} heads"
                )))
            }
        };
        if let Some(v) = opt_usize("attention.value_length")? {
            if v != head_dim {
                return Err(Error::ModelInvalid(format!(
                    "value head size {v} differs from key head size {head_dim}"
                )));
            }
        }
        if n_head % n_head_kv != 0 {
            return Err(Error::ModelInvalid(format!(
                "{n_head} query heads are not a multiple of {n_head_kv} KV heads"
            )));
        }
        let rope_dims = opt_usize("rope.dimension_count")?.unwrap_or(head_dim);
        if rope_dims > head_dim || rope_dims % 2 != 0 {
            return Err(Error::ModelInvalid(format!(
                "rope dimension count {rope_dims} does not fit head size {head_dim}"
            )));
        }
        let rope_base = opt_f32("rope.freq_base", 10000.0)?;
        let rope_base_swa = opt_f32(
            "rope.freq_base_swa",
            arch.default_rope_base_swa.unwrap_or(rope_base),
        )?;
        let rms_eps = opt_f32("attention.layer_norm_rms_epsilon", 1e-5)?;
        if rms_eps >= 1.0 {
            return Err(Error::ModelInvalid(format!(
                "rms epsilon {rms_eps} out of range"
            )));
        }
        let rope_scaling = rope_scaling(md, &architecture, context_length)?;
        let rope_attn_factor = opt_f32("rope.scaling.attn_factor", 1.0)?;
        let rope_factors = if header.tensor(ROPE_FREQS).is_some() {
            RopeFactors::Freqs
        } else if header.tensor(ROPE_FACTORS_SHORT).is_some() {
            RopeFactors::ShortLong {
                original_context: opt_usize("rope.scaling.original_context_length")?
                    .unwrap_or(context_length),
            }
        } else {
            RopeFactors::None
        };

        let (sliding_window, local_layers) = match arch.window_layers {
            WindowLayers::None => (None, vec![false; n_layer]),
            WindowLayers::Pattern { default_period } => {
                match opt_usize("attention.sliding_window")? {
                    None => (None, vec![false; n_layer]),
                    Some(w) => (
                        Some(w),
                        window_pattern(
                            md,
                            &key("attention.sliding_window_pattern"),
                            n_layer,
                            default_period,
                        )?,
                    ),
                }
            }
        };
        // Gemma 3 27B scales queries by 1/sqrt(n_embd / n_head) (its query_pre_attn_scalar);
        // every other size, and every other architecture, by 1/sqrt(key_length).
        let attention_scale = match (arch.name, n_layer) {
            ("gemma3", 62) => 1.0 / ((n_embd / n_head) as f32).sqrt(),
            _ => 1.0 / (head_dim as f32).sqrt(),
        };
        let embedding_scale = match arch.scale_embedding {
            true => (n_embd as f32).sqrt(),
            false => 1.0,
        };

        let embd = header
            .tensor(TOKEN_EMBD)
            .ok_or_else(|| Error::ModelInvalid(format!("tensor `{TOKEN_EMBD}` is missing")))?;
        let n_vocab = embd.dims.get(1).copied().unwrap_or(0) as usize;
        if let Some(tokens) = md.get_array("tokenizer.ggml.tokens") {
            if tokens.len() != n_vocab {
                return Err(Error::ModelInvalid(format!(
                    "the vocabulary has {} tokens but `{TOKEN_EMBD}` has {n_vocab} rows",
                    tokens.len()
                )));
            }
        }

        let pooling_type = md.get_u64(&key("pooling_type"));
        let config = Config {
            arch,
            architecture,
            n_embd,
            n_layer,
            n_head,
            n_head_kv,
            head_dim,
            n_ff,
            n_vocab,
            context_length,
            rope_base,
            rope_base_swa,
            rope_dims,
            rope_style: arch.rope_style,
            rope_scaling,
            rope_factors,
            rope_attn_factor,
            rms_eps,
            attention_scale,
            embedding_scale,
            sliding_window,
            local_layers,
            tied_embeddings: header.tensor(OUTPUT).is_none(),
            pooling_type,
        };
        config.check_tensors(header)?;
        Ok(config)
    }

    pub fn q_dim(&self) -> usize {
        self.n_head * self.head_dim
    }

    pub fn kv_dim(&self) -> usize {
        self.n_head_kv * self.head_dim
    }

    /// The sizes block tensor shapes are made of.
    pub fn block_dims(&self) -> BlockDims {
        BlockDims {
            n_embd: self.n_embd as u64,
            q_dim: self.q_dim() as u64,
            kv_dim: self.kv_dim() as u64,
            head_dim: self.head_dim as u64,
            n_ff: self.n_ff as u64,
        }
    }

    /// The sliding window of `layer`, if it is a local layer.
    pub fn window(&self, layer: usize) -> Option<usize> {
        self.sliding_window.filter(|_| self.local_layers[layer])
    }

    /// The frequency-factor tensor RoPE reads for a context of `context_len` positions.
    pub fn rope_factor_tensor(&self, context_len: usize) -> Option<&'static str> {
        match self.rope_factors {
            RopeFactors::None => None,
            RopeFactors::Freqs => Some(ROPE_FREQS),
            RopeFactors::ShortLong { original_context } if context_len > original_context => {
                Some(ROPE_FACTORS_LONG)
            }
            RopeFactors::ShortLong { .. } => Some(ROPE_FACTORS_SHORT),
        }
    }

    /// RoPE of `layer`: each pair's frequency `base^(-2i / rope_dims)`, divided by the factor
    /// tensor's value (`factors`, from [`rope_factor_tensor`](Self::rope_factor_tensor)), then
    /// scaled as the metadata asks, and the multiplier of cos and sin. Local (sliding-window)
    /// layers use their own base and no scaling, as llama.cpp does.
    pub fn rope(&self, layer: usize, factors: Option<&[f32]>) -> Result<RopeTable> {
        let n_pairs = self.rope_dims / 2;
        if let Some(f) = factors {
            if f.len() != n_pairs || f.iter().any(|&v| !(v > 0.0 && v.is_finite())) {
                return Err(Error::ModelInvalid(format!(
                    "RoPE frequency factors must be {n_pairs} positive values"
                )));
            }
        }
        let local = self.window(layer).is_some();
        let base = if local {
            self.rope_base_swa
        } else {
            self.rope_base
        };
        let scaling = if local { None } else { self.rope_scaling };
        let d = self.rope_dims as f32;
        let mut mscale = self.rope_attn_factor;
        // YaRN's ramp: pair i keeps its frequency (mix 1) below `low` dimensions and is
        // interpolated (mix 0) above `high` (ggml's rope_yarn_corr_dims).
        let yarn_mix = |i: usize, beta_fast: f32, beta_slow: f32, original: usize, ext: f32| {
            let corr = |beta: f32| {
                d * (original as f32 / (beta * 2.0 * std::f32::consts::PI)).ln() / (2.0 * base.ln())
            };
            let low = corr(beta_fast).floor().max(0.0);
            let high = corr(beta_slow).ceil().min(d - 1.0);
            let y = (i as f32 - low) / (high - low).max(0.001);
            (1.0 - y.clamp(0.0, 1.0)) * ext
        };
        if let Some(RopeScaling::Yarn {
            factor, ext_factor, ..
        }) = scaling
        {
            if ext_factor != 0.0 {
                mscale *= 1.0 + 0.1 * factor.ln();
            }
        }
        let freqs = (0..n_pairs)
            .map(|i| {
                let f = base.powf(-((2 * i) as f32) / d) / factors.map_or(1.0, |r| r[i]);
                match scaling {
                    None => f,
                    Some(RopeScaling::Linear { factor }) => f / factor,
                    Some(RopeScaling::Yarn {
                        factor,
                        original_context,
                        beta_fast,
                        beta_slow,
                        ext_factor,
                    }) => {
                        let mix = yarn_mix(i, beta_fast, beta_slow, original_context, ext_factor);
                        f * ((1.0 - mix) / factor + mix)
                    }
                }
            })
            .collect();
        Ok(RopeTable { freqs, mscale })
    }

    /// Every tensor the decoder reads, with the GGUF dims it must have.
    pub fn expected_tensors(&self) -> Vec<(String, Vec<u64>)> {
        let (e, v) = (self.n_embd as u64, self.n_vocab as u64);
        let mut t = vec![
            (TOKEN_EMBD.to_string(), vec![e, v]),
            (OUTPUT_NORM.to_string(), vec![e]),
        ];
        if !self.tied_embeddings {
            t.push((OUTPUT.to_string(), vec![e, v]));
        }
        let pairs = vec![self.rope_dims as u64 / 2];
        match self.rope_factors {
            RopeFactors::None => {}
            RopeFactors::Freqs => t.push((ROPE_FREQS.to_string(), pairs)),
            RopeFactors::ShortLong { .. } => {
                t.push((ROPE_FACTORS_SHORT.to_string(), pairs.clone()));
                t.push((ROPE_FACTORS_LONG.to_string(), pairs));
            }
        }
        let dims = self.block_dims();
        for l in 0..self.n_layer {
            for tensor in self.arch.block_tensors() {
                t.push((tensor.name(l), tensor.dims(&dims)));
            }
        }
        t
    }

    fn check_tensors(&self, header: &Header) -> Result<()> {
        for (name, dims) in self.expected_tensors() {
            let t = header
                .tensor(&name)
                .ok_or_else(|| Error::ModelInvalid(format!("tensor `{name}` is missing")))?;
            if t.dims != dims {
                return Err(Error::ModelInvalid(format!(
                    "tensor `{name}` has shape {:?}, expected {dims:?}",
                    t.dims
                )));
            }
        }
        Ok(())
    }
}

/// Which layers are local: `key` as a period (every `period`-th layer global, the rest local)
/// or as one boolean per layer; absent, the architecture's default period.
fn window_pattern(
    md: &Metadata,
    key: &str,
    n_layer: usize,
    default_period: usize,
) -> Result<Vec<bool>> {
    let by_period = |period: usize| (0..n_layer).map(|l| (l + 1) % period != 0).collect();
    match md.get(key) {
        None => Ok(by_period(default_period)),
        Some(Value::Array(values)) if values.len() == n_layer => values
            .iter()
            .map(|v| {
                v.as_bool()
                    .or_else(|| v.as_u64().map(|n| n != 0))
                    .ok_or_else(|| Error::ModelInvalid(format!("`{key}` holds a non-boolean")))
            })
            .collect(),
        Some(v) => match v.as_u64() {
            Some(p) if p > 0 && p <= 1 << 16 => Ok(by_period(p as usize)),
            _ => Err(Error::ModelInvalid(format!(
                "`{key}` is neither a period nor one flag per layer"
            ))),
        },
    }
}

fn rope_scaling(md: &Metadata, arch: &str, context_length: usize) -> Result<Option<RopeScaling>> {
    let key = |k: &str| format!("{arch}.rope.scaling.{k}");
    let kind = md.get_str(&key("type"));
    let factor = md
        .get_f64(&key("factor"))
        .or_else(|| {
            // Older files: `rope.scale_linear`.
            md.get_f64(&format!("{arch}.rope.scale_linear"))
        })
        .map(|f| f as f32);
    let f32_or = |k: &str, default: f32| md.get_f64(&key(k)).map_or(default, |v| v as f32);
    match (kind, factor) {
        (None | Some("none"), None) => Ok(None),
        (Some("none"), Some(_)) => Ok(None),
        (_, Some(f)) if !(f > 0.0 && f.is_finite()) => Err(Error::ModelInvalid(format!(
            "rope scaling factor {f} is out of range"
        ))),
        (None | Some("linear"), Some(f)) => {
            Ok((f != 1.0).then_some(RopeScaling::Linear { factor: f }))
        }
        (Some("yarn"), Some(factor)) => {
            let original_context = md
                .get_u64(&key("original_context_length"))
                .map_or(context_length, |v| v as usize);
            let (beta_fast, beta_slow) = (
                f32_or("yarn_beta_fast", 32.0),
                f32_or("yarn_beta_slow", 1.0),
            );
            let ext_factor = f32_or("yarn_ext_factor", 1.0);
            let sane = original_context > 0
                && [beta_fast, beta_slow]
                    .iter()
                    .all(|b| *b > 0.0 && b.is_finite())
                && (0.0..=1.0).contains(&ext_factor);
            if !sane {
                return Err(Error::ModelInvalid(format!(
                    "YaRN parameters out of range: original context {original_context}, beta \
                     {beta_fast}/{beta_slow}, ext_factor {ext_factor}"
                )));
            }
            Ok(Some(RopeScaling::Yarn {
                factor,
                original_context,
                beta_fast,
                beta_slow,
                ext_factor,
            }))
        }
        (Some(k @ ("linear" | "yarn")), None) => Err(Error::ModelInvalid(format!(
            "rope scaling `{k}` without a factor"
        ))),
        (Some(other), _) => Err(Error::ModelInvalid(format!(
            "rope scaling `{other}` is not supported (linear and yarn are)"
        ))),
    }
}

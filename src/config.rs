//! Model hyperparameters from GGUF metadata, checked against the tensor table.
//!
//! Keys follow llama.cpp's GGUF conventions: `{arch}.embedding_length`, `{arch}.block_count`,
//! `{arch}.attention.head_count`, ... A model is accepted only when every tensor the decoder
//! reads is present with the shape these numbers imply, so later stages can index without checks.

use crate::error::{Error, GgufProblem, Result};
use crate::gguf::Header;

/// Architectures this engine runs. Mistral, SmolLM and TinyLlama GGUFs all say `llama`.
pub const SUPPORTED_ARCHITECTURES: &[&str] = &["llama"];

/// How RoPE pairs the dimensions of a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeStyle {
    /// Rotate (2i, 2i+1). GGUF llama files store Q and K permuted for this.
    Adjacent,
    /// Rotate (i, i + d/2): Hugging Face layout, used by e.g. qwen2 GGUFs.
    Half,
}

/// Context-extension scaling of RoPE frequencies, from `{arch}.rope.scaling.*`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RopeScaling {
    /// Positions divided by `factor` (`rope.scaling.type = linear`).
    Linear { factor: f32 },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
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
    /// Dimensions of each head that RoPE rotates (the rest pass through).
    pub rope_dims: usize,
    pub rope_style: RopeStyle,
    pub rope_scaling: Option<RopeScaling>,
    /// Per-frequency divisors from a `rope_freqs.weight` tensor (Llama 3.1 style long-context
    /// scaling is baked into it by the converter); read by the decoder when present.
    pub has_rope_freqs: bool,
    pub rms_eps: f32,
    /// No `output.weight`: the LM head reuses `token_embd.weight`.
    pub tied_embeddings: bool,
}

/// Names of the tensors a llama block reads, in GGUF naming.
pub fn block_tensor(layer: usize, name: &str) -> String {
    format!("blk.{layer}.{name}.weight")
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
        if !SUPPORTED_ARCHITECTURES.contains(&architecture.as_str()) {
            return Err(Error::UnsupportedArchitecture(architecture));
        }
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

        if md.get_u64(&key("expert_count")).unwrap_or(0) > 0 {
            return Err(Error::UnsupportedArchitecture(format!(
                "{architecture} with mixture-of-experts layers"
            )));
        }

        let n_embd = usize_key("embedding_length")?;
        let n_layer = usize_key("block_count")?;
        let n_head = usize_key("attention.head_count")?;
        let n_head_kv = opt_usize("attention.head_count_kv")?.unwrap_or(n_head);
        // Each block has 9 tensors: a larger count cannot match the tensor table, and checking
        // it here keeps a corrupt count from driving a long validation loop.
        if n_layer.saturating_mul(9) > header.tensors.len() {
            return Err(Error::ModelInvalid(format!(
                "block_count {n_layer} needs {} tensors but the file has {}",
                n_layer.saturating_mul(9),
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
        let rope_base = md.get_f64(&key("rope.freq_base")).unwrap_or(10000.0) as f32;
        let rms_eps = md
            .get_f64(&key("attention.layer_norm_rms_epsilon"))
            .unwrap_or(1e-5) as f32;
        let in_range = rope_base > 0.0 && rope_base.is_finite() && rms_eps > 0.0 && rms_eps < 1.0;
        if !in_range {
            return Err(Error::ModelInvalid(format!(
                "rope base {rope_base} or rms epsilon {rms_eps} out of range"
            )));
        }
        let rope_scaling = rope_scaling(md, &architecture)?;

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

        let config = Config {
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
            rope_dims,
            rope_style: RopeStyle::Adjacent,
            rope_scaling,
            has_rope_freqs: header.tensor(ROPE_FREQS).is_some(),
            rms_eps,
            tied_embeddings: header.tensor(OUTPUT).is_none(),
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

    /// Every tensor the decoder reads, with the GGUF dims it must have.
    pub fn expected_tensors(&self) -> Vec<(String, Vec<u64>)> {
        let (e, q, kv, f, v) = (
            self.n_embd as u64,
            self.q_dim() as u64,
            self.kv_dim() as u64,
            self.n_ff as u64,
            self.n_vocab as u64,
        );
        let mut t = vec![
            (TOKEN_EMBD.to_string(), vec![e, v]),
            (OUTPUT_NORM.to_string(), vec![e]),
        ];
        if !self.tied_embeddings {
            t.push((OUTPUT.to_string(), vec![e, v]));
        }
        if self.has_rope_freqs {
            t.push((ROPE_FREQS.to_string(), vec![self.rope_dims as u64 / 2]));
        }
        for l in 0..self.n_layer {
            for (name, dims) in [
                ("attn_norm", vec![e]),
                ("attn_q", vec![e, q]),
                ("attn_k", vec![e, kv]),
                ("attn_v", vec![e, kv]),
                ("attn_output", vec![q, e]),
                ("ffn_norm", vec![e]),
                ("ffn_gate", vec![e, f]),
                ("ffn_up", vec![e, f]),
                ("ffn_down", vec![f, e]),
            ] {
                t.push((block_tensor(l, name), dims));
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

fn rope_scaling(md: &crate::gguf::Metadata, arch: &str) -> Result<Option<RopeScaling>> {
    let kind = md.get_str(&format!("{arch}.rope.scaling.type"));
    let factor = md
        .get_f64(&format!("{arch}.rope.scaling.factor"))
        .or_else(|| {
            // Older files: `rope.scale_linear`.
            md.get_f64(&format!("{arch}.rope.scale_linear"))
        })
        .map(|f| f as f32);
    match (kind, factor) {
        (None | Some("none"), None) => Ok(None),
        (Some("none"), Some(_)) => Ok(None),
        (None | Some("linear"), Some(f)) if f > 0.0 && f.is_finite() => {
            Ok((f != 1.0).then_some(RopeScaling::Linear { factor: f }))
        }
        (Some(other), _) if other != "linear" => Err(Error::ModelInvalid(format!(
            "rope scaling `{other}` is not supported (linear is)"
        ))),
        (_, f) => Err(Error::ModelInvalid(format!(
            "rope scaling factor {f:?} is out of range"
        ))),
    }
}

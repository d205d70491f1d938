//! The architectures this engine runs, each one description.
//!
//! Everything that differs between llama-family architectures is a field of [`Architecture`]:
//! which tensors a block holds (and so what the loaders read and `Config` checks), whether q/k/v
//! and gate/up come fused in one tensor, biases, per-head q/k norms, post-norms, the activation,
//! the embedding scale, the RoPE pairing and sliding-window attention. `Config` (hyperparameters
//! from the metadata), the CPU reference, the GPU model and the weight loader all read it; no
//! other list of tensor names exists. Adding an architecture is adding one constant below (and a
//! kernel if it needs an operation no other architecture has).

use crate::config::RopeStyle;

/// The gated activation of the feed-forward block: `down(act(gate) * up)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `x * sigmoid(x)` (SwiGLU).
    Silu,
    /// GELU with the tanh approximation, as Gemma's `gelu_pytorch_tanh` (GeGLU).
    GeluTanh,
}

/// How a block holds its q, k and v projections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QkvTensors {
    /// `attn_q`, `attn_k`, `attn_v`.
    Separate,
    /// One `attn_qkv` whose output rows are q, then k, then v (phi3).
    Fused,
}

/// How a block holds its gate and up projections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateUpTensors {
    /// `ffn_gate`, `ffn_up`.
    Separate,
    /// One `ffn_up` of `2 * n_ff` rows: the gate, then the up projection (phi3).
    Fused,
}

/// Which layers attend through a sliding window (when the file gives a window size).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowLayers {
    /// No layer: the window metadata, if any, is ignored (llama.cpp does so for phi3).
    None,
    /// Layer `l` is local unless `(l + 1) % period == 0`, the period read from
    /// `{arch}.attention.sliding_window_pattern` when present (gemma3: 5 local, 1 global).
    Pattern { default_period: usize },
}

/// One architecture: what a block computes, beyond the llama block every one of them shares.
#[derive(Debug, PartialEq)]
pub struct Architecture {
    /// `general.architecture` in the GGUF.
    pub name: &'static str,
    pub qkv: QkvTensors,
    pub gate_up: GateUpTensors,
    /// `attn_q/k/v.bias`, added right after the projections.
    pub qkv_bias: bool,
    /// `attn_q_norm`/`attn_k_norm`: RMSNorm of each query and key head (weights of head_dim),
    /// after the projection (and bias) and before RoPE.
    pub qk_norm: bool,
    /// `post_attention_norm`/`post_ffw_norm`: the block outputs are normalized before they
    /// are added to the residual stream.
    pub post_norms: bool,
    pub activation: Activation,
    /// The embedding row is multiplied by sqrt(n_embd) (Gemma).
    pub scale_embedding: bool,
    pub rope_style: RopeStyle,
    pub window_layers: WindowLayers,
    /// `{arch}.rope.freq_base_swa` when absent: the base of sliding-window layers (gemma3's
    /// local layers use 10000 while its global ones use 1e6).
    pub default_rope_base_swa: Option<f32>,
    /// The built-in chat format (`chat.rs`) for files of this architecture that carry no
    /// template (the Gemma-3-270M base file has none); `None`: no single format (llama files
    /// come in ChatML, Llama 2, Llama 3, Mistral, ... flavours), ChatML is used.
    pub chat_format: Option<&'static str>,
}

/// Plain llama (also Mistral, SmolLM, TinyLlama files, which say `llama`).
pub const LLAMA: Architecture = Architecture {
    name: "llama",
    qkv: QkvTensors::Separate,
    gate_up: GateUpTensors::Separate,
    qkv_bias: false,
    qk_norm: false,
    post_norms: false,
    activation: Activation::Silu,
    scale_embedding: false,
    rope_style: RopeStyle::Adjacent,
    window_layers: WindowLayers::None,
    default_rope_base_swa: None,
    chat_format: None,
};

/// Qwen2 and Qwen2.5: q/k/v biases, NeoX RoPE.
pub const QWEN2: Architecture = Architecture {
    name: "qwen2",
    qkv_bias: true,
    rope_style: RopeStyle::Half,
    chat_format: Some("chatml"),
    ..LLAMA
};

/// Qwen3 (dense): per-head q/k RMSNorm, NeoX RoPE.
pub const QWEN3: Architecture = Architecture {
    name: "qwen3",
    qk_norm: true,
    rope_style: RopeStyle::Half,
    chat_format: Some("chatml"),
    ..LLAMA
};

/// Gemma 3 text models.
pub const GEMMA3: Architecture = Architecture {
    name: "gemma3",
    qk_norm: true,
    post_norms: true,
    activation: Activation::GeluTanh,
    scale_embedding: true,
    rope_style: RopeStyle::Half,
    window_layers: WindowLayers::Pattern { default_period: 6 },
    default_rope_base_swa: Some(10000.0),
    chat_format: Some("gemma"),
    ..LLAMA
};

/// Phi-3 and Phi-3.5 mini: fused qkv and gate/up tensors, NeoX RoPE, LongRoPE factors.
pub const PHI3: Architecture = Architecture {
    name: "phi3",
    qkv: QkvTensors::Fused,
    gate_up: GateUpTensors::Fused,
    rope_style: RopeStyle::Half,
    chat_format: Some("phi3"),
    ..LLAMA
};

pub const ARCHITECTURES: [&Architecture; 5] = [&LLAMA, &QWEN2, &QWEN3, &GEMMA3, &PHI3];

/// Architectures llama.cpp knows that are refused here with a reason of their own.
const REFUSED: [(&str, &str); 2] = [
    (
        "qwen3moe",
        "Qwen3 mixture-of-experts models are not supported (dense qwen3 is)",
    ),
    (
        "qwen2moe",
        "Qwen2 mixture-of-experts models are not supported (dense qwen2 is)",
    ),
];

impl Architecture {
    pub fn by_name(name: &str) -> Option<&'static Architecture> {
        ARCHITECTURES.into_iter().find(|a| a.name == name)
    }

    /// Why `name` is not run, for `UNSUPPORTED_ARCHITECTURE`.
    pub fn refusal(name: &str) -> String {
        let supported = ARCHITECTURES.map(|a| a.name).join(", ");
        match REFUSED.iter().find(|(n, _)| *n == name) {
            Some((_, why)) => format!("{name}: {why}; supported: {supported}"),
            None => format!("{name} (supported: {supported})"),
        }
    }

    /// The tensors of one block, in the order the forward pass reads them.
    pub fn block_tensors(&self) -> Vec<BlockTensor> {
        use BlockTensor::*;
        let mut t = vec![AttnNorm];
        match self.qkv {
            QkvTensors::Separate => t.extend([Q, K, V]),
            QkvTensors::Fused => t.push(Qkv),
        }
        if self.qkv_bias {
            t.extend([QBias, KBias, VBias]);
        }
        if self.qk_norm {
            t.extend([QNorm, KNorm]);
        }
        t.push(AttnOutput);
        if self.post_norms {
            t.push(PostAttnNorm);
        }
        t.push(FfnNorm);
        match self.gate_up {
            GateUpTensors::Separate => t.extend([Gate, Up]),
            GateUpTensors::Fused => t.push(GateUp),
        }
        t.push(Down);
        if self.post_norms {
            t.push(PostFfnNorm);
        }
        t
    }

    /// The tensors whose outputs make q, k, v (one, or three stacked in this order).
    pub fn qkv_tensors(&self) -> &'static [BlockTensor] {
        match self.qkv {
            QkvTensors::Separate => &[BlockTensor::Q, BlockTensor::K, BlockTensor::V],
            QkvTensors::Fused => &[BlockTensor::Qkv],
        }
    }

    /// The tensors whose outputs make gate and up (one, or two stacked in this order).
    pub fn gate_up_tensors(&self) -> &'static [BlockTensor] {
        match self.gate_up {
            GateUpTensors::Separate => &[BlockTensor::Gate, BlockTensor::Up],
            GateUpTensors::Fused => &[BlockTensor::GateUp],
        }
    }
}

/// A tensor of a block, by role. Shapes in GGUF `ne` order (`[cols, rows]` for a matrix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockTensor {
    AttnNorm,
    Q,
    K,
    V,
    Qkv,
    QBias,
    KBias,
    VBias,
    QNorm,
    KNorm,
    AttnOutput,
    PostAttnNorm,
    FfnNorm,
    Gate,
    Up,
    GateUp,
    Down,
    PostFfnNorm,
}

/// The sizes a block tensor's shape is made of.
pub struct BlockDims {
    pub n_embd: u64,
    pub q_dim: u64,
    pub kv_dim: u64,
    pub head_dim: u64,
    pub n_ff: u64,
}

impl BlockTensor {
    /// The name after `blk.N.` in a GGUF.
    pub fn suffix(self) -> &'static str {
        use BlockTensor::*;
        match self {
            AttnNorm => "attn_norm.weight",
            Q => "attn_q.weight",
            K => "attn_k.weight",
            V => "attn_v.weight",
            Qkv => "attn_qkv.weight",
            QBias => "attn_q.bias",
            KBias => "attn_k.bias",
            VBias => "attn_v.bias",
            QNorm => "attn_q_norm.weight",
            KNorm => "attn_k_norm.weight",
            AttnOutput => "attn_output.weight",
            PostAttnNorm => "post_attention_norm.weight",
            FfnNorm => "ffn_norm.weight",
            Gate => "ffn_gate.weight",
            Up | GateUp => "ffn_up.weight",
            Down => "ffn_down.weight",
            PostFfnNorm => "post_ffw_norm.weight",
        }
    }

    /// `blk.{layer}.{suffix}`.
    pub fn name(self, layer: usize) -> String {
        format!("blk.{layer}.{}", self.suffix())
    }

    /// The GGUF dims this tensor must have.
    pub fn dims(self, d: &BlockDims) -> Vec<u64> {
        use BlockTensor::*;
        let (e, q, kv, hd, f) = (d.n_embd, d.q_dim, d.kv_dim, d.head_dim, d.n_ff);
        match self {
            AttnNorm | PostAttnNorm | FfnNorm | PostFfnNorm => vec![e],
            Q => vec![e, q],
            K | V => vec![e, kv],
            Qkv => vec![e, q + 2 * kv],
            QBias => vec![q],
            KBias | VBias => vec![kv],
            QNorm | KNorm => vec![hd],
            AttnOutput => vec![q, e],
            Gate | Up => vec![e, f],
            GateUp => vec![e, 2 * f],
            Down => vec![f, e],
        }
    }

    /// Whether the tensor is a vector (norm weights, biases), kept in f32 by every backend.
    pub fn is_vector(self, d: &BlockDims) -> bool {
        self.dims(d).len() == 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_architecture_reads_a_norm_projections_and_a_feed_forward() {
        for a in ARCHITECTURES {
            let t = a.block_tensors();
            assert_eq!(t[0], BlockTensor::AttnNorm, "{}", a.name);
            assert!(t.contains(&BlockTensor::AttnOutput) && t.contains(&BlockTensor::Down));
            for q in a.qkv_tensors().iter().chain(a.gate_up_tensors()) {
                assert!(t.contains(q), "{}: {q:?}", a.name);
            }
        }
    }

    #[test]
    fn unknown_and_refused_architectures_name_the_supported_ones() {
        assert!(Architecture::by_name("mamba").is_none());
        let why = Architecture::refusal("qwen3moe");
        assert!(
            why.contains("mixture-of-experts") && why.contains("qwen3"),
            "{why}"
        );
        assert!(Architecture::refusal("mamba").contains("gemma3"));
    }
}

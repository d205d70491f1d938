//! What a decode matvec multiplies (`shaders/matvec_input_*.wgsl`): x itself, or x after the
//! step that precedes the product in the forward pass, folded into the product's load of x so
//! that the step needs no dispatch of its own: the RMSNorm before the q/k/v and gate/up
//! projections and the LM head (`Normed`), or the feed-forward gate before the down projection
//! (`Gated`). A batch (prefill) runs those steps as kernels of their own (`norm.rs`, `ffn.rs`).

use crate::arch::Activation;
use crate::error::{Error, Result};
use crate::gpu::weights::GpuWeight;

const INPUT_X: &str = include_str!("../../../shaders/matvec_input_x.wgsl");
const INPUT_NORMED: &str = include_str!("../../../shaders/matvec_input_normed.wgsl");
const INPUT_GATED: &str = include_str!("../../../shaders/matvec_input_gated.wgsl");
const ACTIVATION: &str = include_str!("../../../shaders/activation.wgsl");
/// Where `matvec_input_normed.wgsl` binds the norm weight.
const NORM_WEIGHT_BINDING: u32 = 7;

/// Which input a matvec pipeline is compiled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    X,
    Normed,
    Gated(Activation),
}

impl InputKind {
    /// The pipeline name's suffix and the WGSL that defines `input_of`, `squares`, `finish`.
    pub(crate) fn source(self) -> (&'static str, String) {
        match self {
            InputKind::X => ("", INPUT_X.to_string()),
            InputKind::Normed => ("_normed", INPUT_NORMED.to_string()),
            InputKind::Gated(act) => {
                let (suffix, name) = match act {
                    Activation::Silu => ("_silu", "silu"),
                    Activation::GeluTanh => ("_gelu", "gelu_tanh"),
                };
                let gated = INPUT_GATED.replace("{{ACT}}", name);
                (suffix, [ACTIVATION, gated.as_str()].join("\n"))
            }
        }
    }
}

/// The input of one matvec, bound.
#[derive(Clone)]
pub enum MatVecInput<'a> {
    /// `x` (`cols` f32).
    X(wgpu::BufferBinding<'a>),
    /// `rmsnorm(x) * weight` (`x` and `weight`: `cols` f32).
    Normed {
        x: wgpu::BufferBinding<'a>,
        weight: wgpu::BufferBinding<'a>,
        eps: f32,
    },
    /// `act(gate) * up`: `gate_up` binds `cols` values of gate from its start and `cols` of up
    /// from value `up_offset` (a multiple of 4).
    Gated {
        gate_up: wgpu::BufferBinding<'a>,
        up_offset: u64,
        activation: Activation,
    },
}

impl<'a> MatVecInput<'a> {
    pub fn kind(&self) -> InputKind {
        match self {
            MatVecInput::X(_) => InputKind::X,
            MatVecInput::Normed { .. } => InputKind::Normed,
            MatVecInput::Gated { activation, .. } => InputKind::Gated(*activation),
        }
    }

    /// What the shader binds as x.
    pub(crate) fn x(&self) -> &wgpu::BufferBinding<'a> {
        match self {
            MatVecInput::X(x) | MatVecInput::Normed { x, .. } => x,
            MatVecInput::Gated { gate_up, .. } => gate_up,
        }
    }

    /// Bindings besides x: the norm weight.
    pub(crate) fn extra_bindings(&self) -> Vec<(u32, wgpu::BufferBinding<'a>)> {
        match self {
            MatVecInput::Normed { weight, .. } => vec![(NORM_WEIGHT_BINDING, weight.clone())],
            _ => Vec::new(),
        }
    }

    /// `(up_offset in vec4s, eps)` for the weight parameters.
    pub(crate) fn params(&self) -> (u32, f32) {
        match self {
            MatVecInput::X(_) => (0, 0.0),
            MatVecInput::Normed { eps, .. } => (0, *eps),
            MatVecInput::Gated { up_offset, .. } => ((*up_offset / 4) as u32, 0.0),
        }
    }

    /// The checks of `check_io` for what x does not show: the up values and the norm weight
    /// are there, and `y` is not among them.
    pub(crate) fn check(&self, w: &GpuWeight, y: &wgpu::Buffer) -> Result<()> {
        let bytes = super::binding_bytes;
        let problem = match self {
            MatVecInput::X(_) => None,
            MatVecInput::Normed { weight, .. } => (bytes(weight) < w.cols * 4
                || weight.buffer == y)
                .then_some("the norm weight must hold `cols` values, in a buffer other than y"),
            MatVecInput::Gated {
                gate_up, up_offset, ..
            } => (up_offset % 4 != 0
                || bytes(gate_up) < (up_offset + w.cols) * 4
                || *up_offset < w.cols
                || up_offset / 4 > u32::MAX as u64)
                .then_some("gate and up must each hold `cols` values, up a multiple of 4 after"),
        };
        match problem {
            Some(p) => Err(Error::InvalidArgument(format!("`{}`: {p}", w.name))),
            None => Ok(()),
        }
    }
}

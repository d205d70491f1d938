//! How a decode matvec writes its rows (`shaders/matvec_output_*.wgsl`): to y (`Y`, every
//! product), or, for the q/k/v projection of one token, with RoPE and the KV-cache append in
//! its epilogue (`RopeKv`): the bias added (qwen2), q and k rotated at the step's position, q
//! written to the rotated-q buffer and k and v into the layer's cache row, so that no
//! `rope_kv` dispatch (`rope.rs`) follows the projection. A prefill batch keeps that dispatch:
//! its matmul tiles rows by the dozen and has no such epilogue.

use bytemuck::{Pod, Zeroable};

use super::binding_bytes;
use super::matvec::{check_routes, MatVec, MatVecInput, Route};
use super::rope::ROPE_ANGLE;
use crate::error::{Error, Result};
use crate::gpu::kernel::{whole, Op, ShaderFeature};
use crate::gpu::kv_cache::KvElement;
use crate::gpu::weights::GpuWeight;
use crate::gpu::GpuContext;

const OUTPUT_Y: &str = include_str!("../../../shaders/matvec_output_y.wgsl");
const OUTPUT_ROPE: &str = include_str!("../../../shaders/matvec_output_rope.wgsl");

/// The most rotated pairs per head the epilogue's uniform holds (heads of up to 512 values).
pub const MAX_ROPE_PAIRS: usize = 256;

/// Which output a matvec pipeline is compiled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    /// Rows to y (`+=` for a fused residual).
    Y,
    /// The q/k/v projection's RoPE epilogue, for a cache of `kv` values, with or without the
    /// q/k/v biases.
    RopeKv { kv: KvElement, bias: bool },
}

impl OutputKind {
    /// The optional shader features the output's WGSL uses (an f16 cache's stores).
    pub(crate) fn features(self) -> &'static [ShaderFeature] {
        match self {
            OutputKind::Y => &[],
            OutputKind::RopeKv { kv, .. } => kv.features(),
        }
    }

    /// The pipeline name's suffix and the WGSL that defines `slot_row` and `write_rows`.
    pub(crate) fn source(self) -> (String, String) {
        match self {
            OutputKind::Y => (String::new(), OUTPUT_Y.to_string()),
            OutputKind::RopeKv { kv, bias } => {
                let (binding, value) = match bias {
                    true => (
                        "@group(0) @binding(11) var<storage, read> qkv_bias: array<f32>;",
                        "return qkv_bias[i];",
                    ),
                    false => ("", "return 0.0;"),
                };
                let text = OUTPUT_ROPE
                    .replace("{{KV}}", kv.wgsl())
                    .replace("{{FREQ_VEC4S}}", &(MAX_ROPE_PAIRS / 4).to_string())
                    .replace("{{BIAS_BINDING}}", binding)
                    .replace("{{BIAS}}", value);
                let suffix = format!("_rope_{}{}", kv.wgsl(), if bias { "_bias" } else { "" });
                (suffix, [ROPE_ANGLE, text.as_str()].join("\n"))
            }
        }
    }
}

/// `RopeKv` of `matvec_output_rope.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(crate) struct RopeKvParams {
    pub n_head: u32,
    pub n_head_kv: u32,
    pub head_dim: u32,
    pub rope_dims: u32,
    pub half_style: u32,
    pub mscale: f32,
    pub _pad: [u32; 2],
    pub freqs: [f32; MAX_ROPE_PAIRS],
}

/// One layer's RoPE epilogue, bound: what the q/k/v matvec writes besides q and reads besides
/// x (made by `Rope::epilogue`, which checks the cache and the bias).
pub struct RopeKvTarget<'a> {
    pub(crate) kind: OutputKind,
    /// A `RopeKvParams` uniform.
    pub(crate) params: wgpu::Buffer,
    pub(crate) step: &'a wgpu::Buffer,
    pub(crate) k_cache: &'a wgpu::Buffer,
    pub(crate) v_cache: &'a wgpu::Buffer,
    pub(crate) bias: Option<wgpu::BufferBinding<'a>>,
    pub(crate) head_dim: u64,
    pub(crate) q_dim: u64,
    pub(crate) kv_dim: u64,
}

impl MatVec {
    /// The q/k/v projection `w` of one token, x as `input` gives it, written by `target`'s
    /// epilogue: `routes` send w's rows to q | k | v coordinates (q from 0, k from q_dim, v
    /// from q_dim + kv_dim; the bias's layout); q, biased and rotated, goes to `q_out`, k
    /// (rotated) and v (biased) to the cache row of the step's position. One op. `w` must be
    /// one part of whole heads, each route whole heads (a rotation pair is two rows of a head:
    /// `matvec_output_rope.wgsl` pairs rows within the weight).
    pub fn op_rope_kv(
        &self,
        ctx: &GpuContext,
        w: &GpuWeight,
        input: MatVecInput<'_>,
        q_out: &wgpu::Buffer,
        routes: &[Route],
        target: &RopeKvTarget<'_>,
    ) -> Result<Vec<Op>> {
        check_routes(w, routes)?;
        let hd = target.head_dim;
        let ends = target.q_dim + 2 * target.kv_dim;
        let whole_heads = routes.iter().all(|r| {
            r.first_row % hd == 0 && r.rows % hd == 0 && r.base % hd == 0 && r.base + r.rows <= ends
        });
        let problem = if w.parts.len() != 1 {
            Some("it is split into parts".to_string())
        } else if !whole_heads {
            Some(format!(
                "its routes are not whole heads of {hd} within q | k | v"
            ))
        } else if binding_bytes(input.x()) < w.cols * 4 {
            Some("x is shorter than a row".to_string())
        } else if q_out.size() < target.q_dim * 4 || input.x().buffer == q_out {
            Some("q_out must hold q_dim values, apart from x".to_string())
        } else {
            None
        };
        if let Some(p) = problem {
            return Err(Error::InvalidArgument(format!(
                "`{}`: no RoPE epilogue: {p}",
                w.name
            )));
        }
        let mut bindings = vec![
            (5, whole(target.step)),
            (8, whole(&target.params)),
            (9, whole(target.k_cache)),
            (10, whole(target.v_cache)),
        ];
        bindings.extend(target.bias.clone().map(|b| (11, b)));
        self.op_output(ctx, w, input, q_out, routes, false, (target.kind, bindings))
    }
}

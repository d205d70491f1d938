//! The active LoRA adapters on the GPU: each group of the combined stack (`lora::LoraStack`)
//! as two f32 weights, `A` (`rank` rows) and `B` (the group's output rows, routed to its
//! views like the projection it adapts), and the `t = A x` scratch the two products share.
//!
//! The forward pass adds `g.lora(...)` after each projection (`graph.rs`): two more dispatches
//! per adapted group and token batch, whatever the number of adapters. Their pipelines are
//! compiled on the first `set_lora`, so a model without adapters compiles nothing for them.

use crate::config::Config;
use crate::error::Result;
use crate::ggml_type::GgmlType;
use crate::gguf::TensorInfo;
use crate::gpu::graph::{Kernels, Projection};
use crate::gpu::kernel::storage_buffer;
use crate::gpu::kernels::matvec::{InputKind, MatMul, MatVec};
use crate::gpu::weights::GpuWeight;
use crate::gpu::GpuContext;
use crate::lora::{LoraGroup, LoraStack, Place};

/// The matvec (decode) and matmul (prefill) pipelines for f32 adapter weights, for every input
/// a decode matvec of this model reads (x, a normed x, a gated pair).
pub struct LoraKernels {
    pub matvec: MatVec,
    pub matmul: MatMul,
}

impl LoraKernels {
    pub async fn new(ctx: &GpuContext, config: &Config, k: &Kernels) -> Result<LoraKernels> {
        let f32s: &[GgmlType] = &[GgmlType::F32];
        let uses = match k.fuse_inputs {
            true => vec![
                (InputKind::X, f32s),
                (InputKind::Normed, f32s),
                (InputKind::Gated(config.arch.activation), f32s),
            ],
            false => vec![(InputKind::X, f32s)],
        };
        Ok(LoraKernels {
            matvec: MatVec::for_inputs(ctx, &uses).await?,
            matmul: MatMul::for_types(ctx, f32s).await?,
        })
    }
}

/// One group: `t = A x`, then `outs += B t`.
pub struct GpuLoraGroup {
    pub a: GpuWeight,
    /// `B` as a projection onto the group's outputs (q, k, v; gate, up; ...).
    pub b: Projection,
}

/// The combined adapters, uploaded.
pub struct GpuLora {
    layers: Vec<[Option<GpuLoraGroup>; 4]>,
    head: Option<GpuLoraGroup>,
    /// `t = A x` for up to `max_tokens` tokens at the largest rank (`[T][rank]`).
    pub scratch: wgpu::Buffer,
    pub max_tokens: usize,
    bytes: u64,
}

impl GpuLora {
    /// Upload `stack` for batches of up to `max_tokens` tokens. `outputs(place)` gives the
    /// widths of the views a group writes (its projection's outputs).
    pub fn upload(
        ctx: &GpuContext,
        stack: &LoraStack,
        max_tokens: usize,
        outputs: impl Fn(Place) -> Vec<usize>,
    ) -> Result<GpuLora> {
        let before = ctx.allocated_bytes();
        let group = |g: &LoraGroup, name: String, widths: Vec<usize>| -> Result<GpuLoraGroup> {
            let a = upload_f32(ctx, &format!("{name}.lora_a"), g.rank, g.n_in, &g.a)?;
            let b = upload_f32(ctx, &format!("{name}.lora_b"), g.n_out, g.rank, &g.b)?;
            Ok(GpuLoraGroup {
                a,
                b: Projection {
                    weights: vec![b],
                    outputs: widths,
                },
            })
        };
        let mut layers = Vec::with_capacity(stack.layers.len());
        for (l, groups) in stack.layers.iter().enumerate() {
            let mut uploaded: [Option<GpuLoraGroup>; 4] = [None, None, None, None];
            for (slot, g) in crate::lora::SLOTS.iter().zip(groups) {
                if let Some(g) = g {
                    let name = format!("blk.{l}.{slot:?}");
                    let widths = outputs(Place::Block(l, *slot));
                    uploaded[*slot as usize] = Some(group(g, name, widths)?);
                }
            }
            layers.push(uploaded);
        }
        let head = match &stack.head {
            Some(g) => Some(group(g, "output".into(), outputs(Place::Head))?),
            None => None,
        };
        let scratch_bytes = (max_tokens * stack.max_rank().max(1) * 4) as u64;
        let scratch = storage_buffer(ctx, "lora t", scratch_bytes);
        Ok(GpuLora {
            layers,
            head,
            scratch,
            max_tokens,
            bytes: ctx.allocated_bytes() - before,
        })
    }

    pub fn group(&self, place: Place) -> Option<&GpuLoraGroup> {
        match place {
            Place::Block(l, slot) => self.layers.get(l)?[slot as usize].as_ref(),
            Place::Head => self.head.as_ref(),
        }
    }

    /// GPU bytes the adapters hold (weights and scratch).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

/// A `rows` x `cols` f32 matrix as a GPU weight.
fn upload_f32(
    ctx: &GpuContext,
    name: &str,
    rows: usize,
    cols: usize,
    values: &[f32],
) -> Result<GpuWeight> {
    let info = TensorInfo {
        name: name.to_string(),
        dims: vec![cols as u64, rows as u64],
        ty: GgmlType::F32,
        offset: 0,
        n_bytes: (values.len() * 4) as u64,
    };
    GpuWeight::upload(ctx, &info, bytemuck::cast_slice(values))
}

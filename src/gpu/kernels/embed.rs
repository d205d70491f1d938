//! The token embedding: rows of a quantized table (`token_embd`, kept in its GGUF type) gathered
//! into f32 activations, `x[t] = table row tokens[t]`. The ids are read from a GPU buffer, so a
//! decode step can embed the id the previous step's sampler wrote without a CPU round trip.

use crate::error::{Error, Result};
use crate::ggml_type::GgmlType;
use crate::gpu::kernel::{uniform_buffer, Kernel, Op, ShaderSource};
use crate::gpu::kernels::matvec::{
    batch_bindings, compile, kernel_for, part_bindings, WeightParams, BATCH_TOKENS,
};
use crate::gpu::kernels::{binding_bytes, grid};
use crate::gpu::weights::{GpuWeight, GPU_TYPES, UNIT};
use crate::gpu::GpuContext;

const EMBED_WGSL: &str = include_str!("../../../shaders/embed.wgsl");

/// Invocations per workgroup (`embed.wgsl`'s `WORKGROUP`).
const WORKGROUP: u64 = 64;

/// One gather pipeline per GPU type (no barriers: the same kernel suits every adapter).
pub struct Embed {
    kernels: Vec<(GgmlType, Kernel)>,
}

impl Embed {
    pub async fn new(ctx: &GpuContext) -> Result<Embed> {
        Self::for_types(ctx, &GPU_TYPES).await
    }

    /// Gathers from tables of these types only.
    pub async fn for_types(ctx: &GpuContext, types: &[GgmlType]) -> Result<Embed> {
        let source = ShaderSource::new(&[BATCH_TOKENS, EMBED_WGSL].join("\n"))
            .define("WORKGROUP", WORKGROUP);
        Ok(Embed {
            kernels: compile(ctx, "embed", &source, types).await?,
        })
    }

    /// `x[t * table.cols ..][.. table.cols]` = row `tokens[t]` of `table` for `t <
    /// step.n_tokens`: one op per part of the table, bound for up to `max_tokens` tokens (the
    /// step uniform says how many each time). Ids past the table read its last row.
    /// Every gathered value is multiplied by `scale` (gemma3 scales its embeddings; 1 elsewhere).
    #[allow(clippy::too_many_arguments)]
    pub fn op(
        &self,
        ctx: &GpuContext,
        table: &GpuWeight,
        tokens: wgpu::BufferBinding<'_>,
        x: &wgpu::Buffer,
        max_tokens: u32,
        step: &wgpu::Buffer,
        scale: f32,
    ) -> Result<Vec<Op>> {
        super::check_step(step)?;
        let n_tokens = max_tokens;
        let n = n_tokens as u64;
        let x_needed = n * table.cols * 4;
        if n == 0 || binding_bytes(&tokens) < n * 4 || x.size() < x_needed {
            return Err(Error::InvalidArgument(format!(
                "embedding `{}`: {n_tokens} tokens need ids of {} bytes (have {}) and an output \
                 of {x_needed} bytes (have {})",
                table.name,
                n * 4,
                binding_bytes(&tokens),
                x.size()
            )));
        }
        if n * table.cols > u32::MAX as u64 || tokens.buffer == x {
            return Err(Error::InvalidArgument(format!(
                "embedding `{}`: {n_tokens} tokens are too many for one op, or the ids and the \
                 output share a buffer",
                table.name
            )));
        }
        let kernel = kernel_for(&self.kernels, table)?;
        let invocations = n * table.cols.div_ceil(UNIT);
        let [gx, gy] = grid(ctx, invocations.div_ceil(WORKGROUP), &kernel.name)?;
        let mut ops = Vec::with_capacity(table.parts.len());
        for part in &table.parts {
            let params = WeightParams {
                n_tokens,
                scale,
                ..WeightParams::for_part(table, part)
            };
            let params = uniform_buffer(ctx, &kernel.name, &params);
            let bindings =
                batch_bindings(part_bindings(table, part, &params, tokens.clone(), x), step);
            ops.push(kernel.op_at(ctx, &bindings, [gx, gy, 1]));
        }
        Ok(ops)
    }
}

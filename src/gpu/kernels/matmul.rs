//! `MatMul`: Y = X Wᵀ for a batch of tokens (prefill), the batched sibling of `MatVec` in
//! `matvec.rs`, which describes the shaders both are assembled from and their drivers.

use super::grid;
use super::matvec::{
    batch_bindings, check_io, compile, kernel_for, part_bindings, InputKind, OutputKind, Route,
    WeightParams, BATCH_TOKENS, MATVEC_COMMON, ROWS_PER_INVOCATION, ROWS_PER_WORKGROUP,
    ROWS_WORKGROUP,
};
use crate::error::{Error, Result};
use crate::ggml_type::GgmlType;
use crate::gpu::kernel::{uniform_buffer, Kernel, Op, ShaderSource};
use crate::gpu::weights::{GpuWeight, GPU_TYPES};
use crate::gpu::GpuContext;

const MATMUL_ROWS: &str = include_str!("../../../shaders/matmul_rows.wgsl");
const MATMUL_TILED: &str = include_str!("../../../shaders/matmul_tiled.wgsl");
/// Tokens per workgroup of `matmul_rows.wgsl`.
const MATMUL_ROWS_TOKENS: u64 = 8;
/// Invocations per workgroup of `matmul_tiled.wgsl`, and its output tile (its indexing is
/// written for these values).
const TILE_WORKGROUP: u64 = 256;
const TILE_ROWS: u64 = 64;
const TILE_TOKENS: u64 = 32;

/// How a batched product is spread over invocations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatMulVariant {
    /// Each invocation computes 8 rows x 8 tokens, no barriers (CPU emulators).
    RowsPerInvocation,
    /// 64-row x 32-token tiles staged in workgroup memory (real GPUs).
    Tiled,
}

impl MatMulVariant {
    pub fn for_context(ctx: &GpuContext) -> MatMulVariant {
        match ctx.is_cpu {
            true => MatMulVariant::RowsPerInvocation,
            false => MatMulVariant::Tiled,
        }
    }
}

/// Y = X Wᵀ (or Y += X Wᵀ) for a batch of tokens: `Y[t, r] = dot(W row r, X[t])`.
pub struct MatMul {
    variant: MatMulVariant,
    kernels: Vec<(GgmlType, Kernel)>,
}

impl MatMul {
    /// The variant suited to the adapter, for every GPU type.
    pub async fn new(ctx: &GpuContext) -> Result<MatMul> {
        Self::with_variant(ctx, MatMulVariant::for_context(ctx)).await
    }

    /// A chosen variant (tests run both on one adapter).
    pub async fn with_variant(ctx: &GpuContext, variant: MatMulVariant) -> Result<MatMul> {
        Self::build(ctx, variant, &GPU_TYPES).await
    }

    /// The adapter's variant for just these weight types (what a model needs).
    pub async fn for_types(ctx: &GpuContext, types: &[GgmlType]) -> Result<MatMul> {
        Self::build(ctx, MatMulVariant::for_context(ctx), types).await
    }

    async fn build(ctx: &GpuContext, variant: MatMulVariant, types: &[GgmlType]) -> Result<MatMul> {
        let x = InputKind::X.source().1;
        let y = OutputKind::Y.source().1;
        let driver =
            |text: &str| ShaderSource::new(&[MATVEC_COMMON, &x, &y, BATCH_TOKENS, text].join("\n"));
        let (family, driver) = match variant {
            MatMulVariant::RowsPerInvocation => (
                "matmul_rows",
                driver(MATMUL_ROWS)
                    .define("WORKGROUP", ROWS_WORKGROUP)
                    .define("ROWS", ROWS_PER_INVOCATION)
                    .define("TOKENS", MATMUL_ROWS_TOKENS),
            ),
            MatMulVariant::Tiled => (
                "matmul_tiled",
                driver(MATMUL_TILED)
                    .define("WORKGROUP", TILE_WORKGROUP)
                    .define("TILE_ROWS", TILE_ROWS)
                    .define("TILE_TOKENS", TILE_TOKENS),
            ),
        };
        Ok(MatMul {
            variant,
            kernels: compile(ctx, family, &driver, types).await?,
        })
    }

    pub fn variant(&self) -> MatMulVariant {
        self.variant
    }

    /// `Y[t, r]` at element `y_offset + t * w.rows + r` of `y` for the first `step.n_tokens`
    /// rows of `x` (f32 `[max_tokens, w.cols]`), `+=` when `accumulate`: one op per part of
    /// `w`, bound once for batches of up to `max_tokens` (the step uniform, written before
    /// each submit, says how many this time; at most `max_tokens` are computed).
    #[allow(clippy::too_many_arguments)]
    pub fn op(
        &self,
        ctx: &GpuContext,
        w: &GpuWeight,
        x: wgpu::BufferBinding<'_>,
        max_tokens: u32,
        step: &wgpu::Buffer,
        y: &wgpu::Buffer,
        y_offset: u64,
        accumulate: bool,
    ) -> Result<Vec<Op>> {
        let routes = Route::contiguous(w, y_offset);
        self.op_routed(ctx, w, x, max_tokens, step, y, &routes, accumulate)
    }

    /// [`op`](Self::op) with each stacked member's outputs at its own place in `y`: member m's
    /// row r of token t at element `routes[m].base + t * routes[m].stride + r`.
    #[allow(clippy::too_many_arguments)]
    pub fn op_routed(
        &self,
        ctx: &GpuContext,
        w: &GpuWeight,
        x: wgpu::BufferBinding<'_>,
        max_tokens: u32,
        step: &wgpu::Buffer,
        y: &wgpu::Buffer,
        routes: &[Route],
        accumulate: bool,
    ) -> Result<Vec<Op>> {
        let n_tokens = max_tokens;
        super::check_step(step)?;
        if n_tokens == 0 {
            return Err(Error::InvalidArgument(format!(
                "`{}`: a batch needs at least one token",
                w.name
            )));
        }
        check_io(w, &x, n_tokens as u64, y, routes)?;
        let kernel = kernel_for(&self.kernels, w)?;
        let (rows_per_workgroup, tokens_per_workgroup) = match self.variant {
            MatMulVariant::RowsPerInvocation => (ROWS_PER_WORKGROUP, MATMUL_ROWS_TOKENS),
            MatMulVariant::Tiled => (TILE_ROWS, TILE_TOKENS),
        };
        let gz = (n_tokens as u64).div_ceil(tokens_per_workgroup);
        if gz > ctx.limits.max_compute_workgroups_per_dimension as u64 {
            return Err(Error::InvalidArgument(format!(
                "`{}`: a batch of {n_tokens} tokens is more than one dispatch covers",
                w.name
            )));
        }
        let mut ops = Vec::with_capacity(w.parts.len());
        for part in &w.parts {
            let params = WeightParams {
                n_tokens,
                accumulate: accumulate as u32,
                ..WeightParams::for_part(w, part)
            }
            .routed(routes);
            let [gx, gy] = grid(ctx, part.n_rows.div_ceil(rows_per_workgroup), &kernel.name)?;
            let params = uniform_buffer(ctx, &kernel.name, &params);
            let bindings = batch_bindings(part_bindings(w, part, &params, x.clone(), y), step);
            ops.push(kernel.op_at(ctx, &bindings, [gx, gy, gz as u32]));
        }
        Ok(ops)
    }
}

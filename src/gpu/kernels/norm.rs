//! RMSNorm over the rows of a batch: `out = x / sqrt(mean(x^2) + eps) * w`, or `out += ...`
//! for a post-norm whose result joins the residual stream (`op_add`; compiled only for
//! architectures that have post-norms).
//!
//! Two variants with the same bindings: one workgroup per row with a tree reduction
//! (`rmsnorm.wgsl`, for real GPUs) and one invocation per row (`rmsnorm_rows.wgsl`, for CPU
//! emulators, where workgroup barriers cost more than a serial sum of a few thousand values).

use bytemuck::{Pod, Zeroable};

use super::{check_distinct, check_f32, check_step, check_tokens, to_u32};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::gpu::kernel::{uniform_buffer, whole, Kernel, Op, ShaderSource};
use crate::gpu::GpuContext;

const RMSNORM_WGSL: &str = include_str!("../../../shaders/rmsnorm.wgsl");
const RMSNORM_ROWS_WGSL: &str = include_str!("../../../shaders/rmsnorm_rows.wgsl");

/// Invocations per workgroup of the per-row reduction (a power of two).
const ROW_WORKGROUP: u32 = 256;
/// Rows per workgroup of the invocation-per-row variant.
const ROWS_PER_WORKGROUP: u32 = 64;

/// How a row is reduced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormVariant {
    /// One workgroup per row, tree reduction in workgroup memory (real GPUs).
    RowPerWorkgroup,
    /// One invocation per row, no barriers (CPU emulators).
    RowPerInvocation,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    dim: u32,
    eps: f32,
    _pad: [u32; 2],
}

pub struct RmsNorm {
    kernel: Kernel,
    /// The `+=` pipeline, when asked for.
    add: Option<Kernel>,
    variant: NormVariant,
    eps: f32,
}

impl RmsNorm {
    /// The variant suited to the adapter, with the model's epsilon; the `+=` pipeline too
    /// when the architecture has post-norms.
    pub async fn new(ctx: &GpuContext, config: &Config) -> Result<RmsNorm> {
        let variant = match ctx.is_cpu {
            true => NormVariant::RowPerInvocation,
            false => NormVariant::RowPerWorkgroup,
        };
        let mut norm = Self::with_variant(ctx, config.rms_eps, variant).await?;
        if config.arch.post_norms {
            norm.add = Some(Self::compile(ctx, variant, "+=").await?);
        }
        Ok(norm)
    }

    /// A chosen variant (tests run both on one adapter).
    pub async fn with_variant(ctx: &GpuContext, eps: f32, variant: NormVariant) -> Result<RmsNorm> {
        Ok(RmsNorm {
            kernel: Self::compile(ctx, variant, "=").await?,
            add: None,
            variant,
            eps,
        })
    }

    /// [`with_variant`](Self::with_variant) with the `+=` pipeline too.
    pub async fn with_variant_and_add(
        ctx: &GpuContext,
        eps: f32,
        variant: NormVariant,
    ) -> Result<RmsNorm> {
        let mut norm = Self::with_variant(ctx, eps, variant).await?;
        norm.add = Some(Self::compile(ctx, variant, "+=").await?);
        Ok(norm)
    }

    async fn compile(ctx: &GpuContext, variant: NormVariant, store: &str) -> Result<Kernel> {
        let (source, name) = match variant {
            NormVariant::RowPerWorkgroup => (
                ShaderSource::new(RMSNORM_WGSL).define("WG", ROW_WORKGROUP),
                "rmsnorm",
            ),
            NormVariant::RowPerInvocation => (
                ShaderSource::new(RMSNORM_ROWS_WGSL).define("WG", ROWS_PER_WORKGROUP),
                "rmsnorm_rows",
            ),
        };
        let name = match store {
            "=" => name.to_string(),
            _ => format!("{name}_add"),
        };
        Kernel::new(ctx, &name, source.define("STORE", store)).await
    }

    pub fn variant(&self) -> NormVariant {
        self.variant
    }

    /// The epsilon added to the mean of squares.
    pub fn eps(&self) -> f32 {
        self.eps
    }

    /// `out[t] = rmsnorm(x[t]) * weight` for the step's `n_tokens` rows of `dim` values
    /// (`x`, `out`: `[max_tokens][dim]`, different buffers; `weight`: `[dim]`).
    #[allow(clippy::too_many_arguments)]
    pub fn op(
        &self,
        ctx: &GpuContext,
        step: &wgpu::Buffer,
        x: wgpu::BufferBinding<'_>,
        weight: wgpu::BufferBinding<'_>,
        out: wgpu::BufferBinding<'_>,
        dim: usize,
        max_tokens: usize,
    ) -> Result<Op> {
        self.op_with(&self.kernel, ctx, step, [x, weight, out], dim, max_tokens)
    }

    /// `out += rmsnorm(x) * weight`: a post-norm added to the residual stream. Only on a norm
    /// made by [`new`](Self::new) for an architecture with post-norms.
    #[allow(clippy::too_many_arguments)]
    pub fn op_add(
        &self,
        ctx: &GpuContext,
        step: &wgpu::Buffer,
        x: wgpu::BufferBinding<'_>,
        weight: wgpu::BufferBinding<'_>,
        out: wgpu::BufferBinding<'_>,
        dim: usize,
        max_tokens: usize,
    ) -> Result<Op> {
        let kernel = self.add.as_ref().ok_or_else(|| {
            Error::InvalidArgument("rmsnorm: no `+=` pipeline (the model has no post-norms)".into())
        })?;
        self.op_with(kernel, ctx, step, [x, weight, out], dim, max_tokens)
    }

    fn op_with(
        &self,
        kernel: &Kernel,
        ctx: &GpuContext,
        step: &wgpu::Buffer,
        [x, weight, out]: [wgpu::BufferBinding<'_>; 3],
        dim: usize,
        max_tokens: usize,
    ) -> Result<Op> {
        check_step(step)?;
        check_tokens("rmsnorm", max_tokens)?;
        let rows = max_tokens * dim;
        check_f32(ctx, "rmsnorm input", &x, rows)?;
        check_f32(ctx, "rmsnorm weight", &weight, dim)?;
        check_f32(ctx, "rmsnorm output", &out, rows)?;
        check_distinct("rmsnorm", &[&out], &[&x, &weight])?;
        let params = Params {
            dim: to_u32("dimension", dim)?,
            eps: self.eps,
            _pad: [0; 2],
        };
        let params = uniform_buffer(ctx, "rmsnorm params", &params);
        let workgroups = match self.variant {
            NormVariant::RowPerWorkgroup => max_tokens as u32,
            NormVariant::RowPerInvocation => (max_tokens as u32).div_ceil(ROWS_PER_WORKGROUP),
        };
        Ok(kernel.op(
            ctx,
            &[whole(step), whole(&params), x, weight, out],
            [workgroups, 1, 1],
        ))
    }
}

//! The elementwise ops around the feed-forward matvecs: the SiLU gate
//! `g = silu(gate) * up` and the residual add `x += y`, over the step's `n_tokens` rows.
//! One shader (`ffn.wgsl`) with the expression substituted per op.

use bytemuck::{Pod, Zeroable};

use super::norm::{check_distinct, check_f32, check_step, check_tokens, to_u32};
use crate::error::Result;
use crate::gpu::kernel::{uniform_buffer, whole, Kernel, Op, ShaderSource};
use crate::gpu::GpuContext;

const FFN_WGSL: &str = include_str!("../../../shaders/ffn.wgsl");
const WORKGROUP: u32 = 256;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    width: u32,
    _pad: [u32; 3],
}

pub struct Ffn {
    silu_mul: Kernel,
    add: Kernel,
}

impl Ffn {
    pub async fn new(ctx: &GpuContext) -> Result<Ffn> {
        let kernel = |name, expr| {
            let source = ShaderSource::new(FFN_WGSL)
                .define("WG", WORKGROUP)
                .define("EXPR", expr);
            Kernel::new(ctx, name, source)
        };
        Ok(Ffn {
            silu_mul: kernel("silu_mul", "silu(dst[o]) * src[o]").await?,
            add: kernel("add", "dst[o] + src[o]").await?,
        })
    }

    /// `gate = silu(gate) * up` in place; `gate`, `up`: `[max_tokens][n_ff]`.
    pub fn silu_mul(
        &self,
        ctx: &GpuContext,
        step: &wgpu::Buffer,
        gate: wgpu::BufferBinding<'_>,
        up: wgpu::BufferBinding<'_>,
        n_ff: usize,
        max_tokens: usize,
    ) -> Result<Op> {
        check_f32(ctx, "silu_mul gate", &gate, max_tokens * n_ff)?;
        check_f32(ctx, "silu_mul up", &up, max_tokens * n_ff)?;
        self.elementwise(ctx, &self.silu_mul, step, up, gate, n_ff, max_tokens)
    }

    /// `x += y`; `x`, `y`: `[max_tokens][dim]`.
    pub fn add(
        &self,
        ctx: &GpuContext,
        step: &wgpu::Buffer,
        x: wgpu::BufferBinding<'_>,
        y: wgpu::BufferBinding<'_>,
        dim: usize,
        max_tokens: usize,
    ) -> Result<Op> {
        check_f32(ctx, "add x", &x, max_tokens * dim)?;
        check_f32(ctx, "add y", &y, max_tokens * dim)?;
        self.elementwise(ctx, &self.add, step, y, x, dim, max_tokens)
    }

    #[allow(clippy::too_many_arguments)]
    fn elementwise(
        &self,
        ctx: &GpuContext,
        kernel: &Kernel,
        step: &wgpu::Buffer,
        src: wgpu::BufferBinding<'_>,
        dst: wgpu::BufferBinding<'_>,
        width: usize,
        max_tokens: usize,
    ) -> Result<Op> {
        check_step(step)?;
        check_tokens(&kernel.name, max_tokens)?;
        check_distinct(&kernel.name, &[&dst], &[&src])?;
        let width = to_u32("row width", width)?;
        let params = uniform_buffer(
            ctx,
            &kernel.name,
            &Params {
                width,
                _pad: [0; 3],
            },
        );
        let groups = [width.div_ceil(WORKGROUP), max_tokens as u32, 1];
        Ok(kernel.op(ctx, &[whole(step), whole(&params), src, dst], groups))
    }
}

//! The SwiGLU gate between the feed-forward matvecs: `gate = silu(gate) * up` over the
//! step's `n_tokens` rows (`ffn.wgsl`). Residual adds are fused into the output matvecs.

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
}

impl Ffn {
    pub async fn new(ctx: &GpuContext) -> Result<Ffn> {
        let source = ShaderSource::new(FFN_WGSL).define("WG", WORKGROUP);
        Ok(Ffn {
            silu_mul: Kernel::new(ctx, "silu_mul", source).await?,
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
        let kernel = &self.silu_mul;
        check_step(step)?;
        check_tokens(&kernel.name, max_tokens)?;
        check_distinct(&kernel.name, &[&gate], &[&up])?;
        let width = to_u32("row width", n_ff)?;
        let params = uniform_buffer(
            ctx,
            &kernel.name,
            &Params {
                width,
                _pad: [0; 3],
            },
        );
        let groups = [width.div_ceil(WORKGROUP), max_tokens as u32, 1];
        Ok(kernel.op(ctx, &[whole(step), whole(&params), up, gate], groups))
    }
}

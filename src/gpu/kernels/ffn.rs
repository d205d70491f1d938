//! The gate between the feed-forward matvecs: `gate = act(gate) * up` over the step's
//! `n_tokens` rows (`ffn.wgsl`), act SiLU or tanh-GELU as the architecture says. Residual adds
//! are fused into the output matvecs.

use bytemuck::{Pod, Zeroable};

use super::{check_distinct, check_f32, check_step, check_tokens, to_u32};
use crate::arch::Activation;
use crate::error::Result;
use crate::gpu::kernel::{uniform_buffer, whole, Kernel, Op, ShaderSource};
use crate::gpu::GpuContext;

const FFN_WGSL: &str = include_str!("../../../shaders/ffn.wgsl");
const ACTIVATION_WGSL: &str = include_str!("../../../shaders/activation.wgsl");
const WORKGROUP: u32 = 256;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    width: u32,
    _pad: [u32; 3],
}

pub struct Ffn {
    gate: Kernel,
    activation: Activation,
}

impl Ffn {
    pub async fn new(ctx: &GpuContext, activation: Activation) -> Result<Ffn> {
        let (act, name) = match activation {
            Activation::Silu => ("silu", "silu_mul"),
            Activation::GeluTanh => ("gelu_tanh", "gelu_mul"),
        };
        let source = ShaderSource::new(&[ACTIVATION_WGSL, FFN_WGSL].join("\n"))
            .define("WG", WORKGROUP)
            .define("ACT", act);
        Ok(Ffn {
            gate: Kernel::new(ctx, name, source).await?,
            activation,
        })
    }

    /// The gate's activation (a decode step's down projection applies it as it reads).
    pub fn activation(&self) -> Activation {
        self.activation
    }

    /// `gate = act(gate) * up` in place; `gate`, `up`: `[max_tokens][n_ff]`.
    pub fn gate(
        &self,
        ctx: &GpuContext,
        step: &wgpu::Buffer,
        gate: wgpu::BufferBinding<'_>,
        up: wgpu::BufferBinding<'_>,
        n_ff: usize,
        max_tokens: usize,
    ) -> Result<Op> {
        let kernel = &self.gate;
        check_f32(ctx, &kernel.name, &gate, max_tokens * n_ff)?;
        check_f32(ctx, &kernel.name, &up, max_tokens * n_ff)?;
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

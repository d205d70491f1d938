//! The typed kernels: each family has a struct holding its compiled pipelines (made once at
//! load) and functions that bind buffers into [`Op`](crate::gpu::kernel::Op)s, checking shapes
//! where the op is made. Shaders live in `shaders/`, one file per family.

pub mod attention;
pub mod embed;
pub mod ffn;
pub mod matmul;
pub mod matvec;
pub mod matvec_input;
pub mod matvec_output;
pub mod norm;
pub mod rope;
pub mod sample;

use bytemuck::{Pod, Zeroable};

/// Values that change every step, written with one `queue.write_buffer` before the step's
/// submit and bound as a uniform by the kernels that need them.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, Pod, Zeroable)]
pub struct StepParams {
    /// Position of the first token of this batch in the sequence (= tokens already cached).
    pub pos: u32,
    /// Tokens in this batch (1 for a decode step, the prompt length in prefill).
    pub n_tokens: u32,
    /// Sampling step counter (the RNG counter of `sampler::uniform`).
    pub sample_step: u32,
    pub _pad: u32,
}

pub fn step_params_buffer(ctx: &crate::gpu::GpuContext) -> wgpu::Buffer {
    ctx.create_buffer(&wgpu::BufferDescriptor {
        label: Some("step params"),
        size: std::mem::size_of::<StepParams>() as u64,
        usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    })
}

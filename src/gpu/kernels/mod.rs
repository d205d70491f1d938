//! The typed kernels: each family has a struct holding its compiled pipelines (made once at
//! load) and functions that bind buffers into [`Op`](crate::gpu::kernel::Op)s, checking shapes
//! where the op is made. Shaders live in `shaders/`, one file per family.
//!
//! This file also holds what the families share: the dispatch grid and the shape checks every
//! op runs on its bindings when it is made, so that a wrong buffer is an error there and never
//! an out-of-bounds read in a shader.

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

use crate::error::{Error, Result};
use crate::gpu::GpuContext;

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

pub fn step_params_buffer(ctx: &GpuContext) -> wgpu::Buffer {
    ctx.create_buffer(&wgpu::BufferDescriptor {
        label: Some("step params"),
        size: std::mem::size_of::<StepParams>() as u64,
        usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    })
}

/// A dispatch of `n` workgroups as an (x, y) grid within the per-dimension limit; shaders
/// number workgroups `wg.y * groups.x + wg.x` and ignore those past `n`.
pub fn grid(ctx: &GpuContext, n: u64, what: &str) -> Result<[u32; 2]> {
    let max = ctx.limits.max_compute_workgroups_per_dimension as u64;
    grid_within(max, n).ok_or_else(|| {
        Error::ModelTooLarge(format!(
            "{what} needs {n} workgroups, more than this adapter dispatches"
        ))
    })
}

fn grid_within(max: u64, n: u64) -> Option<[u32; 2]> {
    let x = n.clamp(1, max);
    let y = n.div_ceil(x);
    (y <= max).then_some([x as u32, y as u32])
}

/// Bytes a binding covers.
pub(crate) fn binding_bytes(b: &wgpu::BufferBinding<'_>) -> u64 {
    b.size
        .map(|s| s.get())
        .unwrap_or(b.buffer.size().saturating_sub(b.offset))
}

/// Tokens a batch op is made for: at least one, and at most one dispatch dimension.
pub(crate) fn check_tokens(op: &str, max_tokens: usize) -> Result<()> {
    if max_tokens == 0 || max_tokens > 65535 {
        return Err(Error::InvalidArgument(format!(
            "{op}: a batch of {max_tokens} tokens (1 to 65535 are possible)"
        )));
    }
    Ok(())
}

/// The step-parameter uniform (`kernels::step_params_buffer`).
pub(crate) fn check_step(step: &wgpu::Buffer) -> Result<()> {
    let size = std::mem::size_of::<StepParams>() as u64;
    if !step.usage().contains(wgpu::BufferUsages::UNIFORM) || step.size() < size {
        return Err(Error::InvalidArgument(
            "the step parameters must be the uniform buffer from step_params_buffer".into(),
        ));
    }
    Ok(())
}

/// `b` is a storage binding this device accepts holding at least `floats` f32 values.
pub(crate) fn check_f32(
    ctx: &GpuContext,
    what: &str,
    b: &wgpu::BufferBinding<'_>,
    floats: usize,
) -> Result<()> {
    let size = binding_bytes(b);
    let align = ctx.limits.min_storage_buffer_offset_alignment as u64;
    let problem = if !b.buffer.usage().contains(wgpu::BufferUsages::STORAGE) {
        Some("is not a storage buffer".to_string())
    } else if b.offset % align != 0 {
        Some(format!(
            "starts at {} (not a multiple of {align})",
            b.offset
        ))
    } else if b.offset + size > b.buffer.size() {
        Some("reaches past the end of its buffer".to_string())
    } else if size > ctx.max_binding_size {
        Some(format!(
            "covers {size} bytes, over the binding limit of {}",
            ctx.max_binding_size
        ))
    } else if size < floats as u64 * 4 {
        Some(format!(
            "holds {} f32 values, the op needs {floats}",
            size / 4
        ))
    } else {
        None
    };
    match problem {
        Some(p) => Err(Error::InvalidArgument(format!("{what} {p}"))),
        None => Ok(()),
    }
}

/// No buffer written by an op is bound a second time in it: WebGPU forbids a writable binding
/// aliasing another, and reading one binding while writing another would race. Read-only
/// bindings may share a buffer.
pub(crate) fn check_distinct(
    op: &str,
    written: &[&wgpu::BufferBinding<'_>],
    read: &[&wgpu::BufferBinding<'_>],
) -> Result<()> {
    for (i, w) in written.iter().enumerate() {
        let others = written[i + 1..].iter().chain(read);
        if others.into_iter().any(|b| overlap(b, w)) {
            return Err(Error::InvalidArgument(format!(
                "{op}: a range it writes is bound twice; outputs need memory of their own"
            )));
        }
    }
    Ok(())
}

/// Whether two bindings share bytes (ranges of one buffer may sit side by side).
fn overlap(a: &wgpu::BufferBinding<'_>, b: &wgpu::BufferBinding<'_>) -> bool {
    let end = |x: &wgpu::BufferBinding<'_>| x.offset + binding_bytes(x);
    a.buffer == b.buffer && a.offset < end(b) && b.offset < end(a)
}

pub(crate) fn to_u32(what: &str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::InvalidArgument(format!("{what} {v} is too large")))
}

#[cfg(test)]
mod tests {
    use super::grid_within;

    #[test]
    fn large_dispatches_fold_into_two_dimensions() {
        assert_eq!(grid_within(65535, 300), Some([300, 1]));
        assert_eq!(grid_within(65535, 65536), Some([65535, 2]));
        // Shaders skip the workgroups past n: here 42 are dispatched for 40.
        assert_eq!(grid_within(7, 40), Some([7, 6]));
        assert_eq!(grid_within(7, 49), Some([7, 7]));
        assert_eq!(grid_within(7, 50), None);
    }
}

//! Reading GPU buffers back in the kernel tests.

use llama_wgpu::gpu::kernel::{read_buffer, read_f32};
use llama_wgpu::gpu::kv_cache::{KvCache, KvElement};
use llama_wgpu::gpu::GpuContext;

/// The first `n` f32 values of `buffer`, after checking that no GPU error was raised.
pub fn read(ctx: &GpuContext, buffer: &wgpu::Buffer, n: usize) -> Vec<f32> {
    let values = pollster::block_on(read_f32(ctx, buffer, 0, n)).unwrap();
    ctx.check().unwrap();
    values
}

/// `n` values of a KV-cache buffer as f32, whichever element type the cache stores.
pub fn read_kv(ctx: &GpuContext, cache: &KvCache, buffer: &wgpu::Buffer, n: usize) -> Vec<f32> {
    match cache.element() {
        KvElement::F32 => read(ctx, buffer, n),
        KvElement::F16 => {
            let bytes = pollster::block_on(read_buffer(ctx, buffer, 0, n as u64 * 2)).unwrap();
            bytes
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect()
        }
    }
}

//! The GPU context on the machine's adapter (lavapipe in CI): a device opens, a shader compiles
//! and runs, a broken shader is an error (not a panic).

use llama_wgpu::gpu::kernel::{read_f32, storage_buffer, whole, Kernel, ShaderSource};
use llama_wgpu::gpu::{GpuContext, GpuOptions};

const DOUBLE: &str = "
@group(0) @binding(0) var<storage, read_write> data: array<f32>;
@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    if (id.x < arrayLength(&data)) { data[id.x] = data[id.x] * 2.0; }
}";

#[test]
fn device_runs_a_kernel_and_reports_bad_shaders() {
    let ctx = GpuContext::new_blocking(&GpuOptions::default())
        .expect("a GPU adapter (lavapipe: apt mesa-vulkan-drivers)");
    eprintln!("adapter: {}", ctx.describe());
    let kernel = pollster::block_on(Kernel::new(
        &ctx,
        "double",
        ShaderSource::new(DOUBLE).define("WG", 64),
    ))
    .unwrap();
    let n = 1000usize;
    let buf = storage_buffer(&ctx, "data", n as u64 * 4);
    let input: Vec<f32> = (0..n).map(|i| i as f32).collect();
    ctx.queue
        .write_buffer(&buf, 0, bytemuck::cast_slice(&input));
    let bg = kernel.bind(&ctx, &[whole(&buf)]);
    let mut enc = ctx.device.create_command_encoder(&Default::default());
    {
        let mut pass = enc.begin_compute_pass(&Default::default());
        kernel.dispatch(&mut pass, &bg, [(n as u32).div_ceil(64), 1, 1]);
    }
    ctx.queue.submit([enc.finish()]);
    let out = pollster::block_on(read_f32(&ctx, &buf, 0, n)).unwrap();
    assert!(out.iter().enumerate().all(|(i, &v)| v == 2.0 * i as f32));

    let missing = pollster::block_on(Kernel::new(&ctx, "missing", ShaderSource::new(DOUBLE)));
    assert!(matches!(missing, Err(e) if e.to_string().contains("{{WG}}")));
    let broken = pollster::block_on(Kernel::new(&ctx, "broken", ShaderSource::new("fn main( {")));
    let err = broken.err().expect("a compile error");
    assert_eq!(err.code(), "GPU_ERROR");
    ctx.check().unwrap();
}

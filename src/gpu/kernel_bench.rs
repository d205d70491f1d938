//! The kernel table of `llama-wgpu bench-kernels`: each matvec at the default model's shapes and
//! at 4096 x 4096, time per call and effective bandwidth (weight, x and y bytes / time), next
//! to a plain copy kernel on the same adapter (bytes read / time: the practical ceiling); and
//! the prefill matmul in GFLOP/s. One run tells whether a kernel change moved a kernel toward
//! the ceiling. Timing: the op recorded `reps` times in one pass, one submit, a full wait;
//! `reps` grows until a measurement takes ~0.2 s; the median of 3 measurements.

use serde::Serialize;
use web_time::Instant;

use crate::error::{Error, Result};
use crate::ggml_type::GgmlType;
use crate::gguf::TensorInfo;
use crate::gpu::kernel::{storage_buffer, whole, Kernel, Op, ShaderSource};
use crate::gpu::kernels::grid;
use crate::gpu::kernels::matvec::{MatMul, MatVec};
use crate::gpu::weights::{GpuWeight, GPU_TYPES};
use crate::gpu::GpuContext;

#[derive(Debug, Clone, Serialize)]
pub struct MatVecFigure {
    #[serde(rename = "type")]
    pub ty: String,
    pub rows: u64,
    pub cols: u64,
    pub ms: f64,
    pub gbps: f64,
    /// gbps / the copy kernel's.
    pub of_copy: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct MatMulFigure {
    #[serde(rename = "type")]
    pub ty: String,
    pub rows: u64,
    pub cols: u64,
    pub tokens: u64,
    pub ms: f64,
    pub gflops: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct KernelTable {
    pub adapter: String,
    pub copy_gbps: f64,
    pub matvec: Vec<MatVecFigure>,
    pub matmul: Vec<MatMulFigure>,
}

/// Shapes (rows, cols): SmolLM2-135M's q/o, gate/up, down and LM head, Gemma-3-270M's gate/up
/// (640-wide rows, which llama.cpp stores as Q5_0 or Q8_0 in its K-quant mixes), then 4096 x
/// 4096. 256-value super-blocks need rows of a multiple of 256, which 576 and 640 are not: those
/// types get the shapes that fit.
fn matvec_shapes(ty: GgmlType) -> Vec<(u64, u64)> {
    match ty.block_size() {
        256 => vec![(576, 1536), (4096, 4096)],
        _ => vec![
            (576, 576),
            (1536, 576),
            (576, 1536),
            (49152, 576),
            (2048, 640),
            (4096, 4096),
        ],
    }
}

fn weight(ctx: &GpuContext, ty: GgmlType, rows: u64, cols: u64) -> Result<GpuWeight> {
    let n_bytes = ty
        .bytes_for(rows * cols)
        .ok_or_else(|| Error::InvalidArgument(format!("{cols} columns do not fit {ty} blocks")))?;
    let info = TensorInfo {
        name: format!("bench.{ty}.{rows}x{cols}"),
        dims: vec![cols, rows],
        ty,
        offset: 0,
        n_bytes,
    };
    // Speed does not depend on the values; valid blocks keep every result finite.
    let mut seed = rows ^ cols;
    GpuWeight::upload(
        ctx,
        &info,
        &crate::synth::random_blocks(ty, n_bytes, &mut seed)?,
    )
}

/// Seconds per run of `ops` (in order), as described at the top of this file.
fn time_ops(ctx: &GpuContext, ops: &[Op], quick: bool) -> Result<f64> {
    let run = |reps: usize| -> Result<f64> {
        let start = Instant::now();
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            for _ in 0..reps {
                for op in ops {
                    op.record(&mut pass);
                }
            }
        }
        ctx.queue.submit([encoder.finish()]);
        ctx.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu(format!("waiting for the GPU: {e}")))?;
        ctx.check()?;
        Ok(start.elapsed().as_secs_f64() / reps as f64)
    };
    let once = run(1)?;
    if quick {
        return Ok(once);
    }
    let reps = ((0.2 / once.max(1e-6)) as usize).clamp(1, 1000);
    let mut times = [run(reps)?, run(reps)?, run(reps)?];
    times.sort_by(f64::total_cmp);
    Ok(times[1])
}

/// Invocations per workgroup of `copy.wgsl`, each copying 16 bytes.
const COPY_WORKGROUP: u64 = 256;

/// Measure everything. `quick`: one shape per type, one run each (tests use it so the table
/// cannot rot; its figures mean little).
pub async fn kernel_table(ctx: &GpuContext, quick: bool) -> Result<KernelTable> {
    // The copy ceiling over 64 MiB (8 MiB when quick), well past any cache.
    let copy_bytes: u64 = if quick { 8 << 20 } else { 64 << 20 };
    let copy = Kernel::new(
        ctx,
        "copy",
        ShaderSource::new(include_str!("../../shaders/copy.wgsl")).define("WG", COPY_WORKGROUP),
    )
    .await?;
    let (src, dst) = (
        storage_buffer(ctx, "copy src", copy_bytes),
        storage_buffer(ctx, "copy dst", copy_bytes),
    );
    let [gx, gy] = grid(ctx, (copy_bytes / 16).div_ceil(COPY_WORKGROUP), "copy")?;
    let copy_op = copy.op(ctx, &[whole(&src), whole(&dst)], [gx, gy, 1]);
    let copy_gbps = copy_bytes as f64 / time_ops(ctx, &[copy_op], quick)? / 1e9;

    let matvec = MatVec::new(ctx).await?;
    let mut matvec_figures = Vec::new();
    // Every GPU type but F32, which no model uses for its large matrices.
    for ty in GPU_TYPES.into_iter().filter(|&t| t != GgmlType::F32) {
        let shapes = matvec_shapes(ty);
        for &(rows, cols) in shapes.iter().take(if quick { 1 } else { shapes.len() }) {
            let w = weight(ctx, ty, rows, cols)?;
            let x = storage_buffer(ctx, "x", cols * 4);
            let y = storage_buffer(ctx, "y", rows * 4);
            let ops = matvec.op(ctx, &w, whole(&x), &y, 0, false)?;
            let seconds = time_ops(ctx, &ops, quick)?;
            let bytes = w.gpu_bytes() + (cols + rows) * 4;
            let gbps = bytes as f64 / seconds / 1e9;
            matvec_figures.push(MatVecFigure {
                ty: ty.name().into(),
                rows,
                cols,
                ms: seconds * 1e3,
                gbps,
                of_copy: gbps / copy_gbps,
            });
        }
    }

    let matmul = MatMul::new(ctx).await?;
    let tokens: u64 = if quick { 8 } else { 128 };
    let step = crate::gpu::kernels::step_params_buffer(ctx);
    let params = crate::gpu::kernels::StepParams {
        n_tokens: tokens as u32,
        ..Default::default()
    };
    ctx.queue
        .write_buffer(&step, 0, bytemuck::bytes_of(&params));
    let mut matmul_figures = Vec::new();
    // The default model's gate/up, then every type but F32 at 4096 x 4096.
    let shapes = [(GgmlType::Q4_1, 1536, 576), (GgmlType::Q8_0, 1536, 576)]
        .into_iter()
        .chain(
            GPU_TYPES
                .into_iter()
                .filter(|&t| t != GgmlType::F32)
                .map(|t| (t, 4096, 4096)),
        );
    for (ty, rows, cols) in shapes.take(if quick { 1 } else { usize::MAX }) {
        let w = weight(ctx, ty, rows, cols)?;
        let x = storage_buffer(ctx, "x", tokens * cols * 4);
        let y = storage_buffer(ctx, "y", tokens * rows * 4);
        let ops = matmul.op(ctx, &w, whole(&x), tokens as u32, &step, &y, 0, false)?;
        let seconds = time_ops(ctx, &ops, quick)?;
        matmul_figures.push(MatMulFigure {
            ty: ty.name().into(),
            rows,
            cols,
            tokens,
            ms: seconds * 1e3,
            gflops: 2.0 * (rows * cols * tokens) as f64 / seconds / 1e9,
        });
    }
    Ok(KernelTable {
        adapter: ctx.describe(),
        copy_gbps,
        matvec: matvec_figures,
        matmul: matmul_figures,
    })
}

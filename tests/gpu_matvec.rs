//! The quantized-weight kernels (matvec, batched matmul, embedding gather) on the machine's
//! adapter (lavapipe in CI) against the CPU: `quant::dequantize` (bit-exact with ggml) and a
//! dot product in f64. Every type with a GPU kernel, every variant of each product the adapter
//! runs (the subgroup matvec too where it has subgroups), the default model's real tensors and
//! shapes, random valid blocks, awkward shapes, tensors split across bindings, streaming upload
//! in odd pieces, and the error paths.
//!
//! Tolerance of a dot product over `cols` terms: the GPU decodes each weight with at most one
//! f32 rounding (the f16 scales times small integers are exact in f32; `d * q + m` and the like
//! round once), rounds each product once, and adds the terms in f32 in its own order (vec4 lanes,
//! units, a tree across invocations). The classic bound for any summation order is
//! `(n - 1) u sum|terms|` with u = 2^-24, so |gpu - exact| <= (cols + 2) u sum|w x| to first
//! order; we allow (cols + 4) u sum|w x|. This is measured against sum|w x|, not against the
//! (possibly cancelling) result, so it is tight where it matters: a wrong nibble, scale or row
//! moves a result by a sizeable fraction of sum|w x|, thousands of times this bound. With
//! `accumulate`, adding to the old y is one more rounding: 2 u (|y0| + sum|w x|) more.
//! An embedding row is the decoded weights themselves: the shader does the same f32 operations
//! as `quant.rs` (products of an f16 by small integers are exact, then one rounding), so it may
//! differ by at most one rounding of a contracted multiply-add: 1 ulp.

mod common;

use common::quant_data::{Rng, Tensor};

use std::sync::OnceLock;

use llama_wgpu::gguf::{GgufFile, TensorInfo};
use llama_wgpu::gpu::kernel::{read_buffer, read_f32, storage_buffer, submit_ops, whole, Op};
use llama_wgpu::gpu::kernels::embed::Embed;
use llama_wgpu::gpu::kernels::matvec::{MatMul, MatMulVariant, MatVec, MatVecVariant, Route};
use llama_wgpu::gpu::kernels::{step_params_buffer, StepParams};
use llama_wgpu::gpu::weights::{upload_f32_vector, GpuWeight, GPU_TYPES};
use llama_wgpu::gpu::{GpuContext, GpuOptions};
use llama_wgpu::quant::GgmlType;

const U: f64 = 1.0 / (1u64 << 24) as f64;

/// A device with every pipeline of this family compiled.
struct Gpu {
    ctx: GpuContext,
    /// Every matvec variant the adapter runs (the subgroup one where it has subgroups).
    matvecs: Vec<MatVec>,
    matmuls: [MatMul; 2],
    embed: Embed,
}

impl Gpu {
    fn open(options: GpuOptions) -> Gpu {
        let ctx = GpuContext::new_blocking(&options)
            .expect("a GPU adapter (lavapipe: apt mesa-vulkan-drivers)");
        let started = std::time::Instant::now();
        let gpu = pollster::block_on(async {
            Gpu {
                matvecs: {
                    let mut matvecs = Vec::new();
                    for variant in MatVecVariant::available(&ctx) {
                        matvecs.push(MatVec::with_variant(&ctx, variant).await.unwrap());
                    }
                    matvecs
                },
                matmuls: [
                    MatMul::with_variant(&ctx, MatMulVariant::RowsPerInvocation)
                        .await
                        .unwrap(),
                    MatMul::with_variant(&ctx, MatMulVariant::Tiled)
                        .await
                        .unwrap(),
                ],
                embed: Embed::new(&ctx).await.unwrap(),
                ctx,
            }
        });
        eprintln!(
            "adapter: {}; {} matvec variants and the rest compiled in {:.2} s",
            gpu.ctx.describe(),
            gpu.matvecs.len(),
            started.elapsed().as_secs_f64()
        );
        gpu
    }
}

/// The default device, shared by the tests of this file.
fn gpu() -> &'static Gpu {
    static GPU: OnceLock<Gpu> = OnceLock::new();
    GPU.get_or_init(|| Gpu::open(GpuOptions::default()))
}

/// Bindings limited to 64 KiB, so that tensors of a few hundred KiB split into parts.
const SMALL_BINDING: u64 = 64 << 10;

fn small_binding_gpu() -> &'static Gpu {
    static GPU: OnceLock<Gpu> = OnceLock::new();
    GPU.get_or_init(|| {
        Gpu::open(GpuOptions {
            max_binding_size: Some(SMALL_BINDING),
            ..GpuOptions::default()
        })
    })
}

fn tensor_from_file(file: &GgufFile, name: &str) -> Tensor {
    let info = file.header.tensor(name).unwrap().clone();
    let bytes = file.read_tensor(&info).unwrap();
    Tensor::new(info, bytes)
}

/// A storage buffer holding `values` (activations are bound whole, whatever the weight limit).
fn f32_buffer(ctx: &GpuContext, values: &[f32]) -> wgpu::Buffer {
    let buffer = storage_buffer(ctx, "f32", values.len() as u64 * 4);
    ctx.queue
        .write_buffer(&buffer, 0, bytemuck::cast_slice(values));
    buffer
}

fn run(ctx: &GpuContext, ops: &[Op]) {
    submit_ops(ctx, &ops.iter().collect::<Vec<_>>());
}

fn read(ctx: &GpuContext, buffer: &wgpu::Buffer, n: usize) -> Vec<f32> {
    let values = pollster::block_on(read_f32(ctx, buffer, 0, n)).unwrap();
    ctx.check().unwrap();
    values
}

/// Outputs land after a few guard values and before a few more, to catch stray writes.
const GUARD: usize = 3;

/// Check `got` (the whole output buffer) against `y0 + products` at `GUARD..`, and that the
/// guards kept their values from `y0`.
fn assert_products(what: &str, got: &[f32], y0: &[f32], products: &[(f64, f64)], cols: usize) {
    let n = products.len();
    assert_eq!(
        &got[..GUARD],
        &y0[..GUARD],
        "{what}: wrote before its output"
    );
    assert_eq!(
        &got[GUARD + n..],
        &y0[GUARD + n..],
        "{what}: wrote past its output"
    );
    let mut worst = 0f64;
    for (i, &(dot, abs)) in products.iter().enumerate() {
        // NaN marks an output the kernel must overwrite (not accumulate into).
        let base = match y0[GUARD + i] {
            v if v.is_nan() => 0.0,
            v => v as f64,
        };
        let want = base + dot;
        let tol = (cols as f64 + 4.0) * U * abs + 2.0 * U * (base.abs() + abs);
        let err = (got[GUARD + i] as f64 - want).abs();
        assert!(
            err <= tol,
            "{what}: output {i} is {} but the CPU says {want} (error {err:e}, tolerance {tol:e}, \
             sum|w x| {abs})",
            got[GUARD + i]
        );
        worst = worst.max(err / tol.max(f64::MIN_POSITIVE));
    }
    assert!(
        products.iter().filter(|p| p.1 > 0.0).count() * 2 >= n,
        "{what}: test data should be mostly non-zero"
    );
    if worst > 0.5 {
        eprintln!("{what}: worst error is {worst:.2} of the tolerance");
    }
}

/// Guards and, when `accumulate`, starting values: random; else NaN, which must be overwritten.
fn initial_output(n: usize, accumulate: bool, rng: &mut Rng) -> Vec<f32> {
    (0..n + 2 * GUARD)
        .map(|i| match accumulate || i < GUARD || i >= GUARD + n {
            true => rng.uniform(4.0),
            false => f32::NAN,
        })
        .collect()
}

/// y = W x through `matvec` into a buffer with guards; checked against the CPU.
fn check_matvec(
    gpu: &Gpu,
    matvec: &MatVec,
    w: &GpuWeight,
    t: &Tensor,
    accumulate: bool,
    seed: u64,
) {
    let ctx = &gpu.ctx;
    let (rows, cols) = t.rows_cols();
    let mut rng = Rng(seed);
    let x = rng.vec(cols);
    let y0 = initial_output(rows, accumulate, &mut rng);
    let xb = f32_buffer(ctx, &x);
    let yb = f32_buffer(ctx, &y0);
    let ops = matvec
        .op(ctx, w, whole(&xb), &yb, GUARD as u64, accumulate)
        .unwrap();
    assert_eq!(ops.len(), w.parts.len());
    run(ctx, &ops);
    let got = read(ctx, &yb, y0.len());
    let what = format!(
        "{:?} {} ({rows}x{cols} {}{})",
        matvec.variant(),
        t.info.name,
        t.info.ty,
        if accumulate { ", accumulate" } else { "" }
    );
    assert_products(&what, &got, &y0, &t.dot_rows(&x), cols);
}

/// Y = X Wᵀ for `n_tokens` tokens through `matmul`; checked against the CPU token by token.
/// The op is bound for a few more tokens than the step runs (as prefill ops are bound once for
/// the largest batch): the rows of the tokens past the step must stay untouched.
fn check_matmul(
    gpu: &Gpu,
    matmul: &MatMul,
    w: &GpuWeight,
    t: &Tensor,
    n_tokens: usize,
    accumulate: bool,
) {
    let ctx = &gpu.ctx;
    let (rows, cols) = t.rows_cols();
    let capacity = n_tokens + 3;
    let mut rng = Rng(n_tokens as u64);
    let x = rng.vec(capacity * cols);
    let mut y0 = initial_output(n_tokens * rows, accumulate, &mut rng);
    let tail: Vec<f32> = (0..(capacity - n_tokens) * rows)
        .map(|_| rng.uniform(4.0))
        .collect();
    y0.splice(GUARD + n_tokens * rows..GUARD + n_tokens * rows, tail);
    let xb = f32_buffer(ctx, &x);
    let yb = f32_buffer(ctx, &y0);
    let step = step_buffer(ctx, n_tokens);
    let ops = matmul
        .op(
            ctx,
            w,
            whole(&xb),
            capacity as u32,
            &step,
            &yb,
            GUARD as u64,
            accumulate,
        )
        .unwrap();
    run(ctx, &ops);
    let got = read(ctx, &yb, y0.len());
    let products: Vec<(f64, f64)> = x[..n_tokens * cols]
        .chunks_exact(cols)
        .flat_map(|xt| t.dot_rows(xt))
        .collect();
    let what = format!(
        "{:?} {} ({rows}x{cols} {}, {n_tokens} of {capacity} tokens{})",
        matmul.variant(),
        t.info.name,
        t.info.ty,
        if accumulate { ", accumulate" } else { "" }
    );
    assert_products(&what, &got, &y0, &products, cols);
}

/// The step uniform of a batch of `n_tokens` tokens.
fn step_buffer(ctx: &GpuContext, n_tokens: usize) -> wgpu::Buffer {
    let buffer = step_params_buffer(ctx);
    let params = StepParams {
        n_tokens: n_tokens as u32,
        ..Default::default()
    };
    ctx.queue
        .write_buffer(&buffer, 0, bytemuck::bytes_of(&params));
    buffer
}

/// Gather `ids` from the table; ids past it must read its last row.
fn check_embed(gpu: &Gpu, w: &GpuWeight, t: &Tensor, ids: &[u32]) {
    let ctx = &gpu.ctx;
    let (rows, cols) = t.rows_cols();
    let ids_buffer = storage_buffer(ctx, "ids", ids.len() as u64 * 4);
    ctx.queue
        .write_buffer(&ids_buffer, 0, bytemuck::cast_slice(ids));
    // Bound for two more tokens than the step runs: their rows must stay as they were.
    let out = f32_buffer(ctx, &vec![f32::NAN; (ids.len() + 2) * cols]);
    let ids_buffer_padded = storage_buffer(ctx, "ids", (ids.len() + 2) as u64 * 4);
    let mut encoder = ctx.device.create_command_encoder(&Default::default());
    encoder.copy_buffer_to_buffer(&ids_buffer, 0, &ids_buffer_padded, 0, ids.len() as u64 * 4);
    ctx.queue.submit([encoder.finish()]);
    let step = step_buffer(ctx, ids.len());
    let ops = gpu
        .embed
        .op(
            ctx,
            w,
            whole(&ids_buffer_padded),
            &out,
            ids.len() as u32 + 2,
            &step,
            1.0,
        )
        .unwrap();
    run(ctx, &ops);
    let got = read(ctx, &out, (ids.len() + 2) * cols);
    assert!(
        got[ids.len() * cols..].iter().all(|v| v.is_nan()),
        "embed {}: wrote rows past the step's tokens",
        t.info.name
    );
    for (t_i, &id) in ids.iter().enumerate() {
        let row = (id as usize).min(rows - 1);
        let want = &t.values[row * cols..][..cols];
        for (k, (&g, &v)) in got[t_i * cols..][..cols].iter().zip(want).enumerate() {
            assert!(
                (g - v).abs() <= v.abs() * f32::EPSILON,
                "embed {} ({}): token {t_i} (id {id}) value {k} is {g}, CPU {v}",
                t.info.name,
                t.info.ty
            );
        }
    }
}

/// Every product and the gather for one tensor.
fn check_all_kernels(gpu: &Gpu, t: &Tensor, n_tokens: usize) {
    let w = GpuWeight::upload(&gpu.ctx, &t.info, &t.bytes).unwrap();
    for (i, matvec) in gpu.matvecs.iter().enumerate() {
        check_matvec(gpu, matvec, &w, t, i % 2 == 1, 11 + i as u64);
    }
    for (i, matmul) in gpu.matmuls.iter().enumerate() {
        check_matmul(gpu, matmul, &w, t, n_tokens, i == 0);
    }
    let rows = t.info.rows_cols().0 as u32;
    check_embed(gpu, &w, t, &[0, rows - 1, rows / 2, rows, u32::MAX]);
}

#[test]
fn default_model_tensors_match_the_cpu() {
    let Some(path) = common::default_model() else {
        return;
    };
    let gpu = gpu();
    let file = GgufFile::open(path).unwrap();
    // 576->576, 576->192, 576->1536, 1536->576 (Q4_1) and the tied LM head 576->49152 (Q8_0).
    for name in [
        "blk.0.attn_q.weight",
        "blk.0.attn_k.weight",
        "blk.0.ffn_up.weight",
        "blk.0.ffn_down.weight",
    ] {
        check_all_kernels(gpu, &tensor_from_file(&file, name), 13);
    }
    let head = tensor_from_file(&file, "token_embd.weight");
    let w = GpuWeight::upload(&gpu.ctx, &head.info, &head.bytes).unwrap();
    for (i, matvec) in gpu.matvecs.iter().enumerate() {
        check_matvec(gpu, matvec, &w, &head, false, 7 + i as u64);
    }
    check_matmul(gpu, &gpu.matmuls[0], &w, &head, 3, false);
    check_embed(gpu, &w, &head, &[6403, 1980, 253, 655, 0, 49151, 49152]);
}

#[test]
fn random_blocks_of_every_type_match_the_cpu() {
    let gpu = gpu();
    let mut rng = Rng(5);
    for ty in GPU_TYPES {
        let block_cols = ty.block_size().max(32);
        // Rows not a multiple of any workgroup; a row of one block; rows of several blocks.
        for (rows, cols, n_tokens) in [
            (1000, 2 * block_cols, 9),
            (7, block_cols, 33),
            (3, 3 * block_cols, 1),
        ] {
            check_all_kernels(gpu, &Tensor::random(ty, rows, cols, &mut rng), n_tokens);
        }
    }
    // F32/F16 rows need not be whole units: the last one is padded and x read with a guard.
    for ty in [GgmlType::F32, GgmlType::F16] {
        check_all_kernels(gpu, &Tensor::random(ty, 5, 36, &mut rng), 3);
        check_all_kernels(gpu, &Tensor::random(ty, 70, 4, &mut rng), 2);
    }
}

/// Every type at real shapes: SmolLM2-135M's down projection (576 x 1536) for all, and for the
/// 32-value block types Gemma-3-270M's 640-wide rows (its Q4_K_M file holds Q5_0 tensors of
/// 640 x 2048 and 2048 x 640), whose 20 units per row fill no power-of-two group of invocations.
#[test]
fn every_type_at_real_shapes_matches_the_cpu() {
    let gpu = gpu();
    let mut rng = Rng(17);
    for ty in GPU_TYPES {
        let mut shapes = vec![(576, 1536)];
        if ty.block_size() <= 32 {
            shapes.extend([(2048, 640), (640, 2048)]);
        }
        for (rows, cols) in shapes {
            check_all_kernels(gpu, &Tensor::random(ty, rows, cols, &mut rng), 5);
        }
    }
}

#[test]
fn llama_cpp_quantized_fixtures_match_the_cpu() {
    let gpu = gpu();
    for ty in GPU_TYPES {
        let path = common::local_fixture(&format!("quant/{}.gguf", ty.name()));
        let file = GgufFile::open(&path).unwrap();
        for name in ["tensor_a.weight", "tensor_b.weight"] {
            let t = tensor_from_file(&file, name);
            let w = GpuWeight::upload(&gpu.ctx, &t.info, &t.bytes).unwrap();
            for matvec in &gpu.matvecs {
                check_matvec(gpu, matvec, &w, &t, false, 3);
            }
        }
    }
}

#[test]
fn tensors_split_across_bindings_match_the_cpu() {
    let gpu = small_binding_gpu();
    let mut rng = Rng(9);
    // Each plane layout: quants and scales (Q8_0, Q6_K), quants only (F16, Q5_K), all three
    // planes (Q5_0, Q3_K), two u32 scale words per block (IQ4_XS).
    let mut tensors = vec![
        Tensor::random(GgmlType::Q8_0, 1000, 576, &mut rng),
        Tensor::random(GgmlType::Q6_K, 600, 512, &mut rng),
        Tensor::random(GgmlType::F16, 100, 1000, &mut rng),
        Tensor::random(GgmlType::Q5_0, 1000, 640, &mut rng),
        Tensor::random(GgmlType::Q3_K, 700, 512, &mut rng),
        Tensor::random(GgmlType::Q5_K, 500, 512, &mut rng),
        Tensor::random(GgmlType::IQ4_XS, 900, 512, &mut rng),
    ];
    if let Some(path) = common::default_model() {
        let file = GgufFile::open(path).unwrap();
        tensors.push(tensor_from_file(&file, "blk.0.ffn_up.weight"));
    }
    for t in &tensors {
        let w = GpuWeight::upload(&gpu.ctx, &t.info, &t.bytes).unwrap();
        assert!(
            w.parts.len() > 2,
            "{}: {} parts",
            t.info.name,
            w.parts.len()
        );
        assert!(w.parts.iter().all(|p| p.buffer.size() <= SMALL_BINDING));
        check_all_kernels(gpu, t, 17);
    }
}

#[test]
fn dispatches_past_the_per_dimension_limit_fold_into_two_dimensions() {
    // Pretend the adapter dispatches at most 7 workgroups per dimension, so that every op
    // below needs a 2-D grid with some workgroups past the end (which must do nothing).
    let mut gpu = Gpu::open(GpuOptions::default());
    gpu.ctx.limits.max_compute_workgroups_per_dimension = 7;
    let mut rng = Rng(13);
    let t = Tensor::random(GgmlType::Q4_0, 1000, 64, &mut rng);
    check_all_kernels(&gpu, &t, 40);
    let w = GpuWeight::upload(&gpu.ctx, &t.info, &t.bytes).unwrap();
    let ids: Vec<u32> = (0..500).map(|_| (rng.next() % 1100) as u32).collect();
    check_embed(&gpu, &w, &t, &ids);
}

/// The GPU bytes of every part of a weight.
fn gpu_bytes(ctx: &GpuContext, w: &GpuWeight) -> Vec<Vec<u8>> {
    w.parts
        .iter()
        .map(|p| pollster::block_on(read_buffer(ctx, &p.buffer, 0, p.buffer.size())).unwrap())
        .collect()
}

#[test]
fn streaming_in_odd_pieces_uploads_the_same_bytes() {
    let mut rng = Rng(21);
    for gpu in [gpu(), small_binding_gpu()] {
        let ctx = &gpu.ctx;
        // Odd blocks per row (Q4_0, Q5_0 and F16 write their 2-byte fields in pairs), padded
        // F16/BF16 rows, K-quants (Q3_K with all three planes), and (on the small-binding
        // device) pieces that cross parts.
        for t in [
            Tensor::random(GgmlType::Q4_0, 600, 96, &mut rng),
            Tensor::random(GgmlType::F16, 150, 332, &mut rng),
            Tensor::random(GgmlType::Q6_K, 40, 768, &mut rng),
            Tensor::random(GgmlType::Q4_1, 130, 576, &mut rng),
            Tensor::random(GgmlType::Q5_0, 200, 96, &mut rng),
            Tensor::random(GgmlType::Q3_K, 40, 768, &mut rng),
            Tensor::random(GgmlType::BF16, 150, 332, &mut rng),
        ] {
            let whole_upload = GpuWeight::upload(ctx, &t.info, &t.bytes).unwrap();
            let mut streamed = GpuWeight::new(ctx, &t.info).unwrap();
            let max_piece = 3 * t.info.ty.type_size() + 5;
            let mut offset = 0;
            while offset < t.bytes.len() {
                let n = (1 + rng.next() % max_piece) as usize;
                let piece = &t.bytes[offset..(offset + n).min(t.bytes.len())];
                streamed.write(ctx, offset as u64, piece).unwrap();
                offset += piece.len();
            }
            streamed.finish(ctx).unwrap();
            assert_eq!(
                gpu_bytes(ctx, &streamed),
                gpu_bytes(ctx, &whole_upload),
                "{}",
                t.info.name
            );
        }
    }
}

#[test]
fn bad_tensors_and_bad_ops_are_errors() {
    let gpu = small_binding_gpu();
    let ctx = &gpu.ctx;
    let info = |ty: GgmlType, rows: u64, cols: u64| TensorInfo {
        name: "blk.0.test.weight".into(),
        dims: vec![cols, rows],
        ty,
        offset: 0,
        n_bytes: ty.bytes_for(rows * cols).unwrap(),
    };

    // Every type without GPU kernels is refused by name, and the message lists those with.
    for ty in GgmlType::ALL.into_iter().filter(|t| !GPU_TYPES.contains(t)) {
        let err = GpuWeight::new(ctx, &info(ty, 4, 256)).unwrap_err();
        assert_eq!(err.code(), "UNSUPPORTED_TENSOR_TYPE", "{ty}");
        let message = err.to_string();
        assert!(
            message.contains("blk.0.test.weight") && message.contains(ty.name()),
            "{message}"
        );
        assert!(
            message.contains("Q3_K Q4_K Q5_K Q6_K IQ4_NL IQ4_XS"),
            "{message}"
        );
    }

    // One F32 row of 32768 values is 128 KiB, more than this device's 64 KiB bindings.
    let err = GpuWeight::new(ctx, &info(GgmlType::F32, 2, 32768)).unwrap_err();
    assert_eq!(err.code(), "MODEL_TOO_LARGE", "{err}");
    let err = GpuWeight::new(ctx, &info(GgmlType::F16, 2, 34)).unwrap_err();
    assert_eq!(
        err.code(),
        "MODEL_INVALID",
        "rows of a length not a multiple of 4: {err}"
    );
    let err = upload_f32_vector(ctx, "norm", &[0.0; 32768]).unwrap_err();
    assert_eq!(err.code(), "MODEL_TOO_LARGE", "{err}");

    let t = Tensor::random(GgmlType::Q4_0, 8, 64, &mut Rng(1));
    let mut w = GpuWeight::new(ctx, &t.info).unwrap();
    w.write(ctx, 0, &t.bytes[..50]).unwrap();
    let err = w.write(ctx, 60, &t.bytes[60..]).unwrap_err();
    assert_eq!(err.code(), "INVALID_ARGUMENT", "a gap: {err}");
    let err = w.write(ctx, 50, &[0u8; 1000]).unwrap_err();
    assert_eq!(err.code(), "INVALID_ARGUMENT", "past the end: {err}");
    w.write(ctx, 50, &t.bytes[50..100]).unwrap();
    let err = w.finish(ctx).unwrap_err();
    assert!(err.to_string().contains("100 of its 288 bytes"), "{err}");

    let w = GpuWeight::upload(ctx, &t.info, &t.bytes).unwrap();
    let small = storage_buffer(ctx, "small", 63 * 4);
    let x = storage_buffer(ctx, "x", 64 * 4);
    let y = storage_buffer(ctx, "y", 8 * 4);
    let matvec = &gpu.matvecs[0];
    let code = |r: llama_wgpu::Result<Vec<Op>>| r.map(|_| ()).unwrap_err().code();
    assert_eq!(
        code(matvec.op(ctx, &w, whole(&small), &y, 0, false)),
        "INVALID_ARGUMENT"
    );
    assert_eq!(
        code(matvec.op(ctx, &w, whole(&x), &y, 1, false)),
        "INVALID_ARGUMENT"
    );
    assert_eq!(
        code(matvec.op(ctx, &w, whole(&x), &x, 0, false)),
        "INVALID_ARGUMENT"
    );
    let matmul = &gpu.matmuls[0];
    let step = step_buffer(ctx, 1);
    assert_eq!(
        code(matmul.op(ctx, &w, whole(&x), 0, &step, &y, 0, false)),
        "INVALID_ARGUMENT"
    );
    assert_eq!(
        code(matmul.op(ctx, &w, whole(&x), 2, &step, &y, 0, false)),
        "INVALID_ARGUMENT"
    );
    // The step must be the uniform from step_params_buffer.
    assert_eq!(
        code(matmul.op(ctx, &w, whole(&x), 1, &x, &y, 0, false)),
        "INVALID_ARGUMENT"
    );
    assert_eq!(
        code(gpu.embed.op(ctx, &w, whole(&small), &x, 64, &step, 1.0)),
        "INVALID_ARGUMENT"
    );
    assert!(matvec.op(ctx, &w, whole(&x), &y, 0, false).is_ok());
    ctx.check().unwrap();
}

/// Time per op on this adapter (`cargo test --release --test gpu_matvec -- --ignored
/// --nocapture`). Not a pass/fail test: the figures are for reports. Each line gives the wall
/// time and, on Linux, this process's CPU time per op: lavapipe runs shaders on the process's
/// own threads, so CPU time is a steadier figure on a shared machine (wall ~ CPU / threads when
/// the cores are free).
#[test]
#[ignore]
fn matvec_speed() {
    let Some(path) = common::default_model() else {
        return;
    };
    let gpu = gpu();
    let ctx = &gpu.ctx;
    let file = GgufFile::open(path).unwrap();
    let mut rng = Rng(3);
    let tensors = [
        tensor_from_file(&file, "token_embd.weight"),
        tensor_from_file(&file, "blk.0.ffn_up.weight"),
        tensor_from_file(&file, "blk.0.ffn_down.weight"),
        tensor_from_file(&file, "blk.0.attn_q.weight"),
        Tensor::random(GgmlType::Q4_1, 4096, 4096, &mut rng),
        Tensor::random(GgmlType::Q8_0, 4096, 4096, &mut rng),
        Tensor::random(GgmlType::Q4_K, 4096, 4096, &mut rng),
        Tensor::random(GgmlType::Q6_K, 4096, 4096, &mut rng),
    ];
    for t in &tensors {
        let (rows, cols) = t.rows_cols();
        let w = GpuWeight::upload(ctx, &t.info, &t.bytes).unwrap();
        let what = format!("{} {rows}x{cols} {}", t.info.name, t.info.ty);
        let x = f32_buffer(ctx, &rng.vec(cols));
        let y = storage_buffer(ctx, "y", rows as u64 * 4);
        // Enough repetitions for ~0.2 G weights per measurement.
        let reps = (200_000_000 / (rows * cols)).clamp(1, 1000);
        for matvec in &gpu.matvecs {
            let ops = matvec.op(ctx, &w, whole(&x), &y, 0, false).unwrap();
            let (wall, cpu) = time_ops(ctx, &ops, &y, reps);
            eprintln!(
                "matvec {:?} {what}: {:.3} ms wall, {cpu} ({:.2} GB/s of weights)",
                matvec.variant(),
                wall * 1e3,
                w.gpu_bytes() as f64 / wall / 1e9
            );
        }
        if rows > 4096 {
            continue; // The LM head's matmul is not used in prefill.
        }
        let n_tokens = 64;
        let xs = f32_buffer(ctx, &rng.vec(n_tokens * cols));
        let ys = storage_buffer(ctx, "ys", (n_tokens * rows) as u64 * 4);
        let step = step_buffer(ctx, n_tokens);
        for matmul in &gpu.matmuls {
            let ops = matmul
                .op(ctx, &w, whole(&xs), n_tokens as u32, &step, &ys, 0, false)
                .unwrap();
            let (wall, cpu) = time_ops(ctx, &ops, &ys, (reps / n_tokens).max(1));
            eprintln!(
                "matmul {:?} {what}, {n_tokens} tokens: {:.3} ms wall per token, {cpu} for all",
                matmul.variant(),
                wall * 1e3 / n_tokens as f64,
            );
        }
    }
}

/// (wall seconds, "x ms CPU") per repetition of `ops`, recorded `reps` times into one submit,
/// over three submits after a warm-up.
fn time_ops(ctx: &GpuContext, ops: &[Op], out: &wgpu::Buffer, reps: usize) -> (f64, String) {
    let all: Vec<&Op> = (0..reps).flat_map(|_| ops.iter()).collect();
    submit_ops(ctx, &all);
    read(ctx, out, 1);
    let cpu_before = process_cpu_seconds();
    let started = std::time::Instant::now();
    for _ in 0..3 {
        submit_ops(ctx, &all);
        read(ctx, out, 1);
    }
    let per_rep = |seconds: f64| seconds / (3 * reps) as f64;
    let cpu = match (cpu_before, process_cpu_seconds()) {
        (Some(a), Some(b)) => format!("{:.3} ms CPU", per_rep(b - a) * 1e3),
        _ => "CPU time unknown".into(),
    };
    (per_rep(started.elapsed().as_secs_f64()), cpu)
}

/// User + system time of this process (all threads) from /proc, in seconds (100 Hz ticks).
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split(' ').collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// Tensors stacked into one weight (a layer's q, k, v or gate, up) upload member by member in
/// any order, even interleaved and in odd pieces, and each member's products land where its
/// route says (for a matvec and a batched matmul, every variant, whole and split across
/// bindings), with nothing written between or around them.
#[test]
fn stacked_weights_write_each_members_outputs_where_routed() {
    let mut rng = Rng(31);
    for gpu in [gpu(), small_binding_gpu()] {
        let ctx = &gpu.ctx;
        for ty in [
            GgmlType::Q4_1,
            GgmlType::Q6_K,
            GgmlType::F16,
            GgmlType::Q5_0,
        ] {
            // 768 values (Q4_1, F16, Q5_0) or 6144 (Q6_K): 140 KB to 1.4 MB, several 64 KiB parts.
            let cols = 24 * ty.block_size().max(32);
            let members: Vec<Tensor> = [200, 48, 40]
                .into_iter()
                .map(|rows| Tensor::random(ty, rows, cols, &mut rng))
                .collect();
            let infos: Vec<&TensorInfo> = members.iter().map(|t| &t.info).collect();
            let mut w = GpuWeight::new_stacked(ctx, "stacked", &infos).unwrap();
            assert_eq!(w.rows, 288);
            // Round-robin over the members, last first, a random-sized piece each time.
            let mut sent = vec![0usize; members.len()];
            while sent.iter().zip(&members).any(|(&s, t)| s < t.bytes.len()) {
                for m in (0..members.len()).rev() {
                    let bytes = &members[m].bytes;
                    let n = (1 + rng.next() % 700) as usize;
                    let piece = &bytes[sent[m]..(sent[m] + n).min(bytes.len())];
                    w.write_member(ctx, m, sent[m] as u64, piece).unwrap();
                    sent[m] += piece.len();
                }
            }
            w.finish(ctx).unwrap();
            if std::ptr::eq(gpu, small_binding_gpu()) {
                assert!(w.parts.len() > 1, "{ty}: the stack should span parts");
            }
            check_stacked(gpu, &w, &members, 1);
            check_stacked(gpu, &w, &members, 6);
        }
    }
}

/// Run `w` (the stack of `members`) over `n_tokens` tokens with member m routed to its own
/// region (gaps between, tokens `rows + 3` apart) and compare every element with the CPU.
fn check_stacked(gpu: &Gpu, w: &GpuWeight, members: &[Tensor], n_tokens: usize) {
    let ctx = &gpu.ctx;
    let cols = w.cols as usize;
    let mut rng = Rng(n_tokens as u64 + 40);
    let x = rng.vec(n_tokens * cols);
    let xb = f32_buffer(ctx, &x);
    // Member m at base[m], `rows + 3` apart per token, 5 spare values between regions.
    let mut routes = Vec::new();
    let mut end = GUARD as u64;
    let mut first_row = 0;
    for t in members {
        let rows = t.info.rows_cols().0;
        let stride = rows + 3;
        routes.push(Route {
            first_row,
            rows,
            base: end,
            stride,
        });
        first_row += rows;
        end += stride * n_tokens as u64 + 5;
    }
    let y0: Vec<f32> = (0..end as usize + GUARD)
        .map(|_| rng.uniform(4.0))
        .collect();
    // The CPU's products, at their routed elements; None where nothing may be written.
    let mut want: Vec<Option<(f64, f64)>> = vec![None; y0.len()];
    for (t, route) in members.iter().zip(&routes) {
        for (token, xt) in x.chunks_exact(cols).enumerate() {
            for (r, p) in t.dot_rows(xt).into_iter().enumerate() {
                want[(route.base + token as u64 * route.stride) as usize + r] = Some(p);
            }
        }
    }
    let check = |variant: String, yb: &wgpu::Buffer, ops: Vec<Op>| {
        run(ctx, &ops);
        let got = read(ctx, yb, y0.len());
        for (j, (g, want)) in got.iter().zip(&want).enumerate() {
            match want {
                None => assert_eq!(
                    *g, y0[j],
                    "{variant} {}: element {j} is not an output",
                    w.ty
                ),
                Some((dot, abs)) => {
                    let tol = (cols as f64 + 4.0) * U * abs;
                    assert!(
                        (*g as f64 - dot).abs() <= tol,
                        "{variant} {} stacked, {n_tokens} tokens: element {j} is {g}, CPU {dot}",
                        w.ty
                    );
                }
            }
        }
    };
    if n_tokens == 1 {
        for matvec in &gpu.matvecs {
            let too_small = f32_buffer(ctx, &[0.0]);
            let ops = matvec.op_routed(ctx, w, whole(&xb), &too_small, &routes, false);
            assert!(ops.is_err(), "routes past y are an error");
            let yb = f32_buffer(ctx, &y0);
            let ops = matvec.op_routed(ctx, w, whole(&xb), &yb, &routes, false);
            check(format!("{:?}", matvec.variant()), &yb, ops.unwrap());
        }
    } else {
        let step = step_buffer(ctx, n_tokens);
        for matmul in &gpu.matmuls {
            let yb = f32_buffer(ctx, &y0);
            let n = n_tokens as u32;
            let ops = matmul.op_routed(ctx, w, whole(&xb), n, &step, &yb, &routes, false);
            check(format!("{:?}", matmul.variant()), &yb, ops.unwrap());
        }
    }
}

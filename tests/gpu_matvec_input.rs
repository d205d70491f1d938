//! The decode matvec's fused inputs (`MatVecInput`: `shaders/matvec_input_*.wgsl`) against the
//! unfused CPU definitions: `Normed` = W (rmsnorm(x) * w), the RMSNorm folded into the product
//! (its row scale from the x values the product loads), and `Gated` = W (act(gate) * up), the
//! SiLU or GELU gate folded into the down projection. Every matvec variant the adapter runs, the
//! default model's real tensors, and awkward shapes: row counts of no workgroup multiple, rows
//! of one unit, F32/F16 rows that end in a partial unit (the norm weight read past `cols`).
//!
//! Tolerance: `gpu_matvec.rs` bounds a plain product by (cols + 4) u sum|w h|. Fusing adds per
//! input value the product with the norm weight (1 rounding) or the activation (WGSL's exp is
//! within 3 + 2|x| ulp; |gate| <= 4 here, so <= 11 ulp, and the quotient and product 2 more),
//! and per row the norm's scale: the sum of squares over cols terms (cols u relative, halved by
//! the square root), the division, sqrt and the final product (a few u). Bound:
//! (2 cols + 32) u sum|w h|, h the exact input in f64; a wrong unit or scale is far outside it.

mod common;

use common::quant_data::{Rng, Tensor};

use llama_wgpu::arch::Activation;
use llama_wgpu::gguf::GgufFile;
use llama_wgpu::gpu::kernel::{read_f32, storage_buffer, submit_ops, whole};
use llama_wgpu::gpu::kernels::matvec::{InputKind, MatVec, MatVecInput, MatVecVariant, Route};
use llama_wgpu::gpu::weights::{GpuWeight, GPU_TYPES};
use llama_wgpu::gpu::{GpuContext, GpuOptions};
use llama_wgpu::quant::GgmlType;

const U: f64 = 1.0 / (1u64 << 24) as f64;
const EPS: f32 = 1e-5;
const KINDS: [InputKind; 3] = [
    InputKind::Normed,
    InputKind::Gated(Activation::Silu),
    InputKind::Gated(Activation::GeluTanh),
];

fn f32_buffer(ctx: &GpuContext, values: &[f32]) -> wgpu::Buffer {
    let buffer = storage_buffer(ctx, "f32", values.len() as u64 * 4);
    ctx.queue
        .write_buffer(&buffer, 0, bytemuck::cast_slice(values));
    buffer
}

fn act(a: Activation, x: f64) -> f64 {
    match a {
        Activation::Silu => x / (1.0 + (-x).exp()),
        Activation::GeluTanh => {
            let y = 0.7978845608028654 * (x + 0.044715 * x * x * x);
            0.5 * x * (1.0 + y.tanh())
        }
    }
}

/// Every variant of the adapter, each with the fused kinds for every GPU type.
fn matvecs(ctx: &GpuContext) -> Vec<MatVec> {
    let uses: Vec<(InputKind, &[GgmlType])> = KINDS.iter().map(|&k| (k, &GPU_TYPES[..])).collect();
    MatVecVariant::available(ctx)
        .into_iter()
        .map(|v| pollster::block_on(MatVec::with_variant_for_inputs(ctx, v, &uses)).unwrap())
        .collect()
}

/// y (+)= W h for `kind`'s input made from random data, against the CPU in f64.
fn check(ctx: &GpuContext, matvec: &MatVec, kind: InputKind, t: &Tensor, seed: u64) {
    let (rows, cols) = t.rows_cols();
    let mut rng = Rng(seed);
    // x with a large common scale, so that the norm's scale matters.
    let x: Vec<f32> = rng.vec(cols).iter().map(|v| v * 7.0).collect();
    let norm_w: Vec<f32> = rng.vec(cols).iter().map(|v| 1.0 + v).collect();
    let gap = cols.next_multiple_of(64) + 64;
    let mut gate_up = vec![0f32; gap + cols];
    for v in gate_up.iter_mut() {
        *v = rng.uniform(4.0);
    }
    let h: Vec<f64> = match kind {
        InputKind::Normed => {
            let ms = x.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / cols as f64;
            let s = 1.0 / (ms + EPS as f64).sqrt();
            x.iter()
                .zip(&norm_w)
                .map(|(&v, &w)| v as f64 * s * w as f64)
                .collect()
        }
        InputKind::Gated(a) => (0..cols)
            .map(|i| act(a, gate_up[i] as f64) * gate_up[gap + i] as f64)
            .collect(),
        InputKind::X => unreachable!(),
    };
    let accumulate = seed % 2 == 1;
    let y0: Vec<f32> = (0..rows + 2).map(|_| rng.uniform(4.0)).collect();
    let (xb, wb, gb) = (
        f32_buffer(ctx, &x),
        f32_buffer(ctx, &norm_w),
        f32_buffer(ctx, &gate_up),
    );
    let yb = f32_buffer(ctx, &y0);
    let input = match kind {
        InputKind::Normed => MatVecInput::Normed {
            x: whole(&xb),
            weight: whole(&wb),
            eps: EPS,
        },
        InputKind::Gated(activation) => MatVecInput::Gated {
            gate_up: whole(&gb),
            up_offset: gap as u64,
            activation,
        },
        InputKind::X => unreachable!(),
    };
    let w = GpuWeight::upload(ctx, &t.info, &t.bytes).unwrap();
    let routes = Route::contiguous(&w, 1);
    let ops = matvec
        .op_input(ctx, &w, input, &yb, &routes, accumulate)
        .unwrap();
    submit_ops(ctx, &ops.iter().collect::<Vec<_>>());
    let got = pollster::block_on(read_f32(ctx, &yb, 0, rows + 2)).unwrap();
    ctx.check().unwrap();
    let what = format!(
        "{:?} {kind:?} {} ({rows}x{cols} {})",
        matvec.variant(),
        t.info.name,
        t.info.ty
    );
    assert_eq!(
        (got[0], got[rows + 1]),
        (y0[0], y0[rows + 1]),
        "{what}: wrote outside y"
    );
    for (r, row) in t.values.chunks_exact(cols).enumerate() {
        let (dot, abs) = row.iter().zip(&h).fold((0.0, 0.0), |(s, a), (&w, &h)| {
            let p = w as f64 * h;
            (s + p, a + p.abs())
        });
        let base = if accumulate { y0[1 + r] as f64 } else { 0.0 };
        let tol = (2.0 * cols as f64 + 32.0) * U * abs + 2.0 * U * (base.abs() + abs);
        let err = (got[1 + r] as f64 - (base + dot)).abs();
        assert!(
            err <= tol,
            "{what}: row {r} is {}, the CPU says {} (error {err:e}, tolerance {tol:e})",
            got[1 + r],
            base + dot
        );
    }
}

#[test]
fn fused_inputs_match_the_unfused_cpu_definitions() {
    let ctx = GpuContext::new_blocking(&GpuOptions::default()).unwrap();
    let matvecs = matvecs(&ctx);
    let mut rng = Rng(3);
    let mut seed = 0;
    for ty in GPU_TYPES {
        let block_cols = ty.block_size().max(32);
        // Rows not a multiple of any workgroup; one block per row; SmolLM2's down projection.
        for (rows, cols) in [(1000, 2 * block_cols), (7, block_cols), (576, 1536)] {
            let t = Tensor::random(ty, rows, cols, &mut rng);
            for matvec in &matvecs {
                for kind in KINDS {
                    seed += 1;
                    check(&ctx, matvec, kind, &t, seed);
                }
            }
        }
    }
    // Rows that end in a partial unit: x is zero there and the norm weight is read clamped.
    for ty in [GgmlType::F32, GgmlType::F16] {
        for (rows, cols) in [(5, 36), (70, 4), (9, 100)] {
            let t = Tensor::random(ty, rows, cols, &mut rng);
            for matvec in &matvecs {
                for kind in KINDS {
                    seed += 1;
                    check(&ctx, matvec, kind, &t, seed);
                }
            }
        }
    }
}

#[test]
fn fused_inputs_on_the_default_models_tensors() {
    let Some(path) = common::default_model() else {
        return;
    };
    let ctx = GpuContext::new_blocking(&GpuOptions::default()).unwrap();
    let matvecs = matvecs(&ctx);
    let file = GgufFile::open(path).unwrap();
    // The normed q and gate projections and the tied LM head (Q8_0, 49152 rows), the gated
    // down projection (1536 -> 576).
    let cases = [
        ("blk.0.attn_q.weight", InputKind::Normed),
        ("blk.0.ffn_gate.weight", InputKind::Normed),
        ("token_embd.weight", InputKind::Normed),
        ("blk.0.ffn_down.weight", InputKind::Gated(Activation::Silu)),
    ];
    for (i, (name, kind)) in cases.into_iter().enumerate() {
        let info = file.header.tensor(name).unwrap().clone();
        let t = Tensor::new(info.clone(), file.read_tensor(&info).unwrap());
        for matvec in &matvecs {
            check(&ctx, matvec, kind, &t, 2 * i as u64);
        }
    }
}

#[test]
fn bad_fused_inputs_are_errors() {
    let ctx = GpuContext::new_blocking(&GpuOptions::default()).unwrap();
    let mut rng = Rng(9);
    let t = Tensor::random(GgmlType::Q8_0, 8, 64, &mut rng);
    let w = GpuWeight::upload(&ctx, &t.info, &t.bytes).unwrap();
    let (x, short) = (f32_buffer(&ctx, &[0.5; 64]), f32_buffer(&ctx, &[0.5; 32]));
    let y = f32_buffer(&ctx, &[0.0; 8]);
    let routes = Route::contiguous(&w, 0);
    let plain =
        pollster::block_on(MatVec::with_variant(&ctx, MatVecVariant::RowsPerInvocation)).unwrap();
    let matvec = &matvecs(&ctx)[0];
    let normed = |weight| MatVecInput::Normed {
        x: whole(&x),
        weight,
        eps: EPS,
    };
    let gated = |gate_up, up_offset| MatVecInput::Gated {
        gate_up,
        up_offset,
        activation: Activation::Silu,
    };
    let wide = f32_buffer(&ctx, &[0.5; 256]);
    for (what, input, k) in [
        ("a pipeline not compiled", normed(whole(&x)), &plain),
        ("a short norm weight", normed(whole(&short)), matvec),
        ("the norm weight in y", normed(whole(&y)), matvec),
        ("up overlapping gate", gated(whole(&wide), 32), matvec),
        ("up not vec4-aligned", gated(whole(&wide), 66), matvec),
        ("up past the binding", gated(whole(&wide), 224), matvec),
    ] {
        let err = k.op_input(&ctx, &w, input, &y, &routes, false).err();
        assert_eq!(err.map(|e| e.code()), Some("INVALID_ARGUMENT"), "{what}");
    }
}

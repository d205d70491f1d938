//! The q/k/v matvec's RoPE epilogue (`OutputKind::RopeKv`: `shaders/matvec_output_rope.wgsl`)
//! against the unfused path it replaces in a decode step: the same matvec writing raw q, k, v
//! rows, then `rope.wgsl`'s dispatch (itself held to the CPU in `gpu_ops.rs`). Every matvec
//! variant the adapter runs, x plain and normed, both KV-cache element types, both rotation
//! styles (partial NeoX with frequency factors too), heads of 64 and 128, GQA, q/k/v biases
//! (qwen2) and YaRN's cos/sin factor, at positions 0, 37 and 1000; the weight stacked (one
//! dispatch for q, k and v) and with q apart (the k|v weight routed from q_dim on).
//!
//! Tolerance: both paths compute each row's dot in the same order and the same rotation from
//! the same table and `cos_sin`; only the compiler's contraction of a multiply-add may differ,
//! a few ulp of values up to ~30: 2e-6 relative (+1e-6). In an f16 cache a value that lands
//! near the midpoint of two f16s may round either way: one f16 ulp (2^-10 relative) more.
//! The whole models (`gpu_model.rs`) hold the fused step to the CPU reference.

mod common;
use common::gpu_read::{read, read_kv};

use common::quant_data::{Rng, Tensor};

use llama_wgpu::arch::{self, Architecture};
use llama_wgpu::config::{Config, RopeFactors, RopeScaling, RopeStyle};
use llama_wgpu::gpu::kernel::{range, storage_buffer, submit_ops, whole};
use llama_wgpu::gpu::kernels::matvec::{
    InputKind, MatVec, MatVecInput, MatVecVariant, OutputKind, Route,
};
use llama_wgpu::gpu::kernels::rope::{Rope, RopeExtras};
use llama_wgpu::gpu::kernels::{step_params_buffer, StepParams};
use llama_wgpu::gpu::kv_cache::{KvCache, KvElement};
use llama_wgpu::gpu::weights::GpuWeight;
use llama_wgpu::gpu::{GpuContext, GpuOptions};
use llama_wgpu::quant::GgmlType;

const CONTEXT: usize = 1024;
const POSITIONS: [usize; 3] = [0, 37, 1000];

fn config(arch: &'static Architecture, heads: (usize, usize, usize), style: RopeStyle) -> Config {
    let (n_head, n_head_kv, head_dim) = heads;
    Config {
        arch,
        architecture: arch.name.into(),
        n_embd: 256,
        n_layer: 2,
        n_head,
        n_head_kv,
        head_dim,
        n_ff: 512,
        n_vocab: 64,
        context_length: CONTEXT,
        rope_base: 100000.0,
        rope_base_swa: 100000.0,
        rope_dims: head_dim,
        rope_style: style,
        rope_scaling: None,
        rope_factors: RopeFactors::None,
        rope_attn_factor: 1.0,
        rms_eps: 1e-5,
        attention_scale: 1.0 / (head_dim as f32).sqrt(),
        embedding_scale: 1.0,
        sliding_window: None,
        local_layers: vec![false; 2],
        tied_embeddings: true,
        pooling_type: None,
    }
}

/// The shapes and options the epilogue is checked at, with the frequency factors each needs.
fn cases() -> Vec<(&'static str, Config, Option<Vec<f32>>)> {
    let smollm2 = config(&arch::LLAMA, (9, 3, 64), RopeStyle::Adjacent);
    let mut partial = config(&arch::PHI3, (4, 2, 64), RopeStyle::Half);
    partial.rope_dims = 32;
    partial.rope_scaling = Some(RopeScaling::Linear { factor: 4.0 });
    partial.rope_factors = RopeFactors::Freqs;
    let freqs: Vec<f32> = (0..16).map(|i| 1.0 + i as f32 * 0.37).collect();
    let mut qwen2 = config(&arch::QWEN2, (4, 1, 128), RopeStyle::Half);
    qwen2.rope_scaling = Some(RopeScaling::Yarn {
        factor: 4.0,
        original_context: 256,
        beta_fast: 32.0,
        beta_slow: 1.0,
        ext_factor: 1.0,
    });
    qwen2.rope_attn_factor = 1.2;
    vec![
        ("llama, heads of 64, 9 over 3", smollm2, None),
        ("NeoX over 32 of 64 dims, factors", partial, Some(freqs)),
        ("qwen2 biases, heads of 128, 4 over 1, YaRN", qwen2, None),
    ]
}

fn upload(ctx: &GpuContext, data: &[f32]) -> wgpu::Buffer {
    let buffer = storage_buffer(ctx, "test data", data.len() as u64 * 4);
    ctx.queue
        .write_buffer(&buffer, 0, bytemuck::cast_slice(data));
    buffer
}

fn contexts() -> Vec<GpuContext> {
    let f32_cache = GpuOptions {
        allow_f16: false,
        ..GpuOptions::default()
    };
    let mut ctxs = vec![GpuContext::new_blocking(&f32_cache).unwrap()];
    let f16 = GpuContext::new_blocking(&GpuOptions::default()).unwrap();
    match f16.features.shader_f16 {
        true => ctxs.push(f16),
        false => eprintln!("SKIPPED: the adapter has no shader-f16, so no f16 KV cache to test"),
    }
    ctxs
}

/// Each variant of the adapter with plain and epilogue outputs for x and normed x.
fn matvecs(ctx: &GpuContext, rope: &Rope, ty: GgmlType) -> Vec<MatVec> {
    let types = [ty];
    let mut uses = Vec::new();
    for input in [InputKind::X, InputKind::Normed] {
        uses.push((input, OutputKind::Y, &types[..]));
        uses.push((input, rope.epilogue_kind(), &types[..]));
    }
    MatVecVariant::available(ctx)
        .into_iter()
        .map(|v| pollster::block_on(MatVec::build(ctx, v, &uses)).unwrap())
        .collect()
}

fn route(first_row: usize, rows: usize, base: usize) -> Route {
    Route {
        first_row: first_row as u64,
        rows: rows as u64,
        base: base as u64,
        stride: rows as u64,
    }
}

/// Per weight of the projection (rows in q | k | v order), its routes with q, k, v starting at
/// `bases`.
fn routes(weights: &[GpuWeight], widths: [usize; 3], bases: [usize; 3]) -> Vec<Vec<Route>> {
    let mut first = 0;
    weights
        .iter()
        .map(|w| {
            let span = first..first + w.rows as usize;
            first = span.end;
            let mut start = 0;
            let mut rs = Vec::new();
            for (width, base) in widths.into_iter().zip(bases) {
                let (lo, hi) = (span.start.max(start), span.end.min(start + width));
                if lo < hi {
                    rs.push(route(lo - span.start, hi - lo, base + lo - start));
                }
                start += width;
            }
            rs
        })
        .collect()
}

fn check_case(ctx: &GpuContext, what: &str, c: &Config, factors: Option<&[f32]>, seed: u64) {
    let mut rng = Rng(seed);
    let (q_dim, kv_dim, cols) = (c.q_dim(), c.kv_dim(), c.n_embd);
    let rope = pollster::block_on(Rope::new(ctx, c, factors, CONTEXT)).unwrap();
    let rows = q_dim + 2 * kv_dim;
    let ty = [GgmlType::Q8_0, GgmlType::Q4_K][seed as usize % 2];
    let t = Tensor::random(ty, rows as u64, cols as u64, &mut rng);
    let row_bytes = t.bytes.len() / rows;
    let stacked = [GpuWeight::upload(ctx, &t.info, &t.bytes).unwrap()];
    let part = |name: &str, r: std::ops::Range<usize>| {
        let mut info = t.info.clone();
        info.name = name.into();
        info.dims = vec![cols as u64, r.len() as u64];
        let bytes = &t.bytes[r.start * row_bytes..r.end * row_bytes];
        info.n_bytes = bytes.len() as u64;
        GpuWeight::upload(ctx, &info, bytes).unwrap()
    };
    let q_apart = [part("q", 0..q_dim), part("k|v", q_dim..rows)];
    let x: Vec<f32> = rng.vec(cols).iter().map(|v| v * 3.0).collect();
    let norm: Vec<f32> = rng.vec(cols).iter().map(|v| 1.0 + 0.5 * v).collect();
    let bias = c
        .arch
        .qkv_bias
        .then(|| rng.vec(rows).iter().map(|v| v * 2.0).collect::<Vec<f32>>());
    let (xb, nb) = (upload(ctx, &x), upload(ctx, &norm));
    let bias_b = bias.as_ref().map(|b| upload(ctx, b));
    let step = step_params_buffer(ctx);
    // The unfused path's q | k | v, each at a binding offset of its own.
    let align = ctx.limits.min_storage_buffer_offset_alignment as usize / 4;
    let k_base = q_dim.next_multiple_of(align);
    let v_base = (k_base + kv_dim).next_multiple_of(align);
    let qkv = upload(ctx, &vec![0.0; v_base + kv_dim]);
    let widths = [q_dim, kv_dim, kv_dim];
    let unset = vec![7.0f32; q_dim + 8];
    for matvec in matvecs(ctx, &rope, ty) {
        for (form, weights) in [("stacked", &stacked[..]), ("q apart", &q_apart[..])] {
            for normed in [false, true] {
                let input = || match normed {
                    false => MatVecInput::X(whole(&xb)),
                    true => MatVecInput::Normed {
                        x: whole(&xb),
                        weight: whole(&nb),
                        eps: c.rms_eps,
                    },
                };
                let (want_q, fused_q) = (upload(ctx, &unset), upload(ctx, &unset));
                let (want_kv, fused_kv) = (
                    KvCache::new(ctx, c, CONTEXT).unwrap(),
                    KvCache::new(ctx, c, CONTEXT).unwrap(),
                );
                let layer = 1;
                let mut unfused = Vec::new();
                for (w, r) in weights
                    .iter()
                    .zip(routes(weights, widths, [0, k_base, v_base]))
                {
                    unfused.extend(matvec.op_input(ctx, w, input(), &qkv, &r, false).unwrap());
                }
                let bind = |base: usize, n: usize| range(&qkv, base as u64 * 4, n as u64 * 4);
                let extras = RopeExtras {
                    bias: bias_b.as_ref().map(whole),
                    norms: None,
                };
                let qkv_bindings = [bind(0, q_dim), bind(k_base, kv_dim), bind(v_base, kv_dim)];
                let rope_ops = rope.ops(
                    ctx,
                    &step,
                    qkv_bindings,
                    range(&want_q, 0, q_dim as u64 * 4),
                    extras,
                    &want_kv,
                    layer,
                    1,
                );
                unfused.extend(rope_ops.unwrap());
                let target = rope
                    .epilogue(ctx, &step, bias_b.as_ref().map(whole), &fused_kv, layer)
                    .unwrap();
                let mut fused = Vec::new();
                let bases = [0, q_dim, q_dim + kv_dim];
                for (w, r) in weights.iter().zip(routes(weights, widths, bases)) {
                    let ops = matvec.op_rope_kv(ctx, w, input(), &fused_q, &r, &target);
                    fused.extend(ops.unwrap());
                }
                assert_eq!(fused.len(), weights.len());
                let label = format!(
                    "{what}, {:?}, {form}, normed {normed}, {:?} cache",
                    matvec.variant(),
                    want_kv.element()
                );
                for pos in POSITIONS {
                    let params = StepParams {
                        pos: pos as u32,
                        n_tokens: 1,
                        ..Default::default()
                    };
                    ctx.queue
                        .write_buffer(&step, 0, bytemuck::bytes_of(&params));
                    submit_ops(ctx, &unfused.iter().chain(&fused).collect::<Vec<_>>());
                    let got = read(ctx, &fused_q, q_dim + 8);
                    let want = read(ctx, &want_q, q_dim + 8);
                    compare(
                        &got[..q_dim],
                        &want[..q_dim],
                        0.0,
                        &format!("{label}: q at {pos}"),
                    );
                    assert!(got[q_dim..].iter().all(|&v| v == 7.0), "{label}: past q");
                }
                let f16 = match want_kv.element() {
                    KvElement::F16 => 1.0 / 1024.0,
                    KvElement::F32 => 0.0,
                };
                let n = CONTEXT * kv_dim;
                for (kind, get) in [
                    ("k", KvCache::keys as fn(&KvCache, usize) -> &[wgpu::Buffer]),
                    ("v", KvCache::values),
                ] {
                    let got = read_kv(ctx, &fused_kv, &get(&fused_kv, layer)[0], n);
                    let want = read_kv(ctx, &want_kv, &get(&want_kv, layer)[0], n);
                    // Rows of other positions stay zero in both.
                    compare(&got, &want, f16, &format!("{label}: {kind} cache"));
                    let written = POSITIONS.map(|p| p * kv_dim..(p + 1) * kv_dim);
                    let others = got
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| written.iter().all(|r| !r.contains(i)));
                    assert!(
                        others.into_iter().all(|(_, &v)| v == 0.0),
                        "{label}: {kind}"
                    );
                    let other = read_kv(ctx, &fused_kv, &get(&fused_kv, 0)[0], n);
                    assert!(
                        other.iter().all(|&v| v == 0.0),
                        "{label}: {kind} of layer 0"
                    );
                }
            }
        }
    }
    eprintln!(
        "{what}: {:?} cache, {ty}: fused = unfused",
        KvElement::for_context(ctx)
    );
}

fn compare(got: &[f32], want: &[f32], f16: f32, what: &str) {
    assert_eq!(got.len(), want.len());
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let tol = 2e-6 * w.abs() + 1e-6 + f16 * w.abs();
        assert!(
            (g - w).abs() <= tol,
            "{what}: element {i} is {g}, unfused {w}"
        );
    }
}

#[test]
fn rope_epilogue_matches_the_unfused_projection_and_rope() {
    for (i, ctx) in contexts().iter().enumerate() {
        for (j, (what, c, factors)) in cases().iter().enumerate() {
            check_case(ctx, what, c, factors.as_deref(), (2 * j + i) as u64);
        }
    }
}

#[test]
fn the_epilogue_refuses_what_it_cannot_pair() {
    let ctx = GpuContext::new_blocking(&GpuOptions::default()).unwrap();
    let c = config(&arch::LLAMA, (4, 2, 64), RopeStyle::Adjacent);
    let rope = pollster::block_on(Rope::new(&ctx, &c, None, 64)).unwrap();
    let cache = KvCache::new(&ctx, &c, 64).unwrap();
    let step = step_params_buffer(&ctx);
    let target = rope.epilogue(&ctx, &step, None, &cache, 0).unwrap();
    let mut rng = Rng(5);
    let rows = c.q_dim() + 2 * c.kv_dim();
    let t = Tensor::random(GgmlType::Q8_0, rows as u64, 256, &mut rng);
    let w = GpuWeight::upload(&ctx, &t.info, &t.bytes).unwrap();
    let x = upload(&ctx, &[0.5; 256]);
    let q_out = upload(&ctx, &[0.0; 256]);
    let matvec = &matvecs(&ctx, &rope, GgmlType::Q8_0)[0];
    let (q, kv) = (c.q_dim(), c.kv_dim());
    let cases = [
        (
            "a route not at a head",
            vec![route(0, 32, 0), route(32, rows - 32, 32 + 1)],
        ),
        ("rows past v", vec![route(0, rows, 64)]),
        (
            "no route for some rows",
            vec![route(0, q, 0), route(q, kv, q)],
        ),
    ];
    for (what, routes) in cases {
        let err = matvec.op_rope_kv(
            &ctx,
            &w,
            MatVecInput::X(whole(&x)),
            &q_out,
            &routes,
            &target,
        );
        assert_eq!(
            err.err().map(|e| e.code()),
            Some("INVALID_ARGUMENT"),
            "{what}"
        );
    }
    // Biases where the model has none; a model with q/k norms.
    let bias = upload(&ctx, &vec![0.0; rows]);
    assert!(rope
        .epilogue(&ctx, &step, Some(whole(&bias)), &cache, 0)
        .is_err());
    let mut qwen3 = c.clone();
    qwen3.arch = &arch::QWEN3;
    let rope3 = pollster::block_on(Rope::new(&ctx, &qwen3, None, 64)).unwrap();
    assert!(!rope3.fits_epilogue(1));
    assert!(rope3.epilogue(&ctx, &step, None, &cache, 0).is_err());
}

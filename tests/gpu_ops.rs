//! The activation kernels (RMSNorm and its post-norm `+=` form, RoPE + biases + q/k norms + KV
//! append, attention with and without a sliding window, the SiLU and GELU gates) on the
//! machine's adapter (lavapipe in CI), each against a plain CPU f32 implementation of the math
//! of `reference.rs` on random data, at the default model's shapes (SmolLM2-135M: dim 576,
//! 9 heads over 3 KV heads of 64, FFN 1536, RoPE base 100000) and at awkward ones.
//!
//! The CPU side is written out here because `reference.rs` keeps its helpers private; each is
//! the same formula in the same f32 operation order as there.
//!
//! RoPE and attention run against both KV-cache element types: f32 (`ctx()`, opened without
//! shader-f16) and f16 (`ctx_f16()`, where the adapter has shader-f16: lavapipe does).

use std::sync::OnceLock;

mod common;
use common::gpu_read::{read, read_kv};

use llama_wgpu::arch::{self, Activation};
use llama_wgpu::config::{Config, RopeFactors, RopeScaling, RopeStyle};
use llama_wgpu::gpu::kernel::{range, storage_buffer, submit_ops, whole, Op};
use llama_wgpu::gpu::kernels::attention::{Attention, AttentionTuning};
use llama_wgpu::gpu::kernels::ffn::Ffn;
use llama_wgpu::gpu::kernels::norm::{NormVariant, RmsNorm};
use llama_wgpu::gpu::kernels::rope::{Rope, RopeExtras};
use llama_wgpu::gpu::kernels::{step_params_buffer, StepParams};
use llama_wgpu::gpu::kv_cache::{KvCache, KvElement};
use llama_wgpu::gpu::{GpuContext, GpuOptions};

/// The adapter without shader-f16: an f32 KV cache.
fn ctx() -> &'static GpuContext {
    static CTX: OnceLock<GpuContext> = OnceLock::new();
    CTX.get_or_init(|| {
        let options = GpuOptions {
            allow_f16: false,
            ..GpuOptions::default()
        };
        GpuContext::new_blocking(&options)
            .expect("a GPU adapter (lavapipe: apt mesa-vulkan-drivers)")
    })
}

/// The adapter with shader-f16 (an f16 KV cache), or None (said) where it lacks the feature.
fn ctx_f16() -> Option<&'static GpuContext> {
    static CTX: OnceLock<GpuContext> = OnceLock::new();
    let ctx = CTX.get_or_init(|| GpuContext::new_blocking(&GpuOptions::default()).unwrap());
    if !ctx.features.shader_f16 {
        eprintln!("SKIPPED: the adapter has no shader-f16, so no f16 KV cache to test");
        return None;
    }
    Some(ctx)
}

/// Both contexts the KV kernels run on.
fn kv_contexts() -> Vec<&'static GpuContext> {
    std::iter::once(ctx()).chain(ctx_f16()).collect()
}

/// How far a stored cache value may be from the f32 value written: nothing for f32; for f16,
/// WGSL lets the conversion take either neighbouring f16, so under one f16 ulp: 2^-10
/// relative, or 2^-24 absolute among the subnormals.
fn kv_rounding(cache: &KvCache, value: f32) -> f32 {
    match cache.element() {
        KvElement::F32 => 0.0,
        KvElement::F16 => value.abs() / 1024.0 + 6e-8,
    }
}

fn smollm2() -> Config {
    Config {
        arch: &arch::LLAMA,
        architecture: "llama".into(),
        n_embd: 576,
        n_layer: 2,
        n_head: 9,
        n_head_kv: 3,
        head_dim: 64,
        n_ff: 1536,
        n_vocab: 49152,
        context_length: 8192,
        rope_base: 100000.0,
        rope_base_swa: 100000.0,
        rope_dims: 64,
        rope_style: RopeStyle::Adjacent,
        rope_scaling: None,
        rope_factors: RopeFactors::None,
        rope_attn_factor: 1.0,
        rms_eps: 1e-5,
        attention_scale: 0.125,
        embedding_scale: 1.0,
        sliding_window: None,
        local_layers: vec![false; 2],
        tied_embeddings: true,
        pooling_type: None,
    }
}

/// xorshift64*: reproducible data without a dependency.
struct Rng(u64);

impl Rng {
    /// Uniform in [-scale, scale).
    fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n)
            .map(|_| {
                self.0 ^= self.0 >> 12;
                self.0 ^= self.0 << 25;
                self.0 ^= self.0 >> 27;
                let bits = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40;
                (bits as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
            })
            .collect()
    }
}

fn upload(ctx: &GpuContext, data: &[f32]) -> wgpu::Buffer {
    let buffer = storage_buffer(ctx, "test data", data.len() as u64 * 4);
    ctx.queue
        .write_buffer(&buffer, 0, bytemuck::cast_slice(data));
    buffer
}

fn step(ctx: &GpuContext, pos: usize, n_tokens: usize) -> wgpu::Buffer {
    let buffer = step_params_buffer(ctx);
    set_step(ctx, &buffer, pos, n_tokens);
    buffer
}

fn set_step(ctx: &GpuContext, buffer: &wgpu::Buffer, pos: usize, n_tokens: usize) {
    let params = StepParams {
        pos: pos as u32,
        n_tokens: n_tokens as u32,
        ..Default::default()
    };
    ctx.queue
        .write_buffer(buffer, 0, bytemuck::bytes_of(&params));
}

fn run(ctx: &GpuContext, ops: &[Op]) {
    submit_ops(ctx, &ops.iter().collect::<Vec<_>>());
}

/// Largest |gpu - cpu| / (|cpu| + floor) over all elements.
fn max_rel_err(gpu: &[f32], cpu: &[f32], floor: f32) -> f32 {
    assert_eq!(gpu.len(), cpu.len());
    gpu.iter()
        .zip(cpu)
        .map(|(g, c)| (g - c).abs() / (c.abs() + floor))
        .fold(0.0, f32::max)
}

// ---------------------------------------------------------------------------------------------
// RMSNorm

fn rmsnorm_cpu(x: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
    x.chunks_exact(w.len())
        .flat_map(|row| {
            let mean_square = row.iter().map(|v| v * v).sum::<f32>() / row.len() as f32;
            let scale = 1.0 / (mean_square + eps).sqrt();
            row.iter().zip(w).map(move |(&x, &w)| x * scale * w)
        })
        .collect()
}

#[test]
fn rmsnorm_matches_the_cpu_for_both_variants() {
    let ctx = ctx();
    let mut rng = Rng(1);
    let eps = 1e-5;
    for variant in [NormVariant::RowPerInvocation, NormVariant::RowPerWorkgroup] {
        let norm = pollster::block_on(RmsNorm::with_variant(ctx, eps, variant)).unwrap();
        // (dim, rows the op is made for, rows in the step): decode, a batch of 7 in an op made
        // for 8 (the 8th row must stay untouched), 70 rows (not a multiple of the 64 rows of a
        // workgroup) of a width not a multiple of the 256 invocations of a row.
        for (dim, max_tokens, n_tokens) in [(576, 1, 1), (576, 8, 7), (1000, 70, 70)] {
            let x = rng.vec(max_tokens * dim, 3.0);
            let w = rng.vec(dim, 1.5);
            let sentinel = vec![7.0f32; max_tokens * dim];
            let (xb, wb, ob) = (upload(ctx, &x), upload(ctx, &w), upload(ctx, &sentinel));
            let stepb = step(ctx, 0, n_tokens);
            let op = norm
                .op(
                    ctx,
                    &stepb,
                    whole(&xb),
                    whole(&wb),
                    whole(&ob),
                    dim,
                    max_tokens,
                )
                .unwrap();
            run(ctx, &[op]);
            let out = read(ctx, &ob, max_tokens * dim);
            let n = n_tokens * dim;
            let want = rmsnorm_cpu(&x[..n], &w, eps);
            // A sum of `dim` squares in f32 in another order differs by ~sqrt(dim) * 2^-24
            // relative (about 2e-6 at 1000 terms; n * 2^-24 = 6e-5 only if every rounding had
            // the same sign); the square root and two products add a few ulp. Measured here:
            // below 1e-6.
            let err = max_rel_err(&out[..n], &want, 1e-3);
            assert!(err < 1e-5, "{variant:?} dim {dim} rows {n_tokens}: {err}");
            assert!(out[n..].iter().all(|&v| v == 7.0), "rows past n_tokens");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// RoPE + KV append

/// `reference.rs`'s rotation of every head of `v` with `Config::rope`'s table (what both the
/// reference and the GPU read): angle = pos * freq_i, f32; cos and sin times mscale.
fn rope_cpu(c: &Config, rope_freqs: Option<&[f32]>, v: &mut [f32], pos: usize) -> Vec<f32> {
    let table = c.rope(1, rope_freqs).unwrap();
    let n_pairs = c.rope_dims / 2;
    let p = pos as f32;
    let mut angles = Vec::new();
    for head in v.chunks_exact_mut(c.head_dim) {
        for (i, &freq) in table.freqs.iter().enumerate() {
            let angle = p * freq;
            angles.push(angle);
            let (sin, cos) = angle.sin_cos();
            let (sin, cos) = (sin * table.mscale, cos * table.mscale);
            let (a, b) = match c.rope_style {
                RopeStyle::Adjacent => (2 * i, 2 * i + 1),
                RopeStyle::Half => (i, i + n_pairs),
            };
            let (x0, x1) = (head[a], head[b]);
            head[a] = x0 * cos - x1 * sin;
            head[b] = x0 * sin + x1 * cos;
        }
    }
    angles
}

/// What reaches RoPE: `x + bias`, then each head's RMSNorm times `norm` (when given), as
/// `reference.rs` does for qwen2 (bias) and qwen3/gemma3 (norms).
fn pre_rope_cpu(x: &mut [f32], bias: Option<&[f32]>, norm: Option<&[f32]>, eps: f32) {
    if let Some(b) = bias {
        x.iter_mut().zip(b).for_each(|(x, b)| *x += b);
    }
    if let Some(w) = norm {
        for head in x.chunks_exact_mut(w.len()) {
            let ms = head.iter().map(|v| v * v).sum::<f32>() / w.len() as f32;
            let scale = 1.0 / (ms + eps).sqrt();
            head.iter_mut()
                .zip(w)
                .for_each(|(x, w)| *x = *x * scale * w);
        }
    }
}

/// Positions the RoPE test writes: (pos, n_tokens).
const ROPE_CASES: [(usize, usize); 4] = [(0, 1), (37, 7), (1000, 1), (1001, 7)];

fn check_rope(c: &Config, rope_freqs: Option<&[f32]>, seed: u64) {
    for ctx in kv_contexts() {
        check_rope_on(ctx, c, rope_freqs, seed);
    }
}

fn check_rope_on(ctx: &GpuContext, c: &Config, rope_freqs: Option<&[f32]>, seed: u64) {
    let mut rng = Rng(seed);
    let context = 1024;
    let rope = pollster::block_on(Rope::new(ctx, c, rope_freqs, context)).unwrap();
    let cache = KvCache::new(ctx, c, context).unwrap();
    let (q_dim, kv_dim, max_tokens) = (c.q_dim(), c.kv_dim(), 8);
    let stepb = step(ctx, 0, 1);
    let (q, k, v) = (
        rng.vec(max_tokens * q_dim, 2.0),
        rng.vec(max_tokens * kv_dim, 2.0),
        rng.vec(max_tokens * kv_dim, 2.0),
    );
    // Biases of the size of the values; norm weights around 1.
    let bias = c.arch.qkv_bias.then(|| rng.vec(q_dim + 2 * kv_dim, 1.0));
    let norms = c.arch.qk_norm.then(|| {
        let mut w = || {
            rng.vec(c.head_dim, 0.5)
                .iter()
                .map(|v| 1.0 + v)
                .collect::<Vec<f32>>()
        };
        (w(), w())
    });
    let (bias_q, bias_kv) = match &bias {
        Some(b) => (Some(&b[..q_dim]), Some(&b[q_dim..])),
        None => (None, None),
    };
    let (qb, kb, vb) = (upload(ctx, &q), upload(ctx, &k), upload(ctx, &v));
    let q_out = upload(ctx, &vec![5.0; max_tokens * q_dim]);
    let bias_buffer = bias.as_ref().map(|b| upload(ctx, b));
    let norm_buffers = norms
        .as_ref()
        .map(|(a, b)| (upload(ctx, a), upload(ctx, b)));
    let layer = 1;
    let extras = RopeExtras {
        bias: bias_buffer.as_ref().map(whole),
        norms: norm_buffers.as_ref().map(|(a, b)| (whole(a), whole(b))),
    };
    let ops = rope
        .ops(
            ctx,
            &stepb,
            [whole(&qb), whole(&kb), whole(&vb)],
            whole(&q_out),
            extras,
            &cache,
            layer,
            max_tokens,
        )
        .unwrap();
    assert_eq!(ops.len(), 1);

    let (mut want_k, mut want_v) = (vec![0f32; context * kv_dim], vec![0f32; context * kv_dim]);
    let mut worst = (0f32, 0f32);
    let eps = c.rms_eps;
    for (pos, n_tokens) in ROPE_CASES {
        let unwritten = vec![5.0f32; max_tokens * q_dim];
        ctx.queue
            .write_buffer(&q_out, 0, bytemuck::cast_slice(&unwritten));
        set_step(ctx, &stepb, pos, n_tokens);
        run(ctx, &ops);
        let got_q = read(ctx, &q_out, max_tokens * q_dim);
        let mut want_q = q.clone();
        for t in 0..n_tokens {
            let p = pos + t;
            let wq = &mut want_q[t * q_dim..][..q_dim];
            pre_rope_cpu(wq, bias_q, norms.as_ref().map(|n| n.0.as_slice()), eps);
            let angles = rope_cpu(c, rope_freqs, wq, p);
            let kr = &mut want_k[p * kv_dim..][..kv_dim];
            kr.copy_from_slice(&k[t * kv_dim..][..kv_dim]);
            pre_rope_cpu(
                kr,
                bias_kv.map(|b| &b[..kv_dim]),
                norms.as_ref().map(|n| n.1.as_slice()),
                eps,
            );
            rope_cpu(c, rope_freqs, kr, p);
            let vr = &mut want_v[p * kv_dim..][..kv_dim];
            vr.copy_from_slice(&v[t * kv_dim..][..kv_dim]);
            pre_rope_cpu(vr, bias_kv.map(|b| &b[kv_dim..]), None, eps);
            let max_angle = angles.iter().copied().fold(0.0, f32::max);
            let got = &got_q[t * q_dim..][..q_dim];
            let err = got
                .iter()
                .zip(&want_q[t * q_dim..][..q_dim])
                .map(|(g, w)| (g - w).abs())
                .fold(0.0, f32::max);
            if err > worst.0 {
                worst = (err, max_angle);
            }
            assert!(
                err <= rope_tolerance(c),
                "q at position {p}: error {err} at angles up to {max_angle} rad"
            );
        }
        // Queries past n_tokens are not written.
        assert!(got_q[n_tokens * q_dim..].iter().all(|&x| x == 5.0));
        // Pass-through dimensions come out as they went in (plain copies without a norm).
        if c.arch == &arch::LLAMA {
            for (got, want) in got_q[..n_tokens * q_dim]
                .chunks_exact(c.head_dim)
                .zip(want_q.chunks_exact(c.head_dim))
            {
                assert_eq!(&got[c.rope_dims..], &want[c.rope_dims..]);
            }
        }
    }
    // The cache holds every position written above, and zeros elsewhere (other layers too).
    let got_k = read_kv(ctx, &cache, &cache.keys(layer)[0], context * kv_dim);
    let got_v = read_kv(ctx, &cache, &cache.values(layer)[0], context * kv_dim);
    for (i, (got, want)) in got_v.iter().zip(&want_v).enumerate() {
        // Values are copied (plus a bias: one f32 addition on both sides), to the nearest f16
        // in an f16 cache.
        let err = (got - want).abs();
        assert!(
            err <= kv_rounding(&cache, *want),
            "value {i}: {got} for {want}"
        );
    }
    for (p, (got, want)) in got_k
        .chunks_exact(kv_dim)
        .zip(want_k.chunks_exact(kv_dim))
        .enumerate()
    {
        for (g, w) in got.iter().zip(want) {
            let bound = rope_tolerance(c);
            let err = (g - w).abs();
            assert!(
                err <= bound + kv_rounding(&cache, w.abs() + bound),
                "k at position {p}: {g} for {w}"
            );
        }
    }
    assert!(read_kv(ctx, &cache, &cache.keys(0)[0], context * kv_dim)
        .iter()
        .all(|&v| v == 0.0));
    eprintln!(
        "rope {} {:?} dims {}/{}, {:?} cache: worst q error {:e} (at angles up to {} rad)",
        c.arch.name,
        c.rope_style,
        c.rope_dims,
        c.head_dim,
        cache.element(),
        worst.0,
        worst.1
    );
}

/// Largest |gpu - cpu| for values |x| <= 2 (a pair's length <= 2.9; up to ~6 with a bias or
/// after a norm whose weights reach 1.5) rotated by angles up to 1000 rad. Both sides round
/// the same f32 angle (the same product of the same table entry), the GPU reduces it to
/// [-pi, pi] with a two-constant 2 pi (error < 1e-7 rad for angles < 10^4) and takes sin/cos
/// there, where lavapipe's error is ~1e-7; a few ulp of the products remain: 4e-6 absolute
/// for pairs up to 2.9 long, twice that with biases or norms (the norm's own sum of squares
/// in another order adds ~1e-7 relative).
fn rope_tolerance(c: &Config) -> f32 {
    match c.arch.qkv_bias || c.arch.qk_norm {
        true => 8e-6 * c.rope_attn_factor.max(1.0),
        false => 4e-6 * c.rope_attn_factor.max(1.0),
    }
}

#[test]
fn rope_adjacent_at_default_shapes() {
    check_rope(&smollm2(), None, 2);
}

#[test]
fn rope_half_with_partial_dims_freqs_and_linear_scaling() {
    let mut c = smollm2();
    c.rope_style = RopeStyle::Half;
    check_rope(&c, None, 3);
    c.rope_dims = 32;
    check_rope(&c, None, 4);
    c.rope_style = RopeStyle::Adjacent;
    check_rope(&c, None, 5);
    c.rope_scaling = Some(RopeScaling::Linear { factor: 4.0 });
    c.rope_factors = RopeFactors::Freqs;
    let freqs: Vec<f32> = (0..16).map(|i| 1.0 + i as f32 * 0.37).collect();
    check_rope(&c, Some(&freqs), 6);
}

#[test]
fn rope_with_qkv_biases_qk_norms_and_yarn() {
    let mut c = smollm2();
    c.rope_style = RopeStyle::Half;
    // qwen2: biases on q, k and v.
    c.arch = &arch::QWEN2;
    check_rope(&c, None, 21);
    // qwen3 / gemma3: per-head norms, with head_dim 128 (more than one workgroup per head).
    c.arch = &arch::QWEN3;
    c.head_dim = 128;
    c.rope_dims = 128;
    c.n_head = 4;
    c.n_head_kv = 1;
    check_rope(&c, None, 22);
    // YaRN with an attention factor (cos and sin scaled).
    c.rope_scaling = Some(RopeScaling::Yarn {
        factor: 4.0,
        original_context: 256,
        beta_fast: 32.0,
        beta_slow: 1.0,
        ext_factor: 1.0,
    });
    c.rope_attn_factor = 1.2;
    check_rope(&c, None, 23);
}

// ---------------------------------------------------------------------------------------------
// Attention

/// `reference.rs`'s attention for token position `p` over cache rows 0..=p.
fn attention_cpu(c: &Config, q: &[f32], keys: &[f32], values: &[f32], p: usize) -> Vec<f32> {
    let (hd, kv_dim) = (c.head_dim, c.kv_dim());
    let group = c.n_head / c.n_head_kv;
    let scale = c.attention_scale;
    let first = c.window(0).map_or(0, |w| (p + 1).saturating_sub(w));
    let mut out = vec![0f32; c.q_dim()];
    for h in 0..c.n_head {
        let qh = &q[h * hd..][..hd];
        let kvo = (h / group) * hd;
        let mut scores: Vec<f32> = (first..=p)
            .map(|j| {
                let k = &keys[j * kv_dim + kvo..][..hd];
                qh.iter().zip(k).map(|(a, b)| a * b).sum::<f32>() * scale
            })
            .collect();
        let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0;
        for s in scores.iter_mut() {
            *s = (*s - max).exp();
            sum += *s;
        }
        let o = &mut out[h * hd..][..hd];
        for (j, s) in (first..).zip(&scores) {
            let v = &values[j * kv_dim + kvo..][..hd];
            for (o, v) in o.iter_mut().zip(v) {
                *o += s / sum * v;
            }
        }
    }
    out
}

/// Fill every layer-0 row of `cache` (all parts) with random keys and values, return them
/// (as stored: an f16 cache gets, and the CPU side sees, the values rounded to f16).
fn fill_cache(ctx: &GpuContext, cache: &KvCache, rng: &mut Rng) -> (Vec<f32>, Vec<f32>) {
    let n = cache.context_len() * cache.kv_dim();
    let (mut keys, mut values) = (rng.vec(n, 1.0), rng.vec(n, 1.0));
    let encode = |data: &mut [f32]| -> Vec<u8> {
        match cache.element() {
            KvElement::F32 => bytemuck::cast_slice(data).to_vec(),
            KvElement::F16 => data
                .iter_mut()
                .flat_map(|v| {
                    let h = half::f16::from_f32(*v);
                    *v = h.to_f32();
                    h.to_le_bytes()
                })
                .collect(),
        }
    };
    let row = cache.kv_dim();
    for (i, (kb, vb)) in cache.keys(0).iter().zip(cache.values(0)).enumerate() {
        let start = i * cache.rows_per_part() * row;
        let len = cache.part_rows(i) * row;
        ctx.queue
            .write_buffer(kb, 0, &encode(&mut keys[start..][..len]));
        ctx.queue
            .write_buffer(vb, 0, &encode(&mut values[start..][..len]));
    }
    (keys, values)
}

/// Attention at each (pos, n_tokens) against the CPU, with the whole cache filled (rows after
/// a token's position hold data, so a leak through the causal mask shows), for scratches of
/// the given chunk counts (None: the adapter's choice).
fn check_attention(
    ctx: &GpuContext,
    c: &Config,
    context: usize,
    cases: &[(usize, usize)],
    chunks: &[Option<usize>],
    seed: u64,
) -> usize {
    let mut rng = Rng(seed);
    let cache = KvCache::new(ctx, c, context).unwrap();
    let (keys, values) = fill_cache(ctx, &cache, &mut rng);
    let q_dim = c.q_dim();
    let max_tokens = cases.iter().map(|&(_, n)| n).max().unwrap();
    // Queries up to 4 in each element: scores reach ~|q||k|/8 ~ 10, so the softmax is peaked
    // and the running maximum of the online softmax changes often.
    let q = rng.vec(max_tokens * q_dim, 4.0);
    let want: Vec<Vec<f32>> = cases
        .iter()
        .map(|&(pos, n_tokens)| {
            (0..n_tokens)
                .flat_map(|t| attention_cpu(c, &q[t * q_dim..][..q_dim], &keys, &values, pos + t))
                .collect()
        })
        .collect();
    let qb = upload(ctx, &q);
    let ob = storage_buffer(ctx, "attention out", (max_tokens * q_dim) as u64 * 4);
    let stepb = step(ctx, 0, 1);
    for tuning in [AttentionTuning::CpuEmulator, AttentionTuning::Gpu] {
        let attention = pollster::block_on(Attention::with_tuning(ctx, c, tuning)).unwrap();
        for &max_chunks in chunks {
            let scratch = match max_chunks {
                None => attention.scratch(ctx, &cache, max_tokens).unwrap(),
                Some(n) => attention
                    .scratch_with_chunks(ctx, &cache, max_tokens, n)
                    .unwrap(),
            };
            let ops = attention
                .ops(
                    ctx,
                    &stepb,
                    whole(&qb),
                    &cache,
                    0,
                    &scratch,
                    whole(&ob),
                    c.window(0),
                )
                .unwrap();
            for (&(pos, n_tokens), want) in cases.iter().zip(&want) {
                set_step(ctx, &stepb, pos, n_tokens);
                // A one-token scratch has two forms; the step records what its position asks.
                let step_ops: Vec<Op> = ops
                    .iter()
                    .filter(|op| op.wanted(pos + 1))
                    .cloned()
                    .collect();
                let direct = step_ops.iter().any(|op| op.name == "attention_direct");
                assert_eq!(
                    direct,
                    max_tokens == 1 && pos < attention.direct_keys(&cache),
                    "{tuning:?}: the form at position {pos}"
                );
                run(ctx, &step_ops);
                let got = read(ctx, &ob, n_tokens * q_dim);
                // Outputs are weighted means of values in [-1, 1]. A score is a 64-term dot
                // product of size ~10 summed in another order (~1e-6 absolute); its exp is
                // then within a few ulp on both sides, and the combine rescales by exp of
                // differences of the same maxima. Measured: below 1e-6; bound 1e-5.
                for (t, (got, want)) in got.chunks(q_dim).zip(want.chunks(q_dim)).enumerate() {
                    let err = got
                        .iter()
                        .zip(want)
                        .map(|(g, w)| (g - w).abs())
                        .fold(0.0, f32::max);
                    assert!(
                        err < 1e-5,
                        "{tuning:?}, {:?} cache, chunks {max_chunks:?} ({} used), position {}: \
                         error {err}",
                        cache.element(),
                        scratch.max_chunks(),
                        pos + t
                    );
                }
            }
        }
    }
    cache.parts()
}

/// (pos, n_tokens)
const ATTENTION_CASES: [(usize, usize); 7] = [
    (0, 1),
    (0, 7),
    (1, 1),
    (37, 7),
    (1000, 1),
    (1000, 7),
    (2040, 7),
];

#[test]
fn attention_matches_the_cpu_at_short_and_long_positions() {
    let c = smollm2();
    // The adapter's chunking, one chunk (single pass of keys), and many short chunks.
    let chunks = [None, Some(1), Some(40)];
    for ctx in kv_contexts() {
        check_attention(ctx, &c, 2048, &ATTENTION_CASES, &chunks, 7);
    }
}

/// A decode step (one-token scratch) over few keys runs pass 1 alone, storing the normalized
/// output (the direct form); past `direct_keys` the split and the combine. Positions on both
/// sides of the switch, for both tunings, with and without a sliding window, and a cache in
/// parts (the direct form reads only the first).
#[test]
fn attention_direct_form_at_short_decode_positions() {
    let cases = [
        (0, 1),
        (1, 1),
        (30, 1),
        (31, 1),
        (32, 1),
        (63, 1),
        (64, 1),
        (65, 1),
        (300, 1),
    ];
    let mut c = smollm2();
    for ctx in kv_contexts() {
        check_attention(ctx, &c, 512, &cases, &[None, Some(1), Some(40)], 21);
    }
    c.sliding_window = Some(20);
    c.local_layers = vec![true, false];
    c.attention_scale = 0.2;
    check_attention(ctx(), &c, 512, &cases, &[None], 22);
}

/// lavapipe silently ends a shader's loops after 65535 iterations in all: one invocation must
/// not walk more keys than that, even when asked for one chunk.
#[test]
fn attention_through_a_sliding_window() {
    // gemma3's local layers: query p sees keys p - window + 1 ..= p. Windows shorter than one
    // chunk, spanning several, and one the positions never exceed; a scale not 1/sqrt(64).
    let mut c = smollm2();
    c.attention_scale = 0.2;
    for window in [5, 100, 4000] {
        c.sliding_window = Some(window);
        c.local_layers = vec![true, false];
        let chunks = [None, Some(1), Some(40)];
        for ctx in kv_contexts() {
            check_attention(ctx, &c, 2048, &ATTENTION_CASES, &chunks, 17);
        }
    }
}

#[test]
fn attention_past_the_longest_chunk() {
    let c = smollm2();
    check_attention(ctx(), &c, 66048, &[(66000, 2)], &[Some(1)], 13);
}

#[test]
fn attention_with_heads_of_128_grouped_by_4_and_ungrouped() {
    // Groups of 4 heads of 128: the emulator tuning serves all 4 in one invocation, the GPU
    // tuning one; then no grouping at all.
    let mut c = smollm2();
    c.head_dim = 128;
    for (n_head, n_head_kv) in [(8, 2), (4, 4)] {
        c.n_head = n_head;
        c.n_head_kv = n_head_kv;
        for ctx in kv_contexts() {
            check_attention(
                ctx,
                &c,
                300,
                &[(0, 3), (20, 5), (290, 2)],
                &[None, Some(3)],
                8,
            );
        }
    }
}

#[test]
fn kv_cache_split_across_bindings() {
    // 256 KiB bindings hold 341 rows of 192 values: a 1100-position cache takes four parts,
    // and a batch at 1020..1026 crosses from the third into the fourth.
    let options = GpuOptions {
        max_binding_size: Some(256 * 1024),
        allow_f16: false,
        ..GpuOptions::default()
    };
    let ctx = GpuContext::new_blocking(&options).unwrap();
    let c = smollm2();
    let cases = [(0, 1), (340, 3), (1020, 7), (1092, 1)];
    let parts = check_attention(&ctx, &c, 1100, &cases, &[None, Some(2)], 9);
    assert_eq!(parts, 4);
    // Decode steps: the direct form reads the first part only, the split all four.
    let decode = [(0, 1), (40, 1), (63, 1), (64, 1), (400, 1), (1092, 1)];
    check_attention(&ctx, &c, 1100, &decode, &[None], 10);

    // RoPE writes each position into its part.
    let cache = KvCache::new(&ctx, &c, 1100).unwrap();
    assert_eq!(cache.bytes(), 2 * 2 * 1100 * 192 * 4);
    let rope = pollster::block_on(Rope::new(&ctx, &c, None, 1100)).unwrap();
    let mut rng = Rng(10);
    let (q, k, v) = (
        rng.vec(7 * 576, 1.0),
        rng.vec(7 * 192, 1.0),
        rng.vec(7 * 192, 1.0),
    );
    let (qb, kb, vb) = (upload(&ctx, &q), upload(&ctx, &k), upload(&ctx, &v));
    let stepb = step(&ctx, 1020, 7);
    let q_out = storage_buffer(&ctx, "q out", 7 * 576 * 4);
    let no_extras = RopeExtras {
        bias: None,
        norms: None,
    };
    let ops = rope
        .ops(
            &ctx,
            &stepb,
            [whole(&qb), whole(&kb), whole(&vb)],
            whole(&q_out),
            no_extras,
            &cache,
            0,
            7,
        )
        .unwrap();
    assert_eq!(ops.len(), 4);
    run(&ctx, &ops);
    let part2 = read(&ctx, &cache.values(0)[2], 341 * 192);
    let part3 = read(&ctx, &cache.values(0)[3], 77 * 192);
    assert_eq!(&part2[(1020 - 682) * 192..], &v[..3 * 192]);
    assert_eq!(&part3[..4 * 192], &v[3 * 192..]);
    assert!(part3[4 * 192..].iter().all(|&x| x == 0.0));
    // q is rotated once, not once per part.
    let mut want_q = q[..576].to_vec();
    rope_cpu(&c, None, &mut want_q, 1020);
    let got_q = read(&ctx, &q_out, 576);
    assert!(max_rel_err(&got_q, &want_q, 1.0) < 1e-5);

    // Not even one row (192 values: 384 bytes in f16, 768 in f32) fits: the model is too
    // large for this adapter.
    let tiny = GpuOptions {
        max_binding_size: Some(256),
        ..GpuOptions::default()
    };
    let tiny = GpuContext::new_blocking(&tiny).unwrap();
    let err = KvCache::new(&tiny, &c, 16).err().unwrap();
    assert_eq!(err.code(), "MODEL_TOO_LARGE");
}

// ---------------------------------------------------------------------------------------------
// SiLU gate and residual add

#[test]
fn silu_and_gelu_gates_match_the_cpu() {
    let ctx = ctx();
    let silu = |x: f32| x / (1.0 + (-x).exp());
    // GELU (tanh approximation) by its definition, in f64 and rounded once.
    let gelu = |x: f32| {
        let x = x as f64;
        let y = (2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x);
        (0.5 * x * (1.0 + y.tanh())) as f32
    };
    for (activation, act) in [
        (Activation::Silu, &silu as &dyn Fn(f32) -> f32),
        (Activation::GeluTanh, &gelu),
    ] {
        let ffn = pollster::block_on(Ffn::new(ctx, activation)).unwrap();
        let mut rng = Rng(11);
        // Widths: the FFN, the model, and one not a multiple of the 256-invocation workgroup.
        for (width, max_tokens, n_tokens) in [(1536, 1, 1), (576, 8, 7), (1000, 7, 7)] {
            let n = max_tokens * width;
            // Gates up to 12: GELU's tanh saturates and its exp(2y) overflows to inf there.
            let (gate, up) = (rng.vec(n, 12.0), rng.vec(n, 2.0));
            let stepb = step(ctx, 5, n_tokens);
            let want: Vec<f32> = gate.iter().zip(&up).map(|(&g, &u)| act(g) * u).collect();
            let used = n_tokens * width;

            // In place: gate = act(gate) * up.
            let (gb, ub) = (upload(ctx, &gate), upload(ctx, &up));
            let op = ffn
                .gate(ctx, &stepb, whole(&gb), whole(&ub), width, max_tokens)
                .unwrap();
            run(ctx, &[op]);
            let got = read(ctx, &gb, n);
            // exp in f32 is within a few ulp on the GPU (WGSL allows 3 + 2|x| ulp: at most 2e-6
            // relative for SiLU's |x| <= 12; GELU's exponent 2y reaches ~60, 123 ulp = 1.5e-5),
            // the rest are single correctly rounded operations. Bounds 4e-6 and 2e-5, relative
            // to values of at least 1e-3.
            let err = max_rel_err(&got[..used], &want[..used], 1e-3);
            let bound = match activation {
                Activation::Silu => 4e-6,
                Activation::GeluTanh => 2e-5,
            };
            assert!(err < bound, "{activation:?} width {width}: {err}");
            assert!(got.iter().all(|v| v.is_finite()));
            assert_eq!(&got[used..], &gate[used..]);
        }
    }
}

#[test]
fn post_norm_adds_into_the_residual() {
    // x += rmsnorm(y) * w (gemma3's post_attention_norm / post_ffw_norm).
    let ctx = ctx();
    let mut rng = Rng(31);
    for variant in [NormVariant::RowPerInvocation, NormVariant::RowPerWorkgroup] {
        let norm = pollster::block_on(RmsNorm::with_variant_and_add(ctx, 1e-6, variant)).unwrap();
        let (dim, max_tokens, n_tokens) = (640, 4, 3);
        let (x, y, w) = (
            rng.vec(dim * max_tokens, 3.0),
            rng.vec(dim * max_tokens, 2.0),
            rng.vec(dim, 1.0),
        );
        let (xb, yb, wb) = (upload(ctx, &x), upload(ctx, &y), upload(ctx, &w));
        let stepb = step(ctx, 0, n_tokens);
        let op = norm
            .op_add(
                ctx,
                &stepb,
                whole(&yb),
                whole(&wb),
                whole(&xb),
                dim,
                max_tokens,
            )
            .unwrap();
        run(ctx, &[op]);
        let got = read(ctx, &xb, dim * max_tokens);
        let n = n_tokens * dim;
        let normed = rmsnorm_cpu(&y[..n], &w, 1e-6);
        let want: Vec<f32> = x[..n].iter().zip(&normed).map(|(a, b)| a + b).collect();
        // The norm's bound above (1e-5 relative on the normed values, which reach ~6 here),
        // then one addition: 1e-4 absolute.
        let err = got[..n]
            .iter()
            .zip(&want)
            .map(|(g, w)| (g - w).abs())
            .fold(0.0, f32::max);
        assert!(err < 1e-4, "{variant:?}: {err}");
        assert_eq!(&got[n..], &x[n..], "rows past n_tokens");
    }
}

// ---------------------------------------------------------------------------------------------
// Shape errors

#[test]
fn wrong_shapes_are_errors_not_panics() {
    let ctx = ctx();
    let c = smollm2();
    let stepb = step(ctx, 0, 1);
    let small = storage_buffer(ctx, "small", 100 * 4);
    let big = storage_buffer(ctx, "big", 8 * 1536 * 4);
    let big2 = storage_buffer(ctx, "big2", 8 * 1536 * 4);
    let invalid = |r: llama_wgpu::Result<Op>| r.err().unwrap().code();

    let norm = pollster::block_on(RmsNorm::new(ctx, &c)).unwrap();
    let op = norm.op(
        ctx,
        &stepb,
        whole(&big),
        whole(&small),
        whole(&big2),
        576,
        1,
    );
    assert_eq!(invalid(op), "INVALID_ARGUMENT", "weight too short");
    let op = norm.op(ctx, &stepb, whole(&big), whole(&big), whole(&big), 576, 1);
    assert_eq!(invalid(op), "INVALID_ARGUMENT", "in place");
    let op = norm.op(ctx, &big, whole(&big), whole(&big), whole(&big2), 576, 1);
    assert_eq!(invalid(op), "INVALID_ARGUMENT", "step is not a uniform");
    let op = norm.op(
        ctx,
        &stepb,
        range(&big, 4, 4096),
        whole(&big),
        whole(&big2),
        576,
        1,
    );
    assert_eq!(invalid(op), "INVALID_ARGUMENT", "misaligned offset");
    let op = norm.op(ctx, &stepb, whole(&big), whole(&big), whole(&big2), 576, 0);
    assert_eq!(invalid(op), "INVALID_ARGUMENT", "no tokens");

    let ffn = pollster::block_on(Ffn::new(ctx, Activation::Silu)).unwrap();
    let op = ffn.gate(ctx, &stepb, whole(&big), whole(&small), 1536, 1);
    assert_eq!(invalid(op), "INVALID_ARGUMENT");
    // A norm without the `+=` pipeline (an architecture without post-norms).
    let op = norm.op_add(ctx, &stepb, whole(&big), whole(&big2), whole(&small), 64, 1);
    assert_eq!(invalid(op), "INVALID_ARGUMENT");

    let cache = KvCache::new(ctx, &c, 16).unwrap();
    let rope = pollster::block_on(Rope::new(ctx, &c, None, 16)).unwrap();
    let q_out = storage_buffer(ctx, "q out", 576 * 4);
    let ops = |q, bias: Option<&wgpu::Buffer>, layer| {
        let extras = RopeExtras {
            bias: bias.map(whole),
            norms: None,
        };
        rope.ops(
            ctx,
            &stepb,
            [q, whole(&big2), whole(&big2)],
            whole(&q_out),
            extras,
            &cache,
            layer,
            1,
        )
        .err()
        .unwrap()
        .code()
    };
    assert_eq!(ops(whole(&small), None, 0), "INVALID_ARGUMENT");
    assert_eq!(
        ops(whole(&big), Some(&small), 0),
        "INVALID_ARGUMENT",
        "a bias llama lacks"
    );
    assert_eq!(ops(whole(&big), None, 2), "INVALID_ARGUMENT");
    assert_eq!(
        ops(whole(&q_out), None, 0),
        "INVALID_ARGUMENT",
        "q in place"
    );
    // Factors for a model without them.
    let factors = [1.0; 32];
    let err = pollster::block_on(Rope::new(ctx, &c, Some(&factors), 16))
        .err()
        .unwrap();
    assert_eq!(err.code(), "INVALID_ARGUMENT");

    let attention = pollster::block_on(Attention::new(ctx, &c)).unwrap();
    let scratch = attention.scratch(ctx, &cache, 1).unwrap();
    let op = attention.ops(
        ctx,
        &stepb,
        whole(&small),
        &cache,
        0,
        &scratch,
        whole(&big),
        None,
    );
    assert_eq!(op.err().unwrap().code(), "INVALID_ARGUMENT");
    ctx.check().unwrap();
}

// ---------------------------------------------------------------------------------------------
// Timings (not a test of speed: run by hand with `-- --ignored --nocapture`)

#[test]
#[ignore]
fn decode_op_timings() {
    let ctx = ctx();
    let c = smollm2();
    eprintln!("adapter: {}", ctx.describe());
    let mut rng = Rng(12);
    let buf = |n: usize, rng: &mut Rng| upload(ctx, &rng.vec(n, 1.0));
    let (x, w, out) = (buf(576, &mut rng), buf(576, &mut rng), buf(576, &mut rng));
    let (q, k, v) = (buf(576, &mut rng), buf(192, &mut rng), buf(192, &mut rng));
    let (gate, up, att) = (buf(1536, &mut rng), buf(1536, &mut rng), buf(576, &mut rng));
    let cache = KvCache::new(ctx, &c, 8192).unwrap();
    fill_cache(ctx, &cache, &mut rng);
    let stepb = step(ctx, 0, 1);

    let rows = pollster::block_on(RmsNorm::with_variant(
        ctx,
        1e-5,
        NormVariant::RowPerInvocation,
    ))
    .unwrap();
    let tree = pollster::block_on(RmsNorm::with_variant(
        ctx,
        1e-5,
        NormVariant::RowPerWorkgroup,
    ))
    .unwrap();
    let rope = pollster::block_on(Rope::new(ctx, &c, None, 8192)).unwrap();
    let attention = pollster::block_on(Attention::new(ctx, &c)).unwrap();
    let gpu_tuned =
        pollster::block_on(Attention::with_tuning(ctx, &c, AttentionTuning::Gpu)).unwrap();
    let ffn = pollster::block_on(Ffn::new(ctx, Activation::Silu)).unwrap();
    let scratch = attention.scratch(ctx, &cache, 1).unwrap();
    let one = attention.scratch_with_chunks(ctx, &cache, 1, 1).unwrap();
    let gpu_scratch = gpu_tuned.scratch(ctx, &cache, 1).unwrap();
    let gpu_attn = |pos| {
        (
            format!("attention pos {pos}, GPU tuning"),
            pos,
            gpu_tuned
                .ops(
                    ctx,
                    &stepb,
                    whole(&q),
                    &cache,
                    0,
                    &gpu_scratch,
                    whole(&att),
                    None,
                )
                .unwrap(),
        )
    };

    let norm_op = |n: &RmsNorm| {
        vec![n
            .op(ctx, &stepb, whole(&x), whole(&w), whole(&out), 576, 1)
            .unwrap()]
    };
    let attn = |s| {
        attention
            .ops(ctx, &stepb, whole(&q), &cache, 0, s, whole(&att), None)
            .unwrap()
    };
    let extras = RopeExtras {
        bias: None,
        norms: None,
    };
    let rope_ops = rope
        .ops(
            ctx,
            &stepb,
            [whole(&q), whole(&k), whole(&v)],
            whole(&out),
            extras,
            &cache,
            0,
            1,
        )
        .unwrap();
    let silu_op = vec![ffn
        .gate(ctx, &stepb, whole(&gate), whole(&up), 1536, 1)
        .unwrap()];
    let cases: Vec<(String, usize, Vec<Op>)> = vec![
        ("rmsnorm (row per invocation)".into(), 0, norm_op(&rows)),
        ("rmsnorm (row per workgroup)".into(), 0, norm_op(&tree)),
        ("rope + kv append".into(), 1000, rope_ops),
        ("silu_mul 1536".into(), 0, silu_op),
        ("attention pos 0".into(), 0, attn(&scratch)),
        ("attention pos 1000".into(), 1000, attn(&scratch)),
        ("attention pos 1000, 1 chunk".into(), 1000, attn(&one)),
        ("attention pos 8000".into(), 8000, attn(&scratch)),
        ("attention pos 8000, 1 chunk".into(), 8000, attn(&one)),
        gpu_attn(1000),
        gpu_attn(8000),
    ];
    let reps = 200;
    for (name, pos, ops) in &cases {
        set_step(ctx, &stepb, *pos, 1);
        let mut times = Vec::new();
        for _ in 0..5 {
            let step = || ops.iter().filter(|op| op.wanted(pos + 1));
            let all: Vec<&Op> = (0..reps).flat_map(|_| step()).collect();
            let start = std::time::Instant::now();
            submit_ops(ctx, &all);
            ctx.device
                .poll(wgpu::PollType::wait_indefinitely())
                .unwrap();
            times.push(start.elapsed().as_secs_f64() / reps as f64);
        }
        // The fastest of five: other work on the machine only ever adds time.
        let best = times.into_iter().fold(f64::MAX, f64::min);
        eprintln!(
            "{name:32} {} dispatch(es): {:8.1} us",
            ops.len(),
            best * 1e6
        );
    }
}

// RoPE for one layer of a batch, fused with the KV-cache append.
//
// Token t of the batch sits at position p = step.pos + t. One invocation owns one pair of one
// head of one token: for query heads it rotates q in place; for KV heads it rotates k and
// writes the result into the key cache at row p, and copies the same two elements of v into
// the value cache. Pairs at and past rope_dims are passed through unrotated.
//
// Cache rows live in parts of part_len positions (one buffer each, see rope.rs); this dispatch
// writes only the rows of the part it is bound to, and rotates q only when rotate_q is set (in
// the op of the first part), so each element is written exactly once.
//
// The angle of pair i is (p * position_scale) * freq(i), multiplied in the same order as the
// CPU reference so that both round the same f32 angle, then reduced to [-pi, pi] here: WGSL
// only bounds the error of sin/cos inside that range, and at p ~ 1000 the angle is ~1000 rad.

struct Step { pos: u32, n_tokens: u32, sample_step: u32, pad: u32 }
struct Params {
    n_head: u32,
    n_head_kv: u32,
    head_dim: u32,
    rope_dims: u32,
    half_style: u32,
    rotate_q: u32,
    part_start: u32,
    part_len: u32,
    position_scale: f32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> params: Params;
// base^(-2i / rope_dims), computed once on the CPU as the reference computes it.
@group(0) @binding(2) var<storage, read> inv_freq: array<f32>;
@group(0) @binding(3) var<storage, read_write> q: array<f32>;
// Only read, but declared read_write: q, k and v may be ranges of one buffer (the stacked QKV
// projection's output), and a buffer may not be bound both read-only and writable in one pass.
@group(0) @binding(4) var<storage, read_write> k: array<f32>;
@group(0) @binding(5) var<storage, read_write> v: array<f32>;
// f32, or f16 where the adapter has shader-f16 (rope.rs, KvElement).
@group(0) @binding(6) var<storage, read_write> k_cache: array<{{KV}}>;
@group(0) @binding(7) var<storage, read_write> v_cache: array<{{KV}}>;
{{ROPE_FREQS_BINDING}}

fn freq(i: u32) -> f32 {
    return {{FREQ}};
}

// 2 pi split so that k * TWO_PI_HI is exact in f32 for k < 2^16 (6.28125 has 8 significant bits).
const TWO_PI_HI: f32 = 6.28125;
const TWO_PI_LO: f32 = 0.0019353071795864769;
const INV_TWO_PI: f32 = 0.15915494309189535;
// pi / 2 split the same way (1.5703125 has 8 significant bits), for the quadrant reduction.
const HALF_PI_HI: f32 = 1.5703125;
const HALF_PI_LO: f32 = 0.00048382679489661923;
const TWO_OVER_PI: f32 = 0.6366197723675814;

// sin and cos on [-pi/4, pi/4] by their Taylor series to degree 11 and 10: the first omitted
// terms are below 3e-8, half an f32 ulp of 1. Not the builtins: WGSL bounds their error only
// by 2^-11 absolute, and SwiftShader (Chrome's WebGPU without a GPU) comes close to that,
// which moved a small model's logits by ~1e-3 against the CPU reference.
fn sin_near_zero(y: f32) -> f32 {
    let y2 = y * y;
    return y * (1.0 + y2 * (-1.6666667e-1 + y2 * (8.3333333e-3 + y2 * (-1.9841270e-4
        + y2 * (2.7557319e-6 + y2 * -2.5052108e-8)))));
}

fn cos_near_zero(y: f32) -> f32 {
    let y2 = y * y;
    return 1.0 + y2 * (-0.5 + y2 * (4.1666667e-2 + y2 * (-1.3888889e-3 + y2 * (2.4801587e-5
        + y2 * -2.7557319e-7))));
}

// (cos, sin) of theta: reduced to [-pi, pi] (Cody-Waite), then to a quadrant and the series.
fn cos_sin(theta: f32) -> vec2<f32> {
    let n = round(theta * INV_TWO_PI);
    let r = (theta - n * TWO_PI_HI) - n * TWO_PI_LO;
    let quadrant = round(r * TWO_OVER_PI);
    let y = (r - quadrant * HALF_PI_HI) - quadrant * HALF_PI_LO;
    let c = cos_near_zero(y);
    let s = sin_near_zero(y);
    // r = y + quadrant * pi/2 with quadrant in -2..2.
    switch (i32(quadrant) + 4) % 4 {
        case 1: { return vec2<f32>(-s, c); }
        case 2: { return vec2<f32>(-c, -s); }
        case 3: { return vec2<f32>(s, -c); }
        default: { return vec2<f32>(c, s); }
    }
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    let t = id.y;
    let half_head = params.head_dim / 2u;
    let head = id.x / half_head;
    let j = id.x % half_head;
    if (t >= step.n_tokens || head >= params.n_head + params.n_head_kv) {
        return;
    }
    let p = step.pos + t;
    let n_pairs = params.rope_dims / 2u;
    let rotated = j < n_pairs;
    // Elements of the pair; pass-through pairs (j >= n_pairs) are (2j, 2j+1) in both styles.
    var a = 2u * j;
    var b = a + 1u;
    if (rotated && params.half_style != 0u) {
        a = j;
        b = j + n_pairs;
    }
    var cs = vec2<f32>(1.0, 0.0);
    if (rotated) {
        cs = cos_sin((f32(p) * params.position_scale) * freq(j));
    }

    if (head < params.n_head) {
        if (params.rotate_q == 0u || !rotated) {
            return;
        }
        let o = (t * params.n_head + head) * params.head_dim;
        let x0 = q[o + a];
        let x1 = q[o + b];
        q[o + a] = x0 * cs.x - x1 * cs.y;
        q[o + b] = x0 * cs.y + x1 * cs.x;
        return;
    }

    if (p < params.part_start || p - params.part_start >= params.part_len) {
        return;
    }
    let kv_dim = params.n_head_kv * params.head_dim;
    let kh = head - params.n_head;
    let src = t * kv_dim + kh * params.head_dim;
    let dst = (p - params.part_start) * kv_dim + kh * params.head_dim;
    let x0 = k[src + a];
    let x1 = k[src + b];
    k_cache[dst + a] = {{KV}}(x0 * cs.x - x1 * cs.y);
    k_cache[dst + b] = {{KV}}(x0 * cs.y + x1 * cs.x);
    v_cache[dst + 2u * j] = {{KV}}(v[src + 2u * j]);
    v_cache[dst + 2u * j + 1u] = {{KV}}(v[src + 2u * j + 1u]);
}

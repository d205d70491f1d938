// RoPE for one layer of a batch, fused with the q/k/v bias, the per-head q/k RMSNorm and the
// KV-cache append.
//
// Token t of the batch sits at position p = step.pos + t. One invocation owns one pair of one
// head of one token. For query heads it writes the rotated pair to q_out; for KV heads it
// writes the rotated pair of k into the key cache at row p, and the same two elements of v
// into the value cache. Before rotating, a value is src + bias (qwen2) and, where the model has
// q/k norms (qwen3, gemma3), multiplied by its head's 1 / sqrt(mean(square) + eps) and the
// norm weight; each invocation sums its head's squares itself (head_dim reads), which is why q
// goes to a buffer of its own rather than being rotated in place. Pairs at and past rope_dims
// pass through unrotated.
//
// Cache rows live in parts of part_len positions (one buffer each, see rope.rs); this dispatch
// writes only the rows of the part it is bound to, and writes q only when rotate_q is set (in
// the op of the first part), so each element is written exactly once.
//
// The angle of pair i is p * freqs[i] (the table folds in every scaling: Config::rope), the
// same f32 product the CPU reference rounds, then reduced to [-pi, pi] here: WGSL only bounds
// the error of sin/cos inside that range, and at p ~ 1000 the angle is ~1000 rad. cos and sin
// are multiplied by mscale (YaRN / LongRoPE attention factor).

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
    mscale: f32,
    eps: f32,
    pad0: u32,
    pad1: u32,
}

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> params: Params;
// The frequency of each rotated pair (rope_dims / 2), made once on the CPU as the reference
// makes it.
@group(0) @binding(2) var<storage, read> freqs: array<f32>;
// q, k and v may be ranges of one buffer (the stacked QKV projection's output), and a buffer
// may not be bound both read-only and writable in one pass: all three are declared read_write.
@group(0) @binding(3) var<storage, read_write> q: array<f32>;
@group(0) @binding(4) var<storage, read_write> k: array<f32>;
@group(0) @binding(5) var<storage, read_write> v: array<f32>;
// f32, or f16 where the adapter has shader-f16 (rope.rs, KvElement).
@group(0) @binding(6) var<storage, read_write> k_cache: array<{{KV}}>;
@group(0) @binding(7) var<storage, read_write> v_cache: array<{{KV}}>;
@group(0) @binding(8) var<storage, read_write> q_out: array<f32>;
{{EXTRA_BINDINGS}}

// Element i of the q | k | v bias (zero without biases).
fn bias(i: u32) -> f32 {
    {{BIAS}}
}

// Element i of the q (is_q) or k norm weight (one without norms).
fn norm_weight(is_q: bool, i: u32) -> f32 {
    {{NORM_WEIGHT}}
}

const QK_NORM: bool = {{QK_NORM}};

// cos_sin(theta): rope_angle.wgsl, pasted in front of this file (rope.rs).

// Source element i of head `head` (query heads first, then KV heads) of token t, bias added.
fn source(t: u32, head: u32, i: u32) -> f32 {
    let hd = params.head_dim;
    if (head < params.n_head) {
        return q[(t * params.n_head + head) * hd + i] + bias(head * hd + i);
    }
    let kh = head - params.n_head;
    let kv_dim = params.n_head_kv * hd;
    return k[t * kv_dim + kh * hd + i] + bias(params.n_head * hd + kh * hd + i);
}

// What multiplies every element of the head before its norm weight: its RMSNorm scale, or 1.
fn head_scale(t: u32, head: u32) -> f32 {
    if (!QK_NORM) {
        return 1.0;
    }
    var s = 0.0;
    for (var i = 0u; i < params.head_dim; i++) {
        let x = source(t, head, i);
        s += x * x;
    }
    return inverseSqrt(s / f32(params.head_dim) + params.eps);
}

@compute @workgroup_size({{WG}})
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
        cs = cos_sin(f32(p) * freqs[j]) * params.mscale;
    }
    let is_q = head < params.n_head;
    if (is_q && params.rotate_q == 0u) {
        return;
    }
    if (!is_q && (p < params.part_start || p - params.part_start >= params.part_len)) {
        return;
    }
    let scale = head_scale(t, head);
    let x0 = source(t, head, a) * scale * norm_weight(is_q, a);
    let x1 = source(t, head, b) * scale * norm_weight(is_q, b);
    let r0 = x0 * cs.x - x1 * cs.y;
    let r1 = x0 * cs.y + x1 * cs.x;

    if (is_q) {
        let o = (t * params.n_head + head) * params.head_dim;
        q_out[o + a] = r0;
        q_out[o + b] = r1;
        return;
    }
    let kv_dim = params.n_head_kv * params.head_dim;
    let kh = head - params.n_head;
    let src = t * kv_dim + kh * params.head_dim;
    let dst = (p - params.part_start) * kv_dim + kh * params.head_dim;
    let vb = params.n_head * params.head_dim + kv_dim + kh * params.head_dim;
    k_cache[dst + a] = {{KV}}(r0);
    k_cache[dst + b] = {{KV}}(r1);
    v_cache[dst + 2u * j] = {{KV}}(v[src + 2u * j] + bias(vb + 2u * j));
    v_cache[dst + 2u * j + 1u] = {{KV}}(v[src + 2u * j + 1u] + bias(vb + 2u * j + 1u));
}

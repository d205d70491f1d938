// The q/k/v projection's epilogue (matvec_rope.rs): instead of writing the raw rows, add the
// bias (qwen2), rotate q and k by RoPE at the step's position and write q to y (the rotated-q
// buffer) and k and v straight into this layer's KV cache row `step.pos`: what rope.wgsl does
// as a dispatch of its own, for one token and without the per-head q/k norms (those need a
// whole head's rows before the rotation, which no invocation here has).
//
// The routes (Params, out_index) map this part's rows to q | k | v coordinates: q at 0, k at
// q_dim, v at q_dim + kv_dim (the bias's layout too). The weight holds whole heads from row 0,
// so row slot s of the driver is remapped (slot_row) such that slots 2P and 2P + 1 are the two
// rows of rotation pair P: each invocation's 4 (or 8) slots start at a multiple of 4 and hold
// whole pairs, and rotates them in registers. v rows are paired too and copied unrotated.
//
// The angle and its cos/sin are rope.wgsl's (rope_angle.wgsl), from the same frequency table.

struct Step { pos: u32, n_tokens: u32, sample_step: u32, pad: u32 }
struct RopeKv {
    n_head: u32,
    n_head_kv: u32,
    head_dim: u32,
    rope_dims: u32,
    half_style: u32,
    mscale: f32,
    pad0: u32,
    pad1: u32,
    // The frequency of rotated pair j at freqs[j / 4][j % 4] (Config::rope).
    freqs: array<vec4<f32>, {{FREQ_VEC4S}}>,
}

@group(0) @binding(5) var<uniform> step: Step;
@group(0) @binding(8) var<uniform> rope: RopeKv;
// f32, or f16 where the adapter has shader-f16 (rope.rs, KvElement).
@group(0) @binding(9) var<storage, read_write> k_cache: array<{{KV}}>;
@group(0) @binding(10) var<storage, read_write> v_cache: array<{{KV}}>;
{{BIAS_BINDING}}

// Element i of the q | k | v bias (zero without biases).
fn bias(i: u32) -> f32 {
    {{BIAS}}
}

// The pair index P = s / 2 of slot s is (head, j): NeoX pairs (j, j + rope_dims / 2) for the
// rotated ones, adjacent (2j, 2j + 1) otherwise, as rope.wgsl pairs them.
fn slot_row(s: u32) -> u32 {
    let half_head = rope.head_dim / 2u;
    let pair = s / 2u;
    let j = pair % half_head;
    let n_pairs = rope.rope_dims / 2u;
    var e = 2u * j + (s & 1u);
    if (rope.half_style != 0u && j < n_pairs) {
        e = j + (s & 1u) * n_pairs;
    }
    return (pair / half_head) * rope.head_dim + e;
}

fn write_rows(first: u32, sums: vec4<f32>) {
    write_pair(first, sums.xy);
    write_pair(first + 2u, sums.zw);
}

// Slots s and s + 1: one pair. The part has an even number of rows (whole heads), so both or
// neither are past its end.
fn write_pair(s: u32, sums: vec2<f32>) {
    if (s >= params.rows) {
        return;
    }
    let i0 = out_index(0u, slot_row(s));
    let i1 = out_index(0u, slot_row(s + 1u));
    let x0 = sums.x + bias(i0);
    let x1 = sums.y + bias(i1);
    let q_dim = rope.n_head * rope.head_dim;
    let kv_dim = rope.n_head_kv * rope.head_dim;
    let row = step.pos * kv_dim;
    if (i0 >= q_dim + kv_dim) {
        v_cache[row + i0 - q_dim - kv_dim] = {{KV}}(x0);
        v_cache[row + i1 - q_dim - kv_dim] = {{KV}}(x1);
        return;
    }
    let j = (s / 2u) % (rope.head_dim / 2u);
    var cs = vec2<f32>(1.0, 0.0);
    if (j < rope.rope_dims / 2u) {
        cs = cos_sin(f32(step.pos) * rope.freqs[j / 4u][j % 4u]) * rope.mscale;
    }
    let r0 = x0 * cs.x - x1 * cs.y;
    let r1 = x0 * cs.y + x1 * cs.x;
    if (i0 < q_dim) {
        y[i0] = r0;
        y[i1] = r1;
        return;
    }
    k_cache[row + i0 - q_dim] = {{KV}}(r0);
    k_cache[row + i1 - q_dim] = {{KV}}(r1);
}

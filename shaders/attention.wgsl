// Attention, pass 1 of 2: partial results over chunks of the cached keys (split-K).
//
// Token t of the batch (position p = step.pos + t) attends to keys 0..=p, or in a
// sliding-window layer (window > 0) to the last `window` of them, p - window + 1 ..= p; the keys
// of the batch itself are already in the cache (rope.wgsl wrote them), so the causal mask
// inside the batch is just this bound. Query head h reads KV head h / group.
//
// The keys visible in the bound cache part are cut into at most max_chunks chunks of at least
// min_chunk keys. One invocation walks one chunk for HEADS query heads that share one KV head,
// so each key and value row is read once for all of them (decode attention is bound by reading
// the cache), with an online softmax per head: running maximum m, running sum l, accumulator a,
// rescaled by exp(m_old - m_new) at every key (1 unless the maximum grew: no divergent branch).
// It writes (a, m, l) to its slot; attention_combine.wgsl merges the slots. No barriers: each
// invocation works alone, which CPU emulators need, and the chunks give a long context's single
// decode token enough invocations on a real GPU.
//
// The loops over the head dimension are unrolled by attention.rs (the INIT, SCORES, ACCUMULATE
// and STORE placeholders below), so that queries and accumulators live in registers:
// q{g}_{d}, a{g}_{d} are vec4 d of query head h0 + g and of its accumulator, k{d} and v{d}
// vec4 d of the key and value row. On lavapipe this is 3x faster than loops over private
// arrays, and it keeps the key loop the only loop: lavapipe silently leaves a shader's loops
// after 65535 iterations in all (attention.rs bounds the chunk length accordingly).

struct Step { pos: u32, n_tokens: u32, sample_step: u32, pad: u32 }
struct Params {
    n_head: u32,
    group: u32,
    kv_dim: u32,
    part_start: u32,
    part_len: u32,
    max_chunks: u32,
    min_chunk: u32,
    slot_base: u32,
    n_slots: u32,
    scale: f32,
    window: u32,
    pad1: u32,
}

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> params: Params;
@group(0) @binding(2) var<storage, read> q: array<vec4<f32>>;
// f32, or f16 where the adapter has shader-f16 (rope.rs, KvElement); read as vec4<f32>.
@group(0) @binding(3) var<storage, read> k_cache: array<vec4<{{KV}}>>;
@group(0) @binding(4) var<storage, read> v_cache: array<vec4<{{KV}}>>;
// [n_tokens][n_head][n_slots][HEAD_VEC4 + 1]: the accumulator, then (m, l, 0, 0). In the direct
// form (attention.rs: a decode step over few keys, one chunk), the output [n_head][HEAD_VEC4],
// normalized: no combine pass follows.
@group(0) @binding(5) var<storage, read_write> partials: array<vec4<f32>>;

const HEAD_VEC4: u32 = {{HEAD_DIM}}u / 4u;
const HEADS: u32 = {{HEADS}}u;
const SLOT: u32 = HEAD_VEC4 + 1u;

// The keys a token that sees `visible` keys (0 .. visible) reads from the cache part starting
// at `part_start` with `part_len` rows, with a sliding `window` (0: none): part-local
// [x, y), empty when y <= x.
fn seen_keys(visible: u32, part_start: u32, part_len: u32, window: u32) -> vec2<u32> {
    var first = 0u;
    if (window > 0u && visible > window) {
        first = visible - window;
    }
    let lo = max(first, part_start);
    let hi = min(visible, part_start + part_len);
    if (hi <= lo) {
        return vec2<u32>(0u, 0u);
    }
    return vec2<u32>(lo - part_start, hi - part_start);
}

@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    let t = id.y;
    let h0 = (id.x / params.max_chunks) * HEADS;
    let c = id.x % params.max_chunks;
    if (t >= step.n_tokens || h0 >= params.n_head) {
        return;
    }
    // The keys seen, part-local: [first, last); the same rule as attention_combine.wgsl.
    let seen = seen_keys(step.pos + t + 1u, params.part_start, params.part_len, params.window);
    let len = seen.y - seen.x;
    if (seen.y <= seen.x) {
        return;
    }
    let chunk = max(params.min_chunk, (len + params.max_chunks - 1u) / params.max_chunks);
    let start = seen.x + c * chunk;
    if (start >= seen.y) {
        return;
    }
    let end = min(start + chunk, seen.y);

    let qo = (t * params.n_head + h0) * HEAD_VEC4;
{{INIT}}
    let kv_vec4 = params.kv_dim / 4u;
    let head_offset = (h0 / params.group) * HEAD_VEC4;
    for (var j = start; j < end; j++) {
        let row = j * kv_vec4 + head_offset;
{{SCORES}}
{{ACCUMULATE}}
    }
    let slot = (t * params.n_head + h0) * params.n_slots + params.slot_base + c;
{{STORE}}
}

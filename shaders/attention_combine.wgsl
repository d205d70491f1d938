// Attention, pass 2 of 2: merge the chunk results of attention.wgsl into the output.
//
// One invocation per (token, query head, output element). Slot s of a head holds
// (acc_s, m_s, l_s) with acc_s = sum_j exp(score_j - m_s) v_j over its chunk and
// l_s = sum_j exp(score_j - m_s); with M = max_s m_s,
//     out = sum_s exp(m_s - M) acc_s / sum_s exp(m_s - M) l_s.
// Which slots were written follows from the position alone, by the rule of attention.wgsl.

struct Step { pos: u32, n_tokens: u32, sample_step: u32, pad: u32 }
struct Params {
    n_head: u32,
    n_parts: u32,
    part_len: u32,
    max_chunks: u32,
    min_chunk: u32,
    n_slots: u32,
    window: u32,
    pad1: u32,
}

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> params: Params;
@group(0) @binding(2) var<storage, read> partials: array<f32>;
// [n_tokens][n_head * HEAD_DIM]
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

const HEAD_DIM: u32 = {{HEAD_DIM}}u;
// A slot of attention.wgsl: HEAD_DIM accumulator values, then m, l and two unused values.
const SLOT: u32 = HEAD_DIM + 4u;

// Chunks written in cache part `part` for a token that sees `visible` keys (the rule of
// attention.wgsl, whose seen_keys this repeats).
fn chunks(visible: u32, part: u32) -> u32 {
    let part_start = part * params.part_len;
    var first = 0u;
    if (params.window > 0u && visible > params.window) {
        first = visible - params.window;
    }
    let lo = max(first, part_start);
    let hi = min(visible, part_start + params.part_len);
    if (hi <= lo) {
        return 0u;
    }
    let len = hi - lo;
    let chunk = max(params.min_chunk, (len + params.max_chunks - 1u) / params.max_chunks);
    return (len + chunk - 1u) / chunk;
}

@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    let t = id.y;
    let h = id.x / HEAD_DIM;
    let d = id.x % HEAD_DIM;
    if (t >= step.n_tokens || h >= params.n_head) {
        return;
    }
    let visible = step.pos + t + 1u;
    let head = (t * params.n_head + h) * params.n_slots;
    var m = -3.0e38;
    for (var part = 0u; part < params.n_parts; part++) {
        let n = chunks(visible, part);
        for (var c = 0u; c < n; c++) {
            m = max(m, partials[(head + part * params.max_chunks + c) * SLOT + HEAD_DIM]);
        }
    }
    var l = 0.0;
    var acc = 0.0;
    for (var part = 0u; part < params.n_parts; part++) {
        let n = chunks(visible, part);
        for (var c = 0u; c < n; c++) {
            let o = (head + part * params.max_chunks + c) * SLOT;
            let e = exp(partials[o + HEAD_DIM] - m);
            l += e * partials[o + HEAD_DIM + 1u];
            acc += e * partials[o + d];
        }
    }
    out[(t * params.n_head + h) * HEAD_DIM + d] = acc / l;
}

// Sampling, pass 1 of 2 (many workgroups; pass 2 is sample_pick.wgsl).
//
// Each workgroup takes CHUNK consecutive logits and
//   1. applies the repetition penalty: the ids of the history window (the last repeat_last_n
//      ids of the ring in `history`) that fall in the chunk are marked in a workgroup bitset, so
//      a repeated id is penalized once, exactly like the CPU's "once per distinct recent token";
//      a marked logit l becomes l / penalty if l > 0, else l * penalty (the division is
//      correctly rounded on lavapipe; WGSL lets a GPU be 2.5 ulp off, which could only matter
//      for a logit that exactly ties another);
//   2. with a response format's mask, makes each id it leaves out -inf (zero probability);
//   3. turns each (penalized, NaN -> -inf) logit into its order-preserving u32 key and stores it
//      in `keys` (not in greedy mode, where pass 2 needs only the maximum);
//   4. writes the chunk's best (key, id) to partials[chunk]: the largest key, the lowest id among
//      equal keys (the CPU's greedy tie rule).
// Two workgroup barriers for the bitset (only with a penalty) and two for the reduction. The host
// picks the shape: 256 invocations x 4 logits on GPUs, 8 x 64 on CPU adapters (where a
// workgroup is one SIMD group and barriers are costly).

const WG: u32 = {{WG}}u;
const PER: u32 = {{PER}}u;
const CHUNK: u32 = WG * PER;
// The reduction runs in GROUPS groups of WG / GROUPS invocations.
const GROUPS: u32 = {{GROUPS}}u;

@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<uniform> params: SampleParams;
// history[0]: ids appended so far; history[1 + j % history_cap]: the j-th id.
@group(0) @binding(2) var<storage, read> history: array<u32>;
@group(0) @binding(3) var<storage, read_write> keys: array<u32>;
@group(0) @binding(4) var<storage, read_write> partials: array<vec2<u32>>;
// A bit per id: allowed (read only when params.masked is 1).
@group(0) @binding(5) var<storage, read> mask: array<u32>;

var<workgroup> marks: array<atomic<u32>, CHUNK / 32u>;
var<workgroup> red_key: array<u32, WG>;
var<workgroup> red_id: array<u32, WG>;
var<workgroup> red2_key: array<u32, GROUPS>;
var<workgroup> red2_id: array<u32, GROUPS>;

// (key a, id a) comes first in the CPU's order: larger logit, then lower id.
fn before(ka: u32, ia: u32, kb: u32, ib: u32) -> bool {
    return ka > kb || (ka == kb && ia < ib);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let base = wg.x * CHUNK;
    let end = min(base + CHUNK, params.n_vocab);
    let penalize = params.repeat_last_n > 0u;
    if (penalize) {
        for (var w = lid; w < CHUNK / 32u; w += WG) {
            atomicStore(&marks[w], 0u);
        }
        workgroupBarrier();
        let count = history[0];
        let window = min(min(count, params.repeat_last_n), params.history_cap);
        for (var j = lid; j < window; j += WG) {
            let t = history[1u + (count - window + j) % params.history_cap];
            if (t >= base && t < end) {
                atomicOr(&marks[(t - base) / 32u], 1u << ((t - base) % 32u));
            }
        }
        workgroupBarrier();
    }

    let store = params.temperature > 0.0;
    var best_key = 0u;
    var best_id = 0xffffffffu;
    for (var r = 0u; r < PER; r++) {
        let i = base + r * WG + lid;
        if (i < end) {
            var bits = sanitize(bitcast<u32>(logits[i]));
            if (penalize) {
                let o = i - base;
                if ((atomicLoad(&marks[o / 32u]) & (1u << (o % 32u))) != 0u) {
                    let l = bitcast<f32>(bits);
                    let p = params.repeat_penalty;
                    bits = bitcast<u32>(select(l * p, l / p, l > 0.0));
                }
            }
            if (params.masked != 0u && (mask[i / 32u] & (1u << (i % 32u))) == 0u) {
                bits = NEG_INF_BITS;
            }
            let key = to_key(bits);
            if (store) {
                keys[i] = key;
            }
            // Ids rise with r, so ">" keeps the lowest id among equal keys.
            if (key > best_key) {
                best_key = key;
                best_id = i;
            }
        }
    }

    red_key[lid] = best_key;
    red_id[lid] = best_id;
    workgroupBarrier();
    if (lid < GROUPS) {
        var k = 0u;
        var id = 0xffffffffu;
        for (var j = lid * (WG / GROUPS); j < (lid + 1u) * (WG / GROUPS); j++) {
            if (before(red_key[j], red_id[j], k, id)) {
                k = red_key[j];
                id = red_id[j];
            }
        }
        red2_key[lid] = k;
        red2_id[lid] = id;
    }
    workgroupBarrier();
    if (lid == 0u) {
        var k = 0u;
        var id = 0xffffffffu;
        for (var j = 0u; j < GROUPS; j++) {
            if (before(red2_key[j], red2_id[j], k, id)) {
                k = red2_key[j];
                id = red2_id[j];
            }
        }
        partials[wg.x] = vec2<u32>(k, id);
    }
}

// Sampling, pass 1 of 2 (one workgroup per CHUNK logits; pass 2 is sample_pick.wgsl): each
// logit as `Sampler::candidates` (src/sampler/mod.rs) makes it, stored as its key (key 0 if masked),
// and the chunk's best (key, id) in partials[chunk] (lowest id among equal keys: greedy's rule).
// The window's counts are workgroup atomics (integer adds: order-free); the bias list is sorted
// by id, so a workgroup binary-searches the start of its range. Shape (host): 256 x 4 logits on
// GPUs, 8 x 64 on CPU adapters (one SIMD group: barriers there are costly).

const WG: u32 = {{WG}}u;
const PER: u32 = {{PER}}u;
const CHUNK: u32 = WG * PER;
const GROUPS: u32 = {{GROUPS}}u;

@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<uniform> params: SampleParams;
// history[0]: ids appended so far; history[1 + j % history_cap]: the j-th id.
@group(0) @binding(2) var<storage, read> history: array<u32>;
@group(0) @binding(3) var<storage, read_write> keys: array<u32>;
@group(0) @binding(4) var<storage, read_write> partials: array<vec2<u32>>;
@group(0) @binding(5) var<storage, read> mask: array<u32>;  // a bit per id: allowed
@group(0) @binding(6) var<storage, read> bias: array<vec2<u32>>;  // (id, bits), ids ascending

var<workgroup> counts: array<atomic<u32>, CHUNK>;
var<workgroup> biases: array<f32, CHUNK>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let base = wg.x * CHUNK;
    let end = min(base + CHUNK, params.n_vocab);
    let adjust = params.window > 0u || params.n_bias > 0u;
    if (adjust) {
        for (var o = lid; o < CHUNK; o += WG) {
            atomicStore(&counts[o], 0u);
            biases[o] = -0.0;  // x + -0 is x for every x, -0 included
        }
        workgroupBarrier();
        let count = history[0];
        let window = min(min(count, params.window), params.history_cap);
        for (var j = lid; j < window; j += WG) {
            let t = history[1u + (count - window + j) % params.history_cap];
            if (t >= base && t < end) { atomicAdd(&counts[t - base], 1u); }
        }
        var lo = 0u;
        var hi = params.n_bias;
        while (lo < hi) {
            let mid = (lo + hi) / 2u;
            if (bias[mid].x < base) { lo = mid + 1u; } else { hi = mid; }
        }
        for (var j = lo + lid; j < params.n_bias && bias[j].x < end; j += WG) {
            biases[bias[j].x - base] = bitcast<f32>(bias[j].y);
        }
        workgroupBarrier();
    }

    var best = vec2<u32>(0u, NO_ID);
    for (var r = 0u; r < PER; r++) {
        let i = base + r * WG + lid;
        if (i < end) {
            var l = bitcast<f32>(sanitize(bitcast<u32>(logits[i])));
            if (adjust) {
                l += biases[i - base];
                let c = atomicLoad(&counts[i - base]);
                if (c > 0u) {
                    // Correctly rounded on lavapipe; a GPU may be 2.5 ulp off (WGSL's bound).
                    let p = params.repeat_penalty;
                    l = select(l * p, l / p, l > 0.0);
                    l -= f32(c) * params.frequency_penalty + params.presence_penalty;
                }
            }
            let allowed = params.masked == 0u || (mask[i / 32u] & (1u << (i % 32u))) != 0u;
            let key = select(0u, to_key(bitcast<u32>(l)), allowed);
            // Greedy needs only the bests (and logprobs all keys).
            if (params.temperature > 0.0 || params.logprobs != 0u) { keys[i] = key; }
            // Ids rise with r, so ">" keeps the lowest id among equal keys.
            if (key > best.x) { best = vec2<u32>(key, i); }
        }
    }
    let top = workgroup_best(lid, best);
    if (lid == 0u) { partials[wg.x] = top; }
}

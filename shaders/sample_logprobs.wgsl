// Logprobs of the drawn token and of the `top_logprobs` most likely ones (`crate::logprobs`,
// src/logprobs.rs), after sample_keys.wgsl and sample_pick.wgsl, only when a request asks for
// them. One workgroup, each invocation over a strip of ids:
// 1. M, the largest key, from pass 1's chunk bests.
// 2. log_sum = log(sum of exp(l - M)) over the candidates (key 0 is masked: not one), in strip
//    sums added in a fixed order.
// 3. T, the n-th largest key, by a radix search of 4 bits a level on counts (integer atomics:
//    order-free); the output takes every key above T and the lowest ids of those equal to T.
// The host sorts the few (id, key) written and turns keys into logprobs with M and log_sum.

const WG: u32 = {{WG}}u;
const GROUPS: u32 = 16u;
const RADIX: u32 = 16u;
const MAX_TOP: u32 = 20u;  // logprobs::MAX_TOP_LOGPROBS

// Read back by `GpuSampler::read_logprobs` (`LogprobsOut` in src/gpu/kernels/sample.rs).
struct LogprobsOut {
    best_key: u32,
    log_sum: f32,
    chosen_id: u32,
    chosen_key: u32,
    count: atomic<u32>,  // entries of `top` written
    _pad: u32,
    top: array<vec2<u32>, MAX_TOP>,  // (id, key), in no order
}

@group(0) @binding(0) var<storage, read> keys: array<u32>;
@group(0) @binding(1) var<storage, read> partials: array<vec2<u32>>;
@group(0) @binding(2) var<uniform> params: SampleParams;
@group(0) @binding(3) var<storage, read> drawn: array<u32>;  // [0]: the id sample_pick drew
@group(0) @binding(4) var<storage, read_write> out: LogprobsOut;

var<workgroup> sums: array<f32, WG>;
var<workgroup> buckets: array<atomic<u32>, RADIX>;
var<workgroup> ties_before: array<u32, WG>;
var<workgroup> n_top: u32;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32) {
    var b = vec2<u32>(0u, NO_ID);
    for (var i = lid; i < params.n_partials; i += WG) {
        if (before(partials[i], b)) { b = partials[i]; }
    }
    let best = workgroup_best(lid, b).x;
    let m = key_to_f32(best);
    let strip = (params.n_vocab + WG - 1u) / WG;
    let start = min(lid * strip, params.n_vocab);
    let end = min(start + strip, params.n_vocab);

    var strip_sum = 0.0;
    var n_cands = 0u;
    for (var i = start; i < end; i++) {
        let key = keys[i];
        if (key != 0u) {
            strip_sum += select(exp(key_to_f32(key) - m), 1.0, key == best);
            n_cands++;
        }
    }
    sums[lid] = strip_sum;
    if (lid < RADIX) { atomicStore(&buckets[lid], 0u); }
    if (lid == 0u) { atomicStore(&out.count, 0u); }
    workgroupBarrier();
    if (lid == 0u) {
        var total = 0.0;
        for (var i = 0u; i < WG; i++) { total += sums[i]; }
        let id = drawn[0];
        out.best_key = best;
        out.log_sum = log(total);
        out.chosen_id = id;
        out.chosen_key = select(0u, keys[id], id < params.n_vocab);
    }
    // Every invocation's candidate count, summed: n is at most that.
    atomicAdd(&buckets[0], n_cands);
    workgroupBarrier();
    if (lid == 0u) { n_top = min(params.top_logprobs, atomicLoad(&buckets[0])); }
    let n = workgroupUniformLoad(&n_top);
    if (n == 0u) { return; }

    // The search: `prefix` holds the digits found so far, `above` counts the keys above it.
    var prefix = 0u;
    var above = 0u;
    for (var level = 0u; level < 8u; level++) {
        let shift = 28u - 4u * level;
        if (lid < RADIX) { atomicStore(&buckets[lid], 0u); }
        workgroupBarrier();
        let high = ~((RADIX << shift) - 1u);
        // An initializer, not a bare `var h: ...;`: in Chrome (Tint, SwiftShader) a loop body's
        // uninitialised var kept the previous iteration's counts (tests/web_sampler.rs).
        var h = array<u32, RADIX>();
        for (var i = start; i < end; i++) {
            let key = keys[i];
            if (key != 0u && (key & high) == prefix) { h[(key >> shift) % RADIX]++; }
        }
        for (var d = 0u; d < RADIX; d++) {
            if (h[d] > 0u) { atomicAdd(&buckets[d], h[d]); }
        }
        workgroupBarrier();
        // The highest digit whose bucket brings the count to n (the candidates under the prefix
        // number at least n - above, so one does).
        var digit = 0u;
        for (var d = RADIX - 1u; d > 0u; d--) {
            let c = atomicLoad(&buckets[d]);
            if (above + c >= n) {
                digit = d;
                break;
            }
            above += c;
        }
        prefix |= digit << shift;
        workgroupBarrier();
    }
    // prefix is now T: `above` keys exceed it and at least n - above equal it.

    var ties = 0u;
    for (var i = start; i < end; i++) { ties += u32(keys[i] == prefix); }
    ties_before[lid] = ties;
    workgroupBarrier();
    if (lid == 0u) {
        var total = 0u;
        for (var i = 0u; i < WG; i++) {
            let t = ties_before[i];
            ties_before[i] = total;
            total += t;
        }
    }
    workgroupBarrier();
    var tie = ties_before[lid];
    for (var i = start; i < end; i++) {
        let key = keys[i];
        let take = key > prefix || (key == prefix && tie < n - above);
        tie += u32(key == prefix);
        if (take) { out.top[atomicAdd(&out.count, 1u)] = vec2<u32>(i, key); }
    }
}

// Sampling, pass 2 of 2: one workgroup draws the id from pass 1's keys with the distribution of
// the CPU sampler (`Sampler::kept` and `sample`, src/sampler/mod.rs), without sorting, in
// fixed-order f32 sums (no float atomics: the same id every run, on a given device):
// 1. The best of pass 1's chunk bests: greedy's answer; its logit M is the largest.
// 2. Each invocation copies the (key, id) of its strip of ids that may be kept to its part of
//    `cands`: key above -inf and, when top_k <= the number of chunks, at least the k-th largest
//    chunk best (top_k keys reach it, so the top-k cut is above it).
// 3. Each filter keeps {key >= cut} (ties never split). Top-k and top-p find their cut by a radix
//    search, 4 bits a level: each invocation sums its candidates under the digits found so far
//    into 16 private buckets (and keeps those keys in `playing` for the next level: after the
//    exponent's digits few remain), the buckets are added in a fixed order, and the level takes the
//    highest digit whose bucket brings the running sum to the target (none: digit 0, the whole
//    bucket). Top-k sums 1 per key (exact) up to top_k; top-p sums exp(l - M) over the top-k
//    set up to top_p times its total.
// 4. The draw, in id order: strip sums of exp((l - M) / T) over kept candidates (min-p:
//    exp(l - M) >= min_p), a scan of them by invocation 0, and the strip where the scan crosses
//    u * total walked with the same additions, so the walk crosses too, at a positive weight.
// CPU adapters run a workgroup as SIMD groups of 8 lanes on one thread: each loop around a
// barrier costs (both searches share one), and lavapipe silently stops a SIMD group after 65535
// loop iterations per dispatch: strips are n_vocab / WG ids; the worst case (16 levels over full
// strips) is ~24k iterations at n_vocab 262144.

const WG: u32 = {{WG}}u;
const HALF: u32 = WG / 2u;
const GROUPS: u32 = 16u;
const RADIX: u32 = 16u;
const LEVELS: u32 = 8u;  // 4-bit digits of a u32 key

@group(0) @binding(0) var<storage, read> keys: array<u32>;
@group(0) @binding(1) var<storage, read> partials: array<vec2<u32>>;
@group(0) @binding(2) var<uniform> params: SampleParams;
@group(0) @binding(3) var<uniform> step_params: StepParams;
@group(0) @binding(4) var<storage, read_write> history: array<u32>;
@group(0) @binding(5) var<storage, read_write> tokens_out: array<u32>;
@group(0) @binding(6) var<storage, read_write> ids_out: array<u32>;
@group(0) @binding(7) var<storage, read_write> cands: array<vec2<u32>>;  // strip i from i * strip
@group(0) @binding(8) var<storage, read_write> playing: array<u32>;  // keys still in play, alike

// A level's buckets per pair of invocations; then the strip sums and the sums before them.
var<workgroup> sums: array<f32, HALF * RADIX>;
var<workgroup> buckets: array<f32, RADIX>;
var<workgroup> lowest_key: atomic<u32>;
var<workgroup> draw_target: f32;
var<workgroup> drawn: u32;

// The id goes where the next step's embedding reads it, to the CPU's read-back slot and to the
// history ring.
fn emit(id: u32) {
    tokens_out[0] = id;
    ids_out[step_params.sample_step % arrayLength(&ids_out)] = id;
    let count = history[0];
    history[1u + count % params.history_cap] = id;
    history[0] = count + 1u;
}

// A candidate's weight in the draw: exp((l - M) / T) if kept, else 0.
fn weight(key: u32, cut: u32, m: f32) -> f32 {
    let d = key_to_f32(key) - m;
    return select(0.0, exp(d / params.temperature), key >= cut && exp(d) >= params.min_p);
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32) {
    var b = vec2<u32>(0u, NO_ID);
    for (var i = lid; i < params.n_partials; i += WG) {
        if (before(partials[i], b)) { b = partials[i]; }
    }
    if (lid == 0u) { atomicStore(&lowest_key, KEY_NEG_INF + 1u); }
    let top = workgroup_best(lid, b);
    let best_id = select(top.y, 0u, top.y == NO_ID);  // nothing allowed: id 0, as on the CPU
    if (params.temperature == 0.0) {
        if (lid == 0u) { emit(best_id); }
        return;
    }
    let m = key_to_f32(top.x);

    let k = select(0u, params.top_k, params.top_k < params.n_vocab);
    if (k > 0u && k <= params.n_partials) {
        for (var i = lid; i < params.n_partials; i += WG) {
            let key = partials[i].x;
            var above = 0u;
            var reached = 0u;
            for (var q = 0u; q < params.n_partials; q++) {
                above += u32(partials[q].x > key);
                reached += u32(partials[q].x >= key);
            }
            if (above < k && k <= reached) { atomicMax(&lowest_key, key); }
        }
    }
    workgroupBarrier();
    let strip = (params.n_vocab + WG - 1u) / WG;
    let start = lid * strip;
    var cut = atomicLoad(&lowest_key);
    var n = 0u;
    for (var i = start; i < min(start + strip, params.n_vocab); i++) {
        if (keys[i] >= cut) {
            cands[start + n] = vec2<u32>(keys[i], i);
            n++;
        }
    }

    var n_active = 0u;
    var prefix = 0u;  // the digits found so far
    var above = 0.0;  // the sum over candidates above the prefix's bucket
    var goal = 0.0;
    for (var level = 0u; level < 2u * LEVELS; level++) {  // top-k's levels, then top-p's
        let counting = level < LEVELS;
        if (select(params.top_p >= 1.0, k == 0u, counting)) { continue; }
        let shift = 28u - 4u * (level % LEVELS);
        if (level % LEVELS == 0u) {
            prefix = 0u;
            above = 0.0;
        }
        let high = ~((RADIX << shift) - 1u);  // the bits above this digit
        // A search's first level reads all candidates, the next ones only those left in play.
        let first = level % LEVELS == 0u;
        // An initializer, not a bare `var h: ...;`: in Chrome (Tint, SwiftShader) a loop body's
        // uninitialised var kept the previous iteration's counts (tests/web_sampler.rs).
        var h = array<f32, RADIX>();
        var in_play = 0u;
        for (var j = 0u; j < select(n_active, n, first); j++) {
            let key = select(playing[start + j], cands[start + j].x, first);
            if (key >= cut && (key & high) == prefix) {
                playing[start + in_play] = key;
                in_play++;
                h[(key >> shift) % RADIX] += select(exp(key_to_f32(key) - m), 1.0, counting);
            }
        }
        n_active = in_play;
        if (lid >= HALF) {
            for (var d = 0u; d < RADIX; d++) { sums[(lid - HALF) * RADIX + d] = h[d]; }
        }
        workgroupBarrier();
        if (lid < HALF) {
            for (var d = 0u; d < RADIX; d++) { sums[lid * RADIX + d] += h[d]; }
        }
        workgroupBarrier();
        if (lid < RADIX) {
            var total = 0.0;
            for (var r = 0u; r < HALF; r++) { total += sums[r * RADIX + lid]; }
            buckets[lid] = total;
        }
        workgroupBarrier();
        if (level % LEVELS == 0u) {
            var total = 0.0;
            for (var d = 0u; d < RADIX; d++) { total += buckets[d]; }
            goal = select(params.top_p * total, f32(k), counting);
        }
        var digit = 0u;
        for (var d = RADIX - 1u; d > 0u && digit == 0u; d--) {
            if (above + buckets[d] >= goal) { digit = d; } else { above += buckets[d]; }
        }
        prefix |= digit << shift;
        if (level % LEVELS == LEVELS - 1u) { cut = max(cut, prefix); }
        workgroupBarrier();
    }

    var strip_sum = 0.0;
    for (var j = 0u; j < n; j++) { strip_sum += weight(cands[start + j].x, cut, m); }
    sums[lid] = strip_sum;
    workgroupBarrier();
    if (lid == 0u) {
        var total = 0.0;
        for (var i = 0u; i < WG; i++) {
            sums[WG + i] = total;
            total += sums[i];
        }
        draw_target = uniform01(params.seed_lo, params.seed_hi, 0u, step_params.sample_step) * total;
        drawn = best_id;
    }
    workgroupBarrier();
    let before_strip = sums[WG + lid];
    if (before_strip <= draw_target && before_strip + strip_sum > draw_target) {
        var partial = 0.0;
        var id = NO_ID;
        var last = best_id;  // only if a compiler summed the walk unlike the strip sum
        for (var j = 0u; j < n; j++) {
            let w = weight(cands[start + j].x, cut, m);
            partial += w;
            if (w > 0.0) { last = cands[start + j].y; }
            if (id == NO_ID && before_strip + partial > draw_target) { id = cands[start + j].y; }
        }
        drawn = select(id, last, id == NO_ID);
    }
    workgroupBarrier();
    // A largest logit that is not finite is greedy, as on the CPU.
    if (lid == 0u) { emit(select(best_id, drawn, top.x > KEY_NEG_INF && top.x < KEY_POS_INF)); }
}

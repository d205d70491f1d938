// Sampling, pass 2 of 2: one workgroup turns the keys of pass 1 (sample_keys.wgsl) into the
// sampled id, reproducing the CPU sampler (src/sampler.rs) operation by operation:
//
//   repetition penalty (pass 1) -> top-k -> softmax -> top-p -> min-p -> temperature ->
//   softmax -> draw with u = uniform(seed, step)
//
// The CPU sorts the candidates by (logit descending, id ascending) and walks the sorted list
// with sequential f32 sums. Those sums matter: over 49152 terms, f32 addition drops or rounds
// the tail's small terms (a softmax denominator was seen 2e-4 off its exact value), so a GPU
// that summed in another order (a tree, or exactly) picked a neighbouring id in 7% of the steps
// of a temperature-only test. Sorting 49152 keys in one workgroup is too slow, so instead:
//
// 1. Best: the first of pass 1's per-chunk (key, id) pairs in the CPU's order. Greedy
//    (temperature 0) and a non-finite maximum (the CPU returns the best id) stop here.
// 2. Cuts. The CPU's order is a total order on (key, id), so "the first m elements" is the set at
//    or before a cut (key c, id i): key > c, or key == c and id <= i. A radix search finds the
//    element at which a running sum of integer terms over a subset, in the CPU's order, first
//    reaches x: four histogram passes on the key's bytes (256 buckets, workgroup atomics, scanned
//    from the top), then, only when several elements share the found key and the j-th of them
//    (j > 1) is wanted, three passes on the id's bytes. With the term 1 it counts: the cut after
//    the first top_k elements keeps exactly the CPU's set, ties at the cut included (lowest ids
//    first), never more. When top_k <= the number of chunks, the top_k-th best chunk maximum
//    bounds the search first (at least top_k keys are >= it), so its passes touch few keys.
//    The top-k set is the first kk = top_k elements (0 or >= n_vocab: all); the "head" is its
//    first h = min(kk, HEAD) elements: with top_k <= HEAD (llama.cpp's default is 40) the head
//    is the whole set.
// 3. The head is compacted into workgroup memory and sorted by rank (each element counts the
//    head elements before it: h^2 comparisons in one pass), together with its softmax
//    numerators exp(logit - max) and exp((logit - max) / temperature).
// 4. Invocation 0 runs the CPU's code on the sorted head: the same f32 operations in the same
//    order (softmax sum, top-p cumulative sum with >=, min-p threshold min_p * probs[0] with
//    take_while, the temperature softmax, target = u * the sum of probabilities, the first
//    cumulative sum > target).
// 5. The tail (top-k set minus head: only when top_k is 0 or > HEAD) continues each sequential
//    sum exactly, in parallel (the "scan"). While a running sum S stays in one binade
//    [2^e, 2^(e+1)), f32 addition S + t gives exactly S + round(t / ulp) * ulp, ulp = 2^(e-23):
//    each term's contribution is a whole number of ulps that does not depend on the terms
//    before it. So the sum over the tail is S + ulp * (integer sum of round(t / ulp)), and the
//    element where S leaves the binade, or where top-p's or the draw's comparison first holds,
//    is a radix search on those integers. That finds the group of elements with its key (equal
//    keys, equal terms); the group is walked arithmetically, the f32 addition that leaves a
//    binade done for real, and the scan continues after it (a handful of rounds per sum; a
//    vocabulary of equal logits is one group). Only a stop inside a group needs the id of its
//    j-th element (a radix search on ids).
// 6. The id is written to tokens_out[0] (the next step's embedding input), to
//    ids_out[sample_step % len] (read back by the CPU later) and appended to the history ring.
//
// Where the result can still differ from the CPU's: exp and division are not correctly rounded
// on GPUs (WGSL allows a few ulp), and a term exactly halfway between two ulps rounds to even
// here but by the running sum's last bit on the CPU. Either moves a cumulative boundary by about
// one ulp (6e-8 near 1), so a choice differs only when u falls that close to a boundary: seen
// once in 1600 steps of tests/gpu_sample.rs (the CPU's sum passed the target by one ulp).
//
// Shape of the code, set by CPU adapters (lavapipe, SwiftShader), where one workgroup runs on
// one thread as SIMD groups of 8 lanes: every branch of the code runs for every group under a
// lane mask (only loops really branch), and each loop that contains a barrier makes every
// dispatch slower (measured: 0.06 ms for one such loop, 0.6-0.8 ms for two, ~7 ms for the dozen
// that nested helper functions inlined, greedy included). So the kernel is one loop.
// Invocation 0 runs the program above as a state machine (`advance`, no barriers) and, where it
// needs the workgroup, writes a request (a histogram pass, the bound, the compaction, the rank
// sort) and yields; every invocation serves the request, all meet at a barrier, and invocation
// 0 goes on: three barriers per request. Invocation 0's state lives in workgroup memory (as
// private variables it cost ~10 ms per dispatch on lavapipe).
// Loop budget: lavapipe's LLVM backend stops every loop of a SIMD group after 65535 iterations
// in total per dispatch (a guard against endless loops; results are then silently wrong), so
// loops step through several buckets or keys at once, the scan is bounded, and the host picks a
// workgroup size that keeps a pass over the keys short (n_vocab / (2 WG) iterations).

const WG: u32 = {{WG}}u;
// Capacity of the sorted head.
const HEAD: u32 = {{HEAD}}u;

const NO_ID: u32 = 0xffffffffu;
// Histogram buckets stop growing here (a vocabulary above 2^17 of equal terms of up to 2^15
// ulps each would wrap u32). A scan asks for at most 2^24 (a binade's ulps, or a count), so
// every exact sum it uses stays below this; bucket_scan reads buckets clamped to CLAMP so that
// sixteen of them add without wrapping.
const SATURATED: u32 = 0x40000000u;
const CLAMP: u32 = 0x08000000u;
// The cut that admits every element, and the one that admits none.
const ALL: vec2<u32> = vec2<u32>(0u, 0xffffffffu);
const NONE: vec2<u32> = vec2<u32>(0xffffffffu, 0u);

// Scan stop conditions.
const STOP_NEVER: u32 = 0u;
const STOP_AT_LEAST: u32 = 1u;
const STOP_ABOVE: u32 = 2u;

// Requests (req[0]) and their fields.
const REQ_DONE: u32 = 0u;
const REQ_HIST_KEY: u32 = 1u;
const REQ_HIST_ID: u32 = 2u;
const REQ_COMPACT: u32 = 3u;
const REQ_RANK: u32 = 4u;
const REQ_BOUND: u32 = 5u;
// req[1..=8]: the subset (cut_k, cut_h, cut_p, min-p threshold, sum1); req[9..=10]: `after`;
// req[11..=14]: the term (counting, temperature, div, 1 / ulp); req[15..=18]: per request (see
// `main`); req[19]: the id (REQ_DONE); req[20]: the maximum logit.

// Program counter values of `advance`.
const PC_TOPK: u32 = 0u;
const PC_TOPK_GOT: u32 = 1u;
const PC_HEAD: u32 = 2u;
const PC_HEAD_GOT: u32 = 3u;
const PC_COMPACT: u32 = 4u;
const PC_RANK: u32 = 5u;
const PC_TOPK_BOUND: u32 = 6u;
const PC_SUM1_HEAD: u32 = 7u;
const PC_SUM1_GOT: u32 = 8u;
const PC_TOPP: u32 = 9u;
const PC_TOPP_GOT: u32 = 10u;
const PC_SUM3_HEAD: u32 = 11u;
const PC_SUM3_GOT: u32 = 12u;
const PC_TOTAL_HEAD: u32 = 13u;
const PC_TOTAL_GOT: u32 = 14u;
const PC_DRAW: u32 = 15u;
const PC_DRAW_GOT: u32 = 16u;
const PC_LAST_COUNT: u32 = 17u;
const PC_LAST_GOT: u32 = 18u;
const PC_FINISH: u32 = 19u;
const PC_SCAN_ROUND: u32 = 20u;
const PC_SCAN_GOT: u32 = 21u;
const PC_RADIX_PASS: u32 = 22u;
const PC_RADIX_GOT: u32 = 23u;
const PC_RADIX_ID_PASS: u32 = 24u;
const PC_RADIX_ID_GOT: u32 = 25u;
const PC_SCAN_STOP_ID: u32 = 26u;

@group(0) @binding(0) var<storage, read> keys: array<u32>;
@group(0) @binding(1) var<storage, read> partials: array<vec2<u32>>;
@group(0) @binding(2) var<uniform> params: SampleParams;
@group(0) @binding(3) var<uniform> step_params: StepParams;
// history[0]: ids appended so far; history[1 + j % history_cap]: the j-th id.
@group(0) @binding(4) var<storage, read_write> history: array<u32>;
@group(0) @binding(5) var<storage, read_write> tokens_out: array<u32>;
@group(0) @binding(6) var<storage, read_write> ids_out: array<u32>;

// The head as compacted (unordered), then sorted with its softmax numerators at temperature 1
// (head_e) and at the sampling temperature (head_w).
var<workgroup> src_key: array<u32, HEAD>;
var<workgroup> src_id: array<u32, HEAD>;
var<workgroup> head_key: array<u32, HEAD>;
var<workgroup> head_id: array<u32, HEAD>;
var<workgroup> head_e: array<f32, HEAD>;
var<workgroup> head_w: array<f32, HEAD>;
var<workgroup> head_len: atomic<u32>;
// The key of the kk-th best chunk maximum: at least kk keys are >= it (REQ_BOUND).
var<workgroup> bound_key: u32;
var<workgroup> hist: array<atomic<u32>, 256>;
var<workgroup> hist_id: array<atomic<u32>, 256>;
// Elements per bucket, in the last key pass (a group of equal keys).
var<workgroup> hist_n: array<atomic<u32>, 256>;
var<workgroup> req: array<u32, 24>;

// (key a, id a) comes first in the CPU's order: larger logit, then lower id.
fn before(ka: u32, ia: u32, kb: u32, ib: u32) -> bool {
    return ka > kb || (ka == kb && ia < ib);
}

// At or before the cut c in the CPU's order.
fn in_cut(k: u32, i: u32, c: vec2<u32>) -> bool {
    return k > c.x || (k == c.x && i <= c.y);
}

// exp((logit - max) / temperature), the CPU softmax's numerator; -inf gives 0.
fn rel_exp(k: u32, lmax: f32, temperature: f32) -> f32 {
    if (k <= KEY_NEG_INF) {
        return 0.0;
    }
    return exp(max((key_to_f32(k) - lmax) / temperature, -127.0));
}

// A subset of the candidates: at or before cut_k (top-k), after cut_h (not in the head), at or
// before cut_p (top-p), and, when min_p_thr > 0, exp(logit - max) / sum1 >= min_p_thr (min-p).
struct Subset {
    cut_k: vec2<u32>,
    cut_h: vec2<u32>,
    cut_p: vec2<u32>,
    min_p_thr: f32,
    sum1: f32,
}

// The subset's cuts only (not min-p).
fn in_cuts(k: u32, i: u32, s: Subset) -> bool {
    return in_cut(k, i, s.cut_k) && !in_cut(k, i, s.cut_h) && in_cut(k, i, s.cut_p);
}

// An element's integer term: 1 when counting, else its f32 term
// t = exp((logit - max) / temperature) / div in whole ulps of the running sum (round half to
// even; t < 2^24 ulps because every head element is at least t and the sum holds them).
struct Term {
    counting: u32,
    temperature: f32,
    div: f32,
    inv_ulp: f32,
}

fn term_of(k: u32, lmax: f32, t: Term) -> u32 {
    if (t.counting != 0u) {
        return 1u;
    }
    return u32(round(rel_exp(k, lmax, t.temperature) / t.div * t.inv_ulp));
}

// A histogram pass's selection: elements whose key matches `prefix` under `mask`, after the
// cut `after`, in the subset; `shift` picks the byte (of the key, or of the id) to bucket by.
struct Filter {
    prefix: u32,
    mask: u32,
    shift: u32,
    after: vec2<u32>,
    s: Subset,
    lmax: f32,
}

fn selected(k: u32, i: u32, f: Filter) -> bool {
    return i < params.n_vocab && (k & f.mask) == f.prefix && !in_cut(k, i, f.after) && in_cuts(k, i, f.s);
}

fn bucket_add(b: u32, i: u32, c: u32, last_pass: bool) {
    if (atomicLoad(&hist[b]) < SATURATED) {
        atomicAdd(&hist[b], c);
        atomicMin(&hist_id[b], i);
    }
    if (last_pass) {
        atomicAdd(&hist_n[b], 1u);
    }
}

fn count_key(i: u32, f: Filter) {
    let k = keys[min(i, params.n_vocab - 1u)];
    if (selected(k, i, f)) {
        bucket_add((k >> f.shift) & 255u, i, 1u, f.shift == 0u);
    }
}

fn add_term(i: u32, f: Filter, t: Term) {
    let k = keys[min(i, params.n_vocab - 1u)];
    if (selected(k, i, f)) {
        let c = term_of(k, f.lmax, t);
        if (c > 0u) {
            bucket_add((k >> f.shift) & 255u, i, c, f.shift == 0u);
        }
    }
}

fn add_term_min_p(i: u32, f: Filter, t: Term) {
    let k = keys[min(i, params.n_vocab - 1u)];
    if (selected(k, i, f) && rel_exp(k, f.lmax, 1.0) / f.s.sum1 >= f.s.min_p_thr) {
        let c = term_of(k, f.lmax, t);
        if (c > 0u) {
            bucket_add((k >> f.shift) & 255u, i, c, f.shift == 0u);
        }
    }
}

fn count_id(i: u32, v: u32, f: Filter) {
    if (i < params.n_vocab && keys[min(i, params.n_vocab - 1u)] == v && (i & f.mask) == f.prefix && !in_cut(v, i, f.after)
        && in_cuts(v, i, f.s)) {
        atomicAdd(&hist[(i >> f.shift) & 255u], 1u);
    }
}

fn compact(i: u32, cut_h: vec2<u32>) {
    let k = keys[min(i, params.n_vocab - 1u)];
    if (i < params.n_vocab && in_cut(k, i, cut_h)) {
        let slot = atomicAdd(&head_len, 1u);
        if (slot < HEAD) {
            src_key[slot] = k;
            src_id[slot] = i;
        }
    }
}

// ---- Invocation 0's state (workgroup memory: see "Shape of the code" above) ----
var<workgroup> pc: u32;
var<workgroup> lmax: f32;
// The chain.
var<workgroup> kk: u32;
var<workgroup> h: u32;
var<workgroup> has_tail: u32;
var<workgroup> cut_k: vec2<u32>;
var<workgroup> cut_h: vec2<u32>;
var<workgroup> cut_p: vec2<u32>;
var<workgroup> sum1: f32;
var<workgroup> keep: u32;
var<workgroup> tail_in: u32;
var<workgroup> cut_in_tail: u32;
var<workgroup> thr: f32;
var<workgroup> cumulative: f32;
var<workgroup> sum3: f32;
var<workgroup> total: f32;
var<workgroup> pick: u32;
// The scan: `for t in subset (after sc_after) { sc_sum += t; if stop(sc_sum) { break } }`.
var<workgroup> sc_subset: Subset;
var<workgroup> sc_sum: f32;
var<workgroup> sc_temperature: f32;
var<workgroup> sc_div: f32;
var<workgroup> sc_stop: u32;
var<workgroup> sc_limit: f32;
var<workgroup> sc_after: vec2<u32>;
var<workgroup> sc_ulp: f32;
var<workgroup> sc_rounds: u32;
var<workgroup> sc_ret: u32;
var<workgroup> sc_found: u32;
var<workgroup> sc_key: u32;
var<workgroup> sc_id: u32;
// The radix search: the first element of rx_subset after rx_after whose running integer term
// sum reaches rx_x. Result: rx_found; its key rx_prefix; with rx_want_id its id rx_id and the
// sum before it rx_before, else the group of elements with that key (rx_group of them, lowest
// id rx_min_id, the sum before the group rx_above); when not found, the total in rx_before.
var<workgroup> rx_subset: Subset;
var<workgroup> rx_after: vec2<u32>;
var<workgroup> rx_term: Term;
var<workgroup> rx_x: u32;
var<workgroup> rx_ret: u32;
var<workgroup> rx_pass: u32;
var<workgroup> rx_prefix: u32;
var<workgroup> rx_mask: u32;
var<workgroup> rx_above: u32;
var<workgroup> rx_min_id: u32;
var<workgroup> rx_j: u32;
var<workgroup> rx_id_prefix: u32;
var<workgroup> rx_id_mask: u32;
var<workgroup> rx_below: u32;
var<workgroup> rx_found: u32;
var<workgroup> rx_want_id: u32;
var<workgroup> rx_group: u32;
var<workgroup> rx_id: u32;
var<workgroup> rx_before: u32;

fn everything() -> Subset {
    return Subset(ALL, NONE, ALL, 0.0, 1.0);
}

fn counting() -> Term {
    return Term(1u, 1.0, 1.0, 1.0);
}

// The four buckets from lo, each clamped (so that sixteen add without wrapping).
fn quad(lo: u32) -> vec4<u32> {
    return min(vec4<u32>(atomicLoad(&hist[lo]), atomicLoad(&hist[lo + 1u]),
                         atomicLoad(&hist[lo + 2u]), atomicLoad(&hist[lo + 3u])),
               vec4<u32>(CLAMP));
}

// Buckets in order (from 255 down when descending, else from 0 up) from a running count acc0:
// the first bucket at which the count reaches x, as (1, bucket, count before it), or (0, 0,
// total). Sixteen buckets per iteration: see the loop budget at the top.
fn bucket_scan(acc0: u32, x: u32, descending: bool) -> vec3<u32> {
    var acc = acc0;
    for (var g = 0u; g < 16u; g++) {
        let first = select(16u * g, 240u - 16u * g, descending);
        let q = quad(first) + quad(first + 4u) + quad(first + 8u) + quad(first + 12u);
        if (acc + q.x + q.y + q.z + q.w >= x) {
            for (var n = 0u; n < 4u; n++) {
                let lo = select(first + 4u * n, first + 12u - 4u * n, descending);
                let c = quad(lo);
                if (acc + c.x + c.y + c.z + c.w >= x) {
                    // In scan order within the four.
                    let o = select(c, c.wzyx, descending);
                    let b = select(vec4<u32>(lo, lo + 1u, lo + 2u, lo + 3u),
                                   vec4<u32>(lo + 3u, lo + 2u, lo + 1u, lo), descending);
                    if (acc + o.x >= x) {
                        return vec3<u32>(1u, b.x, acc);
                    }
                    acc += o.x;
                    if (acc + o.y >= x) {
                        return vec3<u32>(1u, b.y, acc);
                    }
                    acc += o.y;
                    if (acc + o.z >= x) {
                        return vec3<u32>(1u, b.z, acc);
                    }
                    return vec3<u32>(1u, b.w, acc + o.z);
                }
                acc += c.x + c.y + c.z + c.w;
            }
        }
        acc += q.x + q.y + q.z + q.w;
    }
    return vec3<u32>(0u, 0u, acc);
}

fn radix_start(s: Subset, after: vec2<u32>, t: Term, x: u32, want_id: bool, ret: u32) {
    rx_want_id = select(0u, 1u, want_id);
    rx_subset = s;
    rx_after = after;
    rx_term = t;
    rx_x = x;
    rx_ret = ret;
    rx_pass = 0u;
    rx_prefix = 0u;
    rx_mask = 0u;
    rx_above = 0u;
    pc = PC_RADIX_PASS;
}

fn scan_start(s: Subset, s0: f32, temperature: f32, div: f32, stop: u32, limit: f32, ret: u32) {
    sc_subset = s;
    sc_sum = s0;
    sc_temperature = temperature;
    sc_div = div;
    sc_stop = stop;
    sc_limit = limit;
    sc_after = s.cut_h;
    sc_rounds = 0u;
    sc_ret = ret;
    pc = PC_SCAN_ROUND;
}

fn request_subset(s: Subset, after: vec2<u32>) {
    req[1] = s.cut_k.x;
    req[2] = s.cut_k.y;
    req[3] = s.cut_h.x;
    req[4] = s.cut_h.y;
    req[5] = s.cut_p.x;
    req[6] = s.cut_p.y;
    req[7] = bitcast<u32>(s.min_p_thr);
    req[8] = bitcast<u32>(s.sum1);
    req[9] = after.x;
    req[10] = after.y;
    req[11] = rx_term.counting;
    req[12] = bitcast<u32>(rx_term.temperature);
    req[13] = bitcast<u32>(rx_term.div);
    req[14] = bitcast<u32>(rx_term.inv_ulp);
}

fn scanning(stop: u32, sum: f32, limit: f32) -> bool {
    return (stop == STOP_AT_LEAST && sum >= limit) || (stop == STOP_ABOVE && sum > limit);
}

// Invocation 0: run the program until it needs the workgroup; leave the request in `req`.
fn advance() {
    loop {
        switch pc {
            case PC_TOPK: {
                if (kk >= params.n_vocab) {
                    cut_k = ALL;
                    pc = PC_HEAD;
                } else if (kk <= params.n_partials) {
                    // Bound the search by the chunk maxima first: the radix passes then touch
                    // only the keys at or above the kk-th best of them.
                    req[0] = REQ_BOUND;
                    req[15] = kk;
                    pc = PC_TOPK_BOUND;
                    return;
                } else {
                    radix_start(everything(), NONE, counting(), kk, true, PC_TOPK_GOT);
                }
            }
            case PC_TOPK_BOUND: {
                let above_bound = Subset(vec2<u32>(bound_key, NO_ID), NONE, ALL, 0.0, 1.0);
                radix_start(above_bound, NONE, counting(), kk, true, PC_TOPK_GOT);
            }
            case PC_TOPK_GOT: {
                cut_k = vec2<u32>(rx_prefix, rx_id);
                pc = PC_HEAD;
            }
            case PC_HEAD: {
                if (h < kk) {
                    radix_start(everything(), NONE, counting(), h, true, PC_HEAD_GOT);
                } else {
                    cut_h = cut_k;
                    pc = PC_COMPACT;
                }
            }
            case PC_HEAD_GOT: {
                cut_h = vec2<u32>(rx_prefix, rx_id);
                pc = PC_COMPACT;
            }
            case PC_COMPACT: {
                req[0] = REQ_COMPACT;
                req[3] = cut_h.x;
                req[4] = cut_h.y;
                pc = PC_RANK;
                return;
            }
            case PC_RANK: {
                req[0] = REQ_RANK;
                req[12] = bitcast<u32>(params.temperature);
                req[15] = h;
                pc = PC_SUM1_HEAD;
                return;
            }
            case PC_SUM1_HEAD: {
                // Softmax at temperature 1 over the top-k set: head, then tail.
                var s = 0.0;
                for (var j = 0u; j < h; j++) {
                    s += head_e[j];
                }
                sum1 = s;
                pc = PC_TOPP;
                if (has_tail != 0u) {
                    let tail = Subset(cut_k, cut_h, ALL, 0.0, 1.0);
                    scan_start(tail, s, 1.0, 1.0, STOP_NEVER, 0.0, PC_SUM1_GOT);
                }
            }
            case PC_SUM1_GOT: {
                sum1 = sc_sum;
                pc = PC_TOPP;
            }
            case PC_TOPP: {
                // Top-p, then min-p, on the head.
                keep = h;
                cut_in_tail = 0u;
                cumulative = 0.0;
                if (params.top_p < 1.0) {
                    var reached = false;
                    for (var j = 0u; j < h; j++) {
                        cumulative += head_e[j] / sum1;
                        if (cumulative >= params.top_p) {
                            keep = j + 1u;
                            reached = true;
                            break;
                        }
                    }
                    cut_in_tail = select(0u, 1u, !reached && has_tail != 0u);
                }
                tail_in = select(0u, 1u, has_tail != 0u && (params.top_p >= 1.0 || cut_in_tail != 0u));
                thr = 0.0;
                if (params.min_p > 0.0) {
                    thr = params.min_p * (head_e[0] / sum1);
                    var c = 0u;
                    while (c < keep && head_e[c] / sum1 >= thr) {
                        c++;
                    }
                    if (c < keep) {
                        tail_in = 0u;
                    }
                    keep = max(c, 1u);
                }
                cut_p = ALL;
                pc = PC_SUM3_HEAD;
                if (tail_in != 0u && cut_in_tail != 0u) {
                    let tail = Subset(cut_k, cut_h, ALL, 0.0, 1.0);
                    scan_start(tail, cumulative, 1.0, sum1, STOP_AT_LEAST, params.top_p, PC_TOPP_GOT);
                }
            }
            case PC_TOPP_GOT: {
                if (sc_found != 0u) {
                    cut_p = vec2<u32>(sc_key, sc_id);
                }
                pc = PC_SUM3_HEAD;
            }
            case PC_SUM3_HEAD: {
                // Temperature and softmax over the kept head, then tail.
                var s = 0.0;
                for (var j = 0u; j < keep; j++) {
                    s += head_w[j];
                }
                sum3 = s;
                pc = PC_TOTAL_HEAD;
                if (tail_in != 0u) {
                    let fin = Subset(cut_k, cut_h, cut_p, thr, sum1);
                    scan_start(fin, s, params.temperature, 1.0, STOP_NEVER, 0.0, PC_SUM3_GOT);
                }
            }
            case PC_SUM3_GOT: {
                sum3 = sc_sum;
                pc = PC_TOTAL_HEAD;
            }
            case PC_TOTAL_HEAD: {
                var s = 0.0;
                for (var j = 0u; j < keep; j++) {
                    s += head_w[j] / sum3;
                }
                total = s;
                pc = PC_DRAW;
                if (tail_in != 0u) {
                    let fin = Subset(cut_k, cut_h, cut_p, thr, sum1);
                    scan_start(fin, s, params.temperature, sum3, STOP_NEVER, 0.0, PC_TOTAL_GOT);
                }
            }
            case PC_TOTAL_GOT: {
                total = sc_sum;
                pc = PC_DRAW;
            }
            case PC_DRAW: {
                // The first cumulative probability above u * total.
                let goal = uniform01(params.seed_lo, params.seed_hi, 0u, step_params.sample_step)
                    * total;
                cumulative = 0.0;
                pick = NO_ID;
                for (var j = 0u; j < keep; j++) {
                    cumulative += head_w[j] / sum3;
                    if (cumulative > goal) {
                        pick = head_id[j];
                        break;
                    }
                }
                pc = PC_FINISH;
                if (pick == NO_ID) {
                    if (tail_in != 0u) {
                        let fin = Subset(cut_k, cut_h, cut_p, thr, sum1);
                        scan_start(fin, cumulative, params.temperature, sum3, STOP_ABOVE, goal, PC_DRAW_GOT);
                    } else {
                        pick = head_id[keep - 1u];
                    }
                }
            }
            case PC_DRAW_GOT: {
                if (sc_found != 0u) {
                    pick = sc_id;
                    pc = PC_FINISH;
                } else {
                    // Rounding left the target unreached: the CPU takes the last candidate.
                    let fin = Subset(cut_k, cut_h, cut_p, thr, sum1);
                    radix_start(fin, NONE, counting(), NO_ID, true, PC_LAST_COUNT);
                }
            }
            case PC_LAST_COUNT: {
                if (rx_before == 0u) {
                    pick = head_id[keep - 1u];
                    pc = PC_FINISH;
                } else {
                    radix_start(rx_subset, NONE, counting(), rx_before, true, PC_LAST_GOT);
                }
            }
            case PC_LAST_GOT: {
                pick = rx_id;
                pc = PC_FINISH;
            }
            case PC_FINISH: {
                req[0] = REQ_DONE;
                req[19] = pick;
                return;
            }
            case PC_SCAN_ROUND: {
                if (sc_rounds >= 12u) {
                    // Never reached: every tail term is at most the smallest head term, so a
                    // sum grows at most n_vocab / HEAD times over the tail and crosses at most
                    // log2 of that binades (7 for 49152, 9 for 152064), then stops once. The
                    // bound keeps the loop budget.
                    sc_found = 0u;
                    pc = sc_ret;
                } else {
                    let bits = bitcast<u32>(sc_sum);
                    let e = (bits >> 23u) & 0xffu;
                    let mant = (bits & 0x7fffffu) | 0x800000u;
                    sc_ulp = bitcast<f32>((e - 23u) << 23u);
                    let inv_ulp = bitcast<f32>((277u - e) << 23u);
                    // Ulps left in the binade: the sum leaves it when the integer sum gets there.
                    var x = 0x1000000u - mant;
                    if (sc_stop != STOP_NEVER) {
                        // A limit in this binade is a whole number of ulps above the sum (one
                        // more for ">"); a limit above the binade is not reached within it.
                        let lb = bitcast<u32>(sc_limit);
                        if (((lb >> 23u) & 0xffu) == e) {
                            let lm = (lb & 0x7fffffu) | 0x800000u;
                            var need = select(0u, lm - mant, lm > mant);
                            if (sc_stop == STOP_ABOVE) {
                                need += 1u;
                            }
                            x = min(x, max(need, 1u));
                        }
                    }
                    radix_start(sc_subset, sc_after, Term(0u, sc_temperature, sc_div, inv_ulp), x, false, PC_SCAN_GOT);
                }
            }
            case PC_SCAN_GOT: {
                if (rx_found == 0u) {
                    // No event: fewer than 2^24 ulps of a power-of-two ulp, added exactly.
                    sc_sum = sc_sum + f32(rx_before) * sc_ulp;
                    sc_found = 0u;
                    pc = sc_ret;
                } else {
                    // The event lies in the group of rx_group elements with key v, whose terms
                    // all equal t: walk the group arithmetically, one binade at a time (a whole
                    // vocabulary of equal logits is one group).
                    let v = rx_prefix;
                    let t = rel_exp(v, lmax, sc_temperature) / sc_div;
                    var sum = sc_sum + f32(rx_above) * sc_ulp;
                    var rem = rx_group;
                    var done = 0u;
                    var stopped = false;
                    for (var guard = 0u; guard < 16u && rem > 0u; guard++) {
                        let bits = bitcast<u32>(sum);
                        let e = (bits >> 23u) & 0xffu;
                        let mant = (bits & 0x7fffffu) | 0x800000u;
                        let ulp = bitcast<f32>((e - 23u) << 23u);
                        let c = u32(round(t * bitcast<f32>((277u - e) << 23u)));
                        if (c == 0u) {
                            // The rest of the group adds nothing.
                            break;
                        }
                        // The element that takes the sum out of the binade, or to the limit.
                        var n_event = (0x1000000u - mant + c - 1u) / c;
                        if (sc_stop != STOP_NEVER) {
                            let lb = bitcast<u32>(sc_limit);
                            if (((lb >> 23u) & 0xffu) == e) {
                                let lm = (lb & 0x7fffffu) | 0x800000u;
                                var need = select(0u, lm - mant, lm > mant);
                                if (sc_stop == STOP_ABOVE) {
                                    need += 1u;
                                }
                                n_event = min(n_event, (max(need, 1u) + c - 1u) / c);
                            }
                        }
                        if (n_event > rem) {
                            sum += f32(rem * c) * ulp;
                            done += rem;
                            rem = 0u;
                            break;
                        }
                        sum += f32((n_event - 1u) * c) * ulp;
                        sum = sum + t;
                        done += n_event;
                        rem -= n_event;
                        if (scanning(sc_stop, sum, sc_limit)) {
                            stopped = true;
                            break;
                        }
                    }
                    sc_sum = sum;
                    if (stopped) {
                        // The done-th element of the group (by id).
                        sc_found = 1u;
                        sc_key = v;
                        sc_id = rx_min_id;
                        pc = sc_ret;
                        if (done > 1u) {
                            rx_j = done;
                            rx_pass = 0u;
                            rx_id_prefix = 0u;
                            rx_id_mask = 0u;
                            rx_below = 0u;
                            rx_ret = PC_SCAN_STOP_ID;
                            pc = PC_RADIX_ID_PASS;
                        }
                    } else {
                        sc_after = vec2<u32>(v, NO_ID);
                        sc_rounds++;
                        pc = PC_SCAN_ROUND;
                    }
                }
            }
            case PC_SCAN_STOP_ID: {
                sc_id = rx_id;
                pc = sc_ret;
            }
            case PC_RADIX_PASS: {
                req[0] = REQ_HIST_KEY;
                request_subset(rx_subset, rx_after);
                req[15] = 24u - 8u * rx_pass;
                req[16] = rx_prefix;
                req[17] = rx_mask;
                pc = PC_RADIX_GOT;
                return;
            }
            case PC_RADIX_GOT: {
                // Buckets from the largest key down: the CPU's order.
                let shift = 24u - 8u * rx_pass;
                let scan = bucket_scan(rx_above, rx_x, true);
                let found = scan.x != 0u;
                let chosen = scan.y;
                let acc = scan.z;
                rx_min_id = atomicLoad(&hist_id[chosen]);
                rx_group = atomicLoad(&hist_n[chosen]);
                if (!found) {
                    rx_found = 0u;
                    rx_before = acc;
                    pc = rx_ret;
                } else {
                    rx_prefix |= chosen << shift;
                    rx_mask |= 255u << shift;
                    rx_above = acc;
                    if (rx_pass < 3u) {
                        rx_pass++;
                        pc = PC_RADIX_PASS;
                    } else if (rx_want_id == 0u) {
                        // The group of elements with key rx_prefix (rx_group of them, lowest id
                        // rx_min_id) holds the element; rx_above is the sum before the group.
                        rx_found = 1u;
                        rx_id = rx_min_id;
                        pc = rx_ret;
                    } else {
                        // Elements with this key have equal terms tau: the j-th of them (by id)
                        // reaches x.
                        let tau = term_of(rx_prefix, lmax, rx_term);
                        rx_j = (rx_x - rx_above + tau - 1u) / tau;
                        rx_before = rx_above + (rx_j - 1u) * tau;
                        rx_found = 1u;
                        rx_id = rx_min_id;
                        pc = rx_ret;
                        if (rx_j > 1u) {
                            rx_pass = 0u;
                            rx_id_prefix = 0u;
                            rx_id_mask = 0u;
                            rx_below = 0u;
                            pc = PC_RADIX_ID_PASS;
                        }
                    }
                }
            }
            case PC_RADIX_ID_PASS: {
                req[0] = REQ_HIST_ID;
                request_subset(rx_subset, rx_after);
                req[15] = 16u - 8u * rx_pass;
                req[16] = rx_id_prefix;
                req[17] = rx_id_mask;
                req[18] = rx_prefix;
                pc = PC_RADIX_ID_GOT;
                return;
            }
            case PC_RADIX_ID_GOT: {
                // Buckets from the lowest id up: the j-th lowest id among equal keys.
                let shift = 16u - 8u * rx_pass;
                let scan = bucket_scan(rx_below, rx_j, false);
                let chosen = scan.y;
                let acc = scan.z;
                rx_id_prefix |= chosen << shift;
                rx_id_mask |= 255u << shift;
                rx_below = acc;
                if (rx_pass < 2u) {
                    rx_pass++;
                    pc = PC_RADIX_ID_PASS;
                } else {
                    rx_id = rx_id_prefix;
                    pc = rx_ret;
                }
            }
            default: {
                req[0] = REQ_DONE;
                req[19] = 0u;
                return;
            }
        }
    }
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32) {
    if (lid == 0u) {
        // The best (key, id); greedy and a non-finite maximum end here.
        var bk = 0u;
        var bi = NO_ID;
        for (var j = 0u; j < params.n_partials; j++) {
            let p = partials[j];
            if (before(p.x, p.y, bk, bi)) {
                bk = p.x;
                bi = p.y;
            }
        }
        if (params.temperature <= 0.0 || bk <= KEY_NEG_INF || bk >= KEY_POS_INF) {
            req[0] = REQ_DONE;
            req[19] = bi;
        } else {
            lmax = key_to_f32(bk);
            req[20] = bk;
            let top_k = params.top_k;
            kk = select(params.n_vocab, top_k, top_k > 0u && top_k < params.n_vocab);
            h = min(kk, HEAD);
            has_tail = select(0u, 1u, h < kk);
            atomicStore(&head_len, 0u);
            pc = PC_TOPK;
            advance();
        }
    }
    loop {
        let r = workgroupUniformLoad(&req);
        if (r[0] == REQ_DONE) {
            if (lid == 0u) {
                let id = r[19];
                tokens_out[0] = id;
                ids_out[step_params.sample_step % arrayLength(&ids_out)] = id;
                let count = history[0];
                history[1u + count % params.history_cap] = id;
                history[0] = count + 1u;
            }
            break;
        }
        let lmax_all = key_to_f32(r[20]);
        let s = Subset(vec2<u32>(r[1], r[2]), vec2<u32>(r[3], r[4]), vec2<u32>(r[5], r[6]),
                       bitcast<f32>(r[7]), bitcast<f32>(r[8]));
        let after = vec2<u32>(r[9], r[10]);
        if (r[0] == REQ_HIST_KEY || r[0] == REQ_HIST_ID) {
            // A fresh histogram (invocation 0 read the last one before the barrier above).
            for (var b = lid; b < 256u; b += WG) {
                atomicStore(&hist[b], 0u);
                atomicStore(&hist_id[b], NO_ID);
                atomicStore(&hist_n[b], 0u);
            }
        }
        workgroupBarrier();
        switch r[0] {
            case REQ_HIST_KEY: {
                // Terms of the subset's elements whose key matches the fixed high bytes, by the
                // next byte (req[15]: its shift, req[16]/req[17]: fixed bytes and their mask).
                // One loop per kind of term: CPU adapters run every branch of a loop body for
                // every element, so the branches sit outside the loops. Two keys per iteration
                // halve the iterations (the loop budget at the top).
                let t = Term(r[11], bitcast<f32>(r[12]), bitcast<f32>(r[13]), bitcast<f32>(r[14]));
                let f = Filter(r[16], r[17], r[15], after, s, lmax_all);
                if (t.counting != 0u) {
                    for (var i = lid; i < params.n_vocab; i += 2u * WG) {
                        count_key(i, f);
                        count_key(i + WG, f);
                    }
                } else if (s.min_p_thr > 0.0) {
                    for (var i = lid; i < params.n_vocab; i += 2u * WG) {
                        add_term_min_p(i, f, t);
                        add_term_min_p(i + WG, f, t);
                    }
                } else {
                    for (var i = lid; i < params.n_vocab; i += 2u * WG) {
                        add_term(i, f, t);
                        add_term(i + WG, f, t);
                    }
                }
            }
            case REQ_HIST_ID: {
                // Counts of the subset's elements with key req[18] whose id matches the fixed
                // high bytes, by the next id byte. (Min-p keeps all elements of a key or none,
                // and this key is in the subset: the cuts suffice.)
                let f = Filter(r[16], r[17], r[15], after, s, lmax_all);
                for (var i = lid; i < params.n_vocab; i += 2u * WG) {
                    count_id(i, r[18], f);
                    count_id(i + WG, r[18], f);
                }
            }
            case REQ_COMPACT: {
                // The head: the elements at or before cut_h (exactly h of them), unordered.
                for (var i = lid; i < params.n_vocab; i += 2u * WG) {
                    compact(i, s.cut_h);
                    compact(i + WG, s.cut_h);
                }
            }
            case REQ_BOUND: {
                // The chunk maximum with exactly req[15] - 1 chunk maxima before it.
                for (var j = lid; j < params.n_partials; j += WG) {
                    let p = partials[j];
                    var rank = 0u;
                    for (var i = 0u; i < params.n_partials; i++) {
                        let q = partials[i];
                        rank += select(0u, 1u, before(q.x, q.y, p.x, p.y));
                    }
                    if (rank == r[15] - 1u) {
                        bound_key = p.x;
                    }
                }
            }
            case REQ_RANK: {
                // Sort by rank: an element's place in the CPU's order is the number of head
                // elements before it (the order is total, so places are distinct). h^2
                // comparisons in one pass: fewer barriers than any merging network.
                let h_ = r[15];
                for (var i = lid; i < h_; i += WG) {
                    let k = src_key[i];
                    let id = src_id[i];
                    var rank = 0u;
                    for (var j = 0u; j < h_; j++) {
                        rank += select(0u, 1u, before(src_key[j], src_id[j], k, id));
                    }
                    head_key[rank] = k;
                    head_id[rank] = id;
                    head_e[rank] = rel_exp(k, lmax_all, 1.0);
                    head_w[rank] = rel_exp(k, lmax_all, bitcast<f32>(r[12]));
                }
            }
            default: {}
        }
        workgroupBarrier();
        if (lid == 0u) {
            advance();
        }
    }
}

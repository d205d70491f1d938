// Sampling, pass 2 of 2: one workgroup turns the keys of pass 1 (sample_keys.wgsl) into the
// sampled id, reproducing the CPU sampler (src/sampler.rs) operation by operation:
//
//   repetition penalty (pass 1) -> top-k -> softmax -> top-p -> min-p -> temperature ->
//   softmax -> draw with u = uniform(seed, step)
//
// The CPU sorts the candidates by (logit descending, id ascending) and walks the sorted list
// with sequential f32 sums. Those sums matter: over 49152 terms, f32 addition drops or rounds
// the tail's small terms (a softmax denominator was seen 2e-4 off its exact value), so a GPU
// that summed differently (a tree, or exactly) would pick a neighbouring id in a few percent of
// the steps. Sorting 49152 keys in one workgroup is too slow, so instead:
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
//    first), never more. The top-k set is the first kk = top_k elements (0 or >= n_vocab: all);
//    the "head" is its first h = min(kk, HEAD): with top_k <= HEAD (llama.cpp's default is 40)
//    the head is the whole set.
// 3. The head is compacted into workgroup memory and bitonic-sorted (log2(P)(log2(P)+1)/2 stages
//    for P = h rounded up to a power of two: 21 for top_k = 40, 55 for 1024).
// 4. Invocation 0 runs the CPU's code on the sorted head: the same f32 operations in the same
//    order (softmax sum, top-p cumulative sum with >=, min-p threshold min_p * probs[0] with
//    take_while, the temperature softmax, target = u * the sum of probabilities, the first
//    cumulative sum > target); the other invocations compute the exp values.
// 5. The tail (top-k set minus head: only when top_k is 0 or > HEAD) continues each sequential
//    sum exactly, in parallel (the "scan"). While a running sum S stays in one binade
//    [2^e, 2^(e+1)), f32 addition S + t gives exactly S + round(t / ulp) * ulp, ulp = 2^(e-23):
//    each term's contribution is a whole number of ulps that does not depend on the terms
//    before it. So the sum over the tail is S + ulp * (integer sum of round(t / ulp)), and the
//    element where S leaves the binade, or where top-p's or the draw's comparison first holds,
//    is a radix search on those integers; there the f32 addition is done for real and the scan
//    continues in the next binade (a handful of such events per sum).
// Where the result can still differ from the CPU's: exp and division are not correctly rounded
// on GPUs (WGSL allows a few ulp), and a term exactly halfway between two ulps rounds to even on
// its own here but by the running sum's last bit on the CPU (a 1-ulp difference). Both move a
// cumulative boundary by ~1e-7 relative, so a choice differs only when u falls that close to it.
// 6. The id is written to tokens_out[0] (the next step's embedding input), to
//    ids_out[sample_step % len] (read back by the CPU later) and appended to the history ring.
//
// Shape of the code: the whole kernel is one loop. Invocation 0 runs the program above as a
// state machine (`advance`, no barriers) and, at each point where it needs the workgroup,
// writes a request (a histogram pass, the compaction, one bitonic stage, the exp values) and
// yields; every invocation then serves the request, meets at a barrier, and invocation 0 goes
// on. Two barriers per request. Why not ordinary nested functions: lavapipe (LLVM coroutines)
// pays per dispatch for every loop that contains a barrier — measured 0.06 ms for one such loop,
// 0.6-0.8 ms for two, ~7 ms for the dozen that the straightforward version inlined — and the
// greedy path would pay it too.

const N: u32 = {{N_VOCAB}}u;
const HISTORY_CAP: u32 = {{HISTORY_CAP}}u;
const N_PARTIALS: u32 = {{N_PARTIALS}}u;
const WG: u32 = {{WG}}u;
// Capacity of the sorted head (a power of two).
const HEAD: u32 = {{HEAD}}u;

const NO_ID: u32 = 0xffffffffu;
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
const PC_SUM1_HEAD: u32 = 7u;
const PC_SUM1_GOT: u32 = 8u;
const PC_TOPP: u32 = 9u;
const PC_TOPP_GOT: u32 = 10u;
const PC_SUM3_HEAD: u32 = 12u;
const PC_SUM3_GOT: u32 = 13u;
const PC_TOTAL_HEAD: u32 = 14u;
const PC_TOTAL_GOT: u32 = 15u;
const PC_DRAW: u32 = 16u;
const PC_DRAW_GOT: u32 = 17u;
const PC_LAST_COUNT: u32 = 18u;
const PC_LAST_GOT: u32 = 19u;
const PC_FINISH: u32 = 20u;
const PC_SCAN_ROUND: u32 = 21u;
const PC_SCAN_GOT: u32 = 22u;
const PC_RADIX_PASS: u32 = 23u;
const PC_RADIX_GOT: u32 = 24u;
const PC_RADIX_ID_PASS: u32 = 25u;
const PC_RADIX_ID_GOT: u32 = 26u;

@group(0) @binding(0) var<storage, read> keys: array<u32>;
@group(0) @binding(1) var<storage, read> partials: array<vec2<u32>>;
@group(0) @binding(2) var<uniform> params: SampleParams;
@group(0) @binding(3) var<uniform> step_params: StepParams;
// history[0]: ids appended so far; history[1 + j % HISTORY_CAP]: the j-th id.
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
var<workgroup> hist: array<atomic<u32>, 256>;
var<workgroup> hist_id: array<atomic<u32>, 256>;
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

fn in_subset(k: u32, i: u32, s: Subset, lmax: f32) -> bool {
    if (!in_cut(k, i, s.cut_k) || in_cut(k, i, s.cut_h) || !in_cut(k, i, s.cut_p)) {
        return false;
    }
    if (s.min_p_thr > 0.0) {
        return rel_exp(k, lmax, 1.0) / s.sum1 >= s.min_p_thr;
    }
    return true;
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

// The invocation's index: 0 in invocation 0, the only one that runs `advance`. Serial loops
// start from it instead of from 0u: lavapipe executes invocations as SIMD lanes with masks and
// runs a loop whose bounds are uniform for its full count even in lanes that are masked off (all
// other invocations, which pass through `advance` masked). Starting from `lane` makes the loop
// divergent, so masked-off lanes leave it at once (measured: 0.3 ms -> ~0.02 ms per request).
var<private> lane: u32;

// ---- Invocation 0's state, kept in workgroup memory: lavapipe keeps private variables in each
// invocation's coroutine frame, which cost ~10 ms per dispatch for this many. ----
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
// sum reaches rx_x. Result: rx_found, key rx_prefix, id rx_id, rx_before (the sum before it,
// or the total when not found).
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
var<workgroup> rx_id: u32;
var<workgroup> rx_before: u32;

fn everything() -> Subset {
    return Subset(ALL, NONE, ALL, 0.0, 1.0);
}

fn counting() -> Term {
    return Term(1u, 1.0, 1.0, 1.0);
}

fn reset_hist() {
    for (var b = lane; b < 256u; b++) {
        atomicStore(&hist[b], 0u);
        atomicStore(&hist_id[b], NO_ID);
    }
}

fn radix_start(s: Subset, after: vec2<u32>, t: Term, x: u32, ret: u32) {
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
        if (pc == PC_TOPK) {
                if (kk < N) {
                    radix_start(everything(), NONE, counting(), kk, PC_TOPK_GOT);
                } else {
                    cut_k = ALL;
                    pc = PC_HEAD;
                }
        } else if (pc == PC_TOPK_GOT) {
                cut_k = vec2<u32>(rx_prefix, rx_id);
                pc = PC_HEAD;
        } else if (pc == PC_HEAD) {
                if (h < kk) {
                    radix_start(everything(), NONE, counting(), h, PC_HEAD_GOT);
                } else {
                    cut_h = cut_k;
                    pc = PC_COMPACT;
                }
        } else if (pc == PC_HEAD_GOT) {
                cut_h = vec2<u32>(rx_prefix, rx_id);
                pc = PC_COMPACT;
        } else if (pc == PC_COMPACT) {
                req[0] = REQ_COMPACT;
                req[3] = cut_h.x;
                req[4] = cut_h.y;
                pc = PC_RANK;
                return;
        } else if (pc == PC_RANK) {
                req[0] = REQ_RANK;
                req[12] = bitcast<u32>(params.temperature);
                req[15] = h;
                pc = PC_SUM1_HEAD;
                return;
        } else if (pc == PC_SUM1_HEAD) {
                // Softmax at temperature 1 over the top-k set: head, then tail.
                var s = 0.0;
                for (var j = lane; j < h; j++) {
                    s += head_e[j];
                }
                sum1 = s;
                pc = PC_TOPP;
                if (has_tail != 0u) {
                    let tail = Subset(cut_k, cut_h, ALL, 0.0, 1.0);
                    scan_start(tail, s, 1.0, 1.0, STOP_NEVER, 0.0, PC_SUM1_GOT);
                }
        } else if (pc == PC_SUM1_GOT) {
                sum1 = sc_sum;
                pc = PC_TOPP;
        } else if (pc == PC_TOPP) {
                // Top-p, then min-p, on the head.
                keep = h;
                cut_in_tail = 0u;
                cumulative = 0.0;
                if (params.top_p < 1.0) {
                    var reached = false;
                    for (var j = lane; j < h; j++) {
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
                    var c = lane;
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
        } else if (pc == PC_TOPP_GOT) {
                if (sc_found != 0u) {
                    cut_p = vec2<u32>(sc_key, sc_id);
                }
                pc = PC_SUM3_HEAD;
        } else if (pc == PC_SUM3_HEAD) {
                // Temperature and softmax over the kept head, then tail.
                var s = 0.0;
                for (var j = lane; j < keep; j++) {
                    s += head_w[j];
                }
                sum3 = s;
                pc = PC_TOTAL_HEAD;
                if (tail_in != 0u) {
                    let fin = Subset(cut_k, cut_h, cut_p, thr, sum1);
                    scan_start(fin, s, params.temperature, 1.0, STOP_NEVER, 0.0, PC_SUM3_GOT);
                }
        } else if (pc == PC_SUM3_GOT) {
                sum3 = sc_sum;
                pc = PC_TOTAL_HEAD;
        } else if (pc == PC_TOTAL_HEAD) {
                var s = 0.0;
                for (var j = lane; j < keep; j++) {
                    s += head_w[j] / sum3;
                }
                total = s;
                pc = PC_DRAW;
                if (tail_in != 0u) {
                    let fin = Subset(cut_k, cut_h, cut_p, thr, sum1);
                    scan_start(fin, s, params.temperature, sum3, STOP_NEVER, 0.0, PC_TOTAL_GOT);
                }
        } else if (pc == PC_TOTAL_GOT) {
                total = sc_sum;
                pc = PC_DRAW;
        } else if (pc == PC_DRAW) {
                // The first cumulative probability above u * total.
                let goal = uniform01(params.seed_lo, params.seed_hi, 0u, step_params.sample_step)
                    * total;
                cumulative = 0.0;
                pick = NO_ID;
                for (var j = lane; j < keep; j++) {
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
        } else if (pc == PC_DRAW_GOT) {
                if (sc_found != 0u) {
                    pick = sc_id;
                    pc = PC_FINISH;
                } else {
                    // Rounding left the target unreached: the CPU takes the last candidate.
                    let fin = Subset(cut_k, cut_h, cut_p, thr, sum1);
                    radix_start(fin, NONE, counting(), NO_ID, PC_LAST_COUNT);
                }
        } else if (pc == PC_LAST_COUNT) {
                if (rx_before == 0u) {
                    pick = head_id[keep - 1u];
                    pc = PC_FINISH;
                } else {
                    radix_start(rx_subset, NONE, counting(), rx_before, PC_LAST_GOT);
                }
        } else if (pc == PC_LAST_GOT) {
                pick = rx_id;
                pc = PC_FINISH;
        } else if (pc == PC_FINISH) {
                req[0] = REQ_DONE;
                req[19] = pick;
                return;
        } else if (pc == PC_SCAN_ROUND) {
                if (sc_rounds >= 64u) {
                    // Never seen: a sum crosses a handful of binades. Stop rather than spin.
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
                    radix_start(sc_subset, sc_after, Term(0u, sc_temperature, sc_div, inv_ulp), x, PC_SCAN_GOT);
                }
        } else if (pc == PC_SCAN_GOT) {
                // Exact: fewer than 2^24 ulps of a power-of-two ulp, added within the binade.
                let reached = sc_sum + f32(rx_before) * sc_ulp;
                if (rx_found == 0u) {
                    sc_sum = reached;
                    sc_found = 0u;
                    pc = sc_ret;
                } else {
                    // The event element: its f32 addition done for real.
                    sc_sum = reached + rel_exp(rx_prefix, lmax, sc_temperature) / sc_div;
                    if (scanning(sc_stop, sc_sum, sc_limit)) {
                        sc_found = 1u;
                        sc_key = rx_prefix;
                        sc_id = rx_id;
                        pc = sc_ret;
                    } else {
                        sc_after = vec2<u32>(rx_prefix, rx_id);
                        sc_rounds++;
                        pc = PC_SCAN_ROUND;
                    }
                }
        } else if (pc == PC_RADIX_PASS) {
                req[0] = REQ_HIST_KEY;
                request_subset(rx_subset, rx_after);
                req[15] = 24u - 8u * rx_pass;
                req[16] = rx_prefix;
                req[17] = rx_mask;
                pc = PC_RADIX_GOT;
                return;
        } else if (pc == PC_RADIX_GOT) {
                // Buckets from the largest key down: the CPU's order.
                let shift = 24u - 8u * rx_pass;
                var acc = rx_above;
                var found = false;
                var chosen = 0u;
                for (var n = lane; n < 256u; n++) {
                    let c = atomicLoad(&hist[255u - n]);
                    if (acc + c >= rx_x) {
                        found = true;
                        chosen = 255u - n;
                        break;
                    }
                    acc += c;
                }
                rx_min_id = atomicLoad(&hist_id[chosen]);
                reset_hist();
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
        } else if (pc == PC_RADIX_ID_PASS) {
                req[0] = REQ_HIST_ID;
                request_subset(rx_subset, rx_after);
                req[15] = 16u - 8u * rx_pass;
                req[16] = rx_id_prefix;
                req[17] = rx_id_mask;
                req[18] = rx_prefix;
                pc = PC_RADIX_ID_GOT;
                return;
        } else if (pc == PC_RADIX_ID_GOT) {
                // Buckets from the lowest id up: the j-th lowest id among equal keys.
                let shift = 16u - 8u * rx_pass;
                var acc = rx_below;
                var chosen = 255u;
                for (var b = lane; b < 256u; b++) {
                    let c = atomicLoad(&hist[b]);
                    if (acc + c >= rx_j) {
                        chosen = b;
                        break;
                    }
                    acc += c;
                }
                reset_hist();
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
        } else {
            req[0] = REQ_DONE;
            req[19] = 0u;
            return;
        }
    }
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32) {
    lane = lid;
    if (lid == 0u) {
        // The best (key, id); greedy and a non-finite maximum end here.
        var bk = 0u;
        var bi = NO_ID;
        for (var j = 0u; j < N_PARTIALS; j++) {
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
            kk = select(N, top_k, top_k > 0u && top_k < N);
            h = min(kk, HEAD);
            has_tail = select(0u, 1u, h < kk);
            atomicStore(&head_len, 0u);
            reset_hist();
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
                history[1u + count % HISTORY_CAP] = id;
                history[0] = count + 1u;
            }
            break;
        }
        let lmax_all = key_to_f32(r[20]);
        let s = Subset(vec2<u32>(r[1], r[2]), vec2<u32>(r[3], r[4]), vec2<u32>(r[5], r[6]),
                       bitcast<f32>(r[7]), bitcast<f32>(r[8]));
        let after = vec2<u32>(r[9], r[10]);
        switch r[0] {
            case REQ_HIST_KEY: {
                // Terms of the subset's elements whose key matches the fixed high bytes, by the
                // next byte (req[15]: its shift, req[16]/req[17]: fixed bytes and their mask).
                let t = Term(r[11], bitcast<f32>(r[12]), bitcast<f32>(r[13]), bitcast<f32>(r[14]));
                for (var i = lid; i < N; i += WG) {
                    let k = keys[i];
                    if ((k & r[17]) == r[16] && !in_cut(k, i, after) && in_subset(k, i, s, lmax_all)) {
                        let c = term_of(k, lmax_all, t);
                        if (c > 0u) {
                            let b = (k >> r[15]) & 255u;
                            atomicAdd(&hist[b], c);
                            atomicMin(&hist_id[b], i);
                        }
                    }
                }
            }
            case REQ_HIST_ID: {
                // Counts of the subset's elements with key req[18] whose id matches the fixed
                // high bytes, by the next id byte.
                let v = r[18];
                for (var i = lid; i < N; i += WG) {
                    if (keys[i] == v && (i & r[17]) == r[16] && !in_cut(v, i, after)
                        && in_subset(v, i, s, lmax_all)) {
                        atomicAdd(&hist[(i >> r[15]) & 255u], 1u);
                    }
                }
            }
            case REQ_COMPACT: {
                // The head: the elements at or before cut_h (exactly h of them), unordered.
                for (var i = lid; i < N; i += WG) {
                    let k = keys[i];
                    if (in_cut(k, i, s.cut_h)) {
                        let slot = atomicAdd(&head_len, 1u);
                        if (slot < HEAD) {
                            src_key[slot] = k;
                            src_id[slot] = i;
                        }
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

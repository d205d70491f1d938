// Shared by the sampling kernels (sample_keys.wgsl, sample_pick.wgsl) and their tests: the
// parameters, the order-preserving key of a logit, and the counter-based random number
// generator of `sampler::uniform`, ported bit for bit.

// Written once per generation by `GpuSampler::set_params` (see src/gpu/kernels/sample.rs).
struct SampleParams {
    // 0 means greedy (the host maps every temperature that is not > 0 to 0).
    temperature: f32,
    // 0: no top-k.
    top_k: u32,
    // 1: no top-p.
    top_p: f32,
    // 0: no min-p.
    min_p: f32,
    repeat_penalty: f32,
    // 0 when the repetition penalty is off (penalty 1 or an empty window).
    repeat_last_n: u32,
    seed_lo: u32,
    seed_hi: u32,
    // Fixed by `GpuSampler::new` (uniforms rather than constants, so that samplers of every
    // size share one compiled pipeline).
    n_vocab: u32,
    // Chunks of pass 1 (its per-chunk bests).
    n_partials: u32,
    // Capacity of the history ring.
    history_cap: u32,
    // 1: only the ids set in the mask (a response format's) may be picked.
    masked: u32,
}

// The per-step uniform every kernel shares (`kernels::StepParams`).
struct StepParams {
    pos: u32,
    n_tokens: u32,
    sample_step: u32,
    _pad: u32,
}

// The bits of -inf (what a NaN logit counts as, like the CPU sampler's NaN -> -inf).
const NEG_INF_BITS: u32 = 0xff800000u;
// Keys of -inf and +inf. Every key of a non-NaN float lies in [KEY_NEG_INF, KEY_POS_INF], so
// key 0 is free to mark "below everything" (padding, the "all" cut).
const KEY_NEG_INF: u32 = 0x007fffffu;
const KEY_POS_INF: u32 = 0xff800000u;

// A u32 whose unsigned order is f32::total_cmp's order of the float with these bits (-0 < +0,
// like the CPU sampler's comparisons): flip all bits of negatives, the sign bit of positives.
fn to_key(bits: u32) -> u32 {
    return select(bits ^ 0x80000000u, ~bits, (bits & 0x80000000u) != 0u);
}

fn key_to_f32(key: u32) -> f32 {
    return bitcast<f32>(select(~key, key ^ 0x80000000u, (key & 0x80000000u) != 0u));
}

// The bits of a logit as the CPU sampler sees it: NaN (tested on the bits, since shader
// compilers may assume floats are never NaN) becomes -inf.
fn sanitize(bits: u32) -> u32 {
    return select(bits, NEG_INF_BITS, (bits & 0x7fffffffu) > 0x7f800000u);
}

// PCG output hash (Jarzynski & Olano 2020): an LCG step then RXS-M-XS; u32 arithmetic wraps.
fn pcg_hash(v: u32) -> u32 {
    let state = v * 747796405u + 2891336453u;
    let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
    return (word >> 22u) ^ word;
}

// `sampler::uniform(seed, step)` with the 64-bit seed and step given as 32-bit halves. The 24
// kept bits convert to f32 exactly, so the value equals the CPU's bit for bit.
fn uniform01(seed_lo: u32, seed_hi: u32, step_hi: u32, step_lo: u32) -> f32 {
    var h = pcg_hash(seed_lo);
    h = pcg_hash(h ^ seed_hi);
    h = pcg_hash(h ^ step_hi);
    h = pcg_hash(h ^ step_lo);
    return f32(h >> 8u) * (1.0 / 16777216.0);
}

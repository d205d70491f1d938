// Shared by the sampling kernels (sample_keys.wgsl, sample_pick.wgsl, sample_logprobs.wgsl): the
// parameters, the order-preserving key of a logit, and `sampler::uniform` ported bit for bit.

// Written by `GpuSampler::set_params` (src/gpu/kernels/sample.rs), each "off" in one form.
struct SampleParams {
    temperature: f32,  // 0: greedy
    top_k: u32,        // 0: off
    top_p: f32,        // 1: off
    min_p: f32,        // 0: off
    repeat_penalty: f32,
    frequency_penalty: f32,
    presence_penalty: f32,
    window: u32,       // ids of the history the penalties see; 0: penalties off
    seed_lo: u32,
    seed_hi: u32,
    // Sizes: uniforms, not constants, so samplers of every size share one pipeline.
    n_vocab: u32,
    n_partials: u32,   // chunks of pass 1
    history_cap: u32,
    n_bias: u32,       // entries of the logit bias list
    masked: u32,       // 1: only the ids set in the mask may be picked
    logprobs: u32,     // 1: sample_logprobs.wgsl runs after the draw (pass 1 keeps every key)
    top_logprobs: u32, // alternatives it reports
    _pad: u32,
}

// The per-step uniform every kernel shares (`kernels::StepParams`).
struct StepParams {
    pos: u32,
    n_tokens: u32,
    sample_step: u32,
    _pad: u32,
}

const NEG_INF_BITS: u32 = 0xff800000u;
// Keys of -inf and +inf. Every non-NaN float's key lies between them, so key 0 is free for
// masked ids: below everything, never a candidate.
const KEY_NEG_INF: u32 = 0x007fffffu;
const KEY_POS_INF: u32 = 0xff800000u;
const NO_ID: u32 = 0xffffffffu;

// A u32 whose unsigned order is f32::total_cmp's (-0 < +0, as on the CPU): flip all bits of
// negatives, the sign bit of positives.
fn to_key(bits: u32) -> u32 {
    return select(bits ^ 0x80000000u, ~bits, (bits & 0x80000000u) != 0u);
}

fn key_to_f32(key: u32) -> f32 {
    return bitcast<f32>(select(~key, key ^ 0x80000000u, (key & 0x80000000u) != 0u));
}

// NaN (tested on the bits: compilers may assume floats are never NaN) becomes -inf.
fn sanitize(bits: u32) -> u32 {
    return select(bits, NEG_INF_BITS, (bits & 0x7fffffffu) > 0x7f800000u);
}

// PCG output hash (Jarzynski & Olano 2020): an LCG step then RXS-M-XS; u32 arithmetic wraps.
fn pcg_hash(v: u32) -> u32 {
    let state = v * 747796405u + 2891336453u;
    let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
    return (word >> 22u) ^ word;
}

// `sampler::uniform(seed, step)`; its 24 bits convert to f32 exactly, so it equals the CPU's.
fn uniform01(seed_lo: u32, seed_hi: u32, step_hi: u32, step_lo: u32) -> f32 {
    var h = pcg_hash(seed_lo);
    h = pcg_hash(h ^ seed_hi);
    h = pcg_hash(h ^ step_hi);
    h = pcg_hash(h ^ step_lo);
    return f32(h >> 8u) * (1.0 / 16777216.0);
}

// (key, id) a comes first in the CPU's order: larger logit, then lower id.
fn before(a: vec2<u32>, b: vec2<u32>) -> bool {
    return a.x > b.x || (a.x == b.x && a.y < b.y);
}

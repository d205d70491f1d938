//! The GPU sampler (`gpu::kernels::sample`) against the CPU sampler (`sampler.rs`, the
//! definition), on the machine's adapter (lavapipe in CI): the random number generator bit for
//! bit, greedy picks exactly, step-by-step choices under every filter, the distribution of draws
//! against the definition computed here independently in f64, ties at cuts, determinism, and the
//! history the kernel appends to.

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use llama_wgpu::gpu::kernel::{
    read_buffer, storage_buffer, submit_ops, whole, Kernel, Op, ShaderSource,
};
use llama_wgpu::gpu::kernels::sample::{GpuSampler, SAMPLE_COMMON_WGSL};
use llama_wgpu::gpu::kernels::{step_params_buffer, StepParams};
use llama_wgpu::gpu::{GpuContext, GpuOptions};
use llama_wgpu::sampler::{uniform, Sampler, SamplingParams};

/// The default model's vocabulary.
const N_VOCAB: usize = 49152;

fn ctx() -> &'static GpuContext {
    static CTX: OnceLock<GpuContext> = OnceLock::new();
    CTX.get_or_init(|| {
        GpuContext::new_blocking(&GpuOptions::default())
            .expect("a GPU adapter (lavapipe: apt mesa-vulkan-drivers)")
    })
}

/// splitmix64: the tests' deterministic randomness.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn normal(&mut self) -> f64 {
        let u = self.unit().max(1e-300);
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * self.unit()).cos()
    }
}

/// 2^16 standard normal values, drawn once: each step's background is a random permutation of
/// them (cheaper than fresh draws in a debug build).
fn gaussians() -> &'static [f32] {
    static TABLE: OnceLock<Vec<f32>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut rng = Rng(0x6a05);
        (0..1 << 16).map(|_| rng.normal() as f32).collect()
    })
}

/// Logits shaped like a language model's: a Gaussian background of width `spread` and a few
/// boosted ids (some of them from `favour`, e.g. recent tokens, so a penalty matters), with a
/// random sharpness, so the draws cover peaked and flat steps.
fn lm_logits(rng: &mut Rng, n: usize, favour: &[u32]) -> Vec<f32> {
    let spread = 1.0 + 1.5 * rng.unit() as f32;
    // i -> (a i + b) mod 2^16 with a odd is a permutation.
    let (a, b) = (rng.next() as usize | 1, rng.next() as usize);
    let table = gaussians();
    let mut l: Vec<f32> = (0..n)
        .map(|i| spread * table[a.wrapping_mul(i).wrapping_add(b) & 0xffff])
        .collect();
    let boosted = 1 + rng.below(24);
    for b in 0..boosted {
        let id = if b % 3 == 0 && !favour.is_empty() {
            favour[rng.below(favour.len())] as usize % n
        } else {
            rng.below(n)
        };
        l[id] += (4.0 + 8.0 * rng.unit()) as f32;
    }
    l
}

/// The same, rounded to steps of 0.25 so that many logits tie (at every cut).
fn tied_logits(rng: &mut Rng, n: usize, favour: &[u32]) -> Vec<f32> {
    lm_logits(rng, n, favour)
        .iter()
        .map(|&x| (x * 4.0).round() / 4.0)
        .collect()
}

/// The seed of independent draw `i`.
fn seed_of(i: usize) -> u64 {
    (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// A mask allowing each id with probability 1/2, and the ids in `also`.
fn random_mask(rng: &mut Rng, n: usize, also: &[u32]) -> Vec<u32> {
    let mut mask: Vec<u32> = (0..n.div_ceil(32)).map(|_| rng.next() as u32).collect();
    if n % 32 != 0 {
        *mask.last_mut().unwrap() &= (1u32 << (n % 32)) - 1;
    }
    for &id in also {
        mask[id as usize / 32] |= 1 << (id % 32);
    }
    mask
}

fn allowed(mask: Option<&[u32]>, id: usize) -> bool {
    mask.is_none_or(|m| m[id / 32] >> (id % 32) & 1 == 1)
}

/// A sampler and the buffers around it, as the model binds them.
struct Bench {
    sampler: GpuSampler,
    logits: wgpu::Buffer,
    step: wgpu::Buffer,
    tokens: wgpu::Buffer,
    ids: wgpu::Buffer,
    ops: Vec<Op>,
    capacity: usize,
}

impl Bench {
    fn new(n: usize, max_history: usize, capacity: usize) -> Bench {
        let ctx = ctx();
        let sampler = pollster::block_on(GpuSampler::new(ctx, n, max_history)).unwrap();
        let logits = storage_buffer(ctx, "logits", n as u64 * 4);
        let step = step_params_buffer(ctx);
        let tokens = storage_buffer(ctx, "tokens", 4);
        let ids = storage_buffer(ctx, "ids", capacity as u64 * 4);
        let ops = sampler
            .op(ctx, &logits, &step, whole(&tokens), &ids)
            .unwrap();
        Bench {
            sampler,
            logits,
            step,
            tokens,
            ids,
            ops,
            capacity,
        }
    }

    /// Record one sampling step (logits written, step set, ops submitted); nothing is read.
    fn submit(&self, logits: &[f32], step: u32) {
        let ctx = ctx();
        ctx.queue
            .write_buffer(&self.logits, 0, bytemuck::cast_slice(logits));
        let sp = StepParams {
            sample_step: step,
            ..Default::default()
        };
        ctx.queue
            .write_buffer(&self.step, 0, bytemuck::bytes_of(&sp));
        submit_ops(ctx, &self.ops.iter().collect::<Vec<_>>());
    }

    fn read_ids(&self, n: usize) -> Vec<u32> {
        assert!(n <= self.capacity);
        let bytes = pollster::block_on(read_buffer(ctx(), &self.ids, 0, n as u64 * 4)).unwrap();
        bytemuck::pod_collect_to_vec(&bytes)
    }

    fn read_token(&self) -> u32 {
        let bytes = pollster::block_on(read_buffer(ctx(), &self.tokens, 0, 4)).unwrap();
        bytemuck::pod_read_unaligned(&bytes)
    }

    /// Steps 0..logits.len() with `params` and the starting `history`, submitted back to back
    /// and read once at the end (as generation does): the ids drawn.
    fn run(&self, params: &SamplingParams, history: &[u32], logits: &[Vec<f32>]) -> Vec<u32> {
        self.run_masked(params, history, logits, None)
    }

    /// The same with a response format's mask on every step.
    fn run_masked(
        &self,
        params: &SamplingParams,
        history: &[u32],
        logits: &[Vec<f32>],
        mask: Option<&[u32]>,
    ) -> Vec<u32> {
        self.sampler
            .set_params(ctx(), params, None, history)
            .unwrap();
        self.sampler.set_mask(ctx(), mask);
        for (step, l) in logits.iter().enumerate() {
            self.submit(l, step as u32);
        }
        let ids = self.read_ids(logits.len());
        ctx().check().unwrap();
        ids
    }

    /// `count` independent draws from the same logits and history: draw i restarts the sampler
    /// with seed `seed_of(i)` and uses step i (a fresh history each time, so the penalties see
    /// the same window). Everything is queued in order and read once.
    fn draws(
        &self,
        params: &SamplingParams,
        history: &[u32],
        logits: &[f32],
        mask: Option<&[u32]>,
        count: usize,
    ) -> Vec<u32> {
        for i in 0..count {
            let p = SamplingParams {
                seed: seed_of(i),
                ..params.clone()
            };
            self.sampler.set_params(ctx(), &p, None, history).unwrap();
            self.sampler.set_mask(ctx(), mask);
            self.submit(logits, i as u32);
        }
        let ids = self.read_ids(count);
        ctx().check().unwrap();
        ids
    }
}

#[test]
fn uniform_matches_the_cpu_bit_for_bit() {
    const TEST: &str = "
@group(0) @binding(0) var<storage, read> inputs: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read_write> outputs: array<u32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    if (id.x < arrayLength(&outputs)) {
        let v = inputs[id.x];
        outputs[id.x] = bitcast<u32>(uniform01(v.x, v.y, v.z, v.w));
    }
}";
    let ctx = ctx();
    let kernel = pollster::block_on(Kernel::new(
        ctx,
        "uniform test",
        ShaderSource::new(&format!("{SAMPLE_COMMON_WGSL}\n{TEST}")),
    ))
    .unwrap();
    let mut rng = Rng(1);
    let edges = [
        0,
        1,
        2,
        0xffff_ffff,
        1 << 32,
        (1 << 32) + 1,
        u64::MAX - 1,
        u64::MAX,
    ];
    let mut pairs: Vec<(u64, u64)> = Vec::new();
    for &a in &edges {
        for &b in &edges {
            pairs.push((a, b));
        }
    }
    for seed in 0..16u64 {
        for step in 0..256u64 {
            pairs.push((seed, step));
        }
    }
    while pairs.len() < 20_000 {
        let seed = rng.next();
        let step = if rng.below(2) == 0 {
            rng.next() & 0xffff_ffff
        } else {
            rng.next()
        };
        pairs.push((seed, step));
    }
    let words: Vec<u32> = pairs
        .iter()
        .flat_map(|&(seed, step)| {
            [
                seed as u32,
                (seed >> 32) as u32,
                (step >> 32) as u32,
                step as u32,
            ]
        })
        .collect();
    let inputs = storage_buffer(ctx, "inputs", words.len() as u64 * 4);
    ctx.queue
        .write_buffer(&inputs, 0, bytemuck::cast_slice(&words));
    let outputs = storage_buffer(ctx, "outputs", pairs.len() as u64 * 4);
    let op = kernel.op(
        ctx,
        &[whole(&inputs), whole(&outputs)],
        [(pairs.len() as u32).div_ceil(64), 1, 1],
    );
    submit_ops(ctx, &[&op]);
    let bytes = pollster::block_on(read_buffer(ctx, &outputs, 0, pairs.len() as u64 * 4)).unwrap();
    let got: Vec<u32> = bytemuck::pod_collect_to_vec(&bytes);
    for (&(seed, step), &bits) in pairs.iter().zip(&got) {
        assert_eq!(
            bits,
            uniform(seed, step).to_bits(),
            "uniform({seed}, {step}) differs"
        );
    }
}

#[test]
fn greedy_equals_the_cpu_argmax() {
    let n = N_VOCAB;
    let bench = Bench::new(n, 64, 64);
    let mut rng = Rng(2);
    let mut cases: Vec<Vec<f32>> = (0..8).map(|_| lm_logits(&mut rng, n, &[])).collect();
    // Ties: the lowest id wins, wherever the tied ids sit (same chunk, different chunks).
    let mut tie = lm_logits(&mut rng, n, &[]);
    for id in [40_000, 1_025, 7, 1_030, 48_000] {
        tie[id] = 100.0;
    }
    cases.push(tie);
    cases.push(vec![0.5; n]);
    cases.push(tied_logits(&mut rng, n, &[]));
    // +0 ranks above -0 (total order), NaN counts as -inf, all -inf gives id 0, +inf wins.
    let mut zeros = vec![-1.0f32; n];
    zeros[3] = -0.0;
    zeros[9000] = 0.0;
    cases.push(zeros);
    let mut nan = lm_logits(&mut rng, n, &[]);
    nan[5] = f32::NAN;
    nan[6] = f32::INFINITY;
    nan[7] = f32::INFINITY;
    cases.push(nan);
    cases.push(vec![f32::NEG_INFINITY; n]);
    let mut nans = vec![f32::NAN; n];
    nans[n - 1] = -3.0;
    cases.push(nans);
    // The last element of the vocabulary.
    let mut last = vec![0.0f32; n];
    last[n - 1] = 1.0;
    cases.push(last);

    let params = SamplingParams::greedy();
    let got = bench.run(&params, &[], &cases);
    for (i, (l, &g)) in cases.iter().zip(&got).enumerate() {
        let want = Sampler::new(params.clone()).sample(l, &[]);
        assert_eq!(g, want, "case {i}");
    }
    assert_eq!(bench.read_token(), *got.last().unwrap());

    // Bias and penalties apply at temperature 0 too, to the kernel's own history; the mask
    // leaves the best allowed id.
    let history = vec![3u32, 17, 17, 40_000, 17];
    let logits: Vec<Vec<f32>> = (0..24)
        .map(|_| {
            let mut l = lm_logits(&mut rng, n, &[]);
            // Close contenders, some in the history or biased: the adjustments decide.
            l[17] = 20.0;
            l[40_000] = 19.0;
            l[123] = 18.0;
            l[777] = 18.5;
            l[3] = -20.0;
            l
        })
        .collect();
    let mask = random_mask(&mut rng, n, &[17, 123]);
    for (penalized, mask) in [
        (
            SamplingParams {
                repeat_penalty: 1.5,
                repeat_last_n: 8,
                ..SamplingParams::greedy()
            },
            None,
        ),
        (
            SamplingParams {
                frequency_penalty: 0.7,
                presence_penalty: 0.3,
                repeat_last_n: 8,
                logit_bias: [(777, 1.2), (123, -0.25), (n as u32 + 5, 50.0)].into(),
                ..SamplingParams::greedy()
            },
            None,
        ),
        (
            SamplingParams {
                repeat_penalty: 1.1,
                presence_penalty: 2.0,
                repeat_last_n: 8,
                ..SamplingParams::greedy()
            },
            Some(&mask[..]),
        ),
    ] {
        let got = bench.run_masked(&penalized, &history, &logits, mask);
        let mut cpu = Sampler::new(penalized.clone());
        cpu.set_mask(mask.map(|m| m.to_vec()));
        let mut seen = history.clone();
        let mut distinct = std::collections::HashSet::new();
        for (l, &g) in logits.iter().zip(&got) {
            assert_eq!(g, cpu.sample(l, &seen), "{penalized:?}");
            assert!(allowed(mask, g as usize));
            distinct.insert(g);
            seen.push(g);
        }
        // The adjustments change the argmax along the way.
        assert!(distinct.len() > 1, "{penalized:?}: always {distinct:?}");
    }
}

/// Named settings for the step-by-step comparison.
fn settings() -> Vec<(&'static str, SamplingParams)> {
    let base = SamplingParams {
        seed: 0x5eed_0000_0001,
        ..SamplingParams::greedy()
    };
    vec![
        (
            "temperature",
            SamplingParams {
                temperature: 0.8,
                ..base.clone()
            },
        ),
        (
            "top-k",
            SamplingParams {
                temperature: 1.0,
                top_k: 40,
                ..base.clone()
            },
        ),
        (
            "top-p",
            SamplingParams {
                temperature: 1.0,
                top_p: 0.9,
                ..base.clone()
            },
        ),
        (
            "min-p",
            SamplingParams {
                temperature: 1.2,
                min_p: 0.05,
                ..base.clone()
            },
        ),
        (
            "penalty + temperature",
            SamplingParams {
                temperature: 0.7,
                repeat_penalty: 1.3,
                repeat_last_n: 64,
                ..base.clone()
            },
        ),
        (
            "all (llama.cpp defaults + penalty)",
            SamplingParams {
                repeat_penalty: 1.1,
                seed: base.seed,
                ..SamplingParams::default()
            },
        ),
        (
            "presence, frequency, bias",
            SamplingParams {
                temperature: 0.9,
                top_p: 0.95,
                presence_penalty: 0.6,
                frequency_penalty: 0.4,
                repeat_last_n: 64,
                logit_bias: [(0, 3.0), (11, 6.0), (777, -100.0), (1_000_000, 1.0)].into(),
                ..base.clone()
            },
        ),
        (
            "top-k beyond the chunks + top-p",
            SamplingParams {
                temperature: 1.5,
                top_k: 3000,
                top_p: 0.98,
                ..base.clone()
            },
        ),
        (
            "top-k > n_vocab, top-p 1, min-p 0",
            SamplingParams {
                temperature: 0.5,
                top_k: 1_000_000,
                ..base.clone()
            },
        ),
    ]
}

/// Runs `steps` steps of each setting on the GPU (with `mask` on every step, if given) and
/// replays them on the CPU with the same history (the GPU's draws); returns, per setting, the
/// steps whose choices differ.
fn compare_with_cpu(
    n: usize,
    steps: usize,
    seed: u64,
    masked: bool,
) -> Vec<(&'static str, Vec<usize>)> {
    let bench = Bench::new(n, 64, steps);
    let mut out = Vec::new();
    for (name, params) in settings() {
        let mut rng = Rng(seed);
        let prompt: Vec<u32> = (0..20).map(|_| rng.below(n) as u32).collect();
        // Every fourth step has tied logits, so ties meet every cut.
        let logits: Vec<Vec<f32>> = (0..steps)
            .map(|s| {
                if s % 4 == 3 {
                    tied_logits(&mut rng, n, &prompt)
                } else {
                    lm_logits(&mut rng, n, &prompt)
                }
            })
            .collect();
        let mask = masked.then(|| random_mask(&mut rng, n, &prompt[..4]));
        let got = bench.run_masked(&params, &prompt, &logits, mask.as_deref());
        let mut cpu = Sampler::new(params.clone());
        cpu.set_mask(mask.clone());
        let mut history = prompt.clone();
        let mut differ = Vec::new();
        for (s, (l, &g)) in logits.iter().zip(&got).enumerate() {
            assert!((g as usize) < n, "{name}: id {g} out of range");
            assert!(
                allowed(mask.as_deref(), g as usize),
                "{name}: masked id {g}"
            );
            if cpu.sample(l, &history) != g {
                differ.push(s);
            }
            history.push(g);
        }
        // The ring holds the last 64 ids: the prompt's tail and the draws.
        let ring = pollster::block_on(bench.sampler.read_history(ctx())).unwrap();
        assert_eq!(
            ring,
            history[history.len().saturating_sub(64)..],
            "{name}: history"
        );
        out.push((name, differ));
    }
    out
}

// Both sides draw with the same u from the same definition and walk the kept ids in id order,
// so they choose differently only where the GPU's f32 sums (fixed order: strips of n_vocab / 256
// ids, then 256 strip sums; relative error ~1e-6) and the CPU's f64 ones fall on different sides
// of a boundary: u * total against a cumulative weight, or top_p * Z against the mass above a
// cut. Per step that is about (kept ids near the boundary) x 1e-6, well under 1% for these
// logits (seen: 0 to 1 step of 200 per setting). A real error (another cut, sorted order, the
// temperature applied twice) changes most steps. Allowed: 2% of the steps, at least 1.
fn allowed_mismatches(steps: usize) -> usize {
    (steps / 50).max(1)
}

#[test]
fn choices_equal_the_cpu_step_by_step() {
    for masked in [false, true] {
        for (name, differ) in compare_with_cpu(N_VOCAB, 200, 3, masked) {
            eprintln!("{name}, masked {masked}: steps that differ: {differ:?}");
            assert!(
                differ.len() <= allowed_mismatches(200),
                "{name}, masked {masked}: steps {differ:?} differ"
            );
        }
    }
}

#[test]
fn choices_equal_the_cpu_on_small_odd_and_large_vocabularies() {
    // Smaller than one strip per invocation, not a multiple of a chunk, a chunk plus one, and
    // Gemma 3's vocabulary (strips of 1024 ids).
    for (n, steps) in [(50, 40), (5003, 40), (1025, 40), (262_144, 24)] {
        for (name, differ) in compare_with_cpu(n, steps, n as u64, n == 5003) {
            eprintln!("n_vocab {n}, {name}: steps that differ: {differ:?}");
            assert!(
                differ.len() <= allowed_mismatches(steps),
                "n_vocab {n}, {name}: steps {differ:?} differ"
            );
        }
    }
}

#[test]
fn flat_logits_over_a_large_vocabulary() {
    // qwen2's vocabulary with every logit equal, or nearly. Equal logits weigh 1 each, so the
    // GPU's f32 sums are exact integers (below 2^24) and its choice must equal the CPU's; nearly
    // equal ones put ~150k boundaries close together, the hardest case for agreement.
    let n = 151_936;
    let bench = Bench::new(n, 64, 8);
    let mut rng = Rng(6);
    let flat = vec![vec![0.25f32; n]; 8];
    let near: Vec<Vec<f32>> = (0..8)
        .map(|_| (0..n).map(|_| (0.01 * rng.normal()) as f32).collect())
        .collect();
    for params in [
        SamplingParams {
            temperature: 1.0,
            seed: 11,
            ..SamplingParams::greedy()
        },
        SamplingParams {
            temperature: 2.0,
            top_p: 0.5,
            seed: 12,
            ..SamplingParams::greedy()
        },
    ] {
        let got = bench.run(&params, &[], &flat);
        let mut cpu = Sampler::new(params.clone());
        let want: Vec<u32> = flat.iter().map(|l| cpu.sample(l, &[])).collect();
        assert_eq!(got, want, "{params:?}");
        let got = bench.run(&params, &[], &near);
        let mut cpu = Sampler::new(params.clone());
        let same = near
            .iter()
            .zip(&got)
            .filter(|(l, &g)| cpu.sample(l, &[]) == g)
            .count();
        // Boundaries 1/150k of the total apart against a relative error ~1e-6: most agree.
        assert!(same >= 6, "{params:?}: {same} of 8 agree");
    }
}

#[test]
fn the_same_seed_gives_the_same_sequence_and_the_history_records_it() {
    let n = N_VOCAB;
    let bench = Bench::new(n, 256, 48);
    let mut rng = Rng(7);
    let logits: Vec<Vec<f32>> = (0..48).map(|_| lm_logits(&mut rng, n, &[])).collect();
    for params in [
        SamplingParams {
            seed: 7,
            repeat_penalty: 1.1,
            ..SamplingParams::default()
        },
        SamplingParams {
            seed: 7,
            top_k: 0,
            temperature: 1.3,
            frequency_penalty: 0.5,
            logit_bias: [(5, 2.0)].into(),
            ..SamplingParams::default()
        },
    ] {
        let prompt = [5u32, 6, 7];
        let first = bench.run(&params, &prompt, &logits);
        let history = pollster::block_on(bench.sampler.read_history(ctx())).unwrap();
        assert_eq!(history, [&prompt[..], &first[..]].concat());
        assert_eq!(bench.read_token(), first[47]);
        // set_params starts over: the same seed, the same ids.
        assert_eq!(bench.run(&params, &prompt, &logits), first);
        for seed in [8, 7 + (1 << 32)] {
            let other = SamplingParams {
                seed,
                ..params.clone()
            };
            assert_ne!(bench.run(&other, &prompt, &logits), first, "seed {seed}");
        }
    }
}

#[test]
fn bad_arguments_are_errors() {
    let ctx = ctx();
    assert!(pollster::block_on(GpuSampler::new(ctx, 0, 64)).is_err());
    assert!(pollster::block_on(GpuSampler::new(ctx, 100, 0)).is_err());
    assert!(pollster::block_on(GpuSampler::new(ctx, 1 << 24, 64)).is_err());
    let bench = Bench::new(1000, 16, 4);
    // A window longer than the ring, with any penalty on.
    for too_long in [
        SamplingParams {
            repeat_penalty: 1.1,
            repeat_last_n: 17,
            ..SamplingParams::default()
        },
        SamplingParams {
            presence_penalty: 0.5,
            repeat_last_n: 17,
            ..SamplingParams::default()
        },
        SamplingParams {
            frequency_penalty: -0.5,
            repeat_last_n: 17,
            ..SamplingParams::default()
        },
    ] {
        let err = bench
            .sampler
            .set_params(ctx, &too_long, None, &[])
            .unwrap_err();
        assert_eq!(err.code(), "INVALID_ARGUMENT");
    }
    // A window longer than the ring is fine when the penalties are off.
    let off = SamplingParams {
        repeat_last_n: 17,
        ..SamplingParams::default()
    };
    bench.sampler.set_params(ctx, &off, None, &[]).unwrap();
    for invalid in [
        SamplingParams {
            top_p: 0.0,
            ..SamplingParams::default()
        },
        SamplingParams {
            presence_penalty: 2.5,
            ..SamplingParams::default()
        },
        SamplingParams {
            frequency_penalty: f32::NAN,
            ..SamplingParams::default()
        },
        SamplingParams {
            logit_bias: [(3, 101.0)].into(),
            ..SamplingParams::default()
        },
        SamplingParams {
            logit_bias: (0..1025).map(|i| (i, 1.0)).collect(),
            ..SamplingParams::default()
        },
    ] {
        let err = bench
            .sampler
            .set_params(ctx, &invalid, None, &[])
            .unwrap_err();
        assert_eq!(err.code(), "INVALID_ARGUMENT", "{invalid:?}");
    }
    let small = storage_buffer(ctx, "small logits", 999 * 4);
    let ops = bench
        .sampler
        .op(ctx, &small, &bench.step, whole(&bench.tokens), &bench.ids);
    assert!(matches!(ops, Err(e) if e.code() == "INVALID_ARGUMENT"));
    ctx.check().unwrap();
}

/// The order-preserving key of a logit (f32::total_cmp's order as an integer): equal keys are
/// what the cuts treat as ties.
fn key(l: f32) -> u32 {
    let b = l.to_bits();
    if b >> 31 == 1 {
        !b
    } else {
        b | 1 << 31
    }
}

/// The sampling definition (the top of src/sampler.rs), written again here from the
/// documentation, by thresholds instead of a sorted walk: the probability of each id (f64;
/// ids that cannot be drawn left out), and how far (as a fraction of the weight the top-p cut
/// uses) top-p's and min-p's comparisons are from flipping, for choosing test logits whose
/// kept set no rounding can change.
fn expected_distribution(
    logits: &[f32],
    history: &[u32],
    p: &SamplingParams,
    mask: Option<&[u32]>,
) -> (Vec<(u32, f64)>, f64) {
    // Bias, then the penalties over the window, in f32 as specified.
    let mut l: Vec<f32> = logits
        .iter()
        .map(|&x| if x.is_nan() { f32::NEG_INFINITY } else { x })
        .collect();
    for (&id, &b) in &p.logit_bias {
        if (id as usize) < l.len() {
            l[id as usize] += b;
        }
    }
    if p.repeat_last_n > 0
        && (p.repeat_penalty != 1.0 || p.presence_penalty != 0.0 || p.frequency_penalty != 0.0)
    {
        let mut counts: HashMap<u32, u32> = HashMap::new();
        for &t in &history[history.len().saturating_sub(p.repeat_last_n)..] {
            *counts.entry(t).or_default() += 1;
        }
        for (&t, &c) in &counts {
            if let Some(x) = l.get_mut(t as usize) {
                *x = if *x > 0.0 {
                    *x / p.repeat_penalty
                } else {
                    *x * p.repeat_penalty
                };
                *x -= c as f32 * p.frequency_penalty + p.presence_penalty;
            }
        }
    }
    let ids: Vec<usize> = (0..l.len()).filter(|&i| allowed(mask, i)).collect();
    let best = *ids
        .iter()
        .max_by(|&&a, &&b| key(l[a]).cmp(&key(l[b])).then(b.cmp(&a)))
        .unwrap();
    let m = l[best] as f64;
    if p.temperature <= 0.0 || !m.is_finite() {
        return (vec![(best as u32, 1.0)], f64::INFINITY);
    }
    // Distinct keys, descending, with the number of ids and the weight exp(l - M) of each.
    let mut groups: BTreeMap<u32, (usize, f64)> = BTreeMap::new();
    for &i in &ids {
        let g = groups.entry(key(l[i])).or_default();
        g.0 += 1;
        g.1 += (l[i] as f64 - m).exp();
    }
    let desc: Vec<(u32, (usize, f64))> = groups.into_iter().rev().collect();
    // Top-k: the key of the k-th largest logit.
    let mut cut = 0u32;
    if p.top_k > 0 && p.top_k < ids.len() {
        let mut seen = 0;
        for &(k, (count, _)) in &desc {
            seen += count;
            if seen >= p.top_k {
                cut = k;
                break;
            }
        }
    }
    let mut margin = f64::INFINITY;
    if p.top_p < 1.0 {
        let z: f64 = desc.iter().filter(|g| g.0 >= cut).map(|g| g.1 .1).sum();
        let goal = p.top_p as f64 * z;
        let mut mass = 0.0;
        for &(k, (_, w)) in desc.iter().filter(|g| g.0 >= cut) {
            margin = margin.min((goal - mass).abs() / z);
            mass += w;
            margin = margin.min((mass - goal).abs() / z);
            if mass >= goal {
                cut = k;
                break;
            }
        }
    }
    let keep = |i: usize| {
        key(l[i]) >= cut && (l[i] as f64 - m).exp() >= p.min_p as f64 && l[i] != f32::NEG_INFINITY
    };
    if p.min_p > 0.0 {
        for &i in &ids {
            let w = (l[i] as f64 - m).exp();
            margin = margin.min((w - p.min_p as f64).abs() / p.min_p as f64);
        }
    }
    let t = p.temperature as f64;
    let weights: Vec<(u32, f64)> = ids
        .iter()
        .filter(|&&i| keep(i))
        .map(|&i| (i as u32, ((l[i] as f64 - m) / t).exp()))
        .collect();
    let total: f64 = weights.iter().map(|w| w.1).sum();
    let probs = weights
        .into_iter()
        .filter(|w| w.1 > 0.0)
        .map(|(i, w)| (i, w / total))
        .collect();
    (probs, margin)
}

/// Pearson's chi-square of `draws` against `probs`: one bin per id expecting at least 5 draws,
/// the rest pooled into one bin (merged into the last bin if it expects fewer than 5).
/// Asserts that nothing outside `probs` was drawn. Returns (statistic, degrees of freedom).
fn chi_square(draws: &[u32], probs: &[(u32, f64)]) -> (f64, usize) {
    let n = draws.len() as f64;
    let mut counts: HashMap<u32, u64> = HashMap::new();
    for &d in draws {
        *counts.entry(d).or_default() += 1;
    }
    let outside: Vec<_> = counts
        .iter()
        .filter(|(id, _)| !probs.iter().any(|(p, _)| p == *id))
        .collect();
    assert!(
        outside.is_empty(),
        "drawn outside the kept set: {outside:?}"
    );
    let mut bins: Vec<(f64, f64)> = Vec::new();
    let (mut pooled_expected, mut pooled_count) = (0.0, 0.0);
    for &(id, p) in probs {
        let c = counts.get(&id).copied().unwrap_or(0) as f64;
        if p * n >= 5.0 {
            bins.push((p * n, c));
        } else {
            pooled_expected += p * n;
            pooled_count += c;
        }
    }
    if pooled_expected >= 5.0 || bins.is_empty() {
        bins.push((pooled_expected, pooled_count));
    } else {
        let last = bins.last_mut().unwrap();
        last.0 += pooled_expected;
        last.1 += pooled_count;
    }
    let chi2 = bins.iter().map(|(e, c)| (c - e).powi(2) / e).sum();
    (chi2, bins.len() - 1)
}

/// The chi-square quantile that a correct sampler exceeds with probability 1e-4
/// (Wilson-Hilferty; z = 3.719). About 15 settings are tested, so a correct sampler fails one
/// with probability ~0.15%; the draws are deterministic (fixed seeds), so a run that passes
/// always passes. A wrong cut or temperature moves tens of percent of the mass: with 2000
/// draws that is a chi-square in the hundreds.
fn chi_square_bound(df: usize) -> f64 {
    let k = df.max(1) as f64;
    k * (1.0 - 2.0 / (9.0 * k) + 3.719 * (2.0 / (9.0 * k)).sqrt()).powi(3)
}

/// A chi-square case: logits of `n` ids, the sampler's history and mask, and the parameters.
struct Case<'a> {
    name: &'a str,
    logits: Vec<f32>,
    history: Vec<u32>,
    mask: Option<Vec<u32>>,
    params: SamplingParams,
}

/// How far from flipping (as a fraction of the total weight) a cut must be for the GPU's f32
/// sums to leave it where the definition puts it: twice the worst-case error of a sequential f32
/// sum (additions x 2^-24 of the total) along the longest chain of additions in `sample_pick`
/// (a strip of n / 256 ids, a pair, 128 pair sums, up to 120 buckets of earlier levels).
fn margin_needed(n: usize) -> f64 {
    2.0 * (n.div_ceil(256) + 250) as f64 / 16_777_216.0
}

/// Logits for a chi-square case: a Gaussian background (`offset`, `spread`) with the ids of
/// `ladder` lifted to 7.0, 6.7, 6.4, ... Drawn again (new background) until no cut is within
/// rounding of flipping, so the GPU's kept set must be the definition's exactly.
#[allow(clippy::too_many_arguments)]
fn case_logits(
    rng: &mut Rng,
    n: usize,
    (offset, spread): (f64, f64),
    ladder: &[u32],
    params: &SamplingParams,
    history: &[u32],
    mask: Option<&[u32]>,
) -> Vec<f32> {
    for _ in 0..100 {
        let mut l: Vec<f32> = (0..n)
            .map(|_| (offset + spread * rng.normal()) as f32)
            .collect();
        for (j, &id) in ladder.iter().enumerate() {
            l[id as usize] = 7.0 - 0.3 * j as f32;
        }
        if expected_distribution(&l, history, params, mask).1 > margin_needed(n) {
            return l;
        }
    }
    panic!("no unambiguous logits for {params:?}");
}

/// Chi-square of the GPU's draws (and, on small vocabularies, the CPU's with the same seeds and
/// steps) against the definition.
fn check_distribution(bench: &Bench, case: &Case, count: usize) {
    let (probs, margin) = expected_distribution(
        &case.logits,
        &case.history,
        &case.params,
        case.mask.as_deref(),
    );
    let gpu = bench.draws(
        &case.params,
        &case.history,
        &case.logits,
        case.mask.as_deref(),
        count,
    );
    let (chi_gpu, df) = chi_square(&gpu, &probs);
    let bound = chi_square_bound(df);
    let mut line = format!(
        "{}: {} ids kept, margin {margin:.1e}; GPU chi-square {chi_gpu:.1} ({df} df, bound {bound:.1})",
        case.name,
        probs.len()
    );
    if case.logits.len() <= 8192 {
        let cpu: Vec<u32> = (0..count)
            .map(|i| {
                let mut s = Sampler::new(SamplingParams {
                    seed: seed_of(i),
                    ..case.params.clone()
                });
                s.set_mask(case.mask.clone());
                for _ in 0..i {
                    s.advance();
                }
                s.sample(&case.logits, &case.history)
            })
            .collect();
        let (chi_cpu, _) = chi_square(&cpu, &probs);
        let same = cpu.iter().zip(&gpu).filter(|(a, b)| a == b).count();
        line += &format!(", CPU {chi_cpu:.1}; {same} of {count} draws equal");
        assert!(chi_cpu < bound, "{line}");
        // Same u, same kept set: only rounding at a boundary separates them.
        assert!(same * 100 >= count * 98, "{line}");
    }
    eprintln!("{line}");
    assert!(chi_gpu < bound, "{line}");
}

#[test]
fn draws_over_many_seeds_follow_the_definition() {
    let n = 8192;
    let count = 2000;
    let bench = Bench::new(n, 64, count);
    let mut rng = Rng(4);
    // Ids 0..12 of the ladder are in the history (some twice), so the penalties move them.
    let ladder: Vec<u32> = (0..20).map(|_| rng.below(n) as u32).collect();
    let history: Vec<u32> = (0..40).map(|i| ladder[i % 12 + i / 36]).collect();
    let greedy = SamplingParams::greedy();
    let settings = [
        (
            "top_k 0 + top_p 0.9",
            SamplingParams {
                temperature: 0.9,
                top_p: 0.9,
                ..greedy.clone()
            },
            (-4.0, 1.2),
        ),
        (
            "top_k 0 + top_p 0.98, the cut in the background",
            SamplingParams {
                temperature: 1.0,
                top_p: 0.98,
                ..greedy.clone()
            },
            (-8.0, 3.0),
        ),
        (
            "top_k 10 + min_p",
            SamplingParams {
                temperature: 1.3,
                top_k: 10,
                min_p: 0.02,
                ..greedy.clone()
            },
            (0.0, 1.2),
        ),
        (
            "min_p alone",
            SamplingParams {
                temperature: 1.0,
                min_p: 0.05,
                ..greedy.clone()
            },
            (0.0, 1.5),
        ),
        (
            "high temperature, no filter",
            SamplingParams {
                temperature: 2.5,
                ..greedy.clone()
            },
            (-9.0, 1.0),
        ),
        (
            "llama.cpp defaults + repetition penalty",
            SamplingParams {
                repeat_penalty: 1.3,
                ..SamplingParams::default()
            },
            (0.0, 1.2),
        ),
        (
            "presence + frequency",
            SamplingParams {
                temperature: 1.0,
                top_p: 0.9,
                presence_penalty: 1.5,
                frequency_penalty: 0.8,
                repeat_last_n: 40,
                ..greedy.clone()
            },
            (-7.0, 1.2),
        ),
        (
            "logit_bias (the best id banned, two background ids lifted)",
            SamplingParams {
                temperature: 1.0,
                top_k: 30,
                logit_bias: [
                    (ladder[0], -100.0),
                    (ladder[15], 2.0),
                    (1, 8.5),
                    (8191, 6.0),
                ]
                .into_iter()
                .chain((100..150).map(|i| (i * 50, -3.0)))
                .collect(),
                ..greedy.clone()
            },
            (0.0, 1.2),
        ),
    ];
    for (name, params, background) in settings {
        let logits = case_logits(&mut rng, n, background, &ladder, &params, &history, None);
        let case = Case {
            name,
            logits,
            history: history.clone(),
            mask: None,
            params,
        };
        check_distribution(&bench, &case, count);
    }
    // A response format's mask: half the ids (the ladder's best among the masked ones).
    let params = SamplingParams {
        temperature: 1.1,
        top_p: 0.95,
        ..greedy.clone()
    };
    let mask = random_mask(&mut rng, n, &ladder[4..]);
    let logits = case_logits(&mut rng, n, (-4.0, 1.2), &ladder, &params, &[], Some(&mask));
    let case = Case {
        name: "mask",
        logits,
        history: Vec::new(),
        mask: Some(mask),
        params,
    };
    check_distribution(&bench, &case, count);
}

#[test]
fn draws_follow_the_definition_on_small_odd_and_large_vocabularies() {
    let mut rng = Rng(9);
    for (n, count, params, background) in [
        (
            50,
            2000,
            SamplingParams {
                temperature: 0.8,
                top_k: 20,
                top_p: 0.9,
                ..SamplingParams::greedy()
            },
            (2.0, 2.0),
        ),
        (
            1025,
            2000,
            SamplingParams {
                temperature: 1.2,
                min_p: 0.01,
                repeat_penalty: 1.5,
                repeat_last_n: 16,
                ..SamplingParams::greedy()
            },
            (0.0, 1.5),
        ),
        // The top-p cut in a large background.
        (
            5003,
            2000,
            SamplingParams {
                temperature: 1.0,
                top_p: 0.8,
                ..SamplingParams::greedy()
            },
            (0.0, 1.5),
        ),
        // Gemma 3's vocabulary: top_k 0 + top_p (the cut on the ladder), and the whole
        // vocabulary at a high temperature.
        (
            262_144,
            1000,
            SamplingParams {
                temperature: 1.0,
                top_p: 0.95,
                ..SamplingParams::greedy()
            },
            (-8.0, 1.0),
        ),
        // (The background holds ~80% of the weight.)
        (
            262_144,
            1000,
            SamplingParams {
                temperature: 3.0,
                ..SamplingParams::greedy()
            },
            (-20.0, 1.0),
        ),
    ] {
        let bench = Bench::new(n, 64, count);
        let ladder: Vec<u32> = (0..16).map(|_| rng.below(n) as u32).collect();
        let history: Vec<u32> = ladder[..8].to_vec();
        let logits = case_logits(&mut rng, n, background, &ladder, &params, &history, None);
        let name = format!("n_vocab {n}");
        let case = Case {
            name: &name,
            logits,
            history,
            mask: None,
            params,
        };
        check_distribution(&bench, &case, count);
    }
}

#[test]
fn ties_at_a_cut_are_all_kept() {
    let n = 4096;
    let count = 2000;
    let bench = Bench::new(n, 64, count);
    let mut rng = Rng(10);
    let mut logits: Vec<f32> = (0..n).map(|_| (rng.normal() - 3.0) as f32).collect();
    // Two clear leaders, then eight ids tied, spread over the vocabulary (several strips and
    // chunks).
    logits[3000] = 6.0;
    logits[17] = 5.5;
    let tied = [5u32, 600, 601, 1500, 2047, 2048, 3999, 4095];
    for &id in &tied {
        logits[id as usize] = 4.0;
    }
    for (name, params) in [
        // The 3rd largest is 4.0: all eight tied ids are kept with the two leaders.
        (
            "top_k 3",
            SamplingParams {
                temperature: 1.0,
                top_k: 3,
                ..SamplingParams::greedy()
            },
        ),
        // In the top 12 the leaders weigh 0.37 and 0.23, the tie 0.40: p = 0.7 is reached
        // inside the tie.
        (
            "top_p 0.7",
            SamplingParams {
                temperature: 1.0,
                top_k: 12,
                top_p: 0.7,
                ..SamplingParams::greedy()
            },
        ),
        (
            "min_p at the tie",
            SamplingParams {
                temperature: 1.0,
                min_p: (-2.0f32).exp() * 0.999,
                ..SamplingParams::greedy()
            },
        ),
    ] {
        let (probs, _) = expected_distribution(&logits, &[], &params, None);
        let mut kept: Vec<u32> = probs.iter().map(|p| p.0).collect();
        kept.sort();
        let mut want = [&tied[..], &[17, 3000]].concat();
        want.sort();
        assert_eq!(kept, want, "{name}: the definition keeps the ties");
        let draws = bench.draws(&params, &[], &logits, None, count);
        for &id in &tied {
            assert!(draws.contains(&id), "{name}: tied id {id} never drawn");
        }
        let (chi2, df) = chi_square(&draws, &probs);
        eprintln!("{name}: chi-square {chi2:.1} ({df} df)");
        assert!(chi2 < chi_square_bound(df), "{name}: chi-square {chi2}");
    }
}

/// Time per sampling op (both dispatches, submitted and waited for one at a time) for greedy,
/// llama.cpp's defaults (top_k 40) and top_k 0 + top_p 0.95, at n_vocab 49152 and 151936:
/// `cargo test --release --test gpu_sample -- --ignored --nocapture sampling_op_timings`.
#[test]
#[ignore]
fn sampling_op_timings() {
    let ctx = ctx();
    eprintln!("adapter: {}", ctx.describe());
    let all = [
        ("greedy", SamplingParams::greedy()),
        ("default (top_k 40)", SamplingParams::default()),
        (
            "top_k 0 + top_p 0.95",
            SamplingParams {
                top_k: 0,
                top_p: 0.95,
                min_p: 0.0,
                ..SamplingParams::default()
            },
        ),
    ];
    for n in [49152, 151_936] {
        let bench = Bench::new(n, 64, 8);
        let mut rng = Rng(5);
        let steps: Vec<Vec<f32>> = (0..8).map(|_| lm_logits(&mut rng, n, &[])).collect();
        // Warm up: the first submits after creating the buffers are slower (lavapipe on a
        // 2-core machine: greedy measured first took 2.8 ms instead of 0.35 ms).
        for (_, params) in &all {
            bench.run(params, &[1, 2, 3], &steps);
        }
        for (name, params) in &all {
            bench
                .sampler
                .set_params(ctx, params, None, &[1, 2, 3])
                .unwrap();
            let mut times = Vec::new();
            for round in 0..4 {
                for (s, logits) in steps.iter().enumerate() {
                    ctx.queue
                        .write_buffer(&bench.logits, 0, bytemuck::cast_slice(logits));
                    ctx.device
                        .poll(wgpu::PollType::wait_indefinitely())
                        .unwrap();
                    let start = std::time::Instant::now();
                    bench.submit(logits, (round * steps.len() + s) as u32);
                    ctx.device
                        .poll(wgpu::PollType::wait_indefinitely())
                        .unwrap();
                    times.push(start.elapsed().as_secs_f64() * 1e3);
                }
            }
            times.sort_by(|a, b| a.total_cmp(b));
            eprintln!(
                "n_vocab {n}, {name}: median {:.2} ms, min {:.2} ms, max {:.2} ms",
                times[times.len() / 2],
                times[0],
                times[times.len() - 1]
            );
        }
    }
}

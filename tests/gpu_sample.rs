//! The GPU sampler (`gpu::kernels::sample`) against the CPU sampler (`sampler.rs`), on the
//! machine's adapter (lavapipe in CI): greedy picks, the random number generator bit for bit,
//! step-by-step choices under every filter, the distribution of draws, determinism, and the
//! history the kernel appends to.

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

/// Logits shaped like a language model's: a Gaussian background of width `spread` and a few
/// boosted ids (some of them from `favour`, e.g. recent tokens, so a penalty matters), with a
/// random sharpness, so the draws cover peaked and flat steps.
fn lm_logits(rng: &mut Rng, n: usize, favour: &[u32]) -> Vec<f32> {
    let spread = 1.0 + 1.5 * rng.unit();
    let mut l: Vec<f32> = (0..n).map(|_| (spread * rng.normal()) as f32).collect();
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
        self.sampler.set_params(ctx(), params, history).unwrap();
        for (step, l) in logits.iter().enumerate() {
            self.submit(l, step as u32);
        }
        let ids = self.read_ids(logits.len());
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

    // The repetition penalty applies at temperature 0 too, to the kernel's own history.
    let penalized = SamplingParams {
        repeat_penalty: 1.5,
        repeat_last_n: 8,
        ..SamplingParams::greedy()
    };
    let history = vec![3u32, 17, 17, 40_000];
    let logits: Vec<Vec<f32>> = (0..24)
        .map(|_| {
            let mut l = lm_logits(&mut rng, n, &[]);
            // Close contenders, some in the history: the penalty decides.
            l[17] = 20.0;
            l[40_000] = 19.0;
            l[123] = 18.0;
            l[3] = -20.0;
            l
        })
        .collect();
    let got = bench.run(&penalized, &history, &logits);
    let mut cpu = Sampler::new(penalized.clone());
    let mut seen = history.clone();
    for (l, &g) in logits.iter().zip(&got) {
        assert_eq!(g, cpu.sample(l, &seen));
        seen.push(g);
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
            "top-k beyond the sorted head + top-p",
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

/// Runs `steps` steps of each setting on the GPU and replays them on the CPU with the same
/// history (the GPU's draws); returns, per setting, the steps whose choices differ.
fn compare_with_cpu(n: usize, steps: usize, seed: u64) -> Vec<(&'static str, Vec<usize>)> {
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
        let got = bench.run(&params, &prompt, &logits);
        let mut cpu = Sampler::new(params.clone());
        let mut history = prompt.clone();
        let mut differ = Vec::new();
        for (s, (l, &g)) in logits.iter().zip(&got).enumerate() {
            assert!((g as usize) < n, "{name}: id {g} out of range");
            if cpu.sample(l, &history) != g {
                differ.push(s);
            }
            history.push(g);
        }
        // The ring holds the last 64 ids: the prompt's tail and the draws.
        let ring = pollster::block_on(bench.sampler.read_history(ctx())).unwrap();
        assert_eq!(ring, history[history.len() - 64..], "{name}: history");
        out.push((name, differ));
    }
    out
}

// Exact equality is expected: the kept sets and the order of the head's sums are the CPU's; what
// differs is the rounding of exp and division (and, beyond the 1024-element sorted head, the
// order of the tail's sums), so a choice differs only when u falls within ~1e-6 of a boundary
// of the cumulative distribution. Allowed: 1 such step per setting (0 seen).
const ALLOWED_MISMATCHES: usize = 1;

#[test]
fn choices_equal_the_cpu_step_by_step() {
    for (name, differ) in compare_with_cpu(N_VOCAB, 200, 3) {
        eprintln!("{name}: {} of 200 steps differ {differ:?}", differ.len());
        assert!(
            differ.len() <= ALLOWED_MISMATCHES,
            "{name}: steps {differ:?} differ"
        );
    }
}

#[test]
fn choices_equal_the_cpu_on_small_and_odd_vocabularies() {
    // Smaller than the sorted head, not a multiple of a chunk, and a chunk plus one.
    for (n, steps) in [(50, 100), (5003, 100), (1025, 100)] {
        for (name, differ) in compare_with_cpu(n, steps, n as u64) {
            assert!(
                differ.len() <= ALLOWED_MISMATCHES,
                "n_vocab {n}, {name}: steps {differ:?} differ"
            );
        }
    }
}

/// The probabilities the chain gives (f64, sorted arithmetic), as (id, p) with p > 0.
fn expected_distribution(logits: &[f32], p: &SamplingParams) -> Vec<(u32, f64)> {
    let mut cand: Vec<(u32, f64)> = logits
        .iter()
        .enumerate()
        .map(|(i, &l)| (i as u32, l as f64))
        .collect();
    cand.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    if p.top_k > 0 && p.top_k < cand.len() {
        cand.truncate(p.top_k);
    }
    let max = cand[0].1;
    let e: Vec<f64> = cand.iter().map(|c| (c.1 - max).exp()).collect();
    let sum: f64 = e.iter().sum();
    let mut keep = cand.len();
    if p.top_p < 1.0 {
        let mut cum = 0.0;
        keep = e
            .iter()
            .position(|&x| {
                cum += x / sum;
                cum >= p.top_p as f64
            })
            .map_or(keep, |i| i + 1);
    }
    if p.min_p > 0.0 {
        let thr = p.min_p as f64 * e[0] / sum;
        keep = e[..keep]
            .iter()
            .take_while(|&&x| x / sum >= thr)
            .count()
            .max(1);
    }
    cand.truncate(keep);
    let w: Vec<f64> = cand
        .iter()
        .map(|c| ((c.1 - max) / p.temperature as f64).exp())
        .collect();
    let total: f64 = w.iter().sum();
    cand.iter()
        .zip(&w)
        .map(|(c, &w)| (c.0, w / total))
        .collect()
}

/// Chi-square of `counts` (by id) against `probs`; ids with expected counts below 5 are pooled
/// into one bin. Returns (statistic, degrees of freedom).
fn chi_square(
    counts: &std::collections::HashMap<u32, u64>,
    probs: &[(u32, f64)],
    n: u64,
) -> (f64, usize) {
    let mut chi2 = 0.0;
    let mut bins = 0;
    let (mut pooled_expected, mut pooled_count) = (0.0, 0u64);
    for &(id, p) in probs {
        let expected = p * n as f64;
        let c = counts.get(&id).copied().unwrap_or(0);
        if expected >= 5.0 {
            chi2 += (c as f64 - expected).powi(2) / expected;
            bins += 1;
        } else {
            pooled_expected += expected;
            pooled_count += c;
        }
    }
    if pooled_expected >= 5.0 {
        chi2 += (pooled_count as f64 - pooled_expected).powi(2) / pooled_expected;
        bins += 1;
    }
    let outside: u64 = counts
        .iter()
        .filter(|(id, _)| !probs.iter().any(|(p, _)| p == *id))
        .map(|(_, c)| c)
        .sum();
    assert_eq!(outside, 0, "draws outside the kept set");
    (chi2, bins - 1)
}

#[test]
fn draws_over_many_seeds_follow_the_cpu_distribution() {
    let n = N_VOCAB;
    let (seeds, per_seed) = (50u64, 60usize);
    let draws = seeds * per_seed as u64;
    let bench = Bench::new(n, 64, per_seed);
    let mut rng = Rng(4);
    // A fixed step: a dozen likely ids over a Gaussian background.
    let mut logits: Vec<f32> = (0..n).map(|_| (1.2 * rng.normal()) as f32).collect();
    for (j, id) in [
        11usize, 4000, 4001, 9999, 20000, 30001, 45000, 49151, 777, 1234, 31337, 2,
    ]
    .into_iter()
    .enumerate()
    {
        logits[id] = 9.0 - 0.35 * j as f32;
    }
    let configs = [
        SamplingParams {
            temperature: 0.9,
            top_p: 0.9,
            ..SamplingParams::greedy()
        },
        SamplingParams {
            temperature: 1.3,
            top_k: 10,
            min_p: 0.02,
            ..SamplingParams::greedy()
        },
    ];
    for p in configs {
        let probs = expected_distribution(&logits, &p);
        let mut gpu = std::collections::HashMap::new();
        let mut cpu = std::collections::HashMap::new();
        let mut same = 0;
        for seed in 0..seeds {
            let ps = SamplingParams {
                seed: seed.wrapping_mul(0x9e37_79b9_7f4a_7c15),
                ..p.clone()
            };
            // Steps 0.. of each seed on both sides: the same (seed, step) pairs.
            let got = bench.run(&ps, &[], &vec![logits.clone(); per_seed]);
            let mut s = Sampler::new(ps);
            for g in got {
                let c = s.sample(&logits, &[]);
                same += usize::from(c == g);
                *cpu.entry(c).or_insert(0u64) += 1;
                *gpu.entry(g).or_insert(0u64) += 1;
            }
        }
        let (chi_gpu, df) = chi_square(&gpu, &probs, draws);
        let (chi_cpu, _) = chi_square(&cpu, &probs, draws);
        eprintln!(
            "{p:?}: chi-square GPU {chi_gpu:.1}, CPU {chi_cpu:.1}, {df} degrees of freedom; \
             {same} of {draws} draws equal"
        );
        // 99.9% quantile of chi-square with df degrees of freedom (Wilson-Hilferty).
        let z = 3.09;
        let k = df as f64;
        let bound = k * (1.0 - 2.0 / (9.0 * k) + z * (2.0 / (9.0 * k)).sqrt()).powi(3);
        assert!(
            chi_gpu < bound,
            "GPU chi-square {chi_gpu} >= {bound} ({df} df)"
        );
    }
}

#[test]
fn zz_time() {
    let n = N_VOCAB;
    let bench = Bench::new(n, 64, 200);
    let mut rng = Rng(3);
    let logits: Vec<Vec<f32>> = (0..20).map(|_| lm_logits(&mut rng, n, &[])).collect();
    let mut all = vec![("greedy", SamplingParams::greedy())];
    all.extend(settings());
    for (name, params) in all {
        bench.run(&params, &[], &logits[..2]);
        let t = std::time::Instant::now();
        bench.run(&params, &[], &logits);
        eprintln!("{name}: {:?} per step", t.elapsed() / 20);
    }
}
#[test]
fn zz_time2() {
    {
        let bench = Bench::new(N_VOCAB, 64, 200);
        let mut rng = Rng(3);
        let logits = lm_logits(&mut rng, N_VOCAB, &[]);
        let p = SamplingParams {
            temperature: 0.8,
            ..SamplingParams::greedy()
        };
        let got = bench.run(&p, &[], &[logits]);
        eprintln!(
            "got {got:?} trace {:?} pcs {:?}",
            &bench.read_ids(200)[10..60],
            &bench.read_ids(200)[100..144]
        );
    }
    let n = N_VOCAB;
    let bench = Bench::new(n, 64, 200);
    let mut rng = Rng(3);
    let logits = lm_logits(&mut rng, n, &[]);
    let ctx = ctx();
    let mode = std::env::var("ZZ_MODE").unwrap_or_default();
    let p = match mode.as_str() {
        "topk" => SamplingParams {
            temperature: 1.0,
            top_k: 40,
            ..SamplingParams::greedy()
        },
        "temp" => SamplingParams {
            temperature: 0.8,
            ..SamplingParams::greedy()
        },
        "default" => SamplingParams::default(),
        "topk1000" => SamplingParams {
            temperature: 1.0,
            top_k: 1000,
            ..SamplingParams::greedy()
        },
        "topp" => SamplingParams {
            temperature: 1.0,
            top_p: 0.9,
            ..SamplingParams::greedy()
        },
        _ => SamplingParams::greedy(),
    };
    bench.sampler.set_params(ctx, &p, &[]).unwrap();
    ctx.queue
        .write_buffer(&bench.logits, 0, bytemuck::cast_slice(&logits));
    let wait = || {
        ctx.device
            .poll(wgpu::PollType::wait_indefinitely())
            .unwrap();
    };
    for k in 0..3 {
        let mut ts = Vec::new();
        for _ in 0..25 {
            let t = std::time::Instant::now();
            match k {
                0 | 1 => submit_ops(ctx, &[&bench.ops[k]]),
                _ => submit_ops(ctx, &[&bench.ops[0], &bench.ops[1]]),
            }
            wait();
            ts.push(t.elapsed().as_secs_f64() * 1e3);
        }
        ts.sort_by(|a, b| a.partial_cmp(b).unwrap());
        eprintln!(
            "{mode} op {k}: min {:.3} ms, median {:.3} ms, iters {}",
            ts[0],
            ts[12],
            bench.read_ids(2)[1]
        );
    }
}

#[test]
fn zz_micro() {
    let ctx = ctx();
    let out = storage_buffer(ctx, "o", 1024);
    let variants = [
        ("empty", "@group(0) @binding(0) var<storage, read_write> o: array<u32>;\n@compute @workgroup_size(256) fn main(@builtin(local_invocation_index) l: u32) { if (l == 0u) { o[0] = 1u; } }"),
        ("barrier", "@group(0) @binding(0) var<storage, read_write> o: array<u32>;\nvar<workgroup> w: array<u32, 256>;\n@compute @workgroup_size(256) fn main(@builtin(local_invocation_index) l: u32) { w[l] = l; workgroupBarrier(); if (l == 0u) { o[0] = w[5]; } }"),
        ("bigmem", "@group(0) @binding(0) var<storage, read_write> o: array<u32>;\nvar<workgroup> w: array<u32, 3584>;\n@compute @workgroup_size(256) fn main(@builtin(local_invocation_index) l: u32) { w[l] = l; workgroupBarrier(); if (l == 0u) { o[0] = w[5]; } }"),
        ("10 barriers", "@group(0) @binding(0) var<storage, read_write> o: array<u32>;\nvar<workgroup> w: array<u32, 256>;\n@compute @workgroup_size(256) fn main(@builtin(local_invocation_index) l: u32) { for (var i = 0u; i < 10u; i++) { w[l] = l + i; workgroupBarrier(); } if (l == 0u) { o[0] = w[5]; } }"),
        ("wg64 10 barriers", "@group(0) @binding(0) var<storage, read_write> o: array<u32>;\nvar<workgroup> w: array<u32, 256>;\n@compute @workgroup_size(64) fn main(@builtin(local_invocation_index) l: u32) { for (var i = 0u; i < 10u; i++) { w[l] = l + i; workgroupBarrier(); } if (l == 0u) { o[0] = w[5]; } }"),
        ("atomics 49152", "@group(0) @binding(0) var<storage, read_write> o: array<u32>;\nvar<workgroup> h: array<atomic<u32>, 256>;\n@compute @workgroup_size(256) fn main(@builtin(local_invocation_index) l: u32) { for (var i = l; i < 49152u; i += 256u) { atomicAdd(&h[(i * 2654435761u) >> 24u], 1u); } workgroupBarrier(); if (l == 0u) { o[0] = atomicLoad(&h[5]); } }"),
        ("exp 49152", "@group(0) @binding(0) var<storage, read_write> o: array<u32>;\nvar<workgroup> w: array<f32, 256>;\n@compute @workgroup_size(256) fn main(@builtin(local_invocation_index) l: u32) { var s = 0.0; for (var i = l; i < 49152u; i += 256u) { s += exp(f32(i) * -0.001); } w[l] = s; workgroupBarrier(); if (l == 0u) { o[0] = bitcast<u32>(w[5]); } }"),
    ];
    for (name, src) in variants {
        let k = pollster::block_on(Kernel::new(ctx, name, ShaderSource::new(src))).unwrap();
        let op = k.op(ctx, &[whole(&out)], [1, 1, 1]);
        for _ in 0..3 {
            submit_ops(ctx, &[&op]);
        }
        ctx.device
            .poll(wgpu::PollType::wait_indefinitely())
            .unwrap();
        let t = std::time::Instant::now();
        for _ in 0..50 {
            submit_ops(ctx, &[&op]);
        }
        ctx.device
            .poll(wgpu::PollType::wait_indefinitely())
            .unwrap();
        eprintln!("{name}: {:?}", t.elapsed() / 50);
    }
}
#[test]
fn zz_micro2() {
    let ctx = ctx();
    let out = storage_buffer(ctx, "o", 1024);
    let flag = llama_wgpu::gpu::kernel::uniform_buffer(ctx, "f", &[0u32; 4]);
    let f = r"
@group(0) @binding(0) var<storage, read_write> o: array<u32>;
@group(0) @binding(1) var<uniform> flag: vec4<u32>;
var<workgroup> h: array<atomic<u32>, 256>;
var<workgroup> r: vec4<u32>;
var<private> lid: u32;
fn work(x: u32) -> u32 {
    var acc = 0u;
    for (var p = 0u; p < 4u; p++) {
        for (var b = lid; b < 256u; b += 256u) { atomicStore(&h[b], 0u); }
        workgroupBarrier();
        for (var i = lid; i < 49152u; i += 256u) { if (o[i % 256u] == x + p) { atomicAdd(&h[i & 255u], 1u); } }
        workgroupBarrier();
        if (lid == 0u) { r = vec4<u32>(atomicLoad(&h[3]), 0u, 0u, 0u); }
        acc += workgroupUniformLoad(&r).x;
    }
    return acc;
}
@compute @workgroup_size(256) fn main(@builtin(local_invocation_index) l: u32) {
    lid = l;
    var a = 0u;
    if (flag.x != 0u) {
        BODY
    }
    if (l == 0u) { o[0] = a; }
}";
    let variants: Vec<(String, String)> = vec![
        ("1 site".into(), "a += work(1u);".into()),
        ("S1 loop{switch 2 sites}".into(), "for (var j = 0u; j < 5u; j++) { switch j { case 0u: { a += work(1u); } case 1u: { a += work(2u); } default: {} } }".into()),
        ("S2 loop{if barriers else wul; work}".into(), "for (var j = 0u; j < 5u; j++) { if (j == 0u) { workgroupBarrier(); workgroupBarrier(); } else { if (l == 0u) { r.y = j; } a += workgroupUniformLoad(&r).y; } a += work(j); }".into()),
        ("S3 loop{work; loop barrier}".into(), "for (var j = 0u; j < 5u; j++) { a += work(j); for (var q = 0u; q < flag.y; q++) { workgroupBarrier(); } }".into()),
    ];
    for (k, body) in variants {
        let src = f.replace("BODY", &body);
        let kern = pollster::block_on(Kernel::new(ctx, "m", ShaderSource::new(&src))).unwrap();
        let op = kern.op(ctx, &[whole(&out), whole(&flag)], [1, 1, 1]);
        for _ in 0..3 {
            submit_ops(ctx, &[&op]);
        }
        ctx.device
            .poll(wgpu::PollType::wait_indefinitely())
            .unwrap();
        let t = std::time::Instant::now();
        for _ in 0..30 {
            submit_ops(ctx, &[&op]);
        }
        ctx.device
            .poll(wgpu::PollType::wait_indefinitely())
            .unwrap();
        eprintln!("{k}, not taken: {:?}", t.elapsed() / 30);
    }
}
#[test]
fn zz_micro3() {
    let ctx = ctx();
    let src = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/shaders/sample_pick.wgsl"
    ))
    .unwrap();
    let common = SAMPLE_COMMON_WGSL;
    let mi = src.find("@compute @workgroup_size(WG)").unwrap();
    let base = &src[..mi];
    let mains = [
        (
            "sort-only no advance",
            r"
@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32) {
    if (lid == 999u) { ids_out[1] = keys[0] + partials[0].x + params.top_k + step_params.pos + history[0]; tokens_out[0] = 0u; }
    if (lid == 0u) { req[0] = REQ_SORT; req[15] = 2u; req[16] = 1u; req[17] = 1024u; req[1] = 0u; }
    loop {
        let r = workgroupUniformLoad(&req);
        if (r[0] == REQ_DONE) { break; }
        switch r[0] {
            case REQ_SORT: {
                let k = r[15];
                let j = r[16];
                for (var t = lid; t < r[17] / 2u; t += WG) {
                    let a = (t / j) * 2u * j + t % j;
                    let b = a + j;
                    let ka = head_key[a];
                    let ia = head_id[a];
                    let kb = head_key[b];
                    let ib = head_id[b];
                    if (before(kb, ib, ka, ia) == ((a & k) == 0u)) {
                        head_key[a] = kb; head_id[a] = ib; head_key[b] = ka; head_id[b] = ia;
                    }
                }
            }
            default: {}
        }
        workgroupBarrier();
        if (lid == 0u) { req[1] += 1u; if (req[1] >= 60u) { req[0] = REQ_DONE; } ids_out[0] = req[1]; }
    }
}",
        ),
        (
            "sort with advance",
            r"
@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32) {
    if (lid == 999u) { ids_out[1] = keys[0] + partials[0].x + params.top_k + step_params.pos + history[0]; tokens_out[0] = 0u; }
    lane = lid;
    if (lid == 0u) { h = 1024u; cut_h = ALL; lmax = 0.0; pc = PC_COMPACT; advance(); }
    loop {
        let r = workgroupUniformLoad(&req);
        if (r[0] == REQ_DONE || r[0] == REQ_VALUES) { break; }
        switch r[0] {
            case REQ_SORT: {
                let k = r[15];
                let j = r[16];
                for (var t = lid; t < r[17] / 2u; t += WG) {
                    let a = (t / j) * 2u * j + t % j;
                    let b = a + j;
                    let ka = head_key[a];
                    let ia = head_id[a];
                    let kb = head_key[b];
                    let ib = head_id[b];
                    if (before(kb, ib, ka, ia) == ((a & k) == 0u)) {
                        head_key[a] = kb; head_id[a] = ib; head_key[b] = ka; head_id[b] = ia;
                    }
                }
            }
            default: {}
        }
        workgroupBarrier();
        if (subgroupBroadcastFirst(lid) == 0u) { advance(); }
        if (lid == 0u) { ids_out[0] += 1u; }
    }
}",
        ),
    ];
    let keys = storage_buffer(ctx, "k", 49152 * 4);
    let parts = storage_buffer(ctx, "p", 48 * 8);
    let params = llama_wgpu::gpu::kernel::uniform_buffer(ctx, "u", &[0u32; 8]);
    let step = step_params_buffer(ctx);
    let hist = storage_buffer(ctx, "h", 65 * 4);
    let tok = storage_buffer(ctx, "t", 4);
    let ids = storage_buffer(ctx, "i", 64);
    for (name, m) in mains {
        let text = format!("{common}\n{base}\n{m}");
        let k = pollster::block_on(Kernel::new(
            ctx,
            name,
            ShaderSource::new(&text)
                .define("N_VOCAB", 49152)
                .define("HISTORY_CAP", 64)
                .define("WG", 256)
                .define("N_PARTIALS", 48)
                .define("HEAD", 1024),
        ))
        .unwrap();
        let op = k.op(
            ctx,
            &[
                whole(&keys),
                whole(&parts),
                whole(&params),
                whole(&step),
                whole(&hist),
                whole(&tok),
                whole(&ids),
            ],
            [1, 1, 1],
        );
        let mut ts = Vec::new();
        for _ in 0..10 {
            ctx.queue.write_buffer(&ids, 0, &[0u8; 64]);
            let t = std::time::Instant::now();
            submit_ops(ctx, &[&op]);
            ctx.device
                .poll(wgpu::PollType::wait_indefinitely())
                .unwrap();
            ts.push(t.elapsed().as_secs_f64() * 1e3);
        }
        ts.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let bytes = pollster::block_on(read_buffer(ctx, &ids, 0, 4)).unwrap();
        eprintln!(
            "{name}: min {:.3} ms, iterations {}",
            ts[0],
            u32::from_le_bytes(bytes[..4].try_into().unwrap())
        );
    }
}
#[test]
fn zz_micro4() {
    let ctx = ctx();
    let out = storage_buffer(ctx, "o", 4096);
    let mk_case = |c: usize| -> String {
        let mut body = String::new();
        for q in 0..12 {
            body.push_str(&format!(
                "st[{}] = st[{}] * {}u + st[{}] ^ {}u;\n",
                (c + q) % 16,
                (c + 2 * q) % 16,
                2 * q + 1,
                (c + q + 5) % 16,
                c * 7 + q
            ));
        }
        body
    };
    let k = 27;
    let mut sw = String::new();
    let mut chain = String::new();
    let mut sw_inner = String::new();
    for c in 0..k {
        sw.push_str(&format!(
            "case {c}u: {{ {} pc = {}u; }}\n",
            mk_case(c),
            (c + 1) % k
        ));
        chain.push_str(&format!(
            "{}if (p == {c}u) {{ {} pc = {}u; }}\n",
            if c == 0 { "" } else { "else " },
            mk_case(c),
            (c + 1) % k
        ));
        sw_inner.push_str(&format!(
            "case {c}u: {{ if (lid == 0u) {{ {} pc = {}u; }} }}\n",
            mk_case(c),
            (c + 1) % k
        ));
    }
    let variants = [
        ("switch on wg var in lid==0", format!("if (lid == 0u) {{ let p = pc; switch p {{ {sw} default: {{}} }} }}")),
        ("ifchain on wg var in lid==0", format!("if (lid == 0u) {{ let p = pc; {chain} }}")),
        ("switch on uniform p in lid==0", format!("let p = workgroupUniformLoad(&pc); if (lid == 0u) {{ switch p {{ {sw} default: {{}} }} }}")),
        ("uniform switch, lid==0 inside", format!("let p = workgroupUniformLoad(&pc); switch p {{ {sw_inner} default: {{}} }}")),
    ];
    for (name, call) in variants {
        let src = format!(
            r"
@group(0) @binding(0) var<storage, read_write> o: array<u32>;
var<workgroup> st: array<u32, 16>;
var<workgroup> pc: u32;
var<workgroup> req: vec4<u32>;
@compute @workgroup_size(256) fn main(@builtin(local_invocation_index) lid: u32) {{
    loop {{
        let r = workgroupUniformLoad(&req);
        if (r.x >= 56u) {{ break; }}
        workgroupBarrier();
        {call}
        workgroupBarrier();
        if (lid == 0u) {{ req.x += 1u; }}
    }}
    if (lid == 0u) {{ o[0] = st[3]; }}
}}"
        );
        let kern = pollster::block_on(Kernel::new(ctx, name, ShaderSource::new(&src))).unwrap();
        let op = kern.op(ctx, &[whole(&out)], [1, 1, 1]);
        let mut ts = Vec::new();
        for _ in 0..10 {
            let t = std::time::Instant::now();
            submit_ops(ctx, &[&op]);
            ctx.device
                .poll(wgpu::PollType::wait_indefinitely())
                .unwrap();
            ts.push(t.elapsed().as_secs_f64() * 1e3);
        }
        ts.sort_by(|a, b| a.partial_cmp(b).unwrap());
        eprintln!("{name}: min {:.3} ms", ts[0]);
    }
}

#[test]
fn zz_bug() {
    let ctx = ctx();
    let out = storage_buffer(ctx, "o", 64);
    for wg in [8u32, 16, 32, 64] {
        let src = format!(
            r"
@group(0) @binding(0) var<storage, read_write> o: array<u32>;
var<workgroup> a: array<u32, 512>;
var<workgroup> n: u32;
var<workgroup> pc: u32;
var<workgroup> req: array<u32, 4>;
fn advance() {{
    loop {{
        switch pc {{
            case 0u: {{ req[0] = 1u; pc = 1u; return; }}
            case 1u: {{ var acc = 0u; for (var b = 0u; b < 256u; b++) {{ let c = a[b]; if (acc + c >= 10u) {{ break; }} acc += c; }} o[1] = acc; req[0] = 1u; pc = 2u; return; }}
            case 2u: {{ var s = 0u; for (var j = 0u; j < n; j++) {{ s += a[j]; }} o[0] = s; pc = 3u; }}
            case 3u: {{ req[0] = 0u; return; }}
            default: {{ return; }}
        }}
    }}
}}
@compute @workgroup_size({wg}) fn main(@builtin(local_invocation_index) lid: u32) {{
    for (var j = lid; j < 512u; j += {wg}u) {{ a[j] = 1u; }}
    if (lid == 0u) {{ n = 512u; pc = 0u; advance(); }}
    loop {{
        let r = workgroupUniformLoad(&req);
        if (r[0] == 0u) {{ break; }}
        workgroupBarrier();
        if (lid == 0u) {{ advance(); }}
    }}
}}"
        );
        let kern = pollster::block_on(Kernel::new(ctx, "bug", ShaderSource::new(&src))).unwrap();
        let op = kern.op(ctx, &[whole(&out)], [1, 1, 1]);
        submit_ops(ctx, &[&op]);
        let bytes = pollster::block_on(read_buffer(ctx, &out, 0, 4)).unwrap();
        eprintln!(
            "wg {wg}: sum {} (want 512)",
            u32::from_le_bytes(bytes[..4].try_into().unwrap())
        );
    }
}

#[test]
fn zz_diag() {
    let n = N_VOCAB;
    let bench = Bench::new(n, 64, 200);
    let (name, params) = settings()[0].clone();
    let mut rng = Rng(3);
    let prompt: Vec<u32> = (0..20).map(|_| rng.below(n) as u32).collect();
    let logits: Vec<Vec<f32>> = (0..40)
        .map(|s| {
            if s % 4 == 3 {
                tied_logits(&mut rng, n, &prompt)
            } else {
                lm_logits(&mut rng, n, &prompt)
            }
        })
        .collect();
    let t = std::time::Instant::now();
    let got = bench.run(&params, &prompt, &logits);
    eprintln!("{name}: gpu {:?} per step", t.elapsed() / 40);
    let t = std::time::Instant::now();
    let mut cpu = Sampler::new(params.clone());
    let mut history = prompt.clone();
    for (s, (l, &g)) in logits.iter().zip(&got).enumerate() {
        let c = cpu.sample(l, &history);
        if c != g {
            let mut sorted: Vec<(u32, f32)> =
                l.iter().enumerate().map(|(i, &x)| (i as u32, x)).collect();
            sorted.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            let rank = |id: u32| sorted.iter().position(|x| x.0 == id).unwrap();
            let probs = expected_distribution(l, &params);
            let head_mass: f64 = probs[..1024.min(probs.len())].iter().map(|x| x.1).sum();
            let mx = sorted[0].1;
            let w: Vec<f32> = sorted
                .iter()
                .map(|x| ((x.1 - mx) / params.temperature).exp())
                .collect();
            let s32: f32 = w.iter().sum();
            let s64: f64 = w.iter().map(|&x| x as f64).sum();
            let q: Vec<f32> = w.iter().map(|&x| x / s32).collect();
            let t32: f32 = q.iter().sum();
            eprintln!(
                "sum3 f32 {s32} f64 {s64} rel {}, total f32 {t32}",
                (s32 as f64 - s64) / s64
            );
            eprintln!(
                "step {s}: cpu {c} rank {}, gpu {g} rank {}, u {}, head mass {head_mass}",
                rank(c),
                rank(g),
                uniform(params.seed, s as u64)
            );
        }
        history.push(g);
    }
    eprintln!("cpu {:?} per step", t.elapsed() / 40);
}

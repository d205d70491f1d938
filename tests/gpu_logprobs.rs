//! The GPU's logprobs (`GpuSampler::logprobs_op`, `shaders/sample_logprobs.wgsl`) against the
//! definition (`logprobs::token_logprobs` over `Sampler::candidates`), on the machine's adapter
//! (lavapipe in CI): the drawn id's logprob, the top ids in order (ties: lower ids first), and
//! the draw unchanged by asking.
//!
//! Tolerance on each logprob: 2e-4. The GPU sums exp(l - M) in f32 (strips of up to
//! n_vocab / 256 terms, then 256 strip sums, each sequentially), a relative error of at most
//! (594 + 256) * 2^-24 = 5e-5 at 151936 ids, so 5e-5 in the log; WGSL's exp and log add a few
//! ulp (under 1e-5 here). The definition sums in f64.

mod common;

use std::sync::OnceLock;

use common::quant_data::Rng;
use llama_wgpu::gpu::kernel::{read_buffer, storage_buffer, submit_ops, whole, Op};
use llama_wgpu::gpu::kernels::sample::{read_logprobs, GpuSampler, LOGPROBS_BYTES};
use llama_wgpu::gpu::kernels::{step_params_buffer, StepParams};
use llama_wgpu::gpu::{GpuContext, GpuOptions};
use llama_wgpu::logprobs::{token_logprobs, TokenLogprobs, LOGPROB_FLOOR};
use llama_wgpu::sampler::{Sampler, SamplingParams};

const TOLERANCE: f32 = 2e-4;

fn ctx() -> &'static GpuContext {
    static CTX: OnceLock<GpuContext> = OnceLock::new();
    CTX.get_or_init(|| {
        GpuContext::new_blocking(&GpuOptions::default())
            .expect("a GPU adapter (lavapipe: apt mesa-vulkan-drivers)")
    })
}

/// A sampler bound as the model binds it, with the logprobs dispatch after the draw.
struct Bench {
    sampler: GpuSampler,
    logits: wgpu::Buffer,
    step: wgpu::Buffer,
    tokens: wgpu::Buffer,
    ops: Vec<Op>,
    out: wgpu::Buffer,
}

impl Bench {
    fn new(n: usize) -> Bench {
        let ctx = ctx();
        let sampler = pollster::block_on(GpuSampler::new(ctx, n, 64)).unwrap();
        let logits = storage_buffer(ctx, "logits", n as u64 * 4);
        let step = step_params_buffer(ctx);
        let tokens = storage_buffer(ctx, "tokens", 4);
        let ids = storage_buffer(ctx, "ids", 4);
        let mut ops = sampler
            .op(ctx, &logits, &step, whole(&tokens), &ids)
            .unwrap();
        let (op, out) = pollster::block_on(sampler.logprobs_op(ctx, whole(&tokens))).unwrap();
        ops.push(op);
        Bench {
            sampler,
            logits,
            step,
            tokens,
            ops,
            out,
        }
    }

    /// One draw at step 0 with `top_n` logprobs asked (or none: then only the draw runs).
    fn step(
        &self,
        p: &SamplingParams,
        history: &[u32],
        mask: Option<&[u32]>,
        logits: &[f32],
        top_n: Option<usize>,
    ) -> (u32, Option<TokenLogprobs>) {
        let ctx = ctx();
        self.sampler.set_params(ctx, p, top_n, history).unwrap();
        self.sampler.set_mask(ctx, mask);
        ctx.queue
            .write_buffer(&self.logits, 0, bytemuck::cast_slice(logits));
        ctx.queue
            .write_buffer(&self.step, 0, bytemuck::bytes_of(&StepParams::default()));
        let ops: Vec<&Op> = match top_n {
            Some(_) => self.ops.iter().collect(),
            None => self.ops[..self.ops.len() - 1].iter().collect(),
        };
        submit_ops(ctx, &ops);
        let id = pollster::block_on(read_buffer(ctx, &self.tokens, 0, 4)).unwrap();
        let id = bytemuck::pod_read_unaligned(&id);
        let logprobs = top_n.map(|_| {
            let bytes = pollster::block_on(read_buffer(ctx, &self.out, 0, LOGPROBS_BYTES));
            read_logprobs(&bytes.unwrap()).unwrap()
        });
        ctx.check().unwrap();
        (id, logprobs)
    }

    /// Check the GPU's logprobs of one step against the definition.
    fn check(
        &self,
        what: &str,
        p: &SamplingParams,
        history: &[u32],
        mask: Option<&[u32]>,
        logits: &[f32],
        top_n: usize,
    ) {
        let (id, gpu) = self.step(p, history, mask, logits, Some(top_n));
        let gpu = gpu.unwrap();
        let (plain_id, _) = self.step(p, history, mask, logits, None);
        assert_eq!(id, plain_id, "{what}: asking for logprobs changed the draw");
        let mut cpu_sampler = Sampler::new(p.clone());
        cpu_sampler.set_mask(mask.map(<[u32]>::to_vec));
        let want = token_logprobs(&cpu_sampler.candidates(logits, history), id, top_n);
        assert_eq!(gpu.id, id, "{what}: the drawn id");
        assert!(
            (gpu.logprob - want.logprob).abs() <= TOLERANCE,
            "{what}: drawn id {id}: logprob {} on the GPU, {} defined",
            gpu.logprob,
            want.logprob
        );
        assert_eq!(gpu.top.len(), want.top.len(), "{what}: entries");
        for (i, (g, w)) in gpu.top.iter().zip(&want.top).enumerate() {
            assert_eq!(
                g.0, w.0,
                "{what}: id at rank {i} (GPU {:?}, defined {:?})",
                gpu.top, want.top
            );
            assert!(
                (g.1 - w.1).abs() <= TOLERANCE,
                "{what}: rank {i}: {} vs {}",
                g.1,
                w.1
            );
        }
        let mass: f64 = gpu.top.iter().map(|t| (t.1 as f64).exp()).sum();
        assert!(
            mass <= 1.0 + 1e-4,
            "{what}: the top logprobs sum to probability {mass}"
        );
        assert!(gpu.logprob <= TOLERANCE);
    }
}

/// Language-model-like logits: a spread background and a few boosted ids.
fn logits(rng: &mut Rng, n: usize, spread: f32) -> Vec<f32> {
    let mut l: Vec<f32> = (0..n).map(|_| rng.uniform(spread)).collect();
    for _ in 0..8 {
        let at = (rng.next() % n as u64) as usize;
        l[at] += 8.0 + rng.uniform(4.0);
    }
    l
}

fn sampled() -> SamplingParams {
    SamplingParams {
        seed: 7,
        ..SamplingParams::default()
    }
}

#[test]
fn logprobs_match_the_definition_greedy_and_sampled() {
    let mut rng = Rng(0x109b);
    for n in [49152, 151936] {
        let bench = Bench::new(n);
        let l = logits(&mut rng, n, 3.0);
        bench.check(
            &format!("greedy {n}"),
            &SamplingParams::greedy(),
            &[],
            None,
            &l,
            20,
        );
        bench.check(&format!("sampled {n}"), &sampled(), &[], None, &l, 5);
        // Nothing but the drawn id.
        bench.check(&format!("top 0 {n}"), &sampled(), &[], None, &l, 0);
    }
}

#[test]
fn logprobs_follow_bias_penalties_and_mask() {
    let mut rng = Rng(0x5eed);
    let n = 32000;
    let bench = Bench::new(n);
    let l = logits(&mut rng, n, 2.0);
    let best: Vec<u32> = {
        let mut ids: Vec<u32> = (0..n as u32).collect();
        ids.sort_by(|&a, &b| l[b as usize].total_cmp(&l[a as usize]));
        ids[..6].to_vec()
    };
    let p = SamplingParams {
        repeat_penalty: 1.3,
        presence_penalty: 0.5,
        frequency_penalty: 0.25,
        logit_bias: [(best[0], -100.0), (17, 12.0)].into(),
        ..sampled()
    };
    let history = [best[1], best[1], best[2], 5, 900];
    bench.check("bias and penalties", &p, &history, None, &l, 20);
    // A mask allowing a few ids: the others have no probability and are never listed.
    let mut mask = vec![0u32; n.div_ceil(32)];
    for id in [best[3], best[4], 31_999, 40] {
        mask[id as usize / 32] |= 1 << (id % 32);
    }
    bench.check("masked", &p, &history, Some(&mask), &l, 20);
    let (_, gpu) = bench.step(&p, &history, Some(&mask), &l, Some(20));
    assert_eq!(gpu.unwrap().top.len(), 4, "only the allowed ids are listed");
}

#[test]
fn ties_list_lower_ids_first_and_small_vocabularies_list_all() {
    let n = 1000;
    let bench = Bench::new(n);
    // 30 ids tie at the top, scattered: the first 20 by id are listed.
    let mut l = vec![0.0f32; n];
    for i in 0..30 {
        l[(i * 37 + 11) % n] = 5.0;
    }
    bench.check("ties", &SamplingParams::greedy(), &[], None, &l, 20);
    let (_, gpu) = bench.step(&SamplingParams::greedy(), &[], None, &l, Some(20));
    let ids: Vec<u32> = gpu.unwrap().top.iter().map(|t| t.0).collect();
    let mut tied: Vec<u32> = (0..30).map(|i| ((i * 37 + 11) % n) as u32).collect();
    tied.sort();
    assert_eq!(ids, tied[..20], "the tie is cut at the lowest ids");

    let small = Bench::new(7);
    let l7 = [0.5f32, -1.0, 2.0, f32::NEG_INFINITY, 0.0, 2.0, 1.0];
    small.check("seven ids", &sampled(), &[], None, &l7, 20);
    let (_, gpu) = small.step(&sampled(), &[], None, &l7, Some(20));
    let gpu = gpu.unwrap();
    assert_eq!(gpu.top.len(), 7);
    assert_eq!(
        gpu.top[6],
        (3, LOGPROB_FLOOR),
        "-inf lists last, at the floor"
    );
}

//! The GPU sampler inside real headless Chromium (WebGPU on SwiftShader, shaders compiled by
//! Tint), through wasm-bindgen-test: draws with top-k and top-p cuts and the logprobs pass
//! against the CPU definition, as tests/gpu_sample.rs and tests/gpu_logprobs.rs check them
//! natively. Chrome's compiler once kept a loop body's uninitialised array from one iteration to
//! the next (the radix searches' histograms), which only a browser run shows.
#![cfg(target_arch = "wasm32")]

mod common;

use common::quant_data::Rng;
use llama_wgpu::gpu::kernel::{read_buffer, storage_buffer, submit_ops, whole, Op};
use llama_wgpu::gpu::kernels::sample::{read_logprobs, GpuSampler, LOGPROBS_BYTES};
use llama_wgpu::gpu::kernels::{step_params_buffer, StepParams};
use llama_wgpu::gpu::{GpuContext, GpuOptions};
use llama_wgpu::logprobs::token_logprobs;
use llama_wgpu::sampler::{Sampler, SamplingParams};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

const N: usize = 32000;

/// Language-model-like logits: a spread background and a few boosted ids.
fn logits() -> Vec<f32> {
    let mut rng = Rng(0x7e57);
    let mut l: Vec<f32> = (0..N).map(|_| rng.uniform(3.0)).collect();
    for _ in 0..12 {
        let at = (rng.next() % N as u64) as usize;
        l[at] += 6.0 + rng.uniform(3.0);
    }
    l
}

#[wasm_bindgen_test]
async fn draws_and_logprobs_match_the_cpu_definition() {
    let ctx = GpuContext::new(&GpuOptions::default()).await.unwrap();
    let sampler = GpuSampler::new(&ctx, N, 64).await.unwrap();
    let logits_buffer = storage_buffer(&ctx, "logits", N as u64 * 4);
    let step = step_params_buffer(&ctx);
    let tokens = storage_buffer(&ctx, "tokens", 4);
    let ids = storage_buffer(&ctx, "ids", 4);
    let mut ops = sampler
        .op(&ctx, &logits_buffer, &step, whole(&tokens), &ids)
        .unwrap();
    let (logprobs_op, out) = sampler.logprobs_op(&ctx, whole(&tokens)).await.unwrap();
    ops.push(logprobs_op);
    let ops: Vec<&Op> = ops.iter().collect();
    let l = logits();
    ctx.queue
        .write_buffer(&logits_buffer, 0, bytemuck::cast_slice(&l));

    // Step-by-step agreement, as tests/gpu_sample.rs argues it: the same u, so a draw differs
    // only when u lands within rounding of a boundary between two ids (about 1e-5 a draw); a
    // wrong top-k or top-p cut changes most of them.
    let settings = [
        SamplingParams {
            temperature: 1.0,
            top_k: 40,
            top_p: 1.0,
            min_p: 0.0,
            ..SamplingParams::default()
        },
        SamplingParams {
            temperature: 1.5,
            top_k: 0,
            top_p: 0.9,
            min_p: 0.0,
            ..SamplingParams::default()
        },
    ];
    for p in settings {
        let mut differ = 0;
        let mut wrong_logprobs: Vec<String> = Vec::new();
        for (i, sample_step) in (0..60u32).enumerate() {
            let p = SamplingParams {
                seed: i as u64,
                ..p.clone()
            };
            sampler.set_params(&ctx, &p, Some(5), &[]).unwrap();
            let sp = StepParams {
                sample_step,
                ..Default::default()
            };
            ctx.queue.write_buffer(&step, 0, bytemuck::bytes_of(&sp));
            submit_ops(&ctx, &ops);
            let id: u32 =
                bytemuck::pod_read_unaligned(&read_buffer(&ctx, &tokens, 0, 4).await.unwrap());
            let mut cpu = Sampler::new(p.clone());
            for _ in 0..sample_step {
                cpu.advance();
            }
            differ += usize::from(cpu.sample(&l, &[]) != id);
            let bytes = read_buffer(&ctx, &out, 0, LOGPROBS_BYTES).await.unwrap();
            let gpu = read_logprobs(&bytes).unwrap();
            let want = token_logprobs(&cpu.candidates(&l, &[]), id, 5);
            // The same ids in the same order, each logprob within tests/gpu_logprobs.rs's bound.
            let pairs = gpu.top.iter().zip(&want.top);
            let chosen = [(&(id, gpu.logprob), &(id, want.logprob))];
            let same = gpu.top.len() == want.top.len()
                && pairs
                    .chain(chosen)
                    .all(|(g, w)| g.0 == w.0 && (g.1 - w.1).abs() <= 2e-4);
            if !same {
                wrong_logprobs.push(format!("step {sample_step}: GPU {gpu:?}, defined {want:?}"));
            }
        }
        assert!(
            differ <= 2,
            "{differ} of 60 draws differ from the CPU's ({p:?})"
        );
        assert!(
            wrong_logprobs.is_empty(),
            "{} logprobs differ, e.g. {}",
            wrong_logprobs.len(),
            wrong_logprobs[0]
        );
    }
    ctx.check().unwrap();
}

//! The whole GPU decoder (lavapipe in CI) against the CPU reference and the numpy f32 logits.
//!
//! Tolerances: both sides compute in f32 on the same dequantized weights; they differ only in
//! summation order (matvec/attention reductions) and in the GPU's `exp`/`sin`/`cos`, each a few
//! ulp. Through a few layers that stays around 1e-5 relative; logits are O(10), so the bound
//! below (2e-3 absolute on the tiny models, measured ~1e-5) has wide margin while still being
//! 30x smaller than the smallest greedy top-2 margin (0.069 on the default model's path, 0.0019
//! on the tiny models where the bound used is 1e-3).

mod common;

use llama_wgpu::gguf::GgufFile;
use llama_wgpu::gpu::{GpuContext, GpuOptions};
use llama_wgpu::model::GpuModel;
use llama_wgpu::reference::ReferenceModel;
use llama_wgpu::{Device, Engine, EngineOptions, GenerateOptions};

fn gpu() -> GpuContext {
    GpuContext::new_blocking(&GpuOptions::default()).expect("a GPU adapter (lavapipe in CI)")
}

fn load(path: &std::path::Path, context: usize) -> GpuModel {
    let file = GgufFile::open(path).unwrap();
    pollster::block_on(GpuModel::load(gpu(), &file, context)).unwrap()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn tiny_models_match_numpy_logits_and_greedy_ids() {
    for name in common::TINY_MODELS {
        let Some(m) = common::tiny_model(name) else {
            return;
        };
        // Token by token: every position's logits.
        let mut model = load(&m.gguf, 64);
        let mut worst = 0f32;
        for (i, &t) in m.prompt.iter().enumerate() {
            let logits = pollster::block_on(model.forward_logits(&[t])).unwrap();
            worst = worst.max(max_abs_diff(&logits, m.logits_at(i)));
        }
        eprintln!("{name}: max |gpu - numpy| over the prompt = {worst:e}");
        assert!(worst < 1e-3, "{name}: logits differ by {worst}");

        // Greedy continuation.
        let last = m.logits_at(m.prompt.len() - 1);
        let mut next = common::argmax(last);
        let mut got = Vec::new();
        for _ in 0..m.greedy.len() {
            got.push(next);
            let logits = pollster::block_on(model.forward_logits(&[next])).unwrap();
            next = common::argmax(&logits);
        }
        assert_eq!(got, m.greedy, "{name}: greedy ids");

        // The whole prompt as one batched prefill gives the last position's logits too.
        let mut batched = load(&m.gguf, 64);
        let logits = pollster::block_on(batched.forward_logits(&m.prompt)).unwrap();
        let d = max_abs_diff(&logits, last);
        eprintln!("{name}: batched prefill max |gpu - numpy| = {d:e}");
        assert!(d < 1e-3, "{name}: batched prefill differs by {d}");
    }
}

#[test]
fn default_model_matches_the_cpu_reference_and_the_reference_text() {
    let Some(path) = common::default_model() else {
        return;
    };
    // Greedy text through the engine (prefill of the 4-token prompt, then decode steps).
    let mut engine = Engine::load(
        &path,
        &EngineOptions {
            device: Device::Gpu,
            context_length: Some(256),
        },
    )
    .unwrap();
    let options = GenerateOptions {
        max_tokens: 30,
        sampling: llama_wgpu::sampler::SamplingParams::greedy(),
        ..Default::default()
    };
    let generation = engine
        .generate("Once upon a time", &options, &mut |_| true)
        .unwrap();
    assert_eq!(generation.text, common::REFERENCE_CONTINUATION);

    // Logits at each step against the CPU reference on the same tokens.
    let file = GgufFile::open(&path).unwrap();
    let mut cpu = ReferenceModel::load(&file, 64).unwrap();
    let mut gpu_model = load(&path, 64);
    let tokens: Vec<u32> = common::ONCE_UPON_A_TIME
        .into_iter()
        .chain(generation.ids.iter().copied().take(8))
        .collect();
    let mut worst = 0f32;
    // The first four as one prefill, then one at a time.
    for &t in &tokens[..3] {
        cpu.forward(t).unwrap();
    }
    let mut cpu_logits = Vec::new();
    for (i, &t) in tokens.iter().enumerate().skip(3) {
        cpu_logits.push((i, cpu.forward(t).unwrap().to_vec()));
    }
    let first = pollster::block_on(gpu_model.forward_logits(&tokens[..4])).unwrap();
    worst = worst.max(max_abs_diff(&first, &cpu_logits[0].1));
    for (k, &t) in tokens.iter().enumerate().skip(4) {
        let g = pollster::block_on(gpu_model.forward_logits(&[t])).unwrap();
        worst = worst.max(max_abs_diff(&g, &cpu_logits[k - 3].1));
    }
    eprintln!(
        "default model: max |gpu - cpu| over {} steps = {worst:e}",
        tokens.len() - 3
    );
    assert!(worst < 2e-2, "logits differ by {worst}");
}

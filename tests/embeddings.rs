//! Embeddings on every backend against the f32 reference decoder, pooled here by hand, on the
//! random-weight embedding models of `common/embedding_models.rs` (llama and qwen3, pooling
//! mean, cls or last).

mod common;

use common::embedding_models::{model_file, pooling_model, EOS};
use llama_wgpu::arch;
use llama_wgpu::embed::{EmbedInput, Embeddings, Pooling};
use llama_wgpu::gguf::{GgufFile, Value};
use llama_wgpu::reference::ReferenceModel;
use llama_wgpu::sampler::SamplingParams;
use llama_wgpu::tokenizer::Tokenizer;
use llama_wgpu::{Device, Engine, EngineOptions, GenerateOptions};
use std::path::PathBuf;

fn engine(path: &PathBuf, device: Device) -> Engine {
    let mut options = EngineOptions {
        device,
        context_length: Some(64),
        ..Default::default()
    };
    // The reference keeps its cache in f32; so does the GPU here. Steps submitted ahead are
    // on, so an embedding meets a decode step in flight.
    options.gpu.allow_f16 = false;
    options.gpu.pipelined_decode = Some(true);
    Engine::load(path, &options).unwrap()
}

const TEXTS: [&str; 3] = ["The quick brown fox", "jumps over", "a lazy dog."];

fn texts() -> Vec<EmbedInput> {
    TEXTS
        .iter()
        .map(|t| EmbedInput::Text(t.to_string()))
        .collect()
}

/// The expected embedding of `text`, computed token by token by the f32 reference and pooled
/// and normalized here, plainly.
fn reference_embedding(path: &PathBuf, text: &str, pooling: u32) -> Vec<f32> {
    let file = GgufFile::open(path).unwrap();
    let tokenizer = Tokenizer::from_gguf(&file.header.metadata).unwrap();
    let ids = tokenizer.encode(text, true, false).unwrap();
    assert_eq!(ids.last(), Some(&EOS), "add_eos_token appends EOS");
    let mut model = ReferenceModel::load(&file, 64).unwrap();
    let rows: Vec<Vec<f32>> = ids
        .iter()
        .map(|&t| model.hidden(t).unwrap().to_vec())
        .collect();
    let pooled: Vec<f32> = match pooling {
        // mean: the average of every token's vector
        1 => (0..rows[0].len())
            .map(|i| rows.iter().map(|r| r[i]).sum::<f32>() / rows.len() as f32)
            .collect(),
        // cls: the first token's
        2 => rows[0].clone(),
        // last: the last token's (the EOS)
        3 => rows[rows.len() - 1].clone(),
        _ => unreachable!(),
    };
    let norm = pooled.iter().map(|v| v * v).sum::<f32>().sqrt();
    pooled.iter().map(|v| v / norm).collect()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Every backend; the GPU is lavapipe in CI, as in the other GPU tests.
fn devices() -> [Device; 3] {
    [Device::Reference, Device::Cpu, Device::Gpu]
}

/// Every pooling on every backend matches the reference pooled by hand; each vector has unit
/// length; a batch gives each input's embedding alone, bit for bit.
#[test]
fn each_pooling_matches_the_reference_on_every_backend() {
    for a in [&arch::LLAMA, &arch::QWEN3] {
        let mut firsts = Vec::new();
        for pooling in [1, 2, 3] {
            let path = pooling_model(a, pooling);
            let expected: Vec<Vec<f32>> = TEXTS
                .iter()
                .map(|t| reference_embedding(&path, t, pooling))
                .collect();
            firsts.push(expected[0].clone());
            for device in devices() {
                let mut e = engine(&path, device);
                let got: Embeddings = e.embed(&texts()).unwrap();
                assert_eq!(
                    got.pooling.as_str(),
                    ["mean", "cls", "last"][pooling as usize - 1]
                );
                let tokens: usize = TEXTS.iter().map(|t| t.len() + 1).sum();
                assert_eq!(got.prompt_tokens, tokens, "one token a byte, and the EOS");
                for (i, (v, e)) in got.vectors.iter().zip(&expected).enumerate() {
                    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                    // f32 rounding of a 64-value sum of squares.
                    assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
                    // F16 weights are exact in f32, so every backend does f32 arithmetic
                    // (the CPU engine quantizes activations only for quantized weights) and
                    // differs from the reference only in summation order: measured at most
                    // 2.4e-6 on these unit vectors; the three poolings differ from each other
                    // by far more (checked below).
                    let d = max_diff(v, e);
                    assert!(
                        d < 1e-5,
                        "{} pooling {pooling} {device:?} input {i}: {d}",
                        a.name
                    );
                }
                for (i, text) in TEXTS.iter().enumerate() {
                    let alone = e.embed(&[EmbedInput::Text(text.to_string())]).unwrap();
                    assert_eq!(alone.vectors[0], got.vectors[i], "{device:?} input {i}");
                }
            }
            std::fs::remove_file(path).ok();
        }
        // The tolerance tells poolings apart: mean, cls and last of one input differ by more
        // than a hundred times it.
        for (i, j) in [(0, 1), (0, 2), (1, 2)] {
            let d = max_diff(&firsts[i], &firsts[j]);
            assert!(d > 1e-3, "{} poolings {i} and {j} differ by {d}", a.name);
        }
    }
}

/// An embedding between two generations leaves the second as a fresh engine generates it:
/// the cache is dropped (a step in flight included), so nothing of the embedded text leaks.
#[test]
fn an_embedding_between_generations_changes_nothing() {
    let path = pooling_model(&arch::QWEN3, 3);
    let options = GenerateOptions {
        max_tokens: 12,
        sampling: SamplingParams::greedy(),
        ignore_eos: true,
        ..Default::default()
    };
    let second: Vec<u32> = "over the hill".bytes().map(|b| b as u32 - 0x20).collect();
    for device in devices() {
        let mut used = engine(&path, device);
        let first = used
            .generate_ids(&[52, 72, 69], &options, &mut |_| true)
            .unwrap();
        assert_eq!(first.ids.len(), 12);
        used.embed(&texts()).unwrap();
        let after = used.generate_ids(&second, &options, &mut |_| true).unwrap();
        assert_eq!(after.stats.cached_prompt_tokens, 0, "{device:?}");
        let fresh = engine(&path, device)
            .generate_ids(&second, &options, &mut |_| true)
            .unwrap();
        assert_eq!(after.ids, fresh.ids, "{device:?}");
    }
    std::fs::remove_file(path).ok();
}

fn code<T>(r: llama_wgpu::Result<T>) -> &'static str {
    r.err().expect("an error").code()
}

/// A generation model (no pooling type), a per-token or rank pooling, and unknown numbers are
/// EMBEDDINGS_UNSUPPORTED (a pooling set explicitly serves a generation model); bad inputs are INVALID_ARGUMENT or CONTEXT_OVERFLOW; a file that
/// asks for bidirectional attention is refused at load.
#[test]
fn models_and_inputs_that_give_no_embeddings_are_errors() {
    let generation = model_file(&arch::LLAMA, &[], "generation");
    let mut generator = engine(&generation, Device::Cpu);
    let err = generator.embed(&texts()).unwrap_err();
    assert_eq!(err.code(), "EMBEDDINGS_UNSUPPORTED");
    assert!(err.to_string().contains("llama.pooling_type"), "{err}");
    assert!(generator
        .generate("abc", &Default::default(), &mut |_| true)
        .is_ok());
    // Asked for explicitly, a generation model's hidden states are pooled as asked.
    generator.set_pooling(Some(Pooling::Mean));
    let got = generator.embed(&texts()).unwrap();
    for (v, text) in got.vectors.iter().zip(TEXTS) {
        // As in each_pooling_matches_the_reference_on_every_backend.
        assert!(max_diff(v, &reference_embedding(&generation, text, 1)) < 1e-5);
    }
    std::fs::remove_file(generation).ok();
    for pooling in [0, 4, 9] {
        let path = pooling_model(&arch::LLAMA, pooling);
        assert_eq!(
            code(engine_embed(&path, &texts())),
            "EMBEDDINGS_UNSUPPORTED"
        );
        std::fs::remove_file(path).ok();
    }

    let path = pooling_model(&arch::LLAMA, 1);
    let bad = [
        (EmbedInput::Ids(vec![]), "INVALID_ARGUMENT"),
        (EmbedInput::Ids(vec![3, 96]), "INVALID_ARGUMENT"),
        (EmbedInput::Ids(vec![3; 65]), "CONTEXT_OVERFLOW"),
    ];
    for device in devices() {
        let mut e = engine(&path, device);
        for (input, expected) in &bad {
            assert_eq!(
                code(e.embed(std::slice::from_ref(input))),
                *expected,
                "{device:?}"
            );
        }
        // A whole context is fine: no token is generated after it.
        assert!(e.embed(&[EmbedInput::Ids(vec![3; 64])]).is_ok());
    }
    std::fs::remove_file(path).ok();

    let key = "qwen3.attention.causal".to_string();
    let path = model_file(&arch::QWEN3, &[(key, Value::Bool(false))], "bidirectional");
    let loaded = Engine::load(&path, &EngineOptions::default());
    assert_eq!(code(loaded), "UNSUPPORTED_ARCHITECTURE");
    std::fs::remove_file(path).ok();
}

fn engine_embed(path: &PathBuf, inputs: &[EmbedInput]) -> llama_wgpu::Result<Embeddings> {
    engine(path, Device::Cpu).embed(inputs)
}

/// The default model (SmolLM2, a generation model) gives no embeddings: README "Embeddings".
#[test]
fn the_default_model_is_a_generation_model() {
    let Some(path) = common::default_model() else {
        return;
    };
    let options = EngineOptions {
        device: Device::Cpu,
        context_length: Some(64),
        ..Default::default()
    };
    let mut engine = Engine::load(path, &options).unwrap();
    let err = engine.embed(&texts()).unwrap_err();
    assert_eq!(err.code(), "EMBEDDINGS_UNSUPPORTED");
    assert!(err.to_string().contains("generation model"), "{err}");
}

//! LoRA adapters on every backend, held against the CPU reference running a model whose
//! adapted weights were merged explicitly here: `W' = W + scale * alpha / rank * B A`, computed
//! in f64 from the dequantized tensors and written as F32, so the reference never sees an
//! adapter. Switching adapters, stacking two, and refusing adapters of another base.
//!
//! Tolerances: the reference on merged weights and a backend applying `y += B (A x)` differ in
//! summation order only (f32 either way), so the bounds are those of `gpu_model.rs` (1e-3 on
//! logits of O(1..10); 4e-3 with an f16 KV cache, which the reference rounds the same way).
//! Each test first checks that the adapter moves the logits by far more than the bound, so a
//! backend that ignored it would fail.

mod common;

use common::max_abs_diff;

use common::quant_data::Rng;
use common::small_models::{small_model, with_f16_matrices};
use llama_wgpu::arch::{Architecture, ARCHITECTURES};
use llama_wgpu::config::Config;
use llama_wgpu::cpu::CpuModel;
use llama_wgpu::gguf::{GgufFile, Header};
use llama_wgpu::gguf_writer::GgufWriter;
use llama_wgpu::gpu::kv_cache::KvElement;
use llama_wgpu::gpu::{GpuContext, GpuOptions};
use llama_wgpu::lora::{Adapter, LoraStack};
use llama_wgpu::model::GpuModel;
use llama_wgpu::quant::{self, GgmlType};
use llama_wgpu::reference::ReferenceModel;
use llama_wgpu::synth::random_lora;

const PROMPT: [u32; 6] = [1, 50, 7, 95, 3, 60];

fn header(bytes: &[u8]) -> Header {
    Header::parse(bytes, Some(bytes.len() as u64))
        .unwrap()
        .unwrap()
}

fn config(bytes: &[u8]) -> Config {
    Config::from_header(&header(bytes)).unwrap()
}

fn tensor(bytes: &[u8], h: &Header, name: &str) -> Option<(Vec<u64>, Vec<f32>)> {
    let t = h.tensor(name)?;
    let start = (h.data_offset + t.offset) as usize;
    let data = &bytes[start..start + t.n_bytes as usize];
    Some((t.dims.clone(), quant::dequantize_tensor(t, data).unwrap()))
}

/// `small_model` with an LM head of its own (the small models tie it to the embedding), so
/// adapters of `output.weight` are tested too.
fn untied(arch: &Architecture, seed: u64) -> Vec<u8> {
    let bytes = small_model(arch, seed);
    let h = header(&bytes);
    let mut w = GgufWriter::from_file(&h, &bytes, &[]);
    let (vocab, e) = (96u64, 64u64);
    let mut rng = Rng(seed + 7);
    let head = common::quant_data::Tensor::random(GgmlType::Q8_0, vocab, e, &mut rng);
    w.tensor("output.weight", &[e, vocab], GgmlType::Q8_0, head.bytes);
    w.to_bytes()
}

/// A random adapter of `rank` for the model in `base`, on every projection and the head.
fn adapter(base: &[u8], rank: usize, alpha: f32, ty: GgmlType, seed: u64) -> Vec<u8> {
    random_lora(&config(base), rank, alpha, 0.3, ty, seed, &|_| true).unwrap()
}

/// `base` with every tensor an adapter in `adapters` touches replaced by `W + s B A` in F32
/// (s = user scale * alpha / rank, llama.cpp's), written independently of `lora.rs`.
fn merged(base: &[u8], adapters: &[(&[u8], f32)]) -> Vec<u8> {
    let h = header(base);
    let mut weights: Vec<(String, Vec<u64>, Vec<f64>)> = Vec::new();
    for &(file, user_scale) in adapters {
        let ah = header(file);
        let alpha = ah.metadata.get_f64("adapter.lora.alpha").unwrap_or(0.0);
        for t in ah.tensors.iter().filter(|t| t.name.ends_with(".lora_a")) {
            let target = t.name.trim_end_matches(".lora_a");
            let (a_dims, a) = tensor(file, &ah, &t.name).unwrap();
            let (_, b) = tensor(file, &ah, &format!("{target}.lora_b")).unwrap();
            let (n_in, rank) = (a_dims[0] as usize, a_dims[1] as usize);
            let s = match alpha {
                0.0 => user_scale as f64,
                alpha => user_scale as f64 * alpha / rank as f64,
            };
            if !weights.iter().any(|w| w.0 == target) {
                let (dims, w) = tensor(base, &h, target).unwrap();
                let w = w.into_iter().map(f64::from).collect();
                weights.push((target.to_string(), dims, w));
            }
            let w = &mut weights.iter_mut().find(|w| w.0 == target).unwrap().2;
            let n_out = w.len() / n_in;
            for o in 0..n_out {
                for i in 0..n_in {
                    let ba: f64 = (0..rank)
                        .map(|r| b[o * rank + r] as f64 * a[r * n_in + i] as f64)
                        .sum();
                    w[o * n_in + i] += s * ba;
                }
            }
        }
    }
    let skip: Vec<&str> = weights.iter().map(|w| w.0.as_str()).collect();
    let mut out = GgufWriter::from_file(&h, base, &skip);
    for (name, dims, w) in &weights {
        let bytes = w.iter().flat_map(|&v| (v as f32).to_le_bytes()).collect();
        out.tensor(name, dims, GgmlType::F32, bytes);
    }
    out.to_bytes()
}

fn write(bytes: &[u8], tag: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("llama-wgpu-lora-{tag}.gguf"));
    std::fs::write(&path, bytes).unwrap();
    path
}

fn stack(base: &[u8], adapters: &[(&[u8], f32)]) -> Option<LoraStack> {
    let read: Vec<Adapter> = adapters
        .iter()
        .map(|(f, _)| Adapter::from_bytes(f).unwrap())
        .collect();
    let active: Vec<(&Adapter, f32)> = read
        .iter()
        .zip(adapters)
        .map(|(a, (_, s))| (a, *s))
        .collect();
    LoraStack::build(&config(base), &active).unwrap()
}

/// The reference's logits after each prompt token.
fn reference_logits(bytes: &[u8], tag: &str, f16_cache: bool) -> Vec<Vec<f32>> {
    let path = write(bytes, tag);
    let mut m = ReferenceModel::load(&GgufFile::open(&path).unwrap(), 64).unwrap();
    m.set_f16_cache(f16_cache);
    let logits = PROMPT
        .iter()
        .map(|&t| m.forward(t).unwrap().to_vec())
        .collect();
    std::fs::remove_file(path).ok();
    logits
}

fn gpu_model(bytes: &[u8], tag: &str, options: &GpuOptions) -> GpuModel {
    let path = write(bytes, tag);
    let ctx = GpuContext::new_blocking(options).expect("a GPU adapter (lavapipe in CI)");
    let model = pollster::block_on(GpuModel::load(ctx, &GgufFile::open(&path).unwrap(), 64));
    std::fs::remove_file(path).ok();
    model.unwrap()
}

/// The adapter-applied logits of every backend against the reference on merged weights, on
/// every architecture (mixed quantized types; untied head), one token at a time and batched.
#[test]
fn adapted_logits_match_the_reference_on_merged_weights() {
    let options = [
        ("adapter's choice", GpuOptions::default()),
        (
            "GPU kernels (fused inputs)",
            GpuOptions {
                emulator_kernels: Some(false),
                ..GpuOptions::default()
            },
        ),
    ];
    for arch in ARCHITECTURES {
        let name = arch.name;
        let base = untied(arch, 31);
        let lora = adapter(&base, 8, 16.0, GgmlType::F32, 5);
        let plain = reference_logits(&base, &format!("{name}-base"), false);
        let merged_base = merged(&base, &[(&lora[..], 0.75)]);
        let want = reference_logits(&merged_base, &format!("{name}-m"), false);
        // With an f16 KV cache the reference rounds its cache the same way.
        let want_f16 = reference_logits(&merged_base, &format!("{name}-m16"), true);
        let moved = max_abs_diff(&plain[5], &want[5]);
        assert!(
            moved > 0.05,
            "{name}: the adapter moves the logits by {moved} only"
        );

        // The reference itself, applying the adapter instead of merged weights.
        let path = write(&base, &format!("{name}-ref"));
        let mut r = ReferenceModel::load(&GgufFile::open(&path).unwrap(), 64).unwrap();
        r.set_lora(stack(&base, &[(&lora[..], 0.75)]));
        for (t, w) in PROMPT.iter().zip(&want) {
            let d = max_abs_diff(r.forward(*t).unwrap(), w);
            assert!(
                d < 1e-3,
                "{name}: reference with the adapter differs by {d}"
            );
        }

        for (set, options) in &options {
            let mut m = gpu_model(&base, &format!("{name}-gpu"), options);
            pollster::block_on(m.set_lora(stack(&base, &[(&lora[..], 0.75)]).as_ref())).unwrap();
            let f16 = m.kv_element() == KvElement::F16;
            let want = if f16 { &want_f16 } else { &want };
            let tolerance = if f16 { 4e-3 } else { 1e-3 };
            let mut worst = 0f32;
            for (t, w) in PROMPT.iter().zip(want) {
                let got = pollster::block_on(m.forward_logits(&[*t])).unwrap();
                worst = worst.max(max_abs_diff(&got, w));
            }
            m.truncate(0);
            let batched = pollster::block_on(m.forward_logits(&PROMPT)).unwrap();
            let batch = max_abs_diff(&batched, &want[5]);
            eprintln!("{name}, {set}: max |gpu - merged| {worst:e}, batched {batch:e}");
            assert!(worst < tolerance && batch < tolerance, "{name}, {set}");
        }

        // The CPU engine on F16 matrices does the reference's arithmetic (no activation
        // quantization), so it is held to the reference on the merged F16 base.
        let base16 = with_f16_matrices(&base);
        let want16 = reference_logits(&merged(&base16, &[(&lora[..], 0.75)]), "m-f16", false);
        let path16 = write(&base16, &format!("{name}-cpu"));
        let mut cpu = CpuModel::load(&GgufFile::open(&path16).unwrap(), 64).unwrap();
        cpu.set_lora(stack(&base16, &[(&lora[..], 0.75)]));
        let mut worst = 0f32;
        for (t, w) in PROMPT.iter().zip(&want16) {
            worst = worst.max(max_abs_diff(cpu.forward(&[*t]).unwrap(), w));
        }
        cpu.truncate(0);
        let batch = max_abs_diff(cpu.forward(&PROMPT).unwrap(), &want16[5]);
        eprintln!("{name}, CPU engine: max |cpu - merged| {worst:e}, batched {batch:e}");
        assert!(worst < 1e-3 && batch < 1e-3, "{name}: CPU engine");
        std::fs::remove_file(path).ok();
        std::fs::remove_file(path16).ok();
    }
}

/// Two adapters at once (F32 and F16 files, different ranks and alphas, one with a negative
/// scale) against the merge of both; then switching: none, one, the other, back to none and
/// back to the first give bit-identical logits to the first time each set was applied.
#[test]
fn stacked_adapters_match_and_switching_back_restores_the_logits_exactly() {
    let base = small_model(&llama_wgpu::arch::QWEN2, 41);
    let first = adapter(&base, 16, 32.0, GgmlType::F32, 1);
    let second = adapter(&base, 4, 0.0, GgmlType::F16, 2);
    let both = [(&first[..], 0.5), (&second[..], -0.25)];
    let mut m = gpu_model(&base, "switch", &GpuOptions::default());
    let f16 = m.kv_element() == KvElement::F16;
    let tolerance = if f16 { 4e-3 } else { 1e-3 };
    let want = reference_logits(&merged(&base, &both), "both", f16);
    let run = |m: &mut GpuModel, set: &[(&[u8], f32)]| {
        pollster::block_on(m.set_lora(stack(&base, set).as_ref())).unwrap();
        m.truncate(0);
        pollster::block_on(m.forward_logits(&PROMPT)).unwrap()
    };
    let stacked = run(&mut m, &both);
    let d = max_abs_diff(&stacked, &want[5]);
    assert!(d < tolerance, "two adapters differ from their merge by {d}");

    let none = run(&mut m, &[]);
    let one = run(&mut m, &[(&first[..], 0.5)]);
    let other = run(&mut m, &[(&second[..], 1.0)]);
    assert!(max_abs_diff(&none, &one) > 0.05 && max_abs_diff(&one, &other) > 0.05);
    assert_eq!(run(&mut m, &[]), none, "back to no adapter");
    assert_eq!(
        run(&mut m, &[(&first[..], 0.5)]),
        one,
        "back to the first adapter"
    );
    assert_eq!(
        run(&mut m, &[(&first[..], 0.0)]),
        none,
        "scale 0 is no adapter"
    );
}

/// Adapters that do not fit the base are refused with MODEL_INVALID naming what is wrong.
#[test]
fn adapters_for_another_base_are_refused_naming_the_tensor() {
    let base = small_model(&llama_wgpu::arch::LLAMA, 3);
    let c = config(&base);
    let check = |file: &[u8]| -> String {
        let e = Adapter::from_bytes(file)
            .and_then(|a| llama_wgpu::lora::check(&c, &a))
            .unwrap_err();
        assert_eq!(e.code(), "MODEL_INVALID", "{e}");
        e.to_string()
    };
    // Another architecture.
    let qwen = small_model(&llama_wgpu::arch::QWEN2, 3);
    let e = check(&adapter(&qwen, 4, 0.0, GgmlType::F32, 1));
    assert!(e.contains("qwen2") && e.contains("llama"), "{e}");

    // The same architecture with another width: each tensor's shape is checked.
    let h = header(&base);
    let mut c256 = Config::from_header(&h).unwrap();
    c256.n_ff = 256;
    let other = random_lora(&c256, 4, 0.0, 0.1, GgmlType::F32, 1, &|n| {
        n.contains("ffn_up")
    })
    .unwrap();
    let e = check(&other);
    assert!(
        e.contains("blk.0.ffn_up.weight") && e.contains("another base"),
        "{e}"
    );

    // A tensor no adapter may touch, a missing half, and a file that is no adapter.
    let lora = adapter(&base, 4, 0.0, GgmlType::F32, 1);
    let lh = header(&lora);
    let mut w = GgufWriter::from_file(&lh, &lora, &[]);
    w.tensor(
        "token_embd.weight.lora_a",
        &[64, 4],
        GgmlType::F32,
        vec![0; 64 * 4 * 4],
    );
    w.tensor(
        "token_embd.weight.lora_b",
        &[4, 96],
        GgmlType::F32,
        vec![0; 4 * 96 * 4],
    );
    let e = check(&w.to_bytes());
    assert!(e.contains("token_embd.weight"), "{e}");
    let half = GgufWriter::from_file(&lh, &lora, &["blk.1.attn_k.weight.lora_b"]).to_bytes();
    let e = Adapter::from_bytes(&half).unwrap_err().to_string();
    assert!(
        e.contains("blk.1.attn_k.weight.lora_b") && e.contains("missing"),
        "{e}"
    );
    let e = Adapter::from_bytes(&base).unwrap_err();
    assert_eq!(e.code(), "MODEL_INVALID");
    assert!(e.to_string().contains("not a LoRA adapter"), "{e}");
}

//! The architecture descriptions as `Config` reads them from metadata: tensor lists, sliding
//! windows and their pattern, RoPE tables (linear, LongRoPE factors, YaRN), refusals.

mod common;

use llama_wgpu::arch::{self, Architecture, BlockTensor};
use llama_wgpu::config::{Config, RopeScaling, ROPE_FACTORS_LONG, ROPE_FACTORS_SHORT};
use llama_wgpu::gguf::{Header, Value};
use llama_wgpu::gguf_writer::GgufWriter;

fn config(bytes: &[u8]) -> llama_wgpu::Result<Config> {
    let header = Header::parse(bytes, Some(bytes.len() as u64))?.unwrap();
    Config::from_header(&header)
}

fn small(a: &Architecture) -> Config {
    config(&common::small_models::small_model(a, 1)).unwrap()
}

#[test]
fn each_architecture_reads_its_own_tensors() {
    for a in arch::ARCHITECTURES {
        let c = small(a);
        assert_eq!(c.arch, a);
        let names: Vec<String> = c.expected_tensors().into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names.contains(&"blk.1.attn_q.bias".to_string()),
            a.qkv_bias,
            "{}",
            a.name
        );
        assert_eq!(
            names.contains(&"blk.0.attn_qkv.weight".to_string()),
            a.name == "phi3"
        );
        assert_eq!(
            names.contains(&"blk.0.ffn_gate.weight".to_string()),
            a.name != "phi3"
        );
        assert_eq!(
            names.contains(&"blk.0.post_ffw_norm.weight".to_string()),
            a.post_norms
        );
        let embedding_scale = if a.name == "gemma3" { 8.0 } else { 1.0 };
        assert_eq!(c.embedding_scale, embedding_scale);
        assert_eq!(c.attention_scale, 0.25, "1/sqrt(key_length 16)");
    }
}

#[test]
fn gemma3_windows_follow_the_pattern_key_with_their_own_rope_base() {
    let c = small(&arch::GEMMA3);
    assert_eq!(c.sliding_window, Some(3));
    assert_eq!(
        c.local_layers,
        vec![true, false],
        "period 2: every second layer global"
    );
    assert_eq!((c.window(0), c.window(1)), (Some(3), None));
    // Local layers rotate with rope.freq_base_swa (100), the global one with freq_base (1e4).
    let (local, global) = (c.rope(0, None).unwrap(), c.rope(1, None).unwrap());
    assert_eq!(local.freqs[1], 100f32.powf(-2.0 / 16.0));
    assert_eq!(global.freqs[1], 10000f32.powf(-2.0 / 16.0));
    // Without a pattern key, llama.cpp's default period of 6 applies: the tiny-models-2
    // gemma3 file has no such key and matches llama.cpp's logits (reference_models.rs).
}

#[test]
fn phi3_picks_short_or_long_factors_by_the_context_used() {
    let c = small(&arch::PHI3);
    assert_eq!(c.rope_dims, 8);
    assert_eq!(c.rope_factor_tensor(64), Some(ROPE_FACTORS_SHORT));
    assert_eq!(c.rope_factor_tensor(65), Some(ROPE_FACTORS_LONG));
    let factors = [2.0, 4.0, 1.0, 8.0];
    let t = c.rope(0, Some(&factors)).unwrap();
    for (i, f) in factors.iter().enumerate() {
        let plain = 10000f32.powf(-((2 * i) as f32) / 8.0);
        assert_eq!(t.freqs[i], plain / f);
    }
    assert_eq!(t.mscale, 1.1, "rope.scaling.attn_factor");
    // Factors of the wrong length are a model error, not a panic.
    let err = c.rope(0, Some(&[1.0; 3])).unwrap_err();
    assert_eq!(err.code(), "MODEL_INVALID");
}

#[test]
fn yarn_keeps_fast_dimensions_and_interpolates_slow_ones() {
    let mut c = small(&arch::QWEN2);
    c.rope_dims = 64;
    c.head_dim = 64;
    c.rope_base = 1e6;
    c.rope_scaling = Some(RopeScaling::Yarn {
        factor: 4.0,
        original_context: 32768,
        beta_fast: 32.0,
        beta_slow: 1.0,
        ext_factor: 1.0,
    });
    let t = c.rope(0, None).unwrap();
    let plain = |i: usize| 1e6f32.powf(-((2 * i) as f32) / 64.0);
    // Pair 0 turns 32768 / (2 pi) ~ 5000 times over the original context, far more than
    // beta_fast: kept. The last pair turns less than once: divided by the factor.
    assert_eq!(t.freqs[0], plain(0));
    assert!((t.freqs[31] - plain(31) / 4.0).abs() <= plain(31) * 1e-6);
    // In between, monotonically from one to the other.
    let ratio: Vec<f32> = (0..32).map(|i| t.freqs[i] / plain(i)).collect();
    assert!(ratio.windows(2).all(|w| w[1] <= w[0] + 1e-6), "{ratio:?}");
    assert!((t.mscale - (1.0 + 0.1 * 4f32.ln())).abs() < 1e-6);
    // Linear scaling divides every pair.
    c.rope_scaling = Some(RopeScaling::Linear { factor: 2.0 });
    let t = c.rope(0, None).unwrap();
    assert!((0..32).all(|i| t.freqs[i] == plain(i) / 2.0));
}

#[test]
fn yarn_metadata_is_read_and_checked() {
    let bytes = common::small_models::small_model(&arch::QWEN2, 1);
    let header = Header::parse(&bytes, Some(bytes.len() as u64))
        .unwrap()
        .unwrap();
    let mut w = GgufWriter::from_file(&header, &bytes, &[]);
    w.set_metadata("qwen2.rope.scaling.type", Value::String("yarn".into()))
        .set_metadata("qwen2.rope.scaling.factor", Value::F32(4.0))
        .set_metadata("qwen2.rope.scaling.original_context_length", Value::U32(16));
    let c = config(&w.to_bytes()).unwrap();
    assert!(matches!(
        c.rope_scaling,
        Some(RopeScaling::Yarn { factor, original_context: 16, .. }) if factor == 4.0
    ));
    w.set_metadata("qwen2.rope.scaling.type", Value::String("dynamic".into()));
    let err = config(&w.to_bytes()).unwrap_err();
    assert_eq!(err.code(), "MODEL_INVALID");
    assert!(err.to_string().contains("dynamic"), "{err}");
}

#[test]
fn unknown_and_mixture_of_experts_architectures_are_refused_by_name() {
    let bytes = common::small_models::small_model(&arch::QWEN3, 1);
    let header = Header::parse(&bytes, Some(bytes.len() as u64))
        .unwrap()
        .unwrap();
    for (name, says) in [
        ("qwen3moe", "mixture-of-experts"),
        ("mamba", "supported: llama"),
    ] {
        let mut w = GgufWriter::from_file(&header, &bytes, &[]);
        w.set_metadata("general.architecture", Value::String(name.into()));
        let err = config(&w.to_bytes()).unwrap_err();
        assert_eq!(err.code(), "UNSUPPORTED_ARCHITECTURE");
        let text = err.to_string();
        assert!(text.contains(name) && text.contains(says), "{text}");
        assert!(text.contains("gemma3") && text.contains("phi3"), "{text}");
    }
}

#[test]
fn a_missing_architecture_tensor_is_model_invalid_naming_it() {
    let bytes = common::small_models::small_model(&arch::QWEN2, 1);
    let header = Header::parse(&bytes, Some(bytes.len() as u64))
        .unwrap()
        .unwrap();
    let w = GgufWriter::from_file(&header, &bytes, &[&BlockTensor::KBias.name(1)]);
    let err = config(&w.to_bytes()).unwrap_err();
    assert_eq!(err.code(), "MODEL_INVALID");
    assert!(err.to_string().contains("blk.1.attn_k.bias"), "{err}");
}

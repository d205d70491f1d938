//! A complete, tiny llama model written with `GgufWriter`: shared by the GGUF reader tests and
//! the fuzz target's seed corpus (`fuzz/seed.rs` includes this file by path).

use llama_wgpu::gguf::Value;
use llama_wgpu::gguf_writer::GgufWriter;
use llama_wgpu::quant::GgmlType;

/// `n` deterministic f32 values in [0, 1) as little-endian bytes.
pub fn f32_bytes(n: u64, seed: u32) -> Vec<u8> {
    (0..n as u32)
        .flat_map(|i| ((i.wrapping_mul(2654435761) ^ seed) as f32 / u32::MAX as f32).to_le_bytes())
        .collect()
}

/// Metadata and F32 tensors of a 1-layer llama: embedding 8, 2 heads (1 KV head), ffn 16.
pub fn llama_tensors(w: &mut GgufWriter, vocab: u64) {
    let (e, kv, f) = (8u64, 4u64, 16u64);
    w.metadata("general.architecture", Value::String("llama".into()))
        .metadata("general.name", Value::String("tiny-llama".into()))
        .metadata("llama.embedding_length", Value::U32(e as u32))
        .metadata("llama.block_count", Value::U32(1))
        .metadata("llama.attention.head_count", Value::U32(2))
        .metadata("llama.attention.head_count_kv", Value::U32(1))
        .metadata("llama.feed_forward_length", Value::U32(f as u32))
        .metadata("llama.context_length", Value::U32(64))
        .metadata("llama.rope.freq_base", Value::F32(10000.0))
        .metadata("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5));
    let mut t = |name: &str, dims: &[u64]| {
        let n = dims.iter().product::<u64>();
        w.tensor(name, dims, GgmlType::F32, f32_bytes(n, name.len() as u32));
    };
    t("token_embd.weight", &[e, vocab]);
    t("output_norm.weight", &[e]);
    for (name, dims) in [
        ("attn_norm", vec![e]),
        ("attn_q", vec![e, e]),
        ("attn_k", vec![e, kv]),
        ("attn_v", vec![e, kv]),
        ("attn_output", vec![e, e]),
        ("ffn_norm", vec![e]),
        ("ffn_gate", vec![e, f]),
        ("ffn_up", vec![e, f]),
        ("ffn_down", vec![f, e]),
    ] {
        t(&format!("blk.0.{name}.weight"), &dims);
    }
}

//! A small random model of any architecture, written with `GgufWriter` from the architecture
//! description (`arch.rs`): the tensors a block of that architecture holds, quantized matrices
//! of mixed types, and the metadata its options read (a sliding window and its pattern for
//! gemma3, LongRoPE factors and a partial rotation for phi3). For tests that hold the GPU
//! against the CPU reference on the same bytes, natively and in the browser.

use super::quant_data::{Rng, Tensor};
use llama_wgpu::arch::{Architecture, BlockTensor};
use llama_wgpu::gguf::{Header, Value};
use llama_wgpu::gguf_writer::GgufWriter;
use llama_wgpu::quant::GgmlType;

/// dim 64, 4 heads of 16 over 2 KV heads, ffn 128, 2 layers, vocab 96, context 64.
pub fn small_model(arch: &Architecture, seed: u64) -> Vec<u8> {
    let (e, heads, kv_heads, hd, ff, vocab) = (64u64, 4u64, 2u64, 16u64, 128u64, 96u64);
    let name = arch.name;
    let key = |k: &str| format!("{name}.{k}");
    let mut w = GgufWriter::new();
    w.metadata("general.architecture", Value::String(name.into()))
        .metadata(&key("embedding_length"), Value::U32(e as u32))
        .metadata(&key("block_count"), Value::U32(2))
        .metadata(&key("attention.head_count"), Value::U32(heads as u32))
        .metadata(&key("attention.head_count_kv"), Value::U32(kv_heads as u32))
        .metadata(&key("attention.key_length"), Value::U32(hd as u32))
        .metadata(&key("feed_forward_length"), Value::U32(ff as u32))
        .metadata(&key("context_length"), Value::U32(64))
        .metadata(&key("rope.freq_base"), Value::F32(10000.0))
        .metadata(&key("attention.layer_norm_rms_epsilon"), Value::F32(1e-6));
    let mut rope_pairs = hd / 2;
    match name {
        "gemma3" => {
            // Layer 0 local (a window of 3 keys, its own RoPE base), layer 1 global.
            w.metadata(&key("attention.sliding_window"), Value::U32(3))
                .metadata(&key("attention.sliding_window_pattern"), Value::U32(2))
                .metadata(&key("rope.freq_base_swa"), Value::F32(100.0));
        }
        "phi3" => {
            // Half of each head rotated; LongRoPE factors (the short ones apply: the context
            // used stays within the original 64) and their attention factor.
            rope_pairs = hd / 4;
            w.metadata(
                &key("rope.dimension_count"),
                Value::U32(2 * rope_pairs as u32),
            )
            .metadata(&key("rope.scaling.attn_factor"), Value::F32(1.1))
            .metadata(&key("rope.scaling.original_context_length"), Value::U32(64));
        }
        _ => {}
    }
    let mut rng = Rng(seed);
    let mut vector = |w: &mut GgufWriter, name: &str, n: u64, around: f32, spread: f32| {
        let values: Vec<u8> = (0..n)
            .flat_map(|_| (around + rng.uniform(spread)).to_le_bytes())
            .collect();
        w.tensor(name, &[n], GgmlType::F32, values);
    };
    vector(&mut w, "output_norm.weight", e, 1.0, 0.1);
    if name == "phi3" {
        vector(&mut w, "rope_factors_short.weight", rope_pairs, 1.5, 0.5);
        vector(&mut w, "rope_factors_long.weight", rope_pairs, 4.0, 1.0);
    }
    let mut rng = Rng(seed + 1);
    let mut matrix = |w: &mut GgufWriter, name: &str, ty, rows, cols| {
        let t = Tensor::random(ty, rows, cols, &mut rng);
        w.tensor(name, &[cols, rows], ty, t.bytes);
    };
    matrix(&mut w, "token_embd.weight", GgmlType::Q8_0, vocab, e);
    // Block 0 mixes types inside its q/k/v and gate/up (one weight each); block 1 keeps one
    // type (stacked weights).
    let types = |l: usize, t: BlockTensor| match (l, t) {
        (0, BlockTensor::Q | BlockTensor::Gate) => GgmlType::Q4_1,
        (0, BlockTensor::K) => GgmlType::Q4_0,
        (_, BlockTensor::AttnOutput) => GgmlType::F16,
        (_, BlockTensor::Down) => GgmlType::F32,
        _ => GgmlType::Q8_0,
    };
    let dims = llama_wgpu::arch::BlockDims {
        n_embd: e,
        q_dim: heads * hd,
        kv_dim: kv_heads * hd,
        head_dim: hd,
        n_ff: ff,
    };
    let mut rng = Rng(seed + 2);
    for l in 0..2 {
        for t in arch.block_tensors() {
            let d = t.dims(&dims);
            match *d.as_slice() {
                [n] => {
                    // Norm weights near 1; biases near 0.
                    let around = match t {
                        BlockTensor::QBias | BlockTensor::KBias | BlockTensor::VBias => 0.0,
                        _ => 1.0,
                    };
                    let values: Vec<u8> = (0..n)
                        .flat_map(|_| (around + rng.uniform(0.2)).to_le_bytes())
                        .collect();
                    w.tensor(&t.name(l), &[n], GgmlType::F32, values);
                }
                [cols, rows] => matrix(&mut w, &t.name(l), types(l, t), rows, cols),
                _ => unreachable!("block tensors are vectors or matrices"),
            }
        }
    }
    w.to_bytes()
}

/// A GGUF's 2-D tensors rewritten as F16 (values dequantized, then rounded), the rest kept: a
/// model on which the CPU engine does the f32 oracle's arithmetic (it quantizes activations
/// only for quantized weights).
pub fn with_f16_matrices(bytes: &[u8]) -> Vec<u8> {
    let header = Header::parse(bytes, Some(bytes.len() as u64))
        .unwrap()
        .unwrap();
    let mut writer = GgufWriter::new();
    for (key, value) in header.metadata.iter() {
        writer.metadata(key, value.clone());
    }
    for info in &header.tensors {
        let start = (header.data_offset + info.offset) as usize;
        let data = bytes[start..start + info.n_bytes as usize].to_vec();
        if info.dims.len() == 1 {
            writer.tensor(&info.name, &info.dims, info.ty, data);
            continue;
        }
        let f16 = llama_wgpu::quant::dequantize_tensor(info, &data)
            .unwrap()
            .into_iter()
            .flat_map(|v| half::f16::from_f32(v).to_le_bytes())
            .collect();
        writer.tensor(&info.name, &info.dims, GgmlType::F16, f16);
    }
    writer.to_bytes()
}

//! Embedding models made in the tests: `small_model`'s random weights with F16 matrices, a
//! 96-token byte-level vocabulary whose EOS is appended to every input (as Qwen3-Embedding's GGUF
//! does), and `{arch}.pooling_type` as asked, written to a file of their own (the engine loads
//! files).

use super::small_models::{small_model, with_f16_matrices};
use llama_wgpu::arch::Architecture;
use llama_wgpu::gguf::{Header, Value};
use llama_wgpu::gguf_writer::GgufWriter;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The id of `<|endoftext|>` in the test vocabulary.
pub const EOS: u32 = 95;

/// Metadata of a byte-level BPE vocabulary of 96 tokens (the model's rows): the 95 printable
/// ASCII bytes as GPT-2's byte map writes them (space is `Ġ`), then `<|endoftext|>`, appended
/// to every input.
fn vocabulary() -> Vec<(&'static str, Value)> {
    let strings = |v: Vec<String>| Value::Array(v.into_iter().map(Value::String).collect());
    let mut tokens: Vec<String> = vec!["Ġ".into()];
    tokens.extend((0x21u8..=0x7e).map(|b| (b as char).to_string()));
    tokens.push("<|endoftext|>".into());
    let types = (0..96).map(|i| Value::I32(if i == EOS { 3 } else { 1 }));
    vec![
        ("tokenizer.ggml.model", Value::String("gpt2".into())),
        ("tokenizer.ggml.pre", Value::String("gpt-2".into())),
        ("tokenizer.ggml.tokens", strings(tokens)),
        ("tokenizer.ggml.token_type", Value::Array(types.collect())),
        ("tokenizer.ggml.merges", strings(Vec::new())),
        ("tokenizer.ggml.eos_token_id", Value::U32(EOS)),
        ("tokenizer.ggml.add_bos_token", Value::Bool(false)),
        ("tokenizer.ggml.add_eos_token", Value::Bool(true)),
    ]
}

/// `small_model(a)` with F16 matrices, the vocabulary and `extra` metadata, written to a
/// file of its own (the engine loads files).
pub fn model_file(a: &Architecture, extra: &[(String, Value)], tag: &str) -> PathBuf {
    let bytes = with_f16_matrices(&small_model(a, 7));
    let header = Header::parse(&bytes, Some(bytes.len() as u64))
        .unwrap()
        .unwrap();
    let mut w = GgufWriter::new();
    for (key, value) in header.metadata.iter() {
        w.metadata(key, value.clone());
    }
    for (key, value) in vocabulary() {
        w.metadata(key, value);
    }
    for (key, value) in extra {
        w.metadata(key, value.clone());
    }
    for info in &header.tensors {
        let start = (header.data_offset + info.offset) as usize;
        let data = bytes[start..start + info.n_bytes as usize].to_vec();
        w.tensor(&info.name, &info.dims, info.ty, data);
    }
    // Tests run in parallel threads: each file gets a name of its own.
    static FILES: AtomicUsize = AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!(
        "llama-wgpu-embed-{}-{}-{}-{tag}.gguf",
        std::process::id(),
        FILES.fetch_add(1, Ordering::Relaxed),
        a.name
    ));
    std::fs::write(&path, w.to_bytes()).unwrap();
    path
}

pub fn pooling_model(a: &Architecture, pooling: u32) -> PathBuf {
    let key = format!("{}.pooling_type", a.name);
    model_file(a, &[(key, Value::U32(pooling))], &format!("pool{pooling}"))
}

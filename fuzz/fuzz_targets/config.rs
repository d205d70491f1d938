//! Fuzz target for `Config::from_header`, the checks between a file's metadata and its tensor
//! table, for each supported architecture.
//!
//! The input describes a model (architecture, sizes) and the header is written to match it
//! (every tensor the architecture needs, with the dims its sizes give), then fuzzed
//! metadata entries are written over it and fuzzed tensors added, renamed or reshaped. A
//! mutation of a whole file (`gguf_reader`) rarely keeps a header this consistent; starting
//! from a consistent one lets the fuzzer reach every check and each architecture's options
//! (sliding windows, RoPE scaling, factor tensors).
//!
//! Checked: `Ok` or a coded error, never a panic; on `Ok`, the config's own methods (RoPE
//! tables per layer, the expected tensors, windows) do not panic and the header holds every
//! tensor the config expects, with its dims.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use llama_wgpu::arch::{BlockDims, ARCHITECTURES};
use llama_wgpu::config::Config;
use llama_wgpu::gguf::{Header, Value};
use llama_wgpu::gguf_writer::GgufWriter;
use llama_wgpu::quant::GgmlType;

/// Metadata keys after `{arch}.` that `Config::from_header` reads.
const KEYS: [&str; 24] = [
    "embedding_length",
    "block_count",
    "attention.head_count",
    "attention.head_count_kv",
    "feed_forward_length",
    "context_length",
    "attention.key_length",
    "attention.value_length",
    "rope.dimension_count",
    "rope.freq_base",
    "rope.freq_base_swa",
    "attention.layer_norm_rms_epsilon",
    "rope.scaling.type",
    "rope.scaling.factor",
    "rope.scale_linear",
    "rope.scaling.original_context_length",
    "rope.scaling.attn_factor",
    "rope.scaling.yarn_beta_fast",
    "rope.scaling.yarn_ext_factor",
    "attention.sliding_window",
    "attention.sliding_window_pattern",
    "attention.causal",
    "expert_count",
    "pooling_type",
];

/// Tensor names outside the blocks.
const GLOBALS: [&str; 6] = [
    "token_embd.weight",
    "output_norm.weight",
    "output.weight",
    "rope_freqs.weight",
    "rope_factors_short.weight",
    "rope_factors_long.weight",
];

#[derive(Arbitrary, Debug)]
enum FuzzValue {
    U32(u32),
    I32(i32),
    U64(u64),
    F32(f32),
    F64(f64),
    Bool(bool),
    Str(String),
    Bools(Vec<bool>),
    U32s(Vec<u32>),
}

impl FuzzValue {
    fn value(&self) -> Value {
        match self {
            FuzzValue::U32(v) => Value::U32(*v),
            FuzzValue::I32(v) => Value::I32(*v),
            FuzzValue::U64(v) => Value::U64(*v),
            FuzzValue::F32(v) => Value::F32(*v),
            FuzzValue::F64(v) => Value::F64(*v),
            FuzzValue::Bool(v) => Value::Bool(*v),
            FuzzValue::Str(v) => Value::String(v.clone()),
            FuzzValue::Bools(v) => Value::Array(v.iter().map(|&b| Value::Bool(b)).collect()),
            FuzzValue::U32s(v) => Value::Array(v.iter().map(|&n| Value::U32(n)).collect()),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Key {
    /// `{arch}.KEYS[i]`.
    Known(u8),
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum TensorEdit {
    /// Drop the i-th tensor.
    Remove(u16),
    /// Give the i-th tensor other dims.
    Reshape(u16, Vec<u16>),
    /// Add a global tensor (`GLOBALS[i]`) or a block tensor of another layer.
    Add {
        which: u8,
        layer: u8,
        dims: Vec<u16>,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    /// `ARCHITECTURES[i]`, or (past them) a name of its own.
    arch: u8,
    other_arch: String,
    /// Sizes, kept small so a run stays fast.
    embd_per_head: u8,
    n_head: u8,
    kv_divisor: u8,
    n_layer: u8,
    n_ff: u8,
    n_vocab: u8,
    tied: bool,
    metadata: Vec<(Key, FuzzValue)>,
    tensors: Vec<TensorEdit>,
}

fn header(input: &Input) -> Option<Header> {
    let arch = ARCHITECTURES.get(usize::from(input.arch));
    let name = arch.map_or(input.other_arch.as_str(), |a| a.name);
    let head_dim = 2 * u64::from(input.embd_per_head % 8 + 1);
    let n_head = u64::from(input.n_head % 4 + 1);
    let divisors: Vec<u64> = (1..=n_head).filter(|d| n_head % d == 0).collect();
    let n_head_kv = divisors[usize::from(input.kv_divisor) % divisors.len()];
    let n_layer = u64::from(input.n_layer % 3 + 1);
    let n_ff = u64::from(input.n_ff % 32 + 1);
    let n_vocab = u64::from(input.n_vocab % 16 + 1);
    let n_embd = head_dim * n_head;

    let mut w = GgufWriter::new();
    w.metadata("general.architecture", Value::String(name.into()));
    for (key, value) in [
        ("embedding_length", n_embd),
        ("block_count", n_layer),
        ("attention.head_count", n_head),
        ("attention.head_count_kv", n_head_kv),
        ("feed_forward_length", n_ff),
        ("context_length", 64),
    ] {
        w.metadata(&format!("{name}.{key}"), Value::U32(value as u32));
    }
    for (key, value) in &input.metadata {
        let key = match key {
            Key::Known(i) => format!("{name}.{}", KEYS[usize::from(*i) % KEYS.len()]),
            Key::Raw(raw) => raw.clone(),
        };
        w.set_metadata(&key, value.value());
    }

    let mut tensors: Vec<(String, Vec<u64>)> = vec![
        (GLOBALS[0].into(), vec![n_embd, n_vocab]),
        (GLOBALS[1].into(), vec![n_embd]),
    ];
    if !input.tied {
        tensors.push((GLOBALS[2].into(), vec![n_embd, n_vocab]));
    }
    let dims = BlockDims {
        n_embd,
        q_dim: head_dim * n_head,
        kv_dim: head_dim * n_head_kv,
        head_dim,
        n_ff,
    };
    let blocks = arch.map(|a| a.block_tensors()).unwrap_or_default();
    for layer in 0..n_layer as usize {
        for t in &blocks {
            tensors.push((t.name(layer), t.dims(&dims)));
        }
    }
    let small = |dims: &[u16]| dims.iter().take(4).map(|&d| u64::from(d % 64)).collect();
    for edit in &input.tensors {
        let n = tensors.len();
        match edit {
            TensorEdit::Remove(i) if n > 0 => {
                tensors.remove(usize::from(*i) % n);
            }
            TensorEdit::Reshape(i, d) if n > 0 => tensors[usize::from(*i) % n].1 = small(d),
            TensorEdit::Add { which, layer, dims } => {
                let i = usize::from(*which);
                let name = match GLOBALS.get(i) {
                    Some(g) => g.to_string(),
                    None if blocks.is_empty() => format!("blk.{layer}.x"),
                    None => blocks[i % blocks.len()].name(usize::from(*layer % 4)),
                };
                tensors.push((name, small(dims)));
            }
            _ => {}
        }
    }
    for (name, dims) in &tensors {
        // The header only: data sizes are declared, never written.
        let elements = dims.iter().product::<u64>();
        w.tensor_of_size(name, dims, GgmlType::F32, elements * 4);
    }
    let bytes = w.header_bytes();
    // Unsized: the tensor data is not there. A header the writer wrote and the reader refuses
    // (duplicate tensor names, a zero dim) is the reader's business: `gguf_reader` covers it.
    Header::parse(&bytes, None).ok()?
}

fuzz_target!(|input: Input| {
    let Some(header) = header(&input) else {
        return;
    };
    let config = match Config::from_header(&header) {
        Ok(config) => config,
        Err(e) => {
            assert!(!e.code().is_empty());
            return;
        }
    };
    for (name, dims) in config.expected_tensors() {
        let t = header
            .tensor(&name)
            .expect("an accepted config has its tensors");
        assert_eq!(t.dims, dims, "{name}");
    }
    let _ = (config.q_dim(), config.kv_dim(), config.block_dims());
    let factors = vec![1.0f32; config.rope_dims / 2];
    for layer in 0..config.n_layer {
        let _ = config.window(layer);
        let _ = config.rope(layer, None);
        let _ = config.rope(layer, Some(&factors));
    }
    for context in [1, 64, 1 << 20] {
        let _ = config.rope_factor_tensor(context);
    }
});

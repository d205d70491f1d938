//! Writes seed corpora for the fuzz targets (`fuzz/corpus/<target>/`):
//! - `gguf_reader`: a few small valid GGUFs built with `GgufWriter` (a tiny llama model with a
//!   SentencePiece vocabulary, one with a byte-level BPE vocabulary, vocab-only files, a
//!   metadata zoo) and the quantization fixtures from `tests/fixtures/quant/`, each behind one
//!   control byte (see the target), once per control value in `CONTROL`;
//! - `loader`: the two tiny models, the same way;
//! - `chat_template`: the built-in templates and the chat templates of the GGUF files in the
//!   cache (`$LLAMA_WGPU_CACHE/{models,vocabs}`, when there), over a conversation with every
//!   role.
//!
//! `tokenizer` and `config` take structured input (`arbitrary`) and start from the committed
//! corpus (or from nothing).
//!
//! Run from the repository root:
//! `cargo run --release --manifest-path fuzz/Cargo.toml --example seed`

use std::path::{Path, PathBuf};

use llama_wgpu::gguf::Value;
use llama_wgpu::gguf_writer::GgufWriter;
use llama_wgpu::quant::GgmlType;

#[path = "../tests/common/tiny_llama.rs"]
mod tiny_llama;
use tiny_llama::llama_tensors;

/// Control bytes: different chunkings of the stream reader.
const CONTROL: [u8; 3] = [0x00, 0x5a, 0xff];

fn strings(items: &[&str]) -> Value {
    Value::Array(items.iter().map(|s| Value::String(s.to_string())).collect())
}

/// A SentencePiece ("llama") vocabulary: control tokens, byte fallback, scored pieces.
fn spm_vocab(w: &mut GgufWriter) -> u64 {
    let mut tokens = vec!["<unk>", "<s>", "</s>"];
    let bytes: Vec<String> = (0..4u8).map(|b| format!("<0x{b:02X}>")).collect();
    tokens.extend(bytes.iter().map(String::as_str));
    tokens.extend([
        "▁", "H", "i", "▁H", "▁Hi", "w", "o", "r", "l", "d", "▁w", "or", "ld",
    ]);
    let n = tokens.len();
    let types: Vec<Value> = (0..n)
        .map(|i| match i {
            0 => Value::I32(2),
            1 | 2 => Value::I32(3),
            3..=6 => Value::I32(6),
            _ => Value::I32(1),
        })
        .collect();
    w.metadata("tokenizer.ggml.model", Value::String("llama".into()))
        .metadata("tokenizer.ggml.tokens", strings(&tokens))
        .metadata(
            "tokenizer.ggml.scores",
            Value::Array((0..n).map(|i| Value::F32(-(i as f32))).collect()),
        )
        .metadata("tokenizer.ggml.token_type", Value::Array(types))
        .metadata("tokenizer.ggml.bos_token_id", Value::U32(1))
        .metadata("tokenizer.ggml.eos_token_id", Value::U32(2))
        .metadata("tokenizer.ggml.unknown_token_id", Value::U32(0))
        .metadata("tokenizer.ggml.add_bos_token", Value::Bool(true));
    n as u64
}

/// A byte-level BPE ("gpt2") vocabulary with merges and the smollm pre-tokenizer.
fn bpe_vocab(w: &mut GgufWriter, pre: &str) -> u64 {
    let tokens = [
        "<|endoftext|>",
        "<|im_start|>",
        "<|im_end|>",
        "H",
        "i",
        "Ġ",
        "w",
        "o",
        "r",
        "l",
        "d",
        "Hi",
        "Ġw",
        "or",
        "ld",
        "Ġwor",
        "Ġworld",
        "!",
        "Ċ",
    ];
    let n = tokens.len();
    let types: Vec<Value> = (0..n)
        .map(|i| Value::I32(if i < 3 { 3 } else { 1 }))
        .collect();
    w.metadata("tokenizer.ggml.model", Value::String("gpt2".into()))
        .metadata("tokenizer.ggml.pre", Value::String(pre.into()))
        .metadata("tokenizer.ggml.tokens", strings(&tokens))
        .metadata("tokenizer.ggml.token_type", Value::Array(types))
        .metadata(
            "tokenizer.ggml.merges",
            strings(&["H i", "Ġ w", "o r", "l d", "Ġw or", "Ġwor ld"]),
        )
        .metadata("tokenizer.ggml.bos_token_id", Value::U32(1))
        .metadata("tokenizer.ggml.eos_token_id", Value::U32(2))
        .metadata("tokenizer.ggml.add_bos_token", Value::Bool(false))
        .metadata(
            "tokenizer.chat_template",
            Value::String("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}".into()),
        );
    n as u64
}

fn seeds() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();

    let mut w = GgufWriter::new();
    let v = spm_vocab(&mut w);
    llama_tensors(&mut w, v);
    out.push(("llama-spm".to_string(), w.to_bytes()));

    let mut w = GgufWriter::new();
    let v = bpe_vocab(&mut w, "smollm");
    llama_tensors(&mut w, v);
    out.push(("llama-bpe-smollm".to_string(), w.to_bytes()));

    // Vocab-only files (no tensors), as llama.cpp's ggml-vocab-*.gguf.
    for pre in ["llama-bpe", "gpt-2", "qwen2", "default"] {
        let mut w = GgufWriter::new();
        w.metadata("general.architecture", Value::String("llama".into()));
        bpe_vocab(&mut w, pre);
        out.push((format!("vocab-{pre}"), w.to_bytes()));
    }

    // Every metadata type, nested arrays, a custom alignment and a quantized tensor.
    let mut w = GgufWriter::new();
    w.metadata("general.alignment", Value::U32(64))
        .metadata("u8", Value::U8(7))
        .metadata("i8", Value::I8(-7))
        .metadata("u16", Value::U16(700))
        .metadata("i16", Value::I16(-700))
        .metadata("u32", Value::U32(70000))
        .metadata("i32", Value::I32(-70000))
        .metadata("f32", Value::F32(0.5))
        .metadata("bool", Value::Bool(true))
        .metadata("string", Value::String("héllo".into()))
        .metadata("u64", Value::U64(1 << 40))
        .metadata("i64", Value::I64(-(1 << 40)))
        .metadata("f64", Value::F64(-0.25))
        .metadata(
            "nested",
            Value::Array(vec![
                Value::Array(vec![Value::I16(-3), Value::I16(7)]),
                Value::Array(vec![Value::I16(1)]),
            ]),
        )
        .metadata("empty", Value::Array(vec![]))
        .tensor("q8", &[32, 2], GgmlType::Q8_0, vec![0x11; 68])
        .tensor("f16", &[4], GgmlType::F16, vec![0x3c; 8]);
    out.push(("metadata-zoo".to_string(), w.to_bytes()));

    out
}

fn ok_or_code(r: llama_wgpu::Result<()>) -> String {
    match r {
        Ok(()) => "ok".to_string(),
        Err(e) => e.code().to_string(),
    }
}

/// A conversation with every role, in the `chat_template` target's message layout.
const CONVERSATION: &str = "system\x1fBe brief.\x1euser\x1fWeather in Paris?\x1eassistant\x1f{\"city\": \"Paris\"}\x1etool\x1f22 C\x1euser\x1fThanks <s> wörld";

/// Chat templates: the built-in ones and those of the GGUF files in the cache.
fn templates() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = llama_wgpu::chat::BUILTIN_TEMPLATES
        .iter()
        .map(|name| {
            let t = llama_wgpu::chat::ChatTemplate::builtin(name).expect("a built-in template");
            (format!("builtin-{name}"), t.source().to_string())
        })
        .collect();
    let cache = std::env::var_os("LLAMA_WGPU_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/llama-wgpu")));
    let mut files: Vec<PathBuf> = ["models", "vocabs"]
        .iter()
        .filter_map(|dir| std::fs::read_dir(cache.as_ref()?.join(dir)).ok())
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "gguf"))
        .collect();
    files.sort();
    for path in files {
        let Ok(file) = llama_wgpu::gguf::GgufFile::open(&path) else {
            continue;
        };
        if let Some(source) = file.header.metadata.get_str("tokenizer.chat_template") {
            // One seed per distinct template.
            if out.iter().all(|(_, s)| s != source) {
                let stem = path.file_stem().unwrap().to_string_lossy().to_string();
                out.push((stem, source.to_string()));
            }
        }
    }
    out
}

fn write_seeds(dir: &Path, seeds: &[(String, Vec<u8>)]) -> std::io::Result<usize> {
    std::fs::create_dir_all(dir)?;
    for (name, data) in seeds {
        std::fs::write(dir.join(format!("seed-{name}")), data)?;
    }
    Ok(seeds.len())
}

fn main() -> std::io::Result<()> {
    let fuzz_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));

    // chat_template: flags (bit 0: add_generation_prompt, bit 1: tools, bit 2: tool calls),
    // the conversation, NUL, the source.
    let mut chat = Vec::new();
    for (name, source) in templates() {
        for flags in [0x01u8, 0x06] {
            let mut data = vec![flags];
            data.extend_from_slice(CONVERSATION.as_bytes());
            data.push(0);
            data.extend_from_slice(source.as_bytes());
            chat.push((format!("{name}-{flags:02x}"), data));
        }
    }
    let n = write_seeds(&fuzz_dir.join("corpus/chat_template"), &chat)?;
    println!("wrote {n} chat_template seeds");

    let corpus = fuzz_dir.join("corpus/gguf_reader");
    std::fs::create_dir_all(&corpus)?;
    let mut files = seeds();
    // loader: the two tiny models (the others have no weights), behind each control byte.
    let loader: Vec<(String, Vec<u8>)> = files
        .iter()
        .filter(|(name, _)| name.starts_with("llama-"))
        .flat_map(|(name, bytes)| {
            CONTROL.iter().map(move |&c| {
                let mut data = vec![c];
                data.extend_from_slice(bytes);
                (format!("{name}-{c:02x}"), data)
            })
        })
        .collect();
    let n = write_seeds(&fuzz_dir.join("corpus/loader"), &loader)?;
    println!("wrote {n} loader seeds");

    let quant = fuzz_dir.join("../tests/fixtures/quant");
    let mut fixtures: Vec<PathBuf> = std::fs::read_dir(&quant)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "gguf"))
        .collect();
    fixtures.sort();
    for p in fixtures {
        let stem = p.file_stem().unwrap().to_string_lossy().to_string();
        files.push((format!("quant-{stem}"), std::fs::read(&p)?));
    }
    let mut written = 0;
    for (name, bytes) in &files {
        // Say how deep each seed gets, so a seed that stopped reaching the tokenizer is seen.
        let header = llama_wgpu::gguf::Header::parse(bytes, Some(bytes.len() as u64));
        let depth = match &header {
            Ok(Some(h)) => format!(
                "header ok; config: {}; tokenizer: {}",
                ok_or_code(llama_wgpu::config::Config::from_header(h).map(|_| ())),
                ok_or_code(llama_wgpu::tokenizer::Tokenizer::from_gguf(&h.metadata).map(|_| ())),
            ),
            Ok(None) => "header incomplete".to_string(),
            Err(e) => format!("header refused: {e}"),
        };
        println!("{name:<24} {:>6} bytes  {depth}", bytes.len());
        for control in CONTROL {
            let path: &Path = &corpus.join(format!("seed-{name}-{control:02x}"));
            let mut data = vec![control];
            data.extend_from_slice(bytes);
            std::fs::write(path, data)?;
            written += 1;
        }
    }
    println!("wrote {written} seeds to {}", corpus.display());
    Ok(())
}

//! Fuzz target for tokenizer construction from GGUF metadata (`Tokenizer::from_gguf`): a
//! vocabulary (token texts, scores, types), merges, the pre-tokenizer name and the special
//! token ids, all built from structured input (`arbitrary`), then an encode/decode of fuzzed
//! text. `gguf_reader` reaches the same code only through whole files, where most mutations
//! break the file before the tokenizer sees it.
//!
//! Checked: construction ends in `Ok` or a coded error, never a panic; on a tokenizer that
//! builds, encode, decode and the stream decoder do not panic, the stream decoder writes what
//! `decode` writes, and where the vocabulary is complete the text round-trips:
//! - byte-level BPE (`gpt2` with a byte-level pre-tokenizer) with all 256 byte characters as
//!   tokens: `decode(encode(text)) == text` for any text;
//! - SentencePiece (`llama`) with `▁` and the 256 `<0xXX>` byte tokens and no user-defined
//!   token (matched in the raw text, each one starts a piece that gets its own space in front,
//!   as in llama.cpp): the same for text without U+2581 (`▁`, which SentencePiece writes for a
//!   space) and without a leading space (the decoder drops the one space it added in front).
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use llama_wgpu::gguf::{Header, Value};
use llama_wgpu::gguf_writer::GgufWriter;
use llama_wgpu::tokenizer::Tokenizer;

/// Pre-tokenizer names: byte-level BPE ones (the round trip is checked for these), others, and
/// one llama.cpp does not know.
const BYTE_LEVEL_PRE: [&str; 5] = ["default", "llama-bpe", "gpt-2", "qwen2", "smollm"];
const OTHER_PRE: [&str; 6] = [
    "deepseek-llm",
    "falcon",
    "starcoder",
    "command-r",
    "gpt4o",
    "no-such-pre",
];

#[derive(Arbitrary, Debug)]
enum Model {
    SentencePiece,
    Bpe { pre: u8 },
    Gemma4,
    Other(String),
}

#[derive(Arbitrary, Debug)]
struct Token {
    text: String,
    score: f32,
    kind: u8,
}

#[derive(Arbitrary, Debug)]
enum Merge {
    /// Two tokens of the vocabulary by index: "a b".
    Pair(u16, u16),
    Raw(String),
}

#[derive(Arbitrary, Debug)]
struct Input {
    model: Model,
    /// Add the scheme's full byte alphabet (the round trip is checked then).
    complete: bool,
    tokens: Vec<Token>,
    scores: bool,
    types: bool,
    merges: Option<Vec<Merge>>,
    bos: Option<u32>,
    eos: Option<u32>,
    unk: Option<u32>,
    eot: Option<u32>,
    add_bos: Option<bool>,
    add_space_prefix: Option<bool>,
    text: String,
}

/// GPT-2's byte-to-character map (printable bytes as themselves, the others from U+0100).
fn byte_level_chars() -> Vec<String> {
    let mut n = 0;
    (0..=255u8)
        .map(|b| match b {
            b'!'..=b'~' | 0xa1..=0xac | 0xae..=0xff => char::from(b).to_string(),
            _ => {
                n += 1;
                char::from_u32(255 + n).unwrap().to_string()
            }
        })
        .collect()
}

fn metadata(input: &Input) -> Option<(Header, bool)> {
    let mut tokens: Vec<(String, f32, i32)> = input
        .tokens
        .iter()
        .map(|t| (t.text.clone(), t.score, i32::from(t.kind % 8)))
        .collect();
    let mut w = GgufWriter::new();
    let mut round_trip = false;
    let model = match &input.model {
        Model::SentencePiece => {
            // A user-defined token is matched in the raw text, and SentencePiece puts its space
            // in front of each piece of text after one, as llama.cpp does: no round trip then.
            let user_defined = input.types && input.tokens.iter().any(|t| t.kind % 8 == 4);
            if input.complete && !user_defined {
                // The space piece too: without it the space SentencePiece puts in front comes
                // out of the byte tokens as "▁" (llama.cpp decodes it the same way).
                tokens.push(("\u{2581}".to_string(), -1.0, 1));
                tokens.extend((0..=255u8).map(|b| (format!("<0x{b:02X}>"), -1000.0, 6)));
                round_trip = true;
            }
            "llama".to_string()
        }
        Model::Bpe { pre } => {
            let pre = usize::from(*pre);
            let name = match pre < BYTE_LEVEL_PRE.len() {
                true => BYTE_LEVEL_PRE[pre],
                false => OTHER_PRE[pre % OTHER_PRE.len()],
            };
            w.metadata("tokenizer.ggml.pre", Value::String(name.into()));
            if input.complete && pre < BYTE_LEVEL_PRE.len() {
                tokens.extend(byte_level_chars().into_iter().map(|c| (c, 0.0, 1)));
                round_trip = true;
            }
            "gpt2".to_string()
        }
        Model::Gemma4 => "gemma4".to_string(),
        Model::Other(name) => name.clone(),
    };
    w.metadata("tokenizer.ggml.model", Value::String(model));
    let texts = tokens.iter().map(|t| Value::String(t.0.clone())).collect();
    w.metadata("tokenizer.ggml.tokens", Value::Array(texts));
    if input.scores {
        let scores = tokens.iter().map(|t| Value::F32(t.1)).collect();
        w.metadata("tokenizer.ggml.scores", Value::Array(scores));
    }
    if input.types {
        let types = tokens.iter().map(|t| Value::I32(t.2)).collect();
        w.metadata("tokenizer.ggml.token_type", Value::Array(types));
    }
    if let Some(merges) = &input.merges {
        let text_of = |i: u16| {
            let n = tokens.len().max(1);
            tokens.get(usize::from(i) % n).map_or("", |t| t.0.as_str())
        };
        let merges = merges
            .iter()
            .map(|m| match m {
                Merge::Pair(a, b) => format!("{} {}", text_of(*a), text_of(*b)),
                Merge::Raw(text) => text.clone(),
            })
            .map(Value::String)
            .collect();
        w.metadata("tokenizer.ggml.merges", Value::Array(merges));
    }
    for (key, id) in [
        ("bos_token_id", input.bos),
        ("eos_token_id", input.eos),
        ("unknown_token_id", input.unk),
        ("eot_token_id", input.eot),
    ] {
        if let Some(id) = id {
            w.metadata(&format!("tokenizer.ggml.{key}"), Value::U32(id));
        }
    }
    for (key, value) in [
        ("add_bos_token", input.add_bos),
        ("add_space_prefix", input.add_space_prefix),
    ] {
        if let Some(value) = value {
            w.metadata(&format!("tokenizer.ggml.{key}"), Value::Bool(value));
        }
    }
    let bytes = w.to_bytes();
    // The writer only writes what the reader reads; a header it refuses is the writer's
    // business (tested elsewhere), not this target's.
    let header = Header::parse(&bytes, Some(bytes.len() as u64)).ok()??;
    Some((header, round_trip))
}

fuzz_target!(|input: Input| {
    let Some((header, round_trip)) = metadata(&input) else {
        return;
    };
    let tokenizer = match Tokenizer::from_gguf(&header.metadata) {
        Ok(t) => t,
        Err(e) => {
            // A coded error (any code): reaching here without a panic is the check.
            assert!(!e.code().is_empty());
            return;
        }
    };
    let text = input.text.as_str();
    for parse_special in [false, true] {
        let Ok(ids) = tokenizer.encode(text, false, parse_special) else {
            continue;
        };
        let Ok(decoded) = tokenizer.decode(&ids, false) else {
            continue;
        };
        let mut streamed = String::new();
        let mut dec = tokenizer.stream_decoder(false);
        for &id in &ids {
            if let Ok(Some(piece)) = dec.push(id) {
                streamed.push_str(&piece);
            }
        }
        if let Ok(Some(piece)) = dec.flush() {
            streamed.push_str(&piece);
        }
        assert_eq!(streamed, decoded, "stream decoder vs decode of {ids:?}");
        let checked =
            round_trip && !parse_special && !text.contains('\u{2581}') && !text.starts_with(' ');
        if checked {
            assert_eq!(decoded, text, "round trip through {ids:?}");
        }
    }
});

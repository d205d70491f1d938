//! The tokenizer built from GGUF metadata against llama.cpp's test vectors
//! (`tests/fixtures/tokenizer/<name>.tests.json`, made with `add_special_tokens=False`), plus
//! decoding, streaming, special tokens and stop ids.
//!
//! The vocab-only GGUFs are not in the repository: `./build.sh setup` fetches them (see
//! `tests/fetch-vocabs.sh`); smollm2's vocabulary is the default model's own.

mod common;

use std::sync::OnceLock;

use llama_wgpu::gguf::{GgufFile, Header, Value};
use llama_wgpu::gguf_writer::GgufWriter;
use llama_wgpu::tokenizer::{SpecialTokens, Tokenizer};
use llama_wgpu::Error;

const VOCABS: [&str; 4] = ["llama-spm", "llama-bpe", "gpt-2", "smollm2"];

/// Emoji (several byte tokens each), CJK and accents: text whose characters span tokens.
const MIXED_TEXT: &str = "Hello 🦙 world! 我想在apple工作 😶‍🌫️ naïve café ✅\n  done";

/// Each vocabulary is built once and shared by the tests (llama-bpe takes a moment).
fn tokenizer(name: &str) -> Option<&'static Tokenizer> {
    static LOADED: [OnceLock<Option<Tokenizer>>; 4] = [
        OnceLock::new(),
        OnceLock::new(),
        OnceLock::new(),
        OnceLock::new(),
    ];
    let index = VOCABS.iter().position(|&v| v == name).expect("known vocab");
    LOADED[index]
        .get_or_init(|| {
            let path = common::vocab_path(name)?;
            let file = GgufFile::open(&path).expect("vocab GGUF opens");
            Some(Tokenizer::from_gguf(&file.header.metadata).expect("tokenizer builds"))
        })
        .as_ref()
}

#[derive(serde::Deserialize)]
struct Vector {
    text: String,
    ids: Vec<u32>,
}

fn vectors(name: &str) -> Vec<Vector> {
    let path = common::local_fixture(&format!("tokenizer/{name}.tests.json"));
    let bytes = std::fs::read(&path).expect("test vectors present");
    serde_json::from_slice(&bytes).expect("test vectors parse")
}

/// Every vector, all failures reported together.
fn check_vectors(name: &str) {
    let Some(tok) = tokenizer(name) else { return };
    let vectors = vectors(name);
    let mut failures = Vec::new();
    for v in &vectors {
        let got = tok.encode(&v.text, false, false).expect("encode");
        if got != v.ids {
            failures.push(format!(
                "  {:?}\n    expected {:?}\n    got      {:?}",
                v.text, v.ids, got
            ));
        }
    }
    let passed = vectors.len() - failures.len();
    eprintln!("{name}: {passed}/{} vectors pass", vectors.len());
    assert!(
        failures.is_empty(),
        "{name}: {} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn llama_spm_vectors() {
    check_vectors("llama-spm");
}

#[test]
fn llama_bpe_vectors() {
    check_vectors("llama-bpe");
}

#[test]
fn gpt2_vectors() {
    check_vectors("gpt-2");
}

#[test]
fn smollm2_vectors() {
    check_vectors("smollm2");
}

/// Byte-level and byte-fallback vocabularies can spell any text, so every vector comes back.
#[test]
fn decode_inverts_encode() {
    for name in VOCABS {
        let Some(tok) = tokenizer(name) else { continue };
        let mut failures = Vec::new();
        let texts = vectors(name).into_iter().map(|v| v.text);
        for text in texts.chain([MIXED_TEXT.to_string()]) {
            let ids = tok.encode(&text, false, false).expect("encode");
            let back = tok.decode(&ids, false).expect("decode");
            if back != text {
                failures.push(format!("  {text:?} -> {back:?}"));
            }
        }
        assert!(
            failures.is_empty(),
            "{name} does not round-trip:\n{}",
            failures.join("\n")
        );
    }
}

/// Pieces concatenate to `decode`, and none carries a broken character even where an emoji
/// spans several tokens.
#[test]
fn stream_decoder_yields_whole_characters() {
    for name in VOCABS {
        let Some(tok) = tokenizer(name) else { continue };
        let ids = tok.encode(MIXED_TEXT, false, false).expect("encode");
        let mut stream = tok.stream_decoder(false);
        let mut pieces = Vec::new();
        let mut held_back = 0;
        for &id in &ids {
            match stream.push(id).expect("push") {
                Some(piece) => pieces.push(piece),
                None => held_back += 1,
            }
        }
        pieces.extend(stream.flush().expect("flush"));
        for piece in &pieces {
            assert!(
                !piece.contains('\u{FFFD}'),
                "{name}: broken piece {piece:?}"
            );
        }
        assert_eq!(pieces.concat(), tok.decode(&ids, false).unwrap(), "{name}");
        assert_eq!(pieces.concat(), MIXED_TEXT, "{name}");
        assert!(
            held_back > 0,
            "{name}: no token was held back, the emoji test tested nothing"
        );
    }
}

/// Flush gives out an incomplete character as U+FFFD rather than losing it.
#[test]
fn stream_decoder_flushes_incomplete_text() {
    let Some(tok) = tokenizer("llama-spm") else {
        return;
    };
    let ids = tok.encode("🦙", false, false).unwrap();
    let mut stream = tok.stream_decoder(false);
    for &id in &ids[..ids.len() - 1] {
        assert_eq!(stream.push(id).unwrap(), None);
    }
    let rest = stream.flush().unwrap().expect("held-back bytes come out");
    assert!(rest.ends_with('\u{FFFD}'), "{rest:?}");
}

/// After a prompt, a SentencePiece word keeps its leading space; a fresh stream drops it, as
/// `decode` does.
#[test]
fn stream_decoder_continues_a_context() {
    let Some(tok) = tokenizer("llama-spm") else {
        return;
    };
    let ids = tok.encode("Once upon a time", false, false).unwrap();
    let (context, last) = ids.split_at(ids.len() - 1);
    let mut fresh = tok.stream_decoder(false);
    assert_eq!(fresh.push(last[0]).unwrap().as_deref(), Some("time"));
    let mut continued = tok.stream_decoder(false).with_context(context).unwrap();
    assert_eq!(continued.push(last[0]).unwrap().as_deref(), Some(" time"));
}

#[test]
fn special_text_is_one_token_only_when_parsed() {
    for (name, text, id) in [
        ("smollm2", "<|im_start|>", 1),
        ("llama-bpe", "<|begin_of_text|>", 128000),
    ] {
        let Some(tok) = tokenizer(name) else { continue };
        assert_eq!(tok.encode(text, false, true).unwrap(), vec![id], "{name}");
        let plain = tok.encode(text, false, false).unwrap();
        assert!(plain.len() > 1 && !plain.contains(&id), "{name}: {plain:?}");
        let framed = tok.encode(&format!("a{text}b"), false, true).unwrap();
        assert!(framed.contains(&id), "{name}: {framed:?}");
    }
}

#[test]
fn add_special_follows_the_metadata() {
    if let Some(tok) = tokenizer("llama-spm") {
        assert!(tok.add_bos());
        let ids = tok.encode("Hello", true, false).unwrap();
        assert_eq!(ids[0], 1);
        assert_eq!(&ids[1..], tok.encode("Hello", false, false).unwrap());
        assert_eq!(tok.encode("", true, false).unwrap(), vec![1]);
    }
    if let Some(tok) = tokenizer("smollm2") {
        assert!(!tok.add_bos());
        assert_eq!(
            tok.encode("Hello", true, false).unwrap(),
            tok.encode("Hello", false, false).unwrap()
        );
    }
    // No add_bos_token key: llama.cpp's default for the llama3 pre-tokenizer is to add BOS.
    if let Some(tok) = tokenizer("llama-bpe") {
        assert_eq!(tok.encode("Hello", true, false).unwrap()[0], 128000);
    }
}

#[test]
fn stop_ids_and_control_tokens() {
    if let Some(tok) = tokenizer("smollm2") {
        assert_eq!(tok.eos_id(), Some(2));
        assert!(tok.stop_ids().contains(&2), "{:?}", tok.stop_ids());
        assert!(tok.is_stop(0), "<|endoftext|> ends generation too");
        assert_eq!(tok.token_text(2).as_deref(), Some("<|im_end|>"));
        assert!(tok.is_control(1) && !tok.is_control(1000));
        assert_eq!(tok.vocab_size(), 49152);
        let ids = tok
            .encode("<|im_start|>user\nHi<|im_end|>", false, true)
            .unwrap();
        assert_eq!(tok.decode(&ids, true).unwrap(), "user\nHi");
        assert_eq!(
            tok.decode(&ids, false).unwrap(),
            "<|im_start|>user\nHi<|im_end|>"
        );
    }
    if let Some(tok) = tokenizer("llama-bpe") {
        let eot = tok.token_id("<|eot_id|>").expect("llama 3 has <|eot_id|>");
        assert!(
            tok.is_stop(eot) && tok.is_stop(128001),
            "{:?}",
            tok.stop_ids()
        );
    }
    if let Some(tok) = tokenizer("llama-spm") {
        assert_eq!(tok.stop_ids(), &[2]);
        assert_eq!(tok.token_text(1).as_deref(), Some("<s>"));
    }
}

#[test]
fn decode_rejects_ids_outside_the_vocabulary() {
    let Some(tok) = tokenizer("gpt-2") else {
        return;
    };
    let err = tok.decode(&[50257], false).unwrap_err();
    assert!(matches!(err, Error::Tokenizer(_)), "{err}");
}

/// `from_json_bytes` against the same vectors, with the Hugging Face tokenizer.json that the
/// shared fixtures hold (present only beside the project's own checkout).
#[test]
fn tokenizer_json_gives_the_same_ids() {
    for name in ["smollm2", "llama-spm"] {
        let Some(path) = common::shared_fixture(&format!("tokenizer/{name}.tokenizer.json")) else {
            eprintln!("SKIPPED: ../shared/fixtures/tokenizer/{name}.tokenizer.json not present");
            continue;
        };
        let special = SpecialTokens {
            bos_id: Some(1),
            eos_id: Some(2),
            add_bos: true,
            add_eos: false,
        };
        let tok = Tokenizer::from_json_bytes(&std::fs::read(path).unwrap(), special).unwrap();
        for v in vectors(name) {
            assert_eq!(
                tok.encode(&v.text, false, false).unwrap(),
                v.ids,
                "{name}: {:?}",
                v.text
            );
        }
        assert_eq!(tok.encode("x", true, false).unwrap()[0], 1);
        assert!(tok.is_stop(2) && tok.is_control(2));
    }
}

fn strings(items: &[&str]) -> Value {
    Value::Array(items.iter().map(|s| Value::String(s.to_string())).collect())
}

/// Metadata of a small byte-level vocabulary ("a", "b", "ab", "<eos>") with the merge "a b";
/// `changes` replace or add keys.
fn tiny_bpe(changes: &[(&str, Value)]) -> llama_wgpu::gguf::Metadata {
    let mut keys = vec![
        ("tokenizer.ggml.model", Value::String("gpt2".into())),
        ("tokenizer.ggml.pre", Value::String("some-new-name".into())),
        ("tokenizer.ggml.tokens", strings(&["a", "b", "ab", "<eos>"])),
        (
            "tokenizer.ggml.token_type",
            Value::Array([1, 1, 1, 3].map(Value::I32).to_vec()),
        ),
        ("tokenizer.ggml.merges", strings(&["a b"])),
        ("tokenizer.ggml.eos_token_id", Value::U32(3)),
    ];
    for (key, value) in changes {
        keys.retain(|(k, _)| k != key);
        keys.push((key, value.clone()));
    }
    let mut writer = GgufWriter::new();
    for (key, value) in keys {
        writer.metadata(key, value);
    }
    let bytes = writer.to_bytes();
    Header::parse(&bytes, Some(bytes.len() as u64))
        .unwrap()
        .unwrap()
        .metadata
}

#[test]
fn small_vocabulary_from_written_metadata() {
    let tok = Tokenizer::from_gguf(&tiny_bpe(&[])).unwrap();
    assert_eq!(tok.encode("abab", false, false).unwrap(), vec![2, 2]);
    assert_eq!(
        tok.encode("ab<eos>", true, true).unwrap(),
        vec![2, 3],
        "no BOS by default"
    );
    assert_eq!(tok.stop_ids(), &[3]);
}

#[test]
fn bad_metadata_is_an_error_not_a_panic() {
    let merges = |m: &[&str]| ("tokenizer.ggml.merges", strings(m));
    let cases = [
        (
            "merge of unknown tokens",
            tiny_bpe(&[merges(&["a zzzzzzzzzzzzzzzz"])]),
        ),
        ("merge without a space", tiny_bpe(&[merges(&["ab"])])),
        (
            "merge whose join is not a token",
            tiny_bpe(&[merges(&["b a"])]),
        ),
        (
            "unsupported model",
            tiny_bpe(&[("tokenizer.ggml.model", Value::String("t5".into()))]),
        ),
        (
            "types of the wrong length",
            tiny_bpe(&[(
                "tokenizer.ggml.token_type",
                Value::Array(vec![Value::I32(1)]),
            )]),
        ),
        (
            "tokens not strings",
            tiny_bpe(&[("tokenizer.ggml.tokens", Value::Array(vec![Value::I32(1)]))]),
        ),
        (
            "BOS wanted without an id",
            tiny_bpe(&[("tokenizer.ggml.add_bos_token", Value::Bool(true))]),
        ),
    ];
    for (what, meta) in cases {
        match Tokenizer::from_gguf(&meta) {
            Err(Error::Tokenizer(message)) => eprintln!("{what}: {message}"),
            other => panic!("{what}: expected a tokenizer error, got {other:?}"),
        }
    }
}

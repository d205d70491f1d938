//! The tokenizer built from GGUF metadata against llama.cpp's own test vectors, plus decoding,
//! streaming, special tokens and stop ids.
//!
//! The vocab-only GGUFs and their vectors are not in the repository: `./build.sh setup` fetches
//! every `ggml-vocab-*` file of llama.cpp's `models/` folder (see `tests/fetch-vocabs.sh`).
//! llama.cpp's `test-tokenizer-0` reads `<vocab>.gguf.inp` (texts separated by
//! `"\n__ggml_vocab_test__\n"`) and `<vocab>.gguf.out` (one line of space-separated ids per
//! text) and tokenizes each text with `add_special = false, parse_special = false`: no BOS/EOS
//! added, and control tokens' text is plain text. `check_vectors` does exactly that.
//! smollm2's vocabulary is the default model's own, its vectors a local fixture
//! (`tests/fixtures/tokenizer/smollm2.tests.json`, made the same way).

mod common;

use std::path::Path;
use std::sync::OnceLock;

use llama_wgpu::gguf::{GgufFile, Header, Value};
use llama_wgpu::gguf_writer::GgufWriter;
use llama_wgpu::tokenizer::{SpecialTokens, Tokenizer};
use llama_wgpu::Error;

/// Vocabularies with upstream vectors whose tokenizer model this engine supports.
const WITH_VECTORS: [&str; 14] = [
    "command-r",
    "deepseek-coder",
    "deepseek-llm",
    "falcon",
    "gemma-4",
    "gpt-2",
    "llama-bpe",
    "llama-spm",
    "mpt",
    "phi-3",
    "qwen2",
    "qwen35",
    "refact",
    "starcoder",
];

/// Upstream vocabularies without vectors (llama.cpp keeps them to test loading): they must build.
const WITHOUT_VECTORS: [&str; 3] = ["aquila", "baichuan", "gpt-neox"];

/// Upstream vocabularies of models this engine does not implement, with the model name the
/// error must give.
const REFUSED: [(&str, &str); 2] = [("bert-bge", "bert"), ("nomic-bert-moe", "t5")];

/// The vocabulary whose vectors are a local fixture (the default model's).
const LOCAL_VECTORS: [&str; 1] = ["smollm2"];

/// Every vocabulary `tokenizer()` builds (the refused ones never build), each once.
fn all_vocabs() -> impl Iterator<Item = &'static str> {
    WITH_VECTORS
        .into_iter()
        .chain(LOCAL_VECTORS)
        .chain(WITHOUT_VECTORS)
}

const N_VOCABS: usize = WITH_VECTORS.len() + LOCAL_VECTORS.len() + WITHOUT_VECTORS.len();

/// Emoji (several byte tokens each), CJK and accents: text whose characters span tokens.
const MIXED_TEXT: &str = "Hello 🦙 world! 我想在apple工作 😶‍🌫️ naïve café ✅\n  done";

/// Each vocabulary is built once and shared by the tests (the large ones take a moment).
fn tokenizer(name: &str) -> Option<&'static Tokenizer> {
    static LOADED: [OnceLock<Option<Tokenizer>>; N_VOCABS] = [const { OnceLock::new() }; N_VOCABS];
    let index = all_vocabs().position(|v| v == name).expect("known vocab");
    LOADED[index]
        .get_or_init(|| {
            let path = common::vocab_path(name)?;
            let file = GgufFile::open(&path).expect("vocab GGUF opens");
            match Tokenizer::from_gguf(&file.header.metadata) {
                Ok(tok) => Some(tok),
                Err(e) => panic!("{name}: tokenizer does not build: {e}"),
            }
        })
        .as_ref()
}

struct Vector {
    text: String,
    ids: Vec<u32>,
}

/// The vectors of a vocabulary: upstream `.inp`/`.out` beside its GGUF, or a local JSON fixture.
fn vectors(name: &str) -> Vec<Vector> {
    let json = common::local_fixture(&format!("tokenizer/{name}.tests.json"));
    if json.exists() {
        #[derive(serde::Deserialize)]
        struct Json {
            text: String,
            ids: Vec<u32>,
        }
        let parsed: Vec<Json> = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
        return parsed
            .into_iter()
            .map(|v| Vector {
                text: v.text,
                ids: v.ids,
            })
            .collect();
    }
    let gguf = common::vocab_path(name).expect("vectors are read only when the vocab is present");
    upstream_vectors(&gguf)
}

/// llama.cpp's format, read as `test-tokenizer-0` reads it: the texts are what lies between
/// separators (a last text may end the file without one); each `.out` line is stripped and
/// split at spaces.
fn upstream_vectors(gguf: &Path) -> Vec<Vector> {
    let read = |ext: &str| {
        let mut path = gguf.as_os_str().to_owned();
        path.push(ext);
        std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!("{}: {e} (run ./build.sh setup)", Path::new(&path).display())
        })
    };
    let (inp, out) = (read(".inp"), read(".out"));
    const SEPARATOR: &str = "\n__ggml_vocab_test__\n";
    let mut texts = Vec::new();
    let mut rest = inp.as_str();
    while !rest.is_empty() {
        match rest.split_once(SEPARATOR) {
            Some((text, after)) => {
                texts.push(text);
                rest = after;
            }
            None => {
                texts.push(rest);
                rest = "";
            }
        }
    }
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        texts.len(),
        lines.len(),
        "{}: .inp and .out disagree",
        gguf.display()
    );
    assert!(
        texts.len() > 40,
        "{}: only {} vectors",
        gguf.display(),
        texts.len()
    );
    texts
        .into_iter()
        .zip(lines)
        .map(|(text, line)| Vector {
            text: text.to_owned(),
            ids: line
                .split_whitespace()
                .map(|id| id.parse().expect("an id"))
                .collect(),
        })
        .collect()
}

/// Every vector, all failures reported together.
fn check_vectors(name: &str) {
    let Some(tok) = tokenizer(name) else { return };
    let vectors = vectors(name);
    let mut failures = Vec::new();
    for v in &vectors {
        // test-tokenizer-0's flags: add_special = false, parse_special = false.
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

macro_rules! vector_tests {
    ($($test:ident => $name:literal,)*) => {
        $(
            #[test]
            fn $test() {
                check_vectors($name);
            }
        )*
    };
}

vector_tests! {
    command_r_vectors => "command-r",
    deepseek_coder_vectors => "deepseek-coder",
    deepseek_llm_vectors => "deepseek-llm",
    falcon_vectors => "falcon",
    gemma_4_vectors => "gemma-4",
    gpt2_vectors => "gpt-2",
    llama_bpe_vectors => "llama-bpe",
    llama_spm_vectors => "llama-spm",
    mpt_vectors => "mpt",
    phi_3_vectors => "phi-3",
    qwen2_vectors => "qwen2",
    qwen35_vectors => "qwen35",
    refact_vectors => "refact",
    starcoder_vectors => "starcoder",
    smollm2_vectors => "smollm2",
}

/// The list above is every upstream vocabulary with vectors, so none is left out silently.
#[test]
fn every_upstream_vocabulary_is_tested() {
    let Some(any) = common::vocab_path("gpt-2") else {
        return;
    };
    let dir = any.parent().unwrap();
    let mut found: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().into_string().ok())
        .filter_map(|f| {
            Some(
                f.strip_prefix("ggml-vocab-")?
                    .strip_suffix(".gguf")?
                    .to_owned(),
            )
        })
        .collect();
    found.sort();
    let mut listed: Vec<String> = WITH_VECTORS
        .iter()
        .chain(&WITHOUT_VECTORS)
        .chain(REFUSED.iter().map(|(name, _)| name))
        .map(|s| s.to_string())
        .collect();
    listed.sort();
    assert_eq!(found, listed);
    for name in &found {
        let has_vectors = dir.join(format!("ggml-vocab-{name}.gguf.inp")).exists();
        let listed_with = WITH_VECTORS.contains(&name.as_str())
            || REFUSED.iter().any(|(n, _)| n == name) && has_vectors;
        assert_eq!(has_vectors, listed_with, "{name}");
    }
}

#[test]
fn vocabularies_without_vectors_build() {
    for name in WITHOUT_VECTORS {
        let Some(tok) = tokenizer(name) else { continue };
        let ids = tok.encode(MIXED_TEXT, false, false).unwrap();
        assert_eq!(tok.decode(&ids, false).unwrap(), MIXED_TEXT, "{name}");
    }
}

/// WordPiece (BERT) and Unigram (T5) are not implemented: a clear error, not a wrong tokenizer.
#[test]
fn unsupported_models_are_refused() {
    for (name, model) in REFUSED {
        let Some(path) = common::vocab_path(name) else {
            continue;
        };
        let file = GgufFile::open(&path).unwrap();
        let err = Tokenizer::from_gguf(&file.header.metadata).unwrap_err();
        assert_eq!(err.code(), "TOKENIZER_ERROR", "{name}: {err}");
        assert!(
            err.to_string().contains(&format!("`{model}`")),
            "{name}: {err}"
        );
    }
}

/// Byte-level and byte-fallback vocabularies can spell any text, so every vector comes back.
#[test]
fn decode_inverts_encode() {
    for name in WITH_VECTORS.into_iter().chain(LOCAL_VECTORS) {
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
    for name in ["llama-spm", "llama-bpe", "gpt-2", "smollm2", "gemma-4"] {
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
        ("tokenizer.ggml.pre", Value::String("gpt-2".into())),
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
            "pre-tokenizer llama.cpp does not know",
            tiny_bpe(&[("tokenizer.ggml.pre", Value::String("some-new-name".into()))]),
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

/// llama.cpp's token types: user-defined text is always one token, control text only when
/// special text is parsed, and FIM markers count as control whatever type the file gives them.
#[test]
fn token_types_decide_what_text_matches() {
    let tokens = ["a", "b", "ab", "<eos>", "<u>", "<|fim_prefix|>"];
    let meta = tiny_bpe(&[
        ("tokenizer.ggml.tokens", strings(&tokens)),
        (
            "tokenizer.ggml.token_type",
            Value::Array([1, 1, 1, 3, 4, 4].map(Value::I32).to_vec()),
        ),
    ]);
    let tok = Tokenizer::from_gguf(&meta).unwrap();
    assert_eq!(tok.encode("a<u>b", false, false).unwrap(), vec![0, 4, 1]);
    assert_eq!(tok.encode("a<u>b", false, true).unwrap(), vec![0, 4, 1]);
    assert_eq!(tok.encode("ab<eos>", false, true).unwrap(), vec![2, 3]);
    assert!(!tok.encode("ab<eos>", false, false).unwrap().contains(&3));
    assert_eq!(tok.encode("<|fim_prefix|>", false, true).unwrap(), vec![5]);
    assert!(!tok
        .encode("<|fim_prefix|>", false, false)
        .unwrap()
        .contains(&5));
    assert!(tok.is_control(3) && tok.is_control(5) && !tok.is_control(4));
}

/// Phi-3's special tokens take the whitespace after them (llama.cpp's rule for that model);
/// Llama 3's do not.
#[test]
fn phi3_special_tokens_eat_following_whitespace() {
    if let Some(tok) = tokenizer("phi-3") {
        assert_eq!(
            tok.encode("<|user|>\nHi", false, true).unwrap(),
            tok.encode("<|user|>Hi", false, true).unwrap()
        );
    }
    if let Some(tok) = tokenizer("llama-bpe") {
        assert_ne!(
            tok.encode("<|eot_id|>\nHi", false, true).unwrap(),
            tok.encode("<|eot_id|>Hi", false, true).unwrap()
        );
    }
}

/// `Tokenizer::token_bytes` (what the grammar library walks, `constraint.rs`) spells out the
/// text: llama.cpp's ids for each vector, their bytes joined, give the text back, after the
/// space a SentencePiece vocabulary puts in front of the first word. On every vocabulary with
/// vectors, so byte-level BPE, SentencePiece and their variants are each held to llama.cpp.
#[test]
fn token_bytes_spell_out_the_text() {
    let mut failures = Vec::new();
    for name in WITH_VECTORS.into_iter().chain(LOCAL_VECTORS) {
        let Some(tok) = tokenizer(name) else { continue };
        let bytes = tok.token_bytes();
        assert_eq!(bytes.len(), tok.vocab_size());
        let mut wrong = 0;
        let vectors = vectors(name);
        for v in &vectors {
            let spelled: Vec<u8> = v
                .ids
                .iter()
                .flat_map(|&id| bytes[id as usize].clone())
                .collect();
            let text = v.text.as_bytes();
            let with_prefix = [b" ", text].concat();
            if spelled != text && spelled != with_prefix {
                wrong += 1;
                if wrong == 1 {
                    failures.push(format!(
                        "{name}: {:?} spelled {:?}",
                        v.text,
                        String::from_utf8_lossy(&spelled)
                    ));
                }
            }
        }
        if wrong > 0 {
            failures.push(format!("{name}: {wrong} of {} vectors", vectors.len()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

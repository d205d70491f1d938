//! Where tests find their data. Small fixtures live in `tests/fixtures/`; the default model and
//! the vocab-only GGUFs are fetched by `./build.sh setup` into the cache folder; the tiny random
//! models are read from `../shared/fixtures` when that folder exists. A test whose data is absent
//! prints a plain SKIPPED line, unless `LLAMA_WGPU_REQUIRE_FIXTURES=1` (set by `./build.sh test`
//! for the data that setup provides) turns the absence into a failure.
#![allow(dead_code)]

use std::path::PathBuf;

pub mod arch_models;
pub mod embedding_models;
pub mod gpu_read;
pub mod quant_data;
pub mod small_models;
pub mod tiny_llama;

pub fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `$LLAMA_WGPU_CACHE`, else `${XDG_CACHE_HOME:-$HOME/.cache}/llama-wgpu`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("LLAMA_WGPU_CACHE") {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache")
        });
    base.join("llama-wgpu")
}

pub fn local_fixture(rel: &str) -> PathBuf {
    crate_dir().join("tests/fixtures").join(rel)
}

/// `../shared/fixtures/<rel>` beside the checkout, when present.
pub fn shared_fixture(rel: &str) -> Option<PathBuf> {
    let p = crate_dir().join("../shared/fixtures").join(rel);
    p.exists().then_some(p)
}

fn required() -> bool {
    std::env::var("LLAMA_WGPU_REQUIRE_FIXTURES").as_deref() == Ok("1")
}

/// The default model (SmolLM2-135M-Instruct Q4_1), fetched by `./build.sh setup`.
pub fn default_model() -> Option<PathBuf> {
    let p = cache_dir().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if p.exists() {
        return Some(p);
    }
    assert!(
        !required(),
        "default model missing at {} (run ./build.sh setup)",
        p.display()
    );
    eprintln!(
        "SKIPPED: default model not found at {} (run ./build.sh setup)",
        p.display()
    );
    None
}

/// A model `./build.sh setup` fetches into the cache's `models/` (the Qwen2.5 and Gemma 3 test
/// models of other architectures).
pub fn cached_model(file: &str) -> Option<PathBuf> {
    let p = cache_dir().join("models").join(file);
    if p.exists() {
        return Some(p);
    }
    assert!(
        !required(),
        "{file} missing at {} (run ./build.sh setup)",
        p.display()
    );
    eprintln!(
        "SKIPPED: {file} not found at {} (run ./build.sh setup)",
        p.display()
    );
    None
}

/// A file under `../shared/fixtures` (the tiny models); absent on a user's fresh clone.
pub fn shared_or_skip(rel: &str) -> Option<PathBuf> {
    let p = shared_fixture(rel);
    if p.is_none() {
        eprintln!("SKIPPED: ../shared/fixtures/{rel} not present (only beside the project's own checkout)");
    }
    p
}

/// Where a vocabulary's GGUF is: the cache (`build.sh setup`), then `../shared/fixtures`.
/// smollm2's is the default model itself, or its vocab-only copy.
pub fn vocab_path(name: &str) -> Option<PathBuf> {
    let file = format!("ggml-vocab-{name}.gguf");
    let cache = cache_dir();
    let mut candidates = Vec::new();
    if name == "smollm2" {
        candidates.push(cache.join("models/SmolLM2-135M-Instruct.Q4_1.gguf"));
    }
    candidates.push(cache.join("vocabs").join(&file));
    candidates.push(crate_dir().join("../shared/fixtures/tokenizer").join(&file));
    let found = candidates.into_iter().find(|p| p.exists());
    if found.is_none() {
        assert!(!required(), "{name} vocab not found (run ./build.sh setup)");
        eprintln!("SKIPPED: {name} vocab not found (run ./build.sh setup)");
    }
    found
}

/// Read a little-endian f32 `.npy` (NumPy format v1/v2/v3, C order) into (shape, values).
pub fn read_npy_f32(path: &std::path::Path) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&bytes[..6], b"\x93NUMPY", "{} is not .npy", path.display());
    let (hlen, start) = if bytes[6] == 1 {
        (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10)
    } else {
        (
            u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize,
            12,
        )
    };
    let header = std::str::from_utf8(&bytes[start..start + hlen]).unwrap();
    assert!(
        header.contains("'<f4'"),
        "{} is not little-endian f32: {header}",
        path.display()
    );
    assert!(header.contains("'fortran_order': False"));
    let shape_txt = header
        .split("'shape': (")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap();
    let shape: Vec<usize> = shape_txt
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    let data = &bytes[start + hlen..];
    let values = data
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect::<Vec<_>>();
    assert_eq!(values.len(), shape.iter().product::<usize>());
    (shape, values)
}

/// The raw prompt "Once upon a time" on the default model (no BOS), and its greedy 30-token
/// continuation as ../shared/TOOLCHAIN.md gives it (llama.cpp and an f32 reference agree).
pub const ONCE_UPON_A_TIME: [u32; 4] = [6403, 1980, 253, 655];
pub const REFERENCE_CONTINUATION: &str =
    ", the city of Nova Haven was a thriving metropolis, with \
    towering skyscrapers and bustling streets. But as the years went by, the city began to lose";

/// The random-weight llama models in `../shared/fixtures/tiny-models` (their README).
pub const TINY_MODELS: [&str; 6] = [
    "tiny-llama-d64-smollm2vocab.F32",
    "tiny-llama-d64-smollm2vocab.Q8_0",
    "tiny-llama-d64-smollm2vocab.Q4_0",
    "tiny-llama-d64-smollm2vocab.Q4_1",
    "tiny-llama-d256-smollm2vocab.Q4_K_M",
    "tiny-llama-d256-smollm2vocab.Q6_K",
];

/// One tiny model with its numpy f32 reference: prompt ids, the logits at every prompt
/// position, and the greedy ids that follow.
pub struct TinyModel {
    pub name: &'static str,
    pub gguf: PathBuf,
    pub prompt: Vec<u32>,
    pub greedy: Vec<u32>,
    pub vocab: usize,
    logits: Vec<f32>,
}

impl TinyModel {
    pub fn new(
        name: &'static str,
        gguf: PathBuf,
        prompt: Vec<u32>,
        greedy: Vec<u32>,
        vocab: usize,
        logits: Vec<f32>,
    ) -> TinyModel {
        TinyModel {
            name,
            gguf,
            prompt,
            greedy,
            vocab,
            logits,
        }
    }

    /// The numpy logits after prompt token `i`.
    pub fn logits_at(&self, i: usize) -> &[f32] {
        &self.logits[i * self.vocab..(i + 1) * self.vocab]
    }
}

/// `../shared/fixtures/{folder}/{name}.gguf`, its folder and its `{name}.ref.json` (what
/// llama.cpp and numpy computed for it), or None with SKIPPED printed when the fixtures are
/// absent.
pub fn fixture_with_refs(
    folder: &str,
    name: &str,
) -> Option<(PathBuf, PathBuf, serde_json::Value)> {
    let gguf = shared_or_skip(&format!("{folder}/{name}.gguf"))?;
    let dir = gguf.parent().unwrap().to_path_buf();
    let refs = std::fs::read(dir.join(format!("{name}.ref.json"))).unwrap();
    Some((gguf, dir, serde_json::from_slice(&refs).unwrap()))
}

/// A JSON array of token ids.
pub fn json_ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// Load a tiny model's reference, or print SKIPPED when `../shared/fixtures` is absent.
pub fn tiny_model(name: &'static str) -> Option<TinyModel> {
    let (gguf, dir, refs) = fixture_with_refs("tiny-models", name)?;
    let (shape, logits) =
        read_npy_f32(&dir.join(format!("{name}.numpy_f32.prompt_logits.f32.npy")));
    let prompt = json_ids(&refs["prompt_ids"]);
    assert_eq!(shape[0], prompt.len());
    Some(TinyModel {
        name,
        gguf,
        greedy: json_ids(&refs["numpy_f32"]["greedy_ids"]),
        prompt,
        vocab: shape[1],
        logits,
    })
}

/// Index of the largest value, the lowest index on ties (as the samplers break them).
pub fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best as u32
}

/// The largest |a[i] - b[i]| (the two of one length): how logits or vectors are compared.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

//! Where tests find their data. Small fixtures live in `tests/fixtures/`; the default model and
//! the vocab-only GGUFs are fetched by `./build.sh setup` into the cache folder; the tiny random
//! models are read from `../shared/fixtures` when that folder exists. A test whose data is absent
//! prints a plain SKIPPED line, unless `LLAMA_WGPU_REQUIRE_FIXTURES=1` (set by `./build.sh test`
//! for the data that setup provides) turns the absence into a failure.
#![allow(dead_code)]

use std::path::PathBuf;

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

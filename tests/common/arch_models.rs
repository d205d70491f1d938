//! The random-weight qwen2, qwen3, phi3 and gemma3 models of `../shared/fixtures/tiny-models-2`
//! with llama.cpp's logits (its README): one per architecture beside llama.

use super::{fixture_with_refs, json_ids, read_npy_f32, TinyModel};

/// (architecture, model name) of every tiny model with an architecture other than llama.
pub const ARCH_MODELS: [(&str, &str); 4] = [
    ("qwen2", "tiny-qwen2-d64-smollm2vocab.F32"),
    ("qwen3", "tiny-qwen3-d64-smollm2vocab.F32"),
    ("phi3", "tiny-phi3-d64-smollm2vocab.F32"),
    ("gemma3", "tiny-gemma3-d64-smollm2vocab.F32"),
];

/// Load one with its reference: llama.cpp's f32 logits and greedy ids; for gemma3 the numpy
/// pass with an exact f32 GELU instead (llama.cpp's CPU GELU reads an f16 table, which moves
/// its logits by up to 0.0045: README "Tolerances observed"). None, with SKIPPED printed, when
/// `../shared/fixtures` is absent.
pub fn arch_model(name: &'static str) -> Option<TinyModel> {
    let (gguf, dir, refs) = fixture_with_refs("tiny-models-2", name)?;
    let (reference, logits_file) = match refs.get("numpy_f32_exact_gelu") {
        Some(r) => (r, format!("{name}.numpy_exact_gelu.prompt_logits.f32.npy")),
        None => (
            &refs["llamacpp_f32"],
            format!("{name}.prompt_logits.f32.npy"),
        ),
    };
    let (shape, logits) = read_npy_f32(&dir.join(logits_file));
    let prompt = json_ids(&refs["prompt_ids"]);
    assert_eq!(shape[0], prompt.len());
    Some(TinyModel::new(
        name,
        gguf,
        prompt,
        json_ids(&reference["greedy_ids"]),
        shape[1],
        logits,
    ))
}

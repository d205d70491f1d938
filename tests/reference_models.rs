//! The CPU reference decoder against reference logits and greedy ids (tiny random models) and
//! against the default model's known greedy continuation.

mod common;

use llama_wgpu::gguf::GgufFile;
use llama_wgpu::reference::ReferenceModel;
use llama_wgpu::tokenizer::Tokenizer;
use llama_wgpu::Error;

/// Max |ours - numpy| over all prompt logits. The numpy reference does the same f32 math on the
/// same dequantized weights, so the two differ only in summation order: relative rounding of
/// ~1e-6 on sums whose terms reach ~10, i.e. ~1e-5 on logits of magnitude ~5. 1e-4 leaves a
/// 10x margin and is still 20x below the smallest greedy top1-top2 margin of these files (0.0019).
const LOGIT_TOLERANCE: f32 = 1e-4;

#[test]
fn tiny_models_match_numpy_logits_and_greedy_ids() {
    for name in common::TINY_MODELS {
        let Some(m) = common::tiny_model(name) else {
            return;
        };
        check_logits_and_greedy(&m, None);
    }
}

/// Run `m`'s prompt through the CPU reference: every position's logits within
/// `LOGIT_TOLERANCE` of the fixture's, then the greedy ids exactly.
fn check_logits_and_greedy(m: &common::TinyModel, arch: Option<&str>) {
    let name = m.name;
    let file = GgufFile::open(&m.gguf).unwrap();
    let mut model = ReferenceModel::load(&file, 256).unwrap();
    assert_eq!(m.vocab, model.config().n_vocab);
    if let Some(arch) = arch {
        assert_eq!(model.config().architecture, arch);
    }
    let mut max_diff = 0f32;
    let mut last = Vec::new();
    for (i, &t) in m.prompt.iter().enumerate() {
        let logits = model.forward(t).unwrap();
        for (a, b) in logits.iter().zip(m.logits_at(i)) {
            max_diff = max_diff.max((a - b).abs());
        }
        last = logits.to_vec();
    }
    eprintln!("{name}: max |logit - reference| over the prompt = {max_diff:.3e}");
    assert!(
        max_diff <= LOGIT_TOLERANCE,
        "{name}: max logit difference {max_diff} > {LOGIT_TOLERANCE}"
    );
    let mut got = Vec::new();
    let mut next = common::argmax(&last);
    for _ in 0..m.greedy.len() {
        got.push(next);
        next = common::argmax(model.forward(next).unwrap());
    }
    assert_eq!(got, m.greedy, "{name}: greedy ids");
}

#[test]
fn a_token_outside_the_vocabulary_is_invalid_argument() {
    let Some(path) = common::default_model() else {
        return;
    };
    let mut model = ReferenceModel::load(&GgufFile::open(path).unwrap(), 8).unwrap();
    let n_vocab = model.config().n_vocab as u32;
    assert!(matches!(
        model.forward(n_vocab),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        model.forward(u32::MAX),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(model.position(), 0);
    model.forward(n_vocab - 1).unwrap();
    assert_eq!(model.position(), 1);
}

#[test]
fn a_full_context_is_context_overflow_until_reset() {
    let Some(path) = common::default_model() else {
        return;
    };
    let mut model = ReferenceModel::load(&GgufFile::open(path).unwrap(), 4).unwrap();
    assert_eq!(model.context_length(), 4);
    let prompt = common::ONCE_UPON_A_TIME;
    let runs: Vec<Vec<f32>> = prompt
        .iter()
        .map(|&t| model.forward(t).unwrap().to_vec())
        .collect();
    match model.forward(28) {
        Err(Error::ContextOverflow { tokens, context }) => assert_eq!((tokens, context), (5, 4)),
        other => panic!("expected ContextOverflow, got {other:?}"),
    }
    assert_eq!(model.position(), 4);

    // Rewinding reproduces the same logits bit for bit: nothing past the position is read, and
    // each logit is summed in the same order whatever thread computes it.
    model.truncate(2);
    model.truncate(3); // past the position: no effect
    assert_eq!(model.position(), 2);
    assert_eq!(model.forward(prompt[2]).unwrap(), &runs[2][..]);
    model.reset();
    assert_eq!(model.position(), 0);
    for (&t, want) in prompt.iter().zip(&runs) {
        assert_eq!(model.forward(t).unwrap(), &want[..]);
    }
    assert!(matches!(
        model.forward(28),
        Err(Error::ContextOverflow { .. })
    ));
}

#[test]
fn default_model_greedy_continuation_matches_llama_cpp() {
    let Some(path) = common::default_model() else {
        return;
    };
    let file = GgufFile::open(path).unwrap();
    let mut model = ReferenceModel::load(&file, 64).unwrap();
    let tokenizer = Tokenizer::from_gguf(&file.header.metadata).unwrap();
    assert_eq!(
        tokenizer.encode("Once upon a time", true, false).unwrap(),
        common::ONCE_UPON_A_TIME
    );

    let start = std::time::Instant::now();
    let mut logits = Vec::new();
    for &t in &common::ONCE_UPON_A_TIME {
        logits = model.forward(t).unwrap().to_vec();
    }
    let prompt_time = start.elapsed();
    let mut generated = Vec::new();
    let mut nova_margin = None;
    let start = std::time::Instant::now();
    for _ in 0..30 {
        let next = common::argmax(&logits);
        if tokenizer.decode(&[next], false).unwrap() == " Nova" {
            let mut sorted = logits.clone();
            sorted.sort_by(|a, b| b.total_cmp(a));
            nova_margin = Some(sorted[0] - sorted[1]);
        }
        generated.push(next);
        logits = model.forward(next).unwrap().to_vec();
    }
    let decode_time = start.elapsed();
    eprintln!(
        "default model: prompt {:.1} tok/s, decode {:.1} tok/s (30 tokens, {} threads)",
        common::ONCE_UPON_A_TIME.len() as f64 / prompt_time.as_secs_f64(),
        30.0 / decode_time.as_secs_f64(),
        rayon::current_num_threads()
    );

    assert_eq!(
        tokenizer.decode(&generated, false).unwrap(),
        common::REFERENCE_CONTINUATION
    );
    // The reference's margin at " Nova" is 0.16: right logits, not just the right argmax.
    let margin = nova_margin.unwrap();
    eprintln!("top1 - top2 margin at \" Nova\": {margin:.4}");
    assert!(margin > 0.1, "margin {margin}");
}

/// The other architectures (qwen2, qwen3, phi3, gemma3) against llama.cpp. Same f32 math on
/// the same F32 weights: llama.cpp and an independent numpy pass differ by at most 7.2e-6 on
/// these (README), summation order alone. 1e-4 is the tolerance of the llama models above,
/// 14x under the smallest greedy margin here (0.0172 on qwen2) so the ids must agree exactly.
#[test]
fn every_architecture_matches_llama_cpp_logits_and_greedy_ids() {
    for (arch, name) in common::arch_models::ARCH_MODELS {
        let Some(m) = common::arch_models::arch_model(name) else {
            return;
        };
        check_logits_and_greedy(&m, Some(arch));
    }
}

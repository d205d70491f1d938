//! The generation loop through the public `Engine` API, on the default model with the f32
//! reference decoder (whose greedy text is llama.cpp's, so the expected texts are exact): stop strings, token and context limits, chat KV-cache reuse, seeded
//! sampling and cancellation.

mod common;

use llama_wgpu::chat::Message;
use llama_wgpu::sampler::SamplingParams;
use llama_wgpu::{Device, Engine, EngineOptions, Error, GenerateOptions, StopReason};

fn load(context_length: usize) -> Option<Engine> {
    load_on(Device::Reference, context_length)
}

fn load_on(device: Device, context_length: usize) -> Option<Engine> {
    let path = common::default_model()?;
    let options = EngineOptions {
        device,
        context_length: Some(context_length),
        ..EngineOptions::default()
    };
    Some(Engine::load(path, &options).expect("the default model loads"))
}

fn greedy(max_tokens: usize) -> GenerateOptions {
    GenerateOptions {
        max_tokens,
        sampling: SamplingParams::greedy(),
        ..Default::default()
    }
}

fn ignore(_: &str) -> bool {
    true
}

#[test]
fn a_stop_string_ends_generation_before_it() {
    let Some(mut engine) = load(256) else { return };
    assert_eq!(
        engine.encode_prompt("Once upon a time").unwrap(),
        common::ONCE_UPON_A_TIME
    );
    let options = GenerateOptions {
        stop: vec![" Haven".to_string()],
        ..greedy(30)
    };
    let mut streamed = String::new();
    let g = engine
        .generate("Once upon a time", &options, &mut |piece| {
            streamed.push_str(piece);
            true
        })
        .unwrap();
    assert_eq!(g.stop_reason, StopReason::Stop);
    assert_eq!(g.stop_reason.as_str(), "stop");
    assert_eq!(g.text, ", the city of Nova");
    assert!(common::REFERENCE_CONTINUATION.starts_with(&format!("{} Haven", g.text)));
    assert_eq!(streamed, g.text, "the streamed pieces add up to the text");
    assert!(
        !streamed.contains("Haven"),
        "the stop string is never emitted"
    );
    // The token that completed the stop string was generated (it is in ids), not emitted.
    assert_eq!(g.stats.generated_tokens, g.ids.len());
    assert!(g.ids.len() < 30);

    // Without the stop string, the same engine gives the whole reference continuation, and
    // the streamed pieces still add up to the text.
    let mut streamed = String::new();
    let g = engine
        .generate("Once upon a time", &greedy(30), &mut |piece| {
            streamed.push_str(piece);
            true
        })
        .unwrap();
    assert_eq!(g.text, common::REFERENCE_CONTINUATION);
    assert_eq!(streamed, g.text);
    assert_eq!(g.stop_reason, StopReason::Length);
}

#[test]
fn max_tokens_ends_with_length() {
    let Some(mut engine) = load(256) else { return };
    let g = engine
        .generate("Once upon a time", &greedy(5), &mut ignore)
        .unwrap();
    assert_eq!(g.stop_reason, StopReason::Length);
    assert_eq!(g.stop_reason.as_str(), "length");
    assert_eq!(g.ids.len(), 5);
    assert_eq!(g.stats.generated_tokens, 5);
    assert_eq!(g.stats.prompt_tokens, 4);
    assert!(
        common::REFERENCE_CONTINUATION.starts_with(&g.text),
        "{:?}",
        g.text
    );
}

#[test]
fn a_prompt_longer_than_the_context_is_context_overflow() {
    let Some(mut engine) = load(16) else { return };
    assert_eq!(engine.context_length(), 16);
    let prompt: Vec<u32> = common::ONCE_UPON_A_TIME
        .iter()
        .copied()
        .cycle()
        .take(40)
        .collect();
    match engine.generate_ids(&prompt, &greedy(5), &mut ignore) {
        Err(Error::ContextOverflow { tokens, context }) => {
            assert_eq!((tokens, context), (40, 16))
        }
        other => panic!("expected ContextOverflow, got {other:?}"),
    }
    // The same through the text API, with its stable error code.
    let text = "Once upon a time ".repeat(10);
    let err = engine.generate(&text, &greedy(5), &mut ignore).unwrap_err();
    assert!(
        matches!(err, Error::ContextOverflow { context: 16, .. }),
        "{err}"
    );
    assert_eq!(err.code(), "CONTEXT_OVERFLOW");

    // The engine is still usable afterwards.
    let g = engine
        .generate("Once upon a time", &greedy(5), &mut ignore)
        .unwrap();
    assert_eq!(g.ids.len(), 5);
    assert_eq!(g.stop_reason, StopReason::Length);
    assert!(
        common::REFERENCE_CONTINUATION.starts_with(&g.text),
        "{:?}",
        g.text
    );
}

#[test]
fn a_full_context_during_generation_is_context_full() {
    let Some(mut engine) = load(16) else { return };
    let ids = engine
        .encode_prompt("Once upon a time, in a small village nestled between rolling hills")
        .unwrap();
    assert!(ids.len() >= 10, "{ids:?}");
    let prompt = &ids[..10];
    let g = engine
        .generate_ids(prompt, &greedy(100), &mut ignore)
        .unwrap();
    assert_eq!(g.stop_reason, StopReason::ContextFull);
    // Reported like a token limit (OpenAI's finish_reason).
    assert_eq!(g.stop_reason.as_str(), "length");
    assert!(!g.ids.is_empty());
    assert!(
        prompt.len() + g.ids.len() <= 16,
        "{} prompt + {} generated tokens in a context of 16",
        prompt.len(),
        g.ids.len()
    );
}

#[test]
fn a_second_chat_turn_reuses_the_kv_cache_and_matches_a_fresh_engine() {
    let Some(mut engine) = load(256) else { return };
    let options = greedy(10);
    let mut messages = vec![Message::new("user", "What is 2+2?")];
    let first = engine.chat(&messages, &options, &mut ignore).unwrap();
    assert!(!first.ids.is_empty());
    assert_eq!(
        first.stats.cached_prompt_tokens, 0,
        "a reset engine has nothing cached"
    );

    messages.push(Message::new("assistant", first.text.trim()));
    messages.push(Message::new("user", "And 3+3?"));
    let second = engine.chat(&messages, &options, &mut ignore).unwrap();
    assert!(
        second.stats.cached_prompt_tokens > 0,
        "the second turn reran the whole conversation: {:?}",
        second.stats
    );
    assert!(second.stats.cached_prompt_tokens < second.stats.prompt_tokens);
    drop(engine);

    let Some(mut fresh) = load(256) else { return };
    let again = fresh.chat(&messages, &options, &mut ignore).unwrap();
    assert_eq!(again.stats.cached_prompt_tokens, 0);
    assert_eq!(again.stats.prompt_tokens, second.stats.prompt_tokens);
    assert_eq!(again.ids, second.ids);
    assert_eq!(again.text, second.text);
    assert_eq!(again.stop_reason, second.stop_reason);
}

#[test]
fn sampling_is_reproducible_per_seed() {
    let Some(mut engine) = load(256) else { return };
    let sample = |engine: &mut Engine, seed: u64| {
        let options = GenerateOptions {
            max_tokens: 10,
            sampling: SamplingParams {
                temperature: 0.8,
                seed,
                ..SamplingParams::default()
            },
            ..Default::default()
        };
        engine
            .generate("Once upon a time", &options, &mut ignore)
            .unwrap()
    };
    let a = sample(&mut engine, 7);
    engine.reset();
    let b = sample(&mut engine, 7);
    assert_eq!(a.ids, b.ids, "the same seed gives the same tokens");
    assert_eq!(a.text, b.text);
    // The cached prompt must not change the draw either.
    let c = sample(&mut engine, 7);
    assert_eq!(a.ids, c.ids);

    let others: Vec<String> = (8..13).map(|seed| sample(&mut engine, seed).text).collect();
    assert!(
        others.iter().any(|t| *t != a.text),
        "seeds 8..13 all gave the text of seed 7: {:?}",
        a.text
    );
}

/// OpenAI refuses `max_tokens: 0`; generating a token anyway would be a surprise.
#[test]
fn max_tokens_zero_is_invalid_argument() {
    let Some(mut engine) = load(256) else { return };
    let err = engine
        .generate("Once upon a time", &greedy(0), &mut ignore)
        .unwrap_err();
    assert_eq!(err.code(), "INVALID_ARGUMENT", "{err}");
    let g = engine
        .generate("Once upon a time", &greedy(1), &mut ignore)
        .unwrap();
    assert_eq!(g.ids.len(), 1);
}

#[test]
fn a_callback_returning_false_cancels() {
    let Some(mut engine) = load(256) else { return };
    let mut pieces = Vec::new();
    let g = engine
        .generate("Once upon a time", &greedy(30), &mut |piece| {
            pieces.push(piece.to_string());
            false
        })
        .unwrap();
    assert_eq!(g.stop_reason, StopReason::Cancelled);
    assert_eq!(
        pieces.len(),
        1,
        "no piece after the callback said stop: {pieces:?}"
    );
    assert_eq!(g.text, pieces[0]);
    assert!(
        common::REFERENCE_CONTINUATION.starts_with(&g.text),
        "{:?}",
        g.text
    );
    assert!(g.ids.len() < 30, "{} tokens", g.ids.len());

    // Cancelling leaves the engine usable.
    let g = engine
        .generate("Once upon a time", &greedy(3), &mut ignore)
        .unwrap();
    assert_eq!(g.stop_reason, StopReason::Length);
    assert!(
        common::REFERENCE_CONTINUATION.starts_with(&g.text),
        "{:?}",
        g.text
    );
}

/// A long prompt runs in chunks (the backend's own batch) with a call of `on_piece("")`
/// between them: returning `false` there stops the prefill. Nothing is generated, the chunks
/// that ran stay in the cache (the next call reuses them), and that next call generates what a
/// fresh engine does: no stale state from the stopped prompt. On every decoder the loop
/// drives: the f32 oracle (chunks of 16), the CPU engine (64) and the GPU (128, lavapipe).
#[test]
fn a_stop_between_prompt_chunks_ends_the_prefill() {
    let text = "The quick brown fox jumps over the lazy dog. ".repeat(40);
    for (device, prompt_len) in [
        (Device::Reference, 40),
        (Device::Cpu, 150),
        (Device::Gpu, 300),
    ] {
        let Some(mut engine) = load_on(device, 512) else {
            return;
        };
        let ids = engine.encode_prompt(&text).unwrap()[..prompt_len].to_vec();
        let mut calls = Vec::new();
        let stopped = engine
            .generate_ids(&ids, &greedy(8), &mut |piece| {
                calls.push(piece.to_string());
                false
            })
            .unwrap();
        assert_eq!(stopped.stop_reason, StopReason::Cancelled, "{device:?}");
        assert_eq!(calls, [""], "{device:?}: one call, after the first chunk");
        assert!(stopped.ids.is_empty() && stopped.text.is_empty());

        let resumed = engine.generate_ids(&ids, &greedy(8), &mut ignore).unwrap();
        let ran = resumed.stats.cached_prompt_tokens;
        assert!(
            ran > 0 && ran < prompt_len / 2,
            "{device:?}: {ran} of {prompt_len} tokens ran before the stop"
        );
        let mut fresh = load_on(device, 512).unwrap();
        let expected = fresh.generate_ids(&ids, &greedy(8), &mut ignore).unwrap();
        assert_eq!(resumed.ids, expected.ids, "{device:?}");
    }
}

/// Logprobs (`logprobs.rs`) on every device: one entry per generated token; greedy, the token
/// is the first of its alternatives, which come most likely first and sum to at most 1; the
/// GPU and the reference agree on the most likely token's within 0.05 (their logits differ by
/// up to 2e-2, `gpu_model.rs`, and a logprob moves by at most twice that); asking for them
/// changes no token.
#[test]
fn logprobs_name_the_greedy_choice_and_agree_across_devices() {
    let options = GenerateOptions {
        logprobs: Some(5),
        ..greedy(8)
    };
    let mut runs = Vec::new();
    for device in [Device::Reference, Device::Cpu, Device::Gpu] {
        let Some(mut engine) = load_on(device, 128) else {
            return;
        };
        let mut streamed = Vec::new();
        let ids = engine.encode_prompt("The capital of France is").unwrap();
        let g = pollster::block_on(engine.generate_ids_async(&ids, &options, &mut |_, entry| {
            streamed.extend(entry.cloned());
            true
        }))
        .unwrap();
        assert_eq!(g.logprobs.len(), g.ids.len(), "{device:?}");
        assert_eq!(streamed, g.logprobs, "{device:?}: streamed with each token");
        for e in &g.logprobs {
            assert_eq!(e.top_logprobs.len(), 5);
            assert_eq!(
                (&e.bytes, e.logprob),
                (&e.top_logprobs[0].bytes, e.top_logprobs[0].logprob),
                "{device:?}: greedy takes the most likely"
            );
            assert_eq!(e.token, String::from_utf8_lossy(&e.bytes));
            assert!(e
                .top_logprobs
                .windows(2)
                .all(|w| w[0].logprob >= w[1].logprob));
            let mass: f64 = e
                .top_logprobs
                .iter()
                .map(|t| (t.logprob as f64).exp())
                .sum();
            assert!(mass <= 1.0 + 1e-4, "{device:?}: {mass}");
        }
        let plain = engine
            .generate("The capital of France is", &greedy(8), &mut ignore)
            .unwrap();
        assert_eq!(plain.ids, g.ids, "{device:?}: logprobs changed the tokens");
        assert!(plain.logprobs.is_empty(), "none unless asked");
        runs.push((device, g));
    }
    // The GPU's (its own kernel) against the reference's (the definition, as on the CPU
    // engine), while both saw the same tokens (rounding may flip a near tie).
    let (_, reference) = &runs[0];
    for (device, g) in runs.iter().filter(|r| r.0 == Device::Gpu) {
        let same = g
            .ids
            .iter()
            .zip(&reference.ids)
            .take_while(|(a, b)| a == b)
            .count();
        assert!(same >= 3, "{device:?}: {:?} vs {:?}", g.ids, reference.ids);
        let steps = g.logprobs.iter().zip(&reference.logprobs).take(same + 1);
        for (a, b) in steps {
            let (a, b) = (a.top_logprobs[0].logprob, b.top_logprobs[0].logprob);
            assert!((a - b).abs() < 0.05, "{device:?}: {a} vs {b}");
        }
    }
}

#[test]
fn more_than_twenty_alternatives_is_invalid_argument() {
    let Some(mut engine) = load(64) else {
        return;
    };
    let options = GenerateOptions {
        logprobs: Some(21),
        ..greedy(2)
    };
    let err = engine.generate("Hi", &options, &mut ignore).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
}

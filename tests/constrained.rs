//! Constrained decoding (`constraint.rs`) through the public `Engine` on the default model:
//! outputs held to JSON schemas parse and validate (the `jsonschema` crate, not our code, is
//! the judge), greedy and sampled, on the CPU engine and on the GPU (lavapipe, where the mask
//! is applied by the sampling kernel); Lark grammars and regexes match; a format the library
//! cannot compile is INVALID_ARGUMENT and the engine stays usable.
//!
//! The schemas bound every string, number and array: a 135M model held to "any string" can
//! write one forever, which is the model's choice, not a fault of the constraint.

mod common;

use llama_wgpu::chat::Message;
use llama_wgpu::constraint::{JsonSchema, ResponseFormat};
use llama_wgpu::sampler::SamplingParams;
use llama_wgpu::{Device, Engine, EngineOptions, GenerateOptions, StopReason};
use serde_json::{json, Value};

fn load(device: Device) -> Option<Engine> {
    let path = common::default_model()?;
    let options = EngineOptions {
        device,
        context_length: Some(512),
        ..EngineOptions::default()
    };
    Some(Engine::load(path, &options).expect("the default model loads"))
}

fn options(format: ResponseFormat, temperature: f32, seed: u64) -> GenerateOptions {
    GenerateOptions {
        max_tokens: 200,
        sampling: SamplingParams {
            temperature,
            seed,
            ..SamplingParams::default()
        },
        response_format: format,
        ..Default::default()
    }
}

fn schema_format(schema: &Value) -> ResponseFormat {
    ResponseFormat::JsonSchema {
        json_schema: JsonSchema {
            name: Some("answer".into()),
            description: None,
            schema: schema.clone(),
            strict: Some(true),
        },
    }
}

fn schemas() -> Vec<(&'static str, Value)> {
    vec![
        (
            "Describe a person as JSON.",
            json!({
                "type": "object",
                "properties": {
                    "name": {"type": "string", "maxLength": 24},
                    "age": {"type": "integer", "minimum": 0, "maximum": 120}
                },
                "required": ["name", "age"],
                "additionalProperties": false
            }),
        ),
        (
            "List your favourite colours as JSON.",
            json!({
                "type": "object",
                "properties": {
                    "colors": {
                        "type": "array",
                        "items": {"enum": ["red", "green", "blue", "yellow"]},
                        "minItems": 1,
                        "maxItems": 3
                    }
                },
                "required": ["colors"],
                "additionalProperties": false
            }),
        ),
        (
            "Tell me about Paris as JSON.",
            json!({
                "type": "object",
                "properties": {
                    "city": {"type": "string", "maxLength": 30},
                    "capital": {"type": "boolean"},
                    "rating": {"type": "integer", "minimum": 1, "maximum": 5},
                    "country": {
                        "type": "object",
                        "properties": {"name": {"type": "string", "maxLength": 30}},
                        "required": ["name"],
                        "additionalProperties": false
                    }
                },
                "required": ["city", "capital", "country"],
                "additionalProperties": false
            }),
        ),
    ]
}

/// Generate under `schema`, streamed; the text must be what was streamed, end because the
/// grammar was complete (or on EOS where it could end), parse, and validate.
fn check_schema(engine: &mut Engine, question: &str, schema: &Value, temperature: f32, seed: u64) {
    let messages = [Message::new("user", question)];
    let mut streamed = String::new();
    let g = engine
        .chat(
            &messages,
            &options(schema_format(schema), temperature, seed),
            &mut |piece| {
                streamed.push_str(piece);
                true
            },
        )
        .unwrap();
    assert_eq!(streamed, g.text, "the streamed pieces add up to the text");
    assert!(
        matches!(g.stop_reason, StopReason::Stop | StopReason::Eos),
        "{:?} after {} tokens: {:?}",
        g.stop_reason,
        g.ids.len(),
        g.text
    );
    let value: Value =
        serde_json::from_str(&g.text).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", g.text));
    let validator = jsonschema::validator_for(schema).unwrap();
    assert!(
        validator.is_valid(&value),
        "{:?} does not follow {schema}",
        g.text
    );
    assert!(g.stats.mask_seconds > 0.0);
}

#[test]
fn json_schemas_hold_on_the_cpu_engine() {
    let Some(mut engine) = load(Device::Cpu) else {
        return;
    };
    for (question, schema) in schemas() {
        check_schema(&mut engine, question, &schema, 0.0, 0);
        for seed in [1, 2] {
            check_schema(&mut engine, question, &schema, 0.9, seed);
        }
    }
    // Any JSON object (a prompt that asks for a small one: "Give me some JSON." gets an
    // object nested without end from this model, which the format allows).
    let messages = [Message::new(
        "user",
        r#"Reply with a JSON object whose key "ok" is true."#,
    )];
    let g = engine
        .chat(
            &messages,
            &options(ResponseFormat::JsonObject, 0.0, 0),
            &mut |_| true,
        )
        .unwrap();
    let value: Value = serde_json::from_str(&g.text).unwrap();
    assert!(value.is_object(), "{:?}", g.text);
    assert_eq!(g.stop_reason, StopReason::Stop);
}

/// On the GPU the mask is applied by the sampling kernel: greedy and sampled.
#[test]
fn json_schemas_hold_on_the_gpu() {
    let Some(mut engine) = load(Device::Gpu) else {
        return;
    };
    let (question, schema) = &schemas()[0];
    check_schema(&mut engine, question, schema, 0.0, 0);
    check_schema(&mut engine, question, schema, 0.9, 3);
    // Unconstrained generation afterwards is unaffected by the last mask: llama.cpp's text.
    let greedy = GenerateOptions {
        max_tokens: 30,
        ..options(ResponseFormat::Text, 0.0, 0)
    };
    let free = engine
        .generate("Once upon a time", &greedy, &mut |_| true)
        .unwrap();
    assert_eq!(free.text, common::REFERENCE_CONTINUATION);
}

#[test]
fn grammars_and_regexes_hold() {
    let Some(mut engine) = load(Device::Cpu) else {
        return;
    };
    let messages = [Message::new("user", "Is the sky blue? Answer yes or no.")];
    let lark = ResponseFormat::Grammar {
        grammar: r#"start: answer "." 
answer: "yes" | "no""#
            .into(),
    };
    for seed in 0..3 {
        let g = engine
            .chat(&messages, &options(lark.clone(), 1.0, seed), &mut |_| true)
            .unwrap();
        assert!(g.text == "yes." || g.text == "no.", "{:?}", g.text);
    }
    // A complete grammar keeps its last text even when it could begin a stop string.
    let options_with_stop = GenerateOptions {
        stop: vec![".!".into()],
        ..options(
            ResponseFormat::Grammar {
                grammar: r#"start: "yes.""#.into(),
            },
            0.0,
            0,
        )
    };
    let g = engine
        .chat(&messages, &options_with_stop, &mut |_| true)
        .unwrap();
    assert_eq!(g.text, "yes.");
    assert_eq!(g.stop_reason, StopReason::Stop);
    let regex = ResponseFormat::Regex {
        regex: r"[0-9]{3}-[0-9]{4}".into(),
    };
    let messages = [Message::new("user", "Make up a phone number.")];
    let g = engine
        .chat(&messages, &options(regex, 0.8, 5), &mut |_| true)
        .unwrap();
    let bytes = g.text.as_bytes();
    assert!(
        bytes.len() == 8
            && bytes[3] == b'-'
            && bytes
                .iter()
                .enumerate()
                .all(|(i, b)| i == 3 || b.is_ascii_digit()),
        "{:?}",
        g.text
    );
}

#[test]
fn a_format_the_library_cannot_compile_is_invalid_argument() {
    let Some(mut engine) = load(Device::Cpu) else {
        return;
    };
    let bad = [
        schema_format(&json!({"type": "no-such-type"})),
        ResponseFormat::Grammar {
            grammar: "start: (".into(),
        },
        ResponseFormat::Regex {
            regex: "[unclosed".into(),
        },
    ];
    for format in bad {
        let err = engine
            .generate("Hello", &options(format.clone(), 0.0, 0), &mut |_| true)
            .unwrap_err();
        assert_eq!(err.code(), "INVALID_ARGUMENT", "{format:?}: {err}");
    }
    // The engine is still usable.
    let g = engine
        .generate(
            "Once upon a time",
            &options(ResponseFormat::Text, 0.0, 0),
            &mut |_| true,
        )
        .unwrap();
    assert!(!g.ids.is_empty());
}

/// The response format's JSON shape is OpenAI's.
#[test]
fn response_formats_read_openai_json() {
    let format: ResponseFormat = serde_json::from_value(json!({
        "type": "json_schema",
        "json_schema": {"name": "x", "schema": {"type": "object"}, "strict": true}
    }))
    .unwrap();
    assert!(matches!(format, ResponseFormat::JsonSchema { .. }));
    let format: ResponseFormat = serde_json::from_value(json!({"type": "json_object"})).unwrap();
    assert_eq!(format, ResponseFormat::JsonObject);
    assert!(serde_json::from_value::<ResponseFormat>(json!({"type": "xml"})).is_err());
}

//! Tool calling (`tools.rs`) through the public `Engine`: on Qwen2.5-Coder-0.5B, whose template
//! renders tools in the Hermes syntax, and on the default model (SmolLM2), whose template knows
//! no tools and gets them described in a system message. A required or named call must parse
//! and its arguments must validate against the tool's schema (the `jsonschema` crate is the
//! judge); a tool result turn reaches the model; bad requests are INVALID_ARGUMENT and leave the
//! engine usable. Every call text stays out of the streamed pieces.

mod common;

use llama_wgpu::chat::{ChatTemplate, Message};
use llama_wgpu::constraint::{Grammars, ResponseFormat};
use llama_wgpu::sampler::SamplingParams;
use llama_wgpu::tokenizer::Tokenizer;
use llama_wgpu::tools::{Tool, ToolChoice, ToolOptions, ToolPlan};
use llama_wgpu::{Device, Engine, EngineOptions, GenerateOptions, Generation, StopReason};
use serde_json::{json, Value};

const QWEN: &str = "Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf";

fn load(path: std::path::PathBuf, device: Device) -> Engine {
    let options = EngineOptions {
        device,
        context_length: Some(1024),
        ..EngineOptions::default()
    };
    Engine::load(path, &options).expect("the model loads")
}

/// Two tools whose every string is bounded (a small model held to "any string" may write one
/// forever: its choice, not the constraint's fault).
fn tools() -> Vec<Tool> {
    vec![
        Tool::function(
            "get_weather",
            "The current weather in a city",
            json!({
                "type": "object",
                "properties": {
                    "city": {"type": "string", "maxLength": 30},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}
                },
                "required": ["city"]
            }),
        ),
        Tool::function(
            "add",
            "Add two integers",
            json!({
                "type": "object",
                "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                "required": ["a", "b"]
            }),
        ),
    ]
}

fn options(choice: ToolChoice, parallel: Option<bool>) -> GenerateOptions {
    GenerateOptions {
        max_tokens: 80,
        sampling: SamplingParams::greedy(),
        tools: ToolOptions {
            tools: tools(),
            tool_choice: choice,
            parallel_tool_calls: parallel,
        },
        ..Default::default()
    }
}

/// Chat, returning the generation and the streamed pieces joined.
fn chat(
    engine: &mut Engine,
    messages: &[Message],
    options: &GenerateOptions,
) -> (Generation, String) {
    let mut streamed = String::new();
    let g = engine
        .chat(messages, options, &mut |piece| {
            streamed.push_str(piece);
            true
        })
        .expect("the chat runs");
    (g, streamed)
}

/// Each call names a tool and its arguments validate against that tool's schema.
fn assert_valid_calls(g: &Generation) {
    assert!(!g.tool_calls.is_empty(), "no calls: {:?}", g.text);
    for call in &g.tool_calls {
        let tool = tools()
            .into_iter()
            .find(|t| t.function.name == call.function.name)
            .unwrap_or_else(|| panic!("{} is not a tool", call.function.name));
        let arguments: Value = serde_json::from_str(&call.function.arguments).expect("JSON");
        let schema = tool.function.parameters.unwrap();
        let validator = jsonschema::validator_for(&schema).unwrap();
        assert!(
            validator.is_valid(&arguments),
            "{} does not follow {schema}",
            call.function.arguments
        );
        assert!(call.id.starts_with("call_"), "{}", call.id);
    }
}

#[test]
fn qwen_calls_a_required_tool_then_answers_from_its_result() {
    let Some(path) = common::cached_model(QWEN) else {
        return;
    };
    let mut engine = load(path, Device::Cpu);
    let mut messages = vec![Message::new("user", "What is 17 plus 25?")];
    let (g, streamed) = chat(
        &mut engine,
        &messages,
        &options(ToolChoice::Required, Some(false)),
    );
    assert_eq!(g.stop_reason, StopReason::ToolCalls, "{:?}", g.text);
    assert_eq!(g.tool_calls.len(), 1, "parallel_tool_calls false: one call");
    assert_valid_calls(&g);
    assert_eq!(
        streamed, g.text,
        "the pieces are the text, and the call is not in them"
    );
    assert!(!streamed.contains("tool_call"), "{streamed:?}");

    // The call and its result go back as the next turn; the model answers from the result.
    let call = &g.tool_calls[0];
    let mut assistant = Message::new("assistant", "");
    assistant.tool_calls = g.tool_calls.clone();
    let mut result = Message::new("tool", "42");
    result.tool_call_id = Some(call.id.clone());
    messages.extend([assistant, result]);
    let auto = options(ToolChoice::Auto, None);
    let prompt = engine.chat_prompt_ids_for(&messages, &auto).unwrap();
    let prompt = engine.tokenizer.decode(&prompt, false).unwrap();
    assert!(
        prompt.contains("<tool_response>\n42\n</tool_response>"),
        "{prompt}"
    );
    let rendered_call = format!("{{\"name\": \"{}\", \"arguments\": {{", call.function.name);
    assert!(prompt.contains(&rendered_call), "{prompt}");
    assert!(
        prompt.contains("\"name\": \"get_weather\""),
        "the tools are in the system turn"
    );
    // The answer turn with tool_choice "none" (a 0.5B model offered the tools again calls
    // them again): the history still renders the call and its result.
    let none = options(ToolChoice::None, None);
    let (answer, _) = chat(&mut engine, &messages, &none);
    assert!(answer.tool_calls.is_empty(), "{:?}", answer.tool_calls);
    assert!(
        answer.text.contains("42"),
        "the answer uses the result: {:?}",
        answer.text
    );
}

#[test]
fn a_named_function_is_called_through_the_described_tools_of_a_plain_template() {
    let Some(path) = common::default_model() else {
        return;
    };
    for device in [Device::Cpu, Device::Gpu] {
        let mut engine = load(path.clone(), device);
        let messages = vec![Message::new("user", "What is the weather in Oslo?")];
        let named = options(ToolChoice::Function("get_weather".into()), None);
        let prompt = engine.chat_prompt_ids_for(&messages, &named).unwrap();
        let prompt = engine.tokenizer.decode(&prompt, false).unwrap();
        assert!(
            prompt.contains("<tools>") && prompt.contains("\"get_weather\""),
            "{prompt}"
        );
        let (g, streamed) = chat(&mut engine, &messages, &named);
        assert_eq!(
            g.stop_reason,
            StopReason::ToolCalls,
            "{device:?}: {:?}",
            g.text
        );
        assert_eq!(g.tool_calls.len(), 1);
        assert_eq!(g.tool_calls[0].function.name, "get_weather");
        assert_valid_calls(&g);
        assert_eq!(streamed, g.text);
        // tool_choice "none": no call syntax is imposed and nothing is diverted.
        let none = options(ToolChoice::None, None);
        let (g, streamed) = chat(&mut engine, &messages, &none);
        assert!(g.tool_calls.is_empty());
        assert_eq!(streamed, g.text);
        assert!(!g.text.is_empty());
    }
}

#[test]
fn calls_in_the_history_render_as_text_for_a_template_without_tools() {
    let Some(path) = common::default_model() else {
        return;
    };
    let engine = load(path, Device::Cpu);
    let mut assistant = Message::new("assistant", "");
    assistant.tool_calls = serde_json::from_value(json!([
        {"id": "call_1", "type": "function", "function": {"name": "add", "arguments": "{\"a\":1,\"b\":2}"}}
    ]))
    .unwrap();
    let mut result = Message::new("tool", "3");
    result.tool_call_id = Some("call_1".into());
    let messages = [Message::new("user", "1+2?"), assistant, result];
    let ids = engine.chat_prompt_ids(&messages).unwrap();
    let prompt = engine.tokenizer.decode(&ids, false).unwrap();
    assert!(
        prompt.contains(
            "<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2}}\n</tool_call>"
        ),
        "{prompt}"
    );
    assert!(
        prompt.contains("<tool_response>\n3\n</tool_response>"),
        "{prompt}"
    );
}

#[test]
fn bad_tool_requests_are_invalid_arguments_and_the_engine_stays_usable() {
    let Some(path) = common::default_model() else {
        return;
    };
    let mut engine = load(path, Device::Cpu);
    let messages = vec![Message::new("user", "Hi")];
    let invalid = |r: llama_wgpu::Result<Generation>, what: &str| {
        let e = r.err().unwrap_or_else(|| panic!("{what}: no error"));
        assert_eq!(e.code(), "INVALID_ARGUMENT", "{what}: {e}");
    };
    let mut sink = |_: &str| true;
    invalid(
        engine.generate("Hi", &options(ToolChoice::Auto, None), &mut sink),
        "tools with a raw prompt",
    );
    invalid(
        engine.chat(
            &messages,
            &options(ToolChoice::Function("nope".into()), None),
            &mut sink,
        ),
        "an unknown named function",
    );
    let mut both = options(ToolChoice::Auto, None);
    both.response_format = ResponseFormat::JsonObject;
    invalid(
        engine.chat(&messages, &both, &mut sink),
        "tools with a response format",
    );
    let mut twice = options(ToolChoice::Auto, None);
    twice.tools.tools.push(tools()[0].clone());
    invalid(
        engine.chat(&messages, &twice, &mut sink),
        "two tools of one name",
    );
    let mut empty = options(ToolChoice::Required, None);
    empty.tools.tools.clear();
    invalid(
        engine.chat(&messages, &empty, &mut sink),
        "required without tools",
    );
    let g = engine
        .chat(
            &messages,
            &GenerateOptions {
                max_tokens: 4,
                ..Default::default()
            },
            &mut sink,
        )
        .expect("still usable");
    assert!(g.stats.generated_tokens > 0);
}

/// The required-call grammar of each syntax compiles in the grammar library against a real
/// vocabulary (templates that name each syntax's markers select it).
#[test]
fn every_call_syntax_compiles_to_a_grammar() {
    let Some(path) = common::default_model() else {
        return;
    };
    let file = llama_wgpu::gguf::GgufFile::open(&path).unwrap();
    let tokenizer = Tokenizer::from_gguf(&file.header.metadata).unwrap();
    let grammars = Grammars::new(&tokenizer).unwrap();
    for source in [
        "{% if tools %}<tool_call>{% endif %}",
        "{{ tools }} [TOOL_CALLS]",
        "{{ tools }} <|python_tag|>",
        "a template without tools",
    ] {
        let template = ChatTemplate::new(source, "", "").unwrap();
        for parallel in [true, false] {
            let request = options(ToolChoice::Required, Some(parallel)).tools;
            let plan = ToolPlan::new(&request, &template, &tokenizer)
                .unwrap()
                .expect("a plan");
            let grammar = plan.grammar().expect("a required call has a grammar");
            grammars
                .constraint(&ResponseFormat::Grammar {
                    grammar: grammar.clone(),
                })
                .unwrap_or_else(|e| panic!("{source}: {e}\n{grammar}"));
        }
    }
}

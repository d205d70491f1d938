//! Fuzz target for chat-template rendering: a model file's `tokenizer.chat_template` is Jinja
//! source from a download, run by minijinja with the crate's limits (fuel, recursion, output
//! size). Whatever the template and the messages, `ChatTemplate::new` and `render` must end in
//! `Ok` or a `CHAT_TEMPLATE_ERROR`: no panic, no hang (libFuzzer's `-timeout`), no unbounded
//! memory (`-rss_limit_mb`).
//!
//! Input layout, kept as text so real templates seed the corpus as they are:
//! - byte 0: flags (bit 0 `add_generation_prompt`, bit 1 pass a tool list, bit 2 give the
//!   assistant turns a tool call, bits 3..5 pick a built-in template when the source is empty);
//! - then, up to the first NUL byte: the messages, one per `\x1e`-separated record, each
//!   `role\x1fcontent` (no NUL: the built-in conversation below);
//! - after the NUL: the template source (empty: a built-in one).
#![no_main]

use libfuzzer_sys::fuzz_target;
use llama_wgpu::chat::{ChatTemplate, Message, BUILTIN_TEMPLATES};
use llama_wgpu::tools::{FunctionCall, Tool, ToolCall, ToolKind};

fn messages(spec: &str, tool_calls: bool) -> Vec<Message> {
    spec.split('\x1e')
        .map(|record| {
            let (role, content) = record.split_once('\x1f').unwrap_or(("user", record));
            let mut m = Message::new(role, content);
            if role == "tool" {
                m.tool_call_id = Some("call_0".into());
                m.name = Some("get_weather".into());
            }
            if tool_calls && role == "assistant" {
                m.tool_calls.push(ToolCall {
                    id: "call_0".into(),
                    kind: ToolKind::Function,
                    function: FunctionCall {
                        name: "get_weather".into(),
                        // JSON content reaches the template as an object, other text as is.
                        arguments: content.to_string(),
                    },
                });
            }
            m
        })
        .collect()
}

fn default_messages() -> Vec<Message> {
    vec![
        Message::new("system", "Be brief."),
        Message::new("user", "Hi <s> wörld"),
        Message::new("assistant", "{\"a\": 1}"),
        Message::new("user", "{{ raise_exception('x') }}"),
    ]
}

fn tools() -> Vec<Tool> {
    let schema = serde_json::json!({
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    });
    vec![Tool::function(
        "get_weather",
        "The weather in a city",
        schema,
    )]
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let Ok(rest) = std::str::from_utf8(rest) else {
        return;
    };
    let (spec, source) = match rest.split_once('\0') {
        Some((spec, source)) => (Some(spec), source),
        None => (None, rest),
    };
    let template = match source.is_empty() {
        true => {
            let name = BUILTIN_TEMPLATES[usize::from(flags >> 3) % BUILTIN_TEMPLATES.len()];
            ChatTemplate::builtin(name)
        }
        false => ChatTemplate::new(source, "<s>", "</s>"),
    };
    let template = match template {
        // A fixed clock: `strftime_now` must not make a run depend on the time of day.
        Ok(t) => t.with_now(1_700_000_000),
        Err(e) => {
            assert_eq!(e.code(), "CHAT_TEMPLATE_ERROR", "{e}");
            return;
        }
    };
    let msgs = match spec {
        Some(spec) => messages(spec, flags & 4 != 0),
        None => default_messages(),
    };
    let tools = (flags & 2 != 0).then(tools);
    if let Err(e) = template.render_with_tools(&msgs, tools.as_deref(), flags & 1 != 0) {
        assert_eq!(e.code(), "CHAT_TEMPLATE_ERROR", "{e}");
    }
});

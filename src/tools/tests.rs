use super::*;

fn plan(format: ToolFormat, parallel: bool) -> ToolPlan {
    ToolPlan {
        format,
        native: true,
        tools: vec![
            Tool::function("get_weather", "Weather", json!({"type": "object"})),
            Tool::function("add", "Sum", json!({"type": "object"})),
        ],
        choice: ToolChoice::Auto,
        parallel,
        open_token: None,
        close_token: None,
    }
}

#[test]
fn hermes_calls_parse_with_and_without_markers() {
    let p = plan(ToolFormat::Hermes, true);
    let text = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"add\", \"arguments\": \"{\\\"a\\\": 1}\"}\n</tool_call>";
    let calls = p.parse(text, 1).unwrap();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].function.name, "get_weather");
    assert_eq!(calls[0].function.arguments, r#"{"city":"Paris"}"#);
    assert_eq!(calls[1].function.arguments, r#"{"a":1}"#);
    assert_ne!(calls[0].id, calls[1].id);
    assert!(calls[0].id.starts_with("call_") && calls[0].id.len() == 29);
    // A control-token marker decodes to nothing: the bare JSON still parses.
    let bare = "\n{\"name\": \"add\", \"arguments\": {}}";
    assert_eq!(p.parse(bare, 1).unwrap()[0].function.arguments, "{}");
}

#[test]
fn other_formats_parse() {
    let llama = plan(ToolFormat::Llama3, false);
    let calls = llama
        .parse("{\"name\": \"add\", \"parameters\": {\"a\": 2}}", 0)
        .unwrap();
    assert_eq!(calls[0].function.arguments, r#"{"a":2}"#);
    let mistral = plan(ToolFormat::Mistral, true);
    let calls = mistral
        .parse("[TOOL_CALLS] [{\"name\": \"add\", \"arguments\": {}}, {\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}]", 0)
        .unwrap();
    assert_eq!(calls.len(), 2);
}

#[test]
fn anything_else_is_not_a_call() {
    let p = plan(ToolFormat::Hermes, false);
    for text in [
        "<tool_call>\n{\"name\": \"unknown\", \"arguments\": {}}\n</tool_call>",
        "<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": ",
        "<tool_call> I will call add </tool_call>",
        "<tool_call>{\"name\": \"add\", \"arguments\": []}</tool_call>",
        "<tool_call>{\"name\": \"add\"}</tool_call><tool_call>{\"name\": \"add\"}</tool_call>",
        "",
    ] {
        assert_eq!(p.parse(text, 0), None, "{text:?}");
    }
}

#[test]
fn tool_choice_reads_openai_forms() {
    let read = |v: Value| serde_json::from_value::<ToolChoice>(v);
    assert_eq!(read(json!("auto")).unwrap(), ToolChoice::Auto);
    assert_eq!(read(json!("none")).unwrap(), ToolChoice::None);
    assert_eq!(read(json!("required")).unwrap(), ToolChoice::Required);
    assert_eq!(
        read(json!({"type": "function", "function": {"name": "add"}})).unwrap(),
        ToolChoice::Function("add".into())
    );
    assert!(read(json!("always")).is_err());
    assert!(read(json!({"type": "tool", "function": {"name": "add"}})).is_err());
    let back = serde_json::to_value(ToolChoice::Function("add".into())).unwrap();
    assert_eq!(back["function"]["name"], "add");
}

#[test]
fn formats_are_read_from_templates() {
    assert_eq!(
        ToolFormat::native("{% if tools %}<tool_call>{% endif %}"),
        Some(ToolFormat::Hermes)
    );
    assert_eq!(
        ToolFormat::native("{{ tools }}[TOOL_CALLS]"),
        Some(ToolFormat::Mistral)
    );
    assert_eq!(
        ToolFormat::native("{{ tools }}<|python_tag|>"),
        Some(ToolFormat::Llama3)
    );
    assert_eq!(ToolFormat::native("<tool_call> without the variable"), None);
    assert_eq!(ToolFormat::native("{{ tools }} in an unknown syntax"), None);
}

#[test]
fn tool_turns_become_text_for_plain_templates() {
    let mut call = Message::new("assistant", "");
    call.tool_calls = vec![ToolCall {
        id: "call_1".into(),
        kind: ToolKind::Function,
        function: FunctionCall {
            name: "add".into(),
            arguments: r#"{"a":1}"#.into(),
        },
    }];
    let mut result = Message::new("tool", "2");
    result.tool_call_id = Some("call_1".into());
    let out = rewrite_tool_turns(&[Message::new("user", "1+1?"), call, result.clone(), result]);
    assert_eq!(out.len(), 3);
    assert_eq!(
        out[1].content,
        "<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 1}}\n</tool_call>"
    );
    assert_eq!(out[2].role, "user");
    assert_eq!(
        out[2].content,
        "<tool_response>\n2\n</tool_response>\n<tool_response>\n2\n</tool_response>"
    );
}

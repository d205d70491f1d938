//! Chat templates: the default model's own Jinja template, the built-in formats, and errors.

mod common;

use llama_wgpu::chat::{ChatTemplate, Message};
use llama_wgpu::gguf::GgufFile;
use llama_wgpu::tokenizer::Tokenizer;
use llama_wgpu::Error;

fn template_and_tokenizer(name: &str) -> Option<(ChatTemplate, Tokenizer)> {
    let file = GgufFile::open(common::vocab_path(name)?).unwrap();
    let meta = &file.header.metadata;
    let tokenizer = Tokenizer::from_gguf(meta).unwrap();
    Some((
        ChatTemplate::from_metadata(meta, &tokenizer).unwrap(),
        tokenizer,
    ))
}

fn conversation() -> Vec<Message> {
    vec![
        Message::new("system", "You are a terse assistant."),
        Message::new("user", "What is 2+2?"),
    ]
}

fn chat_error(result: llama_wgpu::Result<impl std::fmt::Debug>) -> String {
    match result {
        Err(Error::ChatTemplate(message)) => message,
        other => panic!("expected a chat template error, got {other:?}"),
    }
}

#[test]
fn smollm2_template_renders_chatml() {
    let Some((template, tokenizer)) = template_and_tokenizer("smollm2") else {
        return;
    };
    assert!(
        template.source().contains("<|im_start|>"),
        "the GGUF's own template"
    );
    let prompt = template.render(&conversation(), true).unwrap();
    assert_eq!(
        prompt,
        "<|im_start|>system\nYou are a terse assistant.<|im_end|>\n\
         <|im_start|>user\nWhat is 2+2?<|im_end|>\n\
         <|im_start|>assistant\n"
    );
    let ids = tokenizer.encode(&prompt, false, true).unwrap();
    assert_eq!(ids[0], 1, "<|im_start|> is one token");
    assert_eq!(
        ids.iter().filter(|&&id| id == 2).count(),
        2,
        "two <|im_end|>"
    );

    // Without a system message this template supplies its own.
    let prompt = template
        .render(&[Message::new("user", "Hi")], false)
        .unwrap();
    assert_eq!(
        prompt,
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face\
         <|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
    );
}

/// This vocabulary has no template, so ChatML stands in, with Llama 3's BOS text.
#[test]
fn llama_bpe_without_template_falls_back_to_chatml() {
    let Some((template, _)) = template_and_tokenizer("llama-bpe") else {
        return;
    };
    assert_eq!(
        template
            .render(&[Message::new("user", "Hi")], true)
            .unwrap(),
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    );
}

#[test]
fn builtin_chatml() {
    let template = ChatTemplate::builtin("chatml").unwrap();
    assert_eq!(
        template.render(&conversation(), true).unwrap(),
        "<|im_start|>system\nYou are a terse assistant.<|im_end|>\n\
         <|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
    );
    assert_eq!(
        template.render(&conversation()[1..], false).unwrap(),
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
    );
}

#[test]
fn builtin_llama2() {
    let template = ChatTemplate::builtin("llama2").unwrap();
    let mut messages = conversation();
    messages.push(Message::new("assistant", " 4. "));
    messages.push(Message::new("user", "And 3+3?"));
    assert_eq!(
        template.render(&messages, true).unwrap(),
        "<s>[INST] <<SYS>>\nYou are a terse assistant.\n<</SYS>>\n\nWhat is 2+2? [/INST] 4. </s>\
         <s>[INST] And 3+3? [/INST]"
    );
    assert_eq!(
        template.render(&messages[1..2], false).unwrap(),
        "<s>[INST] What is 2+2? [/INST]"
    );
    let message = chat_error(template.render(&[Message::new("assistant", "Hi")], true));
    assert!(message.contains("must alternate"), "{message}");
}

#[test]
fn builtin_llama3() {
    let template = ChatTemplate::builtin("llama3").unwrap();
    assert_eq!(
        template.render(&conversation(), true).unwrap(),
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a terse assistant.\
         <|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>\
         <|start_header_id|>assistant<|end_header_id|>\n\n"
    );
    let plain = template.with_special_tokens("", "");
    assert_eq!(
        plain
            .render(&[Message::new("user", "  Hi \n")], false)
            .unwrap(),
        "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
    );
}

#[test]
fn unknown_builtin_is_an_error() {
    let message = chat_error(ChatTemplate::builtin("vicuna"));
    assert!(message.contains("chatml"), "{message}");
}

#[test]
fn broken_template_is_an_error() {
    let message = chat_error(ChatTemplate::new(
        "{% for m in messages %}{{ m.role }",
        "",
        "",
    ));
    assert!(!message.is_empty());
    // Found only when rendering: calling something that is not a function.
    let template = ChatTemplate::new("{{ messages[0].content() }}", "", "").unwrap();
    chat_error(template.render(&conversation(), false));
}

/// A template is code from a downloaded file: one that loops (nearly) for ever, recurses, or
/// writes without end stops with CHAT_TEMPLATE_ERROR, quickly, and the next render works.
#[test]
fn a_hostile_template_is_stopped() {
    let hostile = [
        // 10^10 iterations: stopped by the instruction budget.
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        // Unbounded recursion through a macro.
        "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
        // 100 MB strings written over and over: stopped by the output limit.
        "{% for i in range(100) %}{{ 'x' * 10000000 }}{% endfor %}",
    ];
    for source in hostile {
        let template = ChatTemplate::new(source, "", "").unwrap();
        let start = std::time::Instant::now();
        let message = chat_error(template.render(&conversation(), false));
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "{source}: took {:?}",
            start.elapsed()
        );
        eprintln!("{source}: {message} ({:?})", start.elapsed());
    }
    // Real templates are far inside the limits: a long conversation through a built-in one.
    let template = ChatTemplate::builtin("chatml").unwrap();
    let long: Vec<Message> = (0..400)
        .map(|i| {
            Message::new(
                if i % 2 == 0 { "user" } else { "assistant" },
                "Hello there.",
            )
        })
        .collect();
    assert!(template.render(&long, true).unwrap().len() > 400 * 12);
}

#[test]
fn raise_exception_carries_its_message() {
    let source = "{% if messages[0].role != 'user' %}{{ raise_exception('Only user turns, please') }}{% endif %}ok";
    let template = ChatTemplate::new(source, "", "").unwrap();
    let message = chat_error(template.render(&conversation(), false));
    assert!(message.contains("Only user turns, please"), "{message}");
    assert_eq!(template.render(&conversation()[1..], false).unwrap(), "ok");
}

#[test]
fn python_string_methods_and_variables() {
    let source = "{{ bos_token }}{% for m in messages %}{{ m.role.upper() }}:{{ m['content'].strip().replace('2', 'two') }}|{% endfor %}{{ eos_token }}{{ add_generation_prompt }}";
    let template = ChatTemplate::new(source, "<s>", "</s>").unwrap();
    let messages = [Message::new("user", "  2+2  ")];
    assert_eq!(
        template.render(&messages, true).unwrap(),
        "<s>USER:two+two|</s>True"
    );
}

/// Constructs Hugging Face templates lean on (Qwen's and Llama 3.1's among them).
#[test]
fn jinja2_features_of_real_templates() {
    let source = "{%- set ns = namespace(system=false) %}\
        {%- for m in messages %}{%- if m.role == 'system' %}{%- set ns.system = true %}{%- endif %}{%- endfor %}\
        {{- ns.system }} {{ messages | length }} {{ messages[-1].content is string }} \
        {{- ' ' + messages[-1] | tojson }}{% for m in messages %}{% if loop.last %} last={{ m.role }}{% endif %}{% endfor %}";
    let template = ChatTemplate::new(source, "", "").unwrap();
    assert_eq!(
        template.render(&conversation(), false).unwrap(),
        r#"True 2 True {"role": "user", "content": "What is 2+2?"} last=user"#
    );
}

/// `tojson` writes what Python's `json.dumps(x, ensure_ascii=False)` writes, as Hugging Face's
/// renderer does: ", " and ": " separators (or `indent` spaces per level), keys in their
/// order, `<` and non-ASCII text as they are (minijinja's own filter writes compact,
/// HTML-escaped JSON, which is not what the models were trained on).
#[test]
fn tojson_writes_python_json() {
    let source = "{{ {'b': [1, 2.5, none, true], 'a': '<tool> é'} | tojson }}|{{ {'x': {'y': []}} | tojson(indent=2) }}|{{ [] | tojson }}";
    let template = ChatTemplate::new(source, "", "").unwrap();
    assert_eq!(
        template.render(&[], false).unwrap(),
        "{\"b\": [1, 2.5, null, true], \"a\": \"<tool> é\"}|{\n  \"x\": {\n    \"y\": []\n  }\n}|[]"
    );
}

#[test]
fn strftime_now_uses_the_given_time() {
    let template = ChatTemplate::new("Today Date: {{ strftime_now('%d %b %Y') }}", "", "").unwrap();
    let fixed = template.clone().with_now(1_721_999_109);
    assert_eq!(fixed.render(&[], false).unwrap(), "Today Date: 26 Jul 2024");
    // Natively the system clock stands in.
    let today = template.render(&[], false).unwrap();
    assert_eq!(today.len(), "Today Date: 26 Jul 2024".len(), "{today}");
}

#[test]
fn messages_deserialize_from_json() {
    let messages: Vec<Message> =
        serde_json::from_str(r#"[{"role":"user","content":"Hi"}]"#).unwrap();
    assert_eq!(messages, vec![Message::new("user", "Hi")]);
}

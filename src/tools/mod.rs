//! Tool calling in OpenAI's shape: `tools` (function signatures with JSON-schema parameters),
//! `tool_choice`, assistant messages carrying `tool_calls`, and `role: "tool"` results.
//!
//! Models are trained on one of a few call syntaxes, which their chat template reveals:
//! - Hermes (Qwen 2.5 / 3, Hermes, SmolLM3): `<tool_call>\n{"name": .., "arguments": {..}}\n</tool_call>`;
//! - Llama 3.1-3.3 JSON: the whole reply is `{"name": .., "parameters": {..}}`;
//! - Mistral: `[TOOL_CALLS] [{"name": .., "arguments": {..}}]`.
//!
//! A template that renders `tools` in one of these is used as written ("native"). Any other
//! model (Gemma 3, Phi-3.5, SmolLM2, a template without tools) gets the tools described in a
//! system message and is asked for the Hermes syntax; its history of calls and results is
//! rewritten into plain turns it can render.
//!
//! While generating, text from the start of a call on is diverted from the stream
//! ([`ToolPlan::divert`], applied by `generate.rs`); at the end it is parsed into calls. Text
//! that does not parse as calls of the given tools is handed back as ordinary content.
//! `tool_choice` `required` or a named function holds the output to the call syntax with a
//! grammar ([`ToolPlan::grammar`], run by `constraint.rs`), so the call always parses.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::chat::{ChatTemplate, Message};
use crate::error::{Error, Result};
use crate::tokenizer::Tokenizer;

/// One tool the model may call (OpenAI's `{"type": "function", "function": {..}}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tool {
    #[serde(rename = "type")]
    pub kind: ToolKind,
    pub function: FunctionDef,
}

/// The only kind of tool OpenAI's chat API defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolKind {
    #[default]
    Function,
}

/// A function's signature: its name, what it does, and its parameters as a JSON schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionDef {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    /// Accepted for OpenAI compatibility: a constrained call always follows the schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

impl Tool {
    pub fn function(name: &str, description: &str, parameters: Value) -> Tool {
        Tool {
            kind: ToolKind::Function,
            function: FunctionDef {
                name: name.into(),
                description: Some(description.into()),
                parameters: Some(parameters),
                strict: None,
            },
        }
    }

    /// The parameters schema for a constrained call: `{"type": "object"}` when none is given,
    /// and no properties beyond those listed unless the schema says otherwise (what OpenAI's
    /// strict mode requires; free extra keys let a small model ramble inside the call).
    fn parameters(&self) -> Value {
        let mut schema = self
            .function
            .parameters
            .clone()
            .unwrap_or_else(|| json!({"type": "object"}));
        if let Some(object) = schema.as_object_mut() {
            if object.contains_key("properties") {
                object
                    .entry("additionalProperties")
                    .or_insert(Value::Bool(false));
            }
        }
        schema
    }
}

/// Whether and which tool the model must call: `"auto"` (its choice), `"none"`, `"required"`
/// (at least one call), or `{"type": "function", "function": {"name": ..}}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ToolChoice {
    #[default]
    Auto,
    None,
    Required,
    Function(String),
}

impl<'de> Deserialize<'de> for ToolChoice {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Named {
            #[serde(rename = "type")]
            _kind: ToolKind,
            function: Name,
        }
        #[derive(Deserialize)]
        struct Name {
            name: String,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Mode(String),
            Named(Named),
        }
        match Repr::deserialize(d).map_err(|_| {
            serde::de::Error::custom(
                "tool_choice must be \"auto\", \"none\", \"required\" or \
                 {\"type\": \"function\", \"function\": {\"name\": ...}}",
            )
        })? {
            Repr::Mode(mode) => match mode.as_str() {
                "auto" => Ok(ToolChoice::Auto),
                "none" => Ok(ToolChoice::None),
                "required" => Ok(ToolChoice::Required),
                other => Err(serde::de::Error::custom(format!(
                    "unknown tool_choice \"{other}\" (auto, none, required, or a named function)"
                ))),
            },
            Repr::Named(n) => Ok(ToolChoice::Function(n.function.name)),
        }
    }
}

impl Serialize for ToolChoice {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            ToolChoice::Auto => s.serialize_str("auto"),
            ToolChoice::None => s.serialize_str("none"),
            ToolChoice::Required => s.serialize_str("required"),
            ToolChoice::Function(name) => {
                json!({"type": "function", "function": {"name": name}}).serialize(s)
            }
        }
    }
}

/// The tools of a chat request (part of `GenerateOptions`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ToolOptions {
    pub tools: Vec<Tool>,
    pub tool_choice: ToolChoice,
    /// `false`: at most one call per reply. Default true, as in OpenAI's API.
    pub parallel_tool_calls: Option<bool>,
}

impl ToolOptions {
    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }
}

/// A call the model made (OpenAI's `message.tool_calls[i]`): `arguments` is JSON text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    #[serde(rename = "type", default)]
    pub kind: ToolKind,
    pub function: FunctionCall,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionCall {
    pub name: String,
    pub arguments: String,
}

/// A model's call syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolFormat {
    Hermes,
    Llama3,
    Mistral,
}

impl ToolFormat {
    /// The syntax a template renders tools in, if it renders them in a known one.
    pub fn native(template: &str) -> Option<ToolFormat> {
        if !template.contains("tools") {
            return None;
        }
        if template.contains("<tool_call>") {
            Some(ToolFormat::Hermes)
        } else if template.contains("[TOOL_CALLS]") {
            Some(ToolFormat::Mistral)
        } else if template.contains("<|python_tag|>")
            || (template.contains("<|start_header_id|>") && template.contains("\"parameters\""))
        {
            Some(ToolFormat::Llama3)
        } else {
            None
        }
    }
}

/// Where a call starts in the output: the text `marker` anywhere, `opening` as the reply's
/// first non-blank text, or the token `token` (a control token decodes to no text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Divert {
    pub marker: Option<&'static str>,
    pub opening: Option<&'static str>,
    pub token: Option<u32>,
}

/// One request's tools, as this model will see and write them.
#[derive(Debug, Clone)]
pub struct ToolPlan {
    format: ToolFormat,
    /// The template renders the tools (else `messages` adds a system message describing them).
    native: bool,
    tools: Vec<Tool>,
    choice: ToolChoice,
    parallel: bool,
    /// The call markers as single tokens, where the vocabulary has them.
    open_token: Option<u32>,
    close_token: Option<u32>,
}

const HERMES_OPEN: &str = "<tool_call>";
const HERMES_CLOSE: &str = "</tool_call>";
const MISTRAL_OPEN: &str = "[TOOL_CALLS]";

impl ToolPlan {
    /// The plan for `options` on a model with this template and vocabulary; `None` when the
    /// request has no tools or `tool_choice` is `none`.
    pub fn new(
        options: &ToolOptions,
        template: &ChatTemplate,
        tokenizer: &Tokenizer,
    ) -> Result<Option<ToolPlan>> {
        let mut seen = std::collections::HashSet::new();
        for tool in &options.tools {
            let name = &tool.function.name;
            if name.is_empty() || !seen.insert(name.as_str()) {
                return Err(Error::InvalidArgument(format!(
                    "tools: function names must be non-empty and distinct (\"{name}\")"
                )));
            }
            if let Some(p) = &tool.function.parameters {
                if !p.is_object() {
                    return Err(Error::InvalidArgument(format!(
                        "tools: the parameters of \"{name}\" must be a JSON schema object"
                    )));
                }
            }
        }
        let tools = match &options.tool_choice {
            ToolChoice::None => return Ok(None),
            _ if options.tools.is_empty() => {
                return match options.tool_choice {
                    ToolChoice::Auto => Ok(None),
                    _ => Err(Error::InvalidArgument(
                        "tool_choice requires a call, but no tools are given".into(),
                    )),
                }
            }
            ToolChoice::Function(name) => {
                let tool = options.tools.iter().find(|t| &t.function.name == name);
                vec![tool
                    .ok_or_else(|| {
                        Error::InvalidArgument(format!(
                            "tool_choice names \"{name}\", which is not among the tools"
                        ))
                    })?
                    .clone()]
            }
            _ => options.tools.clone(),
        };
        let native = ToolFormat::native(template.source());
        let format = native.unwrap_or(ToolFormat::Hermes);
        let single = |text: &str| {
            tokenizer
                .encode(text, false, true)
                .ok()
                .filter(|ids| ids.len() == 1)
                .map(|ids| ids[0])
        };
        let (open_token, close_token) = match format {
            ToolFormat::Hermes => (single(HERMES_OPEN), single(HERMES_CLOSE)),
            ToolFormat::Mistral => (single(MISTRAL_OPEN), None),
            ToolFormat::Llama3 => (None, None),
        };
        Ok(Some(ToolPlan {
            format,
            native: native.is_some(),
            // Llama 3's templates render one call per assistant turn; a named function is
            // called once.
            parallel: options.parallel_tool_calls.unwrap_or(true)
                && format != ToolFormat::Llama3
                && !matches!(options.tool_choice, ToolChoice::Function(_)),
            tools,
            choice: options.tool_choice.clone(),
            open_token,
            close_token,
        }))
    }

    /// The tools as the template's `tools` variable (`None`: the template does not render
    /// them, `messages` describes them instead).
    pub fn template_tools(&self) -> Option<&[Tool]> {
        self.native.then_some(self.tools.as_slice())
    }

    /// Where a call starts in the output.
    pub fn divert(&self) -> Divert {
        match self.format {
            // Small Hermes models often leave out the tags and answer with the bare object.
            ToolFormat::Hermes => Divert {
                marker: Some(HERMES_OPEN),
                opening: Some("{"),
                token: self.open_token,
            },
            ToolFormat::Mistral => Divert {
                marker: Some(MISTRAL_OPEN),
                opening: Some("[{"),
                token: self.open_token,
            },
            ToolFormat::Llama3 => Divert {
                marker: None,
                opening: Some("{"),
                token: None,
            },
        }
    }

    /// The grammar (llguidance Lark) the whole reply must follow when a call is required
    /// (`tool_choice` `required` or a named function); `None` under `auto`.
    pub fn grammar(&self) -> Option<String> {
        if self.choice == ToolChoice::Auto {
            return None;
        }
        let schemas: Vec<Value> = self
            .tools
            .iter()
            .map(|tool| {
                let args = if self.format == ToolFormat::Llama3 {
                    "parameters"
                } else {
                    "arguments"
                };
                json!({
                    "type": "object",
                    "properties": {"name": {"const": tool.function.name}, args: tool.parameters()},
                    "required": ["name", args],
                    "additionalProperties": false,
                })
            })
            .collect();
        let call = json!({
            "anyOf": schemas,
            "x-guidance": crate::constraint::json_layout(),
        });
        let token_or_text = |token: Option<u32>, text: &str| match token {
            Some(id) => format!("<[{id}]>"),
            None => serde_json::to_string(text).expect("a string serialises"),
        };
        let more = if self.parallel {
            " (\"\\n\" call)*"
        } else {
            ""
        };
        Some(match self.format {
            ToolFormat::Hermes => format!(
                "start: call{more} \"\\n\"?\ncall: {} \"\\n\" %json {call} \"\\n\" {}\n",
                token_or_text(self.open_token, HERMES_OPEN),
                token_or_text(self.close_token, HERMES_CLOSE),
            ),
            ToolFormat::Llama3 => format!("start: %json {call}\n"),
            ToolFormat::Mistral => {
                let max = if self.parallel { json!(null) } else { json!(1) };
                let mut list = json!({"type": "array", "items": call, "minItems": 1});
                if !max.is_null() {
                    list["maxItems"] = max;
                }
                list["x-guidance"] = crate::constraint::json_layout();
                format!(
                    "start: {} \" \" %json {list}\n",
                    token_or_text(self.open_token, MISTRAL_OPEN)
                )
            }
        })
    }

    /// The calls in `text` (the diverted output, from the call's start on): every JSON object
    /// `{"name", "arguments" | "parameters"}` (or array of them) between the format's markers,
    /// each naming one of the tools. `None` when anything else is there: the text is then an
    /// ordinary reply.
    pub fn parse(&self, text: &str, id_seed: u64) -> Option<Vec<ToolCall>> {
        let mut calls = Vec::new();
        let mut rest = text;
        loop {
            rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == ';' || c == ',');
            let marker = [HERMES_OPEN, HERMES_CLOSE, MISTRAL_OPEN, "<|python_tag|>"]
                .into_iter()
                .find(|m| rest.starts_with(m));
            if let Some(m) = marker {
                rest = &rest[m.len()..];
                continue;
            }
            if rest.is_empty() {
                break;
            }
            let mut values = serde_json::Deserializer::from_str(rest).into_iter::<Value>();
            let value = values.next()?.ok()?;
            rest = &rest[values.byte_offset()..];
            match value {
                Value::Array(items) => {
                    for item in items {
                        calls.push(self.call(item, id_seed, calls.len())?);
                    }
                }
                item => calls.push(self.call(item, id_seed, calls.len())?),
            }
        }
        if calls.is_empty() || (!self.parallel && calls.len() > 1) {
            return None;
        }
        Some(calls)
    }

    fn call(&self, value: Value, id_seed: u64, index: usize) -> Option<ToolCall> {
        let Value::Object(mut object) = value else {
            return None;
        };
        let name = object.remove("name")?.as_str()?.to_string();
        self.tools.iter().find(|t| t.function.name == name)?;
        let arguments = match object
            .remove("arguments")
            .or_else(|| object.remove("parameters"))
            .unwrap_or_else(|| json!({}))
        {
            // Some models write the arguments as a JSON string, as OpenAI transports them.
            Value::String(s) => serde_json::from_str::<Value>(&s).ok()?,
            v => v,
        };
        if !arguments.is_object() {
            return None;
        }
        Some(ToolCall {
            id: call_id(id_seed, index),
            kind: ToolKind::Function,
            function: FunctionCall {
                name,
                arguments: arguments.to_string(),
            },
        })
    }

    /// The conversation as this model's template should see it: unchanged for a native
    /// template; otherwise with the tools described in the system message (added if there is
    /// none) and calls and results rewritten as text (`rewrite_tool_turns`).
    pub fn messages(&self, messages: &[Message]) -> Vec<Message> {
        if self.native {
            return messages.to_vec();
        }
        let mut out = rewrite_tool_turns(messages);
        let described = self.describe_tools();
        match out.first_mut() {
            Some(first) if first.role == "system" => {
                first.content = format!("{}\n\n{described}", first.content.trim_end());
            }
            _ => out.insert(0, Message::new("system", described)),
        }
        out
    }

    /// The tool instructions given to a model whose template has none, in the Hermes syntax.
    fn describe_tools(&self) -> String {
        let signatures: Vec<String> = self
            .tools
            .iter()
            .map(|t| crate::chat::python_json(&serde_json::to_value(t).expect("serialises"), None))
            .collect();
        format!(
            "# Tools\n\nYou can call functions to help answer the user. Their signatures, one \
             JSON object per line:\n<tools>\n{}\n</tools>\n\nTo call a function, reply with \
             one block per call, exactly like this:\n{HERMES_OPEN}\n{{\"name\": \
             \"<function name>\", \"arguments\": <arguments as a JSON object>}}\n{HERMES_CLOSE}\n\
             \nThe results come back inside <tool_response></tool_response> tags.",
            signatures.join("\n")
        )
    }
}

/// Assistant calls and tool results as plain turns, for templates that know neither: a call
/// becomes the Hermes block the model was asked to write, and consecutive results one user
/// turn of `<tool_response>` blocks (many templates insist that roles alternate).
pub fn rewrite_tool_turns(messages: &[Message]) -> Vec<Message> {
    let mut out: Vec<Message> = Vec::with_capacity(messages.len());
    for m in messages {
        if m.role == "tool" {
            let block = format!("<tool_response>\n{}\n</tool_response>", m.content);
            match out.last_mut() {
                Some(last) if last.role == "user" && last.content.ends_with("</tool_response>") => {
                    last.content = format!("{}\n{block}", last.content);
                }
                _ => out.push(Message::new("user", block)),
            }
        } else if !m.tool_calls.is_empty() {
            let mut text = m.content.clone();
            for call in &m.tool_calls {
                let arguments = serde_json::from_str::<Value>(&call.function.arguments)
                    .unwrap_or_else(|_| Value::String(call.function.arguments.clone()));
                let call = json!({"name": call.function.name, "arguments": arguments});
                if !text.is_empty() {
                    text.push('\n');
                }
                text.push_str(&format!(
                    "{HERMES_OPEN}\n{}\n{HERMES_CLOSE}",
                    crate::chat::python_json(&call, None)
                ));
            }
            out.push(Message::new(&m.role, text));
        } else {
            out.push(Message::new(&m.role, &m.content));
        }
    }
    out
}

/// `call_` and 24 hex digits, from the generation's ids and the call's index: distinct
/// between calls and replies, the same for the same output.
fn call_id(seed: u64, index: usize) -> String {
    let mix = |mut x: u64| {
        // SplitMix64's finaliser.
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d049bb133111eb);
        x ^ (x >> 31)
    };
    let a = mix(seed ^ (index as u64).wrapping_mul(0x9e3779b97f4a7c15));
    let b = mix(a);
    format!("call_{:016x}{:08x}", a, b as u32)
}

/// A seed for [`ToolPlan::parse`]'s ids from the generated token ids (FNV-1a).
pub fn id_seed(ids: &[u32]) -> u64 {
    ids.iter().fold(0xcbf29ce484222325u64, |h, &id| {
        (h ^ id as u64).wrapping_mul(0x100000001b3)
    })
}

#[cfg(test)]
mod tests;

//! Chat prompts: a list of messages rendered into the one string the model was trained on.
//!
//! GGUF files carry their model's Jinja template (`tokenizer.chat_template`), written for
//! Python's Jinja2 as Hugging Face's `apply_chat_template` runs it. We render it with minijinja
//! set up the same way: blocks trimmed, Python string methods (`.strip()`), `raise_exception`,
//! `strftime_now`, and the variables `messages`, `add_generation_prompt`, `bos_token`,
//! `eos_token`. A file without a template chats through its architecture's known turn format
//! (`Architecture::chat_format`: ChatML for Qwen, Gemma's turns, Phi-3's), or ChatML when the
//! architecture has none; [`ChatTemplate::origin`] says which was used.
//!
//! The rendered text holds special tokens as text (`<|im_start|>`, and `<s>` where a template
//! writes `bos_token`): encode it with `parse_special` on, and add BOS yourself only when the
//! text does not already begin with it.

use minijinja::{context, Environment, ErrorKind};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::gguf::Metadata;
use crate::tokenizer::Tokenizer;
use crate::tools::{Tool, ToolCall};

/// One turn of a conversation. `role` is usually "system", "user", "assistant" or "tool" (a
/// tool's result, answering the call `tool_call_id`); an assistant turn may carry the
/// `tool_calls` it made.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    #[serde(default)]
    pub content: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// The function's name, on a tool result (some templates print it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Message {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Message {
            role: role.into(),
            content: content.into(),
            ..Message::default()
        }
    }

    /// The message as templates expect it: a call's `arguments` as an object (Hugging Face's
    /// convention; templates write them with `tojson`), not OpenAI's JSON text.
    fn for_template(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(self).expect("a message serialises");
        if let Some(calls) = value.get_mut("tool_calls").and_then(|c| c.as_array_mut()) {
            for call in calls {
                let arguments = &mut call["function"]["arguments"];
                if let Some(parsed) = arguments
                    .as_str()
                    .and_then(|text| serde_json::from_str::<serde_json::Value>(text).ok())
                {
                    *arguments = parsed;
                }
            }
        }
        value
    }
}

/// The names [`ChatTemplate::builtin`] knows.
pub const BUILTIN_TEMPLATES: &[&str] = &["chatml", "llama2", "llama3", "gemma", "phi3"];

/// ChatML (SmolLM, Qwen, many fine-tunes):
/// `<|im_start|>{role}\n{content}<|im_end|>\n` per message, then `<|im_start|>assistant\n` when a
/// generation prompt is asked for.
const CHATML: &str = r#"
{%- for message in messages %}
{{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>\n' }}
{%- endfor %}
{%- if add_generation_prompt %}
{{- '<|im_start|>assistant\n' }}
{%- endif %}"#;

/// Llama 2 chat, as Meta's Hugging Face template writes it:
/// `<s>[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST] {assistant} </s><s>[INST] {user} [/INST]`.
/// The prompt already ends where the answer starts, so `add_generation_prompt` changes nothing.
/// Roles after the optional system message must alternate user/assistant.
const LLAMA2: &str = r#"
{%- if messages and messages[0].role == 'system' %}
{%- set system = messages[0].content %}
{%- set turns = messages[1:] %}
{%- else %}
{%- set system = none %}
{%- set turns = messages %}
{%- endif %}
{%- for message in turns %}
{%- if (message.role == 'user') != (loop.index0 % 2 == 0) %}
{{- raise_exception('llama2 chat roles must alternate user/assistant/user/...') }}
{%- endif %}
{%- if message.role == 'user' %}
{%- if loop.first and system is not none %}
{%- set content = '<<SYS>>\n' + system + '\n<</SYS>>\n\n' + message.content %}
{%- else %}
{%- set content = message.content %}
{%- endif %}
{{- bos_token + '[INST] ' + content.strip() + ' [/INST]' }}
{%- else %}
{{- ' ' + message.content.strip() + ' ' + eos_token }}
{%- endif %}
{%- endfor %}"#;

/// Llama 3 instruct: `<|begin_of_text|>` then per message
/// `<|start_header_id|>{role}<|end_header_id|>\n\n{content, trimmed}<|eot_id|>`, then
/// `<|start_header_id|>assistant<|end_header_id|>\n\n` when a generation prompt is asked for.
const LLAMA3: &str = r#"
{{- bos_token }}
{%- for message in messages %}
{{- '<|start_header_id|>' + message.role + '<|end_header_id|>\n\n' + (message.content | trim) + '<|eot_id|>' }}
{%- endfor %}
{%- if add_generation_prompt %}
{{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- endif %}"#;

/// Gemma's turns: `<bos><start_of_turn>user\n{content}<end_of_turn>\n<start_of_turn>model\n...`.
/// Gemma has no system role: a system message is put before the first user turn's text, as
/// Google's own template does.
const GEMMA: &str = r#"
{{- bos_token }}
{%- if messages and messages[0].role == 'system' %}
{%- set system = messages[0].content + '\n\n' %}
{%- set turns = messages[1:] %}
{%- else %}
{%- set system = '' %}
{%- set turns = messages %}
{%- endif %}
{%- for message in turns %}
{%- set role = 'model' if message.role == 'assistant' else message.role %}
{%- set prefix = system if loop.first else '' %}
{{- '<start_of_turn>' + role + '\n' + prefix + (message.content | trim) + '<end_of_turn>\n' }}
{%- endfor %}
{%- if add_generation_prompt %}
{{- '<start_of_turn>model\n' }}
{%- endif %}"#;

/// Phi-3: `<|{role}|>\n{content}<|end|>\n` per message, then `<|assistant|>\n`.
const PHI3: &str = r#"
{%- for message in messages %}
{{- '<|' + message.role + '|>\n' + message.content + '<|end|>\n' }}
{%- endfor %}
{%- if add_generation_prompt %}
{{- '<|assistant|>\n' }}
{%- endif %}"#;

/// Where a model's chat template came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateOrigin {
    /// `tokenizer.chat_template` in the file.
    File,
    /// A built-in format, named: the file has none (chosen by its architecture, or ChatML).
    Builtin(&'static str),
}

/// A chat template with the special-token texts it may refer to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatTemplate {
    source: String,
    origin: TemplateOrigin,
    bos_token: String,
    eos_token: String,
    /// The time `strftime_now` reports, in Unix seconds; `None` means the system clock.
    now_unix: Option<i64>,
}

impl ChatTemplate {
    /// A template from Jinja source. Syntax errors are reported here, not at the first render.
    pub fn new(
        source: impl Into<String>,
        bos_token: impl Into<String>,
        eos_token: impl Into<String>,
    ) -> Result<Self> {
        let template = ChatTemplate {
            source: source.into(),
            origin: TemplateOrigin::File,
            bos_token: bos_token.into(),
            eos_token: eos_token.into(),
            now_unix: None,
        };
        template
            .environment()
            .template_from_named_str("chat_template", &template.source)
            .map_err(template_error)?;
        Ok(template)
    }

    /// The GGUF's own template, else its architecture's turn format, else ChatML;
    /// `bos_token`/`eos_token` are the tokenizer's.
    pub fn from_metadata(meta: &Metadata, tokenizer: &Tokenizer) -> Result<Self> {
        let text_of = |id: Option<u32>| {
            id.and_then(|id| tokenizer.token_text(id))
                .unwrap_or_default()
        };
        let (bos, eos) = (text_of(tokenizer.bos_id()), text_of(tokenizer.eos_id()));
        if let Some(source) = meta.get_str("tokenizer.chat_template") {
            return ChatTemplate::new(source, bos, eos);
        }
        let arch = meta
            .get_str("general.architecture")
            .and_then(crate::arch::Architecture::by_name);
        let name = arch.and_then(|a| a.chat_format).unwrap_or("chatml");
        Ok(ChatTemplate::builtin(name)?.with_special_tokens(bos, eos))
    }

    /// Whether the template is the file's own or a built-in format (and which).
    pub fn origin(&self) -> &TemplateOrigin {
        &self.origin
    }

    /// The origin in words, for logs and model info.
    pub fn describe_origin(&self) -> String {
        match &self.origin {
            TemplateOrigin::File => "the model's own chat template".to_string(),
            TemplateOrigin::Builtin(name) => {
                format!("the built-in `{name}` turn format (the file has no chat template)")
            }
        }
    }

    /// One of [`BUILTIN_TEMPLATES`], with its model family's BOS/EOS texts (change them with
    /// [`ChatTemplate::with_special_tokens`]).
    pub fn builtin(name: &str) -> Result<Self> {
        let (source, bos, eos) = match name {
            "chatml" => (CHATML, "", "<|im_end|>"),
            "llama2" => (LLAMA2, "<s>", "</s>"),
            "llama3" => (LLAMA3, "<|begin_of_text|>", "<|eot_id|>"),
            "gemma" => (GEMMA, "<bos>", "<end_of_turn>"),
            "phi3" => (PHI3, "", "<|end|>"),
            other => {
                return Err(Error::ChatTemplate(format!(
                    "no built-in template `{other}` (there are: {})",
                    BUILTIN_TEMPLATES.join(", ")
                )))
            }
        };
        let name = BUILTIN_TEMPLATES.iter().find(|n| **n == name).copied();
        let mut template = ChatTemplate::new(source, bos, eos)?;
        template.origin = TemplateOrigin::Builtin(name.unwrap_or("chatml"));
        Ok(template)
    }

    pub fn with_special_tokens(
        mut self,
        bos_token: impl Into<String>,
        eos_token: impl Into<String>,
    ) -> Self {
        self.bos_token = bos_token.into();
        self.eos_token = eos_token.into();
        self
    }

    /// Fixes the time `strftime_now` reports (UTC). Needed in the browser, where there is no
    /// system clock to read: without it, templates see `strftime_now` undefined and use their
    /// own fallback date, as Llama 3.1's does.
    pub fn with_now(mut self, unix_seconds: i64) -> Self {
        self.now_unix = Some(unix_seconds);
        self
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// The prompt text for `messages`; with `add_generation_prompt` it ends where the
    /// assistant's answer begins.
    ///
    /// The template comes from a downloaded file, so it runs with limits (`TEMPLATE_FUEL`,
    /// `TEMPLATE_RECURSION`, `TEMPLATE_OUTPUT`): one that loops or writes without end is a
    /// `CHAT_TEMPLATE_ERROR`, not a hung page.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        self.render_with_tools(messages, None, add_generation_prompt)
    }

    /// [`ChatTemplate::render`] with the template's `tools` variable set (OpenAI's tool list, as
    /// Hugging Face passes it); `None` leaves it undefined, as for a request without tools.
    pub fn render_with_tools(
        &self,
        messages: &[Message],
        tools: Option<&[Tool]>,
        add_generation_prompt: bool,
    ) -> Result<String> {
        let messages: Vec<serde_json::Value> = messages.iter().map(Message::for_template).collect();
        let env = self.environment();
        let template = env
            .template_from_named_str("chat_template", &self.source)
            .map_err(template_error)?;
        let mut out = BoundedText::default();
        template
            .render_captured_to(
                context! {
                    messages => messages,
                    tools => tools,
                    add_generation_prompt => add_generation_prompt,
                    bos_token => &self.bos_token,
                    eos_token => &self.eos_token,
                },
                &mut out,
            )
            .map(drop)
            .map_err(|e| match out.overflowed {
                true => Error::ChatTemplate(format!(
                    "the template wrote more than {TEMPLATE_OUTPUT} bytes"
                )),
                false => template_error(e),
            })?;
        String::from_utf8(out.bytes)
            .map_err(|_| Error::ChatTemplate("the template wrote invalid UTF-8".into()))
    }

    /// An environment that behaves like Hugging Face's for chat templates.
    fn environment(&self) -> Environment<'static> {
        let mut env = Environment::new();
        env.set_fuel(Some(TEMPLATE_FUEL));
        env.set_recursion_limit(TEMPLATE_RECURSION);
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_filter("tojson", tojson);
        if let Some(now) = self.now_unix.or_else(system_now) {
            env.add_function("strftime_now", move |format: &str| strftime(now, format));
        }
        env
    }
}

/// Template instructions one render may run. Real templates use far fewer: a 200-message
/// conversation through Qwen2.5's tool-calling template takes about 10^5. A template that loops
/// runs out within about a second natively.
const TEMPLATE_FUEL: u64 = 10_000_000;
/// Nesting of macros, includes and blocks (minijinja's default is 500; chat templates nest a
/// few levels).
const TEMPLATE_RECURSION: usize = 64;
/// The most prompt text a render may write: 4 MiB, far more than any context holds (a
/// 128k-token context is about 0.5 MiB of text).
const TEMPLATE_OUTPUT: usize = 4 << 20;

/// A render's output, refusing to grow past `TEMPLATE_OUTPUT` bytes.
#[derive(Default)]
struct BoundedText {
    bytes: Vec<u8>,
    overflowed: bool,
}

impl std::io::Write for BoundedText {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len() + buf.len() > TEMPLATE_OUTPUT {
            self.overflowed = true;
            return Err(std::io::Error::other("template output limit"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Jinja2's `tojson` as Hugging Face runs it (`json.dumps(x, ensure_ascii=False)`): `", "` and
/// `": "` separators, or `indent` spaces per level; not minijinja's HTML-safe compact form, which
/// would show the model `\u003c` where it was trained on `<`.
fn tojson(
    value: minijinja::Value,
    indent: Option<usize>,
    kwargs: minijinja::value::Kwargs,
) -> std::result::Result<minijinja::Value, minijinja::Error> {
    let indent = kwargs.get::<Option<usize>>("indent")?.or(indent);
    // Accepted and ignored: the output is always UTF-8 in insertion order.
    let _: Option<bool> = kwargs.get("ensure_ascii")?;
    let _: Option<bool> = kwargs.get("sort_keys")?;
    kwargs.assert_all_used()?;
    let json = serde_json::to_value(&value)
        .map_err(|e| minijinja::Error::new(ErrorKind::InvalidOperation, e.to_string()))?;
    Ok(minijinja::Value::from_safe_string(python_json(
        &json, indent,
    )))
}

/// `value` as Python's `json.dumps` writes it (`ensure_ascii=False`, keys in order).
pub(crate) fn python_json(value: &serde_json::Value, indent: Option<usize>) -> String {
    fn newline(out: &mut String, indent: Option<usize>, level: usize) {
        if let Some(n) = indent {
            out.push('\n');
            out.push_str(&" ".repeat(n * level));
        }
    }
    fn write(out: &mut String, v: &serde_json::Value, indent: Option<usize>, level: usize) {
        let comma = if indent.is_some() { "," } else { ", " };
        match v {
            serde_json::Value::Array(items) if !items.is_empty() => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    out.push_str(if i > 0 { comma } else { "" });
                    newline(out, indent, level + 1);
                    write(out, item, indent, level + 1);
                }
                newline(out, indent, level);
                out.push(']');
            }
            serde_json::Value::Object(map) if !map.is_empty() => {
                out.push('{');
                for (i, (key, item)) in map.iter().enumerate() {
                    out.push_str(if i > 0 { comma } else { "" });
                    newline(out, indent, level + 1);
                    out.push_str(&serde_json::Value::from(key.as_str()).to_string());
                    out.push_str(": ");
                    write(out, item, indent, level + 1);
                }
                newline(out, indent, level);
                out.push('}');
            }
            scalar => out.push_str(&scalar.to_string()),
        }
    }
    let mut out = String::new();
    write(&mut out, value, indent, 0);
    out
}

fn raise_exception(message: String) -> std::result::Result<String, minijinja::Error> {
    Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
}

/// minijinja's message (with template line) and whatever caused it.
fn template_error(e: minijinja::Error) -> Error {
    let mut message = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    Error::ChatTemplate(message)
}

#[cfg(not(target_arch = "wasm32"))]
fn system_now() -> Option<i64> {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    i64::try_from(since_epoch.as_secs()).ok()
}

/// wasm32-unknown-unknown has no clock (`SystemTime::now` panics there).
#[cfg(target_arch = "wasm32")]
fn system_now() -> Option<i64> {
    None
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// Python's `strftime` for the directives chat templates use, in UTC.
fn strftime(unix: i64, format: &str) -> std::result::Result<String, minijinja::Error> {
    let days = unix.div_euclid(86_400);
    let seconds = unix.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    // 1970-01-01 was a Thursday.
    let weekday = WEEKDAYS[(days + 4).rem_euclid(7) as usize];
    let month_name = MONTHS[month as usize - 1];
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let field = match chars.next() {
            Some('Y') => year.to_string(),
            Some('y') => format!("{:02}", year.rem_euclid(100)),
            Some('m') => format!("{month:02}"),
            Some('d') => format!("{day:02}"),
            Some('e') => format!("{day:2}"),
            Some('B') => month_name.to_string(),
            Some('b') => month_name[..3].to_string(),
            Some('A') => weekday.to_string(),
            Some('a') => weekday[..3].to_string(),
            Some('H') => format!("{:02}", seconds / 3600),
            Some('M') => format!("{:02}", seconds / 60 % 60),
            Some('S') => format!("{:02}", seconds % 60),
            Some('%') => "%".to_string(),
            other => {
                return Err(minijinja::Error::new(
                    ErrorKind::InvalidOperation,
                    format!(
                        "strftime_now: directive %{} is not supported",
                        other.unwrap_or(' ')
                    ),
                ))
            }
        };
        out.push_str(&field);
    }
    Ok(out)
}

/// (year, month 1..=12, day 1..=31) of a day count since 1970-01-01, proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153; // March = 0
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strftime_formats_known_dates() {
        assert_eq!(strftime(0, "%d %b %Y").unwrap(), "01 Jan 1970");
        // 2024-07-26 13:05:09 UTC, a Friday.
        assert_eq!(
            strftime(1_721_999_109, "%A %a %e %B %m %y %H:%M:%S %%").unwrap(),
            "Friday Fri 26 July 07 24 13:05:09 %"
        );
        // 2000-02-29 and the day before 1970.
        assert_eq!(strftime(951_782_400, "%Y-%m-%d").unwrap(), "2000-02-29");
        assert_eq!(strftime(-1, "%Y-%m-%d %H").unwrap(), "1969-12-31 23");
        assert!(strftime(0, "%Q").is_err());
    }
}

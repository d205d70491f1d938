//! Constrained decoding: output held to a JSON schema, a Lark grammar or a regular expression,
//! by `llguidance` (the library llama.cpp's `--llguidance` uses). Before each sampled token the
//! grammar gives the set of tokens that may come next, as a bit mask over the vocabulary; the
//! sampler sees only those (on the GPU the mask is uploaded and applied there, so no logits are
//! read back); the sampled token is then fed to the grammar.
//!
//! `Grammars` is built once per model (the vocabulary's token bytes in a trie, the expensive
//! part) and compiles each request's format into a `Constraint`, the per-generation state.

use std::sync::Arc;

use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{ApproximateTokEnv, TokRxInfo, TokTrie};
use llguidance::{Matcher, ParserFactory};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::tokenizer::Tokenizer;

/// What the output must be, in OpenAI's `response_format` shape plus two grammar forms:
/// `{"type": "text"}`, `{"type": "json_object"}`,
/// `{"type": "json_schema", "json_schema": {"name", "schema", "strict"}}`,
/// `{"type": "grammar", "grammar": "<Lark>"}`, `{"type": "regex", "regex": "..."}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ResponseFormat {
    /// Anything (no constraint).
    #[default]
    Text,
    /// Any JSON object.
    JsonObject,
    /// JSON valid under a JSON Schema.
    JsonSchema { json_schema: JsonSchema },
    /// Text of a grammar in llguidance's Lark syntax (a superset of the common EBNF forms).
    Grammar { grammar: String },
    /// Text matching a regular expression (whole output).
    Regex { regex: String },
}

/// OpenAI's `json_schema` object. `strict` is accepted for compatibility: the output always
/// follows the schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonSchema {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    pub schema: Value,
    #[serde(default)]
    pub strict: Option<bool>,
}

impl ResponseFormat {
    pub fn is_text(&self) -> bool {
        matches!(self, ResponseFormat::Text)
    }

    /// The llguidance grammar, or `None` for free text. JSON is written with one space after
    /// `,` and `:` and no other whitespace (a schema's own `x-guidance` options win): small
    /// models allowed free whitespace can pad forever.
    fn grammar(&self) -> Option<TopLevelGrammar> {
        let json = |schema: &Value| {
            let mut schema = schema.clone();
            if let Some(object) = schema.as_object_mut() {
                object.entry("x-guidance").or_insert_with(json_layout);
            }
            TopLevelGrammar::from_json_schema(schema)
        };
        match self {
            ResponseFormat::Text => None,
            ResponseFormat::JsonObject => Some(json(&json!({"type": "object"}))),
            ResponseFormat::JsonSchema { json_schema } => Some(json(&json_schema.schema)),
            ResponseFormat::Grammar { grammar } => {
                Some(TopLevelGrammar::from_lark(grammar.clone()))
            }
            ResponseFormat::Regex { regex } => Some(TopLevelGrammar::from_regex(regex)),
        }
    }
}

/// How constrained JSON is written (llguidance's `x-guidance` options): one space after `,`
/// and `:`, no other whitespace. Shared by response formats and tool calls.
pub(crate) fn json_layout() -> Value {
    json!({"whitespace_flexible": false, "item_separator": ", ", "key_separator": ": "})
}

/// The vocabulary as the grammar library walks it, for one model.
pub struct Grammars {
    factory: Arc<ParserFactory>,
    /// Ids that end generation: allowed wherever the grammar allows its end.
    stop_ids: Vec<u32>,
}

impl Grammars {
    /// Build the token trie of `tokenizer` (tens of milliseconds for a 150k vocabulary).
    pub fn new(tokenizer: &Tokenizer) -> Result<Grammars> {
        let stop_ids = tokenizer.stop_ids().to_vec();
        let eos = tokenizer
            .eos_id()
            .or_else(|| stop_ids.first().copied())
            .ok_or_else(|| {
                Error::InvalidArgument(
                    "constrained output needs a model with an end-of-generation token".into(),
                )
            })?;
        let words = tokenizer.token_bytes();
        let info = TokRxInfo {
            tok_end_of_turn: stop_ids.iter().copied().find(|&id| id != eos),
            tok_bos: tokenizer.bos_id(),
            ..TokRxInfo::new(words.len() as u32, eos)
        };
        let trie = TokTrie::from(&info, &words);
        let env: llguidance::toktrie::TokEnv = Arc::new(ApproximateTokEnv::new(trie));
        let mut factory = ParserFactory::new_simple(&env).map_err(grammar_error)?;
        factory.quiet();
        Ok(Grammars {
            factory: Arc::new(factory),
            stop_ids,
        })
    }

    /// The state for one generation in `format`, or `None` for free text. A format the library
    /// cannot compile (a malformed schema or grammar) is `INVALID_ARGUMENT` with its message.
    pub fn constraint(&self, format: &ResponseFormat) -> Result<Option<Constraint>> {
        let Some(grammar) = format.grammar() else {
            return Ok(None);
        };
        let parser = self.factory.create_parser(grammar).map_err(grammar_error)?;
        Ok(Some(Constraint {
            matcher: Matcher::new(Ok(parser)),
            stop_ids: self.stop_ids.clone(),
            mask_seconds: 0.0,
        }))
    }
}

/// One generation's grammar state.
pub struct Constraint {
    matcher: Matcher,
    stop_ids: Vec<u32>,
    /// Time spent computing masks, for the stats.
    pub mask_seconds: f64,
}

impl Constraint {
    /// The tokens allowed next, one bit per id (bit `id % 32` of word `id / 32`) over the
    /// tokenizer's vocabulary; ids past it are never allowed. Where the grammar may end, every
    /// stop token is allowed.
    pub fn mask(&mut self) -> Result<Vec<u32>> {
        let start = web_time::Instant::now();
        let vob = self.matcher.compute_mask().map_err(grammar_error)?;
        let mut words = vob.as_slice().to_vec();
        let eos = self
            .matcher
            .tok_env()
            .map_err(grammar_error)?
            .tok_trie()
            .eos_token();
        if vob.is_allowed(eos) {
            for &id in &self.stop_ids {
                if let Some(w) = words.get_mut(id as usize / 32) {
                    *w |= 1 << (id % 32);
                }
            }
        }
        self.mask_seconds += start.elapsed().as_secs_f64();
        if words.iter().all(|&w| w == 0) {
            return Err(Error::InvalidArgument(
                "response format: the grammar allows no token here (is it satisfiable?)".into(),
            ));
        }
        Ok(words)
    }

    /// Feed the sampled token (not a stop token) to the grammar.
    pub fn accept(&mut self, id: u32) -> Result<()> {
        self.matcher.consume_token(id).map_err(grammar_error)
    }

    /// The grammar is complete and allows nothing more.
    pub fn is_finished(&self) -> bool {
        self.matcher.is_stopped()
    }
}

fn grammar_error(e: impl std::fmt::Display) -> Error {
    Error::InvalidArgument(format!("response format: {e}"))
}

/// Whether bit `id` of `mask` is set (ids past the mask are not).
pub fn allowed(mask: &[u32], id: usize) -> bool {
    mask.get(id / 32).is_some_and(|w| w >> (id % 32) & 1 == 1)
}

//! A GGUF file's `tokenizer.ggml.*` metadata read the way llama.cpp reads it, and turned into
//! a `tokenizers::Tokenizer`: byte-level BPE (`gpt2`), SentencePiece (`llama`) or
//! SentencePiece-style BPE (`gemma4`).

use std::collections::HashSet;

use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::byte_level::ByteLevel;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::normalizers::{Prepend, Replace, Sequence as NormalizerSequence};
use tokenizers::pre_tokenizers::sequence::Sequence as PreTokenizerSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, DecoderWrapper, NormalizerWrapper, PreTokenizerWrapper};
use tokenizers::{SplitDelimiterBehavior, Tokenizer as HfTokenizer};

use super::pre::{self, PreTokenizer};
use super::tokenizer_error;
use crate::error::{Error, Result};
use crate::gguf::{Metadata, Value};

/// SentencePiece's stand-in for a space.
pub(super) const SPM_SPACE: &str = "\u{2581}";

/// Texts llama.cpp treats as end of generation; it makes each a control token whatever its
/// stored type (converters have written some as user-defined or normal).
pub(super) const END_OF_GENERATION: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];

/// Fill-in-the-middle markers: llama.cpp makes them control tokens too. The pad, repository
/// and file-separator ones also end generation.
const FIM_MARKERS: &[&str] = &[
    "<|fim_prefix|>",
    "<fim-prefix>",
    "<fim_prefix>",
    "<｜fim▁begin｜>",
    "<PRE>",
    "▁<PRE>",
    "<|code_prefix|>",
    "<|prefix|>",
    "<|fim_suffix|>",
    "<fim-suffix>",
    "<fim_suffix>",
    "<｜fim▁hole｜>",
    "<SUF>",
    "▁<SUF>",
    "<|code_suffix|>",
    "<|suffix|>",
    "<|fim_middle|>",
    "<fim-middle>",
    "<fim_middle>",
    "<｜fim▁end｜>",
    "<MID>",
    "▁<MID>",
    "<|code_middle|>",
    "<|middle|>",
];
const FIM_ENDING: &[&str] = &[
    "<|fim_pad|>",
    "<fim-pad>",
    "<fim_pad>",
    "<PAD>",
    "[PAD]",
    "<|fim_repo|>",
    "<|repo_name|>",
    "<fim-repo>",
    "<REPO>",
    "<reponame>",
    "<|file_sep|>",
];

/// gpt-oss chat markers that llama.cpp always renders, so it makes them user-defined.
const ALWAYS_MATCHED: &[&str] = &["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"];

/// llama.cpp's token types (`tokenizer.ggml.token_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TokenKind {
    Normal,
    Unknown,
    /// BOS, EOS, chat markers: one token in text only when special text is parsed.
    Control,
    /// Added vocabulary: one token wherever its text appears.
    UserDefined,
    Unused,
    /// `<0xXX>`: the byte fallback of SentencePiece vocabularies.
    Byte,
    Undefined,
}

impl TokenKind {
    fn from_gguf(value: i64) -> Self {
        match value {
            1 => TokenKind::Normal,
            2 => TokenKind::Unknown,
            3 => TokenKind::Control,
            4 => TokenKind::UserDefined,
            5 => TokenKind::Unused,
            6 => TokenKind::Byte,
            _ => TokenKind::Undefined,
        }
    }
}

/// Which algorithm a file's `tokenizer.ggml.model` asks for.
#[derive(Debug, Clone, Copy)]
pub(super) enum Model {
    /// SentencePiece (`llama`).
    SentencePiece,
    /// BPE with merges, split first by the pre-tokenizer (`gpt2`, `gemma4`).
    Bpe(PreTokenizer),
}

impl Model {
    pub(super) fn from_metadata(meta: &Metadata) -> Result<Self> {
        let model = meta
            .get_str("tokenizer.ggml.model")
            .ok_or_else(|| Error::Tokenizer("metadata `tokenizer.ggml.model` is missing".into()))?;
        let unsupported = |kind: &str| {
            Err(Error::Tokenizer(format!(
                "tokenizer model `{model}` ({kind}) is not supported; `gpt2` (byte-level BPE), \
                 `llama` (SentencePiece) and `gemma4` are"
            )))
        };
        match model {
            "llama" => Ok(Model::SentencePiece),
            "gemma4" => Ok(Model::Bpe(pre::GEMMA4)),
            "gpt2" => match meta.get_str("tokenizer.ggml.pre") {
                None => Ok(Model::Bpe(pre::DEFAULT)),
                Some(name) => pre::lookup(name).map(Model::Bpe).ok_or_else(|| {
                    Error::Tokenizer(format!(
                        "pre-tokenizer `{name}` (tokenizer.ggml.pre) is not one llama.cpp knows, so \
                         how this vocabulary splits text is unknown"
                    ))
                }),
            },
            "bert" => unsupported("WordPiece"),
            "t5" => unsupported("Unigram"),
            "rwkv" => unsupported("RWKV's greedy trie"),
            "plamo2" => unsupported("PLaMo-2's Aho-Corasick"),
            "none" | "no_vocab" => unsupported("no vocabulary"),
            _ => unsupported("unknown"),
        }
    }

    pub(super) fn default_add_bos(self) -> bool {
        match self {
            Model::SentencePiece => true,
            Model::Bpe(pre) => pre.add_bos,
        }
    }
}

/// The vocabulary arrays of a GGUF file, checked against each other, with llama.cpp's token
/// types.
pub(super) struct GgufVocab {
    pub tokens: Vec<String>,
    pub kinds: Vec<TokenKind>,
    /// SentencePiece scores; byte-level vocabularies have none.
    pub scores: Option<Vec<f64>>,
}

impl GgufVocab {
    pub(super) fn read(meta: &Metadata) -> Result<Self> {
        let mut tokens = string_array(meta, "tokenizer.ggml.tokens")?.ok_or_else(|| {
            Error::Tokenizer("metadata `tokenizer.ggml.tokens` is missing".into())
        })?;
        let n = tokens.len();
        // An empty token cannot be matched or merged; llama.cpp gives it a placeholder text.
        for (id, token) in tokens.iter_mut().enumerate() {
            if token.is_empty() {
                *token = format!("[EMPTY_{id}]");
            }
        }
        let distinct: HashSet<&str> = tokens.iter().map(String::as_str).collect();
        if distinct.len() != n {
            // llama.cpp refuses these too: an id could not be found from its text.
            return Err(Error::Tokenizer(format!(
                "{} of the {n} tokens are stored twice",
                n - distinct.len()
            )));
        }
        // Longer arrays are accepted as llama.cpp accepts them; the extra entries are unused.
        let at_least = |what: &str, len: usize| {
            if len < n {
                Err(Error::Tokenizer(format!(
                    "{len} token {what} for {n} tokens"
                )))
            } else {
                Ok(())
            }
        };
        let kinds = match number_array(meta, "tokenizer.ggml.token_type", Value::as_i64)? {
            Some(types) => {
                at_least("types", types.len())?;
                types[..n]
                    .iter()
                    .map(|&t| TokenKind::from_gguf(t))
                    .collect()
            }
            None => vec![TokenKind::Normal; n],
        };
        let scores = match number_array(meta, "tokenizer.ggml.scores", Value::as_f64)? {
            Some(mut scores) => {
                at_least("scores", scores.len())?;
                scores.truncate(n);
                Some(scores)
            }
            None => None,
        };
        let mut vocab = GgufVocab {
            tokens,
            kinds,
            scores,
        };
        vocab.apply_name_rules();
        Ok(vocab)
    }

    /// llama.cpp's corrections by token text, which decide what text matches a whole token.
    fn apply_name_rules(&mut self) {
        for (token, kind) in self.tokens.iter().zip(self.kinds.iter_mut()) {
            let t = token.as_str();
            if END_OF_GENERATION.contains(&t) || FIM_MARKERS.contains(&t) || FIM_ENDING.contains(&t)
            {
                *kind = TokenKind::Control;
            }
            if ALWAYS_MATCHED.contains(&t) {
                *kind = TokenKind::UserDefined;
            }
        }
        let has = |text: &str| self.tokens.iter().any(|t| t == text);
        // gpt-oss (harmony) and Solar Open end turns with other tokens; their `<|end|>` is text.
        let harmony =
            (has("<|return|>") && has("<|call|>")) || (has("<|calls|>") && has("<|flush|>"));
        // Gemma 4 and PLaMo 2 hold `</s>` as ordinary text.
        let plain_end_tag = has("<|tool_response>") || has("<|plamo:eos|>");
        for (token, kind) in self.tokens.iter().zip(self.kinds.iter_mut()) {
            if harmony && token == "<|end|>" {
                *kind = TokenKind::UserDefined;
            }
            if plain_end_tag && token == "</s>" {
                *kind = TokenKind::Normal;
            }
        }
    }

    pub(super) fn len(&self) -> usize {
        self.tokens.len()
    }

    /// The ids llama.cpp stops generation on (besides EOS, EOT and EOM, which come from
    /// metadata): control tokens named as turn or file ends.
    pub(super) fn end_of_generation_ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.tokens
            .iter()
            .zip(&self.kinds)
            .enumerate()
            .filter(|(_, (t, &kind))| {
                kind == TokenKind::Control
                    && (END_OF_GENERATION.contains(&t.as_str()) || FIM_ENDING.contains(&t.as_str()))
            })
            .map(|(id, _)| id as u32)
    }

    /// Token text to id (texts are distinct, checked in `read`).
    fn vocab_map(&self) -> Vocab {
        self.tokens
            .iter()
            .enumerate()
            .map(|(id, token)| (token.clone(), id as u32))
            .collect()
    }

    /// An id from metadata; like llama.cpp, one outside the vocabulary is ignored.
    pub(super) fn special_id(&self, meta: &Metadata, key: &str) -> Option<u32> {
        meta.get_u64(key)
            .filter(|&id| id < self.tokens.len() as u64)
            .map(|id| id as u32)
    }

    /// The unknown token's text: from its metadata id, else the first token typed unknown.
    fn unknown_token(&self, meta: &Metadata) -> Option<String> {
        let id = self
            .special_id(meta, "tokenizer.ggml.unknown_token_id")
            .map(|id| id as usize)
            .or_else(|| self.kinds.iter().position(|&k| k == TokenKind::Unknown))?;
        Some(self.tokens[id].clone())
    }

    /// Registers control and unknown tokens as special added tokens (recognised only when
    /// parsing special text, skipped when decoding without special tokens) and user-defined
    /// tokens as plain added tokens (always recognised), all matched in the raw text, as
    /// llama.cpp does. `rstrip` eats the whitespace after each (llama.cpp's rule for Phi-3).
    /// Returns the control ids.
    pub(super) fn register_added_tokens(
        &self,
        inner: &mut HfTokenizer,
        rstrip: impl Fn(&str) -> bool,
    ) -> Result<HashSet<u32>> {
        let added = self
            .tokens
            .iter()
            .zip(&self.kinds)
            .filter_map(|(text, &kind)| {
                let special = match kind {
                    TokenKind::Control | TokenKind::Unknown => true,
                    TokenKind::UserDefined => false,
                    _ => return None,
                };
                Some(
                    AddedToken::from(text.clone(), special)
                        .normalized(false)
                        .rstrip(rstrip(text)),
                )
            })
            .collect::<Vec<_>>();
        inner.add_tokens(added).map_err(tokenizer_error)?;
        Ok(self
            .kinds
            .iter()
            .enumerate()
            .filter(|&(_, &kind)| kind == TokenKind::Control)
            .map(|(id, _)| id as u32)
            .collect())
    }

    /// Builds the tokenizers object for `model`.
    pub(super) fn build(&self, meta: &Metadata, model: Model) -> Result<HfTokenizer> {
        match model {
            Model::SentencePiece => self.sentencepiece_bpe(meta),
            Model::Bpe(pre) if pre.byte_level => self.byte_level_bpe(meta, pre),
            Model::Bpe(pre) => self.utf8_bpe(meta, pre),
        }
    }

    /// GPT-2 style: the stored tokens are already in the byte-level alphabet (`Ġ` for a space),
    /// the merges are "left right" strings in rank order.
    fn byte_level_bpe(&self, meta: &Metadata, pre: PreTokenizer) -> Result<HfTokenizer> {
        let mut tokenizer = self.merges_bpe(meta, pre, false)?;
        let mut steps = split_steps(pre)?;
        // The regexes did the splitting; this only maps bytes to the byte-level alphabet.
        steps.push(PreTokenizerWrapper::ByteLevel(ByteLevel::new(
            false, false, false,
        )));
        tokenizer.with_pre_tokenizer(Some(PreTokenizerSequence::new(steps)));
        tokenizer.with_decoder(Some(ByteLevel::default()));
        Ok(tokenizer)
    }

    /// SentencePiece-style BPE with merges (Gemma 4): tokens are UTF-8 with `▁` for a space,
    /// characters missing from the vocabulary fall back to `<0xXX>` byte tokens.
    fn utf8_bpe(&self, meta: &Metadata, pre: PreTokenizer) -> Result<HfTokenizer> {
        let mut tokenizer = self.merges_bpe(meta, pre, true)?;
        if pre.escape_spaces {
            tokenizer
                .with_normalizer(Some(spm_replace(" ", SPM_SPACE)?))
                .map_err(tokenizer_error)?;
        }
        tokenizer.with_pre_tokenizer(Some(PreTokenizerSequence::new(split_steps(pre)?)));
        tokenizer.with_decoder(Some(DecoderSequence::new(vec![
            DecoderWrapper::Replace(spm_replace(SPM_SPACE, " ")?),
            DecoderWrapper::ByteFallback(ByteFallback::new()),
            DecoderWrapper::Fuse(Fuse::new()),
        ])));
        Ok(tokenizer)
    }

    fn merges_bpe(
        &self,
        meta: &Metadata,
        pre: PreTokenizer,
        byte_fallback: bool,
    ) -> Result<HfTokenizer> {
        let map = self.vocab_map();
        let merges = string_array(meta, "tokenizer.ggml.merges")?
            .ok_or_else(|| Error::Tokenizer("metadata `tokenizer.ggml.merges` is missing".into()))?
            .iter()
            .map(|merge| parse_merge(merge, &map))
            .collect::<Result<Vec<_>>>()?;
        let model = BPE::builder()
            .vocab_and_merges(map, merges)
            .ignore_merges(pre.ignore_merges)
            .byte_fallback(byte_fallback)
            .build()
            .map_err(tokenizer_error)?;
        Ok(HfTokenizer::new(model))
    }

    /// SentencePiece as BPE, as Hugging Face converts Llama's tokenizer: spaces become `▁`, a
    /// `▁` is put in front of the text (`add_space_prefix`, default true) and of every piece of
    /// text after a special token (llama.cpp does the same), characters missing from the
    /// vocabulary fall back to `<0xXX>` byte tokens, and decoding undoes all of that.
    fn sentencepiece_bpe(&self, meta: &Metadata) -> Result<HfTokenizer> {
        let add_space_prefix = meta
            .get_bool("tokenizer.ggml.add_space_prefix")
            .unwrap_or(true);
        let map = self.vocab_map();
        let merges = self.merges_from_scores(&map);
        let mut builder = BPE::builder()
            .vocab_and_merges(map, merges)
            .byte_fallback(true)
            .fuse_unk(true);
        if let Some(unk) = self.unknown_token(meta) {
            builder = builder.unk_token(unk);
        }
        let mut tokenizer = HfTokenizer::new(builder.build().map_err(tokenizer_error)?);

        let mut normalizers = Vec::new();
        if add_space_prefix {
            normalizers.push(NormalizerWrapper::Prepend(Prepend::new(SPM_SPACE.into())));
        }
        normalizers.push(NormalizerWrapper::Replace(spm_replace(" ", SPM_SPACE)?));
        tokenizer
            .with_normalizer(Some(NormalizerSequence::new(normalizers)))
            .map_err(tokenizer_error)?;

        let mut decoders = vec![
            DecoderWrapper::Replace(spm_replace(SPM_SPACE, " ")?),
            DecoderWrapper::ByteFallback(ByteFallback::new()),
            DecoderWrapper::Fuse(Fuse::new()),
        ];
        if add_space_prefix {
            // The space the encoder put in front is not part of the text.
            decoders.push(DecoderWrapper::Strip(Strip::new(' ', 1, 0)));
        }
        tokenizer.with_decoder(Some(DecoderSequence::new(decoders)));
        Ok(tokenizer)
    }

    /// BPE merges that reproduce SentencePiece's choices: every way to split a piece into two
    /// pieces is a merge, ranked by the score of the piece it makes (higher first). Ties keep
    /// piece order, then the halves' ids, as Hugging Face's `SentencePieceExtractor` orders
    /// them (without scores, lower ids rank first).
    fn merges_from_scores(&self, map: &Vocab) -> Vec<(String, String)> {
        let score = |id: usize| match &self.scores {
            Some(scores) => scores[id],
            None => -(id as f64),
        };
        let mut ranked: Vec<(f64, usize, u32, u32, &str, &str)> = Vec::new();
        for (id, piece) in self.tokens.iter().enumerate() {
            for (cut, _) in piece.char_indices().skip(1) {
                let (left, right) = piece.split_at(cut);
                if let (Some(&l), Some(&r)) = (map.get(left), map.get(right)) {
                    ranked.push((score(id), id, l, r, left, right));
                }
            }
        }
        ranked.sort_by(|a, b| {
            b.0.total_cmp(&a.0)
                .then(a.1.cmp(&b.1))
                .then(a.2.cmp(&b.2))
                .then(a.3.cmp(&b.3))
        });
        ranked
            .into_iter()
            .map(|(.., left, right)| (left.to_owned(), right.to_owned()))
            .collect()
    }
}

/// One `Split` per regex of the pre-tokenizer, in order.
fn split_steps(pre: PreTokenizer) -> Result<Vec<PreTokenizerWrapper>> {
    pre.regexes
        .iter()
        .map(|re| {
            Split::new(
                SplitPattern::Regex((*re).to_owned()),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .map(PreTokenizerWrapper::Split)
            .map_err(tokenizer_error)
        })
        .collect()
}

/// One GGUF merge, "left right", cut at the first space after the first byte as llama.cpp
/// cuts it. Both halves and their join must be tokens: the tokenizers builder assumes so (and
/// can panic on a join longer than every token).
fn parse_merge(merge: &str, vocab: &Vocab) -> Result<(String, String)> {
    let bad = || {
        Error::Tokenizer(format!(
            "merge {merge:?} is not two tokens of the vocabulary"
        ))
    };
    // A space is one byte and never inside a multi-byte character, so this cut is on a
    // character boundary.
    let cut = merge
        .bytes()
        .skip(1)
        .position(|b| b == b' ')
        .ok_or_else(bad)?
        + 1;
    let (left, right) = (&merge[..cut], &merge[cut + 1..]);
    let joined = [left, right].concat();
    if !(vocab.contains_key(left) && vocab.contains_key(right) && vocab.contains_key(&joined)) {
        return Err(bad());
    }
    Ok((left.to_owned(), right.to_owned()))
}

fn spm_replace(from: &str, to: &str) -> Result<Replace> {
    Replace::new(from, to).map_err(tokenizer_error)
}

fn string_array(meta: &Metadata, key: &str) -> Result<Option<Vec<String>>> {
    let Some(values) = meta.get_array(key) else {
        return Ok(None);
    };
    values
        .iter()
        .map(|v| v.as_str().map(str::to_owned))
        .collect::<Option<Vec<_>>>()
        .map(Some)
        .ok_or_else(|| Error::Tokenizer(format!("metadata `{key}` should be an array of strings")))
}

fn number_array<T>(
    meta: &Metadata,
    key: &str,
    convert: impl Fn(&Value) -> Option<T>,
) -> Result<Option<Vec<T>>> {
    let Some(values) = meta.get_array(key) else {
        return Ok(None);
    };
    values
        .iter()
        .map(convert)
        .collect::<Option<Vec<_>>>()
        .map(Some)
        .ok_or_else(|| Error::Tokenizer(format!("metadata `{key}` should be an array of numbers")))
}

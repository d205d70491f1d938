//! Text to token ids and back.
//!
//! A [`Tokenizer`] wraps a Hugging Face `tokenizers::Tokenizer`, built either from a
//! `tokenizer.json` or, for GGUF files, in code from the `tokenizer.ggml.*` metadata, the way
//! llama.cpp reads that metadata:
//! - `gpt2`: byte-level BPE over the stored vocabulary and merges, split first by the regexes
//!   llama.cpp uses for the file's `tokenizer.ggml.pre` name;
//! - `llama`: SentencePiece, run as BPE whose merges are derived from the piece scores, with
//!   `<0xXX>` byte fallback and `▁` standing for a space.
//!
//! Control, unknown and user-defined tokens become added tokens, so their text in a prompt is
//! one token. [`StreamDecoder`] turns ids into text one at a time without ever splitting a
//! UTF-8 character. Nothing here reads files: callers pass metadata or bytes (this runs in wasm).

use std::collections::HashSet;
use std::sync::{Mutex, MutexGuard};

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

use crate::error::{Error, Result};
use crate::gguf::{Metadata, Value};

/// SentencePiece's stand-in for a space.
const SPM_SPACE: &str = "\u{2581}";

/// Control tokens that end a turn in the chat formats we know; llama.cpp stops on these too.
const STOP_TOKEN_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|eom_id|>",
    "<|im_end|>",
    "<|end_of_text|>",
    "</s>",
    "<|endoftext|>",
    "<end_of_turn>",
];

/// The special ids and flags a `tokenizer.json` does not carry (a Hugging Face repository keeps
/// them in `tokenizer_config.json`), so the caller states them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpecialTokens {
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
    /// Prepend BOS when `encode` is asked to add special tokens.
    pub add_bos: bool,
    /// Append EOS when `encode` is asked to add special tokens.
    pub add_eos: bool,
}

/// A vocabulary with its encode/decode rules and the model's special tokens.
pub struct Tokenizer {
    /// Behind a mutex because "parse special tokens or not" is a flag on the tokenizers object
    /// that `encode` sets per call; one copy of a 128k-token vocabulary is enough in wasm.
    inner: Mutex<HfTokenizer>,
    special: SpecialTokens,
    control: HashSet<u32>,
    stop_ids: Vec<u32>,
    vocab_size: usize,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.vocab_size)
            .field("special", &self.special)
            .field("stop_ids", &self.stop_ids)
            .finish_non_exhaustive()
    }
}

impl Tokenizer {
    /// Builds the tokenizer described by a GGUF file's `tokenizer.ggml.*` metadata.
    pub fn from_gguf(meta: &Metadata) -> Result<Self> {
        let vocab = GgufVocab::read(meta)?;
        let model = meta
            .get_str("tokenizer.ggml.model")
            .ok_or_else(|| Error::Tokenizer("metadata `tokenizer.ggml.model` is missing".into()))?;
        let (mut inner, default_add_bos) = match model {
            "gpt2" => {
                let pre = PreTokenizerKind::from_name(
                    meta.get_str("tokenizer.ggml.pre").unwrap_or("default"),
                );
                (byte_level_bpe(&vocab, meta, pre)?, pre.adds_bos())
            }
            "llama" => (sentencepiece_bpe(&vocab, meta)?, true),
            other => {
                return Err(Error::Tokenizer(format!(
                    "tokenizer model `{other}` is not supported (`gpt2` and `llama` are)"
                )))
            }
        };
        let special = SpecialTokens {
            bos_id: vocab.special_id(meta, "tokenizer.ggml.bos_token_id"),
            eos_id: vocab.special_id(meta, "tokenizer.ggml.eos_token_id"),
            add_bos: meta
                .get_bool("tokenizer.ggml.add_bos_token")
                .unwrap_or(default_add_bos),
            add_eos: meta
                .get_bool("tokenizer.ggml.add_eos_token")
                .unwrap_or(false),
        };
        let control = vocab.register_added_tokens(&mut inner)?;
        let extra_stops = ["tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"]
            .iter()
            .filter_map(|key| vocab.special_id(meta, key));
        Self::assemble(inner, special, control, extra_stops)
    }

    /// Reads a Hugging Face `tokenizer.json`. Its added tokens marked `special` count as control
    /// tokens.
    pub fn from_json_bytes(bytes: &[u8], special: SpecialTokens) -> Result<Self> {
        let inner = HfTokenizer::from_bytes(bytes).map_err(tokenizer_error)?;
        let control = inner
            .get_added_tokens_decoder()
            .iter()
            .filter(|(_, token)| token.special)
            .map(|(&id, _)| id)
            .collect();
        Self::assemble(inner, special, control, std::iter::empty())
    }

    fn assemble(
        inner: HfTokenizer,
        special: SpecialTokens,
        control: HashSet<u32>,
        extra_stops: impl Iterator<Item = u32>,
    ) -> Result<Self> {
        let vocab_size = inner.get_vocab_size(true);
        for (name, id) in [("BOS", special.bos_id), ("EOS", special.eos_id)] {
            if let Some(id) = id.filter(|&id| id as usize >= vocab_size) {
                return Err(Error::Tokenizer(format!(
                    "{name} id {id} is outside the vocabulary of {vocab_size} tokens"
                )));
            }
        }
        if special.add_bos && special.bos_id.is_none() {
            return Err(Error::Tokenizer("BOS is to be added but has no id".into()));
        }
        if special.add_eos && special.eos_id.is_none() {
            return Err(Error::Tokenizer("EOS is to be added but has no id".into()));
        }
        // Only control tokens: a byte-level vocabulary may hold "</s>" as ordinary HTML text.
        let named_stops = STOP_TOKEN_TEXTS
            .iter()
            .filter_map(|t| inner.token_to_id(t))
            .filter(|id| control.contains(id));
        let mut stop_ids: Vec<u32> = special
            .eos_id
            .into_iter()
            .chain(extra_stops)
            .chain(named_stops)
            .collect();
        stop_ids.sort_unstable();
        stop_ids.dedup();
        Ok(Tokenizer {
            inner: Mutex::new(inner),
            special,
            control,
            stop_ids,
            vocab_size,
        })
    }

    /// The wrapped tokenizer. A panic inside `tokenizers` while the lock was held leaves it
    /// poisoned but intact (nothing is half-updated between calls), so carry on with it.
    fn lock(&self) -> MutexGuard<'_, HfTokenizer> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Token ids for `text`. `add_special` adds BOS/EOS as the model asks (`add_bos`,
    /// `add_eos`); `parse_special` makes the text of control tokens (`<|im_start|>`) one token,
    /// otherwise it is tokenized like any other text, as user input should be.
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Result<Vec<u32>> {
        let encoding = {
            let mut inner = self.lock();
            inner.set_encode_special_tokens(!parse_special);
            inner.encode(text, false).map_err(tokenizer_error)?
        };
        let bos = self
            .special
            .bos_id
            .filter(|_| add_special && self.special.add_bos);
        let eos = self
            .special
            .eos_id
            .filter(|_| add_special && self.special.add_eos);
        Ok(bos
            .into_iter()
            .chain(encoding.get_ids().iter().copied())
            .chain(eos)
            .collect())
    }

    /// The text of `ids`. `skip_special` leaves out control tokens. Bytes that do not form
    /// UTF-8 come out as U+FFFD.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        if let Some(&bad) = ids.iter().find(|&&id| id as usize >= self.vocab_size) {
            return Err(Error::Tokenizer(format!(
                "token id {bad} is outside the vocabulary of {} tokens",
                self.vocab_size
            )));
        }
        self.lock()
            .decode(ids, skip_special)
            .map_err(tokenizer_error)
    }

    /// An incremental decoder for generated ids; see [`StreamDecoder`].
    pub fn stream_decoder(&self, skip_special: bool) -> StreamDecoder<'_> {
        StreamDecoder {
            tokenizer: self,
            skip_special,
            ids: Vec::new(),
            prefix: String::new(),
            prefix_len: 0,
        }
    }

    /// The vocabulary entry of `id` as stored (`▁Hello`, `Ġworld`, `<|im_end|>`), not decoded.
    pub fn token_text(&self, id: u32) -> Option<String> {
        self.lock().id_to_token(id)
    }

    /// The id of a vocabulary entry written as stored (see [`Tokenizer::token_text`]).
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.lock().token_to_id(text)
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// Whether `id` is a control token (BOS, EOS, `<|im_start|>`, ...), which `decode` leaves
    /// out when asked to skip special tokens.
    pub fn is_control(&self, id: u32) -> bool {
        self.control.contains(&id)
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.special.bos_id
    }

    pub fn eos_id(&self) -> Option<u32> {
        self.special.eos_id
    }

    pub fn add_bos(&self) -> bool {
        self.special.add_bos
    }

    pub fn add_eos(&self) -> bool {
        self.special.add_eos
    }

    /// Every id that ends generation (EOS, end-of-turn tokens), sorted.
    pub fn stop_ids(&self) -> &[u32] {
        &self.stop_ids
    }

    pub fn is_stop(&self, id: u32) -> bool {
        self.stop_ids.binary_search(&id).is_ok()
    }
}

/// Turns a stream of generated ids into text pieces that are always whole UTF-8 characters.
///
/// Text depends on neighbouring tokens (SentencePiece drops the space in front of the first
/// token; an emoji may span four byte tokens), so each piece is computed as
/// `decode(window + id) - decode(window)` over a short window of recent ids, and held back while
/// it ends in an incomplete character. The pieces concatenated equal `decode` of all the ids.
pub struct StreamDecoder<'a> {
    tokenizer: &'a Tokenizer,
    skip_special: bool,
    /// The window: ids already turned into text (`prefix_len` of them), then pending ids.
    ids: Vec<u32>,
    /// `decode` of the first `prefix_len` ids of the window.
    prefix: String,
    prefix_len: usize,
}

impl StreamDecoder<'_> {
    /// Starts the stream after `context` (for example the prompt's last few ids) without
    /// emitting it, so the first piece reads as a continuation: after "Once upon a" a
    /// SentencePiece `▁time` gives " time", where a fresh stream would give "time". The context
    /// must end on a whole character, as any encoded text does.
    pub fn with_context(mut self, context: &[u32]) -> Result<Self> {
        self.ids = context.to_vec();
        self.prefix = self.tokenizer.decode(&self.ids, self.skip_special)?;
        self.prefix_len = self.ids.len();
        Ok(self)
    }

    /// Adds one id; returns the text it completes, if any.
    pub fn push(&mut self, id: u32) -> Result<Option<String>> {
        self.ids.push(id);
        let text = self.tokenizer.decode(&self.ids, self.skip_special)?;
        // U+FFFD at the end means the last character is still missing bytes.
        if text.len() <= self.prefix.len() || text.ends_with(char::REPLACEMENT_CHARACTER) {
            return Ok(None);
        }
        let piece = self.new_text(&text)?;
        // Keep the ids of this piece as the next window: enough context for the next token's
        // leading space, and the window stays a few ids long.
        self.ids.drain(..self.prefix_len);
        self.prefix = self.tokenizer.decode(&self.ids, self.skip_special)?;
        self.prefix_len = self.ids.len();
        Ok(Some(piece))
    }

    /// Returns whatever text is held back (an incomplete character comes out as U+FFFD).
    pub fn flush(&mut self) -> Result<Option<String>> {
        let text = self.tokenizer.decode(&self.ids, self.skip_special)?;
        if text.len() <= self.prefix.len() {
            return Ok(None);
        }
        let piece = self.new_text(&text)?;
        self.prefix = text;
        self.prefix_len = self.ids.len();
        Ok(Some(piece))
    }

    fn new_text(&self, text: &str) -> Result<String> {
        text.strip_prefix(self.prefix.as_str())
            .map(str::to_owned)
            .ok_or_else(|| {
                Error::Tokenizer(format!(
                    "stream decoding: {:?} does not continue {:?}",
                    text, self.prefix
                ))
            })
    }
}

fn tokenizer_error(e: impl std::fmt::Display) -> Error {
    Error::Tokenizer(e.to_string())
}

/// llama.cpp's token types (`tokenizer.ggml.token_type`).
const TOKEN_UNKNOWN: i64 = 2;
const TOKEN_CONTROL: i64 = 3;
const TOKEN_USER_DEFINED: i64 = 4;

/// The vocabulary arrays of a GGUF file, checked against each other.
struct GgufVocab {
    tokens: Vec<String>,
    /// One llama.cpp token type per token (all normal when the file has none).
    types: Vec<i64>,
    /// SentencePiece scores; byte-level vocabularies have none.
    scores: Option<Vec<f64>>,
}

impl GgufVocab {
    fn read(meta: &Metadata) -> Result<Self> {
        let tokens = string_array(meta, "tokenizer.ggml.tokens")?.ok_or_else(|| {
            Error::Tokenizer("metadata `tokenizer.ggml.tokens` is missing".into())
        })?;
        let types = number_array(meta, "tokenizer.ggml.token_type", Value::as_i64)?
            .unwrap_or_else(|| vec![1; tokens.len()]);
        let scores = number_array(meta, "tokenizer.ggml.scores", Value::as_f64)?;
        let lengths = [Some(types.len()), scores.as_ref().map(Vec::len)];
        if lengths.iter().flatten().any(|&n| n != tokens.len()) {
            return Err(Error::Tokenizer(format!(
                "token types or scores do not match the {} tokens",
                tokens.len()
            )));
        }
        Ok(GgufVocab {
            tokens,
            types,
            scores,
        })
    }

    /// Token text to id. A text stored twice keeps its first id, as llama.cpp's lookup does.
    fn vocab_map(&self) -> Vocab {
        let mut vocab = Vocab::default();
        for (id, token) in self.tokens.iter().enumerate() {
            vocab.entry(token.clone()).or_insert(id as u32);
        }
        vocab
    }

    /// An id from metadata; like llama.cpp, one outside the vocabulary is ignored.
    fn special_id(&self, meta: &Metadata, key: &str) -> Option<u32> {
        meta.get_u64(key)
            .filter(|&id| id < self.tokens.len() as u64)
            .map(|id| id as u32)
    }

    /// The unknown token's text: from its metadata id, else the first token typed unknown.
    fn unknown_token(&self, meta: &Metadata) -> Option<String> {
        let id = self
            .special_id(meta, "tokenizer.ggml.unknown_token_id")
            .map(|id| id as usize)
            .or_else(|| self.types.iter().position(|&t| t == TOKEN_UNKNOWN))?;
        Some(self.tokens[id].clone())
    }

    /// Registers control and unknown tokens as special added tokens (recognised only when
    /// parsing special text, skipped when decoding without special tokens) and user-defined
    /// tokens as plain added tokens (always recognised, as llama.cpp does). All match the raw
    /// text. Returns the control ids.
    fn register_added_tokens(&self, inner: &mut HfTokenizer) -> Result<HashSet<u32>> {
        let added = self
            .tokens
            .iter()
            .zip(&self.types)
            .filter_map(|(text, &ty)| {
                let special = match ty {
                    TOKEN_CONTROL | TOKEN_UNKNOWN => true,
                    TOKEN_USER_DEFINED => false,
                    _ => return None,
                };
                Some(AddedToken::from(text.clone(), special).normalized(false))
            });
        inner
            .add_tokens(added.collect::<Vec<_>>())
            .map_err(tokenizer_error)?;
        Ok(self
            .types
            .iter()
            .enumerate()
            .filter(|&(_, &ty)| ty == TOKEN_CONTROL)
            .map(|(id, _)| id as u32)
            .collect())
    }
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

/// How a byte-level BPE vocabulary splits text before merging, by llama.cpp's
/// `tokenizer.ggml.pre` names. Each kind is a list of regexes applied one after another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PreTokenizerKind {
    Llama3,
    Qwen2,
    Smollm,
    Gpt2,
}

const GPT2_REGEX: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
const LLAMA3_REGEX: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_REGEX: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

impl PreTokenizerKind {
    /// Unknown names (and "default") get the GPT-2 regex, the plain byte-level BPE split.
    fn from_name(name: &str) -> Self {
        match name {
            "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" => {
                PreTokenizerKind::Llama3
            }
            "qwen2" | "deepseek-r1-qwen" | "stablelm2" => PreTokenizerKind::Qwen2,
            "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone" => {
                PreTokenizerKind::Smollm
            }
            _ => PreTokenizerKind::Gpt2,
        }
    }

    fn regexes(self) -> &'static [&'static str] {
        match self {
            PreTokenizerKind::Llama3 => &[LLAMA3_REGEX],
            PreTokenizerKind::Qwen2 => &[QWEN2_REGEX],
            // Every digit is its own piece before the GPT-2 split.
            PreTokenizerKind::Smollm => &[r"\p{N}", GPT2_REGEX],
            PreTokenizerKind::Gpt2 => &[GPT2_REGEX],
        }
    }

    /// Llama 3 takes a word that is itself in the vocabulary whole, without merging
    /// (Hugging Face's `ignore_merges`, llama.cpp likewise); the merges could reach a different
    /// split.
    fn ignores_merges(self) -> bool {
        self == PreTokenizerKind::Llama3
    }

    /// llama.cpp's default for `add_bos_token` when the file does not say: Llama 3 wants BOS.
    fn adds_bos(self) -> bool {
        self == PreTokenizerKind::Llama3
    }

    fn pre_tokenizer(self) -> Result<PreTokenizerSequence> {
        let mut steps = self
            .regexes()
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
            .collect::<Result<Vec<_>>>()?;
        // The regexes did the splitting; this only maps bytes to the byte-level alphabet.
        steps.push(PreTokenizerWrapper::ByteLevel(ByteLevel::new(
            false, false, false,
        )));
        Ok(PreTokenizerSequence::new(steps))
    }
}

/// GPT-2 style: the stored tokens are already in the byte-level alphabet (`Ġ` for a space), the
/// merges are "left right" strings in rank order.
fn byte_level_bpe(
    vocab: &GgufVocab,
    meta: &Metadata,
    pre: PreTokenizerKind,
) -> Result<HfTokenizer> {
    let map = vocab.vocab_map();
    let merges = string_array(meta, "tokenizer.ggml.merges")?
        .ok_or_else(|| Error::Tokenizer("metadata `tokenizer.ggml.merges` is missing".into()))?
        .iter()
        .map(|merge| parse_merge(merge, &map))
        .collect::<Result<Vec<_>>>()?;
    let model = BPE::builder()
        .vocab_and_merges(map, merges)
        .ignore_merges(pre.ignores_merges())
        .build()
        .map_err(tokenizer_error)?;
    let mut tokenizer = HfTokenizer::new(model);
    tokenizer.with_pre_tokenizer(Some(pre.pre_tokenizer()?));
    tokenizer.with_decoder(Some(ByteLevel::default()));
    Ok(tokenizer)
}

/// One GGUF merge, "left right". Both halves and their join must be tokens: the tokenizers
/// builder assumes so (and can panic on a join longer than every token).
fn parse_merge(merge: &str, vocab: &Vocab) -> Result<(String, String)> {
    let bad = || {
        Error::Tokenizer(format!(
            "merge {merge:?} is not two tokens of the vocabulary"
        ))
    };
    let (left, right) = merge.split_once(' ').ok_or_else(bad)?;
    let joined = [left, right].concat();
    if !(vocab.contains_key(left) && vocab.contains_key(right) && vocab.contains_key(&joined)) {
        return Err(bad());
    }
    Ok((left.to_owned(), right.to_owned()))
}

/// SentencePiece as BPE, as Hugging Face converts Llama's tokenizer: spaces become `▁`, a `▁`
/// is put in front of the text (`add_space_prefix`, default true), characters missing from the
/// vocabulary fall back to `<0xXX>` byte tokens, and decoding undoes all of that.
fn sentencepiece_bpe(vocab: &GgufVocab, meta: &Metadata) -> Result<HfTokenizer> {
    let add_space_prefix = meta
        .get_bool("tokenizer.ggml.add_space_prefix")
        .unwrap_or(true);
    let map = vocab.vocab_map();
    let merges = merges_from_scores(vocab, &map);
    let mut builder = BPE::builder()
        .vocab_and_merges(map, merges)
        .byte_fallback(true)
        .fuse_unk(true);
    if let Some(unk) = vocab.unknown_token(meta) {
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

fn spm_replace(from: &str, to: &str) -> Result<Replace> {
    Replace::new(from, to).map_err(tokenizer_error)
}

/// BPE merges that reproduce SentencePiece's choices: every way to split a piece into two
/// pieces is a merge, ranked by the score of the piece it makes (higher first). Ties keep piece
/// order, then the halves' ids, as Hugging Face's `SentencePieceExtractor` orders them (without
/// scores, lower ids rank first).
fn merges_from_scores(vocab: &GgufVocab, map: &Vocab) -> Vec<(String, String)> {
    let score = |id: usize| match &vocab.scores {
        Some(scores) => scores[id],
        None => -(id as f64),
    };
    let mut ranked: Vec<(f64, usize, u32, u32, &str, &str)> = Vec::new();
    for (id, piece) in vocab.tokens.iter().enumerate() {
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

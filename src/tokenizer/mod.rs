//! Text to token ids and back.
//!
//! A [`Tokenizer`] wraps a Hugging Face `tokenizers::Tokenizer`, built either from a
//! `tokenizer.json` or, for GGUF files, in code from the `tokenizer.ggml.*` metadata, the way
//! llama.cpp reads that metadata (`gguf_vocab`):
//! - `gpt2`: byte-level BPE over the stored vocabulary and merges, split first by the regexes
//!   llama.cpp uses for the file's `tokenizer.ggml.pre` name (`pre`);
//! - `llama`: SentencePiece, run as BPE whose merges are derived from the piece scores, with
//!   `<0xXX>` byte fallback and `▁` standing for a space;
//! - `gemma4`: BPE over UTF-8 with `▁` for a space and byte fallback.
//!
//! Other models (WordPiece, Unigram, RWKV) are refused with a `TOKENIZER_ERROR`.
//!
//! Token types follow llama.cpp: control (and unknown) tokens are one token in text only when
//! special text is parsed, user-defined tokens always. [`StreamDecoder`] turns ids into text one
//! at a time without ever splitting a UTF-8 character. Nothing here reads files: callers pass
//! metadata or bytes (this runs in wasm).

mod gguf_vocab;
mod pre;
mod token_bytes;

use std::collections::HashSet;
use std::sync::{Mutex, MutexGuard, OnceLock};

use tokenizers::Tokenizer as HfTokenizer;

use crate::error::{Error, Result};
use crate::gguf::Metadata;
use gguf_vocab::{GgufVocab, Model, END_OF_GENERATION};

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
    /// How the vocabulary stores bytes, made on the first `piece_bytes` call.
    scheme: OnceLock<token_bytes::Scheme>,
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
        let model = Model::from_metadata(meta)?;
        let vocab = GgufVocab::read(meta)?;
        let mut inner = vocab.build(meta, model)?;
        let special = special_tokens(meta, &vocab, model);
        let control = vocab.register_added_tokens(&mut inner, phi3_rstrip(meta))?;
        let stops = ["tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"]
            .iter()
            .filter_map(|key| vocab.special_id(meta, key))
            .chain(vocab.end_of_generation_ids())
            .collect::<Vec<_>>();
        Self::assemble(inner, special, control, stops.into_iter())
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
        let named_stops = END_OF_GENERATION
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
            scheme: OnceLock::new(),
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

    /// The bytes each id stands for (`token_bytes.rs`), control tokens marked with 0xFF: the
    /// vocabulary a grammar engine walks.
    pub fn token_bytes(&self) -> Vec<Vec<u8>> {
        token_bytes::token_bytes(&self.lock(), self.vocab_size, |id| self.is_control(id))
    }

    /// The bytes `id` stands for (a control token's are its text; none past the vocabulary):
    /// what a logprob entry reports for a token.
    pub fn piece_bytes(&self, id: u32) -> Vec<u8> {
        let inner = self.lock();
        self.scheme
            .get_or_init(|| token_bytes::Scheme::of(&inner))
            .bytes(&inner, id)
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

/// BOS/EOS ids and flags as llama.cpp settles them: SentencePiece defaults to BOS 1 and EOS 2,
/// metadata ids inside the vocabulary override, `add_bos_token` defaults by model and
/// pre-tokenizer, and Gemma 4 always adds BOS.
fn special_tokens(meta: &Metadata, vocab: &GgufVocab, model: Model) -> SpecialTokens {
    let default = |id: u32| Some(id).filter(|&id| (id as usize) < vocab.len());
    let (default_bos, default_eos) = match model {
        Model::SentencePiece => (default(1), default(2)),
        Model::Bpe(_) => (None, None),
    };
    let force_bos = matches!(model, Model::Bpe(pre) if pre.force_bos);
    SpecialTokens {
        bos_id: vocab
            .special_id(meta, "tokenizer.ggml.bos_token_id")
            .or(default_bos),
        eos_id: vocab
            .special_id(meta, "tokenizer.ggml.eos_token_id")
            .or(default_eos),
        add_bos: force_bos
            || meta
                .get_bool("tokenizer.ggml.add_bos_token")
                .unwrap_or(model.default_add_bos()),
        add_eos: meta
            .get_bool("tokenizer.ggml.add_eos_token")
            .unwrap_or(false),
    }
}

/// llama.cpp's rule for Phi-3 (by model name, as the file has no per-token flags): whitespace
/// after its special tokens belongs to them, except after `<unk>`, `<s>` and `<|endoftext|>`.
fn phi3_rstrip(meta: &Metadata) -> impl Fn(&str) -> bool {
    let name = meta
        .get_str("general.name")
        .unwrap_or_default()
        .to_lowercase();
    let phi3 = name.contains("phi-3") || name.contains("phi3");
    move |token| phi3 && !matches!(token, "<unk>" | "<s>" | "<|endoftext|>")
}

fn tokenizer_error(e: impl std::fmt::Display) -> Error {
    Error::Tokenizer(e.to_string())
}

//! The bytes each token stands for, as a grammar engine needs them (`constraint.rs`): the
//! vocabulary's stored strings turned back into the text they produce. Byte-level BPE (GPT-2
//! style) stores each byte as a printable character; SentencePiece-style vocabularies store a
//! space as `▁` and lone bytes as `<0xXX>`. Control tokens are marked with a leading 0xFF, the
//! grammar library's marker for tokens that are never text.

use std::collections::{HashMap, HashSet};

use tokenizers::{DecoderWrapper, Tokenizer as HfTokenizer};

/// Marks a control token's bytes (`toktrie::TokTrie::SPECIAL_TOKEN_MARKER`).
pub const SPECIAL_MARKER: u8 = 0xFF;

/// The bytes of every id below `vocab_size`; an id with no entry gets no bytes (it can never be
/// produced by a grammar).
pub fn token_bytes(
    inner: &HfTokenizer,
    vocab_size: usize,
    is_control: impl Fn(u32) -> bool,
) -> Vec<Vec<u8>> {
    let scheme = Scheme::of(inner);
    (0..vocab_size as u32)
        .map(|id| match inner.id_to_token(id) {
            Some(text) if is_control(id) => [&[SPECIAL_MARKER], text.as_bytes()].concat(),
            _ => scheme.bytes(inner, id),
        })
        .collect()
}

/// How a vocabulary stores its tokens' bytes: byte-level (with the table of its characters) or
/// SentencePiece-style.
pub struct Scheme {
    byte_level: Option<HashMap<char, u8>>,
    /// Added tokens, whose text is stored as written.
    added: HashSet<u32>,
}

impl Scheme {
    pub fn of(inner: &HfTokenizer) -> Scheme {
        let byte_level = matches!(inner.get_decoder(), Some(DecoderWrapper::ByteLevel(_)));
        Scheme {
            byte_level: byte_level.then(byte_level_chars),
            added: inner.get_added_tokens_decoder().into_keys().collect(),
        }
    }

    /// The bytes `id` stands for: an added token's (control tokens included) are its text as
    /// written; no bytes for an id with no entry.
    pub fn bytes(&self, inner: &HfTokenizer, id: u32) -> Vec<u8> {
        let Some(text) = inner.id_to_token(id) else {
            return Vec::new();
        };
        if self.added.contains(&id) {
            return text.into_bytes();
        }
        match &self.byte_level {
            Some(chars) => byte_level_bytes(&text, chars),
            None => sentencepiece_bytes(&text),
        }
    }
}

/// GPT-2's byte-to-character table, inverted: printable Latin-1 bytes stand for themselves and
/// the 68 others for U+0100 onwards, in byte order.
fn byte_level_chars() -> HashMap<char, u8> {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    let mut next = 256u32;
    (0..=255u8)
        .map(|b| {
            let c = if printable(b) {
                b as u32
            } else {
                next += 1;
                next - 1
            };
            (char::from_u32(c).expect("below U+0200"), b)
        })
        .collect()
}

/// A byte-level token's bytes; a character outside the table (a file that mixes schemes)
/// stands for its own UTF-8.
fn byte_level_bytes(text: &str, chars: &HashMap<char, u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        match chars.get(&c) {
            Some(&b) => out.push(b),
            None => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
        }
    }
    out
}

/// `<0xXX>` is the byte XX; otherwise the text with `▁` as a space.
fn sentencepiece_bytes(text: &str) -> Vec<u8> {
    let hex = text
        .strip_prefix("<0x")
        .and_then(|t| t.strip_suffix('>'))
        .filter(|h| h.len() == 2)
        .and_then(|h| u8::from_str_radix(h, 16).ok());
    match hex {
        Some(b) => vec![b],
        None => text.replace('\u{2581}', " ").into_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_level_table_is_gpt2s() {
        let chars = byte_level_chars();
        assert_eq!(chars.len(), 256);
        assert_eq!(chars[&'Ġ'], b' ');
        assert_eq!(chars[&'Ċ'], b'\n');
        assert_eq!(chars[&'a'], b'a');
        assert_eq!(byte_level_bytes("ĠHello", &chars), b" Hello");
    }

    #[test]
    fn sentencepiece_pieces() {
        assert_eq!(sentencepiece_bytes("<0x0A>"), b"\n");
        assert_eq!(sentencepiece_bytes("\u{2581}the"), b" the");
        assert_eq!(sentencepiece_bytes("<0xZZ>"), b"<0xZZ>");
    }
}

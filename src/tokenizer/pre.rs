//! How a BPE vocabulary cuts text into words before merging: llama.cpp's table from
//! `tokenizer.ggml.pre` names to regex lists and flags.
//!
//! Each regex of a list splits every piece the previous one left, and the text between matches
//! stays a piece of its own (Hugging Face's `Split` with `Isolated`), as llama.cpp does. The
//! regexes are those of the models' `tokenizer.json` files, which llama.cpp transcribes. Where
//! llama.cpp had to rewrite one for C++ `std::regex` (no `(?i:)`, no `\p{Lu}`), the one here is
//! the original with only the case-insensitive group spelled out, because `fancy-regex` (the
//! engine `tokenizers` uses natively and in wasm) has the Unicode classes: the original is what
//! the test vectors were made with. The tables are facts of the format; unknown names are refused
//! as llama.cpp refuses them, because a wrong split degrades a model without any error.

/// The split rules for one family of `tokenizer.ggml.pre` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PreTokenizer {
    pub regexes: &'static [&'static str],
    /// Tokens are spelled in GPT-2's byte alphabet (`Ġ` for a space). Otherwise they are raw
    /// UTF-8 with `<0xXX>` tokens for bytes, SentencePiece style (Gemma 4).
    pub byte_level: bool,
    /// Spaces are written `▁` before splitting (the raw UTF-8 vocabularies).
    pub escape_spaces: bool,
    /// A word that is itself a token is taken whole instead of merged up to
    /// (Hugging Face's `ignore_merges`): the merges could reach a different split.
    pub ignore_merges: bool,
    /// llama.cpp's `add_bos_token` when the file does not say.
    pub add_bos: bool,
    /// No BOS id unless the file names one (ChatGLM).
    pub no_default_bos: bool,
    /// BOS is added even where the file says not to (llama.cpp's rule for Gemma 4).
    pub force_bos: bool,
}

const BYTE_LEVEL: PreTokenizer = PreTokenizer {
    regexes: &[],
    byte_level: true,
    escape_spaces: false,
    ignore_merges: false,
    add_bos: false,
    no_default_bos: false,
    force_bos: false,
};

const fn splits(regexes: &'static [&'static str]) -> PreTokenizer {
    PreTokenizer {
        regexes,
        ..BYTE_LEVEL
    }
}

/// GPT-2's own split.
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
/// Llama 3: up to three digits per piece, a letter run may take one leading non-letter.
const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen 2: Llama 3's split with single digits.
const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN35: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const JAIS2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s{512}(?!\S)|\s{256}(?!\S)|\s{128}(?!\S)|\s{64}(?!\S)|\s{32}(?!\S)|\s{16}(?!\S)|\s{8}(?!\S)|\s{4}(?!\S)|\s{1,2}(?!\S)|\s{1}";
/// GPT-4o / Llama 4 (o200k): words split before capitals, contractions kept on the word.
const GPT4O: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const TEKKEN: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const YOUTU_WORDS: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Kimi K2: Han runs alone, and the other letter classes without Han.
const KIMI_K2: &str = r"[\p{Han}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]*[\p{Ll}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]+[\p{Ll}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// DeepSeek V3 and Hunyuan's third split (after digits and CJK runs).
const DEEPSEEK3_WORDS: &str = r##"[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"##;
const CJK_KANA: &str = r"[一-龥぀-ゟ゠-ヿ]+";
const CJK_HANGUL: &str = r"[一-龥ࠀ-一가-퟿]+";
/// Digit runs in groups of three counted from the right ("1234567" is 1, 234, 567).
const DIGITS_BY_THOUSANDS: &str = r"\p{N}{1,3}(?=(?:\p{N}{3})*(?!\p{N}))";
/// BLOOM and Poro: words with their leading space, nothing else.
const BLOOM: &str = r" ?[^(\s|.,!?…。，、।۔،)]+";
/// Lines and runs of newlines (the SentencePiece-style vocabularies merge over whole lines).
const LINES: &str = r"[^\n]+|[\n]+";

/// The split for files without `tokenizer.ggml.pre` or with "default".
pub(super) const DEFAULT: PreTokenizer =
    splits(&[r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", r"[0-9][0-9][0-9]"]);

/// Every name llama.cpp knows, grouped as llama.cpp groups them.
const TABLE: &[(&[&str], PreTokenizer)] = &[
    (&["default"], DEFAULT),
    (
        &[
            "llama3",
            "llama-v3",
            "llama-bpe",
            "falcon3",
            "falcon-h1",
            "pixtral",
            "midm-2.0",
            "lfm2",
            "jina-v5-nano",
        ],
        PreTokenizer {
            ignore_merges: true,
            add_bos: true,
            ..splits(&[LLAMA3])
        },
    ),
    (&["dbrx", "smaug-bpe"], splits(&[LLAMA3])),
    (
        &["chatglm-bpe"],
        PreTokenizer {
            no_default_bos: true,
            ..splits(&[LLAMA3])
        },
    ),
    (
        &["glm4", "glm5"],
        PreTokenizer {
            no_default_bos: true,
            ignore_merges: true,
            ..splits(&[LLAMA3])
        },
    ),
    (&["jais-2"], splits(&[JAIS2])),
    (
        // Six letters of this class are escaped: NFC (which editors apply) rewrites them to
        // other code points, and ΐ would then end a range before it starts.
        &["deepseek-llm"],
        splits(&[
            r"[\r\n]",
            r"\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-\x{1F7D}ᾀ-ᾴᾶ-ᾼ\x{1FBE}ῂ-ῄῆ-ῌῐ-\x{1FD3}ῖ-\x{1FDB}ῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤ\x{2126}ℨ\x{212A}-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+",
            r"\s?[!-/:-~！-／：-～‘-‟　-。]+",
            r"\s+$",
            CJK_HANGUL,
            r"\p{N}+",
        ]),
    ),
    (
        &["deepseek-v3", "hunyuan-dense", "joyai-llm", "hy_v4"],
        splits(&[r"\p{N}{1,3}", CJK_KANA, DEEPSEEK3_WORDS]),
    ),
    (
        &["spark2_5"],
        splits(&[
            r"\p{N}{1,3}",
            CJK_KANA,
            r##"[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+|[\r\n]|\s+(?!\S)|\s+"##,
            r"\p{N}",
        ]),
    ),
    (
        &["youtu"],
        PreTokenizer {
            ignore_merges: true,
            ..splits(&[
                r"[가-힣ㄱ-ㆎ]+|[！…“”‘’—：；，、-〿︰-﹏]+|[ㄅ-ㄯ]+|[一-龥぀-ゟ゠-ヿ]+",
                YOUTU_WORDS,
            ])
        },
    ),
    (
        &["deepseek-coder"],
        splits(&[r"[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", CJK_HANGUL, r"\p{N}"]),
    ),
    (
        &["falcon"],
        splits(&[r"[\p{P}\$\+<=>\^~\|`]+", GPT2, r"[0-9][0-9][0-9]"]),
    ),
    (
        &[
            "starcoder",
            "refact",
            "command-r",
            "smollm",
            "codeshell",
            "exaone",
            "minerva-7b",
            "mellum2",
        ],
        splits(&[r"\p{N}", GPT2]),
    ),
    (
        &[
            "gpt-2",
            "phi-2",
            "jina-es",
            "jina-de",
            "gigachat",
            "jina-v2-es",
            "jina-v2-de",
            "a.x-4.0",
            "mellum",
            "modern-bert",
            "jina-v1-en",
            "jina-v2-code",
            "roberta-bpe",
            "exaone4",
            "mpt",
            "olmo",
            "jais",
            "trillion",
            "granite-docling",
        ],
        splits(&[GPT2]),
    ),
    (
        &[
            "qwen2",
            "deepseek-r1-qwen",
            "kormo",
            "f2llmv2",
            "megrez",
            "stablelm2",
            "hunyuan",
            "solar-open",
            "grok-2",
        ],
        splits(&[QWEN2]),
    ),
    (&["qwen35"], splits(&[QWEN35])),
    (&["poro-chat", "bloom", "gpt3-finnish"], splits(&[BLOOM])),
    (&["viking"], splits(&[BLOOM, r"\p{N}"])),
    (
        &["tekken"],
        PreTokenizer {
            ignore_merges: true,
            add_bos: true,
            ..splits(&[TEKKEN])
        },
    ),
    (
        &["chameleon"],
        PreTokenizer {
            add_bos: true,
            ..splits(&[
                r"<sentinel:[0-9]+>",
                r"(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z",
                r"([\t\n]|    |  )",
                r"\p{N}",
                r"[\p{P}!-/:-@\[-`{-~]",
                GPT2,
            ])
        },
    ),
    (
        &["gpt-4o", "llama4", "kanana2", "talkie", "minimax-m2"],
        splits(&[GPT4O]),
    ),
    (
        &["granite-embed-multi-97m"],
        PreTokenizer {
            ignore_merges: true,
            ..splits(&[GPT4O])
        },
    ),
    (
        &["tiny_aya", "cohere2moe"],
        splits(&[DIGITS_BY_THOUSANDS, GPT4O]),
    ),
    (&["kimi-k2"], splits(&[KIMI_K2])),
    (&["superbpe"], splits(&[r"\p{N}+", r"(?=(\d{3})+(?!\d))"])),
    (
        &["bailingmoe", "bailingmoe2", "llada-moe"],
        splits(&[
            r"'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+",
        ]),
    ),
    (
        &["seed-coder"],
        splits(&[
            r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^\s\p{L}\p{N}\r\n]+|\s*[\r\n]+|\s+(?!\S)|\s+",
        ]),
    ),
    (
        &["ufakzeka"],
        splits(&[
            r"[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
        ]),
    ),
    (
        &["afmoe"],
        splits(&[
            DIGITS_BY_THOUSANDS,
            r"[一-鿿㐀-䶿豈-﫿぀-ゟ゠-ヿ･-ﾟ⼀-⿟เ-๿຀-໿ក-៿က-႟ꩠ-ꩿꧠ-꧿가-힯ᄀ-ᇿ]+",
            DEEPSEEK3_WORDS,
        ]),
    ),
    (&["laguna"], splits(&[LINES, QWEN2])),
    (
        &["exaone-moe"],
        splits(&[
            r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?(?:\p{L}\p{M}*(?: \p{L}\p{M}*)*)+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]?|\s*[\r\n]|\s+(?!\S)|\s+",
        ]),
    ),
    (
        &["minicpm5"],
        PreTokenizer {
            ignore_merges: true,
            ..splits(&[
                r"\p{N}{1,3}",
                r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}+| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
            ])
        },
    ),
    (&["gemma4", "granite-embed-multi-311m"], GEMMA4),
    (
        &["sarvam-moe"],
        PreTokenizer {
            add_bos: false,
            force_bos: false,
            ..GEMMA4
        },
    ),
    (
        &["whitespace"],
        PreTokenizer {
            byte_level: false,
            ..splits(&[r"\S+"])
        },
    ),
];

/// Gemma 4: SentencePiece-style BPE (spaces as `▁`, raw UTF-8, byte tokens) over whole lines.
/// llama.cpp adds BOS for it whatever the file says.
pub(super) const GEMMA4: PreTokenizer = PreTokenizer {
    byte_level: false,
    escape_spaces: true,
    add_bos: true,
    force_bos: true,
    ..splits(&[LINES])
};

/// The rules for a `tokenizer.ggml.pre` name; `None` for a name llama.cpp does not know.
pub(super) fn lookup(name: &str) -> Option<PreTokenizer> {
    TABLE
        .iter()
        .find(|(names, _)| names.contains(&name))
        .map(|&(_, pre)| pre)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
    use tokenizers::{OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer as _};

    fn split(re: &str) -> Split {
        Split::new(
            SplitPattern::Regex(re.to_owned()),
            tokenizers::SplitDelimiterBehavior::Isolated,
            false,
        )
        .unwrap_or_else(|e| panic!("{re}: {e}"))
    }

    /// Every regex of the table compiles with the engine `tokenizers` uses here, so no name
    /// fails only when a model with it is loaded.
    #[test]
    fn every_regex_compiles() {
        for (_, pre) in TABLE {
            for re in pre.regexes {
                split(re);
            }
        }
    }

    #[test]
    fn names_are_unique() {
        let mut all: Vec<_> = TABLE.iter().flat_map(|(names, _)| names.iter()).collect();
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n, "a name is in two families");
    }

    /// The pieces one regex cuts `text` into (matches and the text between them).
    fn pieces(re: &str, text: &str) -> Vec<String> {
        let mut pre = PreTokenizedString::from(text);
        split(re).pre_tokenize(&mut pre).unwrap();
        pre.get_splits(OffsetReferential::Original, OffsetType::Byte)
            .into_iter()
            .map(|(piece, ..)| piece.to_owned())
            .collect()
    }

    #[test]
    fn digits_group_by_thousands() {
        assert_eq!(
            pieces(DIGITS_BY_THOUSANDS, "1234567 12"),
            ["1", "234", "567", " ", "12"]
        );
    }

    #[test]
    fn kimi_keeps_han_apart_from_other_letters() {
        assert_eq!(pieces(KIMI_K2, "abc我想def"), ["abc", "我想", "def"]);
    }

    #[test]
    fn unknown_names_are_not_guessed() {
        assert_eq!(lookup("qwen2"), lookup("megrez"));
        assert_eq!(lookup("no-such-tokenizer"), None);
    }
}

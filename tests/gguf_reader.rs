//! The GGUF reader on good and bad bytes: every malformed file gives its specific error, never a
//! panic, and the streaming reader hands out exactly the bytes the random-access reader reads.

mod common;

use common::tiny_llama::{f32_bytes, llama_tensors};
use llama_wgpu::config::Config;
use llama_wgpu::gguf::{Event, Header, StreamReader, Value};
use llama_wgpu::gguf_writer::GgufWriter;
use llama_wgpu::quant::GgmlType;
use llama_wgpu::{Error, GgufProblem};

/// The shared tiny llama (16-token vocab) plus a scores array and a nested array, so the
/// reader's array paths are exercised.
fn tiny_llama() -> GgufWriter {
    let mut w = GgufWriter::new();
    llama_tensors(&mut w, 16);
    w.metadata(
        "tokenizer.ggml.scores",
        Value::Array((0..16).map(|i| Value::F32(-(i as f32))).collect()),
    )
    .metadata(
        "nested",
        Value::Array(vec![Value::Array(vec![Value::I16(-3), Value::I16(7)])]),
    );
    w
}

fn parse(bytes: &[u8]) -> Result<Header, Error> {
    Header::parse(bytes, Some(bytes.len() as u64)).map(|h| h.expect("whole file given"))
}

fn problem(r: Result<Header, Error>) -> GgufProblem {
    match r {
        Err(Error::Gguf { problem, .. }) => problem,
        Err(other) => panic!("expected a GGUF error, got {other:?}"),
        Ok(_) => panic!("expected a GGUF error, got a header"),
    }
}

/// Byte offset of the first tensor-table entry's field `field_offset` bytes past its name.
fn tensor_entry_offset(bytes: &[u8], name: &str) -> usize {
    let needle = [&(name.len() as u64).to_le_bytes()[..], name.as_bytes()].concat();
    bytes
        .windows(needle.len())
        .rposition(|w| w == needle)
        .expect("tensor name in file")
        + needle.len()
}

#[test]
fn well_formed_file_reads_back() {
    let bytes = tiny_llama().to_bytes();
    let h = parse(&bytes).unwrap();
    assert_eq!(h.version, 3);
    assert_eq!(h.tensors.len(), 11);
    assert_eq!(h.alignment, 32);
    assert_eq!(h.data_offset % 32, 0);
    assert_eq!(h.metadata.get_str("general.name"), Some("tiny-llama"));
    assert_eq!(h.metadata.get_u64("llama.block_count"), Some(1));
    assert_eq!(
        h.metadata.get("nested"),
        Some(&Value::Array(vec![Value::Array(vec![
            Value::I16(-3),
            Value::I16(7)
        ])]))
    );
    let q = h.tensor("blk.0.attn_q.weight").unwrap();
    assert_eq!(q.dims, vec![8, 8]);
    assert_eq!(q.n_bytes, 256);
    let cfg = Config::from_header(&h).unwrap();
    assert_eq!(
        (cfg.n_embd, cfg.n_head, cfg.n_head_kv, cfg.head_dim),
        (8, 2, 1, 4)
    );
    assert_eq!(cfg.n_vocab, 16);
    assert!(cfg.tied_embeddings);
}

#[test]
fn truncated_at_every_offset_is_an_error() {
    let bytes = tiny_llama().to_bytes();
    let full = parse(&bytes).unwrap();
    for n in 0..bytes.len() {
        let cut = &bytes[..n];
        match Header::parse(cut, Some(n as u64)) {
            Err(Error::Gguf { problem, offset }) => {
                let in_header = !matches!(problem, GgufProblem::TensorOutOfBounds { .. });
                assert!(
                    !in_header || offset <= n as u64,
                    "offset {offset} beyond cut {n}"
                );
                match problem {
                    // Counts and lengths are checked against the bytes left, so a cut header
                    // shows up as whichever field first claims more than remains.
                    GgufProblem::Truncated { .. }
                    | GgufProblem::TooManyTensors(_)
                    | GgufProblem::TooManyMetadata(_)
                    | GgufProblem::StringTooLong(_)
                    | GgufProblem::ArrayTooLong(_)
                        if n < full.header_len as usize => {}
                    GgufProblem::TensorOutOfBounds { .. } if n >= full.header_len as usize => {}
                    other => panic!("cut at {n}: unexpected {other:?}"),
                }
            }
            other => panic!("cut at {n}: expected an error, got {other:?}"),
        }
        // The same bytes streamed with no size known: the header is simply incomplete until the
        // end, then `finish` reports the truncation.
        let mut r = StreamReader::new(None);
        let mut sink = |_: Event<'_>| Ok(());
        let pushed = cut.chunks(7).try_for_each(|c| r.push(c, &mut sink));
        let finished = pushed.and_then(|_| r.finish(&mut sink).map(|_| ()));
        assert!(
            matches!(finished, Err(Error::Gguf { .. })),
            "streamed cut at {n}: {finished:?}"
        );
    }
}

/// A real model's first kilobyte (a download cut short) says the file ends early, not that
/// its counts are insane.
#[test]
fn a_real_model_cut_at_one_kilobyte_is_truncated() {
    let Some(path) = common::default_model() else {
        return;
    };
    let mut head = vec![0u8; 1024];
    std::io::Read::read_exact(&mut std::fs::File::open(path).unwrap(), &mut head).unwrap();
    let err = Header::parse(&head, Some(1024)).unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Gguf {
                problem: GgufProblem::Truncated { .. },
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("ends early"), "{err}");
}

#[test]
fn wrong_magic_and_version() {
    let mut bytes = tiny_llama().to_bytes();
    bytes[0] = b'G';
    bytes[3] = b'X';
    assert_eq!(problem(parse(&bytes)), GgufProblem::BadMagic(*b"GGUX"));
    for v in [1u32, 4, 0x0300_0000] {
        let mut bytes = tiny_llama().to_bytes();
        bytes[4..8].copy_from_slice(&v.to_le_bytes());
        assert_eq!(problem(parse(&bytes)), GgufProblem::UnsupportedVersion(v));
    }
}

#[test]
fn absurd_counts_are_rejected_before_allocation() {
    let mut bytes = tiny_llama().to_bytes();
    bytes[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    assert_eq!(
        problem(parse(&bytes)),
        GgufProblem::TooManyTensors(u64::MAX)
    );
    // A count a header could hold, in a file too short for it: the file was cut.
    let mut bytes = tiny_llama().to_bytes();
    bytes[8..16].copy_from_slice(&1_000_000u64.to_le_bytes());
    assert!(matches!(
        problem(parse(&bytes)),
        GgufProblem::Truncated { .. }
    ));
    let mut bytes = tiny_llama().to_bytes();
    bytes[16..24].copy_from_slice(&(1u64 << 40).to_le_bytes());
    assert_eq!(
        problem(parse(&bytes)),
        GgufProblem::TooManyMetadata(1 << 40)
    );
}

#[test]
fn absurd_string_and_array_lengths() {
    // The first key's length field sits at byte 24.
    let mut bytes = tiny_llama().to_bytes();
    bytes[24..32].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
    assert_eq!(
        problem(parse(&bytes)),
        GgufProblem::StringTooLong(u64::MAX / 2)
    );

    // The scores array: key, type 9, element type 6 (f32), then the length.
    let mut bytes = tiny_llama().to_bytes();
    let at = tensor_entry_offset(&bytes, "tokenizer.ggml.scores") + 4 + 4;
    bytes[at..at + 8].copy_from_slice(&(1u64 << 60).to_le_bytes());
    assert_eq!(problem(parse(&bytes)), GgufProblem::ArrayTooLong(1 << 60));

    // An unknown element type.
    let mut bytes = tiny_llama().to_bytes();
    let at = tensor_entry_offset(&bytes, "tokenizer.ggml.scores") + 4;
    bytes[at..at + 4].copy_from_slice(&99u32.to_le_bytes());
    assert_eq!(problem(parse(&bytes)), GgufProblem::UnknownValueType(99));

    // Invalid UTF-8 in a key.
    let mut bytes = tiny_llama().to_bytes();
    bytes[32] = 0xff;
    assert_eq!(problem(parse(&bytes)), GgufProblem::InvalidUtf8);
}

#[test]
fn bad_dims() {
    let set_u32 = |bytes: &mut Vec<u8>, at: usize, v: u32| {
        bytes[at..at + 4].copy_from_slice(&v.to_le_bytes())
    };
    let set_u64 = |bytes: &mut Vec<u8>, at: usize, v: u64| {
        bytes[at..at + 8].copy_from_slice(&v.to_le_bytes())
    };

    let mut bytes = tiny_llama().to_bytes();
    let at = tensor_entry_offset(&bytes, "blk.0.attn_q.weight");
    set_u32(&mut bytes, at, 9);
    assert!(matches!(
        problem(parse(&bytes)),
        GgufProblem::TooManyDims { n_dims: 9, .. }
    ));

    let mut bytes = tiny_llama().to_bytes();
    set_u64(&mut bytes, at + 4, 0);
    assert!(matches!(
        problem(parse(&bytes)),
        GgufProblem::BadDim { dim: 0, .. }
    ));

    let mut bytes = tiny_llama().to_bytes();
    set_u64(&mut bytes, at + 4, 1 << 40);
    set_u64(&mut bytes, at + 12, 1 << 40);
    assert!(matches!(
        problem(parse(&bytes)),
        GgufProblem::TooManyElements { .. }
    ));

    // A dimension that fits in the element count but whose data runs past the file.
    let mut bytes = tiny_llama().to_bytes();
    set_u64(&mut bytes, at + 12, 1 << 30);
    assert!(matches!(
        problem(parse(&bytes)),
        GgufProblem::TensorOutOfBounds { .. } | GgufProblem::TensorsOverlap { .. }
    ));
}

#[test]
fn bad_tensor_type_offsets_and_overlap() {
    let bytes = tiny_llama().to_bytes();
    let at = tensor_entry_offset(&bytes, "blk.0.attn_q.weight") + 4 + 2 * 8;

    let mut b = bytes.clone();
    b[at..at + 4].copy_from_slice(&77u32.to_le_bytes());
    assert!(matches!(
        problem(parse(&b)),
        GgufProblem::UnknownTensorType { type_id: 77, .. }
    ));

    // Q4_0 needs rows that are a multiple of 32; this row has 8 elements.
    let mut b = bytes.clone();
    b[at..at + 4].copy_from_slice(&2u32.to_le_bytes());
    assert!(matches!(
        problem(parse(&b)),
        GgufProblem::RowNotBlockAligned {
            row: 8,
            block: 32,
            ..
        }
    ));

    let mut b = bytes.clone();
    b[at + 4..at + 12].copy_from_slice(&(1u64 << 50).to_le_bytes());
    assert!(matches!(
        problem(parse(&b)),
        GgufProblem::TensorOutOfBounds { .. }
    ));

    let mut b = bytes.clone();
    b[at + 4..at + 12].copy_from_slice(&3u64.to_le_bytes());
    assert!(matches!(
        problem(parse(&b)),
        GgufProblem::MisalignedTensor { offset: 3, .. }
    ));

    // Point attn_q at token_embd's data (offset 0).
    let mut b = bytes.clone();
    b[at + 4..at + 12].copy_from_slice(&0u64.to_le_bytes());
    assert!(matches!(
        problem(parse(&b)),
        GgufProblem::TensorsOverlap { .. }
    ));

    // Overflowing offset + size.
    let mut b = bytes;
    b[at + 4..at + 12].copy_from_slice(&(u64::MAX - 31).to_le_bytes());
    assert!(matches!(
        problem(parse(&b)),
        GgufProblem::TensorOutOfBounds { .. }
    ));
}

#[test]
fn duplicates_and_alignment() {
    let mut w = tiny_llama();
    w.metadata("general.name", Value::String("again".into()));
    assert!(
        matches!(problem(parse(&w.to_bytes())), GgufProblem::DuplicateKey(k) if k == "general.name")
    );

    let mut w = tiny_llama();
    w.tensor("output_norm.weight", &[8], GgmlType::F32, f32_bytes(8, 1));
    assert!(
        matches!(problem(parse(&w.to_bytes())), GgufProblem::DuplicateTensor(t) if t == "output_norm.weight")
    );

    let mut w = tiny_llama();
    w.metadata("general.alignment", Value::U32(3));
    assert_eq!(problem(parse(&w.to_bytes())), GgufProblem::BadAlignment(3));

    let mut w = tiny_llama();
    w.metadata("general.alignment", Value::U32(64));
    let h = parse(&w.to_bytes()).unwrap();
    assert_eq!(h.alignment, 64);
    assert!(h.tensors.iter().all(|t| t.offset % 64 == 0));
}

#[test]
fn model_level_errors() {
    let cfg = |w: &GgufWriter| Config::from_header(&parse(&w.to_bytes()).unwrap());

    // Overwrite the architecture string in place ("llama" -> "mamba", same length).
    let bytes = tiny_llama().to_bytes();
    let at = tensor_entry_offset(&bytes, "general.architecture") + 4 + 8;
    let mut b = bytes.clone();
    b[at..at + 5].copy_from_slice(b"mamba");
    let err = Config::from_header(&parse(&b).unwrap()).unwrap_err();
    assert!(
        matches!(&err, Error::UnsupportedArchitecture(a) if a == "mamba"),
        "{err}"
    );
    assert_eq!(err.code(), "UNSUPPORTED_ARCHITECTURE");

    // A missing tensor.
    let mut b = bytes.clone();
    let at = tensor_entry_offset(&b, "blk.0.ffn_up.weight") - "blk.0.ffn_up.weight".len();
    b[at..at + 5].copy_from_slice(b"blk.9");
    let err = Config::from_header(&parse(&b).unwrap()).unwrap_err();
    assert!(err.to_string().contains("blk.0.ffn_up.weight"), "{err}");
    assert_eq!(err.code(), "MODEL_INVALID");

    // A mis-shaped tensor: attn_k declared [8, 2] instead of [8, 4] (smaller, so it still fits).
    let mut b = bytes;
    let at = tensor_entry_offset(&b, "blk.0.attn_k.weight") + 4 + 8;
    b[at..at + 8].copy_from_slice(&2u64.to_le_bytes());
    let err = Config::from_header(&parse(&b).unwrap()).unwrap_err();
    assert!(
        err.to_string().contains("attn_k") && err.to_string().contains("shape"),
        "{err}"
    );

    // A required hyperparameter missing.
    let mut w = GgufWriter::new();
    w.metadata("general.architecture", Value::String("llama".into()));
    let err = cfg(&w).unwrap_err();
    assert!(err.to_string().contains("llama.embedding_length"), "{err}");
    assert_eq!(err.code(), "GGUF_INVALID");
}

#[test]
fn stream_reader_hands_out_every_tensor_byte() {
    let bytes = tiny_llama().to_bytes();
    let full = parse(&bytes).unwrap();
    for chunk in [1usize, 5, 31, 64, 1000, bytes.len()] {
        for size in [Some(bytes.len() as u64), None] {
            let mut r = StreamReader::new(size);
            let mut got: Vec<Vec<u8>> = vec![Vec::new(); full.tensors.len()];
            let mut done = vec![false; full.tensors.len()];
            let mut headers = 0;
            let mut sink = |ev: Event<'_>| {
                match ev {
                    Event::Header(h) => {
                        headers += 1;
                        assert_eq!(h.tensors.len(), full.tensors.len());
                    }
                    Event::TensorData {
                        tensor,
                        offset,
                        bytes,
                    } => {
                        assert_eq!(offset as usize, got[tensor].len(), "pieces in order");
                        got[tensor].extend_from_slice(bytes);
                    }
                    Event::TensorDone { tensor } => done[tensor] = true,
                }
                Ok(())
            };
            for c in bytes.chunks(chunk) {
                r.push(c, &mut sink).unwrap();
            }
            r.finish(&mut sink).unwrap();
            assert_eq!(headers, 1);
            assert!(done.iter().all(|&d| d), "chunk {chunk}: every tensor done");
            for (i, t) in full.tensors.iter().enumerate() {
                let start = (full.data_offset + t.offset) as usize;
                assert_eq!(
                    got[i],
                    &bytes[start..start + t.n_bytes as usize],
                    "tensor {}",
                    t.name
                );
            }
        }
    }
}

#[test]
fn stream_reader_rejects_more_bytes_than_declared() {
    let bytes = tiny_llama().to_bytes();
    let mut r = StreamReader::new(Some(10));
    let err = r.push(&bytes[..20], &mut |_| Ok(())).unwrap_err();
    assert_eq!(err.code(), "INVALID_ARGUMENT");
}

#[test]
fn offsets_near_the_end_of_u64_do_not_overflow() {
    // Found by the fuzz target: two tensors at 0xffff_ffff_ffff_ffc0 once overflowed the
    // overlap check.
    let hex = "47475546030000000200000000000000000000000000000001000000000000006101000000100000000000000000000000c0ffffffffffffff01000000000000006201000000100000000000000000000000c0ffffffffffffff";
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    assert!(matches!(
        problem(parse(&bytes)),
        GgufProblem::TensorsOverlap { .. } | GgufProblem::TensorOutOfBounds { .. }
    ));
}

#[test]
fn a_file_without_tensors_needs_no_padding_after_its_header() {
    // Found by the `gguf_reader` fuzz target (2026-12-07): a GGUF with no tensors and no
    // metadata, its 24-byte header followed by 5 of the 8 padding bytes. `Header::parse`
    // accepted it while the sized `StreamReader` refused it ("file ends early"), waiting for a
    // data section that holds nothing. Both must accept it, cut anywhere in the padding.
    let mut full = b"GGUF".to_vec();
    full.extend_from_slice(&3u32.to_le_bytes());
    full.extend_from_slice(&0u64.to_le_bytes()); // tensors
    full.extend_from_slice(&0u64.to_le_bytes()); // metadata entries
    full.extend_from_slice(&[0, 0x0a, 0, 0, 0, 0, 0, 0]); // padding to 32 (not checked)
    for len in 24..=32 {
        let file = &full[..len];
        let parsed = parse(file).unwrap_or_else(|e| panic!("parse, {len} bytes: {e}"));
        assert!(parsed.tensors.is_empty());
        let mut stream = StreamReader::new(Some(len as u64));
        stream.push(file, &mut |_| Ok(())).unwrap();
        let streamed = stream
            .finish(&mut |_| Ok(()))
            .unwrap_or_else(|e| panic!("stream, {len} bytes: {e}"));
        assert_eq!(streamed.data_offset, parsed.data_offset);
    }
}

#[test]
fn random_corruption_never_panics() {
    // A cheap deterministic mutation sweep (the fuzz target in fuzz/ does this at scale).
    let bytes = tiny_llama().to_bytes();
    let header_len = parse(&bytes).unwrap().header_len as usize;
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..20_000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let mut b = bytes.clone();
        let at = (state as usize) % header_len;
        b[at] ^= (state >> 32) as u8 | 1;
        if let Ok(Some(h)) = Header::parse(&b, Some(b.len() as u64)) {
            let _ = Config::from_header(&h);
        }
    }
}

//! Fuzz target for the GGUF reader and what reads its result.
//!
//! Input layout: byte 0 steers the run (chunk sizes for the stream reader, whether the stream
//! knows the file size); the remaining bytes are the GGUF file. The seed corpus (`seed.rs`)
//! writes valid files behind such a byte.
//!
//! Checked on every input: nothing panics, nothing allocates without bound (libFuzzer's
//! `-rss_limit_mb` / `-malloc_limit_mb`), and
//! - `Header::parse(file, Some(len))` and a `StreamReader` that knows the size agree on whether
//!   the file is valid, and on the header when it is;
//! - the stream reader hands out exactly each tensor's bytes, in order, once;
//! - a header that parses goes through `Config::from_header`, `Tokenizer::from_gguf` (and, when
//!   that works, a short encode/decode) and tensor dequantization without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use llama_wgpu::config::Config;
use llama_wgpu::gguf::{Event, Header, StreamReader};
use llama_wgpu::tokenizer::Tokenizer;

/// Chunk sizes from a small xorshift generator seeded by the control byte, so one input always
/// splits the same way and the fuzzer can mutate the split by mutating one byte.
struct Chunks(u32);

impl Chunks {
    fn next(&mut self, max: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        // Mostly small chunks (they cut fields apart), now and then a large one.
        let n = if self.0.is_multiple_of(8) {
            (self.0 >> 3) as usize % 4096
        } else {
            (self.0 >> 3) as usize % 24
        };
        (n + 1).min(max)
    }
}

struct Streamed {
    header: Option<Header>,
    /// Per tensor: the bytes handed out, and whether `TensorDone` came.
    tensors: Vec<(Vec<u8>, bool)>,
}

fn stream(file: &[u8], control: u8, known_size: bool) -> llama_wgpu::Result<Streamed> {
    let size = known_size.then_some(file.len() as u64);
    let mut reader = StreamReader::new(size);
    let mut out = Streamed {
        header: None,
        tensors: Vec::new(),
    };
    let mut sink = |event: Event<'_>| -> llama_wgpu::Result<()> {
        match event {
            Event::Header(h) => {
                assert!(out.header.is_none(), "header emitted twice");
                out.tensors = vec![(Vec::new(), false); h.tensors.len()];
                out.header = Some(h.clone());
            }
            Event::TensorData {
                tensor,
                offset,
                bytes,
            } => {
                let (got, done) = &mut out.tensors[tensor];
                assert!(!*done, "tensor {tensor} data after TensorDone");
                assert_eq!(
                    offset,
                    got.len() as u64,
                    "tensor {tensor} pieces out of order"
                );
                got.extend_from_slice(bytes);
            }
            Event::TensorDone { tensor } => {
                let (_, done) = &mut out.tensors[tensor];
                assert!(!*done, "tensor {tensor} done twice");
                *done = true;
            }
        }
        Ok(())
    };
    let mut chunks = Chunks(u32::from(control).wrapping_mul(0x9E37_79B9) | 1);
    let mut rest = file;
    while !rest.is_empty() {
        let n = chunks.next(rest.len());
        reader.push(&rest[..n], &mut sink)?;
        rest = &rest[n..];
    }
    reader.finish(&mut sink)?;
    Ok(out)
}

fn entries(h: &Header) -> String {
    let all: Vec<String> = h
        .metadata
        .iter()
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect();
    all.join("\n")
}

/// The first field in which two headers differ, if any.
fn header_difference(a: &Header, b: &Header) -> Option<String> {
    let fields = [
        (
            "version",
            format!("{}", a.version),
            format!("{}", b.version),
        ),
        (
            "alignment",
            format!("{}", a.alignment),
            format!("{}", b.alignment),
        ),
        (
            "data_offset",
            format!("{}", a.data_offset),
            format!("{}", b.data_offset),
        ),
        (
            "header_len",
            format!("{}", a.header_len),
            format!("{}", b.header_len),
        ),
        (
            "tensors",
            format!("{:?}", a.tensors),
            format!("{:?}", b.tensors),
        ),
        // Entries in file order, by their Debug text (a NaN value is not `==` to itself; the
        // Debug of `Metadata` itself shows its HashMap index in random order).
        ("metadata", entries(a), entries(b)),
    ];
    fields
        .into_iter()
        .find(|(_, x, y)| x != y)
        .map(|(name, x, y)| format!("{name}: parse {x} / stream {y}"))
}

fn use_header(header: &Header) {
    let _ = Config::from_header(header);
    if let Ok(tokenizer) = Tokenizer::from_gguf(&header.metadata) {
        for parse_special in [false, true] {
            if let Ok(ids) = tokenizer.encode("Hi <s> wörld\n 42!", true, parse_special) {
                let _ = tokenizer.decode(&ids, false);
                let mut dec = tokenizer.stream_decoder(true);
                for id in ids {
                    let _ = dec.push(id);
                }
                let _ = dec.flush();
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, file)) = data.split_first() else {
        return;
    };

    let parsed = Header::parse(file, Some(file.len() as u64));
    let parsed = match parsed {
        Ok(Some(h)) => Some(h),
        Ok(None) => panic!("parse asked for more bytes although it was given the whole file"),
        Err(_) => None,
    };

    let known = stream(file, control, true);
    match (&parsed, &known) {
        (Some(p), Ok(s)) => {
            let h = s.header.as_ref().expect("a finished stream has a header");
            if let Some(diff) = header_difference(p, h) {
                panic!("stream and parse disagree on the header: {diff}");
            }
            for (t, (bytes, done)) in h.tensors.iter().zip(&s.tensors) {
                let start = (h.data_offset + t.offset) as usize;
                assert!(*done, "tensor {} never finished", t.name);
                assert_eq!(
                    bytes.as_slice(),
                    &file[start..start + t.n_bytes as usize],
                    "tensor {} bytes",
                    t.name
                );
                if t.n_bytes <= 1 << 16 {
                    let _ = llama_wgpu::quant::dequantize_tensor(t, bytes);
                }
            }
        }
        (None, Err(_)) => {}
        (Some(_), Err(e)) => panic!("parse accepted the file, the sized stream refused it: {e}"),
        (None, Ok(_)) => panic!("the sized stream accepted a file that parse refused"),
    }
    // A stream of unknown size must never accept what a sized one refuses (it may refuse more:
    // it cannot bound lengths before the end).
    let unknown = stream(file, control.rotate_left(3), false);
    if let (Err(_), Ok(_)) = (&known, &unknown) {
        panic!("the unsized stream accepted a file the sized one refused");
    }

    if let Some(header) = &parsed {
        use_header(header);
    }
});

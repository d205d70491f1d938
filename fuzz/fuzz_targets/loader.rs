//! Fuzz target for the streaming model loader, as the web's `ModelLoader` drives it: a
//! `StreamReader` fed the file in chunks, its header into `Loading::new` (config, memory
//! budget, tokenizer, chat template), every tensor piece into `Loading::accept`, then
//! `Loading::finish` builds the engine, here on the CPU backend (no GPU on a fuzzing
//! machine, and the weight checks before the backend are the same). An engine that loads
//! generates two tokens.
//!
//! Input layout: byte 0 steers the chunking (as in `gguf_reader`); bytes 1.. are the GGUF
//! file. The seeds are tiny models (`seed.rs`), so one execution loads a whole model.
//!
//! Checked: the load, and a generation when it loads, end in `Ok` or a coded error, never a
//! panic; the memory the CPU engine may take is capped (`max_cpu_bytes`), so a header that
//! declares a huge model is refused before anything is allocated.
#![no_main]

use libfuzzer_sys::fuzz_target;
use llama_wgpu::generate::GenerateOptions;
use llama_wgpu::gguf::{Event, StreamReader};
use llama_wgpu::loader::{LoadOptions, Loading, Target};
use llama_wgpu::{Engine, Result};

/// Chunk sizes from a xorshift generator seeded by the control byte (see `gguf_reader`).
struct Chunks(u32);

impl Chunks {
    fn next(&mut self, max: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        let n = match self.0 % 4 {
            0 => (self.0 >> 2) as usize % 16,
            _ => (self.0 >> 2) as usize % 2048,
        };
        (n + 1).min(max)
    }
}

fn load(file: &[u8], control: u8) -> Result<Engine> {
    let options = LoadOptions {
        context_length: Some(32),
        // Far above what a seed needs, far below what would slow the fuzzer down.
        max_cpu_bytes: Some(64 << 20),
    };
    let mut reader = StreamReader::new(Some(file.len() as u64));
    let mut loading: Option<Loading> = None;
    let mut sink = |event: Event<'_>| -> Result<()> {
        match (event, &mut loading) {
            (Event::Header(h), None) => {
                loading = Some(Loading::new(h, &Target::Cpu, &options)?);
                Ok(())
            }
            (event, Some(l)) => l.accept(event),
            (_, None) => panic!("tensor data before the header"),
        }
    };
    let mut chunks = Chunks(u32::from(control).wrapping_mul(0x9E37_79B9) | 1);
    let mut rest = file;
    while !rest.is_empty() {
        let n = chunks.next(rest.len());
        reader.push(&rest[..n], &mut sink)?;
        rest = &rest[n..];
    }
    reader.finish(&mut sink)?;
    let loading = loading.expect("a finished stream has a header");
    pollster::block_on(loading.finish())
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, file)) = data.split_first() else {
        return;
    };
    let mut engine = match load(file, control) {
        Ok(engine) => engine,
        Err(e) => {
            assert!(!e.code().is_empty());
            return;
        }
    };
    let options = GenerateOptions {
        max_tokens: 2,
        ..GenerateOptions::default()
    };
    if let Err(e) = engine.generate("Hi", &options, &mut |_| true) {
        assert!(!e.code().is_empty());
    }
});

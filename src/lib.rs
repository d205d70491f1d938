//! llama-wgpu: Llama-family GGUF models, natively and in the browser.
//!
//! Module map (see ARCHITECTURE.md): `gguf` reads files, `quant` knows the block formats,
//! `config` turns metadata into hyperparameters, `tokenizer` and `chat` turn text into ids,
//! `reference` is the CPU decoder every GPU result is checked against, `sampler` picks tokens.

pub mod error;
pub mod gguf;
pub mod quant;

pub use error::{Error, GgufProblem, Result};

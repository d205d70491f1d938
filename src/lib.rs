//! llama-wgpu: Llama-family GGUF models, natively and in the browser.
//!
//! Module map (see ARCHITECTURE.md): `gguf` reads files (`gguf_writer` writes them),
//! `ggml_type` names the tensor types and their block geometry, `quant` decodes the block
//! formats on the CPU, `config` turns metadata into hyperparameters, `tokenizer` and `chat`
//! turn text into ids, `reference` is the CPU decoder every GPU result is checked against,
//! `cpu` is the fast CPU engine (quantized SIMD kernels, batched prefill), `loader` takes a
//! file or a stream onto the chosen device, `sampler` picks tokens, `generate` is the loop, and
//! `embed` pools hidden states into embeddings, `lora` reads and combines adapters, and `engine`
//! ties them into the public API.

pub mod arch;
pub mod chat;
pub mod config;
pub mod constraint;
pub mod cpu;
pub mod embed;
pub mod engine;
pub mod error;
pub mod generate;
pub mod ggml_type;
pub mod gguf;
pub mod gguf_writer;
pub mod gpu;
pub mod loader;
pub mod logprobs;
pub mod lora;
pub mod memory_budget;
pub mod model;
pub mod quant;
#[cfg(not(target_arch = "wasm32"))]
pub mod quantize;
pub mod reference;
pub mod sampler;
pub mod synth;
pub mod tokenizer;
pub mod tools;
#[cfg(target_arch = "wasm32")]
pub mod web;

pub use engine::{Device, Engine, EngineOptions};
pub use error::{Error, GgufProblem, Result};
pub use generate::{GenerateOptions, Generation, StopReason};

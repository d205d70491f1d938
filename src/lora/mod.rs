//! LoRA adapters: read from their GGUF (`adapter.rs`), combined into one update per
//! projection group for whatever set is active (`stack.rs`), and applied by every backend as
//! `y += B (A x)` right after the projection it adapts (before biases and post-norms, as
//! llama.cpp applies them). The base weights are never changed, so adapters switch between
//! generations without reloading the model.

mod adapter;
mod stack;

pub use adapter::{Adapter, AdapterReader, AdapterStream, LoraPair, MAX_RANK};
pub use stack::{apply, check, LoraGroup, LoraStack, Place, Slot, RANK_ALIGN, SLOTS};

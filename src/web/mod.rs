//! The browser bindings, compiled only for wasm32: a thin layer over the same [`crate::Engine`]
//! the CLI uses. JavaScript feeds the GGUF bytes in order to a [`ModelLoader`] (from a fetch body,
//! a `File`, a cache entry: the JS facade in `pkg-templates/` owns the sources), which streams the
//! tensors into GPU buffers and compiles the kernels into a [`WasmEngine`].
//!
//! Conventions at this boundary: options and results cross as plain JS objects (through JSON, so
//! field names are the documented snake_case ones), and every failure is a JS `Error` whose
//! `code` property is [`crate::Error::code`]. Nothing here panics on input: a panic would kill
//! the page's module.

mod convert;
mod engine;
mod loader;

pub use engine::WasmEngine;
pub use loader::ModelLoader;

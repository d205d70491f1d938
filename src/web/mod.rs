//! The browser bindings, compiled only for wasm32: a thin layer over the same [`crate::Engine`]
//! the CLI uses. JavaScript feeds the GGUF bytes in order to a [`ModelLoader`] (from a fetch body,
//! a `File`, a cache entry: the JS facade in `pkg-templates/` owns the sources), which streams the
//! tensors into GPU buffers or CPU memory (the device chosen when it was created) and ends in a
//! [`WasmEngine`].
//!
//! Conventions at this boundary: options and results cross as plain JS objects through
//! `serde-wasm-bindgen` (`convert.rs`). Names follow the package's one rule: OpenAI's objects
//! keep OpenAI's snake_case (the generation options the engine takes are those of
//! `chat.completions`, with llama.cpp's extras), everything of ours is camelCase (loader
//! options, `info()`, the generation result). Unknown option keys are refused, values of the
//! wrong type too, both as `INVALID_ARGUMENT` naming the key; every failure is a JS `Error`
//! whose `code` property is [`crate::Error::code`]. Nothing here panics on input: a panic
//! would kill the page's module.

mod adapters;
mod convert;
mod digest;
mod engine;
mod loader;

pub use adapters::AdapterLoader;
pub use digest::Sha256;
pub use engine::WasmEngine;
pub use loader::ModelLoader;

/// Start `n` Web Workers sharing this module's memory and run the CPU engine's loops on them
/// (the threaded build only; the page must be cross-origin isolated for shared memory).
#[cfg(feature = "wasm-threads")]
#[wasm_bindgen::prelude::wasm_bindgen(js_name = startThreads)]
pub async fn start_threads(n: usize) -> Result<(), wasm_bindgen::JsValue> {
    if n == 0 {
        let e = crate::Error::InvalidArgument("startThreads needs at least one thread".into());
        return Err(convert::js_error(&e));
    }
    wasm_bindgen_futures::JsFuture::from(wasm_bindgen_rayon::init_thread_pool(n)).await?;
    crate::cpu::pool::mark_started();
    Ok(())
}

#[wasm_bindgen::prelude::wasm_bindgen(inline_js = r#"
export function nextTask() {
  return new Promise((resolve) => {
    const channel = new MessageChannel();
    channel.port1.onmessage = () => resolve();
    channel.port2.postMessage(null);
  });
}
"#)]
extern "C" {
    #[wasm_bindgen(js_name = nextTask)]
    fn next_task_promise() -> js_sys::Promise;
}

/// Resolves in a later task of the page's (or worker's) event loop, so that messages (an
/// abort) and rendering get their turn between CPU-engine steps. A message channel rather than
/// `setTimeout(0)`, which browsers delay to 4 ms once nested.
pub(crate) async fn next_task() {
    // The promise only resolves; there is no error to surface.
    let _ = wasm_bindgen_futures::JsFuture::from(next_task_promise()).await;
}

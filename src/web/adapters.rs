//! LoRA adapters in the browser: `AdapterLoader` takes an adapter GGUF's bytes in order (the
//! JS facade streams them from a URL, the Cache API, a File or a buffer, as it does models) and
//! `WasmEngine.addAdapter` checks it against the model and keeps it; `setAdapters` makes a set
//! active (`Engine::set_adapters_async`), `removeAdapter` drops one.

use std::cell::RefCell;

use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;

use super::convert::{from_js, js_error, to_js};
use super::engine::WasmEngine;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::lora::{Adapter, AdapterStream};

#[wasm_bindgen]
pub struct AdapterLoader {
    stream: AdapterStream,
    /// The first error, repeated to every later call.
    failed: Option<Error>,
}

#[wasm_bindgen]
impl AdapterLoader {
    /// `file_size`: the file's length when known (impossible offsets are refused early).
    #[wasm_bindgen(constructor)]
    pub fn new(file_size: Option<f64>) -> AdapterLoader {
        AdapterLoader {
            stream: AdapterStream::new(file_size.map(|s| s as u64)),
            failed: None,
        }
    }

    /// The next bytes of the file. The header is checked as soon as it is complete (not an
    /// adapter: `MODEL_INVALID`), so a wrong file stops its download early.
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), JsValue> {
        if let Some(e) = &self.failed {
            return Err(js_error(e));
        }
        self.stream.push(chunk).map_err(|e| {
            let js = js_error(&e);
            self.failed = Some(e);
            js
        })
    }

    #[wasm_bindgen(getter, js_name = bytesReceived)]
    pub fn bytes_received(&self) -> f64 {
        self.stream.position() as f64
    }
}

impl AdapterLoader {
    fn finish(self) -> Result<Adapter> {
        match self.failed {
            Some(e) => Err(e),
            None => self.stream.finish(),
        }
    }
}

/// What `addAdapter` reports about an adapter.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AdapterInfo {
    id: u32,
    name: Option<String>,
    rank: usize,
    alpha: f32,
    tensors: usize,
    bytes: u64,
}

/// One entry of `setAdapters`' list.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ActiveAdapter {
    id: u32,
    scale: f32,
}

#[wasm_bindgen]
impl WasmEngine {
    /// Finish `loader`'s adapter and keep it for this model (`MODEL_INVALID` naming the tensor
    /// when it is for another base): `{id, name, rank, alpha, tensors, bytes}`. It is not
    /// applied until `setAdapters` names it.
    #[wasm_bindgen(js_name = addAdapter)]
    pub fn add_adapter(&self, loader: AdapterLoader) -> Result<JsValue, JsValue> {
        let run = || -> Result<JsValue> {
            let adapter = loader.finish()?;
            let mut engine = self
                .engine
                .try_borrow_mut()
                .map_err(|_| Error::Busy("a generation is running".into()))?;
            let info = (
                adapter.name.clone(),
                adapter.rank(),
                adapter.alpha,
                adapter.pairs.len(),
                adapter.bytes(),
            );
            let id = engine.add_adapter(adapter)?;
            let (name, rank, alpha, tensors, bytes) = info;
            to_js(&AdapterInfo {
                id,
                name,
                rank,
                alpha,
                tensors,
                bytes,
            })
        };
        run().map_err(|e| js_error(&e))
    }

    /// Make `[{id, scale}, ...]` the active adapters (empty: none) for every later call.
    #[wasm_bindgen(js_name = setAdapters)]
    pub fn set_adapters(&self, list: JsValue) -> js_sys::Promise {
        let engine = self.engine.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            set_active(&engine, &list).await.map_err(|e| js_error(&e))
        })
    }

    /// Drop the adapter `id` (taken out of the active set first).
    #[wasm_bindgen(js_name = removeAdapter)]
    pub fn remove_adapter(&self, id: u32) -> js_sys::Promise {
        let engine = self.engine.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            remove(&engine, id).await.map_err(|e| js_error(&e))
        })
    }
}

// Holding the borrow across the GPU awaits is the point: a call meanwhile sees the engine busy
// instead of running on a half-rebuilt model.
#[allow(clippy::await_holding_refcell_ref)]
async fn set_active(engine: &RefCell<Engine>, list: &JsValue) -> Result<JsValue> {
    let list: Vec<ActiveAdapter> = from_js(list, "adapters")?;
    let active: Vec<(u32, f32)> = list.iter().map(|a| (a.id, a.scale)).collect();
    let mut engine = engine
        .try_borrow_mut()
        .map_err(|_| Error::Busy("a generation is running".into()))?;
    engine.set_adapters_async(&active).await?;
    Ok(JsValue::UNDEFINED)
}

#[allow(clippy::await_holding_refcell_ref)]
async fn remove(engine: &RefCell<Engine>, id: u32) -> Result<JsValue> {
    let mut engine = engine
        .try_borrow_mut()
        .map_err(|_| Error::Busy("a generation is running".into()))?;
    engine.remove_adapter_async(id).await?;
    Ok(JsValue::UNDEFINED)
}

//! `ModelLoader`: GGUF bytes in, in file order and any chunk size; an engine out, on the device
//! chosen when the loader was created (`loader::choose_device`: the GPU when the adapter is
//! hardware, else the CPU engine). Only the header is ever buffered; on the GPU each tensor
//! piece is written to its buffer as it arrives and dropped, so wasm memory during a load is
//! bounded by the caller's chunk size (plus the header and the small f32 norm vectors); on the
//! CPU the pieces gather into the weights the engine keeps. See ARCHITECTURE.md, "In the
//! browser".

use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;
use web_time::Instant;

use super::convert::{js_error, options_from_js, to_js};
use super::engine::{ModelInfo, WasmEngine};
use crate::engine::Device;
use crate::error::{Error, Result};
use crate::gguf::{Event, StreamReader};
use crate::gpu::GpuOptions;
use crate::loader::{choose_device, DeviceChoice, LoadOptions, Loading};

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct LoaderOptions {
    /// KV cache length; default: the model's, capped at [`DEFAULT_MAX_CONTEXT`].
    context_length: Option<usize>,
    /// Total bytes of the file when known (lets the reader reject impossible offsets early).
    file_size: Option<f64>,
    /// Split weights across bindings above this size (tests force small limits).
    max_binding_size: Option<f64>,
    /// Total GPU memory the model may take (`GpuOptions::max_gpu_bytes`); default: none.
    max_gpu_bytes: Option<f64>,
    /// "auto" (the default), "gpu", "cpu" or "reference".
    device: Option<String>,
}

/// What the header told us, kept while the tensors stream in.
struct Started {
    loading: Loading,
    info: ModelInfo,
}

#[wasm_bindgen]
pub struct ModelLoader {
    choice: DeviceChoice,
    options: LoadOptions,
    reader: StreamReader,
    loading: Option<Box<Started>>,
    /// The first error, repeated to every later call: a failed load cannot continue.
    failed: Option<Error>,
    started: Instant,
}

#[wasm_bindgen]
impl ModelLoader {
    /// Choose the device (`device: "gpu"` rejects with `WEBGPU_UNAVAILABLE` when there is no
    /// WebGPU adapter; `"auto"` falls back to the CPU engine).
    pub async fn create(options: JsValue) -> Result<ModelLoader, JsValue> {
        let started = Instant::now();
        let options: LoaderOptions =
            options_from_js(&options, "loader option").map_err(|e| js_error(&e))?;
        let device: Device = options
            .device
            .as_deref()
            .unwrap_or("auto")
            .parse()
            .map_err(|e| js_error(&e))?;
        let gpu_options = GpuOptions {
            max_binding_size: options.max_binding_size.map(|n| n as u64),
            max_gpu_bytes: options.max_gpu_bytes.map(|n| n as u64),
            ..Default::default()
        };
        let choice = choose_device(device, &gpu_options)
            .await
            .map_err(|e| js_error(&e))?;
        Ok(ModelLoader {
            choice,
            options: LoadOptions {
                context_length: options.context_length,
                max_cpu_bytes: None,
            },
            reader: StreamReader::new(options.file_size.map(|n| n as u64)),
            loading: None,
            failed: None,
            started,
        })
    }

    /// The next bytes of the file.
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), JsValue> {
        if let Some(e) = &self.failed {
            return Err(js_error(e));
        }
        let result = self.push_inner(chunk);
        if let Err(e) = result {
            let js = js_error(&e);
            self.failed = Some(e);
            return Err(js);
        }
        Ok(())
    }

    #[wasm_bindgen(getter, js_name = bytesReceived)]
    pub fn bytes_received(&self) -> f64 {
        self.reader.position() as f64
    }

    /// The model's description once the header has arrived, else `undefined`.
    #[wasm_bindgen(js_name = modelInfo)]
    pub fn model_info(&self) -> Result<JsValue, JsValue> {
        match &self.loading {
            Some(s) => to_js(&s.info).map_err(|e| js_error(&e)),
            None => Ok(JsValue::UNDEFINED),
        }
    }

    /// Every byte has been pushed: check the file is complete, compile the kernels and return
    /// the engine.
    pub async fn finish(mut self) -> Result<WasmEngine, JsValue> {
        self.finish_inner().await.map_err(|e| js_error(&e))
    }
}

impl ModelLoader {
    fn push_inner(&mut self, chunk: &[u8]) -> Result<()> {
        let ModelLoader {
            choice,
            options,
            reader,
            loading,
            ..
        } = self;
        reader.push(chunk, &mut |event| handle(choice, options, loading, event))
    }

    async fn finish_inner(&mut self) -> Result<WasmEngine> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        let ModelLoader {
            choice,
            options,
            reader,
            loading,
            ..
        } = self;
        reader.finish(&mut |event| handle(choice, options, loading, event))?;
        let Started { loading, mut info } = *self
            .loading
            .take()
            .ok_or_else(|| Error::ModelInvalid("the file ended before its header".into()))?;
        let mut engine = loading.finish().await?;
        engine.set_device_choice(&self.choice);
        let stats = engine.backend_stats();
        info.context_length_used = engine.context_length();
        info.context_reduced = engine.context_reduced().cloned();
        info.gpu_bytes = stats.gpu_bytes;
        info.cpu_bytes = stats.cpu_bytes;
        info.load_seconds = self.started.elapsed().as_secs_f64();
        Ok(WasmEngine::new(engine, info, &self.choice))
    }
}

/// One event of the stream reader: the header sets up the load, tensor pieces go to the
/// chosen device's weights.
fn handle(
    choice: &DeviceChoice,
    options: &LoadOptions,
    started: &mut Option<Box<Started>>,
    event: Event<'_>,
) -> Result<()> {
    match event {
        Event::Header(header) => {
            let loading = Loading::new(header, &choice.target, options)?;
            let info = ModelInfo::new(header, &loading.config, &loading.template);
            *started = Some(Box::new(Started { loading, info }));
            Ok(())
        }
        event => match started {
            Some(s) => s.loading.accept(event),
            None => Err(Error::ModelInvalid("tensor data before the header".into())),
        },
    }
}

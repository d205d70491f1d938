//! `ModelLoader`: GGUF bytes in, in file order and any chunk size; GPU weights out. Only the
//! header is ever buffered; each tensor piece is written to its GPU buffer as it arrives and
//! dropped, so wasm memory during a load is bounded by the caller's chunk size (plus the header
//! and the small f32 norm vectors), not by the model. See ARCHITECTURE.md, "Loading in the
//! browser".

use serde::Deserialize;
use wasm_bindgen::prelude::*;
use web_time::Instant;

use super::convert::{from_js, js_error, to_js};
use super::engine::{ModelInfo, WasmEngine};
use crate::chat::ChatTemplate;
use crate::config::Config;
use crate::engine::{Engine, DEFAULT_MAX_CONTEXT};
use crate::error::{Error, Result};
use crate::gguf::{Event, StreamReader};
use crate::gpu::{GpuContext, GpuOptions};
use crate::model::{GpuModel, WeightLoader};
use crate::tokenizer::Tokenizer;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct LoaderOptions {
    /// KV cache length; default: the model's, capped at [`DEFAULT_MAX_CONTEXT`].
    context_length: Option<usize>,
    /// Total bytes of the file when known (lets the reader reject impossible offsets early).
    file_size: Option<f64>,
    /// Split weights across bindings above this size (tests force small limits).
    max_binding_size: Option<f64>,
}

/// What the header told us, kept while the tensors stream in.
struct Loading {
    config: Config,
    tokenizer: Tokenizer,
    template: ChatTemplate,
    weights: WeightLoader,
    info: ModelInfo,
}

#[wasm_bindgen]
pub struct ModelLoader {
    ctx: GpuContext,
    context_length: Option<usize>,
    reader: StreamReader,
    loading: Option<Box<Loading>>,
    /// The first error, repeated to every later call: a failed load cannot continue.
    failed: Option<Error>,
    started: Instant,
}

#[wasm_bindgen]
impl ModelLoader {
    /// Open the WebGPU adapter and device. Rejects with `WEBGPU_UNAVAILABLE` when there is none.
    pub async fn create(options: JsValue) -> Result<ModelLoader, JsValue> {
        let started = Instant::now();
        let options: LoaderOptions =
            from_js(&options, "loader options").map_err(|e| js_error(&e))?;
        let gpu_options = GpuOptions {
            max_binding_size: options.max_binding_size.map(|n| n as u64),
            ..Default::default()
        };
        let ctx = GpuContext::new(&gpu_options)
            .await
            .map_err(|e| js_error(&e))?;
        Ok(ModelLoader {
            ctx,
            context_length: options.context_length,
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
            Some(l) => to_js(&l.info).map_err(|e| js_error(&e)),
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
            ctx,
            reader,
            loading,
            ..
        } = self;
        reader.push(chunk, &mut |event| handle(ctx, loading, event))
    }

    async fn finish_inner(&mut self) -> Result<WasmEngine> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        let ModelLoader {
            ctx,
            reader,
            loading,
            ..
        } = self;
        reader.finish(&mut |event| handle(ctx, loading, event))?;
        let Loading {
            config,
            tokenizer,
            template,
            weights,
            mut info,
        } = *self
            .loading
            .take()
            .ok_or_else(|| Error::ModelInvalid("the file ended before its header".into()))?;
        let weights = weights.finish(&config)?;
        let context = self
            .context_length
            .unwrap_or(config.context_length.min(DEFAULT_MAX_CONTEXT));
        let model = GpuModel::build(self.ctx.clone(), config.clone(), weights, context).await?;
        info.context_length_used = model.context_length();
        info.gpu_bytes = model.gpu_bytes();
        info.load_seconds = self.started.elapsed().as_secs_f64();
        let engine = Engine::from_parts(config, tokenizer, template, Box::new(model));
        Ok(WasmEngine::new(engine, info, &self.ctx))
    }
}

/// One event of the stream reader: the header sets up the load, tensor pieces go to the GPU.
fn handle(ctx: &GpuContext, loading: &mut Option<Box<Loading>>, event: Event<'_>) -> Result<()> {
    match event {
        Event::Header(header) => {
            let config = Config::from_header(header)?;
            let tokenizer = Tokenizer::from_gguf(&header.metadata)?;
            let template = ChatTemplate::from_metadata(&header.metadata, &tokenizer)?;
            let weights = WeightLoader::new(ctx, header, &config)?;
            let info = ModelInfo::new(header, &config, &template);
            *loading = Some(Box::new(Loading {
                config,
                tokenizer,
                template,
                weights,
                info,
            }));
            Ok(())
        }
        Event::TensorData {
            tensor,
            offset,
            bytes,
        } => match loading {
            Some(l) => l.weights.write(tensor, offset, bytes),
            None => Err(Error::ModelInvalid("tensor data before the header".into())),
        },
        Event::TensorDone { .. } => ctx.check(),
    }
}

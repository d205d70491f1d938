//! `WasmEngine`: generation and chat for JavaScript. Each call returns a Promise; tokens are
//! reported through a JS callback once per generated token, which is also where the caller
//! cancels (returning `false`), so an abort takes effect within one token.

use std::cell::RefCell;
use std::rc::Rc;

use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;

use super::convert::{from_js, js_error, options_from_js, to_js};
use crate::chat::{ChatTemplate, Message};
use crate::config::Config;
use crate::constraint::ResponseFormat;
use crate::embed::EmbedInput;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::generate::{GenerateOptions, Generation};
use crate::gguf::Header;
use crate::loader::{DeviceChoice, Target};
use crate::logprobs::LogprobEntry;
use crate::memory_budget::ContextReduced;
use crate::sampler::SamplingParams;
use crate::tools::{Tool, ToolCall, ToolChoice, ToolOptions};

/// The model as the page describes it (the facade's `modelInfo()`, `stats().model`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelInfo {
    pub architecture: String,
    pub name: Option<String>,
    pub file_type: Option<u64>,
    pub n_params: u64,
    /// Context the model was trained for.
    pub context_length: usize,
    /// The KV cache this engine allocated (set when loading finishes).
    pub context_length_used: usize,
    /// Why `context_length_used` is shorter than the context asked for (the model's trained
    /// context, or the memory limit), if it is.
    pub context_reduced: Option<ContextReduced>,
    pub n_layer: usize,
    pub n_embd: usize,
    pub n_vocab: usize,
    /// Distinct tensor types, e.g. `["F32", "Q4_1", "Q8_0"]`.
    pub tensor_types: Vec<String>,
    /// Where the chat template came from: the file's own, or which built-in turn format.
    pub chat_template: String,
    pub gpu_bytes: u64,
    /// Memory the CPU engine holds (weights, KV cache, activations); 0 on the GPU.
    pub cpu_bytes: u64,
    pub load_seconds: f64,
}

impl ModelInfo {
    pub fn new(header: &Header, config: &Config, template: &ChatTemplate) -> ModelInfo {
        let mut tensor_types: Vec<String> = header
            .tensors
            .iter()
            .map(|t| t.ty.name().to_owned())
            .collect();
        tensor_types.sort();
        tensor_types.dedup();
        ModelInfo {
            architecture: config.architecture.clone(),
            name: header.metadata.get_str("general.name").map(str::to_owned),
            file_type: header.metadata.get_u64("general.file_type"),
            n_params: header.tensors.iter().map(|t| t.n_elements()).sum(),
            context_length: config.context_length,
            context_length_used: 0,
            context_reduced: None,
            n_layer: config.n_layer,
            n_embd: config.n_embd,
            n_vocab: config.n_vocab,
            tensor_types,
            chat_template: template.describe_origin(),
            gpu_bytes: 0,
            cpu_bytes: 0,
            load_seconds: 0.0,
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct EngineInfo<'a> {
    model: &'a ModelInfo,
    /// "gpu" or "cpu" (or "reference"), and why it was chosen.
    device: &'a str,
    device_reason: &'a str,
    /// The WebGPU adapter, or the CPU engine's instruction set and threads.
    adapter: &'a str,
    features: Features,
    context_length: usize,
    context_reduced: &'a Option<ContextReduced>,
    gpu_bytes: u64,
    cpu_bytes: u64,
    load_seconds: f64,
    /// Mean CPU time to encode a decode step, µs (GPU engine, once it has decoded).
    encode_us_per_token: Option<f64>,
    /// The GPU engine's pipelines with their compile times, in compile order (empty on the CPU).
    compiled_kernels: Vec<crate::gpu::context::CompiledKernel>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Features {
    shader_f16: bool,
    subgroups: bool,
}

/// Generation options as JS passes them: OpenAI's and llama.cpp's snake_case names, all
/// optional (the facade maps `generate()`'s camelCase options to these; `chat.completions`
/// params already have them). A key not listed here is refused (`options_from_js`).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct WebGenOptions {
    max_tokens: Option<usize>,
    /// The sampling parameters under their own names (`SamplingParams`: temperature, top_k,
    /// top_p, min_p, the penalties, logit_bias, seed); a missing one takes its default.
    #[serde(flatten)]
    sampling: SamplingParams,
    stop: Vec<String>,
    ignore_eos: bool,
    /// OpenAI's `response_format`, plus `grammar` and `regex` (see `constraint.rs`).
    response_format: ResponseFormat,
    /// OpenAI's `tools`, `tool_choice` and `parallel_tool_calls` (chat only; `tools/`).
    tools: Vec<Tool>,
    tool_choice: ToolChoice,
    parallel_tool_calls: Option<bool>,
    /// OpenAI's `logprobs` and `top_logprobs` (`logprobs.rs`).
    logprobs: bool,
    top_logprobs: Option<usize>,
}

impl WebGenOptions {
    fn into_options(self) -> GenerateOptions {
        GenerateOptions {
            max_tokens: self
                .max_tokens
                .unwrap_or(GenerateOptions::default().max_tokens),
            sampling: self.sampling,
            stop: self.stop,
            ignore_eos: self.ignore_eos,
            response_format: self.response_format,
            tools: ToolOptions {
                tools: self.tools,
                tool_choice: self.tool_choice,
                parallel_tool_calls: self.parallel_tool_calls,
            },
            logprobs: self.logprobs.then_some(self.top_logprobs.unwrap_or(0)),
        }
    }
}

/// What a finished generation reports to JS: the package's `GenerationResult`, camelCase like
/// everything of ours at the boundary (its `toolCalls` elements are OpenAI objects).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct GenResult {
    text: String,
    /// The calls the reply made (OpenAI's `message.tool_calls`).
    tool_calls: Vec<ToolCall>,
    /// One OpenAI `logprobs.content` entry per generated token, when asked (OpenAI's object,
    /// so its fields keep their snake_case).
    logprobs: Vec<LogprobEntry>,
    /// `StopReason::as_str`: "stop" (an end-of-generation token, a stop string, a complete
    /// format), "length" (a token or context limit), "tool_calls", "abort" (cancelled).
    finish_reason: &'static str,
    prompt_tokens: usize,
    cached_prompt_tokens: usize,
    completion_tokens: usize,
    prefill_tokens_per_s: f64,
    decode_tokens_per_s: f64,
    time_to_first_token_s: f64,
    prefill_s: f64,
    decode_s: f64,
}

impl GenResult {
    fn new(g: Generation) -> GenResult {
        GenResult {
            finish_reason: g.stop_reason.as_str(),
            prompt_tokens: g.stats.prompt_tokens,
            cached_prompt_tokens: g.stats.cached_prompt_tokens,
            completion_tokens: g.stats.generated_tokens,
            prefill_tokens_per_s: g.stats.prefill_tokens_per_second(),
            decode_tokens_per_s: g.stats.decode_tokens_per_second(),
            time_to_first_token_s: g.stats.time_to_first_token_seconds,
            prefill_s: g.stats.prefill_seconds,
            decode_s: g.stats.decode_seconds,
            text: g.text,
            tool_calls: g.tool_calls,
            logprobs: g.logprobs,
        }
    }
}

/// One input of `embed`: text, or token ids as they are (OpenAI's `input` takes both).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum WebEmbedInput {
    Text(String),
    Ids(Vec<u32>),
}

/// Embed `inputs` (`Engine::embed_async`) into `{data, dimensions, promptTokens, pooling}`:
/// `data` one Float32Array of every unit vector in input order, `dimensions` values each.
#[allow(clippy::await_holding_refcell_ref)] // the borrow is the "one call at a time" rule
async fn embed(engine: &RefCell<Engine>, inputs: &JsValue) -> Result<JsValue> {
    let inputs = match from_js::<Option<Vec<WebEmbedInput>>>(inputs, "embedding input")? {
        Some(inputs) if !inputs.is_empty() => inputs,
        _ => {
            return Err(Error::InvalidArgument(
                "the input must be a non-empty array of strings or of token id arrays".into(),
            ))
        }
    };
    let inputs: Vec<EmbedInput> = inputs
        .into_iter()
        .map(|input| match input {
            WebEmbedInput::Text(text) => EmbedInput::Text(text),
            WebEmbedInput::Ids(ids) => EmbedInput::Ids(ids),
        })
        .collect();
    let mut engine = engine
        .try_borrow_mut()
        .map_err(|_| Error::Busy("a generation is already running".into()))?;
    let result = engine.embed_async(&inputs).await?;
    let flat: Vec<f32> = result.vectors.concat();
    let out = js_sys::Object::new();
    // Setting properties on a fresh plain object cannot fail.
    for (key, value) in [
        ("data", js_sys::Float32Array::from(flat.as_slice()).into()),
        ("dimensions", JsValue::from(engine.config.n_embd as u32)),
        ("promptTokens", JsValue::from(result.prompt_tokens as u32)),
        ("pooling", JsValue::from_str(result.pooling.as_str())),
    ] {
        let _ = js_sys::Reflect::set(&out, &key.into(), &value);
    }
    Ok(out.into())
}

/// What to run: a raw prompt or a conversation.
enum Prompt {
    Text(String),
    Chat(Vec<Message>),
}

#[wasm_bindgen]
pub struct WasmEngine {
    /// Shared with the futures of running calls; the RefCell's borrow is the "one generation
    /// at a time" rule (a second call gets `ENGINE_BUSY`; the facade queues instead).
    pub(super) engine: Rc<RefCell<Engine>>,
    info: ModelInfo,
    adapter: String,
    features: Features,
    /// "gpu" / "cpu" / "reference" and why (a copy of `Engine::device`: `info()` must answer
    /// while a generation holds the engine).
    device: (&'static str, String),
    /// The GPU context, for `onDeviceLost` (`None` on the CPU engine).
    gpu: Option<crate::gpu::GpuContext>,
    /// `onDeviceLost` listeners of this engine, dropped with it.
    lost_listeners: RefCell<Vec<u64>>,
}

thread_local! {
    /// `onDeviceLost` functions by id: the device-lost hook (`GpuContext::on_lost`) must be
    /// `Send`, a JS function is not, and wgpu calls the hook on this thread (the page's or the
    /// worker's, from the `GPUDevice.lost` promise).
    static LOST_LISTENERS: RefCell<std::collections::HashMap<u64, js_sys::Function>> =
        RefCell::default();
    static NEXT_LISTENER: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

impl Drop for WasmEngine {
    fn drop(&mut self) {
        let ids = self.lost_listeners.take();
        LOST_LISTENERS.with(|l| {
            let mut l = l.borrow_mut();
            ids.iter().for_each(|id| drop(l.remove(id)));
        });
    }
}

impl WasmEngine {
    pub(super) fn new(engine: Engine, info: ModelInfo, choice: &DeviceChoice) -> WasmEngine {
        let (adapter, features) = match &choice.target {
            Target::Gpu(ctx) => (
                ctx.describe(),
                Features {
                    shader_f16: ctx.features.shader_f16,
                    subgroups: ctx.features.subgroups,
                },
            ),
            Target::Cpu | Target::Reference => (
                engine.backend_stats().device,
                Features {
                    shader_f16: false,
                    subgroups: false,
                },
            ),
        };
        let gpu = match &choice.target {
            Target::Gpu(ctx) => Some((**ctx).clone()),
            Target::Cpu | Target::Reference => None,
        };
        WasmEngine {
            engine: Rc::new(RefCell::new(engine)),
            info,
            adapter,
            features,
            device: (choice.kind(), choice.reason.clone()),
            gpu,
            lost_listeners: RefCell::default(),
        }
    }

    fn run(&self, prompt: Prompt, options: JsValue, on_token: js_sys::Function) -> js_sys::Promise {
        let engine = self.engine.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let mut callback_error = None;
            let result = run(&engine, prompt, &options, &on_token, &mut callback_error).await;
            if let Some(thrown) = callback_error {
                // The page's own exception wins: it is what its author will look for.
                return Err(thrown);
            }
            result.map_err(|e| js_error(&e))
        })
    }
}

// Holding the borrow across the GPU awaits is the point: it is what makes a second call see
// the engine busy instead of interleaving with this one.
#[allow(clippy::await_holding_refcell_ref)]
async fn run(
    engine: &RefCell<Engine>,
    prompt: Prompt,
    options: &JsValue,
    on_token: &js_sys::Function,
    callback_error: &mut Option<JsValue>,
) -> Result<JsValue> {
    let options = logit_bias_ids(options)?;
    let options = options_from_js::<WebGenOptions>(&options, "generation option")?.into_options();
    let mut engine = engine
        .try_borrow_mut()
        .map_err(|_| Error::Busy("a generation is already running".into()))?;
    // The token's logprobs go with its piece, for a stream's chunks.
    let mut on_piece = |piece: &str, entry: Option<&LogprobEntry>| match entry
        .map(to_js)
        .transpose()
        .map_err(|e| js_error(&e))
        .and_then(|entry| {
            let entry = entry.unwrap_or(JsValue::UNDEFINED);
            on_token.call2(&JsValue::NULL, &JsValue::from_str(piece), &entry)
        }) {
        Ok(v) => v.as_bool() != Some(false),
        Err(thrown) => {
            *callback_error = Some(thrown);
            false
        }
    };
    let generation = match prompt {
        Prompt::Text(text) => {
            let ids = engine.encode_prompt(&text)?;
            engine
                .generate_ids_async(&ids, &options, &mut on_piece)
                .await?
        }
        Prompt::Chat(messages) => {
            engine
                .chat_async(&messages, &options, &mut on_piece)
                .await?
        }
    };
    to_js(&GenResult::new(generation))
}

/// OpenAI's `logit_bias` is an object keyed by token ids as strings; `SamplingParams` holds them
/// as numbers, which serde cannot read from string keys through the flattened options. So the
/// object crosses as a `Map` from numbers; a key that is not a token id is INVALID_ARGUMENT.
fn logit_bias_ids(options: &JsValue) -> Result<JsValue> {
    let bias = match options.dyn_ref::<js_sys::Object>() {
        Some(object) => js_sys::Reflect::get(object, &"logit_bias".into()).unwrap_or_default(),
        None => return Ok(options.clone()),
    };
    let Some(bias) = bias
        .dyn_ref::<js_sys::Object>()
        .filter(|_| !bias.is_instance_of::<js_sys::Map>() && !js_sys::Array::is_array(&bias))
    else {
        return Ok(options.clone());
    };
    let ids = js_sys::Map::new();
    for entry in js_sys::Object::entries(bias).iter() {
        let entry: js_sys::Array = entry.unchecked_into();
        let key = entry.get(0).as_string().unwrap_or_default();
        let id: u32 = key
            .parse()
            .ok()
            .filter(|_| key.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "generation option \"logit_bias\": {key:?} is not a token id"
                ))
            })?;
        ids.set(&JsValue::from(id), &entry.get(1));
    }
    let copy = js_sys::Object::assign(&js_sys::Object::new(), options.unchecked_ref());
    // Setting a property on a fresh plain object cannot fail.
    let _ = js_sys::Reflect::set(&copy, &"logit_bias".into(), &ids);
    Ok(copy.into())
}

#[wasm_bindgen]
impl WasmEngine {
    /// Continue a raw text prompt; `on_token(piece)` is called after every generated token.
    pub fn generate(
        &self,
        prompt: String,
        options: JsValue,
        on_token: js_sys::Function,
    ) -> js_sys::Promise {
        self.run(Prompt::Text(prompt), options, on_token)
    }

    /// Reply to `[{role, content}, ...]` through the model's chat template.
    pub fn chat(
        &self,
        messages: JsValue,
        options: JsValue,
        on_token: js_sys::Function,
    ) -> js_sys::Promise {
        let messages = match from_js::<Option<Vec<Message>>>(&messages, "messages") {
            Ok(Some(m)) if !m.is_empty() => m,
            Ok(_) => {
                let e = Error::InvalidArgument("messages must be a non-empty array".into());
                return js_sys::Promise::reject(&js_error(&e));
            }
            Err(e) => return js_sys::Promise::reject(&js_error(&e)),
        };
        self.run(Prompt::Chat(messages), options, on_token)
    }

    /// Embed an array of inputs (strings or token id arrays) with an embedding model:
    /// `{data: Float32Array, dimensions, promptTokens, pooling}` (see `embed`).
    pub fn embed(&self, inputs: JsValue) -> js_sys::Promise {
        let engine = self.engine.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            embed(&engine, &inputs).await.map_err(|e| js_error(&e))
        })
    }

    /// The model, adapter and load figures.
    pub fn info(&self) -> Result<JsValue, JsValue> {
        let stats = self.engine.try_borrow().ok().map(|e| e.backend_stats());
        to_js(&EngineInfo {
            model: &self.info,
            device: self.device.0,
            device_reason: &self.device.1,
            adapter: &self.adapter,
            features: Features {
                shader_f16: self.features.shader_f16,
                subgroups: self.features.subgroups,
            },
            context_length: self.info.context_length_used,
            context_reduced: &self.info.context_reduced,
            gpu_bytes: self.info.gpu_bytes,
            cpu_bytes: self.info.cpu_bytes,
            load_seconds: self.info.load_seconds,
            // Between calls the engine is free; during one, the figures are left out.
            encode_us_per_token: stats
                .as_ref()
                .map(|s| s.encode_us_per_token)
                .filter(|us| *us > 0.0),
            compiled_kernels: stats.map(|s| s.compiled_kernels).unwrap_or_default(),
        })
        .map_err(|e| js_error(&e))
    }

    /// Tokens of a raw prompt (as `generate` would run it).
    #[wasm_bindgen(js_name = countTokens)]
    pub fn count_tokens(&self, text: &str) -> Result<u32, JsValue> {
        let engine = self
            .engine
            .try_borrow()
            .map_err(|_| js_error(&Error::Busy("a generation is running".into())))?;
        let ids = engine.encode_prompt(text).map_err(|e| js_error(&e))?;
        Ok(ids.len() as u32)
    }

    /// Call `listener(error)` (a `DEVICE_LOST` error) once if the GPU device is lost while this
    /// engine lives, even between calls (a driver reset, a backgrounded mobile tab); never for
    /// `free()`'s own release, never on the CPU engine.
    #[wasm_bindgen(js_name = onDeviceLost)]
    pub fn on_device_lost(&self, listener: js_sys::Function) {
        let Some(ctx) = &self.gpu else {
            return;
        };
        let id = NEXT_LISTENER.with(|n| {
            n.set(n.get() + 1);
            n.get()
        });
        LOST_LISTENERS.with(|l| l.borrow_mut().insert(id, listener));
        self.lost_listeners.borrow_mut().push(id);
        ctx.on_lost(move |reason| {
            let listener = LOST_LISTENERS.with(|l| l.borrow_mut().remove(&id));
            if let Some(f) = listener {
                let error = js_error(&Error::DeviceLost(reason.to_string()));
                // The listener's own exception is the page's business.
                let _ = f.call1(&JsValue::NULL, &error);
            }
        });
    }

    /// Forget the conversation held in the KV cache.
    pub fn reset(&self) -> Result<(), JsValue> {
        let mut engine = self
            .engine
            .try_borrow_mut()
            .map_err(|_| js_error(&Error::Busy("a generation is running".into())))?;
        engine.reset();
        Ok(())
    }
}

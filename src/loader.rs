//! One loading path for every backend. A GGUF's header decides the model (config, tokenizer,
//! chat template); its tensor bytes, as they arrive from a file or a stream, in file order and
//! pieces of any size, go into the chosen backend's weight sink — GPU buffers (`WeightLoader`)
//! or CPU memory (`TensorCollector`) — and `finish` ends in an `Engine` over a
//! `Box<dyn Backend>`. `Engine::load` (a file) and the web's `ModelLoader` (a stream) both
//! drive it; the device is chosen once, before the header, by `choose_device`.

use crate::chat::ChatTemplate;
use crate::config::Config;
use crate::cpu::weights::{CpuWeights, TensorCollector};
use crate::cpu::CpuModel;
use crate::engine::{Device, Engine};
use crate::error::{Error, Result};
use crate::generate::Backend;
use crate::gguf::{Event, Header};
use crate::gpu::{GpuContext, GpuOptions};
use crate::memory_budget::{cpu_need, fit_context, gpu_need, ContextReduced, MemoryLimit};
use crate::model::{GpuModel, WeightLoader};
use crate::reference::ReferenceModel;
use crate::tokenizer::Tokenizer;

/// The device a load runs on, once chosen.
#[derive(Clone)]
pub enum Target {
    Gpu(Box<GpuContext>),
    /// The CPU engine (`cpu::CpuModel`).
    Cpu,
    /// The f32 oracle (`reference::ReferenceModel`): tests and comparisons.
    Reference,
}

/// The device chosen for a load and why ("no hardware GPU: ...").
#[derive(Clone)]
pub struct DeviceChoice {
    pub target: Target,
    pub reason: String,
}

impl DeviceChoice {
    /// "gpu", "cpu" or "reference".
    pub fn kind(&self) -> &'static str {
        match self.target {
            Target::Gpu(_) => "gpu",
            Target::Cpu => "cpu",
            Target::Reference => "reference",
        }
    }
}

/// Resolve `device`: `Auto` takes the GPU when the adapter is hardware, and the CPU engine when
/// there is no adapter or only a software one (SwiftShader, lavapipe, llvmpipe, a browser's
/// fallback adapter), which decodes slower than the CPU engine on the same cores.
pub async fn choose_device(device: Device, gpu: &GpuOptions) -> Result<DeviceChoice> {
    let choice = |target, reason: String| Ok(DeviceChoice { target, reason });
    match device {
        Device::Gpu => {
            let ctx = GpuContext::new(gpu).await?;
            let reason = format!("asked for the GPU: {}", ctx.describe());
            choice(Target::Gpu(Box::new(ctx)), reason)
        }
        Device::Cpu => choice(Target::Cpu, "asked for the CPU".into()),
        Device::Reference => choice(Target::Reference, "asked for the f32 reference".into()),
        Device::Auto => match GpuContext::new(gpu).await {
            Ok(ctx) if !ctx.is_software() => {
                let reason = format!("hardware GPU: {}", ctx.describe());
                choice(Target::Gpu(Box::new(ctx)), reason)
            }
            Ok(ctx) => choice(
                Target::Cpu,
                format!("no hardware GPU (the adapter is {})", ctx.describe()),
            ),
            Err(Error::WebGpuUnavailable(_)) => choice(Target::Cpu, "no GPU adapter".into()),
            Err(e) => choice(Target::Cpu, format!("the GPU did not start ({e})")),
        },
    }
}

/// Memory the CPU engine may hold in wasm32 by default: its 4 GiB address space, less room for
/// the module, the tokenizer and the allocator's slack. Natively the operating system decides
/// (an allocation that fails is an error, not an abort).
#[cfg(target_arch = "wasm32")]
const CPU_MEMORY_LIMIT: Option<u64> = Some((4 << 30) - (256 << 20));
#[cfg(not(target_arch = "wasm32"))]
const CPU_MEMORY_LIMIT: Option<u64> = None;

/// What a load is asked for besides the device (whose GPU budget is
/// `GpuOptions::max_gpu_bytes`).
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// KV cache positions; `None`: the model's, capped at `DEFAULT_MAX_CONTEXT`. Fitted to the
    /// memory limit (`memory_budget::fit_context`), and the reduction reported.
    pub context_length: Option<usize>,
    /// Memory the CPU engine (or the f32 reference) may hold; `None`: wasm32's address space
    /// less 256 MiB in a browser, no limit natively.
    pub max_cpu_bytes: Option<u64>,
}

/// Where the tensor bytes go.
enum Sink {
    Gpu {
        ctx: Box<GpuContext>,
        weights: Box<WeightLoader>,
    },
    Cpu {
        header: Box<Header>,
        tensors: TensorCollector,
        reference: bool,
    },
}

/// A load in progress: the header has been read; tensor bytes are arriving.
pub struct Loading {
    pub config: Config,
    pub tokenizer: Tokenizer,
    pub template: ChatTemplate,
    /// KV cache positions the engine will have.
    pub context: usize,
    /// Why `context` is shorter than the one asked for, if it is.
    pub context_reduced: Option<ContextReduced>,
    sink: Sink,
}

impl Loading {
    /// Set up a load of the model `header` describes on `target`. The memory the model needs
    /// is counted from the header first (`memory_budget.rs`): the context is fitted to the
    /// device's limit, or a model that fits no context is refused, here, before any weight is
    /// allocated and before the rest of a download arrives.
    pub fn new(header: &Header, target: &Target, options: &LoadOptions) -> Result<Self> {
        let config = Config::from_header(header)?;
        let fit = match target {
            Target::Gpu(ctx) => {
                let limit = ctx.max_gpu_bytes.map(|bytes| MemoryLimit {
                    bytes,
                    what: "the GPU budget (max_gpu_bytes)".into(),
                });
                let need = |context| gpu_need(ctx, header, &config, context);
                fit_context(
                    options.context_length,
                    config.context_length,
                    limit.as_ref(),
                    need,
                )?
            }
            Target::Cpu | Target::Reference => {
                let limit = options
                    .max_cpu_bytes
                    .or(CPU_MEMORY_LIMIT)
                    .map(|bytes| MemoryLimit {
                        bytes,
                        what: "the CPU engine's memory limit".into(),
                    });
                let need = |context| Ok(cpu_need(header, &config, context));
                fit_context(
                    options.context_length,
                    config.context_length,
                    limit.as_ref(),
                    need,
                )?
            }
        };
        let context = fit.context;
        let tokenizer = Tokenizer::from_gguf(&header.metadata)?;
        let template = ChatTemplate::from_metadata(&header.metadata, &tokenizer)?;
        let sink = match target {
            Target::Gpu(ctx) => Sink::Gpu {
                weights: Box::new(WeightLoader::new(ctx, header, &config)?),
                ctx: ctx.clone(),
            },
            Target::Cpu | Target::Reference => Sink::Cpu {
                header: Box::new(header.clone()),
                tensors: TensorCollector::new(header, &config, context),
                reference: matches!(target, Target::Reference),
            },
        };
        Ok(Loading {
            config,
            tokenizer,
            template,
            context,
            context_reduced: fit.reduced,
            sink,
        })
    }

    /// Tensor bytes (`offset..` of tensor `tensor`, header order) or the end of a tensor, as
    /// a `StreamReader` or `GgufFile::stream_tensors` hands them out.
    pub fn accept(&mut self, event: Event<'_>) -> Result<()> {
        match (event, &mut self.sink) {
            (Event::Header(_), _) => Err(Error::ModelInvalid("a second header".into())),
            (
                Event::TensorData {
                    tensor,
                    offset,
                    bytes,
                },
                Sink::Gpu { weights, .. },
            ) => weights.write(tensor, offset, bytes),
            (
                Event::TensorData {
                    tensor,
                    offset,
                    bytes,
                },
                Sink::Cpu { tensors, .. },
            ) => tensors.write(tensor, offset, bytes),
            // Surface any GPU error the tensor's uploads raised.
            (Event::TensorDone { .. }, Sink::Gpu { ctx, .. }) => ctx.check(),
            (Event::TensorDone { .. }, Sink::Cpu { .. }) => Ok(()),
        }
    }

    /// Every tensor has arrived: build the backend and the engine.
    pub async fn finish(self) -> Result<Engine> {
        let Loading {
            config,
            tokenizer,
            template,
            context,
            context_reduced,
            sink,
        } = self;
        let backend: Box<dyn Backend> = match sink {
            Sink::Gpu { ctx, weights } => {
                let weights = weights.finish(&config)?;
                Box::new(GpuModel::build(*ctx, config.clone(), weights, context).await?)
            }
            Sink::Cpu {
                header,
                mut tensors,
                reference,
            } => {
                let read = |info: &_| tensors.take(&header, info);
                let w = CpuWeights::load(&header, &config, context, read)?;
                match reference {
                    true => Box::new(ReferenceModel::new(config.clone(), w, context)?),
                    false => Box::new(CpuModel::new(config.clone(), w, context)?),
                }
            }
        };
        let mut engine = Engine::from_parts(config, tokenizer, template, backend);
        engine.set_context_reduced(context_reduced);
        Ok(engine)
    }
}

/// Load a GGUF file from disk onto `choice`'s device, each tensor read in 1 MiB pieces and
/// handed to the sink as a stream would.
#[cfg(not(target_arch = "wasm32"))]
pub fn load_file(
    file: &crate::gguf::GgufFile,
    choice: &DeviceChoice,
    options: &LoadOptions,
) -> Result<Engine> {
    load_file_until(file, choice, options, &|| false)
}

/// [`load_file`] that asks `stop` before each piece: when it says yes (the CLI's Ctrl-C) the
/// load ends with an `IO_ERROR` of kind `Interrupted` within one piece, the weights read so
/// far dropped.
#[cfg(not(target_arch = "wasm32"))]
pub fn load_file_until(
    file: &crate::gguf::GgufFile,
    choice: &DeviceChoice,
    options: &LoadOptions,
    stop: &dyn Fn() -> bool,
) -> Result<Engine> {
    let mut loading = Loading::new(&file.header, &choice.target, options)?;
    file.stream_tensors(&mut |event| match stop() {
        true => Err(Error::io(
            "loading the model",
            std::io::ErrorKind::Interrupted.into(),
        )),
        false => loading.accept(event),
    })?;
    let mut engine = pollster::block_on(loading.finish())?;
    engine.set_device_choice(choice);
    Ok(engine)
}

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
use crate::engine::{Device, Engine, DEFAULT_MAX_CONTEXT};
use crate::error::{Error, Result};
use crate::generate::Backend;
use crate::gguf::{Event, Header};
use crate::gpu::{GpuContext, GpuOptions};
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

/// Memory the CPU engine may hold in wasm32: its 4 GiB address space, less room for the
/// module, the tokenizer and the allocator's slack.
/// Natively the operating system decides (an allocation that fails is an error, not an abort).
#[cfg(target_arch = "wasm32")]
const CPU_MEMORY_LIMIT: Option<u64> = Some((4 << 30) - (256 << 20));
#[cfg(not(target_arch = "wasm32"))]
const CPU_MEMORY_LIMIT: Option<u64> = None;

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
    sink: Sink,
}

impl Loading {
    /// Set up a load of the model `header` describes on `target`. A model that cannot fit
    /// the CPU engine's memory is refused here, before its weights are downloaded.
    pub fn new(header: &Header, target: &Target, context_length: Option<usize>) -> Result<Self> {
        let config = Config::from_header(header)?;
        let context = context_length
            .unwrap_or(config.context_length.min(DEFAULT_MAX_CONTEXT))
            .min(config.context_length);
        if context < 2 {
            return Err(Error::InvalidArgument(format!(
                "context length {context} is too small"
            )));
        }
        if !matches!(target, Target::Gpu(_)) {
            check_cpu_memory(header, &config, context)?;
        }
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
        Ok(Engine::from_parts(config, tokenizer, template, backend))
    }
}

/// Refuse, with the sizes, a model whose weights and KV cache exceed what the CPU engine can
/// address (wasm32's 4 GiB).
fn check_cpu_memory(header: &Header, config: &Config, context: usize) -> Result<()> {
    let Some(limit) = CPU_MEMORY_LIMIT else {
        return Ok(());
    };
    let weights = TensorCollector::bytes_kept(header, config, context);
    let cache = 2 * 4 * (config.n_layer as u64 * context as u64 * config.kv_dim() as u64);
    if weights.saturating_add(cache) > limit {
        return Err(Error::ModelTooLarge(format!(
            "the CPU engine needs {} MiB ({} MiB of weights, {} MiB of KV cache for {context} \
             tokens) and can address {} MiB here",
            (weights + cache) >> 20,
            weights >> 20,
            cache >> 20,
            limit >> 20
        )));
    }
    Ok(())
}

/// Load a GGUF file from disk onto `choice`'s device, each tensor read in 1 MiB pieces and
/// handed to the sink as a stream would.
#[cfg(not(target_arch = "wasm32"))]
pub fn load_file(
    file: &crate::gguf::GgufFile,
    choice: &DeviceChoice,
    context_length: Option<usize>,
) -> Result<Engine> {
    let mut loading = Loading::new(&file.header, &choice.target, context_length)?;
    file.stream_tensors(&mut |event| loading.accept(event))?;
    let mut engine = pollster::block_on(loading.finish())?;
    engine.set_device_choice(choice);
    Ok(engine)
}

//! The command line's arguments (clap).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use llama_wgpu::constraint::{JsonSchema, ResponseFormat};
use llama_wgpu::engine::Device;
use llama_wgpu::generate::GenerateOptions;
use llama_wgpu::sampler::SamplingParams;
use llama_wgpu::tools::{ToolChoice, ToolOptions};
use llama_wgpu::{Error, Result};

#[derive(Parser)]
#[command(name = "llama-wgpu", version, about = "Run Llama-family GGUF models")]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Generate text from a raw prompt or one chat message, streaming it to stdout.
    Generate(GenerateArgs),
    /// Chat in the terminal: one user message per line, the model's reply streamed back.
    Chat(ChatArgs),
    /// Print the token ids of TEXT (or of JSON strings read one per line from stdin).
    Tokenize(TokenizeArgs),
    /// Embed each TEXT (or each non-empty stdin line) with an embedding model: one JSON object
    /// with a unit vector per input.
    Embed(EmbedArgs),
    /// Measure load time, prefill and decode speed.
    Bench(BenchArgs),
    /// Show a GGUF file's metadata and tensor table.
    Inspect {
        #[arg(long)]
        model: PathBuf,
    },
    /// Time each matvec kernel and the prefill matmul against a copy kernel (GB/s, GFLOP/s).
    BenchKernels {
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
        /// One shape per kernel, one run: checks the table runs, not a measurement.
        #[arg(long)]
        quick: bool,
    },
    /// Copy a GGUF's header (metadata, tokenizer, tensor table) and fill every tensor with
    /// random valid blocks: the same model shape for benchmarks where the weights cannot go.
    Synth {
        /// A GGUF, or just its header (as written by --header-only).
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// Write only the header (a few MB: what travels to the benchmark machine).
        #[arg(long)]
        header_only: bool,
    },
    /// Write a random LoRA adapter for a model (every projection, llama.cpp's adapter format):
    /// for benchmarks and tests of adapter support; it changes the text meaninglessly.
    SynthLora {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 16)]
        rank: usize,
        /// `adapter.lora.alpha` (default: the rank, so a scale of 1 applies B A as is).
        #[arg(long)]
        alpha: Option<f32>,
        /// Half-width of the uniform `lora_b` values.
        #[arg(long, default_value_t = 0.02)]
        amplitude: f32,
        /// F32 or F16.
        #[arg(long = "type", default_value = "F16")]
        ty: String,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Rewrite a GGUF with its matrices requantized (llama.cpp's reference quantizers).
    Quantize {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// Q8_0, Q4_0 or Q4_1.
        #[arg(long = "type")]
        ty: String,
    },
}

#[derive(Args)]
pub(crate) struct ModelArgs {
    /// Path to a GGUF file.
    #[arg(long)]
    pub(crate) model: PathBuf,
    /// Where the decoder runs: `auto` (the GPU when the adapter is hardware, else the CPU
    /// engine), `gpu` (WGSL kernels through wgpu), `cpu` (the CPU engine: quantized SIMD
    /// kernels) or `reference` (the f32 reference decoder, for comparisons).
    #[arg(long, default_value = "auto", value_parser = parse_device)]
    pub(crate) device: Device,
    /// KV cache length in tokens (default: the model's, at most 4096). Fitted to the memory
    /// limit: a shorter context is reported on stderr (and in --json).
    #[arg(long)]
    pub(crate) context_length: Option<usize>,
    /// Total GPU memory the model may take: bytes, or with a suffix K, M or G (binary: 512M,
    /// 2G). Default: no total (wgpu does not say how much memory the GPU has); the adapter's
    /// buffer limits are checked either way.
    #[arg(long, value_parser = parse_bytes)]
    pub(crate) max_gpu_bytes: Option<u64>,
    /// Memory the CPU engine may hold, as --max-gpu-bytes (default: no limit).
    #[arg(long, value_parser = parse_bytes)]
    pub(crate) max_cpu_bytes: Option<u64>,
    /// Do not use the adapter's shader-f16 (the KV cache stays f32).
    #[arg(long)]
    pub(crate) no_f16: bool,
    /// Do not use the adapter's subgroup operations.
    #[arg(long)]
    pub(crate) no_subgroups: bool,
    /// Kernel family: `auto` (from the adapter), `emulator` (shaped for CPU emulations of a
    /// GPU) or `gpu` (shaped for real GPUs). For comparisons; `auto` is what users get.
    #[arg(long, value_enum, default_value_t = Kernels::Auto)]
    pub(crate) kernels: Kernels,
    /// Pipelined decode steps: `auto` (on real GPUs), `on` or `off`.
    #[arg(long, value_enum, default_value_t = Pipeline::Auto)]
    pub(crate) pipeline: Pipeline,
    /// A LoRA adapter GGUF (llama.cpp's format) applied with a scale (default 1), as FILE or
    /// FILE:SCALE. Repeat for several adapters at once.
    #[arg(long = "lora", value_name = "FILE[:SCALE]", value_parser = parse_lora)]
    pub(crate) lora: Vec<(PathBuf, f32)>,
}

/// `--kernels`: which kernel family the GPU decoder compiles (`GpuOptions::emulator_kernels`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Kernels {
    Auto,
    Emulator,
    Gpu,
}

impl Kernels {
    /// `GpuOptions::emulator_kernels`: `None` decides from the adapter.
    pub(crate) fn emulator(self) -> Option<bool> {
        match self {
            Kernels::Auto => None,
            Kernels::Emulator => Some(true),
            Kernels::Gpu => Some(false),
        }
    }
}

/// `--pipeline`: whether decode steps are submitted ahead (`GpuOptions::pipelined_decode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Pipeline {
    Auto,
    On,
    Off,
}

impl Pipeline {
    pub(crate) fn pipelined(self) -> Option<bool> {
        match self {
            Pipeline::Auto => None,
            Pipeline::On => Some(true),
            Pipeline::Off => Some(false),
        }
    }
}

/// `--device`, through the library's own parser (its message names the choices).
fn parse_device(text: &str) -> std::result::Result<Device, String> {
    text.parse::<Device>().map_err(|e| match e {
        Error::InvalidArgument(message) => message,
        other => other.to_string(),
    })
}

/// "adapter.gguf" (scale 1) or "adapter.gguf:0.5": the scale is what follows the last colon
/// when it is a number.
fn parse_lora(text: &str) -> std::result::Result<(PathBuf, f32), String> {
    let (path, scale) = match text.rsplit_once(':') {
        Some((path, scale)) if !path.is_empty() => match scale.parse::<f32>() {
            Ok(s) if s.is_finite() => (path, s),
            Ok(_) => return Err(format!("`{text}`: the scale must be a finite number")),
            Err(_) => (text, 1.0),
        },
        _ => (text, 1.0),
    };
    Ok((PathBuf::from(path), scale))
}

/// "512M", "2G", "64K" (powers of 1024) or plain bytes, at least 1.
fn parse_bytes(text: &str) -> std::result::Result<u64, String> {
    let (digits, unit) = match text.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&text[..i], c.to_ascii_uppercase()),
        _ => (text, 'B'),
    };
    let shift = match unit {
        'B' => 0,
        'K' => 10,
        'M' => 20,
        'G' => 30,
        _ => {
            return Err(format!(
                "`{text}`: expected bytes, or a number with K, M or G"
            ))
        }
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}`: expected bytes, or a number with K, M or G"))?;
    match n.checked_mul(1 << shift) {
        Some(bytes) if bytes > 0 => Ok(bytes),
        _ => Err(format!("`{text}`: must be from 1 byte to 2^64")),
    }
}

#[derive(Args)]
pub(crate) struct SamplingArgs {
    #[arg(long, default_value_t = 256)]
    pub(crate) max_tokens: usize,
    /// 0 means greedy.
    #[arg(long, default_value_t = 0.8)]
    pub(crate) temperature: f32,
    /// 0 disables top-k.
    #[arg(long, default_value_t = 40)]
    pub(crate) top_k: usize,
    #[arg(long, default_value_t = 0.95)]
    pub(crate) top_p: f32,
    #[arg(long, default_value_t = 0.05)]
    pub(crate) min_p: f32,
    #[arg(long, default_value_t = 1.0)]
    pub(crate) repeat_penalty: f32,
    /// Subtracted once from the logit of each token seen in the last 64 (OpenAI's, in [-2, 2]).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub(crate) presence_penalty: f32,
    /// Subtracted from a token's logit once per time it was seen in the last 64 ([-2, 2]).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub(crate) frequency_penalty: f32,
    /// ID=BIAS: add BIAS (in [-100, 100]) to token ID's logit (repeatable).
    #[arg(long, value_name = "ID=BIAS", allow_negative_numbers = true)]
    pub(crate) logit_bias: Vec<String>,
    #[arg(long, default_value_t = 0)]
    pub(crate) seed: u64,
    /// Stop when the text contains this (repeatable).
    #[arg(long)]
    pub(crate) stop: Vec<String>,
    /// Hold the output to the JSON Schema in this file.
    #[arg(long, value_name = "FILE", group = "format")]
    pub(crate) json_schema: Option<PathBuf>,
    /// Hold the output to any JSON object.
    #[arg(long, group = "format")]
    pub(crate) json_object: bool,
    /// Hold the output to the Lark grammar in this file (llguidance's syntax).
    #[arg(long, value_name = "FILE", group = "format")]
    pub(crate) grammar: Option<PathBuf>,
    /// Hold the output to this regular expression.
    #[arg(long, group = "format")]
    pub(crate) regex: Option<String>,
    /// Offer the tools in this file (OpenAI's `tools`: a JSON array of
    /// `{"type": "function", "function": {"name", "description", "parameters"}}`); chat only.
    /// Calls are printed as JSON lines after the reply.
    #[arg(long, value_name = "FILE")]
    pub(crate) tools: Option<PathBuf>,
    /// `auto`, `none`, `required`, or the name of the one function to call.
    #[arg(
        long,
        value_name = "CHOICE",
        default_value = "auto",
        requires = "tools"
    )]
    pub(crate) tool_choice: String,
    /// Report each generated token's logprob and its N most likely alternatives (0-20; after
    /// logit bias, penalties and any response format, before top-k/top-p/min-p/temperature):
    /// in `--json` output, else on stderr after the reply.
    #[arg(long, value_name = "N")]
    pub(crate) logprobs: Option<usize>,
}

impl SamplingArgs {
    pub(crate) fn options(&self) -> Result<GenerateOptions> {
        let read = |path: &PathBuf| {
            std::fs::read_to_string(path).map_err(|source| Error::Io {
                context: format!("reading {}", path.display()),
                source,
            })
        };
        let response_format = if let Some(path) = &self.json_schema {
            let schema = serde_json::from_str(&read(path)?).map_err(|e| {
                Error::InvalidArgument(format!("{} is not JSON: {e}", path.display()))
            })?;
            ResponseFormat::JsonSchema {
                json_schema: JsonSchema {
                    name: None,
                    description: None,
                    schema,
                    strict: Some(true),
                },
            }
        } else if self.json_object {
            ResponseFormat::JsonObject
        } else if let Some(path) = &self.grammar {
            ResponseFormat::Grammar {
                grammar: read(path)?,
            }
        } else if let Some(regex) = &self.regex {
            ResponseFormat::Regex {
                regex: regex.clone(),
            }
        } else {
            ResponseFormat::Text
        };
        let tools = match &self.tools {
            Some(path) => serde_json::from_str(&read(path)?).map_err(|e| {
                Error::InvalidArgument(format!("{}: not a list of tools: {e}", path.display()))
            })?,
            None => Vec::new(),
        };
        let tool_choice = match self.tool_choice.as_str() {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "required" => ToolChoice::Required,
            name => ToolChoice::Function(name.to_string()),
        };
        let mut logit_bias = std::collections::BTreeMap::new();
        for entry in &self.logit_bias {
            let parsed = entry
                .split_once('=')
                .and_then(|(id, bias)| Some((id.parse::<u32>().ok()?, bias.parse::<f32>().ok()?)));
            let (id, bias) = parsed.ok_or_else(|| {
                Error::InvalidArgument(format!("--logit-bias {entry}: expected ID=BIAS"))
            })?;
            logit_bias.insert(id, bias);
        }
        Ok(GenerateOptions {
            max_tokens: self.max_tokens,
            sampling: SamplingParams {
                temperature: self.temperature,
                top_k: self.top_k,
                top_p: self.top_p,
                min_p: self.min_p,
                repeat_penalty: self.repeat_penalty,
                presence_penalty: self.presence_penalty,
                frequency_penalty: self.frequency_penalty,
                logit_bias,
                seed: self.seed,
                ..SamplingParams::default()
            },
            stop: self.stop.clone(),
            ignore_eos: false,
            response_format,
            tools: ToolOptions {
                tools,
                tool_choice,
                parallel_tool_calls: None,
            },
            logprobs: self.logprobs,
        })
    }
}

#[derive(Args)]
pub(crate) struct GenerateArgs {
    #[command(flatten)]
    pub(crate) model: ModelArgs,
    /// Raw text to continue (special-token text is parsed; BOS only if the model adds one).
    #[arg(long, conflicts_with = "chat", required_unless_present = "chat")]
    pub(crate) prompt: Option<String>,
    /// A user message, rendered through the model's chat template.
    #[arg(long)]
    pub(crate) chat: Option<String>,
    /// System message for --chat.
    #[arg(long, requires = "chat")]
    pub(crate) system: Option<String>,
    #[command(flatten)]
    pub(crate) sampling: SamplingArgs,
    /// Print one JSON object instead of streaming text.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Args)]
pub(crate) struct ChatArgs {
    #[command(flatten)]
    pub(crate) model: ModelArgs,
    #[arg(long)]
    pub(crate) system: Option<String>,
    #[command(flatten)]
    pub(crate) sampling: SamplingArgs,
}

#[derive(Args)]
pub(crate) struct BenchArgs {
    #[command(flatten)]
    pub(crate) model: ModelArgs,
    /// Prompt length in tokens.
    #[arg(long, default_value_t = 128)]
    pub(crate) prompt_tokens: usize,
    /// Greedy tokens generated after the prompt (end-of-text does not stop them).
    #[arg(long, default_value_t = 128)]
    pub(crate) gen_tokens: usize,
    #[arg(long, default_value_t = 3)]
    pub(crate) repeats: usize,
    /// Print one JSON object.
    #[arg(long)]
    pub(crate) json: bool,
    /// Instead of the run figures: time each kernel of a decode step alone (GPU only),
    /// after a prompt of --prompt-tokens tokens, averaged over --repeats steps.
    #[arg(long)]
    pub(crate) profile: bool,
}

#[derive(Args)]
pub(crate) struct TokenizeArgs {
    #[arg(long)]
    pub(crate) model: PathBuf,
    /// Recognise special-token text (e.g. `<|im_start|>`) as tokens.
    #[arg(long)]
    pub(crate) parse_special: bool,
    /// Add BOS/EOS as the model's metadata says.
    #[arg(long)]
    pub(crate) add_special: bool,
    pub(crate) text: Option<String>,
}

#[derive(Args)]
pub(crate) struct EmbedArgs {
    #[command(flatten)]
    pub(crate) model: ModelArgs,
    /// Pool as `mean`, `cls` or `last` whatever the file says: lets a generation model (no
    /// pooling type, refused otherwise) give vectors, for experiments.
    #[arg(long)]
    pub(crate) pooling: Option<String>,
    /// The inputs; without any, each non-empty line of stdin is one.
    pub(crate) texts: Vec<String>,
}

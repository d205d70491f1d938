//! `Engine`: a loaded model with its tokenizer and chat template, and a generation session.
//! This is the Rust API; the CLI and the web bindings are thin layers over it.

use crate::chat::{ChatTemplate, Message};
use crate::config::Config;
use crate::constraint::{Grammars, ResponseFormat};
use crate::cpu::CpuModel;
use crate::embed::{normalize, EmbedInput, Embeddings, Pooling};
use crate::error::{Error, Result};
use crate::generate::{
    Backend, BackendStats, GenerateOptions, Generation, HiddenFuture, OnToken, PrefillFuture,
    Session, StepFuture,
};
use crate::loader::DeviceChoice;
use crate::lora::LoraStack;

mod adapters;
use crate::memory_budget::ContextReduced;
use crate::model::GpuModel;
use crate::reference::ReferenceModel;
use crate::sampler::Sampler;
use crate::tokenizer::Tokenizer;
use crate::tools::{rewrite_tool_turns, ToolFormat, ToolPlan};

/// Where the decoder runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Device {
    /// The GPU when the adapter is hardware; the CPU engine when there is none or only a
    /// software one (`loader::choose_device`).
    #[default]
    Auto,
    /// WGSL kernels through wgpu on the machine's GPU adapter, whatever it is.
    Gpu,
    /// The CPU engine: quantized SIMD kernels, batched prefill, threads (`cpu::CpuModel`).
    Cpu,
    /// The f32 CPU oracle (`reference::ReferenceModel`): slow, for tests and comparisons.
    Reference,
}

impl std::str::FromStr for Device {
    type Err = Error;
    fn from_str(s: &str) -> Result<Device> {
        match s {
            "auto" => Ok(Device::Auto),
            "gpu" => Ok(Device::Gpu),
            "cpu" => Ok(Device::Cpu),
            "reference" => Ok(Device::Reference),
            other => Err(Error::InvalidArgument(format!(
                "unknown device `{other}` (auto, gpu, cpu or reference)"
            ))),
        }
    }
}

#[derive(Debug, Clone)]
pub struct EngineOptions {
    pub device: Device,
    /// KV cache length; `None` takes the model's trained context, capped at 4096 tokens so a
    /// 128k-context model does not reserve gigabytes by default. Fitted to the memory limit
    /// (`memory_budget.rs`): [`Engine::context_reduced`] says when and why it was reduced.
    pub context_length: Option<usize>,
    /// Adapter features the GPU kernels may use, the kernel family (for comparisons), and the
    /// GPU memory budget (`max_gpu_bytes`).
    pub gpu: crate::gpu::GpuOptions,
    /// Memory the CPU engine may hold (`None`: no limit natively; 4 GiB less 256 MiB in wasm).
    pub max_cpu_bytes: Option<u64>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            device: Device::Auto,
            context_length: None,
            gpu: crate::gpu::GpuOptions::default(),
            max_cpu_bytes: None,
        }
    }
}

pub const DEFAULT_MAX_CONTEXT: usize = 4096;

impl Backend for Box<dyn Backend> {
    fn context_length(&self) -> usize {
        (**self).context_length()
    }

    fn position(&self) -> usize {
        (**self).position()
    }

    fn truncate(&mut self, n: usize) {
        (**self).truncate(n)
    }

    fn next_token<'a>(
        &'a mut self,
        tokens: &'a [u32],
        sampler: &'a mut Sampler,
        history: &'a [u32],
    ) -> StepFuture<'a> {
        (**self).next_token(tokens, sampler, history)
    }

    fn prefill<'a>(&'a mut self, tokens: &'a [u32]) -> PrefillFuture<'a> {
        (**self).prefill(tokens)
    }

    fn prefill_chunk(&self) -> usize {
        (**self).prefill_chunk()
    }

    fn hidden_states<'a>(&'a mut self, tokens: &'a [u32]) -> HiddenFuture<'a> {
        (**self).hidden_states(tokens)
    }

    fn set_lora<'a>(&'a mut self, lora: Option<LoraStack>) -> PrefillFuture<'a> {
        (**self).set_lora(lora)
    }

    fn stats(&self) -> BackendStats {
        (**self).stats()
    }
}

/// The cache-position methods of `Backend`, which every decoder has under the same names.
macro_rules! cache_positions {
    ($t:ty) => {
        fn context_length(&self) -> usize {
            <$t>::context_length(self)
        }

        fn position(&self) -> usize {
            <$t>::position(self)
        }

        fn truncate(&mut self, n: usize) {
            <$t>::truncate(self, n)
        }
    };
}

impl Backend for GpuModel {
    cache_positions!(GpuModel);

    fn next_token<'a>(
        &'a mut self,
        tokens: &'a [u32],
        sampler: &'a mut Sampler,
        history: &'a [u32],
    ) -> StepFuture<'a> {
        Box::pin(GpuModel::next_token(self, tokens, sampler, history))
    }

    fn prefill<'a>(&'a mut self, tokens: &'a [u32]) -> PrefillFuture<'a> {
        Box::pin(GpuModel::prefill(self, tokens))
    }

    fn prefill_chunk(&self) -> usize {
        GpuModel::prefill_chunk(self)
    }

    fn hidden_states<'a>(&'a mut self, tokens: &'a [u32]) -> HiddenFuture<'a> {
        Box::pin(GpuModel::hidden_states(self, tokens))
    }

    fn set_lora<'a>(&'a mut self, lora: Option<LoraStack>) -> PrefillFuture<'a> {
        Box::pin(async move { GpuModel::set_lora(self, lora.as_ref()).await })
    }

    fn stats(&self) -> BackendStats {
        let (encode_us_per_token, submit_us_per_token) = self.encode_and_submit_us();
        BackendStats {
            device: self.context().describe(),
            gpu_bytes: self.gpu_bytes(),
            dispatches_per_token: self.dispatches_per_token(),
            dispatches_per_token_long_context: self.dispatches_per_token_long(),
            dispatches_per_layer: self.dispatches_per_layer(false),
            dispatches_per_layer_long_context: self.dispatches_per_layer(true),
            direct_attention_keys: self.direct_attention_keys(),
            submits_per_token: 1,
            readback_bytes_per_token: 4,
            encode_us_per_token,
            submit_us_per_token,
            lora_gpu_bytes: self.lora_bytes(),
            compiled_kernels: self.context().compiled_kernels(),
            ..Default::default()
        }
    }
}

impl Backend for ReferenceModel {
    cache_positions!(ReferenceModel);

    fn next_token<'a>(
        &'a mut self,
        tokens: &'a [u32],
        sampler: &'a mut Sampler,
        history: &'a [u32],
    ) -> StepFuture<'a> {
        // The CPU does the work now; the future is ready when returned.
        let mut run = |model: &mut ReferenceModel| -> Result<u32> {
            let (last, rest) = tokens
                .split_last()
                .ok_or_else(|| Error::InvalidArgument("no tokens to run".into()))?;
            for &t in rest {
                model.forward(t)?;
            }
            let logits = model.forward(*last)?;
            Ok(sampler.sample(logits, history))
        };
        Box::pin(std::future::ready(run(self)))
    }

    fn prefill<'a>(&'a mut self, tokens: &'a [u32]) -> PrefillFuture<'a> {
        let run = tokens.iter().try_for_each(|&t| self.forward(t).map(drop));
        Box::pin(std::future::ready(run))
    }

    /// The oracle runs one token at a time at any chunk size: 16 is about half a second.
    fn prefill_chunk(&self) -> usize {
        16
    }

    fn hidden_states<'a>(&'a mut self, tokens: &'a [u32]) -> HiddenFuture<'a> {
        let mut run = || -> Result<Vec<f32>> {
            let mut hidden = Vec::with_capacity(tokens.len() * self.config().n_embd);
            for &t in tokens {
                hidden.extend_from_slice(self.hidden(t)?);
            }
            Ok(hidden)
        };
        Box::pin(std::future::ready(run()))
    }

    fn set_lora<'a>(&'a mut self, lora: Option<LoraStack>) -> PrefillFuture<'a> {
        ReferenceModel::set_lora(self, lora);
        Box::pin(std::future::ready(Ok(())))
    }

    fn stats(&self) -> BackendStats {
        BackendStats {
            device: format!("CPU reference ({} threads)", crate::reference::threads()),
            ..Default::default()
        }
    }
}

impl Backend for CpuModel {
    cache_positions!(CpuModel);

    fn next_token<'a>(
        &'a mut self,
        tokens: &'a [u32],
        sampler: &'a mut Sampler,
        history: &'a [u32],
    ) -> StepFuture<'a> {
        Box::pin(async move {
            // In a browser the whole generation would otherwise run in one task: the page (or
            // the engine's worker) could not take an abort, or paint, until it ended.
            #[cfg(target_arch = "wasm32")]
            crate::web::next_task().await;
            let logits = self.forward(tokens)?;
            Ok(sampler.sample(logits, history))
        })
    }

    fn prefill<'a>(&'a mut self, tokens: &'a [u32]) -> PrefillFuture<'a> {
        Box::pin(async move {
            #[cfg(target_arch = "wasm32")]
            crate::web::next_task().await;
            // The LM head runs on the chunk's last token too: one matvec in 64 tokens' work.
            self.forward(tokens).map(drop)
        })
    }

    fn prefill_chunk(&self) -> usize {
        crate::cpu::model::PREFILL_BATCH
    }

    fn hidden_states<'a>(&'a mut self, tokens: &'a [u32]) -> HiddenFuture<'a> {
        Box::pin(async move {
            #[cfg(target_arch = "wasm32")]
            crate::web::next_task().await;
            CpuModel::hidden_states(self, tokens)
        })
    }

    fn set_lora<'a>(&'a mut self, lora: Option<LoraStack>) -> PrefillFuture<'a> {
        CpuModel::set_lora(self, lora);
        Box::pin(std::future::ready(Ok(())))
    }

    fn stats(&self) -> BackendStats {
        BackendStats {
            device: crate::cpu::describe(),
            cpu_bytes: self.memory_bytes(),
            ..Default::default()
        }
    }
}

pub struct Engine {
    pub config: Config,
    pub tokenizer: Tokenizer,
    pub template: ChatTemplate,
    session: Session<Box<dyn Backend>>,
    /// "gpu", "cpu" or "reference", and why that device was chosen.
    device: (&'static str, String),
    /// The vocabulary as the grammar library walks it: built on the first constrained request.
    grammars: Option<Grammars>,
    /// A pooling asked for explicitly, over the file's (`set_pooling`).
    pooling: Option<Pooling>,
    /// Why the context is shorter than the one asked for, if it is.
    context_reduced: Option<ContextReduced>,
    /// LoRA adapters kept, and the active set (`engine/adapters.rs`).
    adapters: adapters::Adapters,
}

impl Engine {
    /// Load a GGUF file from disk onto the device `options` ask for (`Auto`: see
    /// `loader::choose_device`).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load(path: impl AsRef<std::path::Path>, options: &EngineOptions) -> Result<Engine> {
        Engine::load_until(path, options, &|| false)
    }

    /// [`Engine::load`] that asks `stop` before each 1 MiB piece of weights and gives up with
    /// an `IO_ERROR` (kind `Interrupted`) when it says yes: the CLI's Ctrl-C.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load_until(
        path: impl AsRef<std::path::Path>,
        options: &EngineOptions,
        stop: &dyn Fn() -> bool,
    ) -> Result<Engine> {
        let file = crate::gguf::GgufFile::open(path)?;
        let choice =
            pollster::block_on(crate::loader::choose_device(options.device, &options.gpu))?;
        let load = crate::loader::LoadOptions {
            context_length: options.context_length,
            max_cpu_bytes: options.max_cpu_bytes,
        };
        crate::loader::load_file_until(&file, &choice, &load, stop)
    }

    /// An engine over a backend loaded elsewhere (the web loader streams weights in).
    pub fn from_parts(
        config: Config,
        tokenizer: Tokenizer,
        template: ChatTemplate,
        backend: Box<dyn Backend>,
    ) -> Engine {
        Engine {
            config,
            tokenizer,
            template,
            session: Session::new(backend),
            device: ("", String::new()),
            grammars: None,
            pooling: None,
            context_reduced: None,
            adapters: Default::default(),
        }
    }

    /// Record that the loader fitted a shorter context than the one asked for, and why.
    pub fn set_context_reduced(&mut self, reduced: Option<ContextReduced>) {
        self.context_reduced = reduced;
    }

    /// Why the context ([`context_length`](Self::context_length)) is shorter than the one
    /// asked for (the model's trained context, or the memory limit), if it is.
    pub fn context_reduced(&self) -> Option<&ContextReduced> {
        self.context_reduced.as_ref()
    }

    /// Record which device the loader chose and why (what `device()` reports).
    pub fn set_device_choice(&mut self, choice: &DeviceChoice) {
        self.device = (choice.kind(), choice.reason.clone());
    }

    /// "gpu", "cpu" or "reference", and why the loader chose it.
    pub fn device(&self) -> (&'static str, &str) {
        (self.device.0, &self.device.1)
    }

    pub fn context_length(&self) -> usize {
        self.session.backend.context_length()
    }

    /// Tokens of a raw prompt: special-token text is recognised, BOS added if the model asks.
    pub fn encode_prompt(&self, prompt: &str) -> Result<Vec<u32>> {
        self.tokenizer.encode(prompt, true, true)
    }

    /// Continue a raw text prompt. `on_piece` is called once per generated token with the text
    /// that became final (possibly empty) and returns `false` to stop.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn generate(
        &mut self,
        prompt: &str,
        options: &GenerateOptions,
        on_piece: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation> {
        let ids = self.encode_prompt(prompt)?;
        self.generate_ids(&ids, options, on_piece)
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn generate_ids(
        &mut self,
        ids: &[u32],
        options: &GenerateOptions,
        on_piece: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation> {
        pollster::block_on(self.generate_ids_async(ids, options, &mut |piece, _| on_piece(piece)))
    }

    /// [`Engine::generate_ids`] for callers that must not block (the web), with each token's
    /// logprobs beside its text when they are asked ([`OnToken`]).
    pub async fn generate_ids_async(
        &mut self,
        ids: &[u32],
        options: &GenerateOptions,
        on_token: &mut OnToken<'_>,
    ) -> Result<Generation> {
        if !options.tools.is_empty() {
            return Err(Error::InvalidArgument(
                "tools need a chat (messages): a raw prompt has no template to offer them".into(),
            ));
        }
        self.run(ids, options, None, on_token).await
    }

    /// [`Engine::chat`] for callers that must not block (the web), with each token's logprobs
    /// beside its text when they are asked ([`OnToken`]).
    pub async fn chat_async(
        &mut self,
        messages: &[Message],
        options: &GenerateOptions,
        on_token: &mut OnToken<'_>,
    ) -> Result<Generation> {
        let plan = ToolPlan::new(&options.tools, &self.template, &self.tokenizer)?;
        let ids = self.prompt_ids(messages, plan.as_ref())?;
        self.run(&ids, options, plan.as_ref(), on_token).await
    }

    /// Generate from prompt ids, held to the response format or, when a tool call is required,
    /// to the call syntax.
    async fn run(
        &mut self,
        ids: &[u32],
        options: &GenerateOptions,
        tools: Option<&ToolPlan>,
        on_token: &mut OnToken<'_>,
    ) -> Result<Generation> {
        if tools.is_some() && !options.response_format.is_text() {
            return Err(Error::InvalidArgument(
                "response_format cannot be combined with tools (use tool_choice \"none\")".into(),
            ));
        }
        let format = match tools.and_then(ToolPlan::grammar) {
            Some(grammar) => ResponseFormat::Grammar { grammar },
            None => options.response_format.clone(),
        };
        let constraint = if format.is_text() {
            None
        } else {
            if self.grammars.is_none() {
                self.grammars = Some(Grammars::new(&self.tokenizer)?);
            }
            let grammars = self.grammars.as_ref().expect("built above");
            grammars.constraint(&format)?
        };
        self.session
            .generate_async(&self.tokenizer, ids, options, constraint, tools, on_token)
            .await
    }

    /// The prompt ids of a conversation rendered through the model's chat template, ending with
    /// the assistant's turn opened.
    pub fn chat_prompt_ids(&self, messages: &[Message]) -> Result<Vec<u32>> {
        self.prompt_ids(messages, None)
    }

    /// The prompt ids [`Engine::chat`] runs for `messages` with `options`' tools.
    pub fn chat_prompt_ids_for(
        &self,
        messages: &[Message],
        options: &GenerateOptions,
    ) -> Result<Vec<u32>> {
        let plan = ToolPlan::new(&options.tools, &self.template, &self.tokenizer)?;
        self.prompt_ids(messages, plan.as_ref())
    }

    /// The prompt ids of a conversation, with the tools of `tools` offered. A template that
    /// knows no tool syntax sees earlier calls and results as text (`tools/`).
    fn prompt_ids(&self, messages: &[Message], tools: Option<&ToolPlan>) -> Result<Vec<u32>> {
        let text = match tools {
            Some(plan) => self.template.render_with_tools(
                &plan.messages(messages),
                plan.template_tools(),
                true,
            )?,
            None if ToolFormat::native(self.template.source()).is_none() => {
                self.template.render(&rewrite_tool_turns(messages), true)?
            }
            None => self.template.render(messages, true)?,
        };
        let mut ids = self.tokenizer.encode(&text, true, true)?;
        // Templates that write `{{ bos_token }}` themselves would otherwise get it twice.
        if let (Some(bos), [a, b, ..]) = (self.tokenizer.bos_id(), ids.as_slice()) {
            if *a == bos && *b == bos {
                ids.remove(0);
            }
        }
        Ok(ids)
    }

    /// Reply to a conversation. The KV cache of the previous turns is reused when the new
    /// conversation extends the last one.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn chat(
        &mut self,
        messages: &[Message],
        options: &GenerateOptions,
        on_piece: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation> {
        pollster::block_on(self.chat_async(messages, options, &mut |piece, _| on_piece(piece)))
    }

    /// The pooling of this model's embeddings: the one set with `set_pooling`, else the
    /// file's, else `EMBEDDINGS_UNSUPPORTED` (a generation model: no `{arch}.pooling_type`).
    pub fn pooling(&self) -> Result<Pooling> {
        self.pooling.map_or_else(|| Pooling::of(&self.config), Ok)
    }

    /// Pool this model's hidden states as `pooling` says whatever its file says (`None`: as
    /// the file says). On a generation model this gives vectors it was not trained to make:
    /// for benchmarks and experiments (CLI `embed --pooling`).
    pub fn set_pooling(&mut self, pooling: Option<Pooling>) {
        self.pooling = pooling;
    }

    /// Embed each input (`embed.rs`): its tokens run from an empty KV cache without the LM
    /// head, the final hidden states pooled as the file says and scaled to unit length. Text
    /// is tokenized with the BOS/EOS the model's metadata asks for (Qwen3-Embedding's last-token
    /// pooling reads the `<|endoftext|>` it appends); special-token text in it stays text. The
    /// conversation cache is dropped (the next `generate` runs its prompt from the start).
    pub async fn embed_async(&mut self, inputs: &[EmbedInput]) -> Result<Embeddings> {
        let pooling = self.pooling()?;
        let ids = inputs
            .iter()
            .enumerate()
            .map(|(i, input)| {
                let ids = match input {
                    EmbedInput::Text(text) => self.tokenizer.encode(text, true, false)?,
                    EmbedInput::Ids(ids) => ids.clone(),
                };
                match ids.is_empty() {
                    true => Err(Error::InvalidArgument(format!("input {i} has no tokens"))),
                    false => Ok(ids),
                }
            })
            .collect::<Result<Vec<_>>>()?;
        let mut vectors = Vec::with_capacity(ids.len());
        for input in &ids {
            // A fresh cache per input: no input sees another's tokens, and a failed run leaves
            // nothing a later generation could mistake for its prompt.
            self.session.reset();
            let hidden = self.session.backend.hidden_states(input).await;
            self.session.reset();
            let mut v = pooling.pool(&hidden?, self.config.n_embd);
            normalize(&mut v);
            vectors.push(v);
        }
        Ok(Embeddings {
            vectors,
            prompt_tokens: ids.iter().map(Vec::len).sum(),
            pooling,
        })
    }

    /// [`Engine::embed_async`], blocking.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn embed(&mut self, inputs: &[EmbedInput]) -> Result<Embeddings> {
        pollster::block_on(self.embed_async(inputs))
    }

    /// The backend's device and per-token figures (for benchmarks).
    pub fn backend_stats(&self) -> BackendStats {
        self.session.backend.stats()
    }

    /// Forget the conversation held in the KV cache.
    pub fn reset(&mut self) {
        self.session.reset();
    }
}

//! The decoder on the GPU: weights (quantized, streamed in), KV cache, and the forward pass as a
//! list of kernel ops.
//!
//! Decode: the ops of one step are bound once at load and recorded into one command encoder per
//! token (those its position asks for: attention has a form without a combine for short
//! contexts); one submit; 4 bytes (the sampled id) come back. On real GPUs its norms and gates
//! are folded into the matvecs that read them, and RoPE with the KV append into the q/k/v matvec
//! (five dispatches per layer; ARCHITECTURE.md). Prefill: the prompt runs in batches of up to
//! `PREFILL_BATCH` tokens through batched matmuls, and its last token runs as a decode
//! step (whose final norm, LM head and sampler give the first new token). Both op lists are
//! bound at load; each submit is preceded by one write of the step uniform (position, tokens).

use crate::config::Config;
use crate::error::{Error, Result};
use crate::gpu::activations::Activations;
use crate::gpu::graph::{Graph, Kernels, View};
use crate::gpu::kernel::{range, readback_buffer, storage_buffer, whole, Op};
use crate::gpu::kernels::rope::RopeExtras;
use crate::gpu::kernels::sample::LogprobsReadback;
use crate::gpu::kernels::{step_params_buffer, StepParams};
use crate::gpu::kv_cache::KvCache;
use crate::gpu::lora::{GpuLora, LoraKernels};
use crate::gpu::GpuContext;
use crate::lora::{LoraStack, Place, Place::Block, Slot};
use crate::sampler::Sampler;

pub use crate::gpu::loader::{LayerWeights, WeightLoader, Weights};

mod decode;
mod hidden;

use decode::{EncodeClock, InFlight};

/// Prompt tokens per prefill batch: large enough that the weights are read once per batch
/// rather than once per token, small enough that activations stay a few MB.
pub const PREFILL_BATCH: usize = 128;

/// The largest `repeat_last_n` the GPU sampler accepts.
pub const MAX_SAMPLER_HISTORY: usize = 1024;

/// Decode steps in flight at once: the one being read back and the next. Step s's id (slot
/// `s % READBACK_SLOTS` of `ids_out`), or its logprobs, which name the id, go to that slot's
/// staging buffer: one read-back per token.
pub(crate) const READBACK_SLOTS: usize = 2;

pub struct GpuModel {
    ctx: GpuContext,
    config: Config,
    weights: Weights,
    kernels: Kernels,
    kv: KvCache,
    step: wgpu::Buffer,
    decode: Activations,
    prefill: Activations,
    logits: wgpu::Buffer,
    /// The sampled id of each step (`READBACK_SLOTS` slots), written by the sampler kernel.
    ids_out: wgpu::Buffer,
    staging: [wgpu::Buffer; READBACK_SLOTS],
    /// The next decode step, already submitted (DESIGN.md 7): it runs while the CPU reads this
    /// step's id, streams its text and decides whether to go on.
    in_flight: Option<InFlight>,
    /// The GPU sampler's history holds an id the CPU's does not (a step in flight was
    /// discarded): reload it before the next step.
    sampler_stale: bool,
    /// Submit each decode step's successor before reading its id. On by default on real GPUs;
    /// off on CPU emulations, where the queued step only competes for the same cores (lavapipe:
    /// decode 13.2 -> 11.1 tok/s with it).
    pipelined: bool,
    /// One decode step: layers, final norm, LM head, sampler (bound at load).
    decode_ops: Vec<Op>,
    /// The logprobs dispatch and its read-back slots, made for the first request that asks.
    logprobs: Option<LogprobsReadback>,
    /// Whether the steps submitted now compute logprobs (the running request asked).
    logprobs_on: bool,
    /// One prefill batch of up to `PREFILL_BATCH` tokens through the layers (bound at load; the
    /// step uniform gives each batch's size and position).
    prefill_ops: Vec<Op>,
    /// The final norm over a prefill batch's rows, for embeddings (`hidden.rs`).
    final_norm_ops: Vec<Op>,
    /// Dispatches of the final norm, LM head and sampler (the end of `decode_ops`).
    head_dispatches: usize,
    position: usize,
    /// The active LoRA adapters (their ops are in `decode_ops` and `prefill_ops`), and their
    /// pipelines, compiled on the first `set_lora`.
    lora: Option<GpuLora>,
    lora_kernels: Option<LoraKernels>,
    gpu_bytes: u64,
    /// CPU seconds spent encoding decode steps and in their `submit` calls, and how many steps:
    /// the per-token CPU cost that bounds small models on real GPUs.
    encode: std::cell::Cell<EncodeClock>,
}

impl GpuModel {
    /// Load from a GGUF file on disk, reading each tensor in 1 MiB pieces so host memory stays
    /// bounded by a piece, not by the model.
    #[cfg(not(target_arch = "wasm32"))]
    pub async fn load(
        ctx: GpuContext,
        file: &crate::gguf::GgufFile,
        context_len: usize,
    ) -> Result<GpuModel> {
        let config = Config::from_header(&file.header)?;
        let mut loader = WeightLoader::new(&ctx, &file.header, &config)?;
        file.stream_tensors(&mut |event| match event {
            crate::gguf::Event::TensorData {
                tensor,
                offset,
                bytes,
            } => loader.write(tensor, offset, bytes),
            _ => Ok(()),
        })?;
        let weights = loader.finish(&config)?;
        Self::build(ctx, config, weights, context_len).await
    }

    /// Compile the kernels, allocate the KV cache and activations, and bind the decode step.
    /// Used after a [`WeightLoader`] has received every tensor (from a file or a stream).
    pub async fn build(
        ctx: GpuContext,
        config: Config,
        weights: Weights,
        context_len: usize,
    ) -> Result<GpuModel> {
        let context_len = context_len.min(config.context_length);
        if context_len < 2 {
            return Err(Error::InvalidArgument(format!(
                "context length {context_len} is too small"
            )));
        }
        let kernels = Kernels::for_model(&ctx, &config, &weights, context_len).await?;
        let kv = KvCache::new(&ctx, &config, context_len)?;
        let decode = Activations::new(&ctx, &config, &kernels, &kv, 1)?;
        let prefill =
            Activations::new(&ctx, &config, &kernels, &kv, PREFILL_BATCH.min(context_len))?;
        let logits = storage_buffer(&ctx, "logits", config.n_vocab as u64 * 4);
        let ids_out = storage_buffer(&ctx, "sampled ids", READBACK_SLOTS as u64 * 4);
        let staging = [0, 1].map(|i| readback_buffer(&ctx, &format!("sampled id {i}"), 4));
        let step = step_params_buffer(&ctx);

        let mut model = GpuModel {
            gpu_bytes: 0,
            encode: Default::default(),
            ctx,
            config,
            weights,
            kernels,
            kv,
            step,
            decode,
            prefill,
            logits,
            ids_out,
            staging,
            in_flight: None,
            sampler_stale: false,
            pipelined: false,
            decode_ops: Vec::new(),
            logprobs: None,
            logprobs_on: false,
            prefill_ops: Vec::new(),
            final_norm_ops: Vec::new(),
            head_dispatches: 0,
            position: 0,
            lora: None,
            lora_kernels: None,
        };
        model.bind_steps()?;
        model.final_norm_ops = model.final_norm_ops()?;
        model.pipelined = model.ctx.pipelined_decode;
        model.gpu_bytes = model.ctx.allocated_bytes() - model.weights.allocated_before;
        model.ctx.check()?;
        Ok(model)
    }

    /// Bind the ops of a decode step and of a prefill batch (again after adapters change).
    fn bind_steps(&mut self) -> Result<()> {
        let mut decode_ops = self.layer_ops(&self.decode)?;
        let head = self.head_ops()?;
        self.head_dispatches = head.len();
        decode_ops.extend(head);
        self.decode_ops = decode_ops;
        self.prefill_ops = self.layer_ops(&self.prefill)?;
        Ok(())
    }

    /// Apply these adapters (the active set, combined) from the next step on, or none. The
    /// KV cache's keys and values were computed without them: the caller starts over (the
    /// engine's session does). Their pipelines are compiled on the first call.
    pub async fn set_lora(&mut self, stack: Option<&LoraStack>) -> Result<()> {
        self.discard_in_flight();
        self.lora = None;
        if let Some(stack) = stack {
            if self.lora_kernels.is_none() {
                let k = LoraKernels::new(&self.ctx, &self.config, &self.kernels).await?;
                self.lora_kernels = Some(k);
            }
            let c = &self.config;
            let outputs = |place: Place| match place {
                Place::Head => vec![c.n_vocab],
                Block(_, Slot::Qkv) => vec![c.q_dim(), c.kv_dim(), c.kv_dim()],
                Block(_, Slot::GateUp) => vec![c.n_ff, c.n_ff],
                Block(_, Slot::AttnOutput | Slot::Down) => vec![c.n_embd],
            };
            let max_tokens = self.prefill.max_tokens;
            self.lora = Some(GpuLora::upload(&self.ctx, stack, max_tokens, outputs)?);
        }
        let bound = self.bind_steps();
        if bound.is_err() {
            self.lora = None;
            self.bind_steps()?;
        }
        bound?;
        self.ctx.check()
    }

    /// GPU bytes the active adapters hold.
    pub fn lora_bytes(&self) -> u64 {
        self.lora.as_ref().map_or(0, GpuLora::bytes)
    }

    /// The adapters and their pipelines, for the graph builder.
    fn lora_for_graph(&self) -> Option<(&GpuLora, &LoraKernels)> {
        self.lora.as_ref().zip(self.lora_kernels.as_ref())
    }

    /// The transformer blocks over the rows of `a` (embedding included), for batches of up to
    /// `a.max_tokens` tokens: the step uniform says how many each time. It follows
    /// `ReferenceModel::forward` line for line.
    fn layer_ops(&self, a: &Activations) -> Result<Vec<Op>> {
        let (c, w, kv) = (&self.config, &self.weights, &self.kv);
        let v = a.views();
        let mut g = Graph::new(&self.ctx, &self.kernels, &self.step, a.max_tokens)
            .with_lora(self.lora_for_graph());
        // x = token_embd[tokens] * embedding_scale                          [n_tokens, n_embd]
        g.embed(&w.token_embd, &a.tokens, v.x, c.embedding_scale)?;
        for (l, lw) in w.layers.iter().enumerate() {
            // h = rmsnorm(x) * attn_norm
            let h = g.rmsnorm(v.x, &lw.attn_norm, v.h)?;
            // q, k, v = Wq h, Wk h, Wv h (+ LoRA)                 [n_tokens, q_dim | kv_dim]
            let qkv = g.qkv(&lw.qkv, h, [v.q, v.k, v.v], Block(l, Slot::Qkv));
            // q, k = rope(rmsnorm per head(q + bq, k + bk)); k, v + bv into the cache
            // (one token: in the q/k/v matvec's epilogue where the kernels take it)
            let extras = RopeExtras {
                bias: lw.qkv_bias.as_ref().map(whole),
                norms: lw.qk_norms.as_ref().map(|(q, k)| (whole(q), whole(k))),
            };
            g.rope_kv(qkv, v.q_rope, extras, kv, l)?;
            // att = softmax(q K^T * attention_scale) V over the keys each token sees
            g.attention(v.q_rope, kv, l, &a.scratch, v.att, c.window(l))?;
            // x += Wo att, normed first with post_attention_norm (gemma3)
            match &lw.post_attn_norm {
                None => {
                    g.linear_add(&lw.wo, v.att, v.x)?;
                    g.lora(Block(l, Slot::AttnOutput), v.att.into(), &[v.x])?;
                }
                Some(norm) => {
                    g.linear(&lw.wo, v.att, v.h)?;
                    g.lora(Block(l, Slot::AttnOutput), v.att.into(), &[v.h])?;
                    g.rmsnorm_add(v.h, norm, v.x)?;
                }
            }
            // h = rmsnorm(x) * ffn_norm
            let h = g.rmsnorm(v.x, &lw.ffn_norm, v.h)?;
            // gate = act(Wgate h) * (Wup h)                                  [n_tokens, n_ff]
            g.project(&lw.gate_up, h, &[v.gate, v.up])?;
            g.lora(Block(l, Slot::GateUp), h, &[v.gate, v.up])?;
            let gate = g.gate(v.gate, v.up)?;
            // x += Wdown gate, normed first with post_ffw_norm (gemma3)
            match &lw.post_ffn_norm {
                None => {
                    g.linear_add(&lw.w_down, gate, v.x)?;
                    g.lora(Block(l, Slot::Down), gate, &[v.x])?;
                }
                Some(norm) => {
                    g.linear(&lw.w_down, gate, v.h)?;
                    g.lora(Block(l, Slot::Down), gate, &[v.h])?;
                    g.rmsnorm_add(v.h, norm, v.x)?;
                }
            }
        }
        Ok(g.ops)
    }

    /// logits = lm_head(rmsnorm(x) * output_norm) for the one row in `decode.x`, then sample.
    fn head_ops(&self) -> Result<Vec<Op>> {
        let (ctx, k, a) = (&self.ctx, &self.kernels, &self.decode);
        let (v, w) = (a.views(), &self.weights);
        let mut g = Graph::new(ctx, k, &self.step, 1).with_lora(self.lora_for_graph());
        let h = g.rmsnorm(v.x, &w.output_norm, v.h)?;
        let logits = View {
            buffer: &self.logits,
            offset: 0,
            width: self.config.n_vocab,
        };
        g.linear(w.lm_head(), h, logits)?;
        g.lora(Place::Head, h, &[logits])?;
        let mut ops = g.ops;
        ops.extend(k.sampler.op(
            ctx,
            &self.logits,
            &self.step,
            range(&a.tokens, 0, 4),
            &self.ids_out,
        )?);
        Ok(ops)
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn context(&self) -> &GpuContext {
        &self.ctx
    }

    pub fn context_length(&self) -> usize {
        self.kv.context_len()
    }

    pub fn position(&self) -> usize {
        self.position
    }

    /// Forget cached positions from `n` on (the cache rows past it are simply overwritten later).
    pub fn truncate(&mut self, n: usize) {
        self.position = self.position.min(n);
        self.discard_in_flight();
    }

    /// Whether decode steps are pipelined (see `pipelined`).
    pub fn pipelined(&self) -> bool {
        self.pipelined
    }

    /// Turn pipelining on or off (tests compare both; benchmarks measure both).
    pub fn set_pipelined(&mut self, on: bool) {
        self.pipelined = on;
        if !on {
            self.discard_in_flight();
        }
    }

    /// Drop the step submitted ahead. It still runs, but writes only past `position` (a KV row
    /// the next step overwrites, the id slots) and one id into the sampler's history, which is
    /// reloaded before the next step.
    fn discard_in_flight(&mut self) {
        if self.in_flight.take().is_some() {
            self.sampler_stale = true;
        }
    }

    /// Bytes of GPU memory the load allocated: every buffer made on the device from the first
    /// weight to the end of `build` (weights, KV cache, activations, sampler, kernel
    /// parameters); the logprobs buffers that a first request asking for them adds are not in
    /// it.
    pub fn gpu_bytes(&self) -> u64 {
        self.gpu_bytes
    }

    /// How the KV cache stores a value (f16 where the adapter has shader-f16).
    pub fn kv_element(&self) -> crate::gpu::kv_cache::KvElement {
        self.kv.element()
    }

    /// The ops a decode step at KV row `pos` records (attention's form depends on it).
    fn step_ops(&self, pos: usize) -> impl Iterator<Item = &Op> {
        self.decode_ops.iter().filter(move |op| op.wanted(pos + 1))
    }

    /// Dispatches recorded per decode step while the context is short enough for attention
    /// without its combine pass ([`direct_attention_keys`](Self::direct_attention_keys)).
    pub fn dispatches_per_token(&self) -> usize {
        self.step_ops(0).count()
    }

    /// Dispatches recorded per decode step past that.
    pub fn dispatches_per_token_long(&self) -> usize {
        self.step_ops(self.direct_attention_keys()).count()
    }

    /// Dispatches per transformer block of a decode step, short or `long` context (all blocks
    /// record the same kernels): the step's less the embedding's and the head's.
    pub fn dispatches_per_layer(&self, long: bool) -> usize {
        let step = [
            self.dispatches_per_token(),
            self.dispatches_per_token_long(),
        ][long as usize];
        let outside = self.weights.token_embd.parts.len() + self.head_dispatches;
        (step - outside) / self.config.n_layer
    }

    /// The most keys a decode step's token sees for attention to run without the combine.
    pub fn direct_attention_keys(&self) -> usize {
        self.kernels.attention.direct_keys(&self.kv)
    }

    fn write_step(&self, pos: usize, n_tokens: usize, sample_step: u64) {
        let params = StepParams {
            pos: pos as u32,
            n_tokens: n_tokens as u32,
            sample_step: sample_step as u32,
            _pad: 0,
        };
        self.ctx
            .queue
            .write_buffer(&self.step, 0, bytemuck::bytes_of(&params));
    }

    fn check_room(&self, n: usize) -> Result<()> {
        let context = self.context_length();
        if self.position + n > context {
            return Err(Error::ContextOverflow {
                tokens: self.position + n,
                context,
            });
        }
        Ok(())
    }

    fn check_ids(&self, tokens: &[u32]) -> Result<()> {
        match tokens.iter().find(|&&t| t as usize >= self.config.n_vocab) {
            Some(t) => Err(Error::InvalidArgument(format!(
                "token id {t} is outside the vocabulary of {} tokens",
                self.config.n_vocab
            ))),
            None => Ok(()),
        }
    }

    /// Time every op of one decode step on its own (one submit and a full wait each), over
    /// `steps` steps at the current position, summed per kernel: `(kernel, dispatches per
    /// step, seconds per step)`, slowest first. Each time includes the dispatch's fixed cost,
    /// which is what fusing kernels would save. Overwrites the KV slot at the current position
    /// without advancing it.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn profile_decode_step(&mut self, steps: usize) -> Result<Vec<(String, usize, f64)>> {
        let steps = steps.max(1);
        self.check_room(1)?;
        self.discard_in_flight();
        self.write_step(self.position, 1, 0);
        let mut totals: Vec<(String, usize, f64)> = Vec::new();
        for step in 0..steps {
            for op in self.step_ops(self.position) {
                let start = web_time::Instant::now();
                let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
                record(&mut encoder, &[op]);
                self.ctx.queue.submit([encoder.finish()]);
                self.ctx
                    .device
                    .poll(wgpu::PollType::wait_indefinitely())
                    .map_err(|e| Error::Gpu(format!("waiting for the GPU: {e}")))?;
                let seconds = start.elapsed().as_secs_f64();
                match totals.iter_mut().find(|t| t.0 == op.name) {
                    Some(t) => {
                        t.1 += usize::from(step == 0);
                        t.2 += seconds;
                    }
                    None => totals.push((op.name.clone(), 1, seconds)),
                }
            }
        }
        self.ctx.check()?;
        for t in &mut totals {
            t.2 /= steps as f64;
        }
        totals.sort_by(|a, b| b.2.total_cmp(&a.2));
        Ok(totals)
    }

    /// Run prompt tokens through the blocks in batches (filling the KV cache), without sampling.
    /// Run `tokens` into the KV cache without sampling, and wait until the GPU has: one chunk
    /// of a long prompt, after which the generation loop may stop.
    pub async fn prefill(&mut self, tokens: &[u32]) -> Result<()> {
        self.check_ids(tokens)?;
        self.check_room(tokens.len())?;
        // A step in flight was for the old next position.
        self.discard_in_flight();
        self.prefill_batches(tokens)?;
        crate::gpu::kernel::wait_idle(&self.ctx).await
    }

    /// Prompt tokens per `prefill` chunk: one batch.
    pub fn prefill_chunk(&self) -> usize {
        self.prefill.max_tokens
    }

    fn prefill_batches(&mut self, tokens: &[u32]) -> Result<()> {
        for batch in tokens.chunks(self.prefill.max_tokens) {
            self.submit_prefill_batch(batch, &[]);
            self.position += batch.len();
        }
        self.ctx.check()
    }

    /// Run one batch (at most `prefill.max_tokens`) at `position` on through the layers, and
    /// then through `then` (e.g. the final norm, for embeddings), in one submit.
    fn submit_prefill_batch(&self, batch: &[u32], then: &[Op]) {
        self.ctx
            .queue
            .write_buffer(&self.prefill.tokens, 0, bytemuck::cast_slice(batch));
        self.write_step(self.position, batch.len(), 0);
        let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
        let ops: Vec<&Op> = self.prefill_ops.iter().chain(then).collect();
        record(&mut encoder, &ops);
        self.ctx.queue.submit([encoder.finish()]);
    }

    /// The logits after running `tokens` (tests compare them with the CPU reference). Samples
    /// greedily as a side effect, like a decode step.
    pub async fn forward_logits(&mut self, tokens: &[u32]) -> Result<Vec<f32>> {
        let mut sampler = Sampler::new(crate::sampler::SamplingParams::greedy());
        // No step ahead: it would overwrite the logits.
        self.discard_in_flight();
        self.run(tokens, &mut sampler, tokens, false).await?;
        crate::gpu::kernel::read_f32(&self.ctx, &self.logits, 0, self.config.n_vocab).await
    }
}

fn record(encoder: &mut wgpu::CommandEncoder, ops: &[&Op]) {
    let mut pass = encoder.begin_compute_pass(&Default::default());
    for op in ops {
        op.record(&mut pass);
    }
}

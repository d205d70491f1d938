//! The generation loop, shared by every backend (CPU reference now, GPU next) and by native and
//! web callers: prompt ids in, text pieces out through a callback, until EOS, a stop string, the
//! token budget or a full context.
//!
//! A [`Session`] remembers which tokens its backend's KV cache holds, so a new prompt that starts
//! with the same tokens (the next turn of a chat) only runs the new suffix.

use std::future::Future;
use std::pin::Pin;

use web_time::Instant;

use crate::constraint::{Constraint, ResponseFormat};
use crate::error::{Error, Result};
use crate::logprobs::LogprobEntry;
use crate::sampler::{Sampler, SamplingParams};
use crate::tokenizer::Tokenizer;
use crate::tools::{Divert, ToolCall, ToolOptions, ToolPlan};

/// One decoder step in flight. Boxed so `Backend` stays object-safe; not `Send`, because on the
/// web the GPU's answer arrives on the page's event loop.
pub type StepFuture<'a> = Pin<Box<dyn Future<Output = Result<u32>> + 'a>>;

/// What the loop calls once per generated token: with the text that became final (complete
/// UTF-8, never part of a stop string; empty when the token's text is held back) and the
/// token's logprobs when they were asked; also with `("", None)` between the chunks of a long
/// prompt. Returning `false` stops the generation there.
pub type OnToken<'a> = dyn FnMut(&str, Option<&LogprobEntry>) -> bool + 'a;

/// One chunk of a prompt in flight (see [`Backend::prefill`]).
pub type PrefillFuture<'a> = Pin<Box<dyn Future<Output = Result<()>> + 'a>>;

/// Hidden states in flight (see [`Backend::hidden_states`]).
pub type HiddenFuture<'a> = Pin<Box<dyn Future<Output = Result<Vec<f32>>> + 'a>>;

/// What a decoder must offer the loop. `next_token` runs `tokens` at the next positions of the
/// KV cache and returns the token sampled after the last of them, so a backend that samples on
/// the GPU never has to hand logits back. It is async because reading the sampled id back from
/// a GPU cannot block in a browser; CPU backends return a ready future.
pub trait Backend {
    fn context_length(&self) -> usize;
    /// Tokens currently in the KV cache.
    fn position(&self) -> usize;
    /// Drop cached positions from `n` on.
    fn truncate(&mut self, n: usize);
    fn next_token<'a>(
        &'a mut self,
        tokens: &'a [u32],
        sampler: &'a mut Sampler,
        history: &'a [u32],
    ) -> StepFuture<'a>;
    /// Run `tokens` at the next positions of the KV cache without sampling, and resolve once
    /// the work is done (a GPU backend waits for the device): the loop runs a long prompt in
    /// such chunks, so that a caller can stop between them.
    fn prefill<'a>(&'a mut self, tokens: &'a [u32]) -> PrefillFuture<'a>;
    /// The prompt tokens one `prefill` call takes: about one batch of the backend's own, so a
    /// stop is answered within one batch's time and chunking costs no speed.
    fn prefill_chunk(&self) -> usize;
    /// Run `tokens` at the next positions without the LM head and resolve to each token's
    /// final hidden state, rmsnorm(x) * output_norm (`[T][n_embd]`): what embeddings pool.
    fn hidden_states<'a>(&'a mut self, tokens: &'a [u32]) -> HiddenFuture<'a>;
    /// Apply the active LoRA adapters, combined (`None`: none), from the next run on. The
    /// KV cache was filled without them: the caller drops it (`Session::reset`).
    fn set_lora<'a>(&'a mut self, lora: Option<crate::lora::LoraStack>) -> PrefillFuture<'a>;
    /// What the backend holds and does per token, for benchmarks.
    fn stats(&self) -> BackendStats {
        BackendStats::default()
    }
}

/// Figures a benchmark reports about a backend.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct BackendStats {
    /// The device the backend runs on.
    pub device: String,
    /// GPU memory held (weights, KV cache, activations); 0 on the CPU.
    pub gpu_bytes: u64,
    /// CPU memory the CPU engine holds (weights, KV cache, activations); 0 elsewhere.
    pub cpu_bytes: u64,
    /// Dispatches of one decode step (GPU), while the context is short enough for attention
    /// without its combine pass (up to `direct_attention_keys` keys), and past that.
    pub dispatches_per_token: usize,
    pub dispatches_per_token_long_context: usize,
    /// The same per transformer block (embedding and head left out).
    pub dispatches_per_layer: usize,
    pub dispatches_per_layer_long_context: usize,
    pub direct_attention_keys: usize,
    pub submits_per_token: usize,
    pub readback_bytes_per_token: usize,
    /// Mean CPU time to encode one decode step (record its ops, finish the command buffer) and
    /// to submit it, since load, µs (GPU; 0 elsewhere). A CPU emulation may do the step's work
    /// inside `submit`.
    pub encode_us_per_token: f64,
    pub submit_us_per_token: f64,
    /// GPU bytes the active LoRA adapters hold (their combined weights and scratch).
    pub lora_gpu_bytes: u64,
    /// Every pipeline compiled for the model, with its compile time (GPU; empty elsewhere).
    pub compiled_kernels: Vec<crate::gpu::context::CompiledKernel>,
}

#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub max_tokens: usize,
    pub sampling: SamplingParams,
    /// Generation ends when the text contains any of these; the stop string itself is not
    /// emitted.
    pub stop: Vec<String>,
    /// Keep going past end-of-generation tokens (benchmarks want a fixed token count).
    pub ignore_eos: bool,
    /// What the output must be (JSON by schema, a grammar, a regex): `constraint.rs`.
    pub response_format: ResponseFormat,
    /// Tools the model may call (chat only): `tools/`.
    pub tools: ToolOptions,
    /// Report each generated token's logprob and this many alternatives (0 to
    /// `logprobs::MAX_TOP_LOGPROBS`) in `Generation::logprobs`; `None`: no logprobs.
    pub logprobs: Option<usize>,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            max_tokens: 256,
            sampling: SamplingParams::default(),
            stop: Vec::new(),
            ignore_eos: false,
            response_format: ResponseFormat::Text,
            tools: ToolOptions::default(),
            logprobs: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The model produced an end-of-generation token.
    Eos,
    /// `max_tokens` were generated.
    Length,
    /// A stop string appeared, or the response format's grammar was complete.
    Stop,
    /// The context window is full.
    ContextFull,
    /// The caller's callback asked to stop.
    Cancelled,
    /// The reply was tool calls (`Generation::tool_calls`), ended by EOS or a complete grammar.
    ToolCalls,
}

impl StopReason {
    /// The one vocabulary of finish reasons (the CLI's, the wasm engine's and the JS package's):
    /// OpenAI's `stop`, `length`, `tool_calls`, plus `abort` for a cancelled call. An
    /// end-of-generation token reads as `stop`, a full context as `length`.
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::Eos | StopReason::Stop => "stop",
            StopReason::Length | StopReason::ContextFull => "length",
            StopReason::Cancelled => "abort",
            StopReason::ToolCalls => "tool_calls",
        }
    }
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct GenerationStats {
    pub prompt_tokens: usize,
    /// Prompt tokens found already in the KV cache and not run again.
    pub cached_prompt_tokens: usize,
    pub generated_tokens: usize,
    pub prefill_seconds: f64,
    pub decode_seconds: f64,
    /// From the start of the call to the first sampled token.
    pub time_to_first_token_seconds: f64,
    /// Time spent computing a response format's token masks (0 without one).
    pub mask_seconds: f64,
}

impl GenerationStats {
    /// Prompt tokens actually run per second of prefill.
    pub fn prefill_tokens_per_second(&self) -> f64 {
        rate(
            self.prompt_tokens - self.cached_prompt_tokens,
            self.prefill_seconds,
        )
    }

    /// Tokens per second after the first (whose cost is the prefill's).
    pub fn decode_tokens_per_second(&self) -> f64 {
        rate(self.generated_tokens.saturating_sub(1), self.decode_seconds)
    }
}

fn rate(n: usize, seconds: f64) -> f64 {
    if seconds > 0.0 {
        n as f64 / seconds
    } else {
        0.0
    }
}

#[derive(Debug, Clone)]
pub struct Generation {
    pub ids: Vec<u32>,
    pub text: String,
    /// The calls the reply made, when it called tools (then `text` is what came before them).
    pub tool_calls: Vec<ToolCall>,
    /// One entry per id of `ids` when logprobs were asked (`GenerateOptions::logprobs`).
    pub logprobs: Vec<LogprobEntry>,
    pub stop_reason: StopReason,
    pub stats: GenerationStats,
}

/// A backend plus the record of the tokens its cache holds.
pub struct Session<B: Backend> {
    pub backend: B,
    cached: Vec<u32>,
}

impl<B: Backend> Session<B> {
    pub fn new(backend: B) -> Self {
        Session {
            backend,
            cached: Vec::new(),
        }
    }

    /// Forget the cached conversation.
    pub fn reset(&mut self) {
        self.backend.truncate(0);
        self.cached.clear();
    }

    /// Generate a continuation of `prompt`, held to `constraint` if given (built from
    /// `options.response_format` or the tools by the caller, which keeps the grammar library's
    /// per-model state), with tool calls taken out of the text as `tools` says, reporting each
    /// token through `on_token` ([`OnToken`]). A prompt stopped in its prefill keeps the chunks
    /// that ran in the cache (the next call reuses them) and generates nothing.
    pub async fn generate_async(
        &mut self,
        tokenizer: &Tokenizer,
        prompt: &[u32],
        options: &GenerateOptions,
        mut constraint: Option<Constraint>,
        tools: Option<&ToolPlan>,
        on_token: &mut OnToken<'_>,
    ) -> Result<Generation> {
        options.sampling.validate()?;
        crate::logprobs::validate(options.logprobs)?;
        if options.max_tokens == 0 {
            return Err(Error::InvalidArgument(
                "max_tokens must be at least 1".into(),
            ));
        }
        let start = Instant::now();
        let context = self.backend.context_length();
        if prompt.is_empty() {
            return Err(Error::InvalidArgument("the prompt has no tokens".into()));
        }
        if prompt.len() >= context {
            return Err(Error::ContextOverflow {
                tokens: prompt.len(),
                context,
            });
        }

        // Reuse the cached prefix; at least the last prompt token must run to get logits.
        let reuse = common_prefix(&self.cached, prompt).min(prompt.len() - 1);
        self.backend.truncate(reuse);
        self.cached.truncate(reuse);

        let mut sampler = Sampler::new(options.sampling.clone());
        sampler.set_logprobs(options.logprobs);
        let mut history: Vec<u32> = prompt.to_vec();
        let mut stats = GenerationStats {
            prompt_tokens: prompt.len(),
            cached_prompt_tokens: reuse,
            ..Default::default()
        };
        // The decoder sees the prompt's tail as context so the first piece keeps its leading
        // space (SentencePiece).
        let tail = &prompt[prompt.len().saturating_sub(4)..];
        let mut out = TextOut::new(tokenizer, &options.stop, tail, tools.map(ToolPlan::divert))?;
        let mut ids = Vec::new();

        let prefill_start = Instant::now();
        let chunk = self.backend.prefill_chunk().max(1);
        let mut rest = &prompt[reuse..];
        while rest.len() > chunk {
            let (now, later) = rest.split_at(chunk);
            self.backend.prefill(now).await?;
            self.cached.extend_from_slice(now);
            rest = later;
            if !on_token("", None) {
                stats.prefill_seconds = prefill_start.elapsed().as_secs_f64();
                return Ok(Generation {
                    ids,
                    text: String::new(),
                    tool_calls: Vec::new(),
                    logprobs: Vec::new(),
                    stop_reason: StopReason::Cancelled,
                    stats,
                });
            }
        }
        if let Some(c) = &mut constraint {
            sampler.set_mask(Some(c.mask()?));
        }
        let mut next = self.feed(rest, &mut sampler, &history).await?;
        stats.prefill_seconds = prefill_start.elapsed().as_secs_f64();
        stats.time_to_first_token_seconds = start.elapsed().as_secs_f64();
        let decode_start = Instant::now();

        let mut grammar_done = false;
        let mut logprobs = Vec::new();
        let stop_reason = loop {
            if !options.ignore_eos && tokenizer.is_stop(next) {
                break StopReason::Eos;
            }
            ids.push(next);
            let entry = sampler
                .take_logprobs()
                .map(|t| LogprobEntry::new(tokenizer, &t));
            history.push(next);
            if let Some(c) = &mut constraint {
                c.accept(next)?;
            }
            grammar_done = constraint.as_ref().is_some_and(Constraint::is_finished);
            let pushed = out.push(next, &mut |piece| on_token(piece, entry.as_ref()))?;
            logprobs.extend(entry);
            match pushed {
                Some(reason) => break reason,
                None if grammar_done => break StopReason::Stop,
                None if ids.len() >= options.max_tokens => break StopReason::Length,
                None if self.backend.position() + 1 >= context => break StopReason::ContextFull,
                None => {}
            }
            if let Some(c) = &mut constraint {
                sampler.set_mask(Some(c.mask()?));
            }
            next = self.feed(&[next], &mut sampler, &history).await?;
        };
        // A stop string cuts the text where it begins; a complete grammar keeps all of it (text
        // held back as a possible stop-string start included).
        let mut stop_reason = stop_reason;
        let mut tool_calls = Vec::new();
        let on_piece = &mut |piece: &str| on_token(piece, None);
        if grammar_done || (stop_reason != StopReason::Stop && stop_reason != StopReason::Cancelled)
        {
            out.finish(on_piece)?;
            // A call's text becomes calls; text that is not a call is part of the reply.
            if let (Some(plan), Some(diverted)) = (tools, out.diverted.take()) {
                match plan.parse(&diverted, crate::tools::id_seed(&ids)) {
                    Some(calls) => {
                        tool_calls = calls;
                        if matches!(stop_reason, StopReason::Eos | StopReason::Stop) {
                            stop_reason = StopReason::ToolCalls;
                        }
                    }
                    None => {
                        out.held = diverted;
                        out.emit_held(on_piece);
                    }
                }
            }
        }
        stats.generated_tokens = ids.len();
        stats.decode_seconds = decode_start.elapsed().as_secs_f64();
        stats.mask_seconds = constraint.map_or(0.0, |c| c.mask_seconds);
        Ok(Generation {
            ids,
            text: out.text,
            tool_calls,
            logprobs,
            stop_reason,
            stats,
        })
    }

    async fn feed(
        &mut self,
        tokens: &[u32],
        sampler: &mut Sampler,
        history: &[u32],
    ) -> Result<u32> {
        let next = self.backend.next_token(tokens, sampler, history).await?;
        self.cached.extend_from_slice(tokens);
        Ok(next)
    }
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Turns ids into emitted text: UTF-8-safe pieces from the tokenizer's stream decoder, held back
/// while they could be the start of a stop string or of a tool call; from a call's start on,
/// the text is diverted (kept for the tool-call parser, not emitted).
struct TextOut<'a> {
    decoder: crate::tokenizer::StreamDecoder<'a>,
    stop: &'a [String],
    /// Decoded but not yet emitted (might begin a stop string or a call).
    held: String,
    /// Everything emitted.
    text: String,
    /// Where a tool call starts, when tools are offered.
    divert: Option<Divert>,
    /// The text from a call's start on, once one has started.
    diverted: Option<String>,
}

impl<'a> TextOut<'a> {
    fn new(
        tokenizer: &'a Tokenizer,
        stop: &'a [String],
        context: &[u32],
        divert: Option<Divert>,
    ) -> Result<Self> {
        Ok(TextOut {
            decoder: tokenizer.stream_decoder(true).with_context(context)?,
            stop,
            held: String::new(),
            text: String::new(),
            divert,
            diverted: None,
        })
    }

    /// Where in `held` a tool call starts, if one has (`piece` is the text `id` added).
    fn call_start(&self, id: u32, piece: &str) -> Option<usize> {
        let d = self.divert.as_ref()?;
        if d.token == Some(id) {
            return Some(self.held.len() - piece.len());
        }
        let body = self.held.trim_start();
        let opens = d.opening.is_some_and(|o| body.starts_with(o));
        if opens && self.text.trim().is_empty() {
            return Some(self.held.len() - body.len());
        }
        d.marker.and_then(|m| self.held.find(m))
    }

    /// How much of `held`'s end could still grow into a call's start.
    fn call_prefix(&self) -> usize {
        let Some(d) = &self.divert else {
            return 0;
        };
        // Before any text: all of it, while it could still open a call.
        let body = self.held.trim_start();
        if self.text.trim().is_empty() && d.opening.is_some_and(|o| o.starts_with(body)) {
            return self.held.len();
        }
        d.marker.map_or(0, |m| longest_suffix_prefix(&self.held, m))
    }

    fn push(
        &mut self,
        id: u32,
        on_piece: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Option<StopReason>> {
        let piece = self.decoder.push(id)?.unwrap_or_default();
        if let Some(diverted) = &mut self.diverted {
            // Inside a call: no stop strings (its arguments may contain them), nothing emitted.
            diverted.push_str(&piece);
            return Ok((!on_piece("")).then_some(StopReason::Cancelled));
        }
        self.held.push_str(&piece);
        let call = self.call_start(id, &piece);
        if let Some(at) = self
            .stop
            .iter()
            .filter(|s| !s.is_empty())
            .filter_map(|s| self.held.find(s.as_str()))
            .filter(|&at| call.is_none_or(|c| at < c))
            .min()
        {
            self.held.truncate(at);
            self.emit_held(on_piece);
            return Ok(Some(StopReason::Stop));
        }
        if let Some(at) = call {
            self.diverted = Some(self.held.split_off(at));
            // Exactly one call per token, even with nothing before the call to emit.
            let piece = std::mem::take(&mut self.held);
            self.text.push_str(&piece);
            return Ok((!on_piece(&piece)).then_some(StopReason::Cancelled));
        }
        // Keep back the longest tail that is a proper prefix of some stop string or a call.
        let keep = self
            .stop
            .iter()
            .map(|s| longest_suffix_prefix(&self.held, s))
            .max()
            .unwrap_or(0)
            .max(self.call_prefix());
        // Exactly one call per token, empty when everything is held back: the caller's chance
        // to cancel comes every token, not only when text appears.
        let rest = self.held.split_off(self.held.len() - keep);
        let piece = std::mem::replace(&mut self.held, rest);
        self.text.push_str(&piece);
        match on_piece(&piece) {
            true => Ok(None),
            false => Ok(Some(StopReason::Cancelled)),
        }
    }

    fn emit_held(&mut self, on_piece: &mut dyn FnMut(&str) -> bool) -> bool {
        if self.held.is_empty() {
            return true;
        }
        let piece = std::mem::take(&mut self.held);
        self.text.push_str(&piece);
        on_piece(&piece)
    }

    fn finish(&mut self, on_piece: &mut dyn FnMut(&str) -> bool) -> Result<()> {
        if let Some(rest) = self.decoder.flush()? {
            match &mut self.diverted {
                Some(diverted) => diverted.push_str(&rest),
                None => self.held.push_str(&rest),
            }
        }
        self.emit_held(on_piece);
        Ok(())
    }
}

/// Length of the longest suffix of `text` that is a proper prefix of `stop`, on char boundaries.
fn longest_suffix_prefix(text: &str, stop: &str) -> usize {
    (1..stop.len().min(text.len() + 1))
        .rev()
        .find(|&n| stop.is_char_boundary(n) && text.ends_with(&stop[..n]))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffix_prefix() {
        assert_eq!(longest_suffix_prefix("hello wor", "world"), 3);
        assert_eq!(longest_suffix_prefix("hello", "world"), 0);
        assert_eq!(
            longest_suffix_prefix("abc", "abc"),
            0,
            "a whole match is not held back"
        );
        assert_eq!(longest_suffix_prefix("x<|", "<|im_end|>"), 2);
        assert_eq!(longest_suffix_prefix("é", "éa"), 2);
    }

    #[test]
    fn prefix_len() {
        assert_eq!(common_prefix(&[1, 2, 3], &[1, 2, 4]), 2);
        assert_eq!(common_prefix(&[], &[1]), 0);
    }
}

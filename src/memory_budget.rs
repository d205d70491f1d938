//! The memory a model needs, from its GGUF header alone, and the context that fits a limit.
//!
//! `Loading::new` asks here before anything large is allocated (and, in a browser, before the
//! download goes past the header): the GPU's need is counted buffer by buffer with the same
//! sizing functions the allocations use (weights in their plane layout, split where a binding
//! limit asks; the KV cache; activations, attention scratch, logits, sampler), so the estimate
//! is what the load really allocates, checked against `GpuContext::allocated_bytes` by
//! `tests/memory_budget.rs`. A context that does not fit is fitted: the largest power of two
//! that does, down to [`MIN_CONTEXT`]; below that the model is refused (`MODEL_TOO_LARGE`, with
//! the need and the limit in MiB).

use crate::config::Config;
use crate::cpu::weights::TensorCollector;
use crate::engine::DEFAULT_MAX_CONTEXT;
use crate::error::{Error, Result};
use crate::gguf::{Header, TensorInfo};
use crate::gpu::activations::Activations;
use crate::gpu::kernel::{storage_bytes, uniform_bytes};
use crate::gpu::kernels::attention::Attention;
use crate::gpu::kernels::sample::GpuSampler;
use crate::gpu::kv_cache::KvCache;
use crate::gpu::loader::{GpuPlan, Role};
use crate::gpu::weights::GpuWeight;
use crate::gpu::GpuContext;
use crate::model::{MAX_SAMPLER_HISTORY, PREFILL_BATCH, READBACK_SLOTS};

/// The smallest context a fitted load may get: below this a chat does not fit its own turn
/// markers and a reply, so the model is refused instead (a model trained for less keeps its
/// own).
pub const MIN_CONTEXT: usize = 256;

/// Kernel parameter uniforms, an upper bound: each op of the decode and the prefill graphs has
/// one of at most 64 bytes. A block records at most ~20 ops besides those per part of a split
/// weight (one per part, in the embedding and the LM head too) or KV cache (RoPE and attention:
/// one per part and layer), counted apart. The few KiB this over-counts are far below the
/// tolerance the tests state.
const UNIFORM_BYTES_PER_OP: u64 = 2 * 64;
const OPS_PER_LAYER: u64 = 32;
/// The head's norm, the sampler and the combine passes.
const OPS_OUTSIDE: u64 = 64;

/// Bytes a model needs on one device, by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemoryNeed {
    /// Weights as the device stores them.
    pub weights: u64,
    pub kv_cache: u64,
    /// Activations, attention scratch, logits, the sampler's buffers, kernel parameters.
    pub other: u64,
}

impl MemoryNeed {
    pub fn total(&self) -> u64 {
        self.weights + self.kv_cache + self.other
    }
}

/// A total that a load must stay within, and what it is, for messages.
#[derive(Debug, Clone)]
pub struct MemoryLimit {
    pub bytes: u64,
    /// e.g. "the GPU budget (max_gpu_bytes)".
    pub what: String,
}

/// A context shorter than the one asked for, and why (reported by the engine, never silent).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ContextReduced {
    /// The context asked for (or the default one).
    pub requested: usize,
    pub reason: String,
}

/// The context a load gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextFit {
    pub context: usize,
    pub reduced: Option<ContextReduced>,
}

/// The bytes the GPU engine allocates for `config`'s model (tensor table in `header`) with a
/// KV cache of `context` positions on `ctx`, counted without allocating. `MODEL_TOO_LARGE` when
/// one buffer would exceed what the adapter binds, as the allocation would fail.
pub fn gpu_need(
    ctx: &GpuContext,
    header: &Header,
    config: &Config,
    context: usize,
) -> Result<MemoryNeed> {
    let plan = GpuPlan::new(header, config)?;
    let (mut weights, mut weight_parts) = (0, 0);
    for (name, indices) in &plan.stacks {
        let infos: Vec<&TensorInfo> = indices.iter().map(|&i| &header.tensors[i]).collect();
        let (bytes, parts) = GpuWeight::planned_bytes(ctx, name, &infos)?;
        (weights, weight_parts) = (weights + bytes, weight_parts + parts);
    }
    for (role, info) in plan.roles.iter().zip(&header.tensors) {
        let (bytes, parts) = match role {
            Role::Matrix => GpuWeight::planned_bytes(ctx, &info.name, &[info])?,
            // RoPE factors are folded into the frequency tables counted below.
            Role::Vector if info.name.starts_with("rope_") => (0, 0),
            Role::Vector => {
                let bytes = info.n_elements() * 4;
                (fits_binding(&info.name, bytes, ctx.max_binding_size)?, 0)
            }
            Role::Unused | Role::Stacked { .. } => (0, 0),
        };
        (weights, weight_parts) = (weights + bytes, weight_parts + parts);
    }
    // One RoPE frequency table per distinct layer table (factors scale every layer alike).
    let mut tables: Vec<Vec<f32>> = Vec::new();
    for l in 0..config.n_layer {
        let table = config.rope(l, None)?.freqs;
        if !tables.contains(&table) {
            tables.push(table);
        }
    }
    weights += tables
        .iter()
        .map(|t| storage_bytes(t.len() as u64 * 4))
        .sum::<u64>();

    let kv_cache = KvCache::bytes_for(ctx, config, context)?;
    let rows_per_part = KvCache::rows_per_part_for(ctx, config, context)?;
    let parts = context.div_ceil(rows_per_part);
    let batch = PREFILL_BATCH.min(context);
    let mut other = 0;
    for tokens in [1, batch] {
        other += Activations::bytes_for(ctx, config, tokens);
        other += Attention::scratch_bytes_for(ctx, config, rows_per_part, parts, tokens)?;
    }
    // A prefill batch's activations bind one value (x, q, k, gate, ...) per binding, gate and
    // up sharing the largest buffer; the kernels hold those and the logits to the binding
    // limit, the sampler its candidates to the adapter's.
    let widest = config.n_ff.max(config.q_dim()).max(config.n_embd) as u64;
    let limit = ctx.max_binding_size;
    fits_binding("prefill activations", batch as u64 * widest * 4, limit)?;
    fits_buffer(
        ctx,
        "prefill gate and up",
        2 * batch as u64 * config.n_ff as u64 * 4,
    )?;
    other += fits_binding("logits", config.n_vocab as u64 * 4, limit)?;
    let adapter = ctx.limits.max_storage_buffer_binding_size;
    fits_binding("sampler candidates", config.n_vocab as u64 * 8, adapter)?;
    // The sampled ids, their read-back slots and the step uniform.
    other += storage_bytes(READBACK_SLOTS as u64 * 4) + READBACK_SLOTS as u64 * 4;
    other += uniform_bytes(16);
    other += GpuSampler::bytes_for(ctx, config.n_vocab, MAX_SAMPLER_HISTORY, READBACK_SLOTS);
    // The token embedding's parts serve the embedding and, when tied, the LM head too.
    let ops = config.n_layer as u64 * (OPS_PER_LAYER + 2 * parts as u64)
        + 2 * weight_parts as u64
        + OPS_OUTSIDE;
    other += ops * UNIFORM_BYTES_PER_OP;
    Ok(MemoryNeed {
        weights,
        kv_cache,
        other,
    })
}

/// `bytes` (rounded as a storage buffer is), or `MODEL_TOO_LARGE` when they exceed `limit`, the
/// most one binding may cover.
fn fits_binding(what: &str, bytes: u64, limit: u64) -> Result<u64> {
    if bytes > limit {
        return Err(Error::ModelTooLarge(format!(
            "the {what} take {} MiB in one binding; the adapter binds at most {} MiB",
            mib(bytes),
            mib(limit)
        )));
    }
    Ok(storage_bytes(bytes))
}

/// `MODEL_TOO_LARGE` when one buffer of `bytes` exceeds the adapter's `max_buffer_size`.
fn fits_buffer(ctx: &GpuContext, what: &str, bytes: u64) -> Result<()> {
    if bytes > ctx.limits.max_buffer_size {
        return Err(Error::ModelTooLarge(format!(
            "the {what} take {} MiB in one buffer; the adapter allows at most {} MiB",
            mib(bytes),
            mib(ctx.limits.max_buffer_size)
        )));
    }
    Ok(())
}

/// The bytes the CPU engine (or the f32 reference, which keeps the same weights) holds for
/// `config`'s model with a KV cache of `context` positions: the tensors it reads as the file
/// stores them, the f32 KV cache, and the activations of its largest batch.
pub fn cpu_need(header: &Header, config: &Config, context: usize) -> MemoryNeed {
    let weights = TensorCollector::bytes_kept(header, config, context);
    let kv_cache = 2 * 4 * (config.n_layer as u64 * context as u64 * config.kv_dim() as u64);
    let t = crate::cpu::model::PREFILL_BATCH.min(context) as u64;
    let (e, q, kv, ff) = (
        config.n_embd as u64,
        config.q_dim() as u64,
        config.kv_dim() as u64,
        config.n_ff as u64,
    );
    let widest = e.max(q + 2 * kv).max(2 * ff);
    // x, h, qkv, att, gate|up, gate, one projection's part, each [T][width] f32; each token's
    // input quantized to 8 bits (at most 2 bytes a value with its block scales, plus the f32
    // copy); the logits.
    let floats = t * (2 * e + (q + 2 * kv) + q + 2 * ff + ff + widest);
    let other = 4 * floats + t * widest * 6 + 4 * config.n_vocab as u64;
    MemoryNeed {
        weights,
        kv_cache,
        other,
    }
}

/// The context a load gets: the one `requested` (by default the model's, capped at
/// `DEFAULT_MAX_CONTEXT`), at most the `trained` one, and when `need` at that context exceeds
/// `limit`, the largest power of two below it that fits, down to [`MIN_CONTEXT`]. Either
/// reduction is reported; a model that fits no context is `MODEL_TOO_LARGE`.
pub fn fit_context(
    requested: Option<usize>,
    trained: usize,
    limit: Option<&MemoryLimit>,
    need: impl Fn(usize) -> Result<MemoryNeed>,
) -> Result<ContextFit> {
    let asked = requested.unwrap_or(trained.min(DEFAULT_MAX_CONTEXT));
    let cap = asked.min(trained);
    if cap < 2 {
        return Err(Error::InvalidArgument(format!(
            "context length {cap} is too small"
        )));
    }
    let trained_reason = (cap < asked).then(|| ContextReduced {
        requested: asked,
        reason: format!("the model was trained for {trained} tokens"),
    });
    let Some(limit) = limit else {
        need(cap)?;
        return Ok(ContextFit {
            context: cap,
            reduced: trained_reason,
        });
    };
    let at_cap = need(cap)?;
    if at_cap.total() <= limit.bytes {
        return Ok(ContextFit {
            context: cap,
            reduced: trained_reason,
        });
    }
    let smallest = MIN_CONTEXT.min(cap);
    let mut context = cap;
    let mut last = at_cap;
    while context > smallest {
        // The next power of two below `context` (which may not be one), not below the floor.
        context = (1usize << (usize::BITS - 1 - (context - 1).leading_zeros())).max(smallest);
        last = need(context)?;
        if last.total() <= limit.bytes {
            return Ok(ContextFit {
                context,
                reduced: Some(ContextReduced {
                    requested: asked,
                    reason: format!(
                        "{} tokens need {} MiB, over {} of {} MiB; {context} tokens need {} MiB",
                        cap,
                        mib(at_cap.total()),
                        limit.what,
                        mib(limit.bytes),
                        mib(last.total())
                    ),
                }),
            });
        }
    }
    Err(Error::ModelTooLarge(format!(
        "the model needs {} MiB even with a context of {context} tokens ({} MiB of weights, {} \
         MiB of KV cache, {} MiB of activations and buffers), over {} of {} MiB",
        mib(last.total()),
        mib(last.weights),
        mib(last.kv_cache),
        mib(last.other),
        limit.what,
        mib(limit.bytes)
    )))
}

/// Bytes in MiB, rounded up (a need is never understated).
fn mib(bytes: u64) -> u64 {
    bytes.div_ceil(1 << 20)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A need of `bytes_per_token` per position plus 1000 fixed bytes.
    fn linear(bytes_per_token: u64) -> impl Fn(usize) -> Result<MemoryNeed> {
        move |context| {
            Ok(MemoryNeed {
                weights: 1000,
                kv_cache: context as u64 * bytes_per_token,
                other: 0,
            })
        }
    }

    fn limit(bytes: u64) -> MemoryLimit {
        MemoryLimit {
            bytes,
            what: "the test budget".into(),
        }
    }

    #[test]
    fn a_context_that_fits_is_kept() {
        let fit = fit_context(None, 8192, Some(&limit(u64::MAX)), linear(10)).unwrap();
        assert_eq!(fit.context, DEFAULT_MAX_CONTEXT);
        assert_eq!(fit.reduced, None);
    }

    #[test]
    fn an_asked_context_above_the_trained_one_is_reduced_and_said() {
        let fit = fit_context(Some(9000), 2048, None, linear(10)).unwrap();
        assert_eq!(fit.context, 2048);
        let reduced = fit.reduced.unwrap();
        assert_eq!(reduced.requested, 9000);
        assert!(reduced.reason.contains("trained for 2048"), "{reduced:?}");
    }

    #[test]
    fn the_largest_power_of_two_that_fits_is_taken() {
        // 3000 asked: 3000 tokens need 31000 bytes; 2048 need 21480 (over 21000); 1024 fit.
        let fit = fit_context(Some(3000), 8192, Some(&limit(21_000)), linear(10)).unwrap();
        assert_eq!(fit.context, 1024);
        assert_eq!(fit.reduced.unwrap().requested, 3000);
    }

    #[test]
    fn below_the_smallest_context_the_model_is_refused_with_need_and_limit() {
        let e = fit_context(None, 4096, Some(&limit(1 << 20)), linear(1 << 20)).unwrap_err();
        assert_eq!(e.code(), "MODEL_TOO_LARGE");
        let text = e.to_string();
        assert!(
            text.contains("needs 257 MiB") && text.contains("of 1 MiB"),
            "{text}"
        );
        assert!(text.contains(&format!("{MIN_CONTEXT} tokens")), "{text}");
    }

    #[test]
    fn a_model_trained_for_less_than_the_floor_keeps_its_own_context() {
        let fit = fit_context(None, 128, Some(&limit(1000 + 1280)), linear(10)).unwrap();
        assert_eq!((fit.context, fit.reduced), (128, None));
        let e = fit_context(None, 128, Some(&limit(1000)), linear(10)).unwrap_err();
        assert_eq!(e.code(), "MODEL_TOO_LARGE");
    }
}

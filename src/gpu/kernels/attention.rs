//! Causal multi-head attention over the KV cache, with grouped KV heads.
//!
//! Two passes (split-K). `attention.wgsl` cuts the keys each token sees (`0..=pos + t`) into
//! chunks and runs an online softmax over each chunk in one invocation, for all the query heads
//! of one KV head at once, writing each head's unnormalized output, maximum score and sum of
//! exponentials to a slot of an [`AttentionScratch`]. `attention_combine.wgsl` rescales the
//! slots to the common maximum and normalizes. Long contexts therefore never need a score
//! vector in memory, and a single decode token at a long position is spread over up to
//! `max_chunks` invocations per KV head; a prefill batch already has `n_tokens * n_head_kv`
//! independent rows and uses fewer, longer chunks. A cache split into parts (see [`KvCache`])
//! is one pass-1 dispatch per part, whose slots the same combine merges.
//!
//! A decode step whose token sees few keys needs no split: then pass 1 alone runs (`direct`,
//! the same shader storing the normalized output) and the combine is not recorded. The ops of
//! both forms are bound at load ([`When`]); each step records those its position asks for. The
//! direct form is used while the split would not spread the keys over more than one workgroup
//! of pass 1 anyway (CPU emulators: few invocations; [`Attention::direct_keys`]), or would make
//! one chunk (real GPUs), so it costs no parallelism.
//!
//! The loops over the head dimension in pass 1 are unrolled here (the shader's `{{INIT}}`,
//! `{{SCORES}}`, `{{ACCUMULATE}}`, `{{STORE}}`), so that queries and accumulators are registers
//! rather than private arrays: on lavapipe at position 1000 that and sharing the KV reads among
//! the group's query heads made pass 1 about 3x faster than a loop per head over arrays.

use bytemuck::{Pod, Zeroable};

use super::{check_distinct, check_f32, check_step, check_tokens, to_u32};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::gpu::kernel::{
    storage_buffer, storage_bytes, uniform_buffer, whole, Kernel, Op, ShaderSource, When,
};
use crate::gpu::kv_cache::{KvCache, KvElement};
use crate::gpu::GpuContext;

const ATTENTION_WGSL: &str = include_str!("../../../shaders/attention.wgsl");
const COMBINE_WGSL: &str = include_str!("../../../shaders/attention_combine.wgsl");
/// Workgroup size of the combine, and of pass 1 on real GPUs.
const WORKGROUP: u32 = 64;
/// Pass 1 on CPU emulators: one 8-wide vector per workgroup, so that the few invocations of a
/// decode step still spread over the emulator's threads.
const WORKGROUP_CPU: u32 = 8;
/// Fewest keys one invocation walks: below this the combine costs more than the chunk.
const MIN_CHUNK: usize = 32;
/// Most keys one invocation walks. lavapipe (llvmpipe) counts the iterations of all loops of a
/// shader invocation together and silently leaves them after 65535 (gallivm's
/// `LP_MAX_TGSI_LOOP_ITERATIONS`); the key loop is the only loop of pass 1.
const MAX_CHUNK: usize = 60000;
/// Invocations (token x KV head x chunk) to aim for: a real GPU wants thousands in flight; a
/// CPU emulator runs a handful of threads with 8-wide vectors and pays for every extra slot.
const TARGET_INVOCATIONS_GPU: usize = 2048;
const TARGET_INVOCATIONS_CPU: usize = 64;
/// Query values (heads x head_dim) one invocation of pass 1 keeps in registers, twice over
/// (queries and accumulators): a CPU emulator spills cheaply; a GPU has ~255 registers.
const MAX_HEADS_DIM_CPU: usize = 512;
const MAX_HEADS_DIM_GPU: usize = 128;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PartialParams {
    n_head: u32,
    group: u32,
    kv_dim: u32,
    part_start: u32,
    part_len: u32,
    max_chunks: u32,
    min_chunk: u32,
    slot_base: u32,
    n_slots: u32,
    scale: f32,
    window: u32,
    _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct CombineParams {
    n_head: u32,
    n_parts: u32,
    part_len: u32,
    max_chunks: u32,
    min_chunk: u32,
    n_slots: u32,
    window: u32,
    _pad: u32,
}

/// The adapter pass 1 is shaped for; both are correct on any adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttentionTuning {
    /// All query heads of a KV head per invocation, 8-invocation workgroups, few chunks.
    CpuEmulator,
    /// At most 128 query values per invocation (registers), 64-invocation workgroups,
    /// chunks for ~2048 invocations.
    Gpu,
}

pub struct Attention {
    partial: Kernel,
    /// Pass 1 storing the normalized output of one chunk (short decode contexts).
    direct: Kernel,
    element: KvElement,
    combine: Kernel,
    n_head: usize,
    n_head_kv: usize,
    head_dim: usize,
    /// Multiplies q.k (`Config::attention_scale`).
    scale: f32,
    /// Query heads of one KV head that one invocation serves (a divisor of the group size).
    heads: usize,
    partial_workgroup: u32,
    target_invocations: usize,
}

/// Workspace for the chunk results of one batch size: `[max_tokens][n_head][slots][head_dim + 4]`
/// f32. Layers run one after another, so one scratch serves every layer of a step.
pub struct AttentionScratch {
    buffer: wgpu::Buffer,
    max_tokens: usize,
    max_chunks: usize,
    parts: usize,
}

impl AttentionScratch {
    /// Chunks per cache part and head that one token may use.
    pub fn max_chunks(&self) -> usize {
        self.max_chunks
    }

    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }
}

impl Attention {
    /// Pipelines for `config`'s heads, shaped for the adapter.
    pub async fn new(ctx: &GpuContext, config: &Config) -> Result<Attention> {
        let tuning = match ctx.is_cpu {
            true => AttentionTuning::CpuEmulator,
            false => AttentionTuning::Gpu,
        };
        Self::with_tuning(ctx, config, tuning).await
    }

    /// Pipelines shaped for a chosen kind of adapter (tests run both on one adapter).
    pub async fn with_tuning(
        ctx: &GpuContext,
        config: &Config,
        tuning: AttentionTuning,
    ) -> Result<Attention> {
        let cpu = tuning == AttentionTuning::CpuEmulator;
        let (n_head, n_head_kv, head_dim) = (config.n_head, config.n_head_kv, config.head_dim);
        let Shape {
            heads,
            partial_workgroup,
            target_invocations,
        } = Shape::new(config, cpu)?;
        let element = KvElement::for_context(ctx);
        let pass1 = |direct| {
            let source = ShaderSource::new(ATTENTION_WGSL);
            element
                .define(unrolled(source, heads, head_dim / 4, direct))
                .define("HEAD_DIM", head_dim)
                .define("HEADS", heads)
                .define("WG", partial_workgroup)
        };
        let combine = ShaderSource::new(COMBINE_WGSL)
            .define("HEAD_DIM", head_dim)
            .define("WG", WORKGROUP);
        Ok(Attention {
            partial: Kernel::new(ctx, "attention", pass1(false)).await?,
            direct: Kernel::new(ctx, "attention_direct", pass1(true)).await?,
            element,
            combine: Kernel::new(ctx, "attention_combine", combine).await?,
            n_head,
            n_head_kv,
            head_dim,
            scale: config.attention_scale,
            heads,
            partial_workgroup,
            target_invocations,
        })
    }

    /// The most keys a decode step's token may see for attention to run without the split
    /// (`direct`): while the split would not spread them beyond one workgroup of pass 1 (CPU
    /// emulators, whose workgroups are small: a workgroup runs on one thread) or over more than
    /// one chunk (real GPUs), and within the first part of `cache`.
    pub fn direct_keys(&self, cache: &KvCache) -> usize {
        let rows = self.n_head / self.heads;
        let chunks = match self.partial_workgroup {
            WORKGROUP_CPU => (WORKGROUP_CPU as usize / rows).max(1),
            _ => 1,
        };
        (chunks * MIN_CHUNK).min(cache.rows_per_part())
    }

    /// Scratch for batches of up to `max_tokens` tokens over `cache`, chunked for this adapter.
    pub fn scratch(
        &self,
        ctx: &GpuContext,
        cache: &KvCache,
        max_tokens: usize,
    ) -> Result<AttentionScratch> {
        let rows = max_tokens.max(1) * self.n_head / self.heads;
        let wanted = self.target_invocations.div_ceil(rows);
        self.scratch_with_chunks(ctx, cache, max_tokens, wanted)
    }

    /// Bytes `Attention::new(ctx, config).scratch(ctx, cache, max_tokens)` allocates, for a
    /// cache of `parts` buffers of `rows_per_part` positions, compiling and allocating nothing
    /// (the memory budget sizes a model from its header with it).
    pub fn scratch_bytes_for(
        ctx: &GpuContext,
        config: &Config,
        rows_per_part: usize,
        parts: usize,
        max_tokens: usize,
    ) -> Result<u64> {
        let shape = Shape::new(config, ctx.is_cpu)?;
        let rows = max_tokens.max(1) * config.n_head / shape.heads;
        let wanted = shape.target_invocations.div_ceil(rows);
        let (per_chunk, chunks) =
            shape.chunks(ctx, config, rows_per_part, parts, max_tokens, wanted)?;
        Ok(storage_bytes(per_chunk * chunks as u64))
    }

    /// Scratch allowing `max_chunks` chunks per cache part and head, clamped to at least what
    /// keeps every chunk within `MAX_CHUNK` keys and at most one chunk per `MIN_CHUNK` keys.
    pub fn scratch_with_chunks(
        &self,
        ctx: &GpuContext,
        cache: &KvCache,
        max_tokens: usize,
        max_chunks: usize,
    ) -> Result<AttentionScratch> {
        let shape = Shape {
            heads: self.heads,
            partial_workgroup: self.partial_workgroup,
            target_invocations: self.target_invocations,
        };
        let dims = (self.n_head, self.head_dim);
        let (per_chunk, max_chunks) = shape.chunks_for(
            ctx,
            dims,
            cache.rows_per_part(),
            cache.parts(),
            max_tokens,
            max_chunks,
        )?;
        Ok(AttentionScratch {
            buffer: storage_buffer(ctx, "attention scratch", per_chunk * max_chunks as u64),
            max_tokens,
            max_chunks,
            parts: cache.parts(),
        })
    }

    /// `out[t][h] = softmax(q[t][h] . K[s..=p] * scale) V[s..=p]` for the step's tokens
    /// (`p = pos + t`; `s = 0`, or `p + 1 - window` in a sliding-window layer), with `K`, `V`
    /// the KV head `h / (n_head / n_head_kv)` of `layer` in `cache`. `q` and `out` are
    /// `[max_tokens][n_head * head_dim]` (different buffers). One op per cache part, then the
    /// combine; for one token (a decode scratch) also the direct form, each form recorded only
    /// in the steps it serves ([`direct_keys`](Self::direct_keys)).
    #[allow(clippy::too_many_arguments)]
    pub fn ops(
        &self,
        ctx: &GpuContext,
        step: &wgpu::Buffer,
        q: wgpu::BufferBinding<'_>,
        cache: &KvCache,
        layer: usize,
        scratch: &AttentionScratch,
        out: wgpu::BufferBinding<'_>,
        window: Option<usize>,
    ) -> Result<Vec<Op>> {
        check_step(step)?;
        let window = to_u32("sliding window", window.unwrap_or(0))?;
        let max_tokens = scratch.max_tokens;
        let q_dim = self.n_head * self.head_dim;
        cache.check_layer(layer, self.n_head_kv * self.head_dim, self.element)?;
        if scratch.parts != cache.parts() {
            return Err(Error::InvalidArgument(
                "attention: the scratch was made for another KV cache".into(),
            ));
        }
        check_f32(ctx, "attention q", &q, max_tokens * q_dim)?;
        check_f32(ctx, "attention output", &out, max_tokens * q_dim)?;
        check_distinct("attention", &[&out], &[&q])?;

        let n_slots = to_u32("attention slots", scratch.parts * scratch.max_chunks)?;
        let (max_chunks, rows_per_part) = (
            scratch.max_chunks as u32,
            to_u32("cache part", cache.rows_per_part())?,
        );
        let partial_groups = [
            ((self.n_head / self.heads) as u32 * max_chunks).div_ceil(self.partial_workgroup),
            max_tokens as u32,
            1,
        ];
        // What pass 1 binds over one cache part, storing into slots or the output.
        let base = PartialParams {
            n_head: self.n_head as u32,
            group: (self.n_head / self.n_head_kv) as u32,
            kv_dim: (self.n_head_kv * self.head_dim) as u32,
            part_start: 0,
            part_len: rows_per_part,
            max_chunks: 1,
            min_chunk: MIN_CHUNK as u32,
            slot_base: 0,
            n_slots: 1,
            scale: self.scale,
            window,
            _pad: 0,
        };
        let pass1 = |kernel: &Kernel, params: PartialParams, keys, values, store, groups| {
            let params = uniform_buffer(ctx, "attention params", &params);
            let bindings = [
                whole(step),
                whole(&params),
                q.clone(),
                whole(keys),
                whole(values),
                store,
            ];
            kernel.op(ctx, &bindings, groups)
        };
        let mut ops = Vec::with_capacity(scratch.parts + 1);
        for (i, (keys, values)) in cache
            .keys(layer)
            .iter()
            .zip(cache.values(layer))
            .enumerate()
        {
            let params = PartialParams {
                part_start: i as u32 * rows_per_part,
                max_chunks,
                slot_base: i as u32 * max_chunks,
                n_slots,
                ..base
            };
            let store = whole(&scratch.buffer);
            ops.push(pass1(
                &self.partial,
                params,
                keys,
                values,
                store,
                partial_groups,
            ));
        }
        let direct = self.direct_keys(cache);
        let decode = max_tokens == 1;
        if decode {
            for op in &mut ops {
                op.when = When::KeysAbove(direct);
            }
            // One chunk over the first part, written normalized into `out`.
            let (keys, values) = (&cache.keys(layer)[0], &cache.values(layer)[0]);
            let groups = [
                ((self.n_head / self.heads) as u32).div_ceil(self.partial_workgroup),
                1,
                1,
            ];
            let op = pass1(&self.direct, base, keys, values, out.clone(), groups);
            ops.push(op.when(When::KeysAtMost(direct)));
        }
        let params = CombineParams {
            n_head: self.n_head as u32,
            n_parts: scratch.parts as u32,
            part_len: rows_per_part,
            max_chunks,
            min_chunk: MIN_CHUNK as u32,
            n_slots,
            window,
            _pad: 0,
        };
        let params = uniform_buffer(ctx, "attention combine params", &params);
        let bindings = [whole(step), whole(&params), whole(&scratch.buffer), out];
        let groups = [(q_dim as u32).div_ceil(WORKGROUP), max_tokens as u32, 1];
        let combine = self.combine.op(ctx, &bindings, groups);
        ops.push(match decode {
            true => combine.when(When::KeysAbove(direct)),
            false => combine,
        });
        Ok(ops)
    }
}

/// How pass 1 splits the work on an adapter kind, from the config alone (so the memory budget
/// can size the scratch before anything is compiled).
#[derive(Clone, Copy)]
struct Shape {
    /// Query heads of one KV head that one invocation serves (a divisor of the group size).
    heads: usize,
    partial_workgroup: u32,
    target_invocations: usize,
}

impl Shape {
    fn new(config: &Config, cpu: bool) -> Result<Shape> {
        let (n_head, n_head_kv, head_dim) = (config.n_head, config.n_head_kv, config.head_dim);
        let head_ok = head_dim > 0 && head_dim % 4 == 0 && head_dim <= 256;
        if n_head_kv == 0 || n_head % n_head_kv != 0 || !head_ok {
            return Err(Error::ModelInvalid(format!(
                "attention with {n_head} heads over {n_head_kv} KV heads of {head_dim} values \
                 (head sizes that are multiples of 4 up to 256 are supported)"
            )));
        }
        let group = n_head / n_head_kv;
        let max_heads_dim = match cpu {
            true => MAX_HEADS_DIM_CPU,
            false => MAX_HEADS_DIM_GPU,
        };
        let heads = (1..=group)
            .filter(|g| group % g == 0 && g * head_dim <= max_heads_dim)
            .max()
            .unwrap_or(1);
        Ok(Shape {
            heads,
            partial_workgroup: match cpu {
                true => WORKGROUP_CPU,
                false => WORKGROUP,
            },
            target_invocations: match cpu {
                true => TARGET_INVOCATIONS_CPU,
                false => TARGET_INVOCATIONS_GPU,
            },
        })
    }

    /// `chunks_for` with the config's head sizes.
    fn chunks(
        self,
        ctx: &GpuContext,
        config: &Config,
        rows_per_part: usize,
        parts: usize,
        max_tokens: usize,
        max_chunks: usize,
    ) -> Result<(u64, usize)> {
        let dims = (config.n_head, config.head_dim);
        self.chunks_for(ctx, dims, rows_per_part, parts, max_tokens, max_chunks)
    }

    /// Scratch bytes per chunk and the chunks per cache part and head: `max_chunks` clamped to
    /// at least what keeps every chunk within `MAX_CHUNK` keys and at most one chunk per
    /// `MIN_CHUNK` keys, within the binding limit and the dispatch limit.
    fn chunks_for(
        self,
        ctx: &GpuContext,
        (n_head, head_dim): (usize, usize),
        rows_per_part: usize,
        parts: usize,
        max_tokens: usize,
        max_chunks: usize,
    ) -> Result<(u64, usize)> {
        check_tokens("attention", max_tokens)?;
        let slot_bytes = (head_dim as u64 + 4) * 4;
        let per_chunk = max_tokens as u64 * n_head as u64 * parts as u64 * slot_bytes;
        let fits = (ctx.max_binding_size / per_chunk) as usize;
        let needed = rows_per_part.div_ceil(MAX_CHUNK);
        let dispatchable = 65535 * self.partial_workgroup as usize / (n_head / self.heads);
        let max_chunks = max_chunks
            .min(rows_per_part.div_ceil(MIN_CHUNK))
            .min(fits)
            .min(dispatchable)
            .max(needed);
        if max_chunks > fits || max_chunks > dispatchable {
            return Err(Error::InvalidArgument(format!(
                "attention over a batch of {max_tokens} tokens needs {} bytes of scratch, \
                 over the binding limit of {} bytes",
                per_chunk * needed as u64,
                ctx.max_binding_size
            )));
        }
        Ok((per_chunk, max_chunks))
    }
}

/// Fill the unrolled blocks of `attention.wgsl` for `heads` query heads of `vec4s` vec4 each
/// (names as the shader's comment gives them); `direct`: store each head's normalized output
/// instead of its slot.
fn unrolled(source: ShaderSource, heads: usize, vec4s: usize, direct: bool) -> ShaderSource {
    let mut init = String::new();
    let mut scores = String::new();
    let mut accumulate = String::new();
    let mut store = String::new();
    for g in 0..heads {
        for d in 0..vec4s {
            init += &format!(
                "    let q{g}_{d} = q[qo + {}u];\n    var a{g}_{d} = vec4<f32>();\n",
                g * vec4s + d
            );
        }
        init += &format!("    var m{g} = -3.0e38;\n    var l{g} = 0.0;\n");
    }
    for d in 0..vec4s {
        scores += &format!("        let k{d} = vec4<f32>(k_cache[row + {d}u]);\n");
        accumulate += &format!("        let v{d} = vec4<f32>(v_cache[row + {d}u]);\n");
        for g in 0..heads {
            accumulate += &format!("        a{g}_{d} = a{g}_{d} * shrink{g} + w{g} * v{d};\n");
        }
    }
    for g in 0..heads {
        let dot: Vec<String> = (0..vec4s).map(|d| format!("dot(q{g}_{d}, k{d})")).collect();
        for line in [
            format!("let s{g} = ({}) * params.scale;", dot.join(" + ")),
            format!("let m_new{g} = max(m{g}, s{g});"),
            format!("let shrink{g} = exp(m{g} - m_new{g});"),
            format!("let w{g} = exp(s{g} - m_new{g});"),
            format!("l{g} = l{g} * shrink{g} + w{g};"),
            format!("m{g} = m_new{g};"),
        ] {
            scores += &format!("        {line}\n");
        }
        if direct {
            for d in 0..vec4s {
                let i = g * vec4s + d;
                store += &format!("    partials[qo + {i}u] = a{g}_{d} / l{g};\n");
            }
            continue;
        }
        let slot = format!("(slot + {g}u * params.n_slots) * SLOT");
        for d in 0..vec4s {
            store += &format!("    partials[{slot} + {d}u] = a{g}_{d};\n");
        }
        store += &format!("    partials[{slot} + HEAD_VEC4] = vec4<f32>(m{g}, l{g}, 0.0, 0.0);\n");
    }
    source
        .define("INIT", init.trim_end())
        .define("SCORES", scores.trim_end())
        .define("ACCUMULATE", accumulate.trim_end())
        .define("STORE", store.trim_end())
}

//! Sampling on the GPU: the CPU sampler's distribution (`crate::sampler`), with the same random
//! number per step, so the logits never leave the GPU and the sampled id feeds the next step's
//! embedding directly.
//!
//! Two dispatches per token: `sample_keys` (one workgroup per chunk of logits: logit bias,
//! penalties, mask, order-preserving keys, per-chunk best) and `sample_pick` (one workgroup:
//! candidates, the top-k and top-p cuts by radix searches on the keys, the draw as strip sums in
//! id order). Greedy stops after the per-chunk bests. The algorithm is described at the top of
//! `shaders/sample_pick.wgsl`. A third, `sample_logprobs`, runs only for requests that ask for
//! logprobs (compiled on the first).

use bytemuck::{Pod, Zeroable};

use crate::error::{Error, Result};
use crate::gpu::kernel::{
    read_mapped_after, readback_buffer, storage_buffer, storage_bytes, uniform_buffer,
    uniform_bytes, whole, Kernel, Op, ShaderSource,
};
use crate::gpu::GpuContext;
use crate::logprobs::{logprob, TokenLogprobs, LOGPROB_FLOOR, MAX_TOP_LOGPROBS};
use crate::sampler::{SamplingParams, MAX_LOGIT_BIAS};

/// Parameters, the order-preserving key and the random number generator (`uniform01`, the
/// WGSL port of [`crate::sampler::uniform`]) shared by the sampling shaders.
pub const SAMPLE_COMMON_WGSL: &str = include_str!("../../../shaders/sample_common.wgsl");
/// The workgroup's best (key, id), in both passes.
const SAMPLE_BEST_WGSL: &str = include_str!("../../../shaders/sample_best.wgsl");
const SAMPLE_KEYS_WGSL: &str = include_str!("../../../shaders/sample_keys.wgsl");
const SAMPLE_PICK_WGSL: &str = include_str!("../../../shaders/sample_pick.wgsl");
const SAMPLE_LOGPROBS_WGSL: &str = include_str!("../../../shaders/sample_logprobs.wgsl");

/// Shape of `sample_keys`: invocations per workgroup, groups of its two-level reduction, and
/// logits per invocation, on a GPU and on a CPU adapter.
const KEYS_GPU: KeysShape = KeysShape {
    wg: 256,
    groups: 16,
    per: 4,
};
const KEYS_CPU: KeysShape = KeysShape {
    wg: 8,
    groups: 8,
    per: 64,
};

#[derive(Clone, Copy)]
struct KeysShape {
    wg: u32,
    groups: u32,
    per: u32,
}

impl KeysShape {
    fn chunk(self) -> u32 {
        self.wg * self.per
    }
}

/// Invocations of `sample_pick`'s one workgroup, on every adapter: its histograms take
/// 8 * WG floats of the 16 KiB of workgroup memory every WebGPU adapter offers, and on a CPU
/// adapter a strip of n_vocab / WG ids keeps its loops far below lavapipe's 65535 iterations.
const PICK_WG: u32 = 256;

/// The parameters uniform (`SampleParams` in `shaders/sample_common.wgsl`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Pod, Zeroable)]
struct SampleUniform {
    /// 0: greedy.
    pub temperature: f32,
    /// 0: off.
    pub top_k: u32,
    pub top_p: f32,
    pub min_p: f32,
    pub repeat_penalty: f32,
    pub frequency_penalty: f32,
    pub presence_penalty: f32,
    /// The penalties' window; 0 when they are off.
    pub window: u32,
    pub seed_lo: u32,
    pub seed_hi: u32,
    pub n_vocab: u32,
    pub n_partials: u32,
    pub history_cap: u32,
    /// Entries of the bias list (ids inside the vocabulary).
    pub n_bias: u32,
    /// 1 when `mask` limits the tokens (a response format), written by `set_mask`.
    pub masked: u32,
    /// 1 when the step's logprobs are asked (pass 1 then keeps every key, greedy too).
    pub logprobs: u32,
    pub top_logprobs: u32,
    pub _pad: u32,
}

/// Byte offset of `SampleUniform::masked`.
const MASKED_OFFSET: u64 = 56;

impl SampleUniform {
    /// The uniform for `p` and the sampler's sizes, with every "off" setting in the one form
    /// the shaders test for, `n_bias` entries in the bias list and the logprobs asked.
    fn new(
        p: &SamplingParams,
        sampler: &Sizes,
        n_bias: usize,
        top_logprobs: Option<usize>,
    ) -> SampleUniform {
        SampleUniform {
            temperature: if p.temperature > 0.0 {
                p.temperature
            } else {
                0.0
            },
            top_k: p.top_k.min(u32::MAX as usize) as u32,
            top_p: p.top_p,
            min_p: p.min_p,
            repeat_penalty: p.repeat_penalty,
            frequency_penalty: p.frequency_penalty,
            presence_penalty: p.presence_penalty,
            window: if p.penalties_on() {
                p.repeat_last_n.min(u32::MAX as usize) as u32
            } else {
                0
            },
            seed_lo: p.seed as u32,
            seed_hi: (p.seed >> 32) as u32,
            n_vocab: sampler.n_vocab,
            n_partials: sampler.n_partials,
            history_cap: sampler.max_history,
            n_bias: n_bias as u32,
            masked: 0,
            logprobs: top_logprobs.is_some() as u32,
            top_logprobs: top_logprobs.unwrap_or(0).min(MAX_TOP_LOGPROBS) as u32,
            _pad: 0,
        }
    }
}

/// What the shaders need to know of a sampler's size (in the uniform, not in the shader text,
/// so that samplers of every size share one compiled pipeline).
#[derive(Clone, Copy)]
struct Sizes {
    n_vocab: u32,
    n_partials: u32,
    max_history: u32,
}

/// The compiled sampling kernels and the buffers they keep between tokens.
pub struct GpuSampler {
    sizes: Sizes,
    keys_kernel: Kernel,
    pick_kernel: Kernel,
    /// `SampleUniform`, written by `set_params`.
    params: wgpu::Buffer,
    /// `[count, ring[max_history]]`: the j-th id ever appended is at `1 + j % max_history`.
    history: wgpu::Buffer,
    /// The order-preserving key of each penalized logit (pass 1 to pass 2).
    keys: wgpu::Buffer,
    /// The best (key, id) of each chunk of `keys_shape.chunk()` logits.
    partials: wgpu::Buffer,
    /// The allowed tokens, a bit per id, when `SampleUniform::masked` is set.
    mask: wgpu::Buffer,
    /// The logit bias list: (id, f32 bits), ids ascending, `MAX_LOGIT_BIAS` entries.
    bias: wgpu::Buffer,
    /// `sample_pick`'s candidates, (key, id) per id, and the keys a radix level leaves in play.
    cands: wgpu::Buffer,
    active: wgpu::Buffer,
    keys_shape: KeysShape,
}

impl GpuSampler {
    /// Bytes of the buffers `new` allocates on `ctx`, and of the logprobs output and its
    /// `slots` read-back buffers that the first request asking for logprobs adds; allocates
    /// nothing (the memory budget).
    pub fn bytes_for(ctx: &GpuContext, n_vocab: usize, max_history: usize, slots: usize) -> u64 {
        let n = n_vocab as u64;
        let keys_shape = if ctx.is_cpu { KEYS_CPU } else { KEYS_GPU };
        let n_partials = n.div_ceil(keys_shape.chunk() as u64);
        let params = std::mem::size_of::<SampleUniform>() as u64;
        let storage = [
            (1 + max_history as u64) * 4,
            n * 4,
            n_partials * 8,
            n.div_ceil(32) * 4,
            MAX_LOGIT_BIAS as u64 * 8,
            n * 8,
            n * 4,
            LOGPROBS_BYTES,
        ];
        let logprobs_staging = slots as u64 * storage_bytes(LOGPROBS_BYTES);
        uniform_bytes(params) + storage.map(storage_bytes).iter().sum::<u64>() + logprobs_staging
    }

    /// Compile the kernels for a vocabulary of `n_vocab` and a history ring of `max_history`
    /// ids (the largest `repeat_last_n` that `set_params` will accept while a penalty is on).
    pub async fn new(ctx: &GpuContext, n_vocab: usize, max_history: usize) -> Result<GpuSampler> {
        // Counts of ids are summed in f32, exact below 2^24.
        if n_vocab == 0 || n_vocab >= 1 << 24 {
            return Err(Error::InvalidArgument(format!(
                "GPU sampler: n_vocab {n_vocab} must be in 1..2^24"
            )));
        }
        if max_history == 0 || max_history >= 1 << 24 {
            return Err(Error::InvalidArgument(format!(
                "GPU sampler: max_history {max_history} must be in 1..2^24"
            )));
        }
        let n = n_vocab as u32;
        let keys_shape = if ctx.is_cpu { KEYS_CPU } else { KEYS_GPU };
        let sizes = Sizes {
            n_vocab: n,
            n_partials: n.div_ceil(keys_shape.chunk()),
            max_history: max_history as u32,
        };
        let source = |body: &str| {
            ShaderSource::new(&format!("{SAMPLE_COMMON_WGSL}\n{SAMPLE_BEST_WGSL}\n{body}"))
        };
        let keys_kernel = Kernel::new(
            ctx,
            "sample_keys",
            source(SAMPLE_KEYS_WGSL)
                .define("WG", keys_shape.wg)
                .define("GROUPS", keys_shape.groups)
                .define("PER", keys_shape.per),
        )
        .await?;
        let pick_kernel = Kernel::new(
            ctx,
            "sample_pick",
            source(SAMPLE_PICK_WGSL).define("WG", PICK_WG),
        )
        .await?;
        let params = uniform_buffer(
            ctx,
            "sample params",
            &SampleUniform::new(&SamplingParams::greedy(), &sizes, 0, None),
        );
        let history = storage_buffer(ctx, "sample history", (1 + max_history as u64) * 4);
        ctx.queue
            .write_buffer(&history, 0, bytemuck::bytes_of(&0u32));
        Ok(GpuSampler {
            sizes,
            keys_kernel,
            pick_kernel,
            params,
            history,
            keys: storage_buffer(ctx, "sample keys", n as u64 * 4),
            partials: storage_buffer(ctx, "sample partials", sizes.n_partials as u64 * 8),
            mask: storage_buffer(ctx, "sample mask", n.div_ceil(32) as u64 * 4),
            bias: storage_buffer(ctx, "sample bias", MAX_LOGIT_BIAS as u64 * 8),
            cands: storage_buffer(ctx, "sample candidates", n as u64 * 8),
            active: storage_buffer(ctx, "sample keys in play", n as u64 * 4),
            keys_shape,
        })
    }

    pub fn n_vocab(&self) -> usize {
        self.sizes.n_vocab as usize
    }

    /// Set the parameters for a generation, the logprobs it asks for (`None`: none; then
    /// `logprobs_op` must not run) and the ids generated or read so far (oldest first; only the
    /// last `repeat_last_n` matter, the ring keeps the last `max_history`). The kernel appends
    /// every sampled id to this history itself.
    pub fn set_params(
        &self,
        ctx: &GpuContext,
        params: &SamplingParams,
        top_logprobs: Option<usize>,
        history: &[u32],
    ) -> Result<()> {
        params.validate()?;
        crate::logprobs::validate(top_logprobs)?;
        // Ids past the vocabulary are ignored, as on the CPU.
        let bias: Vec<[u32; 2]> = params
            .logit_bias
            .iter()
            .filter(|(&id, _)| id < self.sizes.n_vocab)
            .map(|(&id, &b)| [id, b.to_bits()])
            .collect();
        let uniform = SampleUniform::new(params, &self.sizes, bias.len(), top_logprobs);
        if uniform.window > self.sizes.max_history {
            return Err(Error::InvalidArgument(format!(
                "repeat_last_n {} exceeds the GPU sampler's history of {} ids",
                params.repeat_last_n, self.sizes.max_history
            )));
        }
        let kept = &history[history
            .len()
            .saturating_sub(self.sizes.max_history as usize)..];
        let mut words = Vec::with_capacity(1 + kept.len());
        words.push(kept.len() as u32);
        words.extend_from_slice(kept);
        ctx.queue
            .write_buffer(&self.params, 0, bytemuck::bytes_of(&uniform));
        ctx.queue
            .write_buffer(&self.history, 0, bytemuck::cast_slice(&words));
        if !bias.is_empty() {
            ctx.queue
                .write_buffer(&self.bias, 0, bytemuck::cast_slice(&bias));
        }
        Ok(())
    }

    /// Limit the next draws to the ids set in `mask` (a bit per id, `constraint::allowed`;
    /// ids past its end are not allowed), or lift the limit. Masked ids rank below every logit
    /// and get no weight: they are never drawn. Call after `set_params`, which lifts it.
    pub fn set_mask(&self, ctx: &GpuContext, mask: Option<&[u32]>) {
        let masked = match mask {
            Some(mask) => {
                // The mask's words as given; words past its end (a vocabulary padded beyond the
                // tokenizer's) are zero: not allowed.
                let words = self.sizes.n_vocab.div_ceil(32) as usize;
                let n = words.min(mask.len());
                ctx.queue
                    .write_buffer(&self.mask, 0, bytemuck::cast_slice(&mask[..n]));
                if n < words {
                    let tail = vec![0u32; words - n];
                    ctx.queue
                        .write_buffer(&self.mask, n as u64 * 4, bytemuck::cast_slice(&tail));
                }
                1u32
            }
            None => 0,
        };
        ctx.queue
            .write_buffer(&self.params, MASKED_OFFSET, bytemuck::bytes_of(&masked));
    }

    /// The two dispatches that sample one token from `logits` (f32, n_vocab: the last token's
    /// row), drawing `u = sampler::uniform(seed, sample_step)` with `sample_step` read from
    /// `step_params` (`StepParams`, rewritten before each submit; like the CPU sampler's
    /// counter it should advance on every token, greedy ones included; 32 bits of it). The id
    /// goes to `tokens_out` (u32 at index 0 of the binding: the next step's embedding input),
    /// to `ids_out[sample_step % len]` (u32: read back by the CPU a step or two later) and to
    /// the history ring. Bind once at load and record every step.
    pub fn op(
        &self,
        ctx: &GpuContext,
        logits: &wgpu::Buffer,
        step_params: &wgpu::Buffer,
        tokens_out: wgpu::BufferBinding<'_>,
        ids_out: &wgpu::Buffer,
    ) -> Result<Vec<Op>> {
        let bad = |what: String| Err(Error::InvalidArgument(format!("GPU sampler: {what}")));
        let n_bytes = self.sizes.n_vocab as u64 * 4;
        if logits.size() < n_bytes {
            return bad(format!(
                "logits buffer holds {} bytes, {} logits need {n_bytes}",
                logits.size(),
                self.sizes.n_vocab
            ));
        }
        if n_bytes > ctx.max_binding_size {
            return bad(format!(
                "{} logits exceed one binding ({} bytes)",
                self.sizes.n_vocab, ctx.max_binding_size
            ));
        }
        if step_params.size() < std::mem::size_of::<super::StepParams>() as u64 {
            return bad("the step params buffer is smaller than StepParams".into());
        }
        let out_size = tokens_out.size.map_or(
            tokens_out.buffer.size().saturating_sub(tokens_out.offset),
            |s| s.get(),
        );
        if out_size < 4
            || tokens_out.offset % ctx.limits.min_storage_buffer_offset_alignment as u64 != 0
        {
            return bad(format!(
                "tokens_out needs 4 bytes at an offset aligned to {} (got {out_size} at {})",
                ctx.limits.min_storage_buffer_offset_alignment, tokens_out.offset
            ));
        }
        if ids_out.size() < 4 {
            return bad("ids_out needs at least 4 bytes".into());
        }
        let logits = crate::gpu::kernel::range(logits, 0, n_bytes);
        let keys = self.keys_kernel.op(
            ctx,
            &[
                logits,
                whole(&self.params),
                whole(&self.history),
                whole(&self.keys),
                whole(&self.partials),
                whole(&self.mask),
                whole(&self.bias),
            ],
            [self.sizes.n_vocab.div_ceil(self.keys_shape.chunk()), 1, 1],
        );
        let pick = self.pick_kernel.op(
            ctx,
            &[
                whole(&self.keys),
                whole(&self.partials),
                whole(&self.params),
                whole(step_params),
                whole(&self.history),
                tokens_out,
                whole(ids_out),
                whole(&self.cands),
                whole(&self.active),
            ],
            [1, 1, 1],
        );
        Ok(vec![keys, pick])
    }

    /// The dispatch that writes the logprobs of the id `sample_pick` drew (read from `drawn`,
    /// u32 at index 0: `op`'s `tokens_out`) and of the `top_logprobs` most likely ids to a
    /// buffer of [`LOGPROBS_BYTES`] that it returns, for [`read_logprobs`]. Record it after
    /// `op`'s dispatches, for steps whose `set_params` asked for logprobs. Compiles its kernel.
    pub async fn logprobs_op(
        &self,
        ctx: &GpuContext,
        drawn: wgpu::BufferBinding<'_>,
    ) -> Result<(Op, wgpu::Buffer)> {
        let kernel = Kernel::new(
            ctx,
            "sample_logprobs",
            ShaderSource::new(&format!(
                "{SAMPLE_COMMON_WGSL}\n{SAMPLE_BEST_WGSL}\n{SAMPLE_LOGPROBS_WGSL}"
            ))
            .define("WG", PICK_WG),
        )
        .await?;
        let out = storage_buffer(ctx, "sample logprobs", LOGPROBS_BYTES);
        let op = kernel.op(
            ctx,
            &[
                whole(&self.keys),
                whole(&self.partials),
                whole(&self.params),
                drawn,
                whole(&out),
            ],
            [1, 1, 1],
        );
        Ok((op, out))
    }

    /// The last `min(count, max_history)` ids of the history, oldest first.
    pub async fn read_history(&self, ctx: &GpuContext) -> Result<Vec<u32>> {
        let bytes = crate::gpu::kernel::read_buffer(
            ctx,
            &self.history,
            0,
            (1 + self.sizes.max_history as u64) * 4,
        )
        .await?;
        let words: Vec<u32> = bytemuck::pod_collect_to_vec(&bytes);
        let count = words[0];
        let cap = self.sizes.max_history;
        let kept = count.min(cap);
        Ok((count - kept..count)
            .map(|j| words[1 + (j % cap) as usize])
            .collect())
    }
}

/// The logprobs dispatch as a model runs it: bound once (on the first request that asks), its
/// output copied after each step to a staging buffer per read-back slot, and read from there.
pub struct LogprobsReadback {
    op: Op,
    out: wgpu::Buffer,
    staging: Vec<wgpu::Buffer>,
}

impl LogprobsReadback {
    /// `logprobs_op` for the id in `drawn`, with `slots` staging buffers.
    pub async fn new(
        sampler: &GpuSampler,
        ctx: &GpuContext,
        drawn: wgpu::BufferBinding<'_>,
        slots: usize,
    ) -> Result<LogprobsReadback> {
        let (op, out) = sampler.logprobs_op(ctx, drawn).await?;
        let staging = (0..slots)
            .map(|i| readback_buffer(ctx, &format!("logprobs {i}"), LOGPROBS_BYTES))
            .collect();
        Ok(LogprobsReadback { op, out, staging })
    }

    /// Record the dispatch (after the sampler's) and the copy to `slot`'s staging buffer.
    pub fn record(&self, encoder: &mut wgpu::CommandEncoder, slot: usize) {
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            self.op.record(&mut pass);
        }
        encoder.copy_buffer_to_buffer(&self.out, 0, &self.staging[slot], 0, LOGPROBS_BYTES);
    }

    /// The logprobs in `slot` once `after` is done (they name the drawn id too).
    pub async fn read(
        &self,
        ctx: &GpuContext,
        slot: usize,
        after: wgpu::SubmissionIndex,
    ) -> Result<TokenLogprobs> {
        let bytes =
            read_mapped_after(ctx, &self.staging[slot], LOGPROBS_BYTES, Some(after)).await?;
        read_logprobs(&bytes)
    }
}

/// What `sample_logprobs` writes (`LogprobsOut` in `shaders/sample_logprobs.wgsl`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
struct LogprobsOut {
    best_key: u32,
    log_sum: f32,
    chosen_id: u32,
    chosen_key: u32,
    count: u32,
    _pad: u32,
    /// (id, key) of the top ids, `count` of them, in no order.
    top: [[u32; 2]; MAX_TOP_LOGPROBS],
}

/// Bytes of the logprobs kernel's output.
pub const LOGPROBS_BYTES: u64 = std::mem::size_of::<LogprobsOut>() as u64;

/// The logit whose key (`to_key` in `shaders/sample_common.wgsl`) is `key`.
fn key_to_f32(key: u32) -> f32 {
    f32::from_bits(if key & 0x8000_0000 != 0 {
        key ^ 0x8000_0000
    } else {
        !key
    })
}

/// The logprobs in the bytes `logprobs_op`'s buffer held after a step: the drawn id's and the
/// top ones, most likely first (lower id first among equal logits). Key 0 is a masked id.
pub fn read_logprobs(bytes: &[u8]) -> Result<TokenLogprobs> {
    let out: LogprobsOut = bytes
        .get(..LOGPROBS_BYTES as usize)
        .map(bytemuck::pod_read_unaligned)
        .ok_or_else(|| Error::Gpu("the logprobs read back are too short".into()))?;
    let max = key_to_f32(out.best_key);
    let log_sum = out.log_sum as f64;
    let of = |key: u32| match key {
        0 => LOGPROB_FLOOR,
        key => logprob(key_to_f32(key), max, log_sum),
    };
    let mut top = out.top[..(out.count as usize).min(MAX_TOP_LOGPROBS)].to_vec();
    top.sort_unstable_by(|a, b| b[1].cmp(&a[1]).then(a[0].cmp(&b[0])));
    Ok(TokenLogprobs {
        id: out.chosen_id,
        logprob: of(out.chosen_key),
        top: top.iter().map(|&[id, key]| (id, of(key))).collect(),
    })
}

//! Rotary position embedding fused with the q/k/v biases, the per-head q/k norms and the
//! KV-cache append (the cache itself: `gpu/kv_cache.rs`).
//!
//! One dispatch per layer (per cache part) takes the batch's `q`, `k`, `v` as the QKV matvecs
//! wrote them (`[n_tokens][n_head * head_dim]`, `[n_tokens][kv_dim]`, `[n_tokens][kv_dim]`),
//! writes rotated `q` to `q_out`, and rotated `k` and plain `v` into the cache rows of positions
//! `pos .. pos + n_tokens` (read from the step uniform); biases and norms, where the
//! architecture has them, come first. The angles are computed on the GPU from the position;
//! each layer's per-pair frequencies are a small table made once at load (`Config::rope`).
//! Prefill runs this dispatch; a decode step runs it only where the q/k/v matvec's epilogue
//! (`matvec_output.rs`, whose parameters [`Rope::epilogue`] makes) cannot do the same.

use bytemuck::{Pod, Zeroable};

use super::matvec_output::{OutputKind, RopeKvParams, RopeKvTarget, MAX_ROPE_PAIRS};
use super::{check_distinct, check_f32, check_step, check_tokens, to_u32};
use crate::config::{Config, RopeStyle, RopeTable};
use crate::error::{Error, Result};
use crate::gpu::kernel::{storage_buffer, uniform_buffer, whole, Kernel, Op, ShaderSource};
use crate::gpu::kv_cache::{KvCache, KvElement};
use crate::gpu::GpuContext;

const ROPE_WGSL: &str = include_str!("../../../shaders/rope.wgsl");
/// `cos_sin` of an angle, shared with the q/k/v matvec's RoPE epilogue (`matvec_output.rs`).
pub(crate) const ROPE_ANGLE: &str = include_str!("../../../shaders/rope_angle.wgsl");
const WORKGROUP: u32 = 64;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    n_head: u32,
    n_head_kv: u32,
    head_dim: u32,
    rope_dims: u32,
    half_style: u32,
    rotate_q: u32,
    part_start: u32,
    part_len: u32,
    mscale: f32,
    eps: f32,
    _pad: [u32; 2],
}

/// The per-layer tensors RoPE reads besides q, k, v: what the architecture has.
pub struct RopeExtras<'a> {
    /// q | k | v biases concatenated (`q_dim + 2 kv_dim`).
    pub bias: Option<wgpu::BufferBinding<'a>>,
    /// Per-head norm weights of q and k (`head_dim` each).
    pub norms: Option<(wgpu::BufferBinding<'a>, wgpu::BufferBinding<'a>)>,
}

/// RoPE + biases + q/k norms + KV append for a model's shapes.
pub struct Rope {
    kernel: Kernel,
    element: KvElement,
    /// Per layer: the frequency table (`Config::rope`) on the GPU, shared between layers that
    /// agree, and as made (frequencies and the cos/sin multiplier).
    tables: Vec<(wgpu::Buffer, RopeTable)>,
    has_bias: bool,
    has_norms: bool,
    n_head: usize,
    n_head_kv: usize,
    head_dim: usize,
    rope_dims: usize,
    style: RopeStyle,
    eps: f32,
}

impl Rope {
    /// The pipeline for `config`'s heads and options, and every layer's frequency table for a
    /// context of `context_len` (`factors`: the values of `config.rope_factor_tensor`).
    pub async fn new(
        ctx: &GpuContext,
        config: &Config,
        factors: Option<&[f32]>,
        context_len: usize,
    ) -> Result<Rope> {
        let (head_dim, rope_dims) = (config.head_dim, config.rope_dims);
        if head_dim == 0 || head_dim % 2 != 0 || rope_dims > head_dim || rope_dims % 2 != 0 {
            return Err(Error::ModelInvalid(format!(
                "RoPE over {rope_dims} of {head_dim} head dimensions"
            )));
        }
        if factors.is_some() != config.rope_factor_tensor(context_len).is_some() {
            return Err(Error::InvalidArgument(
                "rope: frequency factors given exactly when the model has them".into(),
            ));
        }
        let (has_bias, has_norms) = (config.arch.qkv_bias, config.arch.qk_norm);
        // Bindings 9.. in the order `ops` appends them.
        let mut names = Vec::new();
        if has_bias {
            names.push("qkv_bias");
        }
        if has_norms {
            names.extend(["q_norm", "k_norm"]);
        }
        let extra: String = (9..)
            .zip(names)
            .map(|(i, n)| format!("@group(0) @binding({i}) var<storage, read> {n}: array<f32>;\n"))
            .collect();
        let source = ShaderSource::new(&[ROPE_ANGLE, ROPE_WGSL].join("\n"))
            .define("EXTRA_BINDINGS", extra)
            .define(
                "BIAS",
                match has_bias {
                    true => "return qkv_bias[i];",
                    false => "return 0.0;",
                },
            )
            .define(
                "NORM_WEIGHT",
                match has_norms {
                    true => "if (is_q) { return q_norm[i]; } return k_norm[i];",
                    false => "return 1.0;",
                },
            )
            .define("QK_NORM", has_norms)
            .define("WG", WORKGROUP);
        let element = KvElement::for_context(ctx);
        let kernel = Kernel::new(ctx, "rope_kv_append", element.define(source)).await?;
        let mut tables: Vec<(wgpu::Buffer, RopeTable)> = Vec::new();
        let mut made: Vec<(Vec<f32>, wgpu::Buffer)> = Vec::new();
        for l in 0..config.n_layer {
            let table = config.rope(l, factors)?;
            let buffer = match made.iter().find(|(f, _)| *f == table.freqs) {
                Some((_, b)) => b.clone(),
                None => {
                    let b = storage_buffer(ctx, "rope freqs", table.freqs.len().max(1) as u64 * 4);
                    ctx.queue
                        .write_buffer(&b, 0, bytemuck::cast_slice(&table.freqs));
                    made.push((table.freqs.clone(), b.clone()));
                    b
                }
            };
            tables.push((buffer, table));
        }
        Ok(Rope {
            kernel,
            element,
            tables,
            has_bias,
            has_norms,
            n_head: config.n_head,
            n_head_kv: config.n_head_kv,
            head_dim,
            rope_dims,
            style: config.rope_style,
            eps: config.rms_eps,
        })
    }

    /// Write rotated `q` (`[max_tokens][n_head * head_dim]`) to `q_out` and rotated `k` and `v`
    /// (`[max_tokens][kv_dim]` each) into `cache` at positions `pos .. pos + n_tokens` of
    /// `layer`, biases and norms (`extras`, required exactly when the architecture has them)
    /// applied first. One op per cache part (one, unless the cache was split). The caller keeps
    /// `pos + n_tokens <= cache.context_len()`; rows past it are not written.
    #[allow(clippy::too_many_arguments)]
    pub fn ops(
        &self,
        ctx: &GpuContext,
        step: &wgpu::Buffer,
        [q, k, v]: [wgpu::BufferBinding<'_>; 3],
        q_out: wgpu::BufferBinding<'_>,
        extras: RopeExtras<'_>,
        cache: &KvCache,
        layer: usize,
        max_tokens: usize,
    ) -> Result<Vec<Op>> {
        check_step(step)?;
        check_tokens("rope", max_tokens)?;
        let kv_dim = self.n_head_kv * self.head_dim;
        let q_dim = self.n_head * self.head_dim;
        cache.check_layer(layer, kv_dim, self.element)?;
        check_f32(ctx, "rope q", &q, max_tokens * q_dim)?;
        check_f32(ctx, "rope k", &k, max_tokens * kv_dim)?;
        check_f32(ctx, "rope v", &v, max_tokens * kv_dim)?;
        check_f32(ctx, "rope q output", &q_out, max_tokens * q_dim)?;
        if extras.bias.is_some() != self.has_bias || extras.norms.is_some() != self.has_norms {
            return Err(Error::InvalidArgument(format!(
                "rope: the model has {} biases and {} q/k norms, the op was given {} and {}",
                self.has_bias as u8,
                self.has_norms as u8,
                extras.bias.is_some() as u8,
                extras.norms.is_some() as u8,
            )));
        }
        let mut read = vec![&k, &v];
        if let Some(b) = &extras.bias {
            check_f32(ctx, "rope bias", b, q_dim + 2 * kv_dim)?;
            read.push(b);
        }
        if let Some((qn, kn)) = &extras.norms {
            check_f32(ctx, "rope q norm", qn, self.head_dim)?;
            check_f32(ctx, "rope k norm", kn, self.head_dim)?;
            read.extend([qn, kn]);
        }
        check_distinct("rope", &[&q_out], &read)?;
        check_distinct("rope", &[&q_out], &[&q])?;
        let (freqs, table) = &self.tables[layer];

        let pairs = (self.n_head + self.n_head_kv) * self.head_dim / 2;
        let workgroups = [
            to_u32("rope pairs", pairs)?.div_ceil(WORKGROUP),
            max_tokens as u32,
            1,
        ];
        let parts = cache.keys(layer).iter().zip(cache.values(layer));
        parts
            .enumerate()
            .map(|(i, (k_cache, v_cache))| {
                let params = Params {
                    n_head: self.n_head as u32,
                    n_head_kv: self.n_head_kv as u32,
                    head_dim: self.head_dim as u32,
                    rope_dims: self.rope_dims as u32,
                    half_style: (self.style == RopeStyle::Half) as u32,
                    rotate_q: (i == 0) as u32,
                    part_start: (i * cache.rows_per_part()) as u32,
                    part_len: cache.part_rows(i) as u32,
                    mscale: table.mscale,
                    eps: self.eps,
                    _pad: [0; 2],
                };
                let params = uniform_buffer(ctx, "rope params", &params);
                let mut bindings = vec![
                    whole(step),
                    whole(&params),
                    whole(freqs),
                    q.clone(),
                    k.clone(),
                    v.clone(),
                    whole(k_cache),
                    whole(v_cache),
                    q_out.clone(),
                ];
                bindings.extend(extras.bias.clone());
                if let Some((qn, kn)) = &extras.norms {
                    bindings.extend([qn.clone(), kn.clone()]);
                }
                Ok(self.kernel.op(ctx, &bindings, workgroups))
            })
            .collect()
    }

    /// Whether [`epilogue`](Self::epilogue) takes this model's layers with a cache in
    /// `cache_parts` parts: no q/k
    /// norms (each scales a head by its own sum of squares, so it needs all of the head's rows
    /// before the rotation, and the q/k/v matvec has a few rows per invocation: qwen3 and
    /// gemma3 keep the dispatch), and the cache in one part (the epilogue binds one buffer
    /// each for keys and values; a split cache takes an op per part).
    pub fn fits_epilogue(&self, cache_parts: usize) -> bool {
        !self.has_norms && cache_parts == 1 && self.rope_dims / 2 <= MAX_ROPE_PAIRS
    }

    /// Layer `layer`'s RoPE, biases (`bias`: q | k | v, exactly when the model has them) and
    /// KV append for the q/k/v matvec's epilogue (`MatVec::op_rope_kv`), for one token at the
    /// position `step` gives.
    pub fn epilogue<'a>(
        &self,
        ctx: &GpuContext,
        step: &'a wgpu::Buffer,
        bias: Option<wgpu::BufferBinding<'a>>,
        cache: &'a KvCache,
        layer: usize,
    ) -> Result<RopeKvTarget<'a>> {
        check_step(step)?;
        let (q_dim, kv_dim) = (self.n_head * self.head_dim, self.n_head_kv * self.head_dim);
        cache.check_layer(layer, kv_dim, self.element)?;
        if !self.fits_epilogue(cache.parts()) || bias.is_some() != self.has_bias {
            return Err(Error::InvalidArgument(format!(
                "rope epilogue: q/k norms ({}), a cache in {} parts, {} rotated pairs (at most \
                 {MAX_ROPE_PAIRS}), or biases given ({}) where the model has none ({})",
                self.has_norms,
                cache.parts(),
                self.rope_dims / 2,
                bias.is_some(),
                self.has_bias
            )));
        }
        if let Some(b) = &bias {
            check_f32(ctx, "rope bias", b, q_dim + 2 * kv_dim)?;
        }
        let table = &self.tables[layer].1;
        let mut freqs = [0f32; MAX_ROPE_PAIRS];
        freqs[..table.freqs.len()].copy_from_slice(&table.freqs);
        let params = RopeKvParams {
            n_head: self.n_head as u32,
            n_head_kv: self.n_head_kv as u32,
            head_dim: self.head_dim as u32,
            rope_dims: self.rope_dims as u32,
            half_style: (self.style == RopeStyle::Half) as u32,
            mscale: table.mscale,
            _pad: [0; 2],
            freqs,
        };
        Ok(RopeKvTarget {
            kind: self.epilogue_kind(),
            params: uniform_buffer(ctx, "rope epilogue params", &params),
            step,
            k_cache: &cache.keys(layer)[0],
            v_cache: &cache.values(layer)[0],
            bias,
            head_dim: self.head_dim as u64,
            q_dim: q_dim as u64,
            kv_dim: kv_dim as u64,
        })
    }

    /// The matvec output the epilogue is compiled as for this model.
    pub fn epilogue_kind(&self) -> OutputKind {
        OutputKind::RopeKv {
            kv: self.element,
            bias: self.has_bias,
        }
    }
}

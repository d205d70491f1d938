//! Rotary position embedding fused with the KV-cache append, and the KV cache itself.
//!
//! One dispatch per layer (per cache part) takes the batch's `q`, `k`, `v` as the QKV matvecs
//! wrote them (`[n_tokens][n_head * head_dim]`, `[n_tokens][kv_dim]`, `[n_tokens][kv_dim]`),
//! rotates `q` in place, and writes rotated `k` and plain `v` into the cache rows of positions
//! `pos .. pos + n_tokens` (read from the step uniform). The angles are computed on the GPU from
//! the position; the per-pair inverse frequencies are a small table made once at load.

use bytemuck::{Pod, Zeroable};

use super::norm::{check_distinct, check_f32, check_step, check_tokens, to_u32};
use crate::config::{Config, RopeScaling, RopeStyle};
use crate::error::{Error, Result};
use crate::gpu::kernel::{storage_buffer, uniform_buffer, whole, Kernel, Op, ShaderSource};
use crate::gpu::GpuContext;

const ROPE_WGSL: &str = include_str!("../../../shaders/rope.wgsl");
const WORKGROUP: u32 = 64;

/// How the cache stores a value: f16 where the adapter has `shader-f16` (half the memory
/// and half the bytes attention reads per key; what llama.cpp and WebLLM keep too), else f32.
/// RoPE writes `KV(value)` and attention reads `vec4<f32>(...)`, so every product and sum is
/// still f32: only the stored keys and values are rounded to f16 (relative error 2^-11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvElement {
    F32,
    F16,
}

impl KvElement {
    /// f16 when the device was opened with `shader-f16`.
    pub fn for_context(ctx: &GpuContext) -> KvElement {
        match ctx.features.shader_f16 {
            true => KvElement::F16,
            false => KvElement::F32,
        }
    }

    pub fn bytes(self) -> u64 {
        match self {
            KvElement::F32 => 4,
            KvElement::F16 => 2,
        }
    }

    /// The WGSL scalar type.
    pub fn wgsl(self) -> &'static str {
        match self {
            KvElement::F32 => "f32",
            KvElement::F16 => "f16",
        }
    }
}

/// Keys and values of every layer, as [`KvElement`]s.
///
/// Layout: per layer one key buffer and one value buffer, each `[position][kv_dim]` with
/// `kv_dim = n_head_kv * head_dim` (KV head `kh` at `kh * head_dim ..`), so row `p` holds
/// position `p`. When a layer's `context_len * kv_dim * element` bytes exceed the adapter's binding
/// limit, its positions are split over several buffers ("parts") of `rows_per_part` positions
/// each (the last may be shorter): part `i` holds positions `i * rows_per_part ..`. The split is
/// the same for every layer and for keys and values.
pub struct KvCache {
    element: KvElement,
    context_len: usize,
    kv_dim: usize,
    rows_per_part: usize,
    /// [layer][part]
    keys: Vec<Vec<wgpu::Buffer>>,
    values: Vec<Vec<wgpu::Buffer>>,
}

impl KvCache {
    /// A zeroed cache of `context_len` positions for every layer of `config`. `ModelTooLarge`
    /// when even one position row does not fit in a binding. Allocation failures of the device
    /// surface through `GpuContext::check`.
    pub fn new(ctx: &GpuContext, config: &Config, context_len: usize) -> Result<KvCache> {
        let kv_dim = config.kv_dim();
        if context_len == 0 || kv_dim == 0 {
            return Err(Error::InvalidArgument(format!(
                "a KV cache of {context_len} positions of {kv_dim} values"
            )));
        }
        to_u32("context length", context_len)?;
        let element = KvElement::for_context(ctx);
        let row_bytes = kv_dim as u64 * element.bytes();
        let rows_per_binding = (ctx.max_binding_size / row_bytes) as usize;
        if rows_per_binding == 0 {
            return Err(Error::ModelTooLarge(format!(
                "one KV-cache row of {row_bytes} bytes exceeds the binding limit of {} bytes",
                ctx.max_binding_size
            )));
        }
        let rows_per_part = rows_per_binding.min(context_len);
        let parts = context_len.div_ceil(rows_per_part);
        let layer = |kind: &str, l: usize| -> Vec<wgpu::Buffer> {
            (0..parts)
                .map(|i| {
                    let rows = rows_per_part.min(context_len - i * rows_per_part);
                    let label = format!("{kind} cache {l}.{i}");
                    storage_buffer(ctx, &label, rows as u64 * row_bytes)
                })
                .collect()
        };
        Ok(KvCache {
            element,
            context_len,
            kv_dim,
            rows_per_part,
            keys: (0..config.n_layer).map(|l| layer("key", l)).collect(),
            values: (0..config.n_layer).map(|l| layer("value", l)).collect(),
        })
    }

    /// How a value is stored.
    pub fn element(&self) -> KvElement {
        self.element
    }

    /// Positions the cache holds.
    pub fn context_len(&self) -> usize {
        self.context_len
    }

    pub fn kv_dim(&self) -> usize {
        self.kv_dim
    }

    pub fn n_layer(&self) -> usize {
        self.keys.len()
    }

    /// Positions per buffer (all parts but the last hold exactly this many).
    pub fn rows_per_part(&self) -> usize {
        self.rows_per_part
    }

    /// Buffers per layer for keys (and as many for values).
    pub fn parts(&self) -> usize {
        self.keys.first().map_or(0, |k| k.len())
    }

    /// Key buffers of `layer`, one per part.
    pub fn keys(&self, layer: usize) -> &[wgpu::Buffer] {
        &self.keys[layer]
    }

    /// Value buffers of `layer`, one per part.
    pub fn values(&self, layer: usize) -> &[wgpu::Buffer] {
        &self.values[layer]
    }

    /// Positions held by part `i`.
    pub fn part_rows(&self, i: usize) -> usize {
        self.rows_per_part
            .min(self.context_len - i * self.rows_per_part)
    }

    /// GPU memory the cache holds, keys and values of all layers.
    pub fn bytes(&self) -> u64 {
        self.keys
            .iter()
            .chain(&self.values)
            .flatten()
            .map(|b| b.size())
            .sum()
    }

    pub(crate) fn check_layer(
        &self,
        layer: usize,
        kv_dim: usize,
        element: KvElement,
    ) -> Result<()> {
        if element != self.element {
            return Err(Error::InvalidArgument(format!(
                "a kernel compiled for a {element:?} KV cache was given a {:?} one",
                self.element
            )));
        }
        if layer >= self.n_layer() || kv_dim != self.kv_dim {
            return Err(Error::InvalidArgument(format!(
                "layer {layer} of a KV cache with {} layers of {} values per row (the model \
                 wants {kv_dim})",
                self.n_layer(),
                self.kv_dim
            )));
        }
        Ok(())
    }
}

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
    position_scale: f32,
    _pad: [u32; 3],
}

/// RoPE + KV append for a model's shapes.
pub struct Rope {
    kernel: Kernel,
    element: KvElement,
    /// `base^(-2i / rope_dims)` for each rotated pair, as `reference.rs` computes it.
    inv_freq: wgpu::Buffer,
    has_rope_freqs: bool,
    n_head: usize,
    n_head_kv: usize,
    head_dim: usize,
    rope_dims: usize,
    style: RopeStyle,
    position_scale: f32,
}

impl Rope {
    /// Pipelines for `config`'s heads and RoPE settings (`config.has_rope_freqs` selects the
    /// variant that divides each frequency by a `rope_freqs` factor).
    pub async fn new(ctx: &GpuContext, config: &Config) -> Result<Rope> {
        let (head_dim, rope_dims) = (config.head_dim, config.rope_dims);
        if head_dim == 0 || head_dim % 2 != 0 || rope_dims > head_dim || rope_dims % 2 != 0 {
            return Err(Error::ModelInvalid(format!(
                "RoPE over {rope_dims} of {head_dim} head dimensions"
            )));
        }
        let source = match config.has_rope_freqs {
            true => ShaderSource::new(ROPE_WGSL)
                .define(
                    "ROPE_FREQS_BINDING",
                    "@group(0) @binding(8) var<storage, read> rope_freqs: array<f32>;",
                )
                .define("FREQ", "inv_freq[i] / rope_freqs[i]"),
            false => ShaderSource::new(ROPE_WGSL)
                .define("ROPE_FREQS_BINDING", "")
                .define("FREQ", "inv_freq[i]"),
        };
        let element = KvElement::for_context(ctx);
        let kernel =
            Kernel::new(ctx, "rope_kv_append", source.define("KV", element.wgsl())).await?;
        let inv_freq: Vec<f32> = (0..rope_dims / 2)
            .map(|i| config.rope_base.powf(-((2 * i) as f32) / rope_dims as f32))
            .collect();
        let buffer = storage_buffer(ctx, "rope inv_freq", inv_freq.len() as u64 * 4);
        ctx.queue
            .write_buffer(&buffer, 0, bytemuck::cast_slice(&inv_freq));
        Ok(Rope {
            kernel,
            element,
            inv_freq: buffer,
            has_rope_freqs: config.has_rope_freqs,
            n_head: config.n_head,
            n_head_kv: config.n_head_kv,
            head_dim,
            rope_dims,
            style: config.rope_style,
            position_scale: match config.rope_scaling {
                None => 1.0,
                Some(RopeScaling::Linear { factor }) => 1.0 / factor,
            },
        })
    }

    /// Rotate `q` (`[max_tokens][n_head * head_dim]`) in place and write rotated `k` and `v`
    /// (`[max_tokens][kv_dim]` each) into `cache` at positions `pos .. pos + n_tokens` of
    /// `layer`. `rope_freqs` (`[rope_dims / 2]`) is required exactly when the config has it.
    /// One op per cache part (one, unless the cache was split). The caller keeps
    /// `pos + n_tokens <= cache.context_len()`; rows past it are not written.
    #[allow(clippy::too_many_arguments)]
    pub fn ops(
        &self,
        ctx: &GpuContext,
        step: &wgpu::Buffer,
        q: wgpu::BufferBinding<'_>,
        k: wgpu::BufferBinding<'_>,
        v: wgpu::BufferBinding<'_>,
        rope_freqs: Option<wgpu::BufferBinding<'_>>,
        cache: &KvCache,
        layer: usize,
        max_tokens: usize,
    ) -> Result<Vec<Op>> {
        check_step(step)?;
        check_tokens("rope", max_tokens)?;
        let kv_dim = self.n_head_kv * self.head_dim;
        cache.check_layer(layer, kv_dim, self.element)?;
        check_f32(ctx, "rope q", &q, max_tokens * self.n_head * self.head_dim)?;
        check_f32(ctx, "rope k", &k, max_tokens * kv_dim)?;
        check_f32(ctx, "rope v", &v, max_tokens * kv_dim)?;
        match (&rope_freqs, self.has_rope_freqs) {
            (Some(f), true) => check_f32(ctx, "rope_freqs", f, self.rope_dims / 2)?,
            (None, false) => {}
            (given, _) => {
                return Err(Error::InvalidArgument(format!(
                    "rope: the model {} rope_freqs but the op was {} them",
                    if self.has_rope_freqs { "has" } else { "has no" },
                    if given.is_some() {
                        "given"
                    } else {
                        "not given"
                    },
                )))
            }
        }
        let mut read = vec![&k, &v];
        read.extend(rope_freqs.as_ref());
        check_distinct("rope", &[&q], &read)?;

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
                    position_scale: self.position_scale,
                    _pad: [0; 3],
                };
                let params = uniform_buffer(ctx, "rope params", &params);
                let mut bindings = vec![
                    whole(step),
                    whole(&params),
                    whole(&self.inv_freq),
                    q.clone(),
                    k.clone(),
                    v.clone(),
                    whole(k_cache),
                    whole(v_cache),
                ];
                bindings.extend(rope_freqs.clone());
                Ok(self.kernel.op(ctx, &bindings, workgroups))
            })
            .collect()
    }
}

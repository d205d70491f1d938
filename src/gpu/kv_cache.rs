//! The KV cache: every layer's keys and values on the GPU, written by RoPE's KV append
//! (`kernels/rope.rs`, or the q/k/v matvec's epilogue) and read by attention.

use crate::config::Config;
use crate::error::{Error, Result};
use crate::gpu::kernel::{storage_buffer, storage_bytes, ShaderFeature, ShaderSource};
use crate::gpu::kernels::to_u32;
use crate::gpu::GpuContext;

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

    /// The optional shader features a kernel storing or reading this type uses.
    pub fn features(self) -> &'static [ShaderFeature] {
        match self {
            KvElement::F32 => &[],
            KvElement::F16 => &[ShaderFeature::F16],
        }
    }

    /// `source` with `{{KV}}` as this type, declaring f16 where it is f16.
    pub(crate) fn define(self, source: ShaderSource) -> ShaderSource {
        source.define("KV", self.wgsl()).uses_all(self.features())
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
        let element = KvElement::for_context(ctx);
        let row_bytes = kv_dim as u64 * element.bytes();
        let rows_per_part = Self::rows_per_part_for(ctx, config, context_len)?;
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

    /// Positions per buffer of a cache of `context_len` positions on `ctx` (the split every
    /// layer's keys and values share), with `new`'s checks; allocates nothing.
    pub fn rows_per_part_for(
        ctx: &GpuContext,
        config: &Config,
        context_len: usize,
    ) -> Result<usize> {
        let kv_dim = config.kv_dim();
        if context_len == 0 || kv_dim == 0 {
            return Err(Error::InvalidArgument(format!(
                "a KV cache of {context_len} positions of {kv_dim} values"
            )));
        }
        to_u32("context length", context_len)?;
        let row_bytes = kv_dim as u64 * KvElement::for_context(ctx).bytes();
        let rows_per_binding = (ctx.max_binding_size / row_bytes) as usize;
        if rows_per_binding == 0 {
            return Err(Error::ModelTooLarge(format!(
                "one KV-cache row of {row_bytes} bytes exceeds the binding limit of {} bytes",
                ctx.max_binding_size
            )));
        }
        Ok(rows_per_binding.min(context_len))
    }

    /// Bytes a cache of `context_len` positions takes on `ctx` (keys and values, every layer).
    pub fn bytes_for(ctx: &GpuContext, config: &Config, context_len: usize) -> Result<u64> {
        let rows_per_part = Self::rows_per_part_for(ctx, config, context_len)?;
        let row_bytes = config.kv_dim() as u64 * KvElement::for_context(ctx).bytes();
        let layer: u64 = (0..context_len)
            .step_by(rows_per_part)
            .map(|first| {
                let rows = rows_per_part.min(context_len - first);
                storage_bytes(rows as u64 * row_bytes)
            })
            .sum();
        Ok(2 * config.n_layer as u64 * layer)
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

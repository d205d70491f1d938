//! The decoder's per-token activations on the GPU: one buffer per value the forward pass
//! names, sized for a batch, and the typed views (`graph::View`) the forward pass reads them by.

use crate::config::Config;
use crate::error::Result;
use crate::gpu::graph::{Kernels, View};
use crate::gpu::kernel::{storage_buffer, storage_bytes};
use crate::gpu::kernels::attention::AttentionScratch;
use crate::gpu::kv_cache::KvCache;
use crate::gpu::GpuContext;

/// Per-token activations of a batch of up to `max_tokens` tokens, each `[max_tokens][width]`.
/// q, k and v share one buffer (`qkv`), as do gate and up (`ffn`): a projection writes all of
/// them in one dispatch. Each region starts at a storage-binding offset alignment, so the
/// kernels after it bind it as a range of its own.
pub(crate) struct Activations {
    pub(crate) max_tokens: usize,
    pub(crate) tokens: wgpu::Buffer,
    pub(crate) x: wgpu::Buffer,
    pub(crate) h: wgpu::Buffer,
    pub(crate) qkv: wgpu::Buffer,
    /// Byte ranges of q, k, v in `qkv`.
    pub(crate) q: (u64, u64),
    pub(crate) k: (u64, u64),
    pub(crate) v: (u64, u64),
    /// q after RoPE (and the q norm).
    pub(crate) q_rope: wgpu::Buffer,
    pub(crate) att: wgpu::Buffer,
    pub(crate) ffn: wgpu::Buffer,
    /// Byte ranges of gate and up in `ffn`.
    pub(crate) gate: (u64, u64),
    pub(crate) up: (u64, u64),
    pub(crate) scratch: AttentionScratch,
    pub(crate) widths: Widths,
}

#[derive(Clone, Copy)]
pub(crate) struct Widths {
    pub(crate) n_embd: usize,
    pub(crate) q: usize,
    pub(crate) kv: usize,
    pub(crate) ff: usize,
}

/// The activations as the forward pass names them.
pub(crate) struct Views<'a> {
    pub(crate) x: View<'a>,
    pub(crate) h: View<'a>,
    pub(crate) q: View<'a>,
    pub(crate) k: View<'a>,
    pub(crate) v: View<'a>,
    pub(crate) q_rope: View<'a>,
    pub(crate) att: View<'a>,
    pub(crate) gate: View<'a>,
    pub(crate) up: View<'a>,
}

/// Consecutive byte ranges of `sizes` bytes, each starting at a multiple of `alignment`, and
/// the bytes they span.
fn aligned_ranges<const N: usize>(sizes: [u64; N], alignment: u64) -> ([(u64, u64); N], u64) {
    let mut end = 0u64;
    let ranges = sizes.map(|size| {
        let start = end.next_multiple_of(alignment);
        end = start + size;
        (start, size)
    });
    (ranges, end)
}

/// The buffer sizes of a batch of `max_tokens` tokens: one function for the allocation and the
/// memory budget.
struct Sizes {
    tokens: u64,
    embd: u64,
    q: u64,
    qkv: ([(u64, u64); 3], u64),
    ffn: ([(u64, u64); 2], u64),
}

impl Sizes {
    fn new(ctx: &GpuContext, c: &Config, max_tokens: usize) -> Sizes {
        let bytes = |width: usize| (max_tokens * width * 4) as u64;
        let alignment = ctx.limits.min_storage_buffer_offset_alignment as u64;
        let (q, kv) = (bytes(c.q_dim()), bytes(c.kv_dim()));
        Sizes {
            tokens: bytes(1),
            embd: bytes(c.n_embd),
            q,
            qkv: aligned_ranges([q, kv, kv], alignment),
            ffn: aligned_ranges([bytes(c.n_ff), bytes(c.n_ff)], alignment),
        }
    }

    /// Bytes of all the buffers (the attention scratch aside).
    fn total(&self) -> u64 {
        let e = storage_bytes(self.embd);
        let q = storage_bytes(self.q);
        storage_bytes(self.tokens)
            + 2 * e
            + storage_bytes(self.qkv.1)
            + 2 * q
            + storage_bytes(self.ffn.1)
    }
}

impl Activations {
    /// Bytes `Activations::new` allocates for a batch of `max_tokens` (its attention scratch
    /// aside), allocating nothing.
    pub(crate) fn bytes_for(ctx: &GpuContext, c: &Config, max_tokens: usize) -> u64 {
        Sizes::new(ctx, c, max_tokens).total()
    }

    pub(crate) fn new(
        ctx: &GpuContext,
        c: &Config,
        k: &Kernels,
        kv: &KvCache,
        max_tokens: usize,
    ) -> Result<Self> {
        let sizes = Sizes::new(ctx, c, max_tokens);
        let buf = |label: &str, size: u64| storage_buffer(ctx, label, size);
        let ([q, kr, v], qkv_bytes) = sizes.qkv;
        let ([gate, up], ffn_bytes) = sizes.ffn;
        Ok(Activations {
            max_tokens,
            tokens: buf("tokens", sizes.tokens),
            x: buf("x", sizes.embd),
            h: buf("h", sizes.embd),
            qkv: buf("qkv", qkv_bytes),
            q,
            k: kr,
            v,
            q_rope: buf("q after rope", sizes.q),
            att: buf("att", sizes.q),
            ffn: buf("gate, up", ffn_bytes),
            gate,
            up,
            scratch: k.attention.scratch(ctx, kv, max_tokens)?,
            widths: Widths {
                n_embd: c.n_embd,
                q: c.q_dim(),
                kv: c.kv_dim(),
                ff: c.n_ff,
            },
        })
    }

    pub(crate) fn views(&self) -> Views<'_> {
        let w = self.widths;
        let view = |buffer, offset, width| View {
            buffer,
            offset,
            width,
        };
        Views {
            x: view(&self.x, 0, w.n_embd),
            h: view(&self.h, 0, w.n_embd),
            q: view(&self.qkv, self.q.0, w.q),
            k: view(&self.qkv, self.k.0, w.kv),
            v: view(&self.qkv, self.v.0, w.kv),
            q_rope: view(&self.q_rope, 0, w.q),
            att: view(&self.att, 0, w.q),
            gate: view(&self.ffn, self.gate.0, w.ff),
            up: view(&self.ffn, self.up.0, w.ff),
        }
    }
}

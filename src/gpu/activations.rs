//! The decoder's per-token activations on the GPU: one buffer per value the forward pass
//! names, sized for a batch, and the typed views (`graph::View`) the forward pass reads them by.

use crate::config::Config;
use crate::error::Result;
use crate::gpu::graph::{Kernels, View};
use crate::gpu::kernel::storage_buffer;
use crate::gpu::kernels::attention::AttentionScratch;
use crate::gpu::kernels::rope::KvCache;
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

impl Activations {
    pub(crate) fn new(
        ctx: &GpuContext,
        c: &Config,
        k: &Kernels,
        kv: &KvCache,
        max_tokens: usize,
    ) -> Result<Self> {
        let bytes = |width: usize| (max_tokens * width * 4) as u64;
        let buf = |label: &str, size: u64| storage_buffer(ctx, label, size);
        let alignment = ctx.limits.min_storage_buffer_offset_alignment as u64;
        let ([q, kr, v], qkv_bytes) = aligned_ranges(
            [bytes(c.q_dim()), bytes(c.kv_dim()), bytes(c.kv_dim())],
            alignment,
        );
        let ([gate, up], ffn_bytes) = aligned_ranges([bytes(c.n_ff), bytes(c.n_ff)], alignment);
        Ok(Activations {
            max_tokens,
            tokens: buf("tokens", bytes(1)),
            x: buf("x", bytes(c.n_embd)),
            h: buf("h", bytes(c.n_embd)),
            qkv: buf("qkv", qkv_bytes),
            q,
            k: kr,
            v,
            q_rope: buf("q after rope", bytes(c.q_dim())),
            att: buf("att", bytes(c.q_dim())),
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

    pub(crate) fn buffers(&self) -> [&wgpu::Buffer; 7] {
        [
            &self.tokens,
            &self.x,
            &self.h,
            &self.qkv,
            &self.q_rope,
            &self.att,
            &self.ffn,
        ]
    }
}

//! Weight tensors on the GPU, kept quantized, uploaded piece by piece as the GGUF arrives.
//!
//! # Layout
//!
//! Each block is split at upload into up to three 4-byte-aligned *planes* (`quants`, `scales`,
//! `aux`) as its row of the type table says (`weight_types.rs`, which shows every type's planes).
//!
//! Shaders walk a row in *units* of [`UNIT`] = 32 values: one 32-value block, an eighth of a
//! 256-value super-block, or 32 F32/F16/BF16 values. F32, F16 and BF16 rows are padded with zeros
//! to a whole number of units (only when `cols` is not a multiple of 32), so every kernel's inner
//! loop decodes whole units; `cols` must be a multiple of 4 (kernels read activations as vec4s).
//!
//! A part's buffer holds its rows' `quants` plane, then (each at the next storage-binding offset
//! alignment) its `scales` and `aux` planes; kernels bind the planes separately, at the
//! bindings [`PLANE_BINDINGS`] names. A tensor whose part would exceed `ctx.max_binding_size`
//! is split by whole rows into several parts.
//!
//! Several tensors of one type and row length can be *stacked* into one weight, their rows one
//! after another ([`GpuWeight::new_stacked`]): q, k and v, or gate and up, then take one
//! dispatch per token instead of three or two. Each member uploads on its own (tensors arrive
//! in whatever order the file has them) into its own rows, and kernels route each member's
//! outputs to where it wants them (`matvec.rs`, `Route`).

use std::ops::Range;

use crate::error::{Error, Result};
use crate::ggml_type::GgmlType;
use crate::gguf::TensorInfo;
use crate::gpu::kernel::{range, storage_buffer, storage_bytes};
use crate::gpu::GpuContext;

mod plan;
use plan::WeightPlan;

pub(crate) use super::weight_types::GPU_TYPES_HINT;
pub use super::weight_types::{
    gpu_type, GpuType, Helper, ScaleFormat, GPU_TYPES, GPU_TYPE_TABLE, PLANE_BINDINGS, UNIT,
};

/// Staged upload bytes after which `write` submits, so that wgpu hands its staging memory back
/// (native wgpu holds `write_buffer` data until the next submit).
const SUBMIT_EVERY: u64 = 16 << 20;

/// The GPU layout of one tensor: block geometry and the byte strides of a row in each plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightLayout {
    /// Bytes of a GGUF block per plane (`quants`, `scales`, `aux`), from the type's table row.
    planes: [Range<usize>; 3],
    /// GGUF bytes per block.
    block_bytes: u64,
    /// GGUF blocks in one row.
    blocks_per_row: u64,
    /// Bytes of one row in each plane: `quants` a multiple of 16, `scales` and `aux` multiples
    /// of 4 (0 where the type has no such plane).
    pub row_bytes: [u64; 3],
    /// Blocks per run that make a run end 4-byte aligned in every plane (2 where a plane takes
    /// 2 bytes per block, else 1): a piece is written to the GPU in such runs.
    group: u64,
}

impl WeightLayout {
    /// The layout of rows of `cols` values of `ty`, or `None` for a type without a kernel.
    fn new(ty: GgmlType, cols: u64) -> Option<WeightLayout> {
        let planes = gpu_type(ty)?.planes.clone();
        let blocks_per_row = cols / ty.block_size();
        // F32/F16/BF16 rows are padded to whole units; block types' rows already are whole units.
        let padded_blocks = cols.next_multiple_of(UNIT) / ty.block_size();
        let group = match planes.iter().all(|p| p.len() % 4 == 0) {
            true => 1,
            false => 2,
        };
        let row_bytes = [
            padded_blocks * planes[0].len() as u64,
            (blocks_per_row * planes[1].len() as u64).next_multiple_of(4),
            (blocks_per_row * planes[2].len() as u64).next_multiple_of(4),
        ];
        Some(WeightLayout {
            block_bytes: ty.type_size(),
            blocks_per_row,
            row_bytes,
            group,
            planes,
        })
    }

    /// GGUF bytes of one row.
    fn gguf_row_bytes(&self) -> u64 {
        self.blocks_per_row * self.block_bytes
    }

    /// (offset of each plane, buffer size) of a part of `n_rows` rows: the planes one after
    /// another, each but the first at the next multiple of `offset_alignment`. A plane the type
    /// does not have takes no bytes (its offset is where the previous one ended).
    fn part_size(&self, n_rows: u64, offset_alignment: u64) -> ([u64; 3], u64) {
        let mut offsets = [0u64; 3];
        let mut end = n_rows * self.row_bytes[0];
        for (offset, &row_bytes) in offsets.iter_mut().zip(&self.row_bytes).skip(1) {
            if row_bytes > 0 {
                *offset = end.next_multiple_of(offset_alignment);
                end = *offset + n_rows * row_bytes;
            } else {
                *offset = end;
            }
        }
        (offsets, end)
    }

    /// Append blocks (whole GGUF blocks, starting at block `k` of a row) to the planes,
    /// padding each row that ends here to its full stride.
    fn repack(&self, mut k: u64, mut src: &[u8], out: &mut [Vec<u8>; 3]) {
        let block = self.block_bytes as usize;
        let whole_block = self.planes[0].len() == block;
        while !src.is_empty() {
            let n = ((self.blocks_per_row - k) as usize).min(src.len() / block);
            let (run, rest) = src.split_at(n * block);
            if whole_block {
                out[0].extend_from_slice(run);
            } else {
                for b in run.chunks_exact(block) {
                    for (plane, bytes) in self.planes.iter().zip(out.iter_mut()) {
                        bytes.extend_from_slice(&b[plane.clone()]);
                    }
                }
            }
            k += n as u64;
            if k == self.blocks_per_row {
                for (p, bytes) in out.iter_mut().enumerate() {
                    let used = self.blocks_per_row * self.planes[p].len() as u64;
                    bytes.resize(bytes.len() + (self.row_bytes[p] - used) as usize, 0);
                }
                k = 0;
            }
            src = rest;
        }
    }
}

/// One buffer of a weight: rows `first_row .. first_row + n_rows`.
#[derive(Debug)]
pub struct WeightPart {
    pub buffer: wgpu::Buffer,
    pub first_row: u64,
    pub n_rows: u64,
    /// Byte offset of each plane (`quants`, `scales`, `aux`) in `buffer`.
    pub plane_offsets: [u64; 3],
}

/// One 2-D GGUF tensor (`dims` `[cols, rows]`: rows of `cols` contiguous values) on the GPU,
/// in the layout described at the top of this file; or several stacked by rows.
#[derive(Debug)]
pub struct GpuWeight {
    pub name: String,
    pub ty: GgmlType,
    /// Rows of all members together.
    pub rows: u64,
    pub cols: u64,
    pub layout: WeightLayout,
    pub parts: Vec<WeightPart>,
    /// The tensors stacked here, in row order (one for a plain weight).
    pub members: Vec<Member>,
}

/// One tensor of a (possibly stacked) weight: its rows are `first_row .. first_row + rows`.
#[derive(Debug)]
pub struct Member {
    pub name: String,
    pub first_row: u64,
    pub rows: u64,
    upload: Upload,
}

/// Progress of a streaming upload.
#[derive(Debug, Default)]
struct Upload {
    /// GGUF bytes received so far.
    received: u64,
    /// GGUF blocks written to the GPU so far.
    written_blocks: u64,
    /// Received bytes not yet written: less than one write group of blocks.
    carry: Vec<u8>,
    /// Bytes handed to `write_buffer` since the last submit.
    staged: u64,
}

impl GpuWeight {
    /// Allocate the GPU buffers for `info` (zeroed); the bytes follow through [`write`](Self::write).
    pub fn new(ctx: &GpuContext, info: &TensorInfo) -> Result<GpuWeight> {
        Self::new_stacked(ctx, &info.name, &[info])
    }

    /// Allocate one weight holding `members`' rows one after another (zeroed); each member's
    /// bytes follow through [`write_member`](Self::write_member). The members must share type
    /// and row length.
    pub fn new_stacked(ctx: &GpuContext, name: &str, members: &[&TensorInfo]) -> Result<GpuWeight> {
        let plan = WeightPlan::new(ctx, name, members)?;
        let parts = plan
            .parts
            .iter()
            .map(|p| WeightPart {
                buffer: storage_buffer(ctx, &p.label(name), p.size),
                first_row: p.first_row,
                n_rows: p.n_rows,
                plane_offsets: p.plane_offsets,
            })
            .collect();
        Ok(GpuWeight {
            name: name.to_string(),
            ty: members[0].ty,
            rows: plan.rows,
            cols: plan.cols,
            layout: plan.layout,
            parts,
            members: plan.members,
        })
    }

    /// Bytes [`new_stacked`](Self::new_stacked) would allocate for `members`, and in how many
    /// parts, with the same checks, allocating nothing (the memory budget sizes a model from
    /// its header with it).
    pub fn planned_bytes(
        ctx: &GpuContext,
        name: &str,
        members: &[&TensorInfo],
    ) -> Result<(u64, usize)> {
        let plan = WeightPlan::new(ctx, name, members)?;
        let bytes = plan.parts.iter().map(|p| storage_bytes(p.size)).sum();
        Ok((bytes, plan.parts.len()))
    }

    /// Allocate and upload a whole tensor (in 1 MiB pieces, as a stream would deliver it).
    pub fn upload(ctx: &GpuContext, info: &TensorInfo, bytes: &[u8]) -> Result<GpuWeight> {
        let mut weight = GpuWeight::new(ctx, info)?;
        let mut offset = 0u64;
        for piece in bytes.chunks(1 << 20) {
            weight.write(ctx, offset, piece)?;
            offset += piece.len() as u64;
        }
        weight.finish(ctx)?;
        Ok(weight)
    }

    /// Take the next piece of the tensor's GGUF bytes (`offset_in_tensor` must be where the last
    /// piece ended). Pieces may cut blocks anywhere: a partial group of blocks is carried to
    /// the next call. Host memory used is about twice the piece.
    pub fn write(&mut self, ctx: &GpuContext, offset_in_tensor: u64, bytes: &[u8]) -> Result<()> {
        self.write_member(ctx, 0, offset_in_tensor, bytes)
    }

    /// [`write`](Self::write) for member `m` of a stacked weight (members may arrive in any
    /// order, even interleaved; each one's pieces in order).
    pub fn write_member(
        &mut self,
        ctx: &GpuContext,
        m: usize,
        offset_in_tensor: u64,
        bytes: &[u8],
    ) -> Result<()> {
        let row_bytes = self.layout.gguf_row_bytes();
        let member = self
            .members
            .get_mut(m)
            .ok_or_else(|| Error::InvalidArgument(format!("`{}` has no member {m}", self.name)))?;
        let total = member.rows * row_bytes;
        if offset_in_tensor != member.upload.received {
            return Err(Error::InvalidArgument(format!(
                "tensor `{}`: piece at byte {offset_in_tensor}, expected byte {} (pieces must \
                 arrive in order)",
                member.name, member.upload.received
            )));
        }
        if offset_in_tensor + bytes.len() as u64 > total {
            return Err(Error::InvalidArgument(format!(
                "tensor `{}`: piece ends at byte {}, past the tensor's {total} bytes",
                member.name,
                offset_in_tensor + bytes.len() as u64
            )));
        }
        member.upload.received += bytes.len() as u64;
        let mut input = bytes;
        if !self.members[m].upload.carry.is_empty() {
            // Complete the carried group first; it is short, so it is copied.
            let group = self.group_bytes(m);
            let member = &mut self.members[m];
            let want = group - member.upload.carry.len();
            let (head, rest) = input.split_at(want.min(input.len()));
            member.upload.carry.extend_from_slice(head);
            input = rest;
            if member.upload.carry.len() < group {
                return Ok(());
            }
            let carry = std::mem::take(&mut member.upload.carry);
            self.write_blocks(ctx, m, &carry);
        }
        let n = self.writable_blocks(m, input.len() as u64 / self.layout.block_bytes);
        let (now, later) = input.split_at((n * self.layout.block_bytes) as usize);
        self.write_blocks(ctx, m, now);
        self.members[m].upload.carry.extend_from_slice(later);
        if self.members.iter().map(|m| m.upload.staged).sum::<u64>() >= SUBMIT_EVERY {
            self.flush(ctx);
        }
        Ok(())
    }

    /// Check that every byte of every member arrived and hand the staged writes to the GPU.
    pub fn finish(&mut self, ctx: &GpuContext) -> Result<()> {
        let row_bytes = self.layout.gguf_row_bytes();
        for member in &mut self.members {
            let total = member.rows * row_bytes;
            if member.upload.received != total {
                return Err(Error::ModelInvalid(format!(
                    "tensor `{}`: {} of its {total} bytes arrived",
                    member.name, member.upload.received
                )));
            }
            member.upload.carry = Vec::new();
        }
        self.flush(ctx);
        Ok(())
    }

    /// Bytes this weight holds on the GPU.
    pub fn gpu_bytes(&self) -> u64 {
        self.parts.iter().map(|p| p.buffer.size()).sum()
    }

    /// The planes the type has of one part, at their [`PLANE_BINDINGS`]: `quants` (read as
    /// `array<vec4<u32>>`), then `scales` and `aux` (`array<u32>`) where the type has them.
    pub fn plane_bindings<'a>(&self, part: &'a WeightPart) -> Vec<(u32, wgpu::BufferBinding<'a>)> {
        (0..3)
            .filter(|&p| p == 0 || self.layout.row_bytes[p] > 0)
            .map(|p| {
                let size = part.n_rows * self.layout.row_bytes[p];
                let binding = range(&part.buffer, part.plane_offsets[p], size);
                (PLANE_BINDINGS[p], binding)
            })
            .collect()
    }

    /// GGUF bytes of member `m`'s next write group: `group` blocks, or fewer where the row
    /// ends first.
    fn group_bytes(&self, m: usize) -> usize {
        let k = self.members[m].upload.written_blocks % self.layout.blocks_per_row;
        let blocks = self.layout.group.min(self.layout.blocks_per_row - k);
        (blocks * self.layout.block_bytes) as usize
    }

    /// How many of `available` whole blocks can be written now: all of them, less those past
    /// the last group boundary when they end inside a row (so every write stays 4-byte aligned).
    fn writable_blocks(&self, m: usize, available: u64) -> u64 {
        let end = self.members[m].upload.written_blocks + available;
        let k = end % self.layout.blocks_per_row;
        available - k % self.layout.group
    }

    /// Repack whole blocks of member `m` (starting at its block `written_blocks`) and queue
    /// their writes, one run per part.
    fn write_blocks(&mut self, ctx: &GpuContext, m: usize, mut src: &[u8]) {
        let layout = &self.layout;
        let member = &mut self.members[m];
        let mut planes: [Vec<u8>; 3] = Default::default();
        while !src.is_empty() {
            // Blocks count from the weight's first row; the member's rows start at first_row.
            let first = member.first_row * layout.blocks_per_row + member.upload.written_blocks;
            let row = first / layout.blocks_per_row;
            let k = first % layout.blocks_per_row;
            let part = self
                .parts
                .iter()
                .find(|p| row < p.first_row + p.n_rows)
                .expect("parts cover every row and writes stop at the tensor's end");
            let blocks_left_in_part =
                (part.first_row + part.n_rows) * layout.blocks_per_row - first;
            let n = (src.len() as u64 / layout.block_bytes).min(blocks_left_in_part);
            let (run, rest) = src.split_at((n * layout.block_bytes) as usize);
            planes.iter_mut().for_each(Vec::clear);
            layout.repack(k, run, &mut planes);
            let local_row = row - part.first_row;
            // Each plane is row-major with its own stride, so a run of blocks (across rows,
            // padding included) is one contiguous write per plane.
            for (p, bytes) in planes.iter().enumerate().filter(|(_, b)| !b.is_empty()) {
                let at = part.plane_offsets[p]
                    + local_row * layout.row_bytes[p]
                    + k * layout.planes[p].len() as u64;
                ctx.queue.write_buffer(&part.buffer, at, bytes);
            }
            member.upload.staged += planes.iter().map(|b| b.len() as u64).sum::<u64>();
            member.upload.written_blocks += n;
            src = rest;
        }
    }

    fn flush(&mut self, ctx: &GpuContext) {
        ctx.queue.submit([]);
        for member in &mut self.members {
            member.upload.staged = 0;
        }
    }
}

/// A 1-D f32 vector (norm weights, biases) as a storage buffer.
pub fn upload_f32_vector(ctx: &GpuContext, label: &str, values: &[f32]) -> Result<wgpu::Buffer> {
    let bytes = values.len() as u64 * 4;
    if bytes > ctx.max_binding_size {
        return Err(Error::ModelTooLarge(format!(
            "vector `{label}` takes {bytes} bytes, more than one buffer binding may hold ({})",
            ctx.max_binding_size
        )));
    }
    let buffer = storage_buffer(ctx, label, bytes);
    ctx.queue
        .write_buffer(&buffer, 0, bytemuck::cast_slice(values));
    Ok(buffer)
}

/// A small tensor of any CPU-decodable type (norms are F32 in GGUF files, sometimes F16)
/// dequantized to f32 and uploaded with [`upload_f32_vector`].
pub fn upload_tensor_as_f32(
    ctx: &GpuContext,
    info: &TensorInfo,
    bytes: &[u8],
) -> Result<wgpu::Buffer> {
    let values = crate::quant::dequantize_tensor(info, bytes)?;
    upload_f32_vector(ctx, &info.name, &values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_gpu_type_has_a_layout_with_aligned_planes() {
        for t in GPU_TYPE_TABLE {
            let ty = t.ty;
            let cols = 2 * ty.block_size().max(UNIT);
            let l = WeightLayout::new(ty, cols).unwrap();
            assert_eq!(l.row_bytes[0] % 16, 0, "{ty}");
            assert!(l.row_bytes[0] > 0, "{ty}: every type has quants");
            // Every byte of a block lands in exactly one plane.
            let mut owner = vec![0; ty.type_size() as usize];
            for plane in &t.planes {
                plane.clone().for_each(|b| owner[b] += 1);
            }
            assert!(owner.iter().all(|&n| n == 1), "{ty}: {owner:?}");
            for plane in &t.planes {
                assert_eq!(plane.len() as u64 * l.group % 4, 0, "{ty}");
            }
            // A 32-value block's quants are whole vec4s; a super-block's too.
            if ty.block_size() > 1 {
                assert_eq!(t.planes[0].len() % 16, 0, "{ty}");
            }
            let scale_bytes = t.planes[1].len();
            let expected = match t.scale_format {
                ScaleFormat::None => scale_bytes == 0,
                ScaleFormat::F16 => scale_bytes == 2,
                ScaleFormat::F16Pair => scale_bytes == 4,
                ScaleFormat::Words => scale_bytes % 4 == 0 && scale_bytes > 0,
            };
            assert!(
                expected,
                "{ty}: {:?} with {scale_bytes} bytes",
                t.scale_format
            );
        }
        assert!(WeightLayout::new(GgmlType::IQ2_XXS, 256).is_none());
        assert_eq!(GPU_TYPES.len(), GPU_TYPE_TABLE.len());
        assert!(GPU_TYPES_HINT.contains("Q4_0 Q4_1 Q5_0 Q5_1 Q8_0"));
    }

    #[test]
    fn f32_and_f16_rows_pad_to_whole_units() {
        let l = WeightLayout::new(GgmlType::F16, 33).unwrap();
        assert_eq!(l.row_bytes[0], 64 * 2);
        let mut out: [Vec<u8>; 3] = Default::default();
        l.repack(0, &[1u8; 66], &mut out);
        let q = &out[0];
        assert_eq!(q.len(), 128);
        assert!(q[..66].iter().all(|&b| b == 1) && q[66..].iter().all(|&b| b == 0));
        assert!(out[1].is_empty() && out[2].is_empty());
    }

    #[test]
    fn q4_0_splits_scales_from_nibbles() {
        let l = WeightLayout::new(GgmlType::Q4_0, 32).unwrap();
        let block: Vec<u8> = (0..18).collect();
        let mut out: [Vec<u8>; 3] = Default::default();
        l.repack(0, &block, &mut out);
        assert_eq!(out[0], (2..18).collect::<Vec<u8>>());
        assert_eq!(
            out[1],
            vec![0, 1, 0, 0],
            "d, then padding to a whole u32 per row"
        );
    }

    #[test]
    fn q5_0_puts_its_fifth_bits_in_the_aux_plane() {
        let l = WeightLayout::new(GgmlType::Q5_0, 64).unwrap();
        let blocks: Vec<u8> = (0..44).collect();
        let mut out: [Vec<u8>; 3] = Default::default();
        l.repack(0, &blocks, &mut out);
        let want_quants: Vec<u8> = (6..22).chain(28..44).collect();
        assert_eq!(out[0], want_quants);
        assert_eq!(out[1], vec![0, 1, 22, 23], "both blocks' d in one word");
        assert_eq!(out[2], vec![2, 3, 4, 5, 24, 25, 26, 27]);
        let (offsets, size) = l.part_size(3, 256);
        assert_eq!(offsets, [0, 256, 512]);
        assert_eq!(size, 512 + 3 * 8);
    }
}

//! Weight tensors on the GPU, kept quantized, uploaded piece by piece as the GGUF arrives.
//!
//! # Layout
//!
//! GGUF blocks are not 4-byte aligned (Q4_0 is 18 bytes, Q8_0 34, Q6_K 210), and WGSL can only
//! load whole `u32`s. Rather than pad every block (Q4_0 to 20 or 32 bytes: 11-78% more memory,
//! and the nibbles still not on a 16-byte boundary), each block is split at upload into two
//! *planes*, and every row is laid out so that both planes start 4-byte aligned:
//!
//! | type | `quants` plane, per block              | `scales` plane, per block |
//! |------|----------------------------------------|---------------------------|
//! | F32  | the value (4 bytes)                    | none                      |
//! | F16  | the value (2 bytes)                    | none                      |
//! | Q4_0 | 16 bytes of nibbles (one `vec4<u32>`)  | f16 d (2 bytes)           |
//! | Q4_1 | 16 bytes of nibbles                    | f16 d, f16 m (one `u32`)  |
//! | Q8_0 | 32 bytes of i8 (two `vec4<u32>`)       | f16 d                     |
//! | Q4_K | the whole 144-byte block (9 `vec4<u32>`: d, dmin and the 12 scale bytes, then 128 of nibbles) | none |
//! | Q6_K | ql, qh and the 16 i8 scales: 208 bytes (13 `vec4<u32>`) | f16 d          |
//!
//! So the quantized data lands on 16-byte boundaries (shaders read it as `array<vec4<u32>>`,
//! one load per block plane: on CPU emulations every load instruction is expensive, on GPUs
//! wide loads coalesce), the f16 scales pack two to a `u32` (read with `unpack2x16float`, no
//! optional feature), and GPU memory equals the file's bytes plus at most 2 bytes per row
//! (rounding a row's scales to whole `u32`s) and 255 per part (aligning the `scales` plane),
//! besides the F32/F16 row padding below.
//! Q4_K is already 16-byte aligned and keeps its block unchanged; Q4_1's 20-byte block is
//! 4-byte aligned but its nibbles would not be 16-byte aligned.
//!
//! Shaders walk a row in *units* of [`UNIT`] = 32 values: one Q4_0/Q4_1/Q8_0 block, an eighth of
//! a K-quant super-block, or 32 F32/F16 values. F32 and F16 rows are padded with zeros to a
//! whole number of units (only when `cols` is not a multiple of 32), so every kernel's inner loop
//! decodes whole units; `cols` must be a multiple of 4 (kernels read activations as vec4s).
//!
//! A part's buffer holds its rows' `quants` plane, then (at the next storage-binding offset
//! alignment) its `scales` plane; kernels bind the two ranges separately. A tensor whose part
//! would exceed `ctx.max_binding_size` is split by whole rows into several parts.
//!
//! Several tensors of one type and row length can be *stacked* into one weight, their rows one
//! after another ([`GpuWeight::new_stacked`]): q, k and v, or gate and up, then take one
//! dispatch per token instead of three or two. Each member uploads on its own (tensors arrive
//! in whatever order the file has them) into its own rows, and kernels route each member's
//! outputs to where it wants them (`matvec.rs`, `Route`).

use std::ops::Range;

use crate::error::{Error, Result};
use crate::gguf::TensorInfo;
use crate::gpu::kernel::{range, storage_buffer};
use crate::gpu::GpuContext;
use crate::quant::GgmlType;

/// Values per unit: the slice of a row one shader step decodes.
pub const UNIT: u64 = 32;

/// The tensor types with GPU kernels.
pub const GPU_TYPES: [GgmlType; 7] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q8_0,
    GgmlType::Q4_K,
    GgmlType::Q6_K,
];

const GPU_TYPES_HINT: &str = " on the GPU (GPU kernels exist for F32 F16 Q4_0 Q4_1 Q8_0 Q4_K Q6_K)";

/// Staged upload bytes after which `write` submits, so that wgpu hands its staging memory back
/// (native wgpu holds `write_buffer` data until the next submit).
const SUBMIT_EVERY: u64 = 16 << 20;

/// Which bytes of a GGUF block go to which plane.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Planes {
    quants: Range<usize>,
    scales: Range<usize>,
}

fn planes(ty: GgmlType) -> Option<Planes> {
    use GgmlType::*;
    let (quants, scales) = match ty {
        F32 => (0..4, 0..0),
        F16 => (0..2, 0..0),
        Q4_0 => (2..18, 0..2),
        Q4_1 => (4..20, 0..4),
        Q8_0 => (2..34, 0..2),
        Q4_K => (0..144, 0..0),
        Q6_K => (0..208, 208..210),
        _ => return None,
    };
    Some(Planes { quants, scales })
}

/// The GPU layout of one tensor: block geometry and the byte strides of a row in each plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightLayout {
    planes: Planes,
    /// GGUF bytes per block.
    block_bytes: u64,
    /// GGUF blocks in one row.
    blocks_per_row: u64,
    /// Bytes of one row in the `quants` plane (a multiple of 16).
    pub quant_row_bytes: u64,
    /// Bytes of one row in the `scales` plane (a multiple of 4; 0 for types without one).
    pub scale_row_bytes: u64,
    /// Blocks per run that make a run end 4-byte aligned in both planes (2 where a plane takes
    /// 2 bytes per block, else 1): a piece is written to the GPU in such runs.
    group: u64,
}

impl WeightLayout {
    /// The layout of rows of `cols` values of `ty`, or `None` for a type without a kernel.
    fn new(ty: GgmlType, cols: u64) -> Option<WeightLayout> {
        let planes = planes(ty)?;
        let blocks_per_row = cols / ty.block_size();
        // F32/F16 rows are padded to whole units; block types' rows already are whole units.
        let padded_blocks = cols.next_multiple_of(UNIT) / ty.block_size();
        let quant_bytes = planes.quants.len() as u64;
        let scale_bytes = planes.scales.len() as u64;
        let group = if quant_bytes % 4 == 0 && scale_bytes % 4 == 0 {
            1
        } else {
            2
        };
        Some(WeightLayout {
            block_bytes: ty.type_size(),
            blocks_per_row,
            quant_row_bytes: padded_blocks * quant_bytes,
            scale_row_bytes: (blocks_per_row * scale_bytes).next_multiple_of(4),
            group,
            planes,
        })
    }

    fn has_scales(&self) -> bool {
        !self.planes.scales.is_empty()
    }

    /// GGUF bytes of one row.
    fn row_bytes(&self) -> u64 {
        self.blocks_per_row * self.block_bytes
    }

    /// (offset of the `scales` plane, buffer size) of a part of `n_rows` rows.
    fn part_size(&self, n_rows: u64, offset_alignment: u64) -> (u64, u64) {
        let quants = n_rows * self.quant_row_bytes;
        if !self.has_scales() {
            return (quants, quants);
        }
        let scales_offset = quants.next_multiple_of(offset_alignment);
        (scales_offset, scales_offset + n_rows * self.scale_row_bytes)
    }

    /// Append blocks (whole GGUF blocks, starting at block `k` of a row) to the planes,
    /// padding each row that ends here to its full stride.
    fn repack(&self, mut k: u64, mut src: &[u8], quants: &mut Vec<u8>, scales: &mut Vec<u8>) {
        let block = self.block_bytes as usize;
        let whole_block = self.planes.quants.len() == block;
        while !src.is_empty() {
            let n = ((self.blocks_per_row - k) as usize).min(src.len() / block);
            let (run, rest) = src.split_at(n * block);
            if whole_block {
                quants.extend_from_slice(run);
            } else {
                for b in run.chunks_exact(block) {
                    quants.extend_from_slice(&b[self.planes.quants.clone()]);
                    scales.extend_from_slice(&b[self.planes.scales.clone()]);
                }
            }
            k += n as u64;
            if k == self.blocks_per_row {
                let used = self.blocks_per_row * self.planes.quants.len() as u64;
                quants.resize(quants.len() + (self.quant_row_bytes - used) as usize, 0);
                let used = self.blocks_per_row * self.planes.scales.len() as u64;
                scales.resize(scales.len() + (self.scale_row_bytes - used) as usize, 0);
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
    /// Byte offset of the `scales` plane in `buffer` (its size when there is no such plane).
    pub scales_offset: u64,
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
        let first = members
            .first()
            .ok_or_else(|| Error::InvalidArgument(format!("`{name}`: nothing to stack")))?;
        let (_, cols) = first.rows_cols();
        let layout =
            WeightLayout::new(first.ty, cols).ok_or_else(|| Error::UnsupportedTensorType {
                tensor: first.name.clone(),
                ty: first.ty.name().to_string(),
                hint: GPU_TYPES_HINT,
            })?;
        let mut stacked = Vec::with_capacity(members.len());
        let mut rows = 0u64;
        for info in members {
            let (r, c) = info.rows_cols();
            if info.ty != first.ty || c != cols {
                return Err(Error::InvalidArgument(format!(
                    "`{name}`: `{}` ({} x {c}, {}) cannot stack on `{}` ({} values, {})",
                    info.name, r, info.ty, first.name, cols, first.ty
                )));
            }
            check_shape(info, r, c)?;
            stacked.push(Member {
                name: info.name.clone(),
                first_row: rows,
                rows: r,
                upload: Upload::default(),
            });
            rows += r;
        }
        if rows > u32::MAX as u64 {
            return Err(Error::ModelTooLarge(format!(
                "`{name}`: {rows} stacked rows are beyond the kernels' 32-bit indices"
            )));
        }
        let parts = allocate_parts(ctx, name, first, &layout, rows)?;
        Ok(GpuWeight {
            name: name.to_string(),
            ty: first.ty,
            rows,
            cols,
            layout,
            parts,
            members: stacked,
        })
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
        let row_bytes = self.layout.row_bytes();
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
        let row_bytes = self.layout.row_bytes();
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

    /// The `quants` plane of a part, as a binding (read as `array<vec4<u32>>`).
    pub fn quants_binding<'a>(&self, part: &'a WeightPart) -> wgpu::BufferBinding<'a> {
        range(&part.buffer, 0, part.n_rows * self.layout.quant_row_bytes)
    }

    /// The `scales` plane of a part (read as `array<u32>`), for types that have one.
    pub fn scales_binding<'a>(&self, part: &'a WeightPart) -> Option<wgpu::BufferBinding<'a>> {
        self.layout.has_scales().then(|| {
            range(
                &part.buffer,
                part.scales_offset,
                part.n_rows * self.layout.scale_row_bytes,
            )
        })
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
        let (mut quants, mut scales) = (Vec::new(), Vec::new());
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
            quants.clear();
            scales.clear();
            layout.repack(k, run, &mut quants, &mut scales);
            let local_row = row - part.first_row;
            let quant_at =
                local_row * layout.quant_row_bytes + k * layout.planes.quants.len() as u64;
            ctx.queue.write_buffer(&part.buffer, quant_at, &quants);
            if layout.has_scales() {
                let scale_at = part.scales_offset
                    + local_row * layout.scale_row_bytes
                    + k * layout.planes.scales.len() as u64;
                ctx.queue.write_buffer(&part.buffer, scale_at, &scales);
            }
            member.upload.staged += (quants.len() + scales.len()) as u64;
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

/// What the kernels need of a shape beyond what the GGUF reader checks.
fn check_shape(info: &TensorInfo, rows: u64, cols: u64) -> Result<()> {
    if rows == 0 || cols == 0 || cols % info.ty.block_size() != 0 {
        return Err(Error::ModelInvalid(format!(
            "tensor `{}` has shape {:?}, which is not whole rows of {} blocks",
            info.name, info.dims, info.ty
        )));
    }
    // Kernels read x as vec4s. Quantized rows are whole blocks of 32 or 256 values; an F32/F16
    // row of another length has never been seen in a llama-family file.
    if cols % 4 != 0 {
        return Err(Error::ModelInvalid(format!(
            "tensor `{}` has rows of {cols} values; the GPU kernels need a multiple of 4",
            info.name
        )));
    }
    if rows > u32::MAX as u64 || cols > u32::MAX as u64 / 4 {
        return Err(Error::ModelTooLarge(format!(
            "tensor `{}` has shape {:?}, beyond the kernels' 32-bit indices",
            info.name, info.dims
        )));
    }
    Ok(())
}

/// Split the rows into as few parts as the binding limit allows and allocate their buffers.
fn allocate_parts(
    ctx: &GpuContext,
    name: &str,
    info: &TensorInfo,
    layout: &WeightLayout,
    rows: u64,
) -> Result<Vec<WeightPart>> {
    let alignment = ctx.limits.min_storage_buffer_offset_alignment as u64;
    let max = ctx.max_binding_size.min(ctx.limits.max_buffer_size);
    let rows_per_part = max_rows_per_part(layout, max, alignment).min(rows);
    if rows_per_part == 0 {
        return Err(Error::ModelTooLarge(format!(
            "one row of tensor `{}` ({} values of {}) takes {} bytes on the GPU, more than one \
             buffer binding may hold ({max} bytes)",
            info.name,
            info.rows_cols().1,
            info.ty,
            layout.part_size(1, alignment).1
        )));
    }
    let mut parts = Vec::new();
    let mut first_row = 0;
    while first_row < rows {
        let n_rows = rows_per_part.min(rows - first_row);
        let (scales_offset, size) = layout.part_size(n_rows, alignment);
        let label = format!("{name} rows {first_row}..{}", first_row + n_rows);
        parts.push(WeightPart {
            buffer: storage_buffer(ctx, &label, size),
            first_row,
            n_rows,
            scales_offset,
        });
        first_row += n_rows;
    }
    Ok(parts)
}

/// The most rows whose part fits in `max` bytes (0 when not even one row does).
fn max_rows_per_part(layout: &WeightLayout, max: u64, alignment: u64) -> u64 {
    let mut n = max / (layout.quant_row_bytes + layout.scale_row_bytes);
    while n > 0 && layout.part_size(n, alignment).1 > max {
        n -= 1;
    }
    n
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
        for ty in GPU_TYPES {
            let cols = 2 * ty.block_size().max(UNIT);
            let l = WeightLayout::new(ty, cols).unwrap();
            assert_eq!(l.quant_row_bytes % 16, 0, "{ty}");
            assert_eq!(l.scale_row_bytes % 4, 0, "{ty}");
            assert_eq!(
                l.planes.quants.len() + l.planes.scales.len(),
                ty.type_size() as usize,
                "{ty}: every byte lands in one plane (Q4_K/F32/F16 whole)"
            );
            assert_eq!(l.planes.quants.len() as u64 * l.group % 4, 0, "{ty}");
            assert_eq!(l.planes.scales.len() as u64 * l.group % 4, 0, "{ty}");
        }
        assert!(WeightLayout::new(GgmlType::Q5_0, 32).is_none());
    }

    #[test]
    fn f32_and_f16_rows_pad_to_whole_units() {
        let l = WeightLayout::new(GgmlType::F16, 33).unwrap();
        assert_eq!(l.quant_row_bytes, 64 * 2);
        let mut q = Vec::new();
        let mut s = Vec::new();
        l.repack(0, &[1u8; 66], &mut q, &mut s);
        assert_eq!(q.len(), 128);
        assert!(q[..66].iter().all(|&b| b == 1) && q[66..].iter().all(|&b| b == 0));
        assert!(s.is_empty());
    }

    #[test]
    fn q4_0_splits_scales_from_nibbles() {
        let l = WeightLayout::new(GgmlType::Q4_0, 32).unwrap();
        let block: Vec<u8> = (0..18).collect();
        let (mut q, mut s) = (Vec::new(), Vec::new());
        l.repack(0, &block, &mut q, &mut s);
        assert_eq!(q, (2..18).collect::<Vec<u8>>());
        assert_eq!(
            s,
            vec![0, 1, 0, 0],
            "d, then padding to a whole u32 per row"
        );
    }

    #[test]
    fn parts_fit_the_limit() {
        let l = WeightLayout::new(GgmlType::Q8_0, 64).unwrap();
        // 64 bytes of quants + 4 of scales per row.
        let n = max_rows_per_part(&l, 1024, 256);
        assert!(l.part_size(n, 256).1 <= 1024 && l.part_size(n + 1, 256).1 > 1024);
        assert_eq!(max_rows_per_part(&l, 64, 256), 0);
    }
}

//! How a weight is laid out before anything is allocated: its members (stacked tensors of one
//! type and row length, checked for shapes the kernels take) and the parts its rows are split
//! into so that each fits one buffer binding. `GpuWeight` allocates from a plan, and the memory
//! budget sizes a model from the same plan (`GpuWeight::planned_bytes`).

use super::{Member, Upload, WeightLayout, GPU_TYPES_HINT};
use crate::error::{Error, Result};
use crate::gguf::TensorInfo;
use crate::gpu::GpuContext;

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

/// A weight's geometry before anything is allocated: its layout, members and parts.
pub(super) struct WeightPlan {
    pub(super) layout: WeightLayout,
    pub(super) rows: u64,
    pub(super) cols: u64,
    pub(super) members: Vec<Member>,
    pub(super) parts: Vec<PartPlan>,
}

/// One buffer of a weight, to be allocated.
pub(super) struct PartPlan {
    pub(super) first_row: u64,
    pub(super) n_rows: u64,
    pub(super) plane_offsets: [u64; 3],
    pub(super) size: u64,
}

impl PartPlan {
    pub(super) fn label(&self, name: &str) -> String {
        format!(
            "{name} rows {}..{}",
            self.first_row,
            self.first_row + self.n_rows
        )
    }
}

impl WeightPlan {
    /// Check `members` (one type and row length, shapes the kernels take) and split their rows
    /// into as few parts as the binding limit allows.
    pub(super) fn new(ctx: &GpuContext, name: &str, members: &[&TensorInfo]) -> Result<WeightPlan> {
        let first = members
            .first()
            .ok_or_else(|| Error::InvalidArgument(format!("`{name}`: nothing to stack")))?;
        let (_, cols) = first.rows_cols();
        let layout =
            WeightLayout::new(first.ty, cols).ok_or_else(|| Error::UnsupportedTensorType {
                tensor: first.name.clone(),
                ty: first.ty.name().to_string(),
                hint: GPU_TYPES_HINT.as_str(),
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
        let parts = plan_parts(ctx, first, &layout, rows)?;
        Ok(WeightPlan {
            layout,
            rows,
            cols,
            members: stacked,
            parts,
        })
    }
}

/// Split the rows into as few parts as the binding limit allows.
fn plan_parts(
    ctx: &GpuContext,
    info: &TensorInfo,
    layout: &WeightLayout,
    rows: u64,
) -> Result<Vec<PartPlan>> {
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
        let (plane_offsets, size) = layout.part_size(n_rows, alignment);
        parts.push(PartPlan {
            first_row,
            n_rows,
            plane_offsets,
            size,
        });
        first_row += n_rows;
    }
    Ok(parts)
}

/// The most rows whose part fits in `max` bytes (0 when not even one row does).
fn max_rows_per_part(layout: &WeightLayout, max: u64, alignment: u64) -> u64 {
    let mut n = max / layout.row_bytes.iter().sum::<u64>();
    while n > 0 && layout.part_size(n, alignment).1 > max {
        n -= 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ggml_type::GgmlType;

    #[test]
    fn parts_fit_the_limit() {
        let l = WeightLayout::new(GgmlType::Q8_0, 64).unwrap();
        // 64 bytes of quants + 4 of scales per row.
        let n = max_rows_per_part(&l, 1024, 256);
        assert!(l.part_size(n, 256).1 <= 1024 && l.part_size(n + 1, 256).1 > 1024);
        assert_eq!(max_rows_per_part(&l, 64, 256), 0);
    }
}

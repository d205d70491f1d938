//! Weight matrix times activations: `matvec` for one token (decode) and `matmul` for a batch
//! (prefill), both over chunks of rows, across threads where there are any (`pool`). The batched form walks each row once for all tokens, so a prefill
//! reads the weights once per batch instead of once per token.

use crate::cpu::dot::{check_row, kernel, Kernel};
use crate::cpu::pool::for_each;
use crate::cpu::q8::Q8Activations;
use crate::error::{Error, Result};
use crate::quant::GgmlType;

/// Rows per task: enough to amortize handing out a task, few enough to share 4096 rows
/// evenly among threads.
const ROWS_PER_TASK: usize = 32;

/// out[r] = dot(row r, act) for the `rows` rows of `row_bytes` bytes each that `data` holds.
pub fn matvec(
    ty: GgmlType,
    rows: usize,
    row_bytes: usize,
    data: &[u8],
    act: &Q8Activations,
    out: &mut [f32],
) -> Result<()> {
    let kernel = checked_kernel(ty, rows, row_bytes, data, std::slice::from_ref(act))?;
    if out.len() != rows {
        return Err(Error::InvalidArgument(format!(
            "matvec {ty}: {rows} rows but room for {} outputs",
            out.len()
        )));
    }
    let tasks: Vec<_> = out.chunks_mut(ROWS_PER_TASK).enumerate().collect();
    for_each(tasks, rows * act.len(), |(i, out)| {
        let first = i * ROWS_PER_TASK;
        for (row, y) in data[first * row_bytes..].chunks_exact(row_bytes).zip(out) {
            *y = kernel(row, act);
        }
    });
    Ok(())
}

/// out[t][r] = dot(row r, acts[t]): `out` is `acts.len()` rows of `rows` values.
pub fn matmul(
    ty: GgmlType,
    rows: usize,
    row_bytes: usize,
    data: &[u8],
    acts: &[Q8Activations],
    out: &mut [f32],
) -> Result<()> {
    let kernel = checked_kernel(ty, rows, row_bytes, data, acts)?;
    if Some(out.len()) != rows.checked_mul(acts.len()) {
        return Err(Error::InvalidArgument(format!(
            "matmul {ty}: {} tokens of {rows} rows but room for {} outputs",
            acts.len(),
            out.len()
        )));
    }
    if rows == 0 {
        return Ok(());
    }
    // Task i gets rows [32i, 32i + 32) of every token's output.
    let mut tasks: Vec<(usize, Vec<&mut [f32]>)> = (0..rows.div_ceil(ROWS_PER_TASK))
        .map(|i| (i, Vec::with_capacity(acts.len())))
        .collect();
    for token_out in out.chunks_exact_mut(rows) {
        for (task, chunk) in tasks.iter_mut().zip(token_out.chunks_mut(ROWS_PER_TASK)) {
            task.1.push(chunk);
        }
    }
    let work = rows * acts.iter().map(Q8Activations::len).sum::<usize>();
    for_each(tasks, work, |(i, mut outs)| {
        let first = i * ROWS_PER_TASK;
        let chunk_rows = data[first * row_bytes..].chunks_exact(row_bytes);
        for (r, row) in chunk_rows.take(ROWS_PER_TASK).enumerate() {
            for (out, act) in outs.iter_mut().zip(acts) {
                out[r] = kernel(row, act);
            }
        }
    });
    Ok(())
}

/// The kernel for `ty`, once `data` is checked to hold `rows` rows of `row_bytes` bytes that
/// each cover the values of every one of `acts`.
fn checked_kernel(
    ty: GgmlType,
    rows: usize,
    row_bytes: usize,
    data: &[u8],
    acts: &[Q8Activations],
) -> Result<Kernel> {
    let kernel = kernel(ty)?;
    if rows.checked_mul(row_bytes) != Some(data.len()) {
        return Err(Error::InvalidArgument(format!(
            "matmul {ty}: {} bytes is not {rows} rows of {row_bytes} bytes",
            data.len()
        )));
    }
    for act in acts {
        check_row(ty, row_bytes, act)?;
    }
    Ok(kernel)
}

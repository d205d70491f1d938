//! The CPU engine's kernels: the dot products, matvecs and batched matmuls of quantized weight
//! rows, fast enough to run a model without a GPU (`reference/` stays the plain f32 oracle).
//!
//! Weights stay in their GGUF block format; the activations are quantized too, to 8 bits per
//! value in 32-value blocks (`q8`), as llama.cpp's `ggml_vec_dot_*` kernels do. That turns the
//! inner loop of every weight type into 8-bit integer multiply-adds (which SIMD units do 32 at a
//! time) with one f32 multiply per block for the two scales, instead of dequantizing each
//! weight to f32. The price is rounding each activation by up to half its block's step, an
//! error the tests bound per row (`dot_row` versus `quant::dequantize`).
//!
//! `q8` quantizes activations; `dot` is the per-type kernel layer (scalar, AVX2, SIMD128);
//! `matmul` runs a kernel over the rows of a matrix, for one token or a batch.

pub mod dot;
pub mod matmul;
pub mod model;
pub mod pool;
pub mod q8;
pub mod weights;

pub use dot::{dot_row, dot_row_scalar, simd_path};
pub use matmul::{matmul, matvec};
pub use model::CpuModel;
pub use pool::threads;
pub use q8::{Q8Activations, Q8Block, QK8};

/// "CPU engine (avx2, 2 threads)": the instruction set the kernels use and the threads.
pub fn describe() -> String {
    let simd = simd_path(crate::quant::GgmlType::Q4_0).unwrap_or("scalar");
    let n = threads();
    format!(
        "CPU engine ({simd}, {n} thread{})",
        if n == 1 { "" } else { "s" }
    )
}

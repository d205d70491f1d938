//! The dot product of one quantized weight row with quantized activations, for every type in
//! `quant::CPU_TYPES`. `scalar.rs` holds one readable kernel per type; `avx2.rs` (x86-64,
//! chosen at run time) and `simd128.rs` (wasm32 built with `+simd128`) hold SIMD kernels for
//! the types real files mostly use, and `neon.rs` (aarch64, where NEON is always present) the
//! same set; the other types fall back to the scalar kernel.

/// The type -> kernel table of the SIMD modules (`avx2.rs`, `neon.rs`, `simd128.rs`), which name
/// their kernels alike; `$as_kernel!(f)` turns each function into a `Kernel`. Q2_K and Q3_K
/// have no SIMD kernel anywhere.
macro_rules! simd_kernels {
    ($ty:expr, $as_kernel:ident) => {{
        use crate::quant::GgmlType::*;
        Some(match $ty {
            F32 => $as_kernel!(f32_row),
            F16 => $as_kernel!(f16_row),
            BF16 => $as_kernel!(bf16_row),
            Q4_0 => $as_kernel!(q4_0),
            Q4_1 => $as_kernel!(q4_1),
            Q5_0 => $as_kernel!(q5_0),
            Q5_1 => $as_kernel!(q5_1),
            Q8_0 => $as_kernel!(q8_0),
            Q4_K => $as_kernel!(q4_k),
            Q5_K => $as_kernel!(q5_k),
            Q6_K => $as_kernel!(q6_k),
            IQ4_NL => $as_kernel!(iq4_nl),
            IQ4_XS => $as_kernel!(iq4_xs),
            _ => return None,
        })
    }};
}

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "aarch64")]
mod neon;
mod scalar;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd128;

use crate::cpu::q8::{Q8Activations, Q8Block};
use crate::error::{Error, Result};
use crate::quant::GgmlType;

/// Σ w x of one row (whole blocks, as stored) with activations that cover the same values.
pub(super) type Kernel = fn(&[u8], &Q8Activations) -> f32;

/// Dot of `row` (whole `ty` blocks, as the GGUF file stores them) with `act`, which must hold
/// exactly the row's values; with a SIMD kernel where this machine has one.
pub fn dot_row(ty: GgmlType, row: &[u8], act: &Q8Activations) -> Result<f32> {
    let kernel = kernel(ty)?;
    check_row(ty, row.len(), act)?;
    Ok(kernel(row, act))
}

/// `dot_row` through the scalar kernel whatever the machine: the reference SIMD kernels are
/// tested against.
pub fn dot_row_scalar(ty: GgmlType, row: &[u8], act: &Q8Activations) -> Result<f32> {
    let kernel = scalar_kernel(ty).ok_or_else(|| unsupported(ty))?;
    check_row(ty, row.len(), act)?;
    Ok(kernel(row, act))
}

/// The instruction set `dot_row` uses for `ty` on this machine, if not the scalar kernel.
pub fn simd_path(ty: GgmlType) -> Option<&'static str> {
    simd_kernel(ty).map(|(_, name)| name)
}

/// The kernel `dot_row` runs for `ty`: resolved once by a matvec, then called per row.
pub(super) fn kernel(ty: GgmlType) -> Result<Kernel> {
    match simd_kernel(ty) {
        Some((kernel, _)) => Ok(kernel),
        None => scalar_kernel(ty).ok_or_else(|| unsupported(ty)),
    }
}

/// That a `ty` row of `row_bytes` bytes holds exactly the values of `act`.
pub(super) fn check_row(ty: GgmlType, row_bytes: usize, act: &Q8Activations) -> Result<()> {
    if ty.bytes_for(act.len() as u64) != Some(row_bytes as u64) {
        return Err(Error::InvalidArgument(format!(
            "dot {ty}: a {row_bytes}-byte row does not hold the {} activation values",
            act.len()
        )));
    }
    Ok(())
}

/// `row` in `B`-byte weight blocks, each with the `N` activation blocks it covers.
fn blocks<'a, const B: usize, const N: usize>(
    row: &'a [u8],
    act: &'a Q8Activations,
) -> impl Iterator<Item = (&'a [u8; B], &'a [Q8Block; N])> {
    let weights = row
        .chunks_exact(B)
        .map(|b| b.try_into().expect("B-byte chunk"));
    let acts = act.blocks().chunks_exact(N);
    weights.zip(acts.map(|a| a.try_into().expect("N-block chunk")))
}

/// The f16 at byte `i` of `b` as f32, without branches, for the SIMD kernels: its exponent and
/// mantissa moved into an f32's places and rebased by 2^112, exact for every normal and
/// subnormal half. (wasm has no f16 conversion instruction; aarch64's is behind unstable
/// intrinsics; `half`'s portable conversion branches on the exponent and cost more than the
/// block's dot product. x86's F16C converts a vector, and LLVM fills it with `vpinsrw` into
/// whatever register is free, often the accumulator: that chained every block to the
/// previous block's FMA, and a 4096-value Q4_0 row took 450 ns instead of 190.) An infinite or NaN scale, which no valid block holds, becomes a
/// large finite value instead.
#[cfg(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    all(target_arch = "wasm32", target_feature = "simd128")
))]
fn f16_at(b: &[u8], i: usize) -> f32 {
    let h = u16::from_le_bytes([b[i], b[i + 1]]) as u32;
    let magnitude = f32::from_bits((h & 0x7fff) << 13) * f32::from_bits(0x7780_0000);
    f32::from_bits(magnitude.to_bits() | (h & 0x8000) << 16)
}

fn unsupported(ty: GgmlType) -> Error {
    Error::InvalidArgument(format!("dot {ty}: no CPU kernel for this type"))
}

fn scalar_kernel(ty: GgmlType) -> Option<Kernel> {
    use GgmlType::*;
    Some(match ty {
        F32 => scalar::f32_row,
        F16 => scalar::f16_row,
        BF16 => scalar::bf16_row,
        Q4_0 => scalar::q4_0,
        Q4_1 => scalar::q4_1,
        Q5_0 => scalar::q5_0,
        Q5_1 => scalar::q5_1,
        Q8_0 => scalar::q8_0,
        Q2_K => scalar::q2_k,
        Q3_K => scalar::q3_k,
        Q4_K => scalar::q4_k,
        Q5_K => scalar::q5_k,
        Q6_K => scalar::q6_k,
        IQ4_NL => scalar::iq4_nl,
        IQ4_XS => scalar::iq4_xs,
        _ => return None,
    })
}

#[cfg(target_arch = "x86_64")]
fn simd_kernel(ty: GgmlType) -> Option<(Kernel, &'static str)> {
    avx2::kernel(ty).map(|k| (k, "avx2"))
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn simd_kernel(ty: GgmlType) -> Option<(Kernel, &'static str)> {
    simd128::kernel(ty).map(|k| (k, "simd128"))
}

#[cfg(target_arch = "aarch64")]
fn simd_kernel(ty: GgmlType) -> Option<(Kernel, &'static str)> {
    neon::kernel(ty).map(|k| (k, "neon"))
}

#[cfg(not(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    all(target_arch = "wasm32", target_feature = "simd128")
)))]
fn simd_kernel(_: GgmlType) -> Option<(Kernel, &'static str)> {
    None
}

//! AVX2 + FMA (+ F16C) kernels (x86-64, chosen at run time): the scalar kernels' sums, 32 values per
//! instruction. The core step is ggml's: weights and activations as 32 i8 each, `maddubs`
//! (u8 x i8 -> pairs summed into i16) then `madd` with ones (-> 8 i32), converted to f32 and
//! multiply-added with the block's two scales. `maddubs` wants an unsigned left side, so a
//! signed weight gives its sign to the activation (`sign`) and its magnitude to the left; no
//! i16 pair can saturate since |w| <= 127 and |x| <= 127.
//!
//! Float rows (F32, F16 by F16C, BF16) are dotted with the f32 activations, 8 values per FMA.
//! Q2_K and Q3_K run the scalar kernels.

use std::arch::x86_64::*;
use std::sync::LazyLock;

use super::{blocks, f16_at, Kernel};
use crate::cpu::q8::{Q8Activations, Q8Block};
use crate::quant::{scale_min_k4, GgmlType, IQ4_VALUES};

static DETECTED: LazyLock<bool> = LazyLock::new(|| {
    is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c")
});

/// The AVX2 kernel for `ty`, if this CPU has AVX2, FMA and F16C (every AVX2 CPU has) and the
/// type has one.
pub(super) fn kernel(ty: GgmlType) -> Option<Kernel> {
    if !*DETECTED {
        return None;
    }
    // SAFETY (every use): the kernel is handed out only once the CPU is known to have AVX2,
    // FMA and F16C; the kernels read memory only through slices of checked length.
    macro_rules! safe {
        ($f:ident) => {
            (|row: &[u8], act: &Q8Activations| unsafe { $f(row, act) }) as Kernel
        };
    }
    simd_kernels!(ty, safe)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
}

/// 32 bytes from the start of `b` (at least 32 long).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load32(b: &[u8]) -> __m256i {
    assert!(b.len() >= 32);
    _mm256_loadu_si256(b.as_ptr().cast())
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load16(b: &[u8]) -> __m128i {
    assert!(b.len() >= 16);
    _mm_loadu_si128(b.as_ptr().cast())
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn act_qs(a: &Q8Block) -> __m256i {
    _mm256_loadu_si256(a.qs.as_ptr().cast())
}

/// Σ w x in 8 i32 lanes, w unsigned (u8), x signed.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_u8(w: __m256i, x: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), _mm256_set1_epi16(1))
}

/// Σ w x in 8 i32 lanes, both signed.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_i8(w: __m256i, x: __m256i) -> __m256i {
    dot_u8(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w))
}

/// acc + scale * lanes, the i32 lanes converted to f32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn fma(scale: f32, lanes: __m256i, acc: __m256) -> __m256 {
    _mm256_fmadd_ps(_mm256_set1_ps(scale), _mm256_cvtepi32_ps(lanes), acc)
}

/// 16 bytes of nibbles as 32 bytes in Q4 element order: the low nibbles (elements 0..16) in
/// the lower half, the high nibbles (16..32) in the upper half.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn nibbles(qs: &[u8]) -> __m256i {
    let q = load16(qs);
    let both = _mm256_set_m128i(_mm_srli_epi16::<4>(q), q);
    _mm256_and_si256(both, _mm256_set1_epi8(0xF))
}

/// Bit j of `bits` as byte j: 0xFF where set, 0 where clear (the Q5 fifth bits).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn bit_bytes(bits: u32) -> __m256i {
    // Byte j takes byte j / 8 of `bits` (each 128-bit half holds all four), then tests
    // bit j % 8 of it.
    let spread = _mm256_shuffle_epi8(
        _mm256_set1_epi32(bits as i32),
        _mm256_set_epi64x(
            0x0303_0303_0303_0303,
            0x0202_0202_0202_0202,
            0x0101_0101_0101_0101,
            0,
        ),
    );
    let bit = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
    _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit)
}

/// The IQ4 grid values of 16 bytes of nibbles, in Q4 element order (see `nibbles`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn iq4_values(qs: &[u8]) -> __m256i {
    let grid = _mm_loadu_si128(IQ4_VALUES.as_ptr().cast());
    let q = load16(qs);
    let mask = _mm_set1_epi8(0xF);
    let low = _mm_shuffle_epi8(grid, _mm_and_si128(q, mask));
    let high = _mm_shuffle_epi8(grid, _mm_and_si128(_mm_srli_epi16::<4>(q), mask));
    _mm256_set_m128i(high, low)
}

/// Σ w x over a float row of `W` bytes per value: 8 values per FMA (`load8` decodes them from
/// `8 W` bytes) in two accumulators, so two FMAs are in flight; the last values one by one.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn float_row<const W: usize>(
    row: &[u8],
    x: &[f32],
    load8: impl Fn(&[u8]) -> __m256,
    one: impl Fn(&[u8]) -> f32,
) -> f32 {
    let (mut a0, mut a1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    let whole = x.len() / 16 * 16;
    for i in (0..whole).step_by(16) {
        let x0 = _mm256_loadu_ps(x[i..i + 8].as_ptr());
        let x1 = _mm256_loadu_ps(x[i + 8..i + 16].as_ptr());
        a0 = _mm256_fmadd_ps(load8(&row[W * i..W * (i + 8)]), x0, a0);
        a1 = _mm256_fmadd_ps(load8(&row[W * (i + 8)..W * (i + 16)]), x1, a1);
    }
    let tail = (whole..x.len()).map(|i| one(&row[W * i..W * (i + 1)]) * x[i]);
    hsum(_mm256_add_ps(a0, a1)) + tail.sum::<f32>()
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn f32_row(row: &[u8], act: &Q8Activations) -> f32 {
    float_row::<4>(
        row,
        act.values(),
        |b| _mm256_loadu_ps(b[..32].as_ptr().cast()),
        |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
    )
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn f16_row(row: &[u8], act: &Q8Activations) -> f32 {
    float_row::<2>(
        row,
        act.values(),
        |b| _mm256_cvtph_ps(load16(b)),
        |b| f16_at(b, 0),
    )
}

/// A bf16 is the top half of an f32.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn bf16_row(row: &[u8], act: &Q8Activations) -> f32 {
    float_row::<2>(
        row,
        act.values(),
        |b| _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(load16(b)))),
        |b| f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16),
    )
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4_0(row: &[u8], act: &Q8Activations) -> f32 {
    let mut acc = _mm256_setzero_ps();
    for (b, [a]) in blocks::<18, 1>(row, act) {
        let w = _mm256_sub_epi8(nibbles(&b[2..]), _mm256_set1_epi8(8));
        acc = fma(f16_at(b, 0) * a.d, dot_i8(w, act_qs(a)), acc);
    }
    hsum(acc)
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4_1(row: &[u8], act: &Q8Activations) -> f32 {
    let (mut acc, mut mins) = (_mm256_setzero_ps(), 0.0);
    for (b, [a]) in blocks::<20, 1>(row, act) {
        acc = fma(f16_at(b, 0) * a.d, dot_u8(nibbles(&b[4..]), act_qs(a)), acc);
        mins += f16_at(b, 2) * a.sum;
    }
    hsum(acc) + mins
}

/// Q5_0: a clear fifth bit means q - 16 < 0, so the weight byte is the nibble with its top
/// four bits set (the nibble minus 16 as i8); a set bit leaves the nibble.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q5_0(row: &[u8], act: &Q8Activations) -> f32 {
    let mut acc = _mm256_setzero_ps();
    for (b, [a]) in blocks::<22, 1>(row, act) {
        let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
        let negative = _mm256_andnot_si256(bit_bytes(qh), _mm256_set1_epi8(0xF0u8 as i8));
        let w = _mm256_or_si256(nibbles(&b[6..]), negative);
        acc = fma(f16_at(b, 0) * a.d, dot_i8(w, act_qs(a)), acc);
    }
    hsum(acc)
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q5_1(row: &[u8], act: &Q8Activations) -> f32 {
    let (mut acc, mut mins) = (_mm256_setzero_ps(), 0.0);
    for (b, [a]) in blocks::<24, 1>(row, act) {
        let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
        let high = _mm256_and_si256(bit_bytes(qh), _mm256_set1_epi8(0x10));
        let w = _mm256_or_si256(nibbles(&b[8..]), high);
        acc = fma(f16_at(b, 0) * a.d, dot_u8(w, act_qs(a)), acc);
        mins += f16_at(b, 2) * a.sum;
    }
    hsum(acc) + mins
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q8_0(row: &[u8], act: &Q8Activations) -> f32 {
    let mut acc = _mm256_setzero_ps();
    for (b, [a]) in blocks::<34, 1>(row, act) {
        acc = fma(f16_at(b, 0) * a.d, dot_i8(load32(&b[2..]), act_qs(a)), acc);
    }
    hsum(acc)
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn iq4_nl(row: &[u8], act: &Q8Activations) -> f32 {
    let mut acc = _mm256_setzero_ps();
    for (b, [a]) in blocks::<18, 1>(row, act) {
        acc = fma(
            f16_at(b, 0) * a.d,
            dot_i8(iq4_values(&b[2..]), act_qs(a)),
            acc,
        );
    }
    hsum(acc)
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn iq4_xs(row: &[u8], act: &Q8Activations) -> f32 {
    let mut acc = _mm256_setzero_ps();
    for (b, a) in blocks::<136, 8>(row, act) {
        let d = f16_at(b, 0);
        for (g, a) in a.iter().enumerate() {
            let w = iq4_values(&b[8 + 16 * g..]);
            let scale = d * super::scalar::iq4_xs_scale(b, g) as f32 * a.d;
            acc = fma(scale, dot_i8(w, act_qs(a)), acc);
        }
    }
    hsum(acc)
}

/// Q4_K/Q5_K: group g's 32 weights (unsigned) come from `group(b, g)`; the mins are summed
/// apart, as dmin * Σ_g m_g * sum_g.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn k4_row<const B: usize>(
    row: &[u8],
    act: &Q8Activations,
    group: impl Fn(&[u8; B], usize) -> __m256i,
) -> f32 {
    let (mut acc, mut mins) = (_mm256_setzero_ps(), 0.0);
    for (b, a) in blocks::<B, 8>(row, act) {
        let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
        let mut block_mins = 0.0;
        for (g, a) in a.iter().enumerate() {
            let (sc, m) = scale_min_k4(g, &b[4..16]);
            acc = fma(d * sc as f32 * a.d, dot_u8(group(b, g), act_qs(a)), acc);
            block_mins += m as f32 * a.sum;
        }
        mins += dmin * block_mins;
    }
    hsum(acc) - mins
}

/// Nibble g % 2 of the 32 bytes of group pair g / 2.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn k4_nibbles(qs: &[u8], g: usize) -> __m256i {
    let q = load32(&qs[32 * (g / 2)..]);
    let q = if g % 2 == 0 {
        q
    } else {
        _mm256_srli_epi16::<4>(q)
    };
    _mm256_and_si256(q, _mm256_set1_epi8(0xF))
}

/// Bits `shift..shift + width` of each byte of `v`, as the low bits of the byte.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn byte_bits(v: __m256i, shift: usize, mask: i8) -> __m256i {
    // A 16-bit shift moves bits across bytes, but only into the bits the mask drops.
    let shifted = _mm256_srl_epi16(v, _mm_cvtsi64_si128(shift as i64));
    _mm256_and_si256(shifted, _mm256_set1_epi8(mask))
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4_k(row: &[u8], act: &Q8Activations) -> f32 {
    k4_row::<144>(row, act, |b, g| k4_nibbles(&b[16..], g))
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q5_k(row: &[u8], act: &Q8Activations) -> f32 {
    k4_row::<176>(row, act, |b, g| {
        let high = _mm256_slli_epi16::<4>(byte_bits(load32(&b[16..48]), g, 1));
        _mm256_or_si256(k4_nibbles(&b[48..], g), high)
    })
}

/// Q6_K (walk in scalar.rs): weights q - 32 as i8; the two 16-value halves of an activation
/// block have their own scales, applied to the i16 pair sums by `madd`.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q6_k(row: &[u8], act: &Q8Activations) -> f32 {
    let mut acc = _mm256_setzero_ps();
    for (b, a) in blocks::<210, 8>(row, act) {
        let d = f16_at(b, 208);
        for (i, a) in a.iter().enumerate() {
            let (n, k) = (i / 4, i % 4);
            let low = byte_bits(load32(&b[64 * n + 32 * (k % 2)..]), 4 * (k / 2), 0xF);
            let high = byte_bits(load32(&b[128 + 32 * n..]), 2 * k, 3);
            let q = _mm256_or_si256(low, _mm256_slli_epi16::<4>(high));
            let w = _mm256_sub_epi8(q, _mm256_set1_epi8(32));
            let x = act_qs(a);
            let pairs = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
            let s = &b[192 + 8 * n + 2 * k..];
            let scales = _mm256_set_m128i(
                _mm_set1_epi16(s[1] as i8 as i16),
                _mm_set1_epi16(s[0] as i8 as i16),
            );
            acc = fma(d * a.d, _mm256_madd_epi16(pairs, scales), acc);
        }
    }
    hsum(acc)
}

//! aarch64 NEON kernels (NEON is part of every aarch64 CPU, so no detection is needed): the
//! scalar kernels' sums, 16 values per instruction, laid out like `simd128.rs`. The core step
//! multiplies 8 i8 pairs into i16 (`vmull_s8`, which cannot overflow: |w x| <= 127 * 128) and
//! adds neighbouring i16 pairs into 4 i32 lanes (`vpaddlq_s16` / `vpadalq_s16`). The
//! `dotprod` extension's `sdot` would do both in one instruction, but not every aarch64 CPU
//! has it and the kernels are bound by memory at decode, so the baseline set serves all.
//!
//! Float rows (F32, F16, BF16) are dotted with the f32 activations, 4 values per FMA. Q2_K and
//! Q3_K run the scalar kernels.

use std::arch::aarch64::*;

use super::{blocks, f16_at, Kernel};
use crate::cpu::q8::{Q8Activations, Q8Block};
use crate::quant::{scale_min_k4, GgmlType, IQ4_VALUES};

/// The NEON kernel for `ty`, if the type has one.
pub(super) fn kernel(ty: GgmlType) -> Option<Kernel> {
    // SAFETY (every use): NEON is part of the aarch64 baseline, so every CPU this code runs
    // on has the feature the kernels are compiled for; they read memory only through slices
    // of checked length.
    macro_rules! safe {
        ($f:ident) => {
            (|row: &[u8], act: &Q8Activations| unsafe { $f(row, act) }) as Kernel
        };
    }
    simd_kernels!(ty, safe)
}

/// 16 bytes from the start of `b` (at least 16 long).
#[target_feature(enable = "neon")]
fn load(b: &[u8]) -> uint8x16_t {
    assert!(b.len() >= 16);
    // SAFETY: 16 bytes are readable (checked above); vld1q needs no alignment.
    unsafe { vld1q_u8(b.as_ptr()) }
}

/// A 32-value block as two vectors of bytes (read as i8 or u8 as the type wants).
type V32 = [uint8x16_t; 2];

#[target_feature(enable = "neon")]
fn load32(b: &[u8]) -> V32 {
    [load(b), load(&b[16..])]
}

#[target_feature(enable = "neon")]
fn act_qs(a: &Q8Block) -> V32 {
    load32(bytemuck::cast_slice(&a.qs))
}

#[target_feature(enable = "neon")]
fn map(v: V32, f: impl Fn(uint8x16_t) -> uint8x16_t) -> V32 {
    [f(v[0]), f(v[1])]
}

/// Σ w x of 16 i8 pairs, in 4 i32 lanes.
#[target_feature(enable = "neon")]
fn dot16(w: uint8x16_t, x: uint8x16_t) -> int32x4_t {
    let (w, x) = (vreinterpretq_s8_u8(w), vreinterpretq_s8_u8(x));
    let low = vmull_s8(vget_low_s8(w), vget_low_s8(x));
    vpadalq_s16(vpaddlq_s16(low), vmull_high_s8(w, x))
}

#[target_feature(enable = "neon")]
fn dot32(w: V32, x: V32) -> int32x4_t {
    vaddq_s32(dot16(w[0], x[0]), dot16(w[1], x[1]))
}

/// acc + scale * lanes, the i32 lanes converted to f32.
#[target_feature(enable = "neon")]
fn fma(scale: f32, lanes: int32x4_t, acc: float32x4_t) -> float32x4_t {
    vfmaq_n_f32(acc, vcvtq_f32_s32(lanes), scale)
}

#[target_feature(enable = "neon")]
fn hsum(v: float32x4_t) -> f32 {
    vaddvq_f32(v)
}

#[target_feature(enable = "neon")]
fn splat(b: u8) -> uint8x16_t {
    vdupq_n_u8(b)
}

/// 16 bytes of nibbles in Q4 element order: low nibbles (elements 0..16), then high.
#[target_feature(enable = "neon")]
fn nibbles(qs: &[u8]) -> V32 {
    let q = load(qs);
    [vandq_u8(q, splat(0xF)), vshrq_n_u8::<4>(q)]
}

/// Bit j of `bits` as byte j of the 32: 0xFF where set, 0 where clear (the Q5 fifth bits).
#[target_feature(enable = "neon")]
fn bit_bytes(bits: u32) -> V32 {
    let all = vreinterpretq_u8_u32(vdupq_n_u32(bits));
    let bit = vreinterpretq_u8_u64(vdupq_n_u64(0x8040_2010_0804_0201));
    // Byte j takes byte j / 8 of `bits`, then tests bit j % 8 of it.
    let spread = |first: u8| {
        let index = vcombine_u8(vdup_n_u8(first), vdup_n_u8(first + 1));
        vtstq_u8(vqtbl1q_u8(all, index), bit)
    };
    [spread(0), spread(2)]
}

#[target_feature(enable = "neon")]
fn iq4_values(qs: &[u8]) -> V32 {
    let grid = load(bytemuck::cast_slice(&IQ4_VALUES));
    map(nibbles(qs), |q| vqtbl1q_u8(grid, q))
}

/// Bits `shift..` of each byte of the 32 at `b`, masked by `mask`.
#[target_feature(enable = "neon")]
fn byte_bits(b: &[u8], shift: usize, mask: u8) -> V32 {
    // A negative count shifts right.
    let right = vdupq_n_s8(-(shift as i8));
    map(load32(b), |v| vandq_u8(vshlq_u8(v, right), splat(mask)))
}

/// 8 floats of a row or of the activations as two vectors.
type F8 = [float32x4_t; 2];

/// Σ w x over a float row of `W` bytes per value: 8 values a step (`load8` decodes them from
/// `8 W` bytes) in two accumulators; the last values one by one.
#[target_feature(enable = "neon")]
fn float_row<const W: usize>(
    row: &[u8],
    x: &[f32],
    load8: impl Fn(&[u8]) -> F8,
    one: impl Fn(&[u8]) -> f32,
) -> f32 {
    let mut acc = [vdupq_n_f32(0.0); 2];
    let whole = x.len() / 8 * 8;
    for i in (0..whole).step_by(8) {
        let w = load8(&row[W * i..W * (i + 8)]);
        let x = load32(bytemuck::cast_slice(&x[i..i + 8])).map(|v| vreinterpretq_f32_u8(v));
        for h in 0..2 {
            acc[h] = vfmaq_f32(acc[h], w[h], x[h]);
        }
    }
    let tail = (whole..x.len()).map(|i| one(&row[W * i..W * (i + 1)]) * x[i]);
    hsum(vaddq_f32(acc[0], acc[1])) + tail.sum::<f32>()
}

/// 8 u16 (16 bytes) as two u32x4.
#[target_feature(enable = "neon")]
fn widen_halves(b: &[u8]) -> [uint32x4_t; 2] {
    let h = vreinterpretq_u16_u8(load(b));
    [vmovl_u16(vget_low_u16(h)), vmovl_high_u16(h)]
}

#[target_feature(enable = "neon")]
fn f32_row(row: &[u8], act: &Q8Activations) -> f32 {
    float_row::<4>(
        row,
        act.values(),
        |b| load32(b).map(|v| vreinterpretq_f32_u8(v)),
        |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
    )
}

/// Halves converted by the bit moves of `f16_at`, four at a time.
#[target_feature(enable = "neon")]
fn f16_row(row: &[u8], act: &Q8Activations) -> f32 {
    let convert = |h: uint32x4_t| {
        let magnitude = vandq_u32(vshlq_n_u32::<13>(h), vdupq_n_u32(0x0fff_e000));
        let magnitude = vmulq_n_f32(
            vreinterpretq_f32_u32(magnitude),
            f32::from_bits(0x7780_0000),
        );
        let sign = vandq_u32(vshlq_n_u32::<16>(h), vdupq_n_u32(0x8000_0000));
        vreinterpretq_f32_u32(vorrq_u32(vreinterpretq_u32_f32(magnitude), sign))
    };
    float_row::<2>(
        row,
        act.values(),
        |b| widen_halves(b).map(convert),
        |b| f16_at(b, 0),
    )
}

/// A bf16 is the top half of an f32.
#[target_feature(enable = "neon")]
fn bf16_row(row: &[u8], act: &Q8Activations) -> f32 {
    float_row::<2>(
        row,
        act.values(),
        |b| widen_halves(b).map(|h| vreinterpretq_f32_u32(vshlq_n_u32::<16>(h))),
        |b| f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16),
    )
}

#[target_feature(enable = "neon")]
fn q4_0(row: &[u8], act: &Q8Activations) -> f32 {
    let mut acc = vdupq_n_f32(0.0);
    for (b, [a]) in blocks::<18, 1>(row, act) {
        let w = map(nibbles(&b[2..]), |q| vsubq_u8(q, splat(8)));
        acc = fma(f16_at(b, 0) * a.d, dot32(w, act_qs(a)), acc);
    }
    hsum(acc)
}

#[target_feature(enable = "neon")]
fn q4_1(row: &[u8], act: &Q8Activations) -> f32 {
    let (mut acc, mut mins) = (vdupq_n_f32(0.0), 0.0);
    for (b, [a]) in blocks::<20, 1>(row, act) {
        // Nibbles are at most 15: as i8 they read the same as u8.
        acc = fma(f16_at(b, 0) * a.d, dot32(nibbles(&b[4..]), act_qs(a)), acc);
        mins += f16_at(b, 2) * a.sum;
    }
    hsum(acc) + mins
}

/// Q5_0: a clear fifth bit means q - 16 < 0: the nibble with its top four bits set.
#[target_feature(enable = "neon")]
fn q5_0(row: &[u8], act: &Q8Activations) -> f32 {
    let mut acc = vdupq_n_f32(0.0);
    for (b, [a]) in blocks::<22, 1>(row, act) {
        let bits = bit_bytes(u32::from_le_bytes([b[2], b[3], b[4], b[5]]));
        let q = nibbles(&b[6..]);
        let negative = |i: usize| vbicq_u8(splat(0xF0), bits[i]);
        let w = [vorrq_u8(q[0], negative(0)), vorrq_u8(q[1], negative(1))];
        acc = fma(f16_at(b, 0) * a.d, dot32(w, act_qs(a)), acc);
    }
    hsum(acc)
}

#[target_feature(enable = "neon")]
fn q5_1(row: &[u8], act: &Q8Activations) -> f32 {
    let (mut acc, mut mins) = (vdupq_n_f32(0.0), 0.0);
    for (b, [a]) in blocks::<24, 1>(row, act) {
        let bits = bit_bytes(u32::from_le_bytes([b[4], b[5], b[6], b[7]]));
        let q = nibbles(&b[8..]);
        let high = |i: usize| vandq_u8(bits[i], splat(0x10));
        let w = [vorrq_u8(q[0], high(0)), vorrq_u8(q[1], high(1))];
        acc = fma(f16_at(b, 0) * a.d, dot32(w, act_qs(a)), acc);
        mins += f16_at(b, 2) * a.sum;
    }
    hsum(acc) + mins
}

#[target_feature(enable = "neon")]
fn q8_0(row: &[u8], act: &Q8Activations) -> f32 {
    let mut acc = vdupq_n_f32(0.0);
    for (b, [a]) in blocks::<34, 1>(row, act) {
        acc = fma(f16_at(b, 0) * a.d, dot32(load32(&b[2..]), act_qs(a)), acc);
    }
    hsum(acc)
}

#[target_feature(enable = "neon")]
fn iq4_nl(row: &[u8], act: &Q8Activations) -> f32 {
    let mut acc = vdupq_n_f32(0.0);
    for (b, [a]) in blocks::<18, 1>(row, act) {
        let w = iq4_values(&b[2..]);
        acc = fma(f16_at(b, 0) * a.d, dot32(w, act_qs(a)), acc);
    }
    hsum(acc)
}

#[target_feature(enable = "neon")]
fn iq4_xs(row: &[u8], act: &Q8Activations) -> f32 {
    let mut acc = vdupq_n_f32(0.0);
    for (b, a) in blocks::<136, 8>(row, act) {
        let d = f16_at(b, 0);
        for (g, a) in a.iter().enumerate() {
            let w = iq4_values(&b[8 + 16 * g..]);
            let scale = d * super::scalar::iq4_xs_scale(b, g) as f32 * a.d;
            acc = fma(scale, dot32(w, act_qs(a)), acc);
        }
    }
    hsum(acc)
}

/// Q4_K/Q5_K: group g's 32 weights come from `group(b, g)`; the mins are summed apart.
#[target_feature(enable = "neon")]
fn k4_row<const B: usize>(
    row: &[u8],
    act: &Q8Activations,
    group: impl Fn(&[u8; B], usize) -> V32,
) -> f32 {
    let (mut acc, mut mins) = (vdupq_n_f32(0.0), 0.0);
    for (b, a) in blocks::<B, 8>(row, act) {
        let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
        let mut block_mins = 0.0;
        for (g, a) in a.iter().enumerate() {
            let (sc, m) = scale_min_k4(g, &b[4..16]);
            acc = fma(d * sc as f32 * a.d, dot32(group(b, g), act_qs(a)), acc);
            block_mins += m as f32 * a.sum;
        }
        mins += dmin * block_mins;
    }
    hsum(acc) - mins
}

#[target_feature(enable = "neon")]
fn q4_k(row: &[u8], act: &Q8Activations) -> f32 {
    k4_row::<144>(row, act, |b, g| {
        byte_bits(&b[16 + 32 * (g / 2)..], 4 * (g % 2), 0xF)
    })
}

#[target_feature(enable = "neon")]
fn q5_k(row: &[u8], act: &Q8Activations) -> f32 {
    k4_row::<176>(row, act, |b, g| {
        let low = byte_bits(&b[48 + 32 * (g / 2)..], 4 * (g % 2), 0xF);
        let high = byte_bits(&b[16..48], g, 1);
        [0, 1].map(|i| vorrq_u8(low[i], vshlq_n_u8::<4>(high[i])))
    })
}

/// Q6_K (walk in scalar.rs): weights q - 32 as i8; each 16-value half has its own scale.
#[target_feature(enable = "neon")]
fn q6_k(row: &[u8], act: &Q8Activations) -> f32 {
    let mut acc = vdupq_n_f32(0.0);
    for (b, a) in blocks::<210, 8>(row, act) {
        let d = f16_at(b, 208);
        for (i, a) in a.iter().enumerate() {
            let (n, k) = (i / 4, i % 4);
            let low = byte_bits(&b[64 * n + 32 * (k % 2)..], 4 * (k / 2), 0xF);
            let high = byte_bits(&b[128 + 32 * n..], 2 * k, 3);
            let x = act_qs(a);
            let s = &b[192 + 8 * n + 2 * k..];
            let mut sum = vdupq_n_s32(0);
            for h in 0..2 {
                let q = vorrq_u8(low[h], vshlq_n_u8::<4>(high[h]));
                let half = dot16(vsubq_u8(q, splat(32)), x[h]);
                sum = vmlaq_n_s32(sum, half, s[h] as i8 as i32);
            }
            acc = fma(d * a.d, sum, acc);
        }
    }
    hsum(acc)
}

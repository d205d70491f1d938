//! wasm32 SIMD128 kernels (compiled when the crate is built with `+simd128`, which every
//! current browser runs): the scalar kernels' sums, 16 values per instruction. SIMD128 has no
//! 8-bit multiply-add, so 16 i8 pairs widen to i16 and `i32x4_dot_i16x8` sums them in pairs.
//!
//! Float rows (F32, F16, BF16) are dotted with the f32 activations, 4 values per multiply-add.
//! Q2_K and Q3_K run the scalar kernels.

use core::arch::wasm32::*;

use super::{blocks, f16_at, Kernel};
use crate::cpu::q8::{Q8Activations, Q8Block};
use crate::quant::{scale_min_k4, GgmlType, IQ4_VALUES};

/// The SIMD128 kernel for `ty`, if the type has one.
pub(super) fn kernel(ty: GgmlType) -> Option<Kernel> {
    macro_rules! plain {
        ($f:ident) => {
            $f as Kernel
        };
    }
    simd_kernels!(ty, plain)
}

/// 16 bytes from the start of `b` (at least 16 long).
fn load(b: &[u8]) -> v128 {
    assert!(b.len() >= 16);
    // SAFETY: 16 bytes are readable (checked above); v128_load needs no alignment.
    unsafe { v128_load(b.as_ptr().cast()) }
}

/// A 32-value block of i8 as two vectors.
type V32 = [v128; 2];

fn load32(b: &[u8]) -> V32 {
    [load(b), load(&b[16..])]
}

fn act_qs(a: &Q8Block) -> V32 {
    load32(bytemuck::cast_slice(&a.qs))
}

/// Σ w x of 16 i8 pairs, in 4 i32 lanes.
fn dot16(w: v128, x: v128) -> v128 {
    let low = i32x4_dot_i16x8(i16x8_extend_low_i8x16(w), i16x8_extend_low_i8x16(x));
    let high = i32x4_dot_i16x8(i16x8_extend_high_i8x16(w), i16x8_extend_high_i8x16(x));
    i32x4_add(low, high)
}

fn dot32(w: V32, x: V32) -> v128 {
    i32x4_add(dot16(w[0], x[0]), dot16(w[1], x[1]))
}

/// acc + scale * lanes, the i32 lanes converted to f32.
fn fma(scale: f32, lanes: v128, acc: v128) -> v128 {
    f32x4_add(
        acc,
        f32x4_mul(f32x4_splat(scale), f32x4_convert_i32x4(lanes)),
    )
}

fn hsum(v: v128) -> f32 {
    f32x4_extract_lane::<0>(v)
        + f32x4_extract_lane::<1>(v)
        + f32x4_extract_lane::<2>(v)
        + f32x4_extract_lane::<3>(v)
}

/// 16 bytes of nibbles in Q4 element order: low nibbles (elements 0..16), then high.
fn nibbles(qs: &[u8]) -> V32 {
    let q = load(qs);
    [v128_and(q, u8x16_splat(0xF)), u8x16_shr(q, 4)]
}

fn map(v: V32, f: impl Fn(v128) -> v128) -> V32 {
    [f(v[0]), f(v[1])]
}

/// Bit j of `bits` as byte j of the 32: 0xFF where set, 0 where clear (the Q5 fifth bits).
fn bit_bytes(bits: u32) -> V32 {
    let all = u32x4_splat(bits);
    let bit = u64x2_splat(0x8040_2010_0804_0201);
    let spread = |first: u8| {
        let index = u8x16(
            first,
            first,
            first,
            first,
            first,
            first,
            first,
            first, //
            first + 1,
            first + 1,
            first + 1,
            first + 1,
            first + 1,
            first + 1,
            first + 1,
            first + 1,
        );
        i8x16_eq(v128_and(i8x16_swizzle(all, index), bit), bit)
    };
    [spread(0), spread(2)]
}

fn iq4_values(qs: &[u8]) -> V32 {
    let grid = load(bytemuck::cast_slice(&IQ4_VALUES));
    map(nibbles(qs), |q| i8x16_swizzle(grid, q))
}

/// Σ w x over a float row of `W` bytes per value: 8 values a step (`load8` decodes them from
/// `8 W` bytes into two vectors) in two accumulators; the last values one by one.
fn float_row<const W: usize>(
    row: &[u8],
    x: &[f32],
    load8: impl Fn(&[u8]) -> V32,
    one: impl Fn(&[u8]) -> f32,
) -> f32 {
    let mut acc = [f32x4_splat(0.0); 2];
    let whole = x.len() / 8 * 8;
    for i in (0..whole).step_by(8) {
        let w = load8(&row[W * i..W * (i + 8)]);
        let x = load32(bytemuck::cast_slice(&x[i..i + 8]));
        for h in 0..2 {
            acc[h] = f32x4_add(acc[h], f32x4_mul(w[h], x[h]));
        }
    }
    let tail = (whole..x.len()).map(|i| one(&row[W * i..W * (i + 1)]) * x[i]);
    hsum(f32x4_add(acc[0], acc[1])) + tail.sum::<f32>()
}

/// 8 halves (16 bytes) as two f32x4, by the bit moves of `f16_at`.
fn halves_to_f32(b: &[u8]) -> V32 {
    let h = load(b);
    [u32x4_extend_low_u16x8(h), u32x4_extend_high_u16x8(h)].map(|h| {
        let magnitude = v128_and(i32x4_shl(h, 13), u32x4_splat(0x0fff_e000));
        let magnitude = f32x4_mul(magnitude, f32x4_splat(f32::from_bits(0x7780_0000)));
        v128_or(
            magnitude,
            v128_and(i32x4_shl(h, 16), u32x4_splat(0x8000_0000)),
        )
    })
}

fn f32_row(row: &[u8], act: &Q8Activations) -> f32 {
    float_row::<4>(row, act.values(), load32, |b| {
        f32::from_le_bytes([b[0], b[1], b[2], b[3]])
    })
}

fn f16_row(row: &[u8], act: &Q8Activations) -> f32 {
    float_row::<2>(row, act.values(), halves_to_f32, |b| f16_at(b, 0))
}

/// A bf16 is the top half of an f32.
fn bf16_row(row: &[u8], act: &Q8Activations) -> f32 {
    float_row::<2>(
        row,
        act.values(),
        |b| {
            let h = load(b);
            [u32x4_extend_low_u16x8(h), u32x4_extend_high_u16x8(h)].map(|h| i32x4_shl(h, 16))
        },
        |b| f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16),
    )
}

fn q4_0(row: &[u8], act: &Q8Activations) -> f32 {
    let mut acc = f32x4_splat(0.0);
    for (b, [a]) in blocks::<18, 1>(row, act) {
        let w = map(nibbles(&b[2..]), |q| i8x16_sub(q, i8x16_splat(8)));
        acc = fma(f16_at(b, 0) * a.d, dot32(w, act_qs(a)), acc);
    }
    hsum(acc)
}

fn q4_1(row: &[u8], act: &Q8Activations) -> f32 {
    let (mut acc, mut mins) = (f32x4_splat(0.0), 0.0);
    for (b, [a]) in blocks::<20, 1>(row, act) {
        acc = fma(f16_at(b, 0) * a.d, dot32(nibbles(&b[4..]), act_qs(a)), acc);
        mins += f16_at(b, 2) * a.sum;
    }
    hsum(acc) + mins
}

/// Q5_0: a clear fifth bit means q - 16 < 0: the nibble with its top four bits set.
fn q5_0(row: &[u8], act: &Q8Activations) -> f32 {
    let mut acc = f32x4_splat(0.0);
    for (b, [a]) in blocks::<22, 1>(row, act) {
        let bits = bit_bytes(u32::from_le_bytes([b[2], b[3], b[4], b[5]]));
        let q = nibbles(&b[6..]);
        let negative = |i: usize| v128_andnot(u8x16_splat(0xF0), bits[i]);
        let w = [v128_or(q[0], negative(0)), v128_or(q[1], negative(1))];
        acc = fma(f16_at(b, 0) * a.d, dot32(w, act_qs(a)), acc);
    }
    hsum(acc)
}

fn q5_1(row: &[u8], act: &Q8Activations) -> f32 {
    let (mut acc, mut mins) = (f32x4_splat(0.0), 0.0);
    for (b, [a]) in blocks::<24, 1>(row, act) {
        let bits = bit_bytes(u32::from_le_bytes([b[4], b[5], b[6], b[7]]));
        let q = nibbles(&b[8..]);
        let high = |i: usize| v128_and(bits[i], u8x16_splat(0x10));
        let w = [v128_or(q[0], high(0)), v128_or(q[1], high(1))];
        acc = fma(f16_at(b, 0) * a.d, dot32(w, act_qs(a)), acc);
        mins += f16_at(b, 2) * a.sum;
    }
    hsum(acc) + mins
}

fn q8_0(row: &[u8], act: &Q8Activations) -> f32 {
    let mut acc = f32x4_splat(0.0);
    for (b, [a]) in blocks::<34, 1>(row, act) {
        acc = fma(f16_at(b, 0) * a.d, dot32(load32(&b[2..]), act_qs(a)), acc);
    }
    hsum(acc)
}

fn iq4_nl(row: &[u8], act: &Q8Activations) -> f32 {
    let mut acc = f32x4_splat(0.0);
    for (b, [a]) in blocks::<18, 1>(row, act) {
        acc = fma(
            f16_at(b, 0) * a.d,
            dot32(iq4_values(&b[2..]), act_qs(a)),
            acc,
        );
    }
    hsum(acc)
}

fn iq4_xs(row: &[u8], act: &Q8Activations) -> f32 {
    let mut acc = f32x4_splat(0.0);
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
fn k4_row<const B: usize>(
    row: &[u8],
    act: &Q8Activations,
    group: impl Fn(&[u8; B], usize) -> V32,
) -> f32 {
    let (mut acc, mut mins) = (f32x4_splat(0.0), 0.0);
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

/// Bits `shift..` of each byte of the 32 at `b`, masked by `mask`.
fn byte_bits(b: &[u8], shift: usize, mask: u8) -> V32 {
    map(load32(b), |v| {
        v128_and(u8x16_shr(v, shift as u32), u8x16_splat(mask))
    })
}

fn q4_k(row: &[u8], act: &Q8Activations) -> f32 {
    k4_row::<144>(row, act, |b, g| {
        byte_bits(&b[16 + 32 * (g / 2)..], 4 * (g % 2), 0xF)
    })
}

fn q5_k(row: &[u8], act: &Q8Activations) -> f32 {
    k4_row::<176>(row, act, |b, g| {
        let low = byte_bits(&b[48 + 32 * (g / 2)..], 4 * (g % 2), 0xF);
        let high = byte_bits(&b[16..48], g, 1);
        [0, 1].map(|i| v128_or(low[i], i8x16_shl(high[i], 4)))
    })
}

/// Q6_K (walk in scalar.rs): weights q - 32 as i8; each 16-value half has its own scale.
fn q6_k(row: &[u8], act: &Q8Activations) -> f32 {
    let mut acc = f32x4_splat(0.0);
    for (b, a) in blocks::<210, 8>(row, act) {
        let d = f16_at(b, 208);
        for (i, a) in a.iter().enumerate() {
            let (n, k) = (i / 4, i % 4);
            let low = byte_bits(&b[64 * n + 32 * (k % 2)..], 4 * (k / 2), 0xF);
            let high = byte_bits(&b[128 + 32 * n..], 2 * k, 3);
            let x = act_qs(a);
            let s = &b[192 + 8 * n + 2 * k..];
            let mut sum = i32x4_splat(0);
            for h in 0..2 {
                let q = v128_or(low[h], i8x16_shl(high[h], 4));
                let half = dot16(i8x16_sub(q, i8x16_splat(32)), x[h]);
                sum = i32x4_add(sum, i32x4_mul(half, i32x4_splat(s[h] as i8 as i32)));
            }
            acc = fma(d * a.d, sum, acc);
        }
    }
    hsum(acc)
}

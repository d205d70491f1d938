//! The readable kernels: one per weight type, integer arithmetic inside a block (weight quants
//! times activation quants, summed in i32) and one f32 multiply-add per block with the two
//! scales, as ggml's `ggml_vec_dot_*_q8_*` reference code does. The SIMD kernels compute the
//! same sums and are tested against these.
//!
//! Each kernel walks `row` in whole weight blocks beside the activation blocks they cover; the
//! caller (`dot/mod.rs`) has checked that the two cover the same values.

use super::blocks;
use crate::cpu::q8::{Q8Activations, QK8};
use crate::quant::{f16_at, q3_k_scale, scale_min_k4, IQ4_VALUES};

/// Σ w x over a float row, `W` bytes per value, in eight partial sums.
fn float_row<const W: usize>(row: &[u8], x: &[f32], decode: impl Fn(&[u8; W]) -> f32) -> f32 {
    let mut acc = [0f32; 8];
    let values = row
        .chunks_exact(W)
        .map(|b| decode(b.try_into().expect("W bytes")));
    for (i, (w, x)) in values.zip(x).enumerate() {
        acc[i % 8] += w * x;
    }
    acc.iter().sum()
}

pub(super) fn f32_row(row: &[u8], act: &Q8Activations) -> f32 {
    float_row(row, act.values(), |b: &[u8; 4]| f32::from_le_bytes(*b))
}

pub(super) fn f16_row(row: &[u8], act: &Q8Activations) -> f32 {
    float_row(row, act.values(), |b: &[u8; 2]| {
        half::f16::from_le_bytes(*b).to_f32()
    })
}

pub(super) fn bf16_row(row: &[u8], act: &Q8Activations) -> f32 {
    float_row(row, act.values(), |b: &[u8; 2]| {
        half::bf16::from_le_bytes(*b).to_f32()
    })
}

/// Σ over a 32-value block whose 16 bytes hold element j in the low nibble of `qs[j]` and
/// element j + 16 in the high nibble, each nibble mapped to its value by `value`.
fn nibble_block(qs: &[u8], a: &[i8; QK8], value: impl Fn(u8) -> i32) -> i32 {
    let mut sum = 0;
    for (j, &q) in qs.iter().enumerate() {
        sum += value(q & 0xF) * a[j] as i32 + value(q >> 4) * a[j + 16] as i32;
    }
    sum
}

pub(super) fn q4_0(row: &[u8], act: &Q8Activations) -> f32 {
    let mut acc = 0.0;
    for (b, [a]) in blocks::<18, 1>(row, act) {
        let sum = nibble_block(&b[2..], &a.qs, |q| q as i32 - 8);
        acc += f16_at(b, 0) * a.d * sum as f32;
    }
    acc
}

/// Value d * q + m: the m part of the block's dot is m * Σ x = m * `a.sum`.
pub(super) fn q4_1(row: &[u8], act: &Q8Activations) -> f32 {
    let mut acc = 0.0;
    for (b, [a]) in blocks::<20, 1>(row, act) {
        let sum = nibble_block(&b[4..], &a.qs, |q| q as i32);
        acc += f16_at(b, 0) * a.d * sum as f32 + f16_at(b, 2) * a.sum;
    }
    acc
}

/// Σ over a Q5 block: nibbles as `nibble_block`, fifth bit j of `qh` for element j, minus
/// `offset`.
fn q5_block(qh: u32, qs: &[u8], a: &[i8; QK8], offset: i32) -> i32 {
    let high = |j: usize| (((qh >> j) & 1) << 4) as i32;
    let mut sum = 0;
    for (j, &q) in qs.iter().enumerate() {
        let lo = (q & 0xF) as i32 | high(j);
        let hi = (q >> 4) as i32 | high(j + 16);
        sum += (lo - offset) * a[j] as i32 + (hi - offset) * a[j + 16] as i32;
    }
    sum
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

pub(super) fn q5_0(row: &[u8], act: &Q8Activations) -> f32 {
    let mut acc = 0.0;
    for (b, [a]) in blocks::<22, 1>(row, act) {
        let sum = q5_block(u32_at(b, 2), &b[6..], &a.qs, 16);
        acc += f16_at(b, 0) * a.d * sum as f32;
    }
    acc
}

pub(super) fn q5_1(row: &[u8], act: &Q8Activations) -> f32 {
    let mut acc = 0.0;
    for (b, [a]) in blocks::<24, 1>(row, act) {
        let sum = q5_block(u32_at(b, 4), &b[8..], &a.qs, 0);
        acc += f16_at(b, 0) * a.d * sum as f32 + f16_at(b, 2) * a.sum;
    }
    acc
}

pub(super) fn q8_0(row: &[u8], act: &Q8Activations) -> f32 {
    let mut acc = 0.0;
    for (b, [a]) in blocks::<34, 1>(row, act) {
        let sum: i32 = b[2..]
            .iter()
            .zip(&a.qs)
            .map(|(&w, &x)| w as i8 as i32 * x as i32)
            .sum();
        acc += f16_at(b, 0) * a.d * sum as f32;
    }
    acc
}

/// Σ q(i) x(i) over the two 16-value halves of an activation block, each half times its
/// scale: the shape of Q2_K/Q3_K/Q6_K, whose scales cover 16 values.
fn halves(a: &[i8; QK8], scales: [i32; 2], q: impl Fn(usize) -> i32) -> i32 {
    let mut sum = 0;
    for (h, scale) in scales.into_iter().enumerate() {
        let half: i32 = (16 * h..16 * h + 16).map(|i| q(i) * a[i] as i32).sum();
        sum += scale * half;
    }
    sum
}

/// Q2_K (layout in `quant.rs`): activation block 4n + j (n the 128-value half, j the shift)
/// reads value i from bits 2j of qs[32n + i], scale/min group 8n + 2j + i / 16.
/// Value (d * sc) * q - dmin * m.
pub(super) fn q2_k(row: &[u8], act: &Q8Activations) -> f32 {
    let mut acc = 0.0;
    for (b, a) in blocks::<84, 8>(row, act) {
        let (scales, qs) = (&b[..16], &b[16..80]);
        let (d, dmin) = (f16_at(b, 80), f16_at(b, 82));
        for (k, a) in a.iter().enumerate() {
            let (n, j) = (k / 4, k % 4);
            let g = 8 * n + 2 * j;
            let sc = [(scales[g] & 0xF) as i32, (scales[g + 1] & 0xF) as i32];
            let sum = halves(&a.qs, sc, |i| ((qs[32 * n + i] >> (2 * j)) & 3) as i32);
            let mins = halves(
                &a.qs,
                [(scales[g] >> 4) as i32, (scales[g + 1] >> 4) as i32],
                |_| 1,
            );
            acc += a.d * (d * sum as f32 - dmin * mins as f32);
        }
    }
    acc
}

/// Q3_K: the walk of Q2_K; the third bit of value i of activation block 4n + j is bit 4n + j
/// of hmask[i], and a clear bit subtracts 4. Value (d * (sc - 32)) * q.
pub(super) fn q3_k(row: &[u8], act: &Q8Activations) -> f32 {
    let mut acc = 0.0;
    for (b, a) in blocks::<110, 8>(row, act) {
        let (hmask, qs, packed) = (&b[..32], &b[32..96], &b[96..108]);
        let d = f16_at(b, 108);
        for (k, a) in a.iter().enumerate() {
            let (n, j) = (k / 4, k % 4);
            let g = 8 * n + 2 * j;
            let sc = [q3_k_scale(packed, g), q3_k_scale(packed, g + 1)];
            let sum = halves(&a.qs, sc, |i| {
                let low = ((qs[32 * n + i] >> (2 * j)) & 3) as i32;
                low - if hmask[i] & (1 << k) != 0 { 0 } else { 4 }
            });
            acc += d * a.d * sum as f32;
        }
    }
    acc
}

/// Σ over 32-value group g of a Q4_K/Q5_K super-block: nibble g % 2 of qs[32 (g / 2) + l],
/// plus `high(l)`.
fn k4_group(qs: &[u8], g: usize, a: &[i8; QK8], high: impl Fn(usize) -> i32) -> i32 {
    let q = &qs[32 * (g / 2)..][..32];
    let shift = 4 * (g % 2);
    (0..32)
        .map(|l| (((q[l] >> shift) & 0xF) as i32 + high(l)) * a[l] as i32)
        .sum()
}

/// Q4_K/Q5_K: d * Σ_g sc_g Σ q x - dmin * Σ_g m_g Σ x, with `group` giving Σ q x of group g.
fn k4_row<const B: usize>(
    row: &[u8],
    act: &Q8Activations,
    group: impl Fn(&[u8; B], usize, &[i8; QK8]) -> i32,
) -> f32 {
    let mut acc = 0.0;
    for (b, a) in blocks::<B, 8>(row, act) {
        let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
        let (mut sums, mut mins) = (0.0, 0.0);
        for (g, a) in a.iter().enumerate() {
            let (sc, m) = scale_min_k4(g, &b[4..16]);
            sums += (sc as i32 * group(b, g, &a.qs)) as f32 * a.d;
            mins += m as f32 * a.sum;
        }
        acc += d * sums - dmin * mins;
    }
    acc
}

pub(super) fn q4_k(row: &[u8], act: &Q8Activations) -> f32 {
    k4_row::<144>(row, act, |b, g, a| k4_group(&b[16..], g, a, |_| 0))
}

/// Q5_K: as Q4_K, plus 16 where bit g of qh[l] is set.
pub(super) fn q5_k(row: &[u8], act: &Q8Activations) -> f32 {
    k4_row::<176>(row, act, |b, g, a| {
        let qh = &b[16..48];
        k4_group(&b[48..], g, a, |l| (((qh[l] >> g) & 1) << 4) as i32)
    })
}

/// Q6_K: activation block 4n + k (n the 128-value half) reads value l from nibble k / 2 of
/// ql[64n + l + 32 (k % 2)] and bits 2k of qh[32n + l], scales 8n + 2k (+1 for l >= 16).
/// Value (d * sc) * (q - 32).
pub(super) fn q6_k(row: &[u8], act: &Q8Activations) -> f32 {
    let mut acc = 0.0;
    for (b, a) in blocks::<210, 8>(row, act) {
        let (ql, qh, scales) = (&b[..128], &b[128..192], &b[192..208]);
        let d = f16_at(b, 208);
        for (i, a) in a.iter().enumerate() {
            let (n, k) = (i / 4, i % 4);
            let ql = &ql[64 * n + 32 * (k % 2)..][..32];
            let qh = &qh[32 * n..][..32];
            let s = &scales[8 * n + 2 * k..][..2];
            let sum = halves(&a.qs, [s[0] as i8 as i32, s[1] as i8 as i32], |l| {
                let low = (ql[l] >> (4 * (k / 2))) & 0xF;
                let high = (qh[l] >> (2 * k)) & 3;
                (low | (high << 4)) as i32 - 32
            });
            acc += d * a.d * sum as f32;
        }
    }
    acc
}

fn iq4_value(q: u8) -> i32 {
    IQ4_VALUES[q as usize] as i32
}

pub(super) fn iq4_nl(row: &[u8], act: &Q8Activations) -> f32 {
    let mut acc = 0.0;
    for (b, [a]) in blocks::<18, 1>(row, act) {
        acc += f16_at(b, 0) * a.d * nibble_block(&b[2..], &a.qs, iq4_value) as f32;
    }
    acc
}

/// IQ4_XS's 6-bit scale of group g (0..8), minus 32: nibble g of scales_l | 2 bits of
/// scales_h at 2g, above it.
pub(super) fn iq4_xs_scale(b: &[u8], g: usize) -> i32 {
    let (scales_h, scales_l) = (u16::from_le_bytes([b[2], b[3]]) as u32, u32_at(b, 4));
    (((scales_l >> (4 * g)) & 0xF) | (((scales_h >> (2 * g)) & 3) << 4)) as i32 - 32
}

pub(super) fn iq4_xs(row: &[u8], act: &Q8Activations) -> f32 {
    let mut acc = 0.0;
    for (b, a) in blocks::<136, 8>(row, act) {
        let mut sum = 0.0;
        for (g, a) in a.iter().enumerate() {
            let group = nibble_block(&b[8 + 16 * g..][..16], &a.qs, iq4_value);
            sum += (iq4_xs_scale(b, g) * group) as f32 * a.d;
        }
        acc += f16_at(b, 0) * sum;
    }
    acc
}

//! Activations quantized to 8 bits in 32-value blocks (ggml's Q8_0, plus the block sum of
//! Q8_1): the form every quantized weight row is dotted with.
//!
//! One block format serves every weight type, K-types included. llama.cpp quantizes to Q8_K
//! (one scale per 256 values, i16 sums per 16) for the K-types; we keep the 32-blocks instead
//! and apply the activation scale per 32 values inside the K kernels. That costs one f32
//! multiply-add per 32 values, but a layer's activations are quantized once whatever mix of
//! weight types reads them (Q4_K_M files mix Q4_K, Q6_K, Q5_0 and Q8_0), there is one
//! quantizer and one block type to keep right, and the finer scales round less.

use crate::error::Result;

/// Values per activation block.
pub const QK8: usize = 32;

/// One block of 32 activations: value i is about `d * qs[i]`.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C)]
pub struct Q8Block {
    /// max |x| / 127 over the block (0 for a block of zeros).
    pub d: f32,
    /// `d * sum(qs)`: what a weight type with a per-block offset `m` adds, as `m * sum`.
    pub sum: f32,
    pub qs: [i8; QK8],
}

/// An activation vector, quantized, with its f32 values kept for the float weight types.
/// The buffers are reused: `quantize_into` allocates only when the length grows.
#[derive(Debug, Clone, Default)]
pub struct Q8Activations {
    values: Vec<f32>,
    blocks: Vec<Q8Block>,
}

impl Q8Activations {
    pub fn new() -> Q8Activations {
        Q8Activations::default()
    }

    /// `x` quantized into new buffers.
    pub fn quantize(x: &[f32]) -> Result<Q8Activations> {
        let mut act = Q8Activations::new();
        act.quantize_into(x)?;
        Ok(act)
    }

    /// Quantize `x` into these buffers: each whole 32-value block of it (a tail shorter than a
    /// block is kept only as f32, for the float weight types, since no quantized row ends in
    /// a partial block). Each value rounds to the nearest multiple of its block's `d`, so it
    /// moves by at most `d / 2`.
    pub fn quantize_into(&mut self, x: &[f32]) -> Result<()> {
        self.values.clear();
        self.values.extend_from_slice(x);
        self.blocks.resize(x.len() / QK8, Q8Block::default());
        for (block, x) in self.blocks.iter_mut().zip(x.chunks_exact(QK8)) {
            quantize_block(x, block);
        }
        Ok(())
    }

    /// The number of activations.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The f32 values as given (what F32/F16/BF16 rows are dotted with).
    pub fn values(&self) -> &[f32] {
        &self.values
    }

    pub fn blocks(&self) -> &[Q8Block] {
        &self.blocks
    }
}

fn quantize_block(x: &[f32], block: &mut Q8Block) {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if d > 0.0 { 1.0 / d } else { 0.0 };
    let mut sum = 0i32;
    for (q, &v) in block.qs.iter_mut().zip(x) {
        // |v * id| <= 127 up to rounding, and `as` saturates, so the cast cannot wrap.
        *q = (v * id).round() as i8;
        sum += *q as i32;
    }
    block.d = d;
    block.sum = d * sum as f32;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_error_is_at_most_half_a_step() {
        let x: Vec<f32> = (0..96)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.013)
            .collect();
        let act = Q8Activations::quantize(&x).unwrap();
        for (b, x) in act.blocks().iter().zip(x.chunks_exact(QK8)) {
            let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
            assert_eq!(b.d, amax / 127.0);
            assert!(
                b.qs.iter().any(|&q| q.abs() == 127),
                "the largest maps to ±127"
            );
            for (&q, &v) in b.qs.iter().zip(x) {
                // Half a step, plus the f32 rounding of `v / d` and of `q * d`.
                let bound = b.d * 0.5 + v.abs() * 2.0 * f32::EPSILON;
                assert!((q as f32 * b.d - v).abs() <= bound, "{v} -> {q} * {}", b.d);
            }
            let sum: i32 = b.qs.iter().map(|&q| q as i32).sum();
            assert_eq!(b.sum, b.d * sum as f32);
        }
        assert_eq!(act.values(), &x[..]);
    }

    #[test]
    fn zeros_quantize_to_zero_scale() {
        let act = Q8Activations::quantize(&[0.0; 64]).unwrap();
        assert!(act
            .blocks()
            .iter()
            .all(|b| b.d == 0.0 && b.sum == 0.0 && b.qs == [0; 32]));
    }

    #[test]
    fn reuse_keeps_the_buffers_and_a_tail_stays_f32() {
        let mut act = Q8Activations::quantize(&[1.0; 64]).unwrap();
        let at = act.blocks().as_ptr();
        act.quantize_into(&[2.0; 32]).unwrap();
        act.quantize_into(&[3.0; 64]).unwrap();
        assert_eq!(act.blocks().as_ptr(), at, "no reallocation once sized");
        assert_eq!((act.len(), act.blocks().len()), (64, 2));
        act.quantize_into(&[0.5; 40]).unwrap();
        assert_eq!((act.len(), act.blocks().len()), (40, 1));
        assert_eq!(act.values()[39], 0.5);
    }
}

//! The arithmetic of the f32 decoder: quantized matvec (one row dequantized at a time), dot,
//! norms, activations, RoPE, attention. Each is the plain formula; `mod.rs` strings them
//! into the forward pass.

use crate::config::{Config, RopeStyle, RopeTable};
use crate::cpu::pool::for_each_chunk;
use crate::cpu::weights::Matrix;
use crate::error::{Error, Result};

/// Rows of a matvec handed to one task: enough to amortize the task and its row buffer.
pub(super) const ROWS_PER_TASK: usize = 32;

/// y = W x, W `rows` x `cols`: y[r] = dot(row r of W, x).
pub(super) fn matvec(w: &Matrix, x: &[f32], y: &mut [f32]) -> Result<()> {
    debug_assert_eq!((x.len(), y.len()), (w.cols, w.rows));
    for_each_chunk(y, ROWS_PER_TASK, w.rows * w.cols, |first_row, ys| {
        let mut row = vec![0f32; w.cols];
        for (r, y) in (first_row..).zip(ys) {
            w.dequantize_row(r, &mut row)?;
            *y = dot(&row, x);
        }
        Ok(())
    })
}

/// Dot product in f32 with eight partial sums (which lets the compiler use SIMD lanes).
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a8
        .remainder()
        .iter()
        .zip(b8.remainder())
        .map(|(a, b)| a * b)
        .sum();
    for (a, b) in a8.zip(b8) {
        for i in 0..8 {
            acc[i] += a[i] * b[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// out = x / sqrt(mean(x^2) + eps) * w
pub(crate) fn rmsnorm(out: &mut [f32], x: &[f32], w: &[f32], eps: f32) {
    let mean_square = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
    let scale = 1.0 / (mean_square + eps).sqrt();
    for ((o, &x), &w) in out.iter_mut().zip(x).zip(w) {
        *o = x * scale * w;
    }
}

pub(crate) fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// GELU, tanh approximation: 0.5 x (1 + tanh(y)), y = sqrt(2/pi) (x + 0.044715 x^3), written
/// as x / (1 + exp(-2y)), the same value without the cancellation of 1 + tanh(y) near -1.
pub(crate) fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    let y = SQRT_2_OVER_PI * (x + 0.044715 * x * x * x);
    x / (1.0 + (-2.0 * y).exp())
}

/// RMSNorm of each `dim`-wide slice of `v` in place (per-head q/k norms).
pub(crate) fn rmsnorm_heads(v: &mut [f32], w: &[f32], eps: f32) {
    for head in v.chunks_exact_mut(w.len()) {
        let x = head.to_vec();
        rmsnorm(head, &x, w, eps);
    }
}

/// Rotary position embedding of one layer: the angle of pair i at position p is
/// `p * freqs[i]`, cos and sin scaled by `mscale` (`Config::rope` folds every scaling scheme
/// into these).
pub(crate) struct Rope<'a> {
    pub(crate) style: RopeStyle,
    pub(crate) head_dim: usize,
    pub(crate) table: &'a RopeTable,
}

impl Rope<'_> {
    /// Rotate every head of `v` (heads of head_dim values) for position `pos`. Dimensions at
    /// and past rope_dims are left as they are.
    pub(crate) fn apply(&self, v: &mut [f32], pos: usize) {
        let p = pos as f32;
        let half = self.table.freqs.len();
        let m = self.table.mscale;
        for head in v.chunks_exact_mut(self.head_dim) {
            for (i, &freq) in self.table.freqs.iter().enumerate() {
                let (sin, cos) = (p * freq).sin_cos();
                let (sin, cos) = (sin * m, cos * m);
                let (a, b) = match self.style {
                    RopeStyle::Adjacent => (2 * i, 2 * i + 1),
                    RopeStyle::Half => (i, i + half),
                };
                let (x0, x1) = (head[a], head[b]);
                head[a] = x0 * cos - x1 * sin;
                head[b] = x0 * sin + x1 * cos;
            }
        }
    }
}

/// y = [W_0 x; W_1 x; ...]: matrices whose outputs are concatenated (q, k, v in order, or
/// one fused tensor).
pub(super) fn project(ws: &[Matrix], x: &[f32], y: &mut [f32]) -> Result<()> {
    let mut rest = y;
    for w in ws {
        let (head, tail) = rest.split_at_mut(w.rows);
        matvec(w, x, head)?;
        rest = tail;
    }
    Ok(())
}

/// Multi-head attention of one query position over `n_pos = keys.len() / kv_dim` cached
/// positions, with grouped KV heads: query head h reads KV head h / (n_head / n_head_kv).
pub(crate) fn attention(
    out: &mut [f32],
    q: &[f32],
    keys: &[f32],
    values: &[f32],
    c: &Config,
) -> Result<()> {
    let (hd, kv_dim) = (c.head_dim, c.kv_dim());
    let group = c.n_head / c.n_head_kv;
    let scale = c.attention_scale;
    for_each_chunk(out, hd, q.len() * keys.len() / kv_dim * 2, |start, out| {
        let h = start / hd;
        let q = &q[start..][..hd];
        let kv_offset = (h / group) * hd;
        // scores[t] = q . k_t * attention_scale                                       [n_pos]
        let mut scores: Vec<f32> = keys
            .chunks_exact(kv_dim)
            .map(|k_t| dot(q, &k_t[kv_offset..][..hd]) * scale)
            .collect();
        softmax(&mut scores);
        // out = sum_t scores[t] v_t                                                [head_dim]
        out.fill(0.0);
        for (&a, v_t) in scores.iter().zip(values.chunks_exact(kv_dim)) {
            for (o, &v) in out.iter_mut().zip(&v_t[kv_offset..][..hd]) {
                *o += a * v;
            }
        }
        Ok(())
    })
}

/// In place, shifted by the maximum so that exp never overflows.
pub(crate) fn softmax(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in x.iter_mut() {
        *v /= sum;
    }
}

pub(crate) fn add(x: &mut [f32], y: &[f32]) {
    for (x, &y) in x.iter_mut().zip(y) {
        *x += y;
    }
}

/// One KV cache plane (keys or values) of `n_layer` x `context` x `kv_dim` zeroed floats, or an
/// error (not an abort) when it cannot be allocated.
pub(crate) fn zeroed_cache(c: &Config, context: usize) -> Result<Vec<f32>> {
    let too_big = || {
        Error::ModelTooLarge(format!(
            "no memory for the KV cache of {context} tokens; lower the context length"
        ))
    };
    let len = c
        .n_layer
        .checked_mul(context)
        .and_then(|n| n.checked_mul(c.kv_dim()))
        .ok_or_else(too_big)?;
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| too_big())?;
    v.resize(len, 0.0);
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_matches_a_plain_sum_for_every_length() {
        for n in 0..40 {
            let a: Vec<f32> = (0..n).map(|i| i as f32 * 0.5 - 3.0).collect();
            let b: Vec<f32> = (0..n).map(|i| 1.0 + (i % 3) as f32).collect();
            let plain: f32 = a.iter().zip(&b).map(|(a, b)| a * b).sum();
            assert!((dot(&a, &b) - plain).abs() < 1e-4, "n = {n}");
        }
    }

    #[test]
    fn softmax_is_stable_for_large_values() {
        let mut x = vec![1000.0, 1000.0, 0.0];
        softmax(&mut x);
        assert!((x[0] - 0.5).abs() < 1e-6 && (x[1] - 0.5).abs() < 1e-6 && x[2] < 1e-30);
    }

    fn table(rope_dims: usize) -> RopeTable {
        RopeTable {
            freqs: (0..rope_dims / 2)
                .map(|i| 10000f32.powf(-((2 * i) as f32) / rope_dims as f32))
                .collect(),
            mscale: 1.0,
        }
    }

    fn rope(style: RopeStyle, table: &RopeTable) -> Rope<'_> {
        Rope {
            style,
            head_dim: 8,
            table,
        }
    }

    #[test]
    fn rope_rotates_adjacent_pairs_and_leaves_the_rest() {
        let t = table(4);
        let r = rope(RopeStyle::Adjacent, &t);
        let mut v = [1.0, 0.0, 1.0, 0.0, 7.0, 8.0, 9.0, 10.0];
        r.apply(&mut v, 1);
        // pair 0 turns by 1 rad, pair 1 by 1 / 100 rad
        assert!((v[0] - 1f32.cos()).abs() < 1e-6 && (v[1] - 1f32.sin()).abs() < 1e-6);
        assert!((v[2] - 0.01f32.cos()).abs() < 1e-6 && (v[3] - 0.01f32.sin()).abs() < 1e-6);
        assert_eq!(&v[4..], &[7.0, 8.0, 9.0, 10.0]);
    }

    #[test]
    fn rope_half_rotates_i_with_i_plus_half() {
        let t = table(8);
        let r = rope(RopeStyle::Half, &t);
        let mut v = [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        r.apply(&mut v, 2);
        assert!((v[0] - 2f32.cos()).abs() < 1e-6 && (v[4] - 2f32.sin()).abs() < 1e-6);
        assert_eq!(v[1], 0.0);
    }

    #[test]
    fn rope_at_position_zero_is_the_identity() {
        let t = table(8);
        let r = rope(RopeStyle::Adjacent, &t);
        let mut v = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
        r.apply(&mut v, 0);
        assert_eq!(v, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
    }
}

//! Test data for the quantized-weight kernels, shared by the native tests (`gpu_matvec.rs`) and
//! the browser tests (`web.rs`): tensors of random valid blocks and their CPU values.

use llama_wgpu::gguf::TensorInfo;
use llama_wgpu::quant::{self, GgmlType};
use llama_wgpu::synth::random_blocks;

/// A tensor's GGUF bytes and its values as `quant.rs` decodes them.
pub struct Tensor {
    pub info: TensorInfo,
    pub bytes: Vec<u8>,
    pub values: Vec<f32>,
}

impl Tensor {
    pub fn new(info: TensorInfo, bytes: Vec<u8>) -> Tensor {
        let values = quant::dequantize_tensor(&info, &bytes).unwrap();
        Tensor {
            info,
            bytes,
            values,
        }
    }

    /// Random valid blocks of `ty` (`llama_wgpu::synth::random_blocks`: random quants, small
    /// finite f16 scales of either sign).
    pub fn random(ty: GgmlType, rows: u64, cols: u64, rng: &mut Rng) -> Tensor {
        let n_bytes = ty.bytes_for(rows * cols).unwrap();
        let bytes = random_blocks(ty, n_bytes, &mut rng.0).unwrap();
        let info = TensorInfo {
            name: format!("random.{ty}.{rows}x{cols}"),
            dims: vec![cols, rows],
            ty,
            offset: 0,
            n_bytes,
        };
        Tensor::new(info, bytes)
    }

    pub fn rows_cols(&self) -> (usize, usize) {
        let (rows, cols) = self.info.rows_cols();
        (rows as usize, cols as usize)
    }

    /// Per row r: (dot(row r, x) in f64, sum |w x|).
    pub fn dot_rows(&self, x: &[f32]) -> Vec<(f64, f64)> {
        let (_, cols) = self.rows_cols();
        self.values
            .chunks_exact(cols)
            .map(|row| {
                row.iter().zip(x).fold((0.0, 0.0), |(s, a), (&w, &x)| {
                    let p = w as f64 * x as f64;
                    (s + p, a + p.abs())
                })
            })
            .collect()
    }
}

/// splitmix64: deterministic test data without a dependency.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [-scale, scale).
    pub fn uniform(&mut self, scale: f32) -> f32 {
        ((self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
    }

    pub fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.uniform(1.0)).collect()
    }
}

//! The model's weights in CPU memory, by role: what both CPU decoders read (the engine in
//! `cpu::model` and the f32 oracle in `reference/`). Matrices stay in their GGUF block format
//! (memory is about the file size); vectors (norms, biases, RoPE factors) become f32.
//!
//! Which tensors there are comes from the architecture description (`Config`, `arch.rs`), as
//! for the GPU loader. `CpuWeights::load` takes a function that hands over one tensor's bytes:
//! a file's ranges natively, or the pieces a stream delivered (`TensorCollector`) in wasm.

use crate::arch::BlockTensor;
use crate::config::{
    Config, RopeTable, OUTPUT, OUTPUT_NORM, ROPE_FACTORS_LONG, ROPE_FACTORS_SHORT, ROPE_FREQS,
    TOKEN_EMBD,
};
use crate::error::{Error, Result};
use crate::gguf::{Header, TensorInfo};
use crate::quant::{self, GgmlType};

/// A weight matrix in its GGUF block format: `rows` rows of `cols` contiguous values (GGUF dims
/// `[cols, rows]`), each row `row_bytes` bytes of whole blocks.
pub struct Matrix {
    pub ty: GgmlType,
    pub rows: usize,
    pub cols: usize,
    pub row_bytes: usize,
    pub data: Vec<u8>,
}

impl Matrix {
    pub fn new(info: &TensorInfo, data: Vec<u8>) -> Result<Matrix> {
        if !info.ty.is_supported() {
            return Err(Error::UnsupportedTensorType {
                tensor: info.name.clone(),
                ty: info.ty.name().to_string(),
                hint: " by the CPU decoders",
            });
        }
        let invalid = || Error::ModelInvalid(format!("tensor `{}` has an invalid size", info.name));
        let (&cols, &rows) = match info.dims.as_slice() {
            [cols, rows] => (cols, rows),
            _ => return Err(invalid()),
        };
        let row_bytes = info.ty.bytes_for(cols).ok_or_else(invalid)?;
        if row_bytes.checked_mul(rows) != Some(data.len() as u64) {
            return Err(invalid());
        }
        Ok(Matrix {
            ty: info.ty,
            rows: rows as usize,
            cols: cols as usize,
            row_bytes: row_bytes as usize,
            data,
        })
    }

    /// The bytes of row `r` (< rows).
    pub fn row(&self, r: usize) -> Result<&[u8]> {
        self.data
            .get(r * self.row_bytes..(r + 1) * self.row_bytes)
            .ok_or_else(|| Error::InvalidArgument(format!("row {r} of {}", self.rows)))
    }

    /// Row `r` (< rows) as f32 into `out` (cols values).
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) -> Result<()> {
        quant::dequantize(self.ty, self.row(r)?, out)
    }
}

/// One block's weights by role. Options an architecture lacks are `None`.
pub struct Layer {
    pub attn_norm: Vec<f32>,
    /// Makes q, k and v, one after another: phi3's one fused tensor, or the three matrices,
    /// those of one type joined into one (`stack`).
    pub qkv: Vec<Matrix>,
    /// q, k and v biases, concatenated (qwen2).
    pub qkv_bias: Option<Vec<f32>>,
    /// Per-head RMSNorm weights of q and k (qwen3, gemma3).
    pub q_norm: Option<Vec<f32>>,
    pub k_norm: Option<Vec<f32>>,
    pub wo: Matrix,
    pub post_attn_norm: Option<Vec<f32>>,
    pub ffn_norm: Vec<f32>,
    /// Makes gate, then up: one fused tensor, or two matrices (one when of one type).
    pub gate_up: Vec<Matrix>,
    pub w_down: Matrix,
    pub post_ffn_norm: Option<Vec<f32>>,
    /// This layer's RoPE frequencies (its base, scaling and factors folded in).
    pub rope: RopeTable,
    /// The sliding window of a local layer.
    pub window: Option<usize>,
}

/// Every weight the decoder reads.
pub struct CpuWeights {
    pub token_embd: Matrix,
    /// `None` when the LM head is tied to `token_embd`.
    pub output: Option<Matrix>,
    pub output_norm: Vec<f32>,
    pub layers: Vec<Layer>,
}

impl CpuWeights {
    /// The weights of the model `header` describes, for a KV cache of `context` positions
    /// (which picks phi3's short or long RoPE factors); `read` returns a tensor's raw bytes.
    pub fn load(
        header: &Header,
        config: &Config,
        context: usize,
        mut read: impl FnMut(&TensorInfo) -> Result<Vec<u8>>,
    ) -> Result<CpuWeights> {
        // A tensor's table entry and raw bytes, by name.
        let mut load = |name: &str| {
            let t = header
                .tensor(name)
                .ok_or_else(|| Error::ModelInvalid(format!("tensor `{name}` is missing")))?;
            Ok::<_, Error>((t, read(t)?))
        };
        let token_embd = matrix(load(TOKEN_EMBD)?)?;
        let output = match config.tied_embeddings {
            true => None,
            false => Some(matrix(load(OUTPUT)?)?),
        };
        let output_norm = vector(load(OUTPUT_NORM)?)?;
        let rope_factors = match config.rope_factor_tensor(context) {
            Some(name) => Some(vector(load(name)?)?),
            None => None,
        };
        let a = config.arch;
        let mut layers = Vec::with_capacity(config.n_layer);
        for l in 0..config.n_layer {
            use BlockTensor::*;
            let mut t = |role: BlockTensor| load(&role.name(l));
            let mut optional = |on: bool, role: BlockTensor| match on {
                true => vector(t(role)?).map(Some),
                false => Ok(None),
            };
            let q_norm = optional(a.qk_norm, QNorm)?;
            let k_norm = optional(a.qk_norm, KNorm)?;
            let post_attn_norm = optional(a.post_norms, PostAttnNorm)?;
            let post_ffn_norm = optional(a.post_norms, PostFfnNorm)?;
            let qkv_bias = match a.qkv_bias {
                true => {
                    let parts = [QBias, KBias, VBias].map(|r| optional(true, r));
                    let mut bias = Vec::new();
                    for part in parts {
                        bias.extend(part?.unwrap_or_default());
                    }
                    Some(bias)
                }
                false => None,
            };
            let mut t = |role: BlockTensor| load(&role.name(l));
            let mut projection = |roles: &[BlockTensor]| {
                roles
                    .iter()
                    .map(|&r| matrix(t(r)?))
                    .collect::<Result<Vec<_>>>()
            };
            let qkv = stack(projection(a.qkv_tensors())?);
            let gate_up = stack(projection(a.gate_up_tensors())?);
            let mut t = |role: BlockTensor| load(&role.name(l));
            layers.push(Layer {
                qkv,
                gate_up,
                qkv_bias,
                q_norm,
                k_norm,
                post_attn_norm,
                post_ffn_norm,
                attn_norm: vector(t(AttnNorm)?)?,
                wo: matrix(t(AttnOutput)?)?,
                ffn_norm: vector(t(FfnNorm)?)?,
                w_down: matrix(t(Down)?)?,
                rope: config.rope(l, rope_factors.as_deref())?,
                window: config.window(l),
            });
        }
        Ok(CpuWeights {
            token_embd,
            output,
            output_norm,
            layers,
        })
    }

    /// The LM head: `output`, or `token_embd` when they are tied.
    pub fn lm_head(&self) -> &Matrix {
        self.output.as_ref().unwrap_or(&self.token_embd)
    }
}

/// The names of the tensors `CpuWeights::load` reads for a context of `context` positions.
pub fn tensors_read(config: &Config, context: usize) -> Vec<String> {
    let factors = config.rope_factor_tensor(context);
    let rope_factor_names = [ROPE_FREQS, ROPE_FACTORS_SHORT, ROPE_FACTORS_LONG];
    config
        .expected_tensors()
        .into_iter()
        .map(|(name, _)| name)
        .filter(|name| {
            !rope_factor_names.contains(&name.as_str()) || Some(name.as_str()) == factors
        })
        .collect()
}

/// Collects a stream's tensor pieces (any size, file order) into whole tensors for
/// `CpuWeights::load`, keeping only the tensors it reads. Each tensor's buffer is reserved
/// when its first piece arrives, so a model that does not fit in memory fails there, with an
/// error, not an abort.
pub struct TensorCollector {
    /// Per tensor index of the header: its bytes so far, or `None` for a tensor not read.
    tensors: Vec<Option<Vec<u8>>>,
    sizes: Vec<u64>,
}

impl TensorCollector {
    pub fn new(header: &Header, config: &Config, context: usize) -> TensorCollector {
        let wanted = tensors_read(config, context);
        let tensors = header
            .tensors
            .iter()
            .map(|t| wanted.contains(&t.name).then(Vec::new))
            .collect();
        let sizes = header.tensors.iter().map(|t| t.n_bytes).collect();
        TensorCollector { tensors, sizes }
    }

    /// The bytes of all the tensors kept, once complete.
    pub fn bytes_kept(header: &Header, config: &Config, context: usize) -> u64 {
        let wanted = tensors_read(config, context);
        header
            .tensors
            .iter()
            .filter(|t| wanted.contains(&t.name))
            .map(|t| t.n_bytes)
            .sum()
    }

    /// Bytes `offset..` of tensor `index` (pieces of one tensor arrive in order).
    pub fn write(&mut self, index: usize, offset: u64, bytes: &[u8]) -> Result<()> {
        let Some(Some(buf)) = self.tensors.get_mut(index) else {
            return Ok(());
        };
        if buf.len() as u64 != offset {
            return Err(Error::ModelInvalid(format!(
                "tensor {index}: bytes at {offset} arrived after {}",
                buf.len()
            )));
        }
        if buf.capacity() == 0 {
            let size = self.sizes[index] as usize;
            buf.try_reserve_exact(size).map_err(|_| {
                Error::ModelTooLarge(format!("no memory for a tensor of {size} bytes on the CPU"))
            })?;
        }
        buf.extend_from_slice(bytes);
        Ok(())
    }

    /// Tensor `info`'s bytes, taken out (each is read once).
    pub fn take(&mut self, header: &Header, info: &TensorInfo) -> Result<Vec<u8>> {
        let index = header
            .tensors
            .iter()
            .position(|t| t.name == info.name)
            .ok_or_else(|| Error::ModelInvalid(format!("tensor `{}` is missing", info.name)))?;
        let bytes = self.tensors[index].take().unwrap_or_default();
        if bytes.len() as u64 != self.sizes[index] {
            return Err(Error::ModelInvalid(format!(
                "tensor `{}`: {} of its {} bytes arrived",
                info.name,
                bytes.len(),
                self.sizes[index]
            )));
        }
        Ok(bytes)
    }
}

/// Consecutive matrices of one type and row length joined into one (their rows one after
/// another), so a projection whose outputs are concatenated anyway (q, k, v; gate, up) is one
/// matrix product: one pass over the rows, one parallel loop instead of three or two. A mix of
/// types (Q4_K_M keeps v in Q6_K) stays split where the type changes.
fn stack(matrices: Vec<Matrix>) -> Vec<Matrix> {
    let mut out: Vec<Matrix> = Vec::with_capacity(matrices.len());
    for m in matrices {
        if let Some(last) = out.last_mut() {
            // (Where memory is too short to join them, they stay apart.)
            let joins = last.ty == m.ty && last.cols == m.cols;
            if joins && last.data.try_reserve_exact(m.data.len()).is_ok() {
                last.data.extend_from_slice(&m.data);
                last.rows += m.rows;
                continue;
            }
        }
        out.push(m);
    }
    out
}

/// A weight matrix from its table entry and bytes, kept quantized.
fn matrix((info, data): (&TensorInfo, Vec<u8>)) -> Result<Matrix> {
    Matrix::new(info, data)
}

/// A small tensor (norm weights, RoPE factors) dequantized to f32.
fn vector((info, data): (&TensorInfo, Vec<u8>)) -> Result<Vec<f32>> {
    quant::dequantize_tensor(info, &data)
}

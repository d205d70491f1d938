//! From tensor bytes, as they arrive from a file or a stream, to the model's weights on the GPU.
//!
//! Which tensors there are comes from the architecture description (`Config::expected_tensors`,
//! `arch.rs`); nothing here names a tensor. Matrices upload as they stream; a block's q/k/v and
//! gate/up tensors of one type are stacked into one weight (one dispatch per token instead of
//! three or two); vectors (norms, biases, RoPE factors) are collected on the CPU and uploaded as
//! f32 at the end.

use crate::arch::BlockTensor;
use crate::config::{Config, OUTPUT, OUTPUT_NORM, TOKEN_EMBD};
use crate::error::{Error, Result};
use crate::gguf::{Header, TensorInfo};
use crate::gpu::graph::Projection;
use crate::gpu::weights::{upload_f32_vector, GpuWeight};
use crate::gpu::GpuContext;
use crate::quant::GgmlType;

/// One block's weights on the GPU, by role. Options an architecture lacks are `None`.
pub struct LayerWeights {
    pub attn_norm: wgpu::Buffer,
    /// Makes q, k and v.
    pub qkv: Projection,
    /// q | k | v biases, concatenated.
    pub qkv_bias: Option<wgpu::Buffer>,
    /// Per-head RMSNorm weights of q and k.
    pub qk_norms: Option<(wgpu::Buffer, wgpu::Buffer)>,
    pub wo: GpuWeight,
    pub post_attn_norm: Option<wgpu::Buffer>,
    pub ffn_norm: wgpu::Buffer,
    /// Makes gate and up.
    pub gate_up: Projection,
    pub w_down: GpuWeight,
    pub post_ffn_norm: Option<wgpu::Buffer>,
}

impl LayerWeights {
    pub fn matrices(&self) -> impl Iterator<Item = &GpuWeight> {
        self.qkv
            .weights()
            .chain([&self.wo])
            .chain(self.gate_up.weights())
            .chain([&self.w_down])
    }
}

/// Every weight of the model on the GPU: what a [`WeightLoader`] produces.
pub struct Weights {
    pub token_embd: GpuWeight,
    /// `None` when the LM head is tied to `token_embd`.
    pub output: Option<GpuWeight>,
    pub output_norm: wgpu::Buffer,
    /// RoPE frequency-factor tensors by name (`Config::rope_factor_tensor` picks one once the
    /// context length is known).
    pub rope_factors: Vec<(String, Vec<f32>)>,
    pub layers: Vec<LayerWeights>,
    /// `GpuContext::allocated_bytes` before the first weight was allocated: the model's GPU
    /// memory is what the device allocated since.
    pub allocated_before: u64,
}

impl Weights {
    pub fn lm_head(&self) -> &GpuWeight {
        self.output.as_ref().unwrap_or(&self.token_embd)
    }

    /// Distinct types of the block matrices (what prefill multiplies).
    pub fn block_types(&self) -> Vec<GgmlType> {
        let mut types: Vec<GgmlType> = self
            .layers
            .iter()
            .flat_map(LayerWeights::matrices)
            .map(|w| w.ty)
            .collect();
        types.sort_by_key(|t| t.id());
        types.dedup();
        types
    }

    /// The values of a factor tensor.
    pub fn rope_factors(&self, name: Option<&str>) -> Option<&[f32]> {
        let name = name?;
        let found = self.rope_factors.iter().find(|(n, _)| n == name);
        found.map(|(_, v)| v.as_slice())
    }
}

/// Collects tensor bytes as they arrive (from a file or a stream) into GPU weights.
pub struct WeightLoader {
    ctx: GpuContext,
    tensors: Vec<TensorInfo>,
    /// Per tensor index: where its bytes go.
    slots: Vec<Slot>,
    /// Weights that stack several tensors, taken by `finish`.
    stacks: Vec<Option<GpuWeight>>,
    allocated_before: u64,
}

enum Slot {
    Unused,
    Matrix(GpuWeight),
    /// Member `member` of `stacks[stack]`.
    Stacked {
        stack: usize,
        member: usize,
    },
    Vector(Vec<u8>),
}

/// Where each tensor of a header goes on the GPU, decided from the header alone:
/// `WeightLoader::new` allocates it, and the memory budget (`memory_budget.rs`) sizes it
/// without allocating anything.
pub struct GpuPlan {
    /// Weights that stack several tensors: their name and the tensors' indices, in row order.
    pub stacks: Vec<(String, Vec<usize>)>,
    /// Per tensor index of the header.
    pub roles: Vec<Role>,
}

/// What becomes of one tensor on the GPU.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Not read by the decoder.
    Unused,
    /// A weight of its own.
    Matrix,
    /// Member `member` of stack `stack`.
    Stacked { stack: usize, member: usize },
    /// Collected on the CPU and uploaded as f32 at the end (RoPE factors stay on the CPU).
    Vector,
}

impl GpuPlan {
    /// A block's q/k/v and gate/up tensors of one type and row length are stacked; every other
    /// tensor the decoder reads is a matrix or a vector of its own.
    pub fn new(header: &Header, config: &Config) -> Result<GpuPlan> {
        let index_of = |name: &str| {
            header
                .tensors
                .iter()
                .position(|t| t.name == name)
                .ok_or_else(|| Error::ModelInvalid(format!("tensor `{name}` is missing")))
        };
        let mut roles = vec![Role::Unused; header.tensors.len()];
        let mut stacks = Vec::new();
        let groups = [config.arch.qkv_tensors(), config.arch.gate_up_tensors()];
        for l in 0..config.n_layer {
            for group in groups.iter().filter(|g| g.len() > 1) {
                let indices = group
                    .iter()
                    .map(|t| index_of(&t.name(l)))
                    .collect::<Result<Vec<_>>>()?;
                let infos: Vec<&TensorInfo> = indices.iter().map(|&i| &header.tensors[i]).collect();
                let same = |t: &&TensorInfo| t.ty == infos[0].ty && t.dims[0] == infos[0].dims[0];
                if !infos.iter().all(same) || infos.iter().any(|t| t.dims.len() != 2) {
                    continue;
                }
                for (member, &i) in indices.iter().enumerate() {
                    roles[i] = Role::Stacked {
                        stack: stacks.len(),
                        member,
                    };
                }
                let names: Vec<&str> = group.iter().map(|t| t.suffix()).collect();
                stacks.push((format!("blk.{l}.{} (stacked)", names.join("+")), indices));
            }
        }
        for (name, dims) in config.expected_tensors() {
            let index = index_of(&name)?;
            if matches!(roles[index], Role::Stacked { .. }) {
                continue;
            }
            roles[index] = match dims.len() {
                1 => Role::Vector,
                _ => Role::Matrix,
            };
        }
        Ok(GpuPlan { stacks, roles })
    }
}

impl WeightLoader {
    pub fn new(ctx: &GpuContext, header: &Header, config: &Config) -> Result<Self> {
        let plan = GpuPlan::new(header, config)?;
        let allocated_before = ctx.allocated_bytes();
        let mut stacks = Vec::with_capacity(plan.stacks.len());
        for (name, indices) in &plan.stacks {
            let infos: Vec<&TensorInfo> = indices.iter().map(|&i| &header.tensors[i]).collect();
            stacks.push(Some(GpuWeight::new_stacked(ctx, name, &infos)?));
        }
        let slots = plan
            .roles
            .iter()
            .zip(&header.tensors)
            .map(|(role, info)| {
                Ok(match *role {
                    Role::Unused => Slot::Unused,
                    Role::Matrix => Slot::Matrix(GpuWeight::new(ctx, info)?),
                    Role::Stacked { stack, member } => Slot::Stacked { stack, member },
                    Role::Vector => Slot::Vector(Vec::new()),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(WeightLoader {
            ctx: ctx.clone(),
            tensors: header.tensors.clone(),
            slots,
            stacks,
            allocated_before,
        })
    }

    /// The next piece of tensor `index` (pieces of a tensor arrive in order).
    pub fn write(&mut self, index: usize, offset: u64, bytes: &[u8]) -> Result<()> {
        match self.slots.get_mut(index) {
            Some(Slot::Matrix(w)) => w.write(&self.ctx, offset, bytes),
            Some(Slot::Stacked { stack, member }) => match &mut self.stacks[*stack] {
                Some(w) => w.write_member(&self.ctx, *member, offset, bytes),
                None => Ok(()),
            },
            Some(Slot::Vector(v)) => {
                v.extend_from_slice(bytes);
                Ok(())
            }
            Some(Slot::Unused) | None => Ok(()),
        }
    }

    fn take(&mut self, name: &str) -> Result<(TensorInfo, Slot)> {
        let index = self
            .tensors
            .iter()
            .position(|t| t.name == name)
            .ok_or_else(|| Error::ModelInvalid(format!("tensor `{name}` is missing")))?;
        let slot = std::mem::replace(&mut self.slots[index], Slot::Unused);
        Ok((self.tensors[index].clone(), slot))
    }

    fn matrix(&mut self, name: &str) -> Result<GpuWeight> {
        match self.take(name)? {
            (_, Slot::Matrix(mut w)) => {
                w.finish(&self.ctx)?;
                Ok(w)
            }
            (info, _) => Err(Error::ModelInvalid(format!(
                "tensor `{}` is not a matrix",
                info.name
            ))),
        }
    }

    /// The projection of layer `l` made by the tensors `group` into outputs of `outputs`
    /// values: one stacked weight, or one weight per tensor.
    fn projection(
        &mut self,
        l: usize,
        group: &[BlockTensor],
        outputs: Vec<usize>,
    ) -> Result<Projection> {
        let first = group[0].name(l);
        let index = self.tensors.iter().position(|t| t.name == first);
        if let Some(&Slot::Stacked { stack, .. }) = index.map(|i| &self.slots[i]) {
            for t in group {
                self.take(&t.name(l))?;
            }
            let mut w = self.stacks[stack]
                .take()
                .ok_or_else(|| Error::ModelInvalid(format!("`{first}` was taken twice")))?;
            w.finish(&self.ctx)?;
            return Ok(Projection {
                weights: vec![w],
                outputs,
            });
        }
        let weights = group
            .iter()
            .map(|t| self.matrix(&t.name(l)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Projection { weights, outputs })
    }

    /// A vector tensor's values as f32.
    fn values(&mut self, name: &str) -> Result<Vec<f32>> {
        match self.take(name)? {
            (info, Slot::Vector(bytes)) => {
                if bytes.len() as u64 != info.n_bytes {
                    return Err(Error::ModelInvalid(format!(
                        "tensor `{name}`: {} of {} bytes arrived",
                        bytes.len(),
                        info.n_bytes
                    )));
                }
                crate::quant::dequantize_tensor(&info, &bytes)
            }
            (info, _) => Err(Error::ModelInvalid(format!(
                "tensor `{}` is not a vector",
                info.name
            ))),
        }
    }

    fn vector(&mut self, name: &str) -> Result<wgpu::Buffer> {
        let values = self.values(name)?;
        upload_f32_vector(&self.ctx, name, &values)
    }

    /// `vector` of a block tensor the architecture may not have.
    fn optional(&mut self, on: bool, l: usize, t: BlockTensor) -> Result<Option<wgpu::Buffer>> {
        on.then(|| self.vector(&t.name(l))).transpose()
    }

    /// Every tensor has arrived: finish the uploads and hand the weights over.
    pub fn finish(mut self, config: &Config) -> Result<Weights> {
        use BlockTensor::*;
        let a = config.arch;
        let (q, kv, ff) = (config.q_dim(), config.kv_dim(), config.n_ff);
        let mut layers = Vec::with_capacity(config.n_layer);
        for l in 0..config.n_layer {
            let qkv_bias = match a.qkv_bias {
                true => {
                    let mut b = self.values(&QBias.name(l))?;
                    b.extend(self.values(&KBias.name(l))?);
                    b.extend(self.values(&VBias.name(l))?);
                    Some(upload_f32_vector(&self.ctx, "qkv bias", &b)?)
                }
                false => None,
            };
            let qk_norms = match a.qk_norm {
                true => Some((self.vector(&QNorm.name(l))?, self.vector(&KNorm.name(l))?)),
                false => None,
            };
            layers.push(LayerWeights {
                attn_norm: self.vector(&AttnNorm.name(l))?,
                qkv: self.projection(l, a.qkv_tensors(), vec![q, kv, kv])?,
                qkv_bias,
                qk_norms,
                wo: self.matrix(&AttnOutput.name(l))?,
                post_attn_norm: self.optional(a.post_norms, l, PostAttnNorm)?,
                ffn_norm: self.vector(&FfnNorm.name(l))?,
                gate_up: self.projection(l, a.gate_up_tensors(), vec![ff, ff])?,
                w_down: self.matrix(&Down.name(l))?,
                post_ffn_norm: self.optional(a.post_norms, l, PostFfnNorm)?,
            });
        }
        let factor_names: Vec<String> = config
            .expected_tensors()
            .into_iter()
            .filter(|(n, _)| n.starts_with("rope_"))
            .map(|(n, _)| n)
            .collect();
        let mut rope_factors = Vec::new();
        for name in factor_names {
            let values = self.values(&name)?;
            rope_factors.push((name, values));
        }
        Ok(Weights {
            token_embd: self.matrix(TOKEN_EMBD)?,
            output: match config.tied_embeddings {
                true => None,
                false => Some(self.matrix(OUTPUT)?),
            },
            output_norm: self.vector(OUTPUT_NORM)?,
            rope_factors,
            layers,
            allocated_before: self.allocated_before,
        })
    }
}

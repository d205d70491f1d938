//! The kernels a model's graph records, compiled once at load, and the choices of what the
//! decode step folds into its matvecs.

use crate::config::Config;
use crate::error::Result;
use crate::ggml_type::GgmlType;
use crate::gpu::kernels::attention::Attention;
use crate::gpu::kernels::embed::Embed;
use crate::gpu::kernels::ffn::Ffn;
use crate::gpu::kernels::matvec::{InputKind, MatMul, MatVec, OutputKind};
use crate::gpu::kernels::norm::RmsNorm;
use crate::gpu::kernels::rope::Rope;
use crate::gpu::kernels::sample::GpuSampler;
use crate::gpu::kv_cache::KvCache;
use crate::gpu::loader::{LayerWeights, Weights};
use crate::gpu::weights::GpuWeight;
use crate::gpu::GpuContext;

/// Every kernel a model uses, compiled once at load for its weight types and options.
pub struct Kernels {
    /// Whether a decode step folds its norms and gate into the matvecs that read them: on real
    /// GPUs, where a dispatch costs more than the loads of the norm weight (or of up) that each
    /// matvec invocation then adds; not on CPU emulators, where measured the other way
    /// (lavapipe, SmolLM2 decode step: 130 ms of the ops fusion replaces, 144 fused).
    pub fuse_inputs: bool,
    /// Whether a decode step applies RoPE, the q/k/v biases and the KV append in the q/k/v
    /// matvec's epilogue (`matvec_output.rs`) instead of a `rope_kv` dispatch of its own, one
    /// dispatch fewer per layer ([`rope_in_projection`]). The graph still records the dispatch
    /// while LoRA adapters change q, k or v (they add to them before RoPE).
    pub rope_in_projection: bool,
    pub matvec: MatVec,
    pub matmul: MatMul,
    pub embed: Embed,
    pub norm: RmsNorm,
    pub rope: Rope,
    pub attention: Attention,
    pub ffn: Ffn,
    pub sampler: GpuSampler,
}

impl Kernels {
    /// The kernels `config`'s model with `weights` uses, for contexts of `context_len`: the
    /// pipelines of the weight types each product needs, the decode matvecs for the inputs
    /// they read (x; normed x for q/k/v, gate/up and the LM head; the gate for down), and for
    /// the q/k/v matvec the RoPE epilogue where the model takes it.
    pub async fn for_model(
        ctx: &GpuContext,
        config: &Config,
        weights: &Weights,
        context_len: usize,
    ) -> Result<Kernels> {
        let types = |ws: &mut dyn Iterator<Item = &GpuWeight>| {
            let mut types: Vec<GgmlType> = ws.map(|w| w.ty).collect();
            types.sort_by_key(|t| t.id());
            types.dedup();
            types
        };
        let layers = || weights.layers.iter();
        let plain = types(&mut layers().map(|l| &l.wo));
        let normed = types(
            &mut layers()
                .flat_map(|l| l.qkv.weights().chain(l.gate_up.weights()))
                .chain([weights.lm_head()]),
        );
        let gated = types(&mut layers().map(|l| &l.w_down));
        let activation = config.arch.activation;
        let fuse_inputs = !ctx.is_cpu;
        let all = types(
            &mut layers()
                .flat_map(LayerWeights::matrices)
                .chain([weights.lm_head()]),
        );
        let mut uses = match fuse_inputs {
            true => vec![
                (InputKind::X, OutputKind::Y, plain.as_slice()),
                (InputKind::Normed, OutputKind::Y, normed.as_slice()),
                (
                    InputKind::Gated(activation),
                    OutputKind::Y,
                    gated.as_slice(),
                ),
            ],
            false => vec![(InputKind::X, OutputKind::Y, all.as_slice())],
        };
        let rope = Rope::new(
            ctx,
            config,
            weights.rope_factors(config.rope_factor_tensor(context_len)),
            context_len,
        )
        .await?;
        let qkv_input = [InputKind::X, InputKind::Normed][fuse_inputs as usize];
        let rope_in_projection =
            rope_in_projection(ctx, config, weights, &rope, context_len, fuse_inputs)?;
        let qkv = types(&mut layers().flat_map(|l| l.qkv.weights()));
        if rope_in_projection {
            uses.push((qkv_input, rope.epilogue_kind(), qkv.as_slice()));
        }
        Ok(Kernels {
            fuse_inputs,
            rope_in_projection,
            matvec: MatVec::for_outputs(ctx, &uses).await?,
            matmul: MatMul::for_types(ctx, &weights.block_types()).await?,
            embed: Embed::for_types(ctx, &[weights.token_embd.ty]).await?,
            norm: RmsNorm::new(ctx, config).await?,
            rope,
            attention: Attention::new(ctx, config).await?,
            ffn: Ffn::new(ctx, activation).await?,
            sampler: GpuSampler::new(ctx, config.n_vocab, crate::model::MAX_SAMPLER_HISTORY)
                .await?,
        })
    }
}

/// Whether `weights`' decode step takes RoPE and the KV append in the q/k/v matvec's
/// epilogue: where `rope` takes the model (no per-head q/k norms: qwen3 and gemma3 keep the
/// dispatch) and its cache for `context_len` (one part); where every q/k/v weight is one part
/// of whole heads (the epilogue pairs rows within a weight); and where the adapter binds
/// enough storage buffers (WebGPU promises 8; the epilogue adds the two cache buffers and the
/// bias to the planes, x, the norm weight and y). Both kernel families take it: on lavapipe
/// (SmolLM2, emulator kernels, one run) decode measured 8.3 tok/s with the dispatch and 8.8
/// with the epilogue, which adds a few pairs' cos/sin to invocations that load a whole row.
fn rope_in_projection(
    ctx: &GpuContext,
    config: &Config,
    weights: &Weights,
    rope: &Rope,
    context_len: usize,
    normed: bool,
) -> Result<bool> {
    let cache_parts = context_len.div_ceil(KvCache::rows_per_part_for(ctx, config, context_len)?);
    let storage = |w: &GpuWeight| {
        let planes = w.parts.first().map_or(0, |p| w.plane_bindings(p).len());
        planes + 1 + normed as usize + 1 + 2 + config.arch.qkv_bias as usize
    };
    let qkv = || weights.layers.iter().flat_map(|l| l.qkv.weights());
    let fits = qkv().all(|w| {
        w.parts.len() == 1
            && w.rows % config.head_dim as u64 == 0
            && storage(w) <= ctx.limits.max_storage_buffers_per_shader_stage as usize
    });
    Ok(fits && rope.fits_epilogue(cache_parts))
}

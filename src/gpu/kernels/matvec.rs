//! Products with quantized weights: `MatVec` (y = W x, one token: decode) and `MatMul`
//! (Y = X Wᵀ, a batch of tokens: prefill, in `matmul.rs`), for every type in [`GPU_TYPES`], with
//! an optional fused residual add (`accumulate`: y += W x). A matvec's x may also carry the step
//! before it, applied as x is loaded (`matvec_input.rs`: the RMSNorm or the feed-forward gate).
//! Arithmetic is f32 throughout; f16 values are decoded from u32 with `unpack2x16float`, so no
//! optional feature is needed.
//!
//! A shader is assembled from five pieces: `quant_common.wgsl` (parameters, byte unpacking),
//! the type's decoder as its row of [`GPU_TYPE_TABLE`] gives it (the bindings of the planes it
//! has, shared helpers, and its `quant_<type>.wgsl`: `unit_values`, the 32 values of one unit of
//! a row, loading each plane once), the input (`matvec_input_*.wgsl`), the output
//! (`matvec_output_*.wgsl`: rows to y, or the q/k/v projection's RoPE and KV-cache append,
//! `matvec_output.rs`) and a driver saying who computes what:
//!
//! | product | CPU emulations (`ctx.is_cpu`)                  | real GPUs                                   |
//! |---------|------------------------------------------------|---------------------------------------------|
//! | matvec  | `matvec_rows`: 8 rows per invocation           | `matvec_subgroup` (adapters with subgroups): a subgroup shares 4 rows, one `subgroupAdd`; else `matvec_workgroup`: invocations share rows, tree reduction |
//! | matmul  | `matmul_rows`: 8 rows x 8 tokens per invocation | `matmul_tiled`: 64x32 tiles in workgroup memory |
//!
//! The CPU drivers use no workgroup barrier (lavapipe and SwiftShader make barriers very slow)
//! and reuse every load they can, since on those emulators each load instruction is a loop
//! over the SIMD lanes. Tests force either variant with `with_variant`.

use bytemuck::{Pod, Zeroable};

use super::{binding_bytes, grid};
use crate::error::{Error, Result};
use crate::ggml_type::GgmlType;
use crate::gpu::kernel::{uniform_buffer, whole, Kernel, Op, ShaderFeature, ShaderSource};
use crate::gpu::weights::{
    gpu_type, GpuType, GpuWeight, Helper, ScaleFormat, WeightPart, GPU_TYPES, GPU_TYPES_HINT,
    PLANE_BINDINGS, UNIT,
};
use crate::gpu::GpuContext;

pub use super::matmul::{MatMul, MatMulVariant};
pub use super::matvec_input::{InputKind, MatVecInput};
pub use super::matvec_output::{OutputKind, RopeKvTarget};

const QUANT_COMMON: &str = include_str!("../../../shaders/quant_common.wgsl");
const QUANT_SCALES_F16: &str = include_str!("../../../shaders/quant_scales_f16.wgsl");
const QUANT_K_SCALES: &str = include_str!("../../../shaders/quant_k_scales.wgsl");
const QUANT_IQ4: &str = include_str!("../../../shaders/quant_iq4.wgsl");
pub(crate) const MATVEC_COMMON: &str = include_str!("../../../shaders/matvec_common.wgsl");
const MATVEC_ROWS: &str = include_str!("../../../shaders/matvec_rows.wgsl");
const MATVEC_WORKGROUP: &str = include_str!("../../../shaders/matvec_workgroup.wgsl");
const MATVEC_SUBGROUP: &str = include_str!("../../../shaders/matvec_subgroup.wgsl");
pub(crate) const BATCH_TOKENS: &str = include_str!("../../../shaders/batch_tokens.wgsl");
/// Where the batch kernels (`batch_tokens.wgsl`) bind the step uniform.
pub(crate) const STEP_BINDING: u32 = 5;

/// Invocations per workgroup of the barrier-free drivers (`matvec_rows.wgsl` and
/// `matmul_rows.wgsl`), rows each computes (their code is written for 8), and rows per workgroup.
pub(crate) const ROWS_WORKGROUP: u64 = 16;
pub(crate) const ROWS_PER_INVOCATION: u64 = 8;
pub(crate) const ROWS_PER_WORKGROUP: u64 = ROWS_WORKGROUP * ROWS_PER_INVOCATION;
/// Invocations per workgroup of `matvec_workgroup.wgsl`, and rows each group of them shares.
const REDUCE_WORKGROUP: u64 = 256;
const REDUCE_ROWS: u64 = 4;
/// Invocations per workgroup of `matvec_subgroup.wgsl`, and rows each subgroup computes.
const SUBGROUP_WORKGROUP: u64 = 128;
const SUBGROUP_ROWS: u64 = 4;

/// The WGSL that decodes the units of a table row's type (`unit_values`), for a driver to
/// follow: the common part, the bindings of the planes the type has, the helpers it names, its
/// decoder.
pub(crate) fn decode_source(t: &GpuType) -> String {
    let mut parts = vec![QUANT_COMMON.to_string()];
    let element = ["vec4<u32>", "u32", "u32"];
    for (p, name) in ["quants", "scales", "aux"].into_iter().enumerate() {
        if p == 0 || !t.planes[p].is_empty() {
            parts.push(format!(
                "@group(0) @binding({}) var<storage, read> {name}: array<{}>;",
                PLANE_BINDINGS[p], element[p]
            ));
        }
    }
    if t.scale_format == ScaleFormat::F16 {
        parts.push(QUANT_SCALES_F16.to_string());
    }
    for helper in t.helpers {
        parts.push(match helper {
            Helper::KScaleMin => QUANT_K_SCALES.to_string(),
            Helper::Iq4Grid => iq4_source(),
        });
    }
    parts.push(t.decoder.to_string());
    parts.join("\n")
}

/// `quant_iq4.wgsl` with the grid of `quant::IQ4_VALUES` as four words of signed bytes (entry
/// n is byte n % 4 of word n / 4), so the CPU and GPU read one table.
fn iq4_source() -> String {
    let words: Vec<String> = crate::quant::IQ4_VALUES
        .chunks_exact(4)
        .map(|c| {
            format!(
                "{:#010x}u",
                u32::from_le_bytes([c[0] as u8, c[1] as u8, c[2] as u8, c[3] as u8])
            )
        })
        .collect();
    let grid = format!("const IQ4_GRID = vec4<u32>({});", words.join(", "));
    [grid.as_str(), QUANT_IQ4].join("\n")
}

/// `Params` of `quant_common.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, Pod, Zeroable)]
pub(crate) struct WeightParams {
    pub rows: u32,
    pub cols: u32,
    pub qstride: u32,
    pub sstride: u32,
    pub n_tokens: u32,
    pub accumulate: u32,
    pub threads_per_row: u32,
    pub first_row: u32,
    pub total_rows: u32,
    /// Multiplies the embedding gather's output.
    pub scale: f32,
    /// The gated input's up values, in vec4s after gate's (`MatVecInput::Gated`).
    pub up_offset: u32,
    pub astride: u32,
    pub route_start: [u32; 4],
    pub route_base: [u32; 4],
    pub route_stride: [u32; 4],
    /// The normed input's epsilon (`MatVecInput::Normed`).
    pub eps: f32,
    pub _pad: [u32; 3],
}

impl WeightParams {
    /// The fields that describe `part` of `w`.
    pub(crate) fn for_part(w: &GpuWeight, part: &WeightPart) -> WeightParams {
        WeightParams {
            rows: part.n_rows as u32,
            cols: w.cols as u32,
            qstride: (w.layout.row_bytes[0] / 16) as u32,
            sstride: (w.layout.row_bytes[1] / 4) as u32,
            astride: (w.layout.row_bytes[2] / 4) as u32,
            first_row: part.first_row as u32,
            total_rows: w.rows as u32,
            scale: 1.0,
            route_start: [u32::MAX; 4],
            ..Default::default()
        }
    }

    /// Send each row range's outputs where `routes` says.
    pub(crate) fn routed(mut self, routes: &[Route]) -> WeightParams {
        for (m, route) in routes.iter().enumerate() {
            self.route_start[m] = route.first_row as u32;
            self.route_base[m] = route.base as u32;
            self.route_stride[m] = route.stride as u32;
        }
        self
    }
}

/// Where rows `first_row .. first_row + rows` of a weight write: row `first_row + r` of token
/// `t` goes to element `base + t * stride + r` of the output (`stride` unused for one token).
/// A weight's routes cover its rows in order; a stacked weight's members, or the q, k and v
/// rows of one fused tensor, each get one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub first_row: u64,
    pub rows: u64,
    pub base: u64,
    pub stride: u64,
}

impl Route {
    /// Every row where a single tensor of `w.rows` rows would put it: from `y_offset` on,
    /// `w.rows` apart per token.
    pub fn contiguous(w: &GpuWeight, y_offset: u64) -> Vec<Route> {
        vec![Route {
            first_row: 0,
            rows: w.rows,
            base: y_offset,
            stride: w.rows,
        }]
    }
}

/// One pipeline of `driver` (its substitutions made, its features declared) after each type's
/// decoder, per type in `types` (a model compiles only the types it holds: pipeline creation
/// is the bulk of a load on emulated adapters).
pub(crate) async fn compile(
    ctx: &GpuContext,
    family: &str,
    driver: &ShaderSource,
    types: &[GgmlType],
) -> Result<Vec<(GgmlType, Kernel)>> {
    let mut kernels = Vec::with_capacity(types.len());
    for &ty in types {
        let t = gpu_type(ty).ok_or_else(|| Error::UnsupportedTensorType {
            tensor: format!("({family})"),
            ty: ty.name().to_string(),
            hint: GPU_TYPES_HINT.as_str(),
        })?;
        let name = format!("{family}_{}", ty.name().to_lowercase());
        let source = driver.clone().prepend(&decode_source(t));
        kernels.push((ty, Kernel::new(ctx, &name, source).await?));
    }
    Ok(kernels)
}

pub(crate) fn kernel_for<'a>(
    kernels: &'a [(GgmlType, Kernel)],
    w: &GpuWeight,
) -> Result<&'a Kernel> {
    kernels
        .iter()
        .find(|(ty, _)| *ty == w.ty)
        .map(|(_, k)| k)
        .ok_or_else(|| Error::UnsupportedTensorType {
            tensor: w.name.clone(),
            ty: w.ty.name().to_string(),
            hint: " by this kernel",
        })
}

/// The bindings of one part: params (0), input (2), output (3), and the planes the type has
/// at their `PLANE_BINDINGS`.
pub(crate) fn part_bindings<'a>(
    w: &'a GpuWeight,
    part: &'a WeightPart,
    params: &'a wgpu::Buffer,
    input: wgpu::BufferBinding<'a>,
    output: &'a wgpu::Buffer,
) -> Vec<(u32, wgpu::BufferBinding<'a>)> {
    let mut bindings = vec![(0, whole(params)), (2, input), (3, whole(output))];
    bindings.extend(w.plane_bindings(part));
    bindings
}

/// A batch kernel's bindings: `part_bindings`, then the step uniform.
pub(crate) fn batch_bindings<'a>(
    mut part: Vec<(u32, wgpu::BufferBinding<'a>)>,
    step: &'a wgpu::Buffer,
) -> Vec<(u32, wgpu::BufferBinding<'a>)> {
    part.push((STEP_BINDING, whole(step)));
    part
}

/// Check that `x` holds `n_tokens` rows of `w.cols` f32, that every member's routed outputs
/// for `n_tokens` tokens fit in `y`, and that x and y are different buffers.
pub(crate) fn check_io(
    w: &GpuWeight,
    x: &wgpu::BufferBinding<'_>,
    n_tokens: u64,
    y: &wgpu::Buffer,
    routes: &[Route],
) -> Result<()> {
    let x_needed = n_tokens * w.cols * 4;
    if binding_bytes(x) < x_needed {
        return Err(Error::InvalidArgument(format!(
            "`{}`: x holds {} bytes, {n_tokens} token(s) of {} values need {x_needed}",
            w.name,
            binding_bytes(x),
            w.cols
        )));
    }
    check_routes(w, routes)?;
    for route in routes {
        let y_end = route.base + (n_tokens - 1) * route.stride + route.rows;
        if y.size() < y_end * 4 || y_end > u32::MAX as u64 {
            return Err(Error::InvalidArgument(format!(
                "`{}`: y holds {} bytes, outputs up to element {y_end} need {}",
                w.name,
                y.size(),
                y_end * 4
            )));
        }
    }
    if x.buffer == y {
        return Err(Error::InvalidArgument(format!(
            "`{}`: x and y must be different buffers",
            w.name
        )));
    }
    Ok(())
}

/// Check that `routes` tile the rows of `w` in order (the shader picks a row's route by its
/// start), at most 4 of them.
pub(crate) fn check_routes(w: &GpuWeight, routes: &[Route]) -> Result<()> {
    let mut next_row = 0;
    for r in routes {
        if r.first_row != next_row || r.rows == 0 {
            next_row = u64::MAX;
            break;
        }
        next_row += r.rows;
    }
    if routes.is_empty() || routes.len() > 4 || next_row != w.rows {
        return Err(Error::InvalidArgument(format!(
            "`{}`: {} output routes do not cover its {} rows in order (at most 4 routes)",
            w.name,
            routes.len(),
            w.rows
        )));
    }
    Ok(())
}

/// How a matrix-vector product is spread over invocations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatVecVariant {
    /// Each invocation computes 8 rows, no barriers (CPU emulators).
    RowsPerInvocation,
    /// Several invocations share a group of 4 rows, neighbours taking neighbouring units, and
    /// meet in a tree reduction in workgroup memory (real GPUs).
    RowsPerWorkgroup,
    /// One subgroup shares a group of 4 rows and meets in one `subgroupAdd` (real GPUs with
    /// the `subgroups` feature).
    Subgroup,
}

impl MatVecVariant {
    pub fn for_context(ctx: &GpuContext) -> MatVecVariant {
        match (ctx.is_cpu, ctx.features.subgroups) {
            (true, _) => MatVecVariant::RowsPerInvocation,
            (false, true) => MatVecVariant::Subgroup,
            (false, false) => MatVecVariant::RowsPerWorkgroup,
        }
    }

    /// The variants `ctx` can run (tests run each).
    pub fn available(ctx: &GpuContext) -> Vec<MatVecVariant> {
        let mut variants = vec![
            MatVecVariant::RowsPerInvocation,
            MatVecVariant::RowsPerWorkgroup,
        ];
        if ctx.features.subgroups {
            variants.push(MatVecVariant::Subgroup);
        }
        variants
    }
}

/// y = W x (or y += W x) for one token, x as a [`MatVecInput`] gives it, written as an
/// [`OutputKind`] says.
pub struct MatVec {
    variant: MatVecVariant,
    /// Per input and output kind, one pipeline per weight type.
    kernels: Vec<(InputKind, OutputKind, Pipelines)>,
}

/// One pipeline per weight type.
type Pipelines = Vec<(GgmlType, Kernel)>;

impl MatVec {
    /// The variant suited to the adapter, for every GPU type.
    pub async fn new(ctx: &GpuContext) -> Result<MatVec> {
        Self::with_variant(ctx, MatVecVariant::for_context(ctx)).await
    }

    /// A chosen variant (tests run both on one adapter).
    pub async fn with_variant(ctx: &GpuContext, variant: MatVecVariant) -> Result<MatVec> {
        Self::with_variant_for_inputs(ctx, variant, &[(InputKind::X, &GPU_TYPES)]).await
    }

    /// The adapter's variant for just these weight types (what a model needs).
    pub async fn for_types(ctx: &GpuContext, types: &[GgmlType]) -> Result<MatVec> {
        Self::for_inputs(ctx, &[(InputKind::X, types)]).await
    }

    /// The adapter's variant for each input kind with the weight types it is used with.
    pub async fn for_inputs(ctx: &GpuContext, uses: &[(InputKind, &[GgmlType])]) -> Result<MatVec> {
        Self::with_variant_for_inputs(ctx, MatVecVariant::for_context(ctx), uses).await
    }

    /// The adapter's variant for each input and output kind with the weight types it is used
    /// with.
    pub async fn for_outputs(
        ctx: &GpuContext,
        uses: &[(InputKind, OutputKind, &[GgmlType])],
    ) -> Result<MatVec> {
        Self::build(ctx, MatVecVariant::for_context(ctx), uses).await
    }

    /// A chosen variant for each input kind with the weight types it is used with (tests).
    pub async fn with_variant_for_inputs(
        ctx: &GpuContext,
        variant: MatVecVariant,
        uses: &[(InputKind, &[GgmlType])],
    ) -> Result<MatVec> {
        let uses: Vec<_> = uses.iter().map(|&(k, t)| (k, OutputKind::Y, t)).collect();
        Self::build(ctx, variant, &uses).await
    }

    /// A chosen variant for each input and output kind with the weight types it is used with
    /// (tests).
    pub async fn build(
        ctx: &GpuContext,
        variant: MatVecVariant,
        uses: &[(InputKind, OutputKind, &[GgmlType])],
    ) -> Result<MatVec> {
        let (family, driver, [workgroup, rows], features): (_, _, _, &[_]) = match variant {
            MatVecVariant::RowsPerInvocation => (
                "matvec_rows",
                MATVEC_ROWS,
                [ROWS_WORKGROUP, ROWS_PER_INVOCATION],
                &[],
            ),
            MatVecVariant::RowsPerWorkgroup => (
                "matvec_workgroup",
                MATVEC_WORKGROUP,
                [REDUCE_WORKGROUP, REDUCE_ROWS],
                &[],
            ),
            MatVecVariant::Subgroup if !ctx.features.subgroups => {
                return Err(Error::Gpu(
                    "the subgroup matvec needs the adapter's `subgroups` feature".into(),
                ))
            }
            MatVecVariant::Subgroup => (
                "matvec_subgroup",
                MATVEC_SUBGROUP,
                [SUBGROUP_WORKGROUP, SUBGROUP_ROWS],
                &[ShaderFeature::Subgroups],
            ),
        };
        let mut kernels = Vec::with_capacity(uses.len());
        for &(kind, output, types) in uses {
            let (suffix, input) = kind.source();
            let (out_suffix, out) = output.source();
            let driver = [MATVEC_COMMON, input.as_str(), out.as_str(), driver].join("\n");
            let family = format!("{family}{suffix}{out_suffix}");
            let driver = ShaderSource::new(&driver)
                .define("WORKGROUP", workgroup)
                .define("ROWS", rows)
                .uses_all(features)
                .uses_all(output.features());
            let pipelines = compile(ctx, &family, &driver, types).await?;
            kernels.push((kind, output, pipelines));
        }
        Ok(MatVec { variant, kernels })
    }

    pub fn variant(&self) -> MatVecVariant {
        self.variant
    }

    /// `y[y_offset + r] = dot(W row r, x)` for every row r of `w` (`+=` when `accumulate`):
    /// one op per part of `w`. `x` holds `w.cols` f32; `y` is another buffer.
    pub fn op(
        &self,
        ctx: &GpuContext,
        w: &GpuWeight,
        x: wgpu::BufferBinding<'_>,
        y: &wgpu::Buffer,
        y_offset: u64,
        accumulate: bool,
    ) -> Result<Vec<Op>> {
        self.op_routed(ctx, w, x, y, &Route::contiguous(w, y_offset), accumulate)
    }

    /// [`op_routed`](Self::op_routed) with x plain.
    pub fn op_routed(
        &self,
        ctx: &GpuContext,
        w: &GpuWeight,
        x: wgpu::BufferBinding<'_>,
        y: &wgpu::Buffer,
        routes: &[Route],
        accumulate: bool,
    ) -> Result<Vec<Op>> {
        self.op_input(ctx, w, MatVecInput::X(x), y, routes, accumulate)
    }

    /// [`op`](Self::op) with each stacked member's outputs at its own place in `y`
    /// (`routes[m].base`), of the input `input` gives: one dispatch (per part) for all the
    /// members.
    pub fn op_input(
        &self,
        ctx: &GpuContext,
        w: &GpuWeight,
        input: MatVecInput<'_>,
        y: &wgpu::Buffer,
        routes: &[Route],
        accumulate: bool,
    ) -> Result<Vec<Op>> {
        check_io(w, input.x(), 1, y, routes)?;
        let output = (OutputKind::Y, Vec::new());
        self.op_output(ctx, w, input, y, routes, accumulate, output)
    }

    /// [`op_input`](Self::op_input)'s dispatches, writing as `output` says with its
    /// bindings, once the caller has checked x, y and the routes.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn op_output(
        &self,
        ctx: &GpuContext,
        w: &GpuWeight,
        input: MatVecInput<'_>,
        y: &wgpu::Buffer,
        routes: &[Route],
        accumulate: bool,
        (output, output_bindings): (OutputKind, Vec<(u32, wgpu::BufferBinding<'_>)>),
    ) -> Result<Vec<Op>> {
        input.check(w, y)?;
        let wanted = |(kind, out, _): &&(_, _, _)| *kind == input.kind() && *out == output;
        let kernels = self.kernels.iter().find(wanted);
        let kernels = kernels.map(|(_, _, k)| k.as_slice()).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "`{}`: no matvec pipeline for a {:?} input and {output:?} output",
                w.name,
                input.kind()
            ))
        })?;
        let kernel = kernel_for(kernels, w)?;
        let (up_offset, eps) = input.params();
        // Enough invocations per row group that each takes about one unit of a short row
        // (576 values: 18 units, 32 invocations) and a few of a long one.
        let threads_per_row = w.cols.div_ceil(UNIT).next_power_of_two().clamp(1, 64);
        let mut ops = Vec::with_capacity(w.parts.len());
        for part in &w.parts {
            let params = WeightParams {
                accumulate: accumulate as u32,
                threads_per_row: threads_per_row as u32,
                n_tokens: 1,
                up_offset,
                eps,
                ..WeightParams::for_part(w, part)
            }
            .routed(routes);
            let rows_per_workgroup = match self.variant {
                MatVecVariant::RowsPerInvocation => ROWS_PER_WORKGROUP,
                MatVecVariant::RowsPerWorkgroup => REDUCE_WORKGROUP / threads_per_row * REDUCE_ROWS,
                // Sized for the largest subgroups: the fewest row groups per workgroup.
                MatVecVariant::Subgroup => {
                    SUBGROUP_WORKGROUP / ctx.subgroup_max_size().min(SUBGROUP_WORKGROUP)
                        * SUBGROUP_ROWS
                }
            };
            let [gx, gy] = grid(ctx, part.n_rows.div_ceil(rows_per_workgroup), &kernel.name)?;
            let params = uniform_buffer(ctx, &kernel.name, &params);
            let mut bindings = part_bindings(w, part, &params, input.x().clone(), y);
            bindings.extend(input.extra_bindings());
            bindings.extend(output_bindings.iter().cloned());
            ops.push(kernel.op_at(ctx, &bindings, [gx, gy, 1]));
        }
        Ok(ops)
    }
}

// RMSNorm, one workgroup per row (for real GPUs): out = x / sqrt(mean(x^2) + eps) * w.
// Each invocation sums the squares of a strided slice of the row; a tree in workgroup memory
// adds the slices. CPU emulators, where barriers are slow, use rmsnorm_rows.wgsl instead.

struct Step { pos: u32, n_tokens: u32, sample_step: u32, pad: u32 }
struct Params { dim: u32, eps: f32, pad0: u32, pad1: u32 }

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> params: Params;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> w: array<f32>;
// `=`, or `+=` for a post-norm added to the residual stream (Gemma's post_attention_norm).
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

const WG: u32 = {{WG}}u;
var<workgroup> sums: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = wg.x;
    // Uniform across the workgroup, so the barriers below are reached by all or none.
    if (row >= step.n_tokens) {
        return;
    }
    let base = row * params.dim;
    var s = 0.0;
    for (var i = lid; i < params.dim; i += WG) {
        let v = x[base + i];
        s += v * v;
    }
    sums[lid] = s;
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        workgroupBarrier();
        if (lid < stride) {
            sums[lid] += sums[lid + stride];
        }
    }
    workgroupBarrier();
    let scale = 1.0 / sqrt(sums[0] / f32(params.dim) + params.eps);
    for (var i = lid; i < params.dim; i += WG) {
        out[base + i] {{STORE}} x[base + i] * scale * w[i];
    }
}

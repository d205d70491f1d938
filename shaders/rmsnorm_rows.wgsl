// RMSNorm, one invocation per row (for CPU emulators, where workgroup barriers cost more than
// the serial sum): out = x / sqrt(mean(x^2) + eps) * w. Same bindings as rmsnorm.wgsl.

struct Step { pos: u32, n_tokens: u32, sample_step: u32, pad: u32 }
struct Params { dim: u32, eps: f32, pad0: u32, pad1: u32 }

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> params: Params;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> w: array<f32>;
// `=`, or `+=` for a post-norm added to the residual stream (Gemma's post_attention_norm).
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    let row = id.x;
    if (row >= step.n_tokens) {
        return;
    }
    let base = row * params.dim;
    var s = 0.0;
    for (var i = 0u; i < params.dim; i++) {
        let v = x[base + i];
        s += v * v;
    }
    let scale = 1.0 / sqrt(s / f32(params.dim) + params.eps);
    for (var i = 0u; i < params.dim; i++) {
        out[base + i] {{STORE}} x[base + i] * scale * w[i];
    }
}

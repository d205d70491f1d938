// The gated activation in place over the step's n_tokens rows of `width` values:
// gate[t][i] = act(gate[t][i]) * up[t][i], act = {{ACT}} (SwiGLU or GeGLU). (Residual adds need
// no kernel: the output projections accumulate into x, see matvec.rs.) Prefill only: a decode
// step's down projection applies the gate as it reads its input (matvec_input_gated.wgsl).
// The activations are in activation.wgsl.

struct Step { pos: u32, n_tokens: u32, sample_step: u32, pad: u32 }
struct Params { width: u32, pad0: u32, pad1: u32, pad2: u32 }

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> params: Params;
// Only read, but declared read_write: gate and up may be ranges of one buffer (the stacked
// gate/up projection's output), which may not be bound both read-only and writable.
@group(0) @binding(2) var<storage, read_write> up: array<f32>;
@group(0) @binding(3) var<storage, read_write> gate: array<f32>;

@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    let t = id.y;
    let i = id.x;
    let w = params.width;
    if (t >= step.n_tokens || i >= w) {
        return;
    }
    let o = t * w + i;
    gate[o] = {{ACT}}(vec4<f32>(gate[o])).x * up[o];
}

// The gate activations of the feed-forward block (ffn.wgsl, and the down projection's gated
// input, matvec_input_gated.wgsl), on four values at once.

fn silu(x: vec4<f32>) -> vec4<f32> {
    return x / (1.0 + exp(-x));
}

// GELU, tanh approximation: 0.5 x (1 + tanh(y)) = x / (1 + exp(-2y)), y = sqrt(2/pi) (x +
// 0.044715 x^3). The sigmoid form has no cancellation where tanh(y) is near -1 and stays finite
// for every y (exp overflowing to inf gives -0), where a builtin tanh may be a quotient of
// exponentials that is inf / inf for large inputs.
fn gelu_tanh(x: vec4<f32>) -> vec4<f32> {
    let y = 0.7978846 * (x + 0.044715 * x * x * x);
    return x / (1.0 + exp(-2.0 * y));
}

// A matvec's input is rmsnorm(x) * norm_weight (matvec_input.rs, MatVecInput::Normed): the
// RMSNorm that precedes a projection, folded into it. The row scale 1 / sqrt(mean(x^2) + eps) is
// one number per token, so it multiplies the finished dot products instead of every input value
// (dot(W, s x w) = s dot(W, x w)); its sum of squares is taken from the x values the product
// loads anyway, so the fused norm costs no extra pass over x and no barrier. (The three
// functions are described in matvec_input_x.wgsl.)

@group(0) @binding(7) var<storage, read> norm_weight: array<vec4<f32>>;

fn input_of(raw: Unit, u: u32) -> Unit {
    let b = 8u * u;
    // Past `cols` x is zero (x_unit), so the weight's value there does not matter; clamped to
    // stay in bounds.
    let last = arrayLength(&norm_weight) - 1u;
    return Unit(
        raw[0] * norm_weight[min(b, last)],
        raw[1] * norm_weight[min(b + 1u, last)],
        raw[2] * norm_weight[min(b + 2u, last)],
        raw[3] * norm_weight[min(b + 3u, last)],
        raw[4] * norm_weight[min(b + 4u, last)],
        raw[5] * norm_weight[min(b + 5u, last)],
        raw[6] * norm_weight[min(b + 6u, last)],
        raw[7] * norm_weight[min(b + 7u, last)],
    );
}

fn squares(raw: Unit) -> f32 {
    return dot_unit(raw, raw);
}

fn finish(acc: vec4<f32>, ss: f32) -> vec4<f32> {
    return acc * inverseSqrt(ss / f32(params.cols) + params.eps);
}

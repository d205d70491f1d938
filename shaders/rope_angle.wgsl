// cos and sin of a RoPE angle, shared by rope.wgsl and the q/k/v matvec's RoPE epilogue
// (matvec_output_rope.wgsl), so both rotate by the same numbers.

// 2 pi split so that k * TWO_PI_HI is exact in f32 for k < 2^16 (6.28125 has 8 significant bits).
const TWO_PI_HI: f32 = 6.28125;
const TWO_PI_LO: f32 = 0.0019353071795864769;
const INV_TWO_PI: f32 = 0.15915494309189535;
// pi / 2 split the same way (1.5703125 has 8 significant bits), for the quadrant reduction.
const HALF_PI_HI: f32 = 1.5703125;
const HALF_PI_LO: f32 = 0.00048382679489661923;
const TWO_OVER_PI: f32 = 0.6366197723675814;

// sin and cos on [-pi/4, pi/4] by their Taylor series to degree 11 and 10: the first omitted
// terms are below 3e-8, half an f32 ulp of 1. Not the builtins: WGSL bounds their error only
// by 2^-11 absolute, and SwiftShader (Chrome's WebGPU without a GPU) comes close to that,
// which moved a small model's logits by ~1e-3 against the CPU reference.
fn sin_near_zero(y: f32) -> f32 {
    let y2 = y * y;
    return y * (1.0 + y2 * (-1.6666667e-1 + y2 * (8.3333333e-3 + y2 * (-1.9841270e-4
        + y2 * (2.7557319e-6 + y2 * -2.5052108e-8)))));
}

fn cos_near_zero(y: f32) -> f32 {
    let y2 = y * y;
    return 1.0 + y2 * (-0.5 + y2 * (4.1666667e-2 + y2 * (-1.3888889e-3 + y2 * (2.4801587e-5
        + y2 * -2.7557319e-7))));
}

// (cos, sin) of theta: reduced to [-pi, pi] (Cody-Waite), then to a quadrant and the series.
fn cos_sin(theta: f32) -> vec2<f32> {
    let n = round(theta * INV_TWO_PI);
    let r = (theta - n * TWO_PI_HI) - n * TWO_PI_LO;
    let quadrant = round(r * TWO_OVER_PI);
    let y = (r - quadrant * HALF_PI_HI) - quadrant * HALF_PI_LO;
    let c = cos_near_zero(y);
    let s = sin_near_zero(y);
    // r = y + quadrant * pi/2 with quadrant in -2..2.
    switch (i32(quadrant) + 4) % 4 {
        case 1: { return vec2<f32>(-s, c); }
        case 2: { return vec2<f32>(-c, -s); }
        case 3: { return vec2<f32>(s, -c); }
        default: { return vec2<f32>(c, s); }
    }
}

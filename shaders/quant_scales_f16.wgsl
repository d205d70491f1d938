// A `scales` plane of one f16 per block, two to a u32 (low half first): Q4_0, Q8_0, Q6_K.

@group(0) @binding(4) var<storage, read> scales: array<u32>;

// Scale `k` of the row whose scales start at word `srow`.
fn scale_f16(srow: u32, k: u32) -> f32 {
    return unpack2x16float(scales[srow + k / 2u])[k % 2u];
}

// A `scales` plane of one f16 per block, two to a u32 (low half first): the types whose table
// row says ScaleFormat::F16 (Q4_0, Q5_0, Q8_0, Q3_K, Q6_K, IQ4_NL).

// Scale `k` (of block k) of row `row`.
fn scale_f16(row: u32, k: u32) -> f32 {
    return unpack2x16float(scales[scales_row(row) + k / 2u])[k % 2u];
}

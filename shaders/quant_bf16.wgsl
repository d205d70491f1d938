// BF16: a unit is 32 values, four vec4<u32>s of bf16 pairs (low half first). A bf16 is the top
// half of an f32, so decoding is a shift: exact, and no f16 support needed.
fn unit_values(row: u32, u: u32) -> Unit {
    let b = quants_row(row) + 4u * u;
    let h0 = quants[b];
    let h1 = quants[b + 1u];
    let h2 = quants[b + 2u];
    let h3 = quants[b + 3u];
    return Unit(
        bf16x4(h0.xy), bf16x4(h0.zw), bf16x4(h1.xy), bf16x4(h1.zw),
        bf16x4(h2.xy), bf16x4(h2.zw), bf16x4(h3.xy), bf16x4(h3.zw),
    );
}

// Four bf16 values from two words (low half first).
fn bf16x4(h: vec2<u32>) -> vec4<f32> {
    let top = 0xFFFF0000u;
    return bitcast<vec4<f32>>(vec4<u32>(h.x << 16u, h.x & top, h.y << 16u, h.y & top));
}

// F16: a unit is 32 values, four vec4<u32>s of f16 pairs (low half first).
fn unit_values(row: u32, u: u32) -> Unit {
    let b = quants_row(row) + 4u * u;
    let h0 = quants[b];
    let h1 = quants[b + 1u];
    let h2 = quants[b + 2u];
    let h3 = quants[b + 3u];
    return Unit(
        halves4(h0.xy), halves4(h0.zw), halves4(h1.xy), halves4(h1.zw),
        halves4(h2.xy), halves4(h2.zw), halves4(h3.xy), halves4(h3.zw),
    );
}

// Four f16 values from two words (low half first).
fn halves4(h: vec2<u32>) -> vec4<f32> {
    return vec4<f32>(unpack2x16float(h.x), unpack2x16float(h.y));
}

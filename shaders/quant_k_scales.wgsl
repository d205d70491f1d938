// The header of a Q4_K/Q5_K super-block: after f16 d and dmin (word 0 of its first vec4),
// 12 bytes (words 1..3) pack eight 6-bit (scale, min) pairs.

// Byte k (0..12) of the packed scales (words 1..3 of the block's first vec4).
fn scale_byte(s: vec3<u32>, k: u32) -> u32 {
    return (s[k / 4u] >> (8u * (k % 4u))) & 0xFFu;
}

// Scale and min j as ggml's get_scale_min_k4: pairs 0..3 are the low 6 bits of bytes j and
// j + 4; pairs 4..7 take 4 bits from byte j + 4 and their top 2 bits from the spare high bits
// of bytes j - 4 (scale) and j (min).
fn scale_min(s: vec3<u32>, j: u32) -> vec2<f32> {
    if (j < 4u) {
        return vec2<f32>(f32(scale_byte(s, j) & 63u), f32(scale_byte(s, j + 4u) & 63u));
    }
    let sc = (scale_byte(s, j + 4u) & 0xFu) | ((scale_byte(s, j - 4u) >> 6u) << 4u);
    let m = (scale_byte(s, j + 4u) >> 4u) | ((scale_byte(s, j) >> 6u) << 4u);
    return vec2<f32>(f32(sc), f32(m));
}

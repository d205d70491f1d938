// Q4_K: a super-block of 256 values is 9 vec4<u32>, unchanged from GGUF: f16 d and dmin, 12
// bytes packing eight 6-bit (scale, min) pairs, then 128 bytes of nibbles. Unit g (0..8) of a
// block is values 32g .. 32g+31: the low (even g) or high (odd g) nibbles of bytes
// 32 (g / 2) .. 32 (g / 2) + 31, with scale/min pair g; value = (d sc) q - dmin m.

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

fn unit_values(qrow: u32, srow: u32, u: u32) -> Unit {
    let block = qrow + 9u * (u / 8u);
    let g = u % 8u;
    let head = quants[block];
    let dmin = unpack2x16float(head.x);
    let sm = scale_min(head.yzw, g);
    let scale = dmin.x * sm.x;
    let offset = dmin.y * sm.y;
    // The 32 bytes holding this unit's nibbles.
    let shift = vec4<u32>(4u * (g % 2u));
    let lo = (quants[block + 1u + 2u * (g / 2u)] >> shift) & vec4<u32>(0x0F0F0F0Fu);
    let hi = (quants[block + 2u + 2u * (g / 2u)] >> shift) & vec4<u32>(0x0F0F0F0Fu);
    return Unit(
        bytes4(lo.x) * scale - offset, bytes4(lo.y) * scale - offset,
        bytes4(lo.z) * scale - offset, bytes4(lo.w) * scale - offset,
        bytes4(hi.x) * scale - offset, bytes4(hi.y) * scale - offset,
        bytes4(hi.z) * scale - offset, bytes4(hi.w) * scale - offset,
    );
}

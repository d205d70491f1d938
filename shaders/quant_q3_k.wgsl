// Q3_K: a super-block of 256 values keeps 96 bytes in `quants` (6 vec4<u32>): hmask[32] (third
// bits), then qs[64] (low 2 bits); the 12 bytes packing sixteen 6-bit scales are 3 u32 in
// `aux`, the f16 d is in `scales`. Unit g (0..8) of a block, with n = g / 4 and j = g % 4:
// values 32g + l (l 0..32) take bits 2j of qs[32n + l] and bit g of hmask[l]; the first 16 use
// scale 2g, the next 16 scale 2g + 1; a clear hmask bit subtracts 4:
// value = (d (sc - 32)) ((q | hbit << 2) - 4).
fn unit_values(row: u32, u: u32) -> Unit {
    let b = u / 8u;
    let g = u % 8u;
    let n = g / 4u;
    let block = quants_row(row) + 6u * b;
    let packed = aux_row(row) + 3u * b;
    // Scale s takes its low 4 bits from packed byte s % 8 (low nibble for s < 8, high after)
    // and its top 2 from byte 8 + s % 4 at bit 2 (s / 4). For s = 2g, 2g + 1 those are bytes
    // 2 (g % 2) and the next of word (g % 4) / 2, nibble n; and of word 2, bits 2 (g / 2).
    let low = aux[packed + (g % 4u) / 2u] >> (16u * (g % 2u) + 4u * n);
    let high = aux[packed + 2u] >> (16u * (g % 2u) + 2u * (g / 2u));
    let d = scale_f16(row, b);
    let scale0 = d * (f32((low & 0xFu) | ((high & 3u) << 4u)) - 32.0);
    let scale1 = d * (f32(((low >> 8u) & 0xFu) | (((high >> 8u) & 3u) << 4u)) - 32.0);
    let shift = vec4<u32>(2u * (g % 4u));
    let hbit = vec4<u32>(g);
    let q0 = ((quants[block + 2u + 2u * n] >> shift) & vec4<u32>(0x03030303u))
        | (((quants[block] >> hbit) & vec4<u32>(0x01010101u)) << vec4<u32>(2u));
    let q1 = ((quants[block + 3u + 2u * n] >> shift) & vec4<u32>(0x03030303u))
        | (((quants[block + 1u] >> hbit) & vec4<u32>(0x01010101u)) << vec4<u32>(2u));
    return Unit(
        scale0 * (bytes4(q0.x) - 4.0), scale0 * (bytes4(q0.y) - 4.0),
        scale0 * (bytes4(q0.z) - 4.0), scale0 * (bytes4(q0.w) - 4.0),
        scale1 * (bytes4(q1.x) - 4.0), scale1 * (bytes4(q1.y) - 4.0),
        scale1 * (bytes4(q1.z) - 4.0), scale1 * (bytes4(q1.w) - 4.0),
    );
}

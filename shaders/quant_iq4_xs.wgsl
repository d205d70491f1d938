// IQ4_XS: a super-block of 256 values keeps its 128 bytes of grid indices in `quants` (8
// vec4<u32>, 16 bytes per 32 values, nibbles as IQ4_NL) and its first 8 bytes in `scales` as two
// u32: f16 d with u16 scales_h, then scales_l[4]. Unit g (0..8) has the 6-bit scale
// ls = nibble g of scales_l | bits 2g, 2g+1 of scales_h << 4; value = (d (ls - 32)) grid[q].
fn unit_values(row: u32, u: u32) -> Unit {
    let b = u / 8u;
    let g = u % 8u;
    let s = scales_row(row) + 2u * b;
    let head = scales[s];
    let ls = ((scales[s + 1u] >> (4u * g)) & 0xFu) | (((head >> (16u + 2u * g)) & 3u) << 4u);
    let d = unpack2x16float(head).x * f32(i32(ls) - 32);
    return iq4_unit(quants[quants_row(row) + 8u * b + g], d);
}

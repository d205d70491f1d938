// Q5_K: a super-block of 256 values is 11 vec4<u32>, unchanged from GGUF: the Q4_K header (f16
// d and dmin, eight 6-bit scale/min pairs), qh[32] (fifth bits), then 128 bytes of nibbles.
// Unit g (0..8) of a block is values 32g + l (l 0..32): nibble g % 2 of byte 32 (g / 2) + l,
// fifth bit g of qh[l], scale/min pair g (quant_k_scales.wgsl); value = (d sc) q - dmin m.
fn unit_values(row: u32, u: u32) -> Unit {
    let block = quants_row(row) + 11u * (u / 8u);
    let g = u % 8u;
    let head = quants[block];
    let dmin = unpack2x16float(head.x);
    let sm = scale_min(head.yzw, g);
    let scale = dmin.x * sm.x;
    let offset = dmin.y * sm.y;
    let shift = vec4<u32>(4u * (g % 2u));
    let hbit = vec4<u32>(g);
    let lo = ((quants[block + 3u + 2u * (g / 2u)] >> shift) & vec4<u32>(0x0F0F0F0Fu))
        | (((quants[block + 1u] >> hbit) & vec4<u32>(0x01010101u)) << vec4<u32>(4u));
    let hi = ((quants[block + 4u + 2u * (g / 2u)] >> shift) & vec4<u32>(0x0F0F0F0Fu))
        | (((quants[block + 2u] >> hbit) & vec4<u32>(0x01010101u)) << vec4<u32>(4u));
    return Unit(
        bytes4(lo.x) * scale - offset, bytes4(lo.y) * scale - offset,
        bytes4(lo.z) * scale - offset, bytes4(lo.w) * scale - offset,
        bytes4(hi.x) * scale - offset, bytes4(hi.y) * scale - offset,
        bytes4(hi.z) * scale - offset, bytes4(hi.w) * scale - offset,
    );
}

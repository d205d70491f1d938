// Q4_K: a super-block of 256 values is 9 vec4<u32>, unchanged from GGUF: f16 d and dmin, 12
// bytes packing eight 6-bit (scale, min) pairs, then 128 bytes of nibbles. Unit g (0..8) of a
// block is values 32g .. 32g+31: the low (even g) or high (odd g) nibbles of bytes
// 32 (g / 2) .. 32 (g / 2) + 31, with scale/min pair g (quant_k_scales.wgsl); value =
// (d sc) q - dmin m.
fn unit_values(row: u32, u: u32) -> Unit {
    let block = quants_row(row) + 9u * (u / 8u);
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

// Q2_K: a super-block of 256 values keeps 80 bytes in `quants` (5 vec4<u32>): 16 scale bytes
// (low nibble scale, high nibble min, one per 16 values), then qs[64] of 2-bit quants; its f16
// pair (d, dmin) is one u32 in `scales`. Unit g (0..8) of a block, with n = g / 4 (which
// 128-value half) and j = g % 4: values 32g + l take bits 2j of qs[32n + l] (l 0..32), the
// first 16 with scale byte 2g, the next 16 with 2g + 1; value = (d sc) q - dmin m.
fn unit_values(row: u32, u: u32) -> Unit {
    let block = quants_row(row) + 5u * (u / 8u);
    let g = u % 8u;
    let n = g / 4u;
    let dm = unpack2x16float(scales[scales_row(row) + u / 8u]);
    // Scale bytes 2g and 2g + 1: half g % 2 of word g / 2 of the first vec4.
    let sc = quants[block][g / 2u] >> (16u * (g % 2u));
    let scale0 = dm.x * f32(sc & 0xFu);
    let offset0 = dm.y * f32((sc >> 4u) & 0xFu);
    let scale1 = dm.x * f32((sc >> 8u) & 0xFu);
    let offset1 = dm.y * f32((sc >> 12u) & 0xFu);
    let shift = vec4<u32>(2u * (g % 4u));
    let q0 = (quants[block + 1u + 2u * n] >> shift) & vec4<u32>(0x03030303u);
    let q1 = (quants[block + 2u + 2u * n] >> shift) & vec4<u32>(0x03030303u);
    return Unit(
        bytes4(q0.x) * scale0 - offset0, bytes4(q0.y) * scale0 - offset0,
        bytes4(q0.z) * scale0 - offset0, bytes4(q0.w) * scale0 - offset0,
        bytes4(q1.x) * scale1 - offset1, bytes4(q1.y) * scale1 - offset1,
        bytes4(q1.z) * scale1 - offset1, bytes4(q1.w) * scale1 - offset1,
    );
}

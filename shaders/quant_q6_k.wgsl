// Q6_K: a super-block of 256 values keeps its first 208 bytes in `quants` (13 vec4<u32>):
// ql[128] (low 4 bits), qh[64] (high 2 bits), scales[16] (i8); its f16 d is in `scales`.
// Unit g (0..8) of a block is values 32g .. 32g+31; with n = g / 4 (which 128-value half) and
// k = g % 4, value 32g + l takes nibble k / 2 of ql[64n + 32 (k % 2) + l], bits 2k of
// qh[32n + l] and scale 8n + 2k + l / 16; value = (d sc) (q - 32).
fn unit_values(row: u32, u: u32) -> Unit {
    let block = quants_row(row) + 13u * (u / 8u);
    let g = u % 8u;
    let n = g / 4u;
    let k = g % 4u;
    // vec4s 0..7 of the block are ql, 8..11 qh, 12 the scales.
    let at = block + 4u * n + 2u * (k % 2u);
    let ql_shift = vec4<u32>(4u * (k / 2u));
    let qh_shift = vec4<u32>(2u * k);
    // Values 16h .. 16h+15 (h = 0, 1) take ql from vec4 h, qh from vec4 h, scale 8n + 2k + h.
    let q0 = ((quants[at] >> ql_shift) & vec4<u32>(0x0F0F0F0Fu))
        | (((quants[block + 8u + 2u * n] >> qh_shift) & vec4<u32>(0x03030303u)) << vec4<u32>(4u));
    let q1 = ((quants[at + 1u] >> ql_shift) & vec4<u32>(0x0F0F0F0Fu))
        | (((quants[block + 9u + 2u * n] >> qh_shift) & vec4<u32>(0x03030303u)) << vec4<u32>(4u));
    let packed_scales = quants[block + 12u];
    let d = scale_f16(row, u / 8u);
    let s = 8u * n + 2u * k;
    let scale0 = d * sbyte(packed_scales[s / 4u], s % 4u);
    let scale1 = d * sbyte(packed_scales[(s + 1u) / 4u], (s + 1u) % 4u);
    return Unit(
        scale0 * (bytes4(q0.x) - 32.0), scale0 * (bytes4(q0.y) - 32.0),
        scale0 * (bytes4(q0.z) - 32.0), scale0 * (bytes4(q0.w) - 32.0),
        scale1 * (bytes4(q1.x) - 32.0), scale1 * (bytes4(q1.y) - 32.0),
        scale1 * (bytes4(q1.z) - 32.0), scale1 * (bytes4(q1.w) - 32.0),
    );
}

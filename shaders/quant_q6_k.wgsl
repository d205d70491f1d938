// Q6_K: a super-block of 256 values keeps its first 208 bytes in `quants` (13 vec4<u32>):
// ql[128] (low 4 bits), qh[64] (high 2 bits), scales[16] (i8); its f16 d is in `scales`.
// Unit g (0..8) of a block is values 32g .. 32g+31; with n = g / 4 (which 128-value half) and
// k = g % 4, value 32g + l takes nibble k / 2 of ql[64n + 32 (k % 2) + l], bits 2k of
// qh[32n + l] and scale 8n + 2k + l / 16; value = (d sc) (q - 32).
fn unit_values(qrow: u32, srow: u32, u: u32) -> Unit {
    let block = qrow + 13u * (u / 8u);
    let g = u % 8u;
    let n = g / 4u;
    let k = g % 4u;
    // vec4s 0..7 of the block are ql, 8..11 qh, 12 the scales.
    let ql = array<vec4<u32>, 2>(quants[block + 4u * n + 2u * (k % 2u)], quants[block + 4u * n + 2u * (k % 2u) + 1u]);
    let qh = array<vec4<u32>, 2>(quants[block + 8u + 2u * n], quants[block + 9u + 2u * n]);
    let packed_scales = quants[block + 12u];
    let d = scale_f16(srow, u / 8u);
    var w: Unit;
    for (var h = 0u; h < 2u; h++) {
        // Values 16h .. 16h+15 share scale 8n + 2k + h.
        let s = 8u * n + 2u * k + h;
        let scale = d * sbyte(packed_scales[s / 4u], s % 4u);
        for (var j = 0u; j < 4u; j++) {
            let low = (ql[h][j] >> (4u * (k / 2u))) & 0x0F0F0F0Fu;
            let high = (qh[h][j] >> (2u * k)) & 0x03030303u;
            w[4u * h + j] = scale * (bytes4(low | (high << 4u)) - 32.0);
        }
    }
    return w;
}

// Q5_0: a unit is one block: 16 bytes of nibbles (one vec4<u32>, as Q4_0), the 32 fifth bits
// qh (one u32 in `aux`: bit j belongs to value j) and an f16 scale d; value = (q - 16) d.
// Word i of the nibbles holds values 4i .. 4i+3 (low nibbles) and 16 + 4i .. (high nibbles),
// so their fifth bits are bits 4i .. 4i+3 and 16 + 4i .. of qh.
fn unit_values(row: u32, u: u32) -> Unit {
    let q = quants[quants_row(row) + u];
    let qh = vec4<u32>(aux[aux_row(row) + u]);
    let d = scale_f16(row, u);
    let lo = (q & vec4<u32>(0x0F0F0F0Fu))
        | (spread4(qh >> vec4<u32>(0u, 4u, 8u, 12u)) << vec4<u32>(4u));
    let hi = ((q >> vec4<u32>(4u)) & vec4<u32>(0x0F0F0F0Fu))
        | (spread4(qh >> vec4<u32>(16u, 20u, 24u, 28u)) << vec4<u32>(4u));
    return Unit(
        (bytes4(lo.x) - 16.0) * d, (bytes4(lo.y) - 16.0) * d,
        (bytes4(lo.z) - 16.0) * d, (bytes4(lo.w) - 16.0) * d,
        (bytes4(hi.x) - 16.0) * d, (bytes4(hi.y) - 16.0) * d,
        (bytes4(hi.z) - 16.0) * d, (bytes4(hi.w) - 16.0) * d,
    );
}

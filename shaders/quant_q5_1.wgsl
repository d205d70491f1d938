// Q5_1: a unit is one block: nibbles and fifth bits as Q5_0 (quants, aux) and one u32 holding
// the f16 pair (d, m) in `scales`; value = q d + m.
fn unit_values(row: u32, u: u32) -> Unit {
    let q = quants[quants_row(row) + u];
    let qh = vec4<u32>(aux[aux_row(row) + u]);
    let dm = unpack2x16float(scales[scales_row(row) + u]);
    let lo = (q & vec4<u32>(0x0F0F0F0Fu))
        | (spread4(qh >> vec4<u32>(0u, 4u, 8u, 12u)) << vec4<u32>(4u));
    let hi = ((q >> vec4<u32>(4u)) & vec4<u32>(0x0F0F0F0Fu))
        | (spread4(qh >> vec4<u32>(16u, 20u, 24u, 28u)) << vec4<u32>(4u));
    return Unit(
        bytes4(lo.x) * dm.x + dm.y, bytes4(lo.y) * dm.x + dm.y,
        bytes4(lo.z) * dm.x + dm.y, bytes4(lo.w) * dm.x + dm.y,
        bytes4(hi.x) * dm.x + dm.y, bytes4(hi.y) * dm.x + dm.y,
        bytes4(hi.z) * dm.x + dm.y, bytes4(hi.w) * dm.x + dm.y,
    );
}

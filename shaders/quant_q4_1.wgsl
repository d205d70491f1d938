// Q4_1: a unit is one block: 16 bytes of nibbles (as Q4_0) and one u32 holding the f16 pair
// (d, m); value = q d + m.

@group(0) @binding(4) var<storage, read> scales: array<u32>;

fn unit_values(qrow: u32, srow: u32, u: u32) -> Unit {
    let q = quants[qrow + u];
    let dm = unpack2x16float(scales[srow + u]);
    var w: Unit;
    for (var k = 0u; k < 4u; k++) {
        w[k] = bytes4(q[k] & 0x0F0F0F0Fu) * dm.x + dm.y;
        w[k + 4u] = bytes4((q[k] >> 4u) & 0x0F0F0F0Fu) * dm.x + dm.y;
    }
    return w;
}

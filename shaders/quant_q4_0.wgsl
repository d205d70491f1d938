// Q4_0: a unit is one block: 16 bytes of nibbles (one vec4<u32>) and an f16 scale d.
// Byte j holds value j in its low nibble and value j + 16 in its high nibble, so word k's
// low nibbles are values 4k .. 4k+3 and its high nibbles values 16 + 4k ..; value = (q - 8) d.
fn unit_values(qrow: u32, srow: u32, u: u32) -> Unit {
    let q = quants[qrow + u];
    let d = scale_f16(srow, u);
    var w: Unit;
    for (var k = 0u; k < 4u; k++) {
        w[k] = (bytes4(q[k] & 0x0F0F0F0Fu) - 8.0) * d;
        w[k + 4u] = (bytes4((q[k] >> 4u) & 0x0F0F0F0Fu) - 8.0) * d;
    }
    return w;
}

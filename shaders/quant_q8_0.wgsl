// Q8_0: a unit is one block: 32 i8 (two vec4<u32>) and an f16 scale d; value = q d.
fn unit_values(qrow: u32, srow: u32, u: u32) -> Unit {
    let lo = quants[qrow + 2u * u];
    let hi = quants[qrow + 2u * u + 1u];
    let d = scale_f16(srow, u);
    var w: Unit;
    for (var k = 0u; k < 4u; k++) {
        w[k] = sbytes4(lo[k]) * d;
        w[k + 4u] = sbytes4(hi[k]) * d;
    }
    return w;
}

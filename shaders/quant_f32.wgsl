// F32: a unit is 32 values, eight vec4s of f32 bits.
fn unit_values(qrow: u32, srow: u32, u: u32) -> Unit {
    var w: Unit;
    for (var i = 0u; i < 8u; i++) {
        w[i] = bitcast<vec4<f32>>(quants[qrow + 8u * u + i]);
    }
    return w;
}

// F16: a unit is 32 values, four vec4<u32>s of f16 pairs (low half first).
fn unit_values(qrow: u32, srow: u32, u: u32) -> Unit {
    var w: Unit;
    for (var j = 0u; j < 4u; j++) {
        let h = quants[qrow + 4u * u + j];
        w[2u * j] = vec4<f32>(unpack2x16float(h.x), unpack2x16float(h.y));
        w[2u * j + 1u] = vec4<f32>(unpack2x16float(h.z), unpack2x16float(h.w));
    }
    return w;
}

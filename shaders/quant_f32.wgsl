// F32: a unit is 32 values, eight vec4s of f32 bits.
fn unit_values(row: u32, u: u32) -> Unit {
    let b = quants_row(row) + 8u * u;
    return Unit(
        bitcast<vec4<f32>>(quants[b]), bitcast<vec4<f32>>(quants[b + 1u]),
        bitcast<vec4<f32>>(quants[b + 2u]), bitcast<vec4<f32>>(quants[b + 3u]),
        bitcast<vec4<f32>>(quants[b + 4u]), bitcast<vec4<f32>>(quants[b + 5u]),
        bitcast<vec4<f32>>(quants[b + 6u]), bitcast<vec4<f32>>(quants[b + 7u]),
    );
}

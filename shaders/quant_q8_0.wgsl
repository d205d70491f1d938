// Q8_0: a unit is one block: 32 i8 (two vec4<u32>) and an f16 scale d; value = q d.
fn unit_values(row: u32, u: u32) -> Unit {
    let lo = quants[quants_row(row) + 2u * u];
    let hi = quants[quants_row(row) + 2u * u + 1u];
    let d = scale_f16(row, u);
    return Unit(
        sbytes4(lo.x) * d, sbytes4(lo.y) * d, sbytes4(lo.z) * d, sbytes4(lo.w) * d,
        sbytes4(hi.x) * d, sbytes4(hi.y) * d, sbytes4(hi.z) * d, sbytes4(hi.w) * d,
    );
}

// Q4_0: a unit is one block: 16 bytes of nibbles (one vec4<u32>) and an f16 scale d.
// Byte j holds value j in its low nibble and value j + 16 in its high nibble, so word k's
// low nibbles are values 4k .. 4k+3 and its high nibbles values 16 + 4k ..; value = (q - 8) d.
fn unit_values(row: u32, u: u32) -> Unit {
    let q = quants[quants_row(row) + u];
    let d = scale_f16(row, u);
    let lo = q & vec4<u32>(0x0F0F0F0Fu);
    let hi = (q >> vec4<u32>(4u)) & vec4<u32>(0x0F0F0F0Fu);
    return Unit(
        (bytes4(lo.x) - 8.0) * d, (bytes4(lo.y) - 8.0) * d,
        (bytes4(lo.z) - 8.0) * d, (bytes4(lo.w) - 8.0) * d,
        (bytes4(hi.x) - 8.0) * d, (bytes4(hi.y) - 8.0) * d,
        (bytes4(hi.z) - 8.0) * d, (bytes4(hi.w) - 8.0) * d,
    );
}

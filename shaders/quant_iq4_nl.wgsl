// IQ4_NL: a unit is one block: 16 bytes of grid indices (one vec4<u32>, nibbles as Q4_0) and an
// f16 scale d; value = d grid[q] (quant_iq4.wgsl).
fn unit_values(row: u32, u: u32) -> Unit {
    return iq4_unit(quants[quants_row(row) + u], scale_f16(row, u));
}

// A matvec's input is x itself (matvec_input.rs, MatVecInput::X). The three matvec_input_*.wgsl
// files define the same three functions, which the drivers call on every unit of x they load:
//   input_of(raw, u): the values the weights multiply, from unit u of x (raw);
//   squares(raw): what the unit adds to the row's sum of squares (RMSNorm's mean);
//   finish(acc, ss): the finished sums of four rows, given the whole sum of squares.

fn input_of(raw: Unit, u: u32) -> Unit {
    return raw;
}

fn squares(raw: Unit) -> f32 {
    return 0.0;
}

fn finish(acc: vec4<f32>, ss: f32) -> vec4<f32> {
    return acc;
}

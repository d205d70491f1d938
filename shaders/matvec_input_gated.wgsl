// A matvec's input is act(gate) * up (matvec_input.rs, MatVecInput::Gated): the down
// projection reads the feed-forward gate's output as it loads its input, so no kernel writes
// it. x is bound from gate's start; up begins `up_offset` vec4s later. act = {{ACT}}
// (activation.wgsl). (The three functions are described in matvec_input_x.wgsl.)

fn input_of(gate: Unit, u: u32) -> Unit {
    let up = x_unit(params.up_offset, u);
    return Unit(
        {{ACT}}(gate[0]) * up[0],
        {{ACT}}(gate[1]) * up[1],
        {{ACT}}(gate[2]) * up[2],
        {{ACT}}(gate[3]) * up[3],
        {{ACT}}(gate[4]) * up[4],
        {{ACT}}(gate[5]) * up[5],
        {{ACT}}(gate[6]) * up[6],
        {{ACT}}(gate[7]) * up[7],
    );
}

fn squares(raw: Unit) -> f32 {
    return 0.0;
}

fn finish(acc: vec4<f32>, ss: f32) -> vec4<f32> {
    return acc;
}

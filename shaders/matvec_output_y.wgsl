// A matvec writes each row's sum to y (MatVec::op_input). The two matvec_output_*.wgsl files
// define the same two functions, which the drivers call:
//   slot_row(s): the row of this part that row slot s computes (the drivers give each
//     invocation, or group of invocations, the slots first .. first + 3, or + 7);
//   write_rows(first, sums): store the finished sums of slots first .. first + 3.
// This one is the identity and a plain store; matvec_output_rope.wgsl pairs rows for RoPE.

fn slot_row(s: u32) -> u32 {
    return s;
}

fn write_rows(first: u32, sums: vec4<f32>) {
    for (var i = 0u; i < 4u; i++) {
        if (first + i < params.rows) {
            store(out_index(0u, first + i), sums[i]);
        }
    }
}

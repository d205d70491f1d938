// y[r] = dot(W row r, x) for CPU emulations of a GPU (lavapipe, SwiftShader): each invocation
// computes 8 rows, so every x value it loads serves 8 rows, and nothing waits at a workgroup
// barrier (those emulators make barriers 3-100x slower than this: shared/TOOLCHAIN.md). There,
// every load is a loop over the SIMD lanes; loading x once per 8 rows made this kernel ~3x
// faster than one row per invocation. matvec_workgroup.wgsl is the variant for real GPUs.

const WORKGROUP: u32 = {{WORKGROUP}}u;
const ROWS: u32 = {{ROWS}}u;

@compute @workgroup_size(WORKGROUP)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    // More than 65535 workgroups are dispatched as a 2-D grid.
    let first = ((wg.y * groups.x + wg.x) * WORKGROUP + lid) * ROWS;
    if (first >= params.rows) {
        return;
    }
    // Rows first .. first+3 in acc_a, first+4 .. first+7 in acc_b.
    var acc_a = vec4<f32>(0.0);
    var acc_b = vec4<f32>(0.0);
    // Every invocation walks all of x: the sum of squares of a normed input needs no sharing.
    var ss = 0.0;
    for (var u = 0u; u < units_per_row(); u++) {
        let raw = x_unit(0u, u);
        ss += squares(raw);
        let xs = input_of(raw, u);
        acc_a += vec4<f32>(
            row_dot(row_of(first, 0u), u, xs),
            row_dot(row_of(first, 1u), u, xs),
            row_dot(row_of(first, 2u), u, xs),
            row_dot(row_of(first, 3u), u, xs),
        );
        acc_b += vec4<f32>(
            row_dot(row_of(first, 4u), u, xs),
            row_dot(row_of(first, 5u), u, xs),
            row_dot(row_of(first, 6u), u, xs),
            row_dot(row_of(first, 7u), u, xs),
        );
    }
    write_rows(first, finish(acc_a, ss));
    write_rows(first + 4u, finish(acc_b, ss));
}

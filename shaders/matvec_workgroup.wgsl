// y[r] = dot(W row r, x) for real GPUs: `threads_per_row` invocations (a power of two chosen
// from the row length) share a row, neighbours taking neighbouring units so that their loads
// coalesce, and their partial sums meet in a tree reduction in workgroup memory. Nothing
// assumes a hardware SIMD width. Rows per workgroup = WORKGROUP / threads_per_row.

const WORKGROUP: u32 = 256u;

var<workgroup> partial: array<f32, WORKGROUP>;

@compute @workgroup_size(WORKGROUP)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    // From a uniform, so the barriers below stay in uniform control flow.
    let threads = params.threads_per_row;
    let lane = lid % threads;
    let row = (wg.y * groups.x + wg.x) * (WORKGROUP / threads) + lid / threads;
    var acc = 0.0;
    if (row < params.rows) {
        for (var u = lane; u < units_per_row(); u += threads) {
            let w = unit_values(row * params.qstride, row * params.sstride, u);
            acc += dot_unit(w, x_unit(0u, u));
        }
    }
    partial[lid] = acc;
    workgroupBarrier();
    for (var half = threads / 2u; half > 0u; half /= 2u) {
        if (lane < half) {
            partial[lid] += partial[lid + half];
        }
        workgroupBarrier();
    }
    if (lane == 0u && row < params.rows) {
        store(params.y_offset + row, partial[lid]);
    }
}

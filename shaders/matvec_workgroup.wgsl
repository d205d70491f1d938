// y[r] = dot(W row r, x) for real GPUs: `threads_per_row` invocations (a power of two chosen
// from the row length) share a group of ROWS rows, neighbours taking neighbouring units so that
// their weight loads coalesce and each x unit an invocation loads serves ROWS rows; their
// partial sums meet in a tree reduction in workgroup memory. Nothing assumes a hardware SIMD
// width. Rows per workgroup = WORKGROUP / threads_per_row * ROWS.

const WORKGROUP: u32 = {{WORKGROUP}}u;
const ROWS: u32 = {{ROWS}}u;

var<workgroup> partial: array<vec4<f32>, WORKGROUP>;
// Sums of squares of the x values each invocation loaded (a normed input's row scale).
var<workgroup> partial_ss: array<f32, WORKGROUP>;

@compute @workgroup_size(WORKGROUP)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    // From a uniform, so the barriers below stay in uniform control flow.
    let threads = params.threads_per_row;
    let lane = lid % threads;
    let first = ((wg.y * groups.x + wg.x) * (WORKGROUP / threads) + lid / threads) * ROWS;
    let p = row_group_partial(first, lane, threads);
    partial[lid] = p.acc;
    partial_ss[lid] = p.ss;
    workgroupBarrier();
    for (var half = threads / 2u; half > 0u; half /= 2u) {
        if (lane < half) {
            partial[lid] += partial[lid + half];
            partial_ss[lid] += partial_ss[lid + half];
        }
        workgroupBarrier();
    }
    if (lane == 0u) {
        write_rows(first, finish(partial[lid], partial_ss[lid]));
    }
}

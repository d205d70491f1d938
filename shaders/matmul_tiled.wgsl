// Y[t, r] = dot(W row r, X[t]) for a batch of tokens on a real GPU: each workgroup computes a
// tile of TILE_ROWS weight rows x TILE_TOKENS tokens. Per unit of 32 columns, invocations
// 0..63 decode one row's unit each into workgroup memory (64 x 32 values, 8 KiB), every
// invocation stages one vec4 of X (32 tokens x 32 values, 4 KiB), and each invocation then
// accumulates 4 rows x 2 tokens from there: a weight is decoded once per 32 tokens.

const WORKGROUP: u32 = {{WORKGROUP}}u;
const TILE_ROWS: u32 = {{TILE_ROWS}}u;
const TILE_TOKENS: u32 = {{TILE_TOKENS}}u;

// [k][row / 4]: the values at column k of four adjacent rows, so one vec4 load feeds 4 rows.
var<workgroup> w_tile: array<vec4<f32>, 512>;
// [k][token].
var<workgroup> x_tile: array<f32, 1024>;

@compute @workgroup_size(WORKGROUP)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let first_row = (wg.y * groups.x + wg.x) * TILE_ROWS;
    let first_token = wg.z * TILE_TOKENS;
    // Uniform across the workgroup (a uniform buffer and the workgroup id): a tile wholly past
    // this step's batch leaves before any barrier.
    let n_tokens = batch_tokens();
    if (first_token >= n_tokens) {
        return;
    }
    // This invocation's outputs: rows first_row + 4 rq .. +3, tokens first_token + 2 tq, +1.
    let rq = lid % 16u;
    let tq = lid / 16u;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    for (var u = 0u; u < units_per_row(); u++) {
        if (lid < TILE_ROWS) {
            // Rows past the part decode as zeros.
            var w = Unit();  // an initializer: see sample_pick.wgsl's `h`
            if (first_row + lid < params.rows) {
                w = unit_values(first_row + lid, u);
            }
            for (var k = 0u; k < UNIT; k++) {
                w_tile[k * 16u + lid / 4u][lid % 4u] = w[k / 4u][k % 4u];
            }
        }
        // X: token t = lid / 8, values 4 (lid % 8) .. +3 of the unit; zero past the batch/row.
        let t = lid / 8u;
        let k = 4u * (lid % 8u);
        var v = vec4<f32>(0.0);
        if (first_token + t < n_tokens && UNIT * u + k < params.cols) {
            v = x[(first_token + t) * (params.cols / 4u) + (UNIT * u + k) / 4u];
        }
        for (var c = 0u; c < 4u; c++) {
            x_tile[(k + c) * TILE_TOKENS + t] = v[c];
        }
        workgroupBarrier();
        for (var kk = 0u; kk < UNIT; kk++) {
            let w = w_tile[kk * 16u + rq];
            acc0 += w * x_tile[kk * TILE_TOKENS + 2u * tq];
            acc1 += w * x_tile[kk * TILE_TOKENS + 2u * tq + 1u];
        }
        workgroupBarrier();
    }
    for (var c = 0u; c < 4u; c++) {
        let row = first_row + 4u * rq + c;
        let token = first_token + 2u * tq;
        if (row < params.rows && token < n_tokens) {
            store(out_index(token, row), acc0[c]);
        }
        if (row < params.rows && token + 1u < n_tokens) {
            store(out_index(token + 1u, row), acc1[c]);
        }
    }
}

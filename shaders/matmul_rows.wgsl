// Y[t, r] = dot(W row r, X[t]) for a batch of tokens on CPU emulations of a GPU: each
// invocation computes 8 rows x TOKENS tokens, so a decoded weight unit serves TOKENS tokens
// and a loaded x unit serves 8 rows, with no workgroup barrier (see matvec_rows.wgsl for why
// loads are what count there). matmul_tiled.wgsl is the variant for real GPUs.

const WORKGROUP: u32 = {{WORKGROUP}}u;
const ROWS: u32 = {{ROWS}}u;
const TOKENS: u32 = {{TOKENS}}u;

@compute @workgroup_size(WORKGROUP)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let first = ((wg.y * groups.x + wg.x) * WORKGROUP + lid) * ROWS;
    if (first >= params.rows) {
        return;
    }
    let first_token = wg.z * TOKENS;
    let n_tokens = batch_tokens();
    if (first_token >= n_tokens) {
        return;
    }
    // acc_a[t]: rows first .. first+3 for token first_token + t; acc_b[t] the next four rows.
    var acc_a: array<vec4<f32>, TOKENS>;
    var acc_b: array<vec4<f32>, TOKENS>;
    for (var u = 0u; u < units_per_row(); u++) {
        let w0 = row_unit(row_of(first, 0u), u);
        let w1 = row_unit(row_of(first, 1u), u);
        let w2 = row_unit(row_of(first, 2u), u);
        let w3 = row_unit(row_of(first, 3u), u);
        let w4 = row_unit(row_of(first, 4u), u);
        let w5 = row_unit(row_of(first, 5u), u);
        let w6 = row_unit(row_of(first, 6u), u);
        let w7 = row_unit(row_of(first, 7u), u);
        for (var t = 0u; t < TOKENS; t++) {
            // Tokens past the batch re-read its last row (in bounds) and are not stored.
            let token = min(first_token + t, n_tokens - 1u);
            let xs = x_unit(token * (params.cols / 4u), u);
            acc_a[t] += vec4<f32>(dot_unit(w0, xs), dot_unit(w1, xs), dot_unit(w2, xs), dot_unit(w3, xs));
            acc_b[t] += vec4<f32>(dot_unit(w4, xs), dot_unit(w5, xs), dot_unit(w6, xs), dot_unit(w7, xs));
        }
    }
    for (var t = 0u; t < TOKENS; t++) {
        let token = first_token + t;
        if (token >= n_tokens) {
            break;
        }
        for (var i = 0u; i < 4u; i++) {
            if (first + i < params.rows) {
                store(out_index(token, first + i), acc_a[t][i]);
            }
            if (first + 4u + i < params.rows) {
                store(out_index(token, first + 4u + i), acc_b[t][i]);
            }
        }
    }
}

// x[t] = params.scale * row tokens[t] of a quantized table (the token embedding), one invocation per
// (token, unit of 32 values). One op per part of the table: each writes the tokens whose row
// it holds. Ids past the table are clamped to its last row: the CPU validates ids, and the
// clamp keeps a bad id from reading out of bounds.

@group(0) @binding(2) var<storage, read> tokens: array<u32>;
@group(0) @binding(3) var<storage, read_write> x: array<vec4<f32>>;

const WORKGROUP: u32 = {{WORKGROUP}}u;

@compute @workgroup_size(WORKGROUP)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let units = (params.cols + UNIT - 1u) / UNIT;
    let slot = (wg.y * groups.x + wg.x) * WORKGROUP + lid;
    let t = slot / units;
    let u = slot % units;
    if (t >= batch_tokens()) {
        return;
    }
    let id = min(tokens[t], params.total_rows - 1u);
    if (id < params.first_row || id - params.first_row >= params.rows) {
        return;
    }
    let row = id - params.first_row;
    let w = unit_values(row, u);
    // cols is a multiple of 4; a partial last unit (F32/F16) stops at the row's end.
    let out = t * (params.cols / 4u) + 8u * u;
    for (var i = 0u; i < 8u; i++) {
        if (UNIT * u + 4u * i < params.cols) {
            x[out + i] = w[i] * params.scale;
        }
    }
}

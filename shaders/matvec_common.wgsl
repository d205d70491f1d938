// Inputs and outputs of the matrix-vector and matrix-matrix kernels: x holds n_tokens rows of
// `cols` values (cols is a multiple of 4, so x is read as vec4s), y the outputs (at out_index).

@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

fn units_per_row() -> u32 {
    return (params.cols + UNIT - 1u) / UNIT;
}

// The x values of unit u of the token whose row starts at vec4 `base`. Past `cols` they are
// zero: only an F32/F16 row whose length is not a multiple of 32 has a partial last unit (its
// weights are zero padding, but x must not be read out of bounds).
fn x_unit(base: u32, u: u32) -> Unit {
    let b = base + 8u * u;
    if (UNIT * (u + 1u) <= params.cols) {
        return Unit(x[b], x[b + 1u], x[b + 2u], x[b + 3u], x[b + 4u], x[b + 5u], x[b + 6u], x[b + 7u]);
    }
    var v: Unit;
    for (var i = 0u; i < 8u; i++) {
        if (UNIT * u + 4u * i < params.cols) {
            v[i] = x[b + i];
        }
    }
    return v;
}

// The row of slot `first + i` of a group an invocation computes (slot_row: the output piece,
// matvec_output_*.wgsl); past the part's end, its last slot's (read, never stored), so that
// the group's loads need no branch.
fn row_of(first: u32, i: u32) -> u32 {
    return slot_row(min(first + i, params.rows - 1u));
}

fn row_unit(row: u32, u: u32) -> Unit {
    return unit_values(row, u);
}

fn row_dot(row: u32, u: u32, xs: Unit) -> f32 {
    return dot_unit(row_unit(row, u), xs);
}

// The element of y for token t and row `row` of this part: routed by the member of a stacked
// weight the row belongs to (members are in row order; see Params).
fn out_index(t: u32, row: u32) -> u32 {
    let r = params.first_row + row;
    let s = params.route_start;
    var m = 0u;
    if (r >= s.y) { m = 1u; }
    if (r >= s.z) { m = 2u; }
    if (r >= s.w) { m = 3u; }
    return params.route_base[m] + t * params.route_stride[m] + (r - s[m]);
}

// Partial dots of rows first .. first+3 (component i: row first + i) over units lane,
// lane + lanes, ...: the share of one of `lanes` invocations that split a row group, for the
// workgroup and subgroup reductions, and the sum of squares of the x values it loaded (for a
// normed input; matvec_input_*.wgsl). Each x unit it loads serves the four rows.
struct Partial {
    acc: vec4<f32>,
    ss: f32,
}

fn row_group_partial(first: u32, lane: u32, lanes: u32) -> Partial {
    var p = Partial(vec4<f32>(0.0), 0.0);
    if (first < params.rows) {
        for (var u = lane; u < units_per_row(); u += lanes) {
            let raw = x_unit(0u, u);
            p.ss += squares(raw);
            let xs = input_of(raw, u);
            p.acc += vec4<f32>(
                row_dot(row_of(first, 0u), u, xs),
                row_dot(row_of(first, 1u), u, xs),
                row_dot(row_of(first, 2u), u, xs),
                row_dot(row_of(first, 3u), u, xs),
            );
        }
    }
    return p;
}

// Write (or add, for a fused residual) one output.
fn store(i: u32, v: f32) {
    if (params.accumulate != 0u) {
        y[i] += v;
    } else {
        y[i] = v;
    }
}

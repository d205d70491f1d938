// What every kernel that reads a quantized weight shares: its parameters, where a row starts in
// each plane, and byte unpacking. The layout (planes, units, row strides) is described in
// src/gpu/weights.rs. After this file the host adds the bindings of the planes the type has
// (`quants: array<vec4<u32>>`, `scales` and `aux: array<u32>`, from the type's table row), the
// shared helpers it names, and its own file (quant_<type>.wgsl), which defines
//     fn unit_values(row: u32, u: u32) -> Unit
// the 32 values of unit u (values 32u .. 32u+31) of row `row` of this part, decoded in f32.
//
// Each unit_values loads each plane it needs once, as whole vec4<u32>s. On CPU emulations of a
// GPU (lavapipe, SwiftShader) every load instruction costs a loop over the SIMD lanes, so the
// number of loads, not arithmetic, sets the speed; on GPUs wide loads are what memory wants.

struct Params {
    // Rows in this part and values per row.
    rows: u32,
    cols: u32,
    // Row strides: vec4<u32>s in `quants`, u32s in `scales` (`aux`: astride, below).
    qstride: u32,
    sstride: u32,
    // Tokens (rows of x) in a batch.
    n_tokens: u32,
    // Nonzero: add to the output instead of overwriting it (a fused residual add).
    accumulate: u32,
    // Invocations that share one row (the workgroup-reduction matvec; a power of two).
    threads_per_row: u32,
    // First row of this part and rows of the whole weight (the embedding gather).
    first_row: u32,
    total_rows: u32,
    // Multiplies what the embedding gather writes (Gemma scales embeddings by sqrt(n_embd)).
    scale: f32,
    // The gated input's up values: vec4s after gate's (matvec_input_gated.wgsl).
    up_offset: u32,
    // Row stride of the `aux` plane, in u32s.
    astride: u32,
    // Where outputs go (matvec_common.wgsl, out_index): a weight stacks up to 4 tensors by
    // rows; member m starts at row route_start[m] (unused members: 0xffffffff) and writes its
    // row r of token t to y[route_base[m] + t * route_stride[m] + r - route_start[m]].
    route_start: vec4<u32>,
    route_base: vec4<u32>,
    route_stride: vec4<u32>,
    // The normed input's epsilon (matvec_input_normed.wgsl).
    eps: f32,
    pad2: u32,
    pad3: u32,
    pad4: u32,
}

@group(0) @binding(0) var<uniform> params: Params;

// Where row `row` of this part starts: vec4 index in `quants`, word index in `scales`, `aux`.
fn quants_row(row: u32) -> u32 {
    return row * params.qstride;
}

fn scales_row(row: u32) -> u32 {
    return row * params.sstride;
}

fn aux_row(row: u32) -> u32 {
    return row * params.astride;
}

// Values per unit, and a unit's values as eight vec4s (values 4i .. 4i+3 in element i).
const UNIT: u32 = 32u;
alias Unit = array<vec4<f32>, 8>;

fn dot_unit(w: Unit, x: Unit) -> f32 {
    // Constant indices only: a loop over a dynamically indexed array makes Tint spill the
    // array to memory, which SwiftShader then loads and stores lane by lane (6-10x slower).
    let acc = (w[0] * x[0] + w[1] * x[1]) + (w[2] * x[2] + w[3] * x[3])
        + ((w[4] * x[4] + w[5] * x[5]) + (w[6] * x[6] + w[7] * x[7]));
    return acc.x + acc.y + acc.z + acc.w;
}

// The four bytes of `w`, low byte first.
fn bytes4(w: u32) -> vec4<f32> {
    return vec4<f32>(vec4<u32>(w, w >> 8u, w >> 16u, w >> 24u) & vec4<u32>(0xFFu));
}

// The four bytes of `w` as signed (i8) values.
fn sbytes4(w: u32) -> vec4<f32> {
    let shifted = vec4<u32>(w << 24u, w << 16u, w << 8u, w);
    // An arithmetic shift right brings each byte down with its sign.
    return vec4<f32>(bitcast<vec4<i32>>(shifted) >> vec4<u32>(24u));
}

// Byte `k` of `w`, as a signed (i8) value.
fn sbyte(w: u32, k: u32) -> f32 {
    return f32(bitcast<i32>(w << (24u - 8u * k)) >> 24u);
}

// Bits 0..3 of each component moved to bit 0 of its bytes 0..3 (bit b to bit 8b): one multiply
// puts copies of the nibble at shifts 0, 7, 14 and 21, which do not overlap, so nothing carries.
// Q5_0/Q5_1 spread their fifth bits this way to OR them above the nibbles.
fn spread4(n: vec4<u32>) -> vec4<u32> {
    return ((n & vec4<u32>(0xFu)) * 0x00204081u) & vec4<u32>(0x01010101u);
}

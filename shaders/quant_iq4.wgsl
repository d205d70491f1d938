// IQ4_NL and IQ4_XS: 4-bit indices into a fixed grid of 16 values (IQ4_GRID, defined by the
// host just before this from quant.rs's table: entry n is the signed byte n % 4 of word n / 4).
// WGSL would keep an indexed array in private memory, which SwiftShader loads and stores lane
// by lane (ARCHITECTURE.md), so the lookup is selects and shifts on registers: the top two bits
// of an index pick the word, the low two the byte.

// Grid values of the indices in the four bytes of `w` (one index 0..15 per byte).
fn iq4_values4(w: u32) -> vec4<f32> {
    let n = vec4<u32>(w, w >> 8u, w >> 16u, w >> 24u) & vec4<u32>(0xFu);
    let words = select(
        select(vec4<u32>(IQ4_GRID.x), vec4<u32>(IQ4_GRID.y), n >= vec4<u32>(4u)),
        select(vec4<u32>(IQ4_GRID.z), vec4<u32>(IQ4_GRID.w), n >= vec4<u32>(12u)),
        n >= vec4<u32>(8u),
    );
    // Byte n % 4 to the top, then an arithmetic shift brings it down with its sign.
    let top = words << ((vec4<u32>(3u) - (n & vec4<u32>(3u))) * 8u);
    return vec4<f32>(bitcast<vec4<i32>>(top) >> vec4<u32>(24u));
}

// The 32 values of a group of 16 index bytes `q`: byte j's low nibble is value j, its high
// nibble value j + 16 (as Q4_0's nibbles); each grid value times `d`.
fn iq4_unit(q: vec4<u32>, d: f32) -> Unit {
    let lo = q & vec4<u32>(0x0F0F0F0Fu);
    let hi = (q >> vec4<u32>(4u)) & vec4<u32>(0x0F0F0F0Fu);
    return Unit(
        iq4_values4(lo.x) * d, iq4_values4(lo.y) * d, iq4_values4(lo.z) * d, iq4_values4(lo.w) * d,
        iq4_values4(hi.x) * d, iq4_values4(hi.y) * d, iq4_values4(hi.z) * d, iq4_values4(hi.w) * d,
    );
}

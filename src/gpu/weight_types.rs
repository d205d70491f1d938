//! The weight types the GPU runs: one table row each, saying where each byte of a GGUF block
//! goes on the GPU and which WGSL decodes it.
//!
//! # Layout
//!
//! GGUF blocks are not 4-byte aligned (Q4_0 is 18 bytes, Q5_0 22, Q3_K 110, Q6_K 210), and WGSL
//! can only load whole `u32`s. Rather than pad every block (Q4_0 to 20 or 32 bytes: 11-78% more
//! memory, and the nibbles still not on a 16-byte boundary), each block is split at upload into
//! up to three *planes*, and every row is laid out so that each plane starts 4-byte aligned:
//! `quants` (read as `vec4<u32>`: its bytes per block are a multiple of 16), `scales` and `aux`
//! (read as `u32`). Which bytes of a block go where is the type's row of [`GPU_TYPE_TABLE`]:
//!
//! | type   | `quants` plane, per block                     | `scales` plane, per block | `aux` plane   |
//! |--------|-----------------------------------------------|---------------------------|---------------|
//! | F32    | the value (4 bytes)                           | none                      | none          |
//! | F16    | the value (2 bytes)                           | none                      | none          |
//! | BF16   | the value (2 bytes)                           | none                      | none          |
//! | Q4_0   | 16 bytes of nibbles (one `vec4<u32>`)         | f16 d (2 bytes)           | none          |
//! | Q4_1   | 16 bytes of nibbles                           | f16 d, f16 m (one `u32`)  | none          |
//! | Q5_0   | 16 bytes of nibbles                           | f16 d                     | qh: the 32 fifth bits (one `u32`) |
//! | Q5_1   | 16 bytes of nibbles                           | f16 d, f16 m              | qh            |
//! | Q8_0   | 32 bytes of i8 (two `vec4<u32>`)              | f16 d                     | none          |
//! | Q2_K   | 16 scale/min nibble pairs, then 64 bytes of 2-bit quants (5 `vec4<u32>`) | f16 d, f16 dmin | none |
//! | Q3_K   | hmask (32 bytes of third bits), then 64 bytes of 2-bit quants (6 `vec4<u32>`) | f16 d | the 12 bytes packing sixteen 6-bit scales (3 `u32`) |
//! | Q4_K   | the whole 144-byte block (9 `vec4<u32>`: d, dmin and the 12 scale bytes, then 128 of nibbles) | none | none |
//! | Q5_K   | the whole 176-byte block (11 `vec4<u32>`: as Q4_K, with qh's 32 bytes before the nibbles) | none | none |
//! | Q6_K   | ql, qh and the 16 i8 scales: 208 bytes (13 `vec4<u32>`) | f16 d           | none          |
//! | IQ4_NL | 16 bytes of nibbles (indices into a 16-value grid) | f16 d                | none          |
//! | IQ4_XS | 128 bytes of nibbles (8 `vec4<u32>`)          | f16 d, u16 scales_h, scales_l[4] (two `u32`) | none |
//!
//! So the quantized data lands on 16-byte boundaries (shaders read it as `array<vec4<u32>>`,
//! one load per block plane: on CPU emulations every load instruction is expensive, on GPUs
//! wide loads coalesce), the f16 scales pack two to a `u32` (read with `unpack2x16float`, no
//! optional feature), and GPU memory equals the file's bytes plus at most 2 bytes per row and
//! plane (rounding a row's scales to whole `u32`s) and 255 per part and plane (aligning the
//! `scales` and `aux` planes), besides the F32/F16/BF16 row padding (`weights.rs`).
//! Q4_K and Q5_K are already 16-byte aligned and keep their blocks unchanged; Q4_1's 20-byte
//! block is 4-byte aligned but its nibbles would not be 16-byte aligned. Q5_0 and Q3_K need the
//! third plane: their remaining fields (4 + 2 and 12 + 2 bytes) cannot share one plane without
//! some of them straddling a word.
//!
//! # Adding a weight type
//!
//! One row in [`GPU_TYPE_TABLE`] (the planes, the scale format, the decoder) and its
//! `shaders/quant_<type>.wgsl` defining `unit_values` (see `quant_common.wgsl`); the CPU
//! dequantizer in `quant.rs` is the oracle the tests hold it to. Everything else (the GPU type
//! list, error hints, kernel variants, benchmark rows, the tests' per-type loops) reads the table.

use std::ops::Range;
use std::sync::LazyLock;

use crate::ggml_type::GgmlType;

/// Values per unit: the slice of a row one shader step decodes.
pub const UNIT: u64 = 32;

/// How the `scales` plane of a type holds its scales; [`ScaleFormat::F16`] brings the shared
/// `scale_f16` reader (`quant_scales_f16.wgsl`) into the type's shader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScaleFormat {
    /// No `scales` plane (F32, F16, BF16, and Q4_K/Q5_K whose scales stay inside the block).
    None,
    /// One f16 per block, two to a `u32` (low half first).
    F16,
    /// One `u32` per block: an f16 pair, (d, m) or (d, dmin), read with one `unpack2x16float`.
    F16Pair,
    /// Whole `u32` fields the decoder takes apart itself (IQ4_XS: d with scales_h, scales_l).
    Words,
}

/// One weight type the GPU runs: where each byte of a GGUF block goes, how the scales are
/// stored, and the WGSL that decodes it.
#[derive(Debug)]
pub struct GpuType {
    pub ty: GgmlType,
    /// Bytes of a block that go to the `quants`, `scales` and `aux` planes (empty: no such
    /// plane). Together they cover the block once.
    pub planes: [Range<usize>; 3],
    pub scale_format: ScaleFormat,
    /// Decoders shared with other types that this one's decoder calls, pasted before it.
    pub helpers: &'static [Helper],
    /// `shaders/quant_<type>.wgsl`: its `unit_values`.
    pub decoder: &'static str,
}

/// WGSL shared by several decoders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Helper {
    /// `scale_min`: the 6-bit scale/min pairs of a Q4_K/Q5_K super-block header.
    KScaleMin,
    /// `iq4_unit`: IQ4_NL/IQ4_XS nibbles looked up in their 16-value grid.
    Iq4Grid,
}

macro_rules! decoder {
    ($file:literal) => {
        include_str!(concat!("../../shaders/", $file))
    };
}

/// Every weight type with GPU kernels, one row each; the module doc shows the planes.
pub const GPU_TYPE_TABLE: &[GpuType] = {
    use GgmlType::*;
    use ScaleFormat as S;
    const NONE: Range<usize> = 0..0;
    &[
        GpuType {
            ty: F32,
            planes: [0..4, NONE, NONE],
            scale_format: S::None,
            helpers: &[],
            decoder: decoder!("quant_f32.wgsl"),
        },
        GpuType {
            ty: F16,
            planes: [0..2, NONE, NONE],
            scale_format: S::None,
            helpers: &[],
            decoder: decoder!("quant_f16.wgsl"),
        },
        GpuType {
            ty: BF16,
            planes: [0..2, NONE, NONE],
            scale_format: S::None,
            helpers: &[],
            decoder: decoder!("quant_bf16.wgsl"),
        },
        GpuType {
            ty: Q4_0,
            planes: [2..18, 0..2, NONE],
            scale_format: S::F16,
            helpers: &[],
            decoder: decoder!("quant_q4_0.wgsl"),
        },
        GpuType {
            ty: Q4_1,
            planes: [4..20, 0..4, NONE],
            scale_format: S::F16Pair,
            helpers: &[],
            decoder: decoder!("quant_q4_1.wgsl"),
        },
        GpuType {
            ty: Q5_0,
            planes: [6..22, 0..2, 2..6],
            scale_format: S::F16,
            helpers: &[],
            decoder: decoder!("quant_q5_0.wgsl"),
        },
        GpuType {
            ty: Q5_1,
            planes: [8..24, 0..4, 4..8],
            scale_format: S::F16Pair,
            helpers: &[],
            decoder: decoder!("quant_q5_1.wgsl"),
        },
        GpuType {
            ty: Q8_0,
            planes: [2..34, 0..2, NONE],
            scale_format: S::F16,
            helpers: &[],
            decoder: decoder!("quant_q8_0.wgsl"),
        },
        GpuType {
            ty: Q2_K,
            planes: [0..80, 80..84, NONE],
            scale_format: S::F16Pair,
            helpers: &[],
            decoder: decoder!("quant_q2_k.wgsl"),
        },
        GpuType {
            ty: Q3_K,
            planes: [0..96, 108..110, 96..108],
            scale_format: S::F16,
            helpers: &[],
            decoder: decoder!("quant_q3_k.wgsl"),
        },
        GpuType {
            ty: Q4_K,
            planes: [0..144, NONE, NONE],
            scale_format: S::None,
            helpers: &[Helper::KScaleMin],
            decoder: decoder!("quant_q4_k.wgsl"),
        },
        GpuType {
            ty: Q5_K,
            planes: [0..176, NONE, NONE],
            scale_format: S::None,
            helpers: &[Helper::KScaleMin],
            decoder: decoder!("quant_q5_k.wgsl"),
        },
        GpuType {
            ty: Q6_K,
            planes: [0..208, 208..210, NONE],
            scale_format: S::F16,
            helpers: &[],
            decoder: decoder!("quant_q6_k.wgsl"),
        },
        GpuType {
            ty: IQ4_NL,
            planes: [2..18, 0..2, NONE],
            scale_format: S::F16,
            helpers: &[Helper::Iq4Grid],
            decoder: decoder!("quant_iq4_nl.wgsl"),
        },
        GpuType {
            ty: IQ4_XS,
            planes: [8..136, 0..8, NONE],
            scale_format: S::Words,
            helpers: &[Helper::Iq4Grid],
            decoder: decoder!("quant_iq4_xs.wgsl"),
        },
    ]
};

/// The tensor types with GPU kernels, in table order.
pub const GPU_TYPES: [GgmlType; GPU_TYPE_TABLE.len()] = {
    let mut types = [GgmlType::F32; GPU_TYPE_TABLE.len()];
    let mut i = 0;
    while i < types.len() {
        types[i] = GPU_TYPE_TABLE[i].ty;
        i += 1;
    }
    types
};

/// The table row of `ty`, or `None` for a type without GPU kernels.
pub fn gpu_type(ty: GgmlType) -> Option<&'static GpuType> {
    GPU_TYPE_TABLE.iter().find(|t| t.ty == ty)
}

/// " on the GPU (GPU kernels exist for F32 F16 ...)", from the table.
pub(crate) static GPU_TYPES_HINT: LazyLock<String> = LazyLock::new(|| {
    let names: Vec<&str> = GPU_TYPES.iter().map(|t| t.name()).collect();
    format!(" on the GPU (GPU kernels exist for {})", names.join(" "))
});

/// The `@binding` of the `quants`, `scales` and `aux` planes in every weight kernel (the other
/// bindings: 0 the parameters, 2 and 3 the kernel's input and output, 5 the step uniform).
pub const PLANE_BINDINGS: [u32; 3] = [1, 4, 6];

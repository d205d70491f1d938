//! CPU dequantization of the GGML block formats this engine runs. The dequantizers are the
//! oracle for the GPU shaders, so they follow ggml's reference `dequantize_row_*` arithmetic
//! exactly (fixtures compare bit for bit). The type ids and block geometry are in
//! `ggml_type.rs` (re-exported here, where callers have always found `GgmlType`).

use std::sync::LazyLock;

use crate::error::{Error, Result};
pub use crate::ggml_type::GgmlType;

/// The types `dequantize` decodes, in the order the error hint lists them.
pub const CPU_TYPES: [GgmlType; 15] = {
    use GgmlType::*;
    [
        F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS,
    ]
};

impl GgmlType {
    /// Whether this engine can dequantize the type on the CPU (it is in [`CPU_TYPES`]).
    pub fn is_supported(self) -> bool {
        CPU_TYPES.contains(&self)
    }
}

/// " (supported: F32 F16 ...)", from [`CPU_TYPES`].
static SUPPORTED_HINT: LazyLock<String> = LazyLock::new(|| {
    let names: Vec<&str> = CPU_TYPES.iter().map(|t| t.name()).collect();
    format!(" (supported: {})", names.join(" "))
});

fn unsupported(tensor: &str, ty: GgmlType) -> Error {
    Error::UnsupportedTensorType {
        tensor: tensor.to_string(),
        ty: ty.name().to_string(),
        hint: SUPPORTED_HINT.as_str(),
    }
}

/// Dequantize `bytes` (whole blocks of `ty`) into `out`, one f32 per element.
/// `out.len()` must equal the element count the bytes hold.
pub fn dequantize(ty: GgmlType, bytes: &[u8], out: &mut [f32]) -> Result<()> {
    use GgmlType::*;
    match ty {
        F32 => each_block(ty, bytes, out, f32_le),
        F16 => each_block(ty, bytes, out, f16_le),
        BF16 => each_block(ty, bytes, out, bf16_le),
        Q4_0 => each_block(ty, bytes, out, q4_0),
        Q4_1 => each_block(ty, bytes, out, q4_1),
        Q5_0 => each_block(ty, bytes, out, q5_0),
        Q5_1 => each_block(ty, bytes, out, q5_1),
        Q8_0 => each_block(ty, bytes, out, q8_0),
        Q2_K => each_block(ty, bytes, out, q2_k),
        Q3_K => each_block(ty, bytes, out, q3_k),
        Q4_K => each_block(ty, bytes, out, q4_k),
        Q5_K => each_block(ty, bytes, out, q5_k),
        Q6_K => each_block(ty, bytes, out, q6_k),
        IQ4_NL => each_block(ty, bytes, out, iq4_nl),
        IQ4_XS => each_block(ty, bytes, out, iq4_xs),
        _ => Err(unsupported("(unnamed)", ty)),
    }
}

/// Dequantize a whole tensor; an unsupported type is `UnsupportedTensorType` naming the tensor.
pub fn dequantize_tensor(info: &crate::gguf::TensorInfo, bytes: &[u8]) -> Result<Vec<f32>> {
    if !info.ty.is_supported() {
        return Err(unsupported(&info.name, info.ty));
    }
    let mut out = vec![0f32; info.n_elements() as usize];
    dequantize(info.ty, bytes, &mut out)?;
    Ok(out)
}

/// Check that `bytes` is whole `B`-byte blocks and `out` has room for exactly their `N` values
/// each, then decode block by block with `decode`.
fn each_block<const B: usize, const N: usize>(
    ty: GgmlType,
    bytes: &[u8],
    out: &mut [f32],
    decode: impl Fn(&[u8; B], &mut [f32; N]),
) -> Result<()> {
    debug_assert_eq!((B as u64, N as u64), (ty.type_size(), ty.block_size()));
    if bytes.len() % B != 0 {
        return Err(Error::InvalidArgument(format!(
            "dequantize {ty}: {} bytes is not a whole number of {B}-byte blocks",
            bytes.len()
        )));
    }
    let n_blocks = bytes.len() / B;
    if out.len() != n_blocks * N {
        return Err(Error::InvalidArgument(format!(
            "dequantize {ty}: {n_blocks} blocks hold {} values but the output has room for {}",
            n_blocks * N,
            out.len()
        )));
    }
    for (block, y) in bytes.chunks_exact(B).zip(out.chunks_exact_mut(N)) {
        let block = block.try_into().expect("chunks_exact yields B-byte chunks");
        let y = y
            .try_into()
            .expect("chunks_exact_mut yields N-value chunks");
        decode(block, y);
    }
    Ok(())
}

/// The little-endian f16 at byte `i` of `b`, as f32.
pub(crate) fn f16_at(b: &[u8], i: usize) -> f32 {
    half::f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

fn f32_le(b: &[u8; 4], y: &mut [f32; 1]) {
    y[0] = f32::from_le_bytes(*b);
}

fn f16_le(b: &[u8; 2], y: &mut [f32; 1]) {
    y[0] = f16_at(b, 0);
}

fn bf16_le(b: &[u8; 2], y: &mut [f32; 1]) {
    y[0] = half::bf16::from_le_bytes(*b).to_f32();
}

/// Q4_0: f16 d, qs[16]; element j is the low nibble of qs[j], element j+16 the high nibble;
/// value (q - 8) * d.
fn q4_0(b: &[u8; 18], y: &mut [f32; 32]) {
    let d = f16_at(b, 0);
    for (j, &q) in b[2..].iter().enumerate() {
        y[j] = ((q & 0xF) as i32 - 8) as f32 * d;
        y[j + 16] = ((q >> 4) as i32 - 8) as f32 * d;
    }
}

/// Q4_1: f16 d, f16 m, qs[16] (nibbles as Q4_0); value q * d + m.
fn q4_1(b: &[u8; 20], y: &mut [f32; 32]) {
    let d = f16_at(b, 0);
    let m = f16_at(b, 2);
    for (j, &q) in b[4..].iter().enumerate() {
        y[j] = (q & 0xF) as f32 * d + m;
        y[j + 16] = (q >> 4) as f32 * d + m;
    }
}

/// The fifth bit of element `j` of a Q5_0/Q5_1 block (bit `j` of `qh`), as 0 or 16.
fn q5_high(qh: u32, j: usize) -> u8 {
    (((qh >> j) << 4) & 0x10) as u8
}

/// Q5_0: f16 d, u32 qh (fifth bits, bit j for element j), qs[16] (nibbles as Q4_0);
/// value (q - 16) * d.
fn q5_0(b: &[u8; 22], y: &mut [f32; 32]) {
    let d = f16_at(b, 0);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    for (j, &q) in b[6..].iter().enumerate() {
        y[j] = (((q & 0xF) | q5_high(qh, j)) as i32 - 16) as f32 * d;
        y[j + 16] = (((q >> 4) | q5_high(qh, j + 16)) as i32 - 16) as f32 * d;
    }
}

/// Q5_1: f16 d, f16 m, u32 qh, qs[16] (bits as Q5_0); value q * d + m.
fn q5_1(b: &[u8; 24], y: &mut [f32; 32]) {
    let d = f16_at(b, 0);
    let m = f16_at(b, 2);
    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    for (j, &q) in b[8..].iter().enumerate() {
        y[j] = ((q & 0xF) | q5_high(qh, j)) as f32 * d + m;
        y[j + 16] = ((q >> 4) | q5_high(qh, j + 16)) as f32 * d + m;
    }
}

/// Q8_0: f16 d, qs[32] i8; value q * d.
fn q8_0(b: &[u8; 34], y: &mut [f32; 32]) {
    let d = f16_at(b, 0);
    for (y, &q) in y.iter_mut().zip(&b[2..]) {
        *y = (q as i8) as f32 * d;
    }
}

/// Q2_K: scales[16] (low nibble scale, high nibble min), qs[64] (2-bit), f16 d, f16 dmin.
/// Each 128-value half n reads qs[32n..32n+32] four times (shift 2j), 16 values per scale:
/// value group g = 8n + 2j + h takes bits 2j of qs[32n + 16h + l].
/// Value (d * sc) * q - (dmin * m).
fn q2_k(b: &[u8; 84], y: &mut [f32; 256]) {
    let (scales, rest) = b.split_at(16);
    let (qs, rest) = rest.split_at(64);
    let d = f16_at(rest, 0);
    let dmin = f16_at(rest, 2);
    for n in 0..2 {
        for j in 0..4 {
            for h in 0..2 {
                let g = 8 * n + 2 * j + h;
                let dl = d * (scales[g] & 0xF) as f32;
                let ml = dmin * (scales[g] >> 4) as f32;
                let q = &qs[32 * n + 16 * h..][..16];
                for (y, &q) in y[16 * g..][..16].iter_mut().zip(q) {
                    *y = dl * ((q >> (2 * j)) & 3) as f32 - ml;
                }
            }
        }
    }
}

/// Q3_K: hmask[32] (third bits), qs[64] (low 2 bits), scales[12] (16 6-bit scales), f16 d.
/// Same walk as Q2_K; the third bit of group g is bit 4n + j of hmask[16h + l], and a clear
/// bit subtracts 4. Value (d * (sc - 32)) * (q - 4 * !bit).
fn q3_k(b: &[u8; 110], y: &mut [f32; 256]) {
    let (hmask, rest) = b.split_at(32);
    let (qs, rest) = rest.split_at(64);
    let (packed, rest) = rest.split_at(12);
    let d = f16_at(rest, 0);
    for n in 0..2 {
        for j in 0..4 {
            for h in 0..2 {
                let g = 8 * n + 2 * j + h;
                let dl = d * q3_k_scale(packed, g) as f32;
                let bit = 1 << (4 * n + j);
                let q = &qs[32 * n + 16 * h..][..16];
                let hm = &hmask[16 * h..][..16];
                for ((y, &q), &hm) in y[16 * g..][..16].iter_mut().zip(q).zip(hm) {
                    let sub = if hm & bit != 0 { 0 } else { 4 };
                    *y = dl * (((q >> (2 * j)) & 3) as i32 - sub) as f32;
                }
            }
        }
    }
}

/// Scale `g` (0..16) of a Q3_K super-block from its 12 packed bytes, signed (-32..32): low
/// 4 bits from packed[g % 8] (low nibble for g < 8, high after), high 2 bits from
/// packed[8 + g % 4] at bit 2 * (g / 4).
pub(crate) fn q3_k_scale(packed: &[u8], g: usize) -> i32 {
    let low = (packed[g % 8] >> (4 * (g / 8))) & 0xF;
    let high = (packed[8 + g % 4] >> (2 * (g / 4))) & 3;
    (low | (high << 4)) as i32 - 32
}

/// Scale and min `j` (0..8) of a Q4_K/Q5_K super-block: 6 bits each, packed in 12 bytes
/// (ggml's `get_scale_min_k4`).
pub(crate) fn scale_min_k4(j: usize, s: &[u8]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        (
            (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4),
            (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
        )
    }
}

/// Q4_K: f16 d, f16 dmin, scales[12], qs[128]. Values 64i..64i+64 read qs[32i..32i+32]:
/// low nibbles with scale/min 2i, then high nibbles with 2i+1. Value (d * sc) * q - (dmin * m).
fn q4_k(b: &[u8; 144], y: &mut [f32; 256]) {
    let d = f16_at(b, 0);
    let dmin = f16_at(b, 2);
    let scales = &b[4..16];
    let qs = &b[16..];
    for g in 0..8 {
        let (sc, m) = scale_min_k4(g, scales);
        let d1 = d * sc as f32;
        let m1 = dmin * m as f32;
        let shift = 4 * (g % 2);
        let q = &qs[32 * (g / 2)..][..32];
        for (y, &q) in y[32 * g..][..32].iter_mut().zip(q) {
            *y = d1 * ((q >> shift) & 0xF) as f32 - m1;
        }
    }
}

/// Q5_K: f16 d, f16 dmin, scales[12], qh[32], qs[128]. As Q4_K, plus a fifth bit: for value
/// group g (32 values, 0..8) it is bit g of qh[l]. Value (d * sc) * q - (dmin * m).
fn q5_k(b: &[u8; 176], y: &mut [f32; 256]) {
    let d = f16_at(b, 0);
    let dmin = f16_at(b, 2);
    let scales = &b[4..16];
    let qh = &b[16..48];
    let qs = &b[48..];
    for g in 0..8 {
        let (sc, m) = scale_min_k4(g, scales);
        let d1 = d * sc as f32;
        let m1 = dmin * m as f32;
        let shift = 4 * (g % 2);
        let q = &qs[32 * (g / 2)..][..32];
        for ((y, &q), &h) in y[32 * g..][..32].iter_mut().zip(q).zip(qh) {
            let high = if h & (1 << g) != 0 { 16 } else { 0 };
            *y = d1 * (((q >> shift) & 0xF) + high) as f32 - m1;
        }
    }
}

/// Q6_K: ql[128] (low 4 bits), qh[64] (high 2 bits), scales[16] i8, f16 d. Each 128-value
/// half n reads ql[64n..], qh[32n..], scales[8n..]: value 32k + l (k 0..4, l 0..32) takes
/// nibble k / 2 of ql[l + 32 (k % 2)], bits 2k of qh[l] and scale l / 16 + 2k.
/// Value (d * sc) * (q - 32).
fn q6_k(b: &[u8; 210], y: &mut [f32; 256]) {
    let (ql, rest) = b.split_at(128);
    let (qh, rest) = rest.split_at(64);
    let (scales, rest) = rest.split_at(16);
    let d = f16_at(rest, 0);
    for n in 0..2 {
        let ql = &ql[64 * n..][..64];
        let qh = &qh[32 * n..][..32];
        let sc = &scales[8 * n..][..8];
        let y = &mut y[128 * n..][..128];
        for k in 0..4 {
            for l in 0..32 {
                let low = (ql[l + 32 * (k % 2)] >> (4 * (k / 2))) & 0xF;
                let high = (qh[l] >> (2 * k)) & 3;
                let q = (low | (high << 4)) as i32 - 32;
                let s = sc[l / 16 + 2 * k] as i8;
                y[32 * k + l] = d * s as f32 * q as f32;
            }
        }
    }
}

/// The 16 values an IQ4_NL/IQ4_XS nibble selects (ggml's `kvalues_iq4nl`): a non-uniform
/// grid, denser near zero, times the block's scale.
pub const IQ4_VALUES: [i8; 16] = [
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];

/// Values of one 32-value IQ4 group: element j is the grid value of the low nibble of qs[j],
/// element j + 16 that of its high nibble; each times `d`.
fn iq4_group(d: f32, qs: &[u8], y: &mut [f32]) {
    for (j, &q) in qs.iter().enumerate() {
        y[j] = d * IQ4_VALUES[(q & 0xF) as usize] as f32;
        y[j + 16] = d * IQ4_VALUES[(q >> 4) as usize] as f32;
    }
}

/// IQ4_NL: f16 d, qs[16] (nibbles as Q4_0); value d * IQ4_VALUES[q].
fn iq4_nl(b: &[u8; 18], y: &mut [f32; 32]) {
    iq4_group(f16_at(b, 0), &b[2..], y);
}

/// IQ4_XS: f16 d, u16 scales_h, scales_l[4], qs[128]. Group g (32 values, 0..8) has the 6-bit
/// scale ls = nibble g of scales_l (low nibble first) | bits 2g..2g+2 of scales_h << 4, and
/// reads qs[16g..16g+16] as IQ4_NL does; value (d * (ls - 32)) * IQ4_VALUES[q].
fn iq4_xs(b: &[u8; 136], y: &mut [f32; 256]) {
    let d = f16_at(b, 0);
    let scales_h = u16::from_le_bytes([b[2], b[3]]) as u32;
    let scales_l = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    for g in 0..8 {
        let ls = ((scales_l >> (4 * g)) & 0xF) | (((scales_h >> (2 * g)) & 3) << 4);
        let dl = d * (ls as i32 - 32) as f32;
        iq4_group(dl, &b[8 + 16 * g..][..16], &mut y[32 * g..][..32]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_supported_type_decodes_its_block_geometry() {
        for ty in CPU_TYPES {
            let bytes = vec![0u8; 2 * ty.type_size() as usize];
            let mut out = vec![f32::NAN; 2 * ty.block_size() as usize];
            dequantize(ty, &bytes, &mut out).unwrap_or_else(|e| panic!("{ty}: {e}"));
            assert!(
                out.iter().all(|&v| v == 0.0),
                "{ty}: zero blocks decode to zeros"
            );
        }
    }

    #[test]
    fn partial_block_is_invalid_argument() {
        let mut out = vec![0f32; 256];
        let err = dequantize(GgmlType::Q4_K, &[0u8; 143], &mut out).unwrap_err();
        assert_eq!(err.code(), "INVALID_ARGUMENT");
        assert!(err.to_string().contains("143 bytes"), "{err}");
        let err = dequantize(GgmlType::F32, &[0u8; 7], &mut out[..2]).unwrap_err();
        assert_eq!(err.code(), "INVALID_ARGUMENT");
    }

    #[test]
    fn output_length_mismatch_is_invalid_argument() {
        let bytes = [0u8; 2 * 18];
        for n in [0, 32, 65] {
            let mut out = vec![0f32; n];
            let err = dequantize(GgmlType::Q4_0, &bytes, &mut out).unwrap_err();
            assert_eq!(err.code(), "INVALID_ARGUMENT", "{n}");
            assert!(err.to_string().contains("room for"), "{err}");
        }
    }

    #[test]
    fn unsupported_type_is_an_error() {
        let err = dequantize(GgmlType::IQ2_XXS, &[0u8; 66], &mut [0f32; 256]).unwrap_err();
        assert_eq!(err.code(), "UNSUPPORTED_TENSOR_TYPE");
        let message = err.to_string();
        assert!(message.contains("IQ2_XXS"), "{message}");
        assert!(message.contains("Q5_K Q6_K IQ4_NL IQ4_XS"), "{message}");
    }

    #[test]
    fn q4_0_block_by_hand() {
        // d = 0.5, qs[0] = 0x1F: element 0 is (15 - 8) * 0.5, element 16 is (1 - 8) * 0.5.
        let mut block = [0x88u8; 18];
        block[..2].copy_from_slice(&half::f16::from_f32(0.5).to_le_bytes());
        block[2] = 0x1F;
        let mut out = [f32::NAN; 32];
        dequantize(GgmlType::Q4_0, &block, &mut out).unwrap();
        assert_eq!((out[0], out[16], out[1], out[31]), (3.5, -3.5, 0.0, 0.0));
    }
}

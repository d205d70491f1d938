//! GGML tensor types: block geometry for every type a GGUF may name, and CPU dequantization for
//! the types this engine runs. The dequantizers are the oracle for the GPU shaders, so they follow
//! ggml's reference `dequantize_row_*` arithmetic exactly (fixtures compare bit for bit).

use crate::error::{Error, Result};

/// A ggml tensor type, by its on-disk id. Every id ggml has assigned is listed so that the GGUF
/// reader can size any tensor; only some of them can be dequantized (`is_supported`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
    Q8_K,
    IQ2_XXS,
    IQ2_XS,
    IQ3_XXS,
    IQ1_S,
    IQ4_NL,
    IQ3_S,
    IQ2_S,
    IQ4_XS,
    I8,
    I16,
    I32,
    I64,
    F64,
    IQ1_M,
    BF16,
    TQ1_0,
    TQ2_0,
    MXFP4,
    NVFP4,
}

/// (type, id, elements per block, bytes per block) from ggml's type traits.
const TYPE_TABLE: &[(GgmlType, u32, u64, u64)] = &[
    (GgmlType::F32, 0, 1, 4),
    (GgmlType::F16, 1, 1, 2),
    (GgmlType::Q4_0, 2, 32, 18),
    (GgmlType::Q4_1, 3, 32, 20),
    (GgmlType::Q5_0, 6, 32, 22),
    (GgmlType::Q5_1, 7, 32, 24),
    (GgmlType::Q8_0, 8, 32, 34),
    (GgmlType::Q8_1, 9, 32, 36),
    (GgmlType::Q2_K, 10, 256, 84),
    (GgmlType::Q3_K, 11, 256, 110),
    (GgmlType::Q4_K, 12, 256, 144),
    (GgmlType::Q5_K, 13, 256, 176),
    (GgmlType::Q6_K, 14, 256, 210),
    (GgmlType::Q8_K, 15, 256, 292),
    (GgmlType::IQ2_XXS, 16, 256, 66),
    (GgmlType::IQ2_XS, 17, 256, 74),
    (GgmlType::IQ3_XXS, 18, 256, 98),
    (GgmlType::IQ1_S, 19, 256, 50),
    (GgmlType::IQ4_NL, 20, 32, 18),
    (GgmlType::IQ3_S, 21, 256, 110),
    (GgmlType::IQ2_S, 22, 256, 82),
    (GgmlType::IQ4_XS, 23, 256, 136),
    (GgmlType::I8, 24, 1, 1),
    (GgmlType::I16, 25, 1, 2),
    (GgmlType::I32, 26, 1, 4),
    (GgmlType::I64, 27, 1, 8),
    (GgmlType::F64, 28, 1, 8),
    (GgmlType::IQ1_M, 29, 256, 56),
    (GgmlType::BF16, 30, 1, 2),
    (GgmlType::TQ1_0, 34, 256, 54),
    (GgmlType::TQ2_0, 35, 256, 66),
    (GgmlType::MXFP4, 39, 32, 17),
    (GgmlType::NVFP4, 40, 64, 36),
];

impl GgmlType {
    pub fn from_id(id: u32) -> Option<GgmlType> {
        TYPE_TABLE.iter().find(|e| e.1 == id).map(|e| e.0)
    }

    fn entry(self) -> &'static (GgmlType, u32, u64, u64) {
        TYPE_TABLE
            .iter()
            .find(|e| e.0 == self)
            .expect("every GgmlType variant is in TYPE_TABLE")
    }

    pub fn id(self) -> u32 {
        self.entry().1
    }

    /// Elements per block (1 for plain scalar types).
    pub fn block_size(self) -> u64 {
        self.entry().2
    }

    /// Bytes per block.
    pub fn type_size(self) -> u64 {
        self.entry().3
    }

    /// ggml's name for the type, as llama.cpp prints it.
    pub fn name(self) -> &'static str {
        use GgmlType::*;
        match self {
            F32 => "F32",
            F16 => "F16",
            Q4_0 => "Q4_0",
            Q4_1 => "Q4_1",
            Q5_0 => "Q5_0",
            Q5_1 => "Q5_1",
            Q8_0 => "Q8_0",
            Q8_1 => "Q8_1",
            Q2_K => "Q2_K",
            Q3_K => "Q3_K",
            Q4_K => "Q4_K",
            Q5_K => "Q5_K",
            Q6_K => "Q6_K",
            Q8_K => "Q8_K",
            IQ2_XXS => "IQ2_XXS",
            IQ2_XS => "IQ2_XS",
            IQ3_XXS => "IQ3_XXS",
            IQ1_S => "IQ1_S",
            IQ4_NL => "IQ4_NL",
            IQ3_S => "IQ3_S",
            IQ2_S => "IQ2_S",
            IQ4_XS => "IQ4_XS",
            I8 => "I8",
            I16 => "I16",
            I32 => "I32",
            I64 => "I64",
            F64 => "F64",
            IQ1_M => "IQ1_M",
            BF16 => "BF16",
            TQ1_0 => "TQ1_0",
            TQ2_0 => "TQ2_0",
            MXFP4 => "MXFP4",
            NVFP4 => "NVFP4",
        }
    }

    /// Bytes taken by `n_elements` values (which must be a whole number of blocks).
    pub fn bytes_for(self, n_elements: u64) -> Option<u64> {
        if n_elements % self.block_size() != 0 {
            return None;
        }
        (n_elements / self.block_size()).checked_mul(self.type_size())
    }
}

impl std::fmt::Display for GgmlType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl GgmlType {
    /// Whether this engine can dequantize the type on the CPU.
    pub fn is_supported(self) -> bool {
        use GgmlType::*;
        matches!(
            self,
            F32 | F16 | BF16 | Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0 | Q2_K | Q3_K | Q4_K | Q5_K | Q6_K
        )
    }
}

const SUPPORTED_HINT: &str =
    " (supported: F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q3_K Q4_K Q5_K Q6_K)";

fn unsupported(tensor: &str, ty: GgmlType) -> Error {
    Error::UnsupportedTensorType {
        tensor: tensor.to_string(),
        ty: ty.name().to_string(),
        hint: SUPPORTED_HINT,
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

fn f16_at(b: &[u8], i: usize) -> f32 {
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
                // Scale g: low 4 bits from packed[g % 8] (low nibble for g < 8, high after),
                // high 2 bits from packed[8 + g % 4] at bit 2 * (g / 4).
                let low = (packed[g % 8] >> (4 * (g / 8))) & 0xF;
                let high = (packed[8 + g % 4] >> (2 * (g / 4))) & 3;
                let dl = d * ((low | (high << 4)) as i32 - 32) as f32;
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

/// Scale and min `j` (0..8) of a Q4_K/Q5_K super-block: 6 bits each, packed in 12 bytes
/// (ggml's `get_scale_min_k4`).
fn scale_min_k4(j: usize, s: &[u8]) -> (u8, u8) {
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

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [GgmlType; 33] = {
        use GgmlType::*;
        [
            F32, F16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K,
            IQ2_XXS, IQ2_XS, IQ3_XXS, IQ1_S, IQ4_NL, IQ3_S, IQ2_S, IQ4_XS, I8, I16, I32, I64, F64,
            IQ1_M, BF16, TQ1_0, TQ2_0, MXFP4, NVFP4,
        ]
    };

    #[test]
    fn type_table_round_trips() {
        assert_eq!(TYPE_TABLE.len(), ALL.len());
        for ty in ALL {
            assert_eq!(GgmlType::from_id(ty.id()), Some(ty), "{ty}");
        }
        assert_eq!(
            GgmlType::from_id(4),
            None,
            "ids 4 and 5 (old Q4_2/Q4_3) are retired"
        );
        assert_eq!(GgmlType::from_id(1000), None);
    }

    #[test]
    fn every_supported_type_decodes_its_block_geometry() {
        for ty in ALL.into_iter().filter(|t| t.is_supported()) {
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
        let err = dequantize(GgmlType::IQ4_NL, &[0u8; 18], &mut [0f32; 32]).unwrap_err();
        assert_eq!(err.code(), "UNSUPPORTED_TENSOR_TYPE");
        assert!(err.to_string().contains("IQ4_NL"), "{err}");
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

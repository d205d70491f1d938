//! Requantizing a GGUF (`llama-wgpu quantize`): every 2-D weight becomes Q8_0, Q4_0 or Q4_1;
//! norms and other vectors keep their type; metadata is copied, with `general.file_type` set
//! to the new type. The quantizers are llama.cpp's reference ones (`quantize_row_*_ref` in
//! ggml-quants.c, which `llama-quantize` uses for these types when no importance matrix is
//! given), reproduced step for step in f32 so the bytes match llama.cpp's exactly:
//! tests/quantize.rs checks them against llama.cpp's output in tests/fixtures/quant.

use std::io::Write;

use half::f16;

use crate::error::{Error, Result};
use crate::gguf::{GgufFile, Value};
use crate::gguf_writer::GgufWriter;
use crate::quant::{dequantize_tensor, GgmlType};

/// Values per block of the three target types.
const QK: usize = 32;

/// The types this module writes.
pub const QUANTIZE_TYPES: [GgmlType; 3] = [GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_1];

/// llama.cpp's `llama_ftype` for a file whose weights are mostly `ty`.
fn file_type(ty: GgmlType) -> u32 {
    match ty {
        GgmlType::Q4_0 => 2,
        GgmlType::Q4_1 => 3,
        _ => 7, // Q8_0
    }
}

/// Quantize `values` (a whole number of 32-value blocks) to `ty`'s block bytes.
pub fn quantize(ty: GgmlType, values: &[f32]) -> Result<Vec<u8>> {
    if values.len() % QK != 0 {
        return Err(Error::InvalidArgument(format!(
            "{} values are not a whole number of {QK}-value blocks",
            values.len()
        )));
    }
    let block: fn(&[f32], &mut Vec<u8>) = match ty {
        GgmlType::Q8_0 => q8_0_block,
        GgmlType::Q4_0 => q4_0_block,
        GgmlType::Q4_1 => q4_1_block,
        other => {
            return Err(Error::InvalidArgument(format!(
                "quantize writes Q8_0, Q4_0 or Q4_1, not {other}"
            )))
        }
    };
    let mut out = Vec::with_capacity(values.len() / QK * ty.type_size() as usize);
    for x in values.chunks_exact(QK) {
        block(x, &mut out);
    }
    Ok(out)
}

/// d = max|x| / 127, q = round(x / d) (half away from zero, like C's roundf).
fn q8_0_block(x: &[f32], out: &mut Vec<u8>) {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
    out.extend(x.iter().map(|&v| (v * id).round() as i8 as u8));
}

/// d = (the value of largest magnitude, signed) / -8; q = min(15, trunc(x / d + 8.5)).
fn q4_0_block(x: &[f32], out: &mut Vec<u8>) {
    let (mut amax, mut max) = (0f32, 0f32);
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    let d = max / -8.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
    let q = |v: f32| ((v * id + 8.5) as i8).min(15) as u8;
    out.extend((0..QK / 2).map(|j| q(x[j]) | (q(x[j + QK / 2]) << 4)));
}

/// d = (max - min) / 15, m = min; q = min(15, trunc((x - min) / d + 0.5)).
fn q4_1_block(x: &[f32], out: &mut Vec<u8>) {
    let (mut min, mut max) = (f32::MAX, -f32::MAX);
    for &v in x {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    let d = (max - min) / 15.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
    out.extend_from_slice(&f16::from_f32(min).to_le_bytes());
    let q = |v: f32| (((v - min) * id + 0.5) as i8).min(15) as u8;
    out.extend((0..QK / 2).map(|j| q(x[j]) | (q(x[j + QK / 2]) << 4)));
}

/// What a requantization did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct QuantizeReport {
    pub tensors: usize,
    pub requantized: usize,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// Whether `quantize_file` rewrites this tensor: matrices whose rows are whole blocks.
fn requantizes(dims: &[u64], from: GgmlType, to: GgmlType) -> bool {
    dims.len() == 2 && dims[0] % QK as u64 == 0 && from != to
}

/// Write `input` to `out` with its matrices requantized to `ty`, one tensor in memory at a
/// time (written to `out.part`, renamed when complete).
pub fn quantize_file(
    input: &GgufFile,
    out: &std::path::Path,
    ty: GgmlType,
) -> Result<QuantizeReport> {
    if !QUANTIZE_TYPES.contains(&ty) {
        return Err(Error::InvalidArgument(format!(
            "quantize writes Q8_0, Q4_0 or Q4_1, not {ty}"
        )));
    }
    let h = &input.header;
    let mut writer = GgufWriter::new();
    for (key, value) in h.metadata.iter() {
        match key {
            "general.file_type" | "general.quantization_version" => {}
            _ => {
                writer.metadata(key, value.clone());
            }
        }
    }
    writer
        .metadata("general.file_type", Value::U32(file_type(ty)))
        .metadata("general.quantization_version", Value::U32(2));
    let mut report = QuantizeReport {
        tensors: h.tensors.len(),
        bytes_in: input.file_size,
        ..Default::default()
    };
    for t in &h.tensors {
        let (out_ty, n_bytes) = match requantizes(&t.dims, t.ty, ty) {
            true => {
                report.requantized += 1;
                (ty, ty.bytes_for(t.n_elements()).unwrap_or(0))
            }
            false => (t.ty, t.n_bytes),
        };
        writer.tensor_of_size(&t.name, &t.dims, out_ty, n_bytes);
    }

    let part = out.with_extension("gguf.part");
    let io = |e| Error::io(format!("writing {}", part.display()), e);
    let file = std::fs::File::create(&part).map_err(io)?;
    let mut file = std::io::BufWriter::with_capacity(1 << 20, file);
    file.write_all(&writer.header_bytes()).map_err(io)?;
    for (t, (n_bytes, pad)) in h.tensors.iter().zip(writer.data_layout()) {
        let bytes = input.read_tensor(t)?;
        let data = match requantizes(&t.dims, t.ty, ty) {
            true => quantize(ty, &dequantize_tensor(t, &bytes)?)?,
            false => bytes,
        };
        debug_assert_eq!(data.len() as u64, n_bytes);
        file.write_all(&data).map_err(io)?;
        file.write_all(&vec![0u8; pad as usize]).map_err(io)?;
    }
    file.flush().map_err(io)?;
    drop(file);
    report.bytes_out = std::fs::metadata(&part).map_err(io)?.len();
    std::fs::rename(&part, out)
        .map_err(|e| Error::io(format!("renaming to {}", out.display()), e))?;
    Ok(report)
}

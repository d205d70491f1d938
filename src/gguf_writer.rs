//! Writes GGUF v3 files: metadata and tensors in the layout `gguf::Header::parse` reads.
//! Used by the tests to build well-formed and deliberately broken files, and by tools that
//! rewrite a model (requantization).

use crate::gguf::{Header, Value, DEFAULT_ALIGNMENT, GGUF_MAGIC};
use crate::quant::GgmlType;

pub struct TensorEntry {
    pub name: String,
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    pub n_bytes: u64,
    pub data: Vec<u8>,
}

#[derive(Default)]
pub struct GgufWriter {
    metadata: Vec<(String, Value)>,
    tensors: Vec<TensorEntry>,
}

impl GgufWriter {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn metadata(&mut self, key: &str, value: Value) -> &mut Self {
        self.metadata.push((key.to_string(), value));
        self
    }

    /// Replace `key`'s value, or add the key ([`metadata`](Self::metadata) always adds, so
    /// tests can write duplicate keys on purpose).
    pub fn set_metadata(&mut self, key: &str, value: Value) -> &mut Self {
        match self.metadata.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value,
            None => self.metadata.push((key.to_string(), value)),
        }
        self
    }

    /// A writer holding `header`'s metadata and the tensors of `file` (the bytes `header` was
    /// parsed from), except those named in `skip`: a file to edit.
    pub fn from_file(header: &Header, file: &[u8], skip: &[&str]) -> Self {
        let mut w = GgufWriter::new();
        for (k, v) in header.metadata.iter() {
            w.metadata(k, v.clone());
        }
        for t in header
            .tensors
            .iter()
            .filter(|t| !skip.contains(&t.name.as_str()))
        {
            let start = (header.data_offset + t.offset) as usize;
            let data = file[start..start + t.n_bytes as usize].to_vec();
            w.tensor(&t.name, &t.dims, t.ty, data);
        }
        w
    }

    /// `data` must hold exactly the bytes `ty` needs for `dims` (not checked here, so tests can
    /// write inconsistent files on purpose).
    pub fn tensor(&mut self, name: &str, dims: &[u64], ty: GgmlType, data: Vec<u8>) -> &mut Self {
        self.tensors.push(TensorEntry {
            name: name.to_string(),
            dims: dims.to_vec(),
            ty,
            n_bytes: data.len() as u64,
            data,
        });
        self
    }

    /// Declare a tensor of `n_bytes` whose data the caller will stream itself (see
    /// [`GgufWriter::data_layout`]); `to_bytes` would write it empty.
    pub fn tensor_of_size(
        &mut self,
        name: &str,
        dims: &[u64],
        ty: GgmlType,
        n_bytes: u64,
    ) -> &mut Self {
        self.tensors.push(TensorEntry {
            name: name.to_string(),
            dims: dims.to_vec(),
            ty,
            n_bytes,
            data: Vec::new(),
        });
        self
    }

    fn alignment(&self) -> u64 {
        self.metadata
            .iter()
            .find(|(k, _)| k == "general.alignment")
            .and_then(|(_, v)| v.as_u64())
            .filter(|a| a.is_power_of_two())
            .unwrap_or(DEFAULT_ALIGNMENT)
    }

    /// The whole file. Tensors are laid out in the order given, each aligned.
    /// The whole file.
    pub fn to_bytes(&self) -> Vec<u8> {
        let align = self.alignment();
        let mut out = self.header_bytes();
        for t in &self.tensors {
            out.extend_from_slice(&t.data);
            pad_to(&mut out, align);
        }
        out
    }

    /// Everything before the tensor data (padded to the alignment). Tensors' offsets come
    /// from the lengths of their `data`; a writer that streams data it does not hold declares
    /// each tensor with [`GgufWriter::tensor_of_size`].
    pub fn header_bytes(&self) -> Vec<u8> {
        let align = self.alignment();
        let mut out = Vec::new();
        out.extend_from_slice(&GGUF_MAGIC);
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (key, value) in &self.metadata {
            write_string(&mut out, key);
            out.extend_from_slice(&value_type_id(value).to_le_bytes());
            write_value(&mut out, value);
        }
        let mut offset = 0u64;
        for t in &self.tensors {
            write_string(&mut out, &t.name);
            out.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.extend_from_slice(&t.ty.id().to_le_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
            offset = (offset + t.n_bytes).div_ceil(align) * align;
        }
        pad_to(&mut out, align);
        out
    }

    /// Byte length of each tensor's data plus the padding after it, in file order: what a
    /// streaming writer must emit after [`GgufWriter::header_bytes`].
    pub fn data_layout(&self) -> Vec<(u64, u64)> {
        let align = self.alignment();
        self.tensors
            .iter()
            .map(|t| (t.n_bytes, t.n_bytes.div_ceil(align) * align - t.n_bytes))
            .collect()
    }
}

fn pad_to(out: &mut Vec<u8>, align: u64) {
    let len = (out.len() as u64).div_ceil(align) * align;
    out.resize(len as usize, 0);
}

fn write_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// GGUF value type id. An empty array is written as an array of u8 (its element type is not
/// recoverable from `Value`, and no reader depends on it).
fn value_type_id(v: &Value) -> u32 {
    match v {
        Value::U8(_) => 0,
        Value::I8(_) => 1,
        Value::U16(_) => 2,
        Value::I16(_) => 3,
        Value::U32(_) => 4,
        Value::I32(_) => 5,
        Value::F32(_) => 6,
        Value::Bool(_) => 7,
        Value::String(_) => 8,
        Value::Array(_) => 9,
        Value::U64(_) => 10,
        Value::I64(_) => 11,
        Value::F64(_) => 12,
    }
}

fn write_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.push(*x as u8),
        Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => out.push(*x as u8),
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            let elem = items.first().map(value_type_id).unwrap_or(0);
            out.extend_from_slice(&elem.to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for item in items {
                write_value(out, item);
            }
        }
    }
}

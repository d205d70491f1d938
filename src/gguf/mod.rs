//! GGUF v2/v3 reader.
//!
//! Incremental: bytes are pushed in chunks as they arrive (a fetch body, a `File` read by slices,
//! a native file), the header and tensor table come out as soon as they are complete, and from then
//! on each pushed chunk is cut into per-tensor pieces that the caller uploads and forgets. The
//! whole file is never held. Random-access sources (a native file) use the same header parser and
//! then read each tensor by its byte range.
//!
//! Strict: every count, length, dimension and offset is checked against the bytes that can exist
//! (the file size when known, the bytes actually buffered otherwise) and against sane maxima before
//! anything is allocated. A bad file is an [`Error::Gguf`] naming the problem and its byte offset.

use std::collections::HashMap;

use crate::error::{Error, GgufProblem, Result};
use crate::ggml_type::GgmlType;

#[cfg(not(target_arch = "wasm32"))]
mod file;
mod stream;
mod value;

#[cfg(not(target_arch = "wasm32"))]
pub use file::GgufFile;
pub use stream::{Event, StreamReader};
pub use value::{Metadata, Value};

pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
pub const DEFAULT_ALIGNMENT: u64 = 32;

/// Upper bounds no real model reaches; they stop absurd counts before any allocation.
const MAX_TENSORS: u64 = 1 << 20;
const MAX_METADATA: u64 = 1 << 20;
const MAX_DIMS: u32 = 4;
const MAX_ARRAY_NESTING: u32 = 4;
/// The header (metadata + tensor table) is buffered whole; a 256k-token vocabulary is ~10 MB.
pub const MAX_HEADER_BYTES: u64 = 512 << 20;

/// One entry of the tensor table.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// GGUF `ne` order: `dims[0]` is the contiguous row length.
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    /// Offset of the tensor's first byte from the start of the data section.
    pub offset: u64,
    /// Size in bytes, derived from dims and type.
    pub n_bytes: u64,
}

impl TensorInfo {
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }

    /// (number of rows, row length): rows are the product of the dims after `dims[0]`.
    pub fn rows_cols(&self) -> (u64, u64) {
        let cols = self.dims.first().copied().unwrap_or(1);
        (self.n_elements() / cols.max(1), cols)
    }
}

/// Everything before the tensor data: version, metadata, tensor table and where data starts.
#[derive(Debug, Clone)]
pub struct Header {
    pub version: u32,
    pub metadata: Metadata,
    pub tensors: Vec<TensorInfo>,
    pub alignment: u64,
    /// Absolute file offset of the data section (tensor offsets are relative to it).
    pub data_offset: u64,
    /// Bytes of the file the header parser consumed (before alignment padding).
    pub header_len: u64,
}

impl Header {
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// Absolute end of the last tensor's data: the smallest file size that holds every tensor.
    /// Without tensors that is the header itself: the padding to the data section may be
    /// missing or cut short (llama.cpp reads such files, and `parse` accepts them).
    pub fn data_end(&self) -> u64 {
        self.tensors
            .iter()
            .map(|t| self.data_offset + t.offset + t.n_bytes)
            .max()
            .unwrap_or(self.header_len)
    }

    /// Parse a header from the start of a file. `bytes` may hold just the header or the whole
    /// file; `file_size` (when known) bounds every length and offset. `Ok(None)` means the
    /// header continues past `bytes` and more bytes are needed.
    pub fn parse(bytes: &[u8], file_size: Option<u64>) -> Result<Option<Header>> {
        let mut cur = Cursor {
            bytes,
            pos: 0,
            file_size,
        };
        match parse_header(&mut cur) {
            Ok(h) => Ok(Some(h)),
            Err(Stop::NeedMore) => Ok(None),
            Err(Stop::Bad(e)) => Err(e),
        }
    }
}

/// Why the header parser stopped: a bad file, or it ran off the end of the bytes it was given.
enum Stop {
    NeedMore,
    Bad(Error),
}

impl From<Error> for Stop {
    fn from(e: Error) -> Self {
        Stop::Bad(e)
    }
}

type PResult<T> = std::result::Result<T, Stop>;

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    file_size: Option<u64>,
}

impl Cursor<'_> {
    fn offset(&self) -> u64 {
        self.pos as u64
    }

    fn bad(&self, problem: GgufProblem) -> Stop {
        Stop::Bad(Error::gguf(self.offset(), problem))
    }

    /// Bytes that can still follow the cursor: in the file when its size is known, otherwise an
    /// upper bound from the header size cap (the actual buffer decides "need more").
    fn remaining_in_file(&self) -> u64 {
        match self.file_size {
            Some(n) => n.saturating_sub(self.offset()),
            None => MAX_HEADER_BYTES.saturating_sub(self.offset()),
        }
    }

    /// That `claimed` bytes (a count or length read at `at` times its smallest size) can follow
    /// the cursor. A claim a header could hold but this file is too short for means the file
    /// was cut (`Truncated`: a download that stopped early); one no header could hold is
    /// `absurd` (a corrupt or hostile count).
    fn check_claim(&self, at: u64, claimed: u64, absurd: GgufProblem) -> PResult<()> {
        let remaining = self.remaining_in_file();
        if claimed <= remaining {
            return Ok(());
        }
        let header_room = MAX_HEADER_BYTES.saturating_sub(self.offset());
        let problem = match self.file_size {
            Some(_) if claimed <= header_room => GgufProblem::Truncated {
                needed: claimed - remaining,
            },
            _ => absurd,
        };
        Err(Stop::Bad(Error::gguf(at, problem)))
    }

    fn take(&mut self, n: u64) -> PResult<&[u8]> {
        if n > self.remaining_in_file() {
            return Err(match self.file_size {
                Some(_) => self.bad(GgufProblem::Truncated {
                    needed: n - self.remaining_in_file(),
                }),
                None => self.bad(GgufProblem::HeaderTooLarge(self.offset() + n)),
            });
        }
        let n = n as usize;
        if self.bytes.len() - self.pos < n {
            return Err(Stop::NeedMore);
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> PResult<[u8; N]> {
        let s = self.take(N as u64)?;
        Ok(s.try_into().expect("take returned N bytes"))
    }

    fn u8(&mut self) -> PResult<u8> {
        Ok(self.array::<1>()?[0])
    }
    fn u32(&mut self) -> PResult<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> PResult<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn string(&mut self) -> PResult<String> {
        let at = self.offset();
        let len = self.u64()?;
        self.check_claim(at, len, GgufProblem::StringTooLong(len))?;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| Stop::Bad(Error::gguf(at + 8, GgufProblem::InvalidUtf8)))
    }

    fn value(&mut self, type_id: u32, depth: u32) -> PResult<Value> {
        Ok(match type_id {
            0 => Value::U8(self.u8()?),
            1 => Value::I8(self.u8()? as i8),
            2 => Value::U16(u16::from_le_bytes(self.array()?)),
            3 => Value::I16(i16::from_le_bytes(self.array()?)),
            4 => Value::U32(self.u32()?),
            5 => Value::I32(i32::from_le_bytes(self.array()?)),
            6 => Value::F32(f32::from_le_bytes(self.array()?)),
            7 => Value::Bool(self.u8()? != 0),
            8 => Value::String(self.string()?),
            9 => {
                if depth >= MAX_ARRAY_NESTING {
                    return Err(self.bad(GgufProblem::NestingTooDeep));
                }
                let at = self.offset();
                let elem_type = self.u32()?;
                let len = self.u64()?;
                let min_elem = min_value_size(elem_type).ok_or_else(|| {
                    Stop::Bad(Error::gguf(at, GgufProblem::UnknownValueType(elem_type)))
                })?;
                let claimed = len.saturating_mul(min_elem);
                self.check_claim(at + 4, claimed, GgufProblem::ArrayTooLong(len))?;
                // Capacity is bounded by the bytes actually buffered, never by `len` alone.
                let buffered = (self.bytes.len() - self.pos) as u64 / min_elem;
                let mut items = Vec::with_capacity(len.min(buffered) as usize);
                for _ in 0..len {
                    items.push(self.value(elem_type, depth + 1)?);
                }
                Value::Array(items)
            }
            10 => Value::U64(self.u64()?),
            11 => Value::I64(i64::from_le_bytes(self.array()?)),
            12 => Value::F64(f64::from_le_bytes(self.array()?)),
            other => {
                return Err(Stop::Bad(Error::gguf(
                    self.offset().saturating_sub(4),
                    GgufProblem::UnknownValueType(other),
                )))
            }
        })
    }
}

/// The fewest bytes one value of a type can take (arrays and strings: their length fields).
fn min_value_size(type_id: u32) -> Option<u64> {
    Some(match type_id {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        8 => 8,
        9 => 12,
        10..=12 => 8,
        _ => return None,
    })
}

fn parse_header(cur: &mut Cursor) -> PResult<Header> {
    let magic: [u8; 4] = cur.array()?;
    if magic != GGUF_MAGIC {
        return Err(Stop::Bad(Error::gguf(0, GgufProblem::BadMagic(magic))));
    }
    let version = cur.u32()?;
    if version != 2 && version != 3 {
        return Err(Stop::Bad(Error::gguf(
            4,
            GgufProblem::UnsupportedVersion(version),
        )));
    }
    let n_tensors = cur.u64()?;
    // A tensor-table entry takes at least 8 (name length) + 4 + 8 + 4 + 8 bytes.
    if n_tensors > MAX_TENSORS {
        return Err(Stop::Bad(Error::gguf(
            8,
            GgufProblem::TooManyTensors(n_tensors),
        )));
    }
    cur.check_claim(
        8,
        n_tensors.saturating_mul(32),
        GgufProblem::TooManyTensors(n_tensors),
    )?;
    let n_kv = cur.u64()?;
    // A metadata entry takes at least 8 (key length) + 4 (type) + 1 bytes.
    if n_kv > MAX_METADATA {
        return Err(Stop::Bad(Error::gguf(
            16,
            GgufProblem::TooManyMetadata(n_kv),
        )));
    }
    cur.check_claim(
        16,
        n_kv.saturating_mul(13),
        GgufProblem::TooManyMetadata(n_kv),
    )?;

    let mut metadata = Metadata::default();
    for _ in 0..n_kv {
        let at = cur.offset();
        let key = cur.string()?;
        let type_id = cur.u32()?;
        let value = cur.value(type_id, 0)?;
        if !metadata.insert(key.clone(), value) {
            return Err(Stop::Bad(Error::gguf(at, GgufProblem::DuplicateKey(key))));
        }
    }

    let alignment = match metadata.get("general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some(v) => match v.as_u64() {
            Some(a) if a.is_power_of_two() && a <= 65536 => a,
            _ => {
                let shown = v.as_u64().unwrap_or(0);
                return Err(Stop::Bad(Error::gguf(
                    cur.offset(),
                    GgufProblem::BadAlignment(shown),
                )));
            }
        },
    };

    let mut tensors: Vec<TensorInfo> = Vec::with_capacity(n_tensors as usize);
    let mut seen = HashMap::with_capacity(n_tensors as usize);
    for _ in 0..n_tensors {
        let at = cur.offset();
        let name = cur.string()?;
        let n_dims = cur.u32()?;
        if n_dims > MAX_DIMS {
            return Err(cur.bad(GgufProblem::TooManyDims {
                tensor: name,
                n_dims,
            }));
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            let d = cur.u64()?;
            if d == 0 || d > i64::MAX as u64 {
                return Err(cur.bad(GgufProblem::BadDim {
                    tensor: name,
                    dim: d,
                }));
            }
            dims.push(d);
        }
        if dims.is_empty() {
            dims.push(1);
        }
        let type_id = cur.u32()?;
        let ty = GgmlType::from_id(type_id).ok_or_else(|| {
            cur.bad(GgufProblem::UnknownTensorType {
                tensor: name.clone(),
                type_id,
            })
        })?;
        let offset = cur.u64()?;

        let n_elements = dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .filter(|&n| n <= i64::MAX as u64)
            .ok_or_else(|| {
                Stop::Bad(Error::gguf(
                    at,
                    GgufProblem::TooManyElements {
                        tensor: name.clone(),
                    },
                ))
            })?;
        if dims[0] % ty.block_size() != 0 {
            return Err(Stop::Bad(Error::gguf(
                at,
                GgufProblem::RowNotBlockAligned {
                    tensor: name,
                    row: dims[0],
                    block: ty.block_size(),
                },
            )));
        }
        let n_bytes = ty.bytes_for(n_elements).ok_or_else(|| {
            Stop::Bad(Error::gguf(
                at,
                GgufProblem::TooManyElements {
                    tensor: name.clone(),
                },
            ))
        })?;
        if offset % alignment != 0 {
            return Err(Stop::Bad(Error::gguf(
                at,
                GgufProblem::MisalignedTensor {
                    tensor: name,
                    offset,
                    alignment,
                },
            )));
        }
        if seen.insert(name.clone(), tensors.len()).is_some() {
            return Err(Stop::Bad(Error::gguf(
                at,
                GgufProblem::DuplicateTensor(name),
            )));
        }
        tensors.push(TensorInfo {
            name,
            dims,
            ty,
            offset,
            n_bytes,
        });
    }

    let header_len = cur.offset();
    let data_offset = header_len.div_ceil(alignment) * alignment;
    let header = Header {
        version,
        metadata,
        tensors,
        alignment,
        data_offset,
        header_len,
    };
    check_tensor_layout(&header, cur.file_size).map_err(Stop::Bad)?;
    Ok(header)
}

/// Tensors must not overlap and, when the file size is known, must end inside the file.
fn check_tensor_layout(header: &Header, file_size: Option<u64>) -> Result<()> {
    let mut order: Vec<usize> = (0..header.tensors.len()).collect();
    order.sort_by_key(|&i| header.tensors[i].offset);
    for pair in order.windows(2) {
        let (a, b) = (&header.tensors[pair[0]], &header.tensors[pair[1]]);
        // Saturating: offsets near u64::MAX must not wrap past the next tensor's start.
        if a.offset.saturating_add(a.n_bytes) > b.offset {
            return Err(Error::gguf(
                header.data_offset.saturating_add(b.offset),
                GgufProblem::TensorsOverlap {
                    first: a.name.clone(),
                    second: b.name.clone(),
                },
            ));
        }
    }
    for t in &header.tensors {
        let end = header
            .data_offset
            .checked_add(t.offset)
            .and_then(|s| s.checked_add(t.n_bytes));
        let limit = file_size.unwrap_or(u64::MAX);
        match end {
            Some(end) if end <= limit => {}
            _ => {
                return Err(Error::gguf(
                    header.data_offset.saturating_add(t.offset),
                    GgufProblem::TensorOutOfBounds {
                        tensor: t.name.clone(),
                        end: end.unwrap_or(u64::MAX),
                        file_size: limit,
                    },
                ))
            }
        }
    }
    Ok(())
}

//! The streaming side of the reader: chunks in, header once, then per-tensor pieces out.

use super::{Header, MAX_HEADER_BYTES};
use crate::error::{Error, GgufProblem, Result};

/// What the streaming reader hands out as bytes arrive.
#[derive(Debug)]
pub enum Event<'a> {
    /// The header and tensor table are complete (emitted once, before any tensor data).
    Header(&'a Header),
    /// `bytes` belong to tensor `tensor` (index into `Header::tensors`) starting at byte
    /// `offset` of that tensor. Pieces of one tensor arrive in order.
    TensorData {
        tensor: usize,
        offset: u64,
        bytes: &'a [u8],
    },
    /// Every byte of tensor `tensor` has been handed out.
    TensorDone { tensor: usize },
}

/// Incremental GGUF reader for sequential sources (a fetch body, a stream). Push chunks of any
/// size; it buffers only the header, then cuts each chunk into tensor pieces and keeps nothing.
pub struct StreamReader {
    file_size: Option<u64>,
    /// Bytes seen so far (absolute offset of the next pushed byte).
    position: u64,
    /// Header bytes buffered until the header parses.
    pending: Vec<u8>,
    /// Buffered length at which to try parsing again (grows geometrically, so a large header is
    /// parsed O(log n) times, not once per chunk).
    next_attempt: usize,
    header: Option<Header>,
    /// Tensor indices sorted by offset, and per tensor the bytes already handed out.
    order: Vec<usize>,
    delivered: Vec<u64>,
}

impl StreamReader {
    /// `file_size` is the total length when the source knows it (Content-Length, File.size);
    /// it lets lengths and offsets be rejected before their bytes arrive.
    pub fn new(file_size: Option<u64>) -> Self {
        StreamReader {
            file_size,
            position: 0,
            pending: Vec::new(),
            next_attempt: 24,
            header: None,
            order: Vec::new(),
            delivered: Vec::new(),
        }
    }

    pub fn header(&self) -> Option<&Header> {
        self.header.as_ref()
    }

    /// Bytes pushed so far.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Feed the next chunk. `sink` receives the header once it is complete, then tensor pieces.
    pub fn push(
        &mut self,
        chunk: &[u8],
        sink: &mut dyn FnMut(Event<'_>) -> Result<()>,
    ) -> Result<()> {
        if let Some(size) = self.file_size {
            if self.position + chunk.len() as u64 > size {
                return Err(Error::InvalidArgument(format!(
                    "the source delivered more than its declared {size} bytes"
                )));
            }
        }
        if self.header.is_some() {
            let start = self.position;
            self.position += chunk.len() as u64;
            return self.deliver(start, chunk, sink);
        }

        self.pending.extend_from_slice(chunk);
        self.position += chunk.len() as u64;
        let at_end = self.file_size == Some(self.position);
        if self.pending.len() < self.next_attempt && !at_end {
            return Ok(());
        }
        self.try_header(self.file_size, sink)
    }

    /// Parse the buffered bytes as a header; once complete, emit it and the tensor bytes
    /// already buffered behind it.
    fn try_header(
        &mut self,
        file_size: Option<u64>,
        sink: &mut dyn FnMut(Event<'_>) -> Result<()>,
    ) -> Result<()> {
        match Header::parse(&self.pending, file_size)? {
            None => {
                if self.pending.len() as u64 >= MAX_HEADER_BYTES {
                    return Err(Error::gguf(
                        self.pending.len() as u64,
                        GgufProblem::HeaderTooLarge(self.pending.len() as u64),
                    ));
                }
                self.next_attempt = self.pending.len().saturating_mul(2);
                Ok(())
            }
            Some(header) => {
                let mut order: Vec<usize> = (0..header.tensors.len()).collect();
                order.sort_by_key(|&i| header.tensors[i].offset);
                self.delivered = vec![0; header.tensors.len()];
                self.order = order;
                sink(Event::Header(&header))?;
                self.header = Some(header);
                let pending = std::mem::take(&mut self.pending);
                self.deliver(0, &pending, sink)
            }
        }
    }

    /// Hand out the parts of `bytes` (absolute file offset `start`) that fall inside tensors.
    fn deliver(
        &mut self,
        start: u64,
        bytes: &[u8],
        sink: &mut dyn FnMut(Event<'_>) -> Result<()>,
    ) -> Result<()> {
        let header = self.header.as_ref().expect("deliver runs after the header");
        let end = start + bytes.len() as u64;
        for &i in &self.order {
            let t = &header.tensors[i];
            let t_start = header.data_offset + t.offset;
            let t_end = t_start + t.n_bytes;
            if t_end <= start {
                continue;
            }
            if t_start >= end {
                break;
            }
            let lo = t_start.max(start);
            let hi = t_end.min(end);
            let piece = &bytes[(lo - start) as usize..(hi - start) as usize];
            sink(Event::TensorData {
                tensor: i,
                offset: lo - t_start,
                bytes: piece,
            })?;
            self.delivered[i] += piece.len() as u64;
            if self.delivered[i] == t.n_bytes {
                sink(Event::TensorDone { tensor: i })?;
            }
        }
        Ok(())
    }

    /// The source has ended: an error if the header or any tensor is incomplete. `sink` gets
    /// whatever a source of unknown size left buffered (a header shorter than one parse step).
    pub fn finish(&mut self, sink: &mut dyn FnMut(Event<'_>) -> Result<()>) -> Result<&Header> {
        if self.header.is_none() {
            // Now the size is known: the parse either completes or reports the truncation.
            self.try_header(Some(self.position), sink)?;
        }
        let Some(header) = self.header.as_ref() else {
            return Err(Error::gguf(
                self.position,
                GgufProblem::Truncated { needed: 1 },
            ));
        };
        let end = header.data_end();
        if self.position < end {
            return Err(Error::gguf(
                self.position,
                GgufProblem::Truncated {
                    needed: end - self.position,
                },
            ));
        }
        Ok(header)
    }
}

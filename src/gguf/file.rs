//! A GGUF file on disk (native only): the header parsed once, tensors read by range.

use super::{Event, Header, TensorInfo, MAX_HEADER_BYTES};
use crate::error::{Error, GgufProblem, Result};

/// A GGUF file on disk: header parsed once, tensors read by range on demand.
pub struct GgufFile {
    file: std::fs::File,
    pub header: Header,
    pub file_size: u64,
    path: std::path::PathBuf,
}

impl GgufFile {
    pub fn open(path: impl AsRef<std::path::Path>) -> Result<Self> {
        use std::io::Read;
        let path = path.as_ref().to_path_buf();
        let shown = path.display().to_string();
        let mut file =
            std::fs::File::open(&path).map_err(|e| Error::io(format!("opening {shown}"), e))?;
        let file_size = file
            .metadata()
            .map_err(|e| Error::io(format!("reading {shown}"), e))?
            .len();
        let mut buf = Vec::new();
        let mut want: u64 = 1 << 20;
        loop {
            let target = want.min(file_size).min(MAX_HEADER_BYTES) as usize;
            if buf.len() < target {
                let old = buf.len();
                buf.resize(target, 0);
                file.read_exact(&mut buf[old..])
                    .map_err(|e| Error::io(format!("reading {shown}"), e))?;
            }
            if let Some(header) = Header::parse(&buf, Some(file_size))? {
                return Ok(GgufFile {
                    file,
                    header,
                    file_size,
                    path,
                });
            }
            if buf.len() as u64 >= file_size.min(MAX_HEADER_BYTES) {
                return Err(Error::gguf(
                    buf.len() as u64,
                    GgufProblem::HeaderTooLarge(buf.len() as u64),
                ));
            }
            want *= 4;
        }
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// The raw bytes of one tensor, read from its range in the file.
    pub fn read_tensor(&self, info: &TensorInfo) -> Result<Vec<u8>> {
        let mut out = vec![0u8; info.n_bytes as usize];
        self.read_range(self.header.data_offset + info.offset, &mut out)
            .map_err(|e| Error::io(format!("reading tensor `{}`", info.name), e))?;
        Ok(out)
    }

    /// Every tensor's bytes in header order, in pieces of at most 1 MiB, as a stream delivers
    /// them (`StreamReader`'s `TensorData` and `TensorDone` events).
    pub fn stream_tensors(&self, on: &mut dyn FnMut(Event<'_>) -> Result<()>) -> Result<()> {
        let mut buf = vec![0u8; 1 << 20];
        for (tensor, t) in self.header.tensors.iter().enumerate() {
            let start = self.header.data_offset + t.offset;
            let mut offset = 0u64;
            while offset < t.n_bytes {
                let n = (t.n_bytes - offset).min(buf.len() as u64) as usize;
                self.read_range(start + offset, &mut buf[..n])
                    .map_err(|e| Error::io(format!("reading tensor `{}`", t.name), e))?;
                let bytes = &buf[..n];
                on(Event::TensorData {
                    tensor,
                    offset,
                    bytes,
                })?;
                offset += n as u64;
            }
            on(Event::TensorDone { tensor })?;
        }
        Ok(())
    }

    /// Read `out.len()` bytes at absolute offset `offset`.
    pub fn read_range(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileExt;
            self.file.read_exact_at(out, offset)
        }
        #[cfg(not(unix))]
        {
            use std::io::{Read, Seek, SeekFrom};
            let mut f = &self.file;
            f.seek(SeekFrom::Start(offset))?;
            f.read_exact(out)
        }
    }
}

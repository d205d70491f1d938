//! Reading a LoRA adapter GGUF as llama.cpp writes it (`convert_lora_to_gguf.py`):
//! `general.type = "adapter"`, `adapter.type = "lora"`, `adapter.lora.alpha`, and for each
//! adapted weight `W` (`blk.N.attn_q.weight`, ...) two tensors `W.lora_a` (GGUF dims
//! `[n_in, rank]`: `rank` rows of `n_in`) and `W.lora_b` (`[rank, n_out]`), of any type the
//! CPU decodes. The adapted product is `W x + scale * B (A x)`, with llama.cpp's
//! `scale = user_scale * alpha / rank` (`user_scale` alone when alpha is 0).
//!
//! Tensors are decoded to f32 as they arrive: adapters are small (a rank-16 adapter of every
//! projection of a 135M model is 20 MB in f32), and the combined stack (`stack.rs`) is built
//! from f32 whatever mix of adapters is active.

use crate::error::{Error, Result};
use crate::gguf::{Event, Header, TensorInfo};

/// The largest rank accepted: far above any published adapter (4..256), low enough that a
/// hostile file cannot make the combined stack huge.
pub const MAX_RANK: u64 = 1024;

/// One adapted weight: `W x += scale * B (A x)`.
#[derive(Debug, Clone)]
pub struct LoraPair {
    /// The base model's tensor it adapts, e.g. `blk.3.attn_q.weight`.
    pub target: String,
    pub rank: usize,
    pub n_in: usize,
    pub n_out: usize,
    /// `[rank][n_in]`.
    pub a: Vec<f32>,
    /// `[n_out][rank]`.
    pub b: Vec<f32>,
}

/// A LoRA adapter read from its GGUF.
#[derive(Debug, Clone)]
pub struct Adapter {
    /// `general.name`, when the file has one.
    pub name: Option<String>,
    /// `general.architecture`: the base model's.
    pub architecture: String,
    /// `adapter.lora.alpha` (0: none, the scale is the user's alone).
    pub alpha: f32,
    /// Sorted by target name.
    pub pairs: Vec<LoraPair>,
}

impl Adapter {
    /// The adapter in a GGUF file on disk.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load(path: impl AsRef<std::path::Path>) -> Result<Adapter> {
        let file = crate::gguf::GgufFile::open(path)?;
        let mut reader = AdapterReader::new(&file.header)?;
        file.stream_tensors(&mut |event| reader.event(event))?;
        reader.finish()
    }

    /// The adapter in a whole GGUF file in memory.
    pub fn from_bytes(bytes: &[u8]) -> Result<Adapter> {
        let mut stream = AdapterStream::new(Some(bytes.len() as u64));
        stream.push(bytes)?;
        stream.finish()
    }

    /// Rank of the adapter (the largest of its pairs').
    pub fn rank(&self) -> usize {
        self.pairs.iter().map(|p| p.rank).max().unwrap_or(0)
    }

    /// llama.cpp's scale of a pair at `user_scale`.
    pub fn pair_scale(&self, pair: &LoraPair, user_scale: f32) -> f32 {
        match self.alpha {
            a if a != 0.0 => user_scale * a / pair.rank as f32,
            _ => user_scale,
        }
    }

    /// Bytes of f32 the adapter holds.
    pub fn bytes(&self) -> u64 {
        let floats: usize = self.pairs.iter().map(|p| p.a.len() + p.b.len()).sum();
        4 * floats as u64
    }
}

/// An adapter GGUF pushed in chunks of any size (a download, a `File` read in slices): the
/// header is checked as soon as it is complete, the tensors gathered by an [`AdapterReader`].
pub struct AdapterStream {
    stream: crate::gguf::StreamReader,
    reader: Option<AdapterReader>,
}

impl AdapterStream {
    /// `file_size`, when known, lets impossible offsets be refused early.
    pub fn new(file_size: Option<u64>) -> AdapterStream {
        AdapterStream {
            stream: crate::gguf::StreamReader::new(file_size),
            reader: None,
        }
    }

    pub fn push(&mut self, chunk: &[u8]) -> Result<()> {
        let AdapterStream { stream, reader } = self;
        stream.push(chunk, &mut |event| take(reader, event))
    }

    /// Bytes pushed so far.
    pub fn position(&self) -> u64 {
        self.stream.position()
    }

    /// Every byte was pushed: the adapter.
    pub fn finish(mut self) -> Result<Adapter> {
        let AdapterStream { stream, reader } = &mut self;
        stream.finish(&mut |event| take(reader, event))?;
        match self.reader {
            Some(r) => r.finish(),
            None => Err(Error::ModelInvalid("the adapter file has no header".into())),
        }
    }
}

fn take(reader: &mut Option<AdapterReader>, event: Event<'_>) -> Result<()> {
    match (reader.as_mut(), event) {
        (None, Event::Header(h)) => {
            *reader = Some(AdapterReader::new(h)?);
            Ok(())
        }
        (Some(r), e) => r.event(e),
        (None, _) => Err(Error::ModelInvalid("adapter data before its header".into())),
    }
}

/// Builds an [`Adapter`] from a header and the stream of tensor pieces that follows it (a file
/// or a download: the same events `StreamReader` gives).
pub struct AdapterReader {
    header: Header,
    alpha: f32,
    /// Per tensor of the header: bytes received so far.
    data: Vec<Vec<u8>>,
}

impl AdapterReader {
    /// Check the header is a LoRA adapter's, before any tensor byte is read.
    pub fn new(header: &Header) -> Result<AdapterReader> {
        let m = &header.metadata;
        let kind = m.get_str("general.type");
        if kind != Some("adapter") {
            let what = kind.map_or("no `general.type`".to_string(), |k| {
                format!("`general.type` \"{k}\"")
            });
            return Err(Error::ModelInvalid(format!(
                "not a LoRA adapter: the file has {what} (an adapter has \"adapter\")"
            )));
        }
        match m.get_str("adapter.type") {
            Some("lora") => {}
            other => {
                return Err(Error::ModelInvalid(format!(
                    "adapter type {other:?} is not supported (only \"lora\" is)"
                )))
            }
        }
        let alpha = match m.get("adapter.lora.alpha") {
            None => 0.0,
            Some(v) => v.as_f64().filter(|a| a.is_finite()).ok_or_else(|| {
                Error::ModelInvalid("`adapter.lora.alpha` is not a finite number".into())
            })? as f32,
        };
        let architecture = m.get_str("general.architecture").unwrap_or("");
        if architecture.is_empty() {
            return Err(Error::ModelInvalid(
                "the adapter names no `general.architecture`".into(),
            ));
        }
        for t in &header.tensors {
            check_tensor(t)?;
            // Each half of a pair needs the other (lora_a's partner is looked up in `finish`).
            if let Some(target) = t.name.strip_suffix(".lora_b") {
                let a = format!("{target}.lora_a");
                if header.tensor(&a).is_none() {
                    return Err(Error::ModelInvalid(format!(
                        "adapter tensor `{a}` is missing"
                    )));
                }
            }
        }
        Ok(AdapterReader {
            header: header.clone(),
            alpha,
            data: vec![Vec::new(); header.tensors.len()],
        })
    }

    /// Take one event of the stream (the header event is ignored: `new` read it).
    pub fn event(&mut self, event: Event<'_>) -> Result<()> {
        if let Event::TensorData { tensor, bytes, .. } = event {
            let data = self.data.get_mut(tensor).ok_or_else(|| {
                Error::ModelInvalid(format!("adapter tensor index {tensor} is out of range"))
            })?;
            data.extend_from_slice(bytes);
        }
        Ok(())
    }

    /// Pair the tensors up and decode them to f32.
    pub fn finish(self) -> Result<Adapter> {
        let tensors = &self.header.tensors;
        let mut pairs = Vec::new();
        for (i, a) in tensors.iter().enumerate() {
            let Some(target) = a.name.strip_suffix(".lora_a") else {
                continue;
            };
            let b_name = format!("{target}.lora_b");
            let (j, b) = tensors
                .iter()
                .enumerate()
                .find(|(_, t)| t.name == b_name)
                .ok_or_else(|| {
                    Error::ModelInvalid(format!("adapter tensor `{b_name}` is missing"))
                })?;
            let (rank, n_in) = (a.dims[1], a.dims[0]);
            let (n_out, b_rank) = (b.dims[1], b.dims[0]);
            if rank != b_rank {
                return Err(Error::ModelInvalid(format!(
                    "adapter tensors `{}` (rank {rank}) and `{b_name}` (rank {b_rank}) disagree",
                    a.name
                )));
            }
            pairs.push(LoraPair {
                target: target.to_string(),
                rank: rank as usize,
                n_in: n_in as usize,
                n_out: n_out as usize,
                a: decode(a, &self.data[i])?,
                b: decode(b, &self.data[j])?,
            });
        }
        if pairs.is_empty() {
            return Err(Error::ModelInvalid(
                "the adapter holds no `.lora_a` / `.lora_b` tensors".into(),
            ));
        }
        pairs.sort_by(|x, y| x.target.cmp(&y.target));
        let m = &self.header.metadata;
        Ok(Adapter {
            name: m.get_str("general.name").map(str::to_owned),
            architecture: m.get_str("general.architecture").unwrap_or("").to_string(),
            alpha: self.alpha,
            pairs,
        })
    }
}

/// Every tensor of an adapter is a 2-D `lora_a` or `lora_b` of a CPU type, rank in bounds.
fn check_tensor(t: &TensorInfo) -> Result<()> {
    let is_a = t.name.ends_with(".lora_a");
    if !is_a && !t.name.ends_with(".lora_b") {
        return Err(Error::ModelInvalid(format!(
            "adapter tensor `{}` is neither a `.lora_a` nor a `.lora_b`",
            t.name
        )));
    }
    if t.dims.len() != 2 {
        return Err(Error::ModelInvalid(format!(
            "adapter tensor `{}` has {} dimensions (2 expected)",
            t.name,
            t.dims.len()
        )));
    }
    let rank = if is_a { t.dims[1] } else { t.dims[0] };
    if rank == 0 || rank > MAX_RANK {
        return Err(Error::ModelInvalid(format!(
            "adapter tensor `{}` has rank {rank} (1..={MAX_RANK} accepted)",
            t.name
        )));
    }
    if !t.ty.is_supported() {
        return Err(Error::UnsupportedTensorType {
            tensor: t.name.clone(),
            ty: t.ty.name().to_string(),
            hint: " for an adapter",
        });
    }
    Ok(())
}

fn decode(info: &TensorInfo, bytes: &[u8]) -> Result<Vec<f32>> {
    if bytes.len() as u64 != info.n_bytes {
        return Err(Error::ModelInvalid(format!(
            "adapter tensor `{}` has {} of its {} bytes",
            info.name,
            bytes.len(),
            info.n_bytes
        )));
    }
    let values = crate::quant::dequantize_tensor(info, bytes)?;
    if values.iter().any(|v| !v.is_finite()) {
        return Err(Error::ModelInvalid(format!(
            "adapter tensor `{}` holds a NaN or infinite value",
            info.name
        )));
    }
    Ok(values)
}

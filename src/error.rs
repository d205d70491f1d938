//! The one error type of the crate. Every fallible path returns it; nothing panics on bad input,
//! because a panic in wasm kills the module for the whole page. Each variant maps to a stable
//! `code()` string that the JavaScript side exposes as `error.code`.

use std::fmt;

/// What exactly is wrong with a GGUF file. Kept as an enum (not a string) so that tests and
/// callers can match on the problem, while `Display` gives the human sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GgufProblem {
    BadMagic([u8; 4]),
    UnsupportedVersion(u32),
    TooManyTensors(u64),
    TooManyMetadata(u64),
    StringTooLong(u64),
    InvalidUtf8,
    ArrayTooLong(u64),
    UnknownValueType(u32),
    NestingTooDeep,
    DuplicateKey(String),
    BadAlignment(u64),
    TooManyDims {
        tensor: String,
        n_dims: u32,
    },
    BadDim {
        tensor: String,
        dim: u64,
    },
    TooManyElements {
        tensor: String,
    },
    UnknownTensorType {
        tensor: String,
        type_id: u32,
    },
    RowNotBlockAligned {
        tensor: String,
        row: u64,
        block: u64,
    },
    DuplicateTensor(String),
    MisalignedTensor {
        tensor: String,
        offset: u64,
        alignment: u64,
    },
    TensorOutOfBounds {
        tensor: String,
        end: u64,
        file_size: u64,
    },
    TensorsOverlap {
        first: String,
        second: String,
    },
    Truncated {
        needed: u64,
    },
    HeaderTooLarge(u64),
    WrongValueType {
        key: String,
        expected: &'static str,
    },
    MissingKey(String),
}

impl fmt::Display for GgufProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use GgufProblem::*;
        match self {
            BadMagic(m) => write!(
                f,
                "bad magic {:?} (expected \"GGUF\"): not a GGUF file",
                String::from_utf8_lossy(m)
            ),
            UnsupportedVersion(v) => write!(f, "GGUF version {v} is not supported (2 and 3 are)"),
            TooManyTensors(n) => write!(f, "tensor count {n} is beyond any sane model"),
            TooManyMetadata(n) => write!(f, "metadata count {n} is beyond any sane file"),
            StringTooLong(n) => write!(f, "string length {n} is larger than the file allows"),
            InvalidUtf8 => write!(f, "string is not valid UTF-8"),
            ArrayTooLong(n) => write!(f, "array length {n} is larger than the file allows"),
            UnknownValueType(t) => write!(f, "unknown metadata value type {t}"),
            NestingTooDeep => write!(f, "arrays nested too deeply"),
            DuplicateKey(k) => write!(f, "metadata key `{k}` appears twice"),
            BadAlignment(a) => write!(f, "general.alignment {a} is not a power of two in 1..=65536"),
            TooManyDims { tensor, n_dims } => {
                write!(f, "tensor `{tensor}` has {n_dims} dimensions (at most 4)")
            }
            BadDim { tensor, dim } => write!(f, "tensor `{tensor}` has dimension {dim}"),
            TooManyElements { tensor } => write!(f, "tensor `{tensor}` element count overflows"),
            UnknownTensorType { tensor, type_id } => {
                write!(f, "tensor `{tensor}` has unknown ggml type id {type_id}")
            }
            RowNotBlockAligned { tensor, row, block } => write!(
                f,
                "tensor `{tensor}` row length {row} is not a multiple of its block size {block}"
            ),
            DuplicateTensor(t) => write!(f, "tensor `{t}` appears twice"),
            MisalignedTensor { tensor, offset, alignment } => write!(
                f,
                "tensor `{tensor}` data offset {offset} is not a multiple of the alignment {alignment}"
            ),
            TensorOutOfBounds { tensor, end, file_size } => write!(
                f,
                "tensor `{tensor}` ends at byte {end}, past the end of the file ({file_size} bytes)"
            ),
            TensorsOverlap { first, second } => {
                write!(f, "tensors `{first}` and `{second}` overlap")
            }
            Truncated { needed } => write!(f, "file ends early ({needed} more bytes needed)"),
            HeaderTooLarge(n) => write!(f, "header of {n} bytes is larger than the reader allows"),
            WrongValueType { key, expected } => {
                write!(f, "metadata `{key}` should be {expected}")
            }
            MissingKey(k) => write!(f, "metadata `{k}` is missing"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bytes are not a well-formed GGUF file. `offset` is where the problem was found.
    #[error("invalid GGUF at byte {offset}: {problem}")]
    Gguf { offset: u64, problem: GgufProblem },

    #[error("unsupported architecture {}", crate::arch::Architecture::refusal(.0))]
    UnsupportedArchitecture(String),

    #[error("tensor `{tensor}` has type {ty}, which is not supported{hint}")]
    UnsupportedTensorType {
        tensor: String,
        ty: String,
        hint: &'static str,
    },

    /// The file is a valid GGUF but not a usable model: a missing or mis-shaped tensor, or
    /// hyperparameters that contradict each other.
    #[error("invalid model: {0}")]
    ModelInvalid(String),

    #[error("tokenizer: {0}")]
    Tokenizer(String),

    #[error("chat template: {0}")]
    ChatTemplate(String),

    #[error("{tokens} tokens do not fit in the context of {context} tokens")]
    ContextOverflow { tokens: usize, context: usize },

    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// No usable GPU: no WebGPU in this browser, or no adapter/driver natively.
    #[error("no usable GPU: {0}")]
    WebGpuUnavailable(String),

    /// The device cannot hold the model: the GPU's buffer, binding or memory limits, or the
    /// memory the CPU engine can have (wasm32's 4 GiB).
    #[error("the model does not fit: {0}")]
    ModelTooLarge(String),

    #[error("the GPU device was lost: {0}")]
    DeviceLost(String),

    /// A GPU operation failed (shader compilation, validation, mapping).
    #[error("GPU error: {0}")]
    Gpu(String),

    /// The engine is already generating; callers queue (the JS facade does).
    #[error("the engine is busy: {0}")]
    Busy(String),

    /// The model cannot give embeddings: a generation model (no pooling type), or a pooling
    /// this engine does not compute.
    #[error("no embeddings: {0}")]
    EmbeddingsUnsupported(String),

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// The stable machine-readable code (also `error.code` in JavaScript).
    pub fn code(&self) -> &'static str {
        match self {
            Error::Gguf { .. } => "GGUF_INVALID",
            Error::UnsupportedArchitecture(_) => "UNSUPPORTED_ARCHITECTURE",
            Error::UnsupportedTensorType { .. } => "UNSUPPORTED_TENSOR_TYPE",
            Error::ModelInvalid(_) => "MODEL_INVALID",
            Error::Tokenizer(_) => "TOKENIZER_ERROR",
            Error::ChatTemplate(_) => "CHAT_TEMPLATE_ERROR",
            Error::ContextOverflow { .. } => "CONTEXT_OVERFLOW",
            Error::InvalidArgument(_) => "INVALID_ARGUMENT",
            Error::WebGpuUnavailable(_) => "WEBGPU_UNAVAILABLE",
            Error::ModelTooLarge(_) => "MODEL_TOO_LARGE",
            Error::DeviceLost(_) => "DEVICE_LOST",
            Error::Gpu(_) => "GPU_ERROR",
            Error::Busy(_) => "ENGINE_BUSY",
            Error::EmbeddingsUnsupported(_) => "EMBEDDINGS_UNSUPPORTED",
            Error::Io { .. } => "IO_ERROR",
        }
    }

    pub(crate) fn gguf(offset: u64, problem: GgufProblem) -> Self {
        Error::Gguf { offset, problem }
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

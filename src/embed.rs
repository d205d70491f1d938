//! Embeddings: how a model's final hidden states become one vector per input.
//!
//! Every backend runs an input without the LM head and hands back each token's hidden state
//! after the output norm (`Backend::hidden_states`, the vector the LM head would read, as
//! llama.cpp's embeddings are). The pooling the file names (`{arch}.pooling_type`) makes one
//! vector of them, which is then scaled to unit L2 norm (OpenAI's embeddings and
//! Qwen3-Embedding's model card use unit vectors, so a dot product is the cosine similarity).

use crate::config::Config;
use crate::error::{Error, Result};

/// How token vectors become one vector, as `{arch}.pooling_type` numbers them (llama.cpp's
/// `LLAMA_POOLING_TYPE_*`: 0 none, 1 mean, 2 cls, 3 last, 4 rank). Only these three make a
/// sentence embedding from a decoder's hidden states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// The average of every token's vector.
    Mean,
    /// The first token's vector (BERT's `[CLS]` position).
    Cls,
    /// The last token's vector (Qwen3-Embedding: its GGUF appends `<|endoftext|>`).
    Last,
}

impl Pooling {
    /// The pooling of `config`'s file. A file without `pooling_type` (a generation model), or
    /// with none (0, per-token vectors) or rank (4, a reranker's score), gives no embeddings
    /// here: `EMBEDDINGS_UNSUPPORTED`.
    pub fn of(config: &Config) -> Result<Pooling> {
        let key = format!("{}.pooling_type", config.architecture);
        match config.pooling_type {
            Some(1) => Ok(Pooling::Mean),
            Some(2) => Ok(Pooling::Cls),
            Some(3) => Ok(Pooling::Last),
            None => Err(Error::EmbeddingsUnsupported(format!(
                "the model has no `{key}`: it is a generation model, not an embedding model"
            ))),
            Some(0) => Err(Error::EmbeddingsUnsupported(format!(
                "`{key}` is 0 (none: per-token vectors); mean, cls and last pooling are supported"
            ))),
            Some(4) => Err(Error::EmbeddingsUnsupported(format!(
                "`{key}` is 4 (rank: a reranker); mean, cls and last pooling are supported"
            ))),
            Some(n) => Err(Error::EmbeddingsUnsupported(format!(
                "`{key}` is {n}, which is not a pooling type (1 mean, 2 cls, 3 last)"
            ))),
        }
    }

    /// "mean", "cls" or "last".
    pub fn from_name(name: &str) -> Result<Pooling> {
        [Pooling::Mean, Pooling::Cls, Pooling::Last]
            .into_iter()
            .find(|p| p.as_str() == name)
            .ok_or_else(|| {
                Error::InvalidArgument(format!("unknown pooling `{name}` (mean, cls or last)"))
            })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Pooling::Mean => "mean",
            Pooling::Cls => "cls",
            Pooling::Last => "last",
        }
    }

    /// One vector of `width` values from `hidden`, the `[T][width]` hidden states of one input
    /// (T >= 1).
    pub fn pool(self, hidden: &[f32], width: usize) -> Vec<f32> {
        let rows = hidden.chunks_exact(width);
        match self {
            Pooling::Cls => hidden[..width].to_vec(),
            Pooling::Last => hidden[hidden.len() - width..].to_vec(),
            Pooling::Mean => {
                let n = rows.len() as f32;
                let mut sum = vec![0f32; width];
                for row in rows {
                    sum.iter_mut().zip(row).for_each(|(s, &v)| *s += v);
                }
                sum.iter_mut().for_each(|s| *s /= n);
                sum
            }
        }
    }
}

/// Scale `v` to unit L2 norm (a zero vector stays zero).
pub fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x = (*x as f64 / norm) as f32);
    }
}

/// One input to embed: text (tokenized with the model's BOS/EOS as its metadata asks) or token
/// ids taken as they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmbedInput {
    Text(String),
    Ids(Vec<u32>),
}

/// The embeddings of a batch of inputs, in input order.
#[derive(Debug, Clone)]
pub struct Embeddings {
    /// One unit vector of `n_embd` values per input.
    pub vectors: Vec<Vec<f32>>,
    /// Tokens run, all inputs together (OpenAI's `usage.prompt_tokens`).
    pub prompt_tokens: usize,
    pub pooling: Pooling,
}

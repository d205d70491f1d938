//! The GPU decoder's hidden states for embeddings: prompt batches through the blocks and the
//! final norm, without the LM head, each batch's normed rows read back (`embed.rs` pools them).

use super::GpuModel;
use crate::error::{Error, Result};
use crate::gpu::graph::Graph;
use crate::gpu::kernel::{read_f32, Op};

impl GpuModel {
    /// h = rmsnorm(x) * output_norm for every row of a prefill batch (the step uniform gives
    /// the batch's size).
    pub(super) fn final_norm_ops(&self) -> Result<Vec<Op>> {
        let a = &self.prefill;
        let v = a.views();
        let mut g = Graph::new(&self.ctx, &self.kernels, &self.step, a.max_tokens);
        g.rmsnorm(v.x, &self.weights.output_norm, v.h)?;
        Ok(g.ops)
    }

    /// Run `tokens` at the next positions in prefill batches and return each one's final
    /// hidden state, rmsnorm(x) * output_norm (`[T][n_embd]`), as `ReferenceModel::hidden`
    /// gives it token by token.
    pub async fn hidden_states(&mut self, tokens: &[u32]) -> Result<Vec<f32>> {
        if tokens.is_empty() {
            return Err(Error::InvalidArgument("no tokens to run".into()));
        }
        self.check_ids(tokens)?;
        self.check_room(tokens.len())?;
        // A step in flight was for the old next position.
        self.discard_in_flight();
        let e = self.config.n_embd;
        let mut hidden = Vec::with_capacity(tokens.len() * e);
        for batch in tokens.chunks(self.prefill.max_tokens) {
            self.submit_prefill_batch(batch, &self.final_norm_ops);
            self.position += batch.len();
            hidden.extend(read_f32(&self.ctx, &self.prefill.h, 0, batch.len() * e).await?);
        }
        self.ctx.check()?;
        Ok(hidden)
    }
}

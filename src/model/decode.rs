//! The GPU decode step: one token in, its successor sampled on the GPU, the id (or its
//! logprobs) read back; pipelined on real GPUs (DESIGN.md 7), and its CPU cost measured.

use super::{record, GpuModel, READBACK_SLOTS};
use crate::error::{Error, Result};
use crate::gpu::kernel::{range, read_mapped_after, Op};
use crate::gpu::kernels::sample::LogprobsReadback;
use crate::sampler::Sampler;

/// What encoding and submitting decode steps has cost the CPU (`GpuModel::encode_and_submit_us`).
#[derive(Clone, Copy, Default)]
pub(super) struct EncodeClock {
    pub(super) encode_seconds: f64,
    pub(super) submit_seconds: f64,
    pub(super) steps: u64,
}

/// A decode step submitted ahead, before the CPU knew the id it consumes: the GPU does (the
/// previous step's sampler wrote it where this step's embedding reads it).
pub(super) struct InFlight {
    /// The KV row it writes, and the sampler counter it used.
    pub(super) pos: usize,
    pub(super) sample_step: u64,
    /// The token it consumes: the id the previous step returned.
    pub(super) input: u32,
    pub(super) submission: wgpu::SubmissionIndex,
}

impl GpuModel {
    /// Run `tokens` at the next positions and sample the token after the last of them on the GPU.
    ///
    /// Pipelined (DESIGN.md 7): after submitting this step, the step after it is submitted too,
    /// fed on the GPU by this step's sampled id, before this step's id is read back. When the
    /// next call asks for exactly that step (its one token is the id returned now, at the next
    /// position and sampler step), it only waits for the result; anything else discards it.
    pub async fn next_token(
        &mut self,
        tokens: &[u32],
        sampler: &mut Sampler,
        history: &[u32],
    ) -> Result<u32> {
        self.run(tokens, sampler, history, self.pipelined).await
    }

    pub(super) async fn run(
        &mut self,
        tokens: &[u32],
        sampler: &mut Sampler,
        history: &[u32],
        ahead: bool,
    ) -> Result<u32> {
        if tokens.is_empty() {
            return Err(Error::InvalidArgument("no tokens to run".into()));
        }
        self.check_ids(tokens)?;
        self.check_room(tokens.len())?;
        let sample_step = sampler.step();
        // A response format's mask changes with every token: no step runs ahead of it.
        let masked = sampler.mask().is_some();
        let submitted = match self.in_flight.take() {
            Some(f)
                if sample_step != 0
                    && !masked
                    && f.sample_step == sample_step
                    && f.pos == self.position
                    && tokens == [f.input] =>
            {
                Some(f.submission)
            }
            Some(_) => {
                self.sampler_stale = true;
                None
            }
            None => None,
        };
        // Take the flag first: `step == 0 || take(..)` left it set after a first step, and the
        // next call reloaded the history while the step it consumes had already appended its id
        // on the GPU (the ring lost that id).
        let stale = std::mem::take(&mut self.sampler_stale);
        if sample_step == 0 || stale {
            self.kernels.sampler.set_params(
                &self.ctx,
                sampler.params(),
                sampler.top_logprobs(),
                history,
            )?;
        }
        self.logprobs_on = sampler.top_logprobs().is_some();
        if self.logprobs_on && self.logprobs.is_none() {
            let drawn = range(&self.decode.tokens, 0, 4);
            let l = LogprobsReadback::new(&self.kernels.sampler, &self.ctx, drawn, READBACK_SLOTS);
            self.logprobs = Some(l.await?);
        }
        self.kernels.sampler.set_mask(&self.ctx, sampler.mask());
        let submitted = match submitted {
            Some(s) => s,
            None => {
                // All but the last token run in batches; the last runs as a decode step, so
                // its row feeds the final norm, the LM head and the sampler bound at load.
                let (body, last) = tokens.split_at(tokens.len() - 1);
                if !body.is_empty() {
                    self.prefill_batches(body)?;
                }
                self.ctx
                    .queue
                    .write_buffer(&self.decode.tokens, 0, bytemuck::cast_slice(last));
                self.submit_decode(self.position, sample_step)
            }
        };
        // The step after this one, if the cache has a row for it.
        let ahead = (ahead && !masked && self.position + 1 < self.context_length()).then(|| {
            let pos = self.position + 1;
            (
                pos,
                sample_step + 1,
                self.submit_decode(pos, sample_step + 1),
            )
        });
        let slot = sample_step as usize % READBACK_SLOTS;
        let id = match self.logprobs.as_ref().filter(|_| self.logprobs_on) {
            // The logprobs name the drawn id: one read-back per token either way.
            Some(l) => {
                let logprobs = l.read(&self.ctx, slot, submitted).await?;
                let id = logprobs.id;
                sampler.record_logprobs(logprobs);
                id
            }
            None => {
                let bytes =
                    read_mapped_after(&self.ctx, &self.staging[slot], 4, Some(submitted)).await?;
                u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
            }
        };
        self.position += 1;
        sampler.advance();
        if id as usize >= self.config.n_vocab {
            self.discard_in_flight();
            return Err(Error::Gpu(format!(
                "the sampler returned id {id}, outside the vocabulary"
            )));
        }
        self.in_flight = ahead.map(|(pos, sample_step, submission)| InFlight {
            pos,
            sample_step,
            input: id,
            submission,
        });
        Ok(id)
    }

    /// Submit one decode step at KV row `pos` with sampler counter `sample_step`; its token is
    /// whatever `decode.tokens` holds when it runs. The id lands in that counter's staging slot.
    fn submit_decode(&self, pos: usize, sample_step: u64) -> wgpu::SubmissionIndex {
        let start = web_time::Instant::now();
        self.write_step(pos, 1, sample_step);
        let slot = sample_step as usize % READBACK_SLOTS;
        let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
        let ops: Vec<&Op> = self.step_ops(pos).collect();
        record(&mut encoder, &ops);
        match self.logprobs.as_ref().filter(|_| self.logprobs_on) {
            Some(l) => l.record(&mut encoder, slot),
            None => encoder.copy_buffer_to_buffer(
                &self.ids_out,
                slot as u64 * 4,
                &self.staging[slot],
                0,
                4,
            ),
        }
        let commands = encoder.finish();
        let encoded = start.elapsed().as_secs_f64();
        let submission = self.ctx.queue.submit([commands]);
        let mut clock = self.encode.get();
        clock.encode_seconds += encoded;
        clock.submit_seconds += start.elapsed().as_secs_f64() - encoded;
        clock.steps += 1;
        self.encode.set(clock);
        submission
    }

    /// Mean CPU time of a decode step's encoding (the step uniform written, its ops recorded
    /// into one compute pass, the command buffer finished) and of its `submit` call, over every
    /// step since load, in microseconds; 0 before the first. On a CPU emulation `submit` may
    /// run the work itself (lavapipe), so only the first figure is the encoding's cost there.
    pub fn encode_and_submit_us(&self) -> (f64, f64) {
        let clock = self.encode.get();
        if clock.steps == 0 {
            return (0.0, 0.0);
        }
        let per_step = 1e6 / clock.steps as f64;
        (
            clock.encode_seconds * per_step,
            clock.submit_seconds * per_step,
        )
    }
}

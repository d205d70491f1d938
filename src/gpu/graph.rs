//! A small graph builder: the forward pass is written as calls on [`Graph`] over typed
//! [`View`]s of the activations, and each call checks shapes and appends the bound [`Op`]s.
//!
//! It hides what the math does not care about: whether a projection is one tensor, a stack of
//! tensors uploaded into one weight, or a fused tensor whose rows are several outputs
//! ([`Projection`] routes each row range to its own view), whether a batch runs as a matvec or
//! a matmul, how many ops a kernel needs (one per weight part or cache part), and which steps
//! are folded into the next kernel: for one token, `rmsnorm` and `gate` record nothing and
//! return an [`Input`] that the projection consuming it applies as it loads x; and `qkv`
//! records nothing and returns a [`Qkv`] that `rope_kv` records, as a projection followed by
//! RoPE, or for one token as a projection with RoPE and the KV append in its epilogue.

use crate::error::{Error, Result};
use crate::gpu::kernel::{range, Op};
use crate::gpu::kernels::attention::{Attention, AttentionScratch};
use crate::gpu::kernels::matvec::{MatMul, MatVec, MatVecInput, Route};
use crate::gpu::kernels::rope::RopeExtras;
use crate::gpu::kv_cache::KvCache;
use crate::gpu::lora::{GpuLora, LoraKernels};
use crate::gpu::weights::GpuWeight;
use crate::gpu::GpuContext;
use crate::lora::Place;

mod kernel_set;

pub use kernel_set::Kernels;

/// `width` f32 values per token from byte `offset` of `buffer`: one activation of a batch.
#[derive(Clone, Copy)]
pub struct View<'a> {
    pub buffer: &'a wgpu::Buffer,
    pub offset: u64,
    pub width: usize,
}

impl<'a> View<'a> {
    /// The binding of the view for `tokens` tokens.
    fn binding(&self, tokens: usize) -> wgpu::BufferBinding<'a> {
        range(self.buffer, self.offset, (tokens * self.width * 4) as u64)
    }
}

/// What a projection multiplies: a view, or for one token a view with the step before the
/// product still to apply (the matvec folds it into its load of x: [`MatVecInput`]).
#[derive(Clone, Copy)]
pub enum Input<'a> {
    View(View<'a>),
    /// rmsnorm(x) * weight
    Normed {
        x: View<'a>,
        weight: &'a wgpu::Buffer,
    },
    /// act(gate) * up
    Gated {
        gate: View<'a>,
        up: View<'a>,
    },
}

impl<'a> From<View<'a>> for Input<'a> {
    fn from(v: View<'a>) -> Input<'a> {
        Input::View(v)
    }
}

impl<'a> Input<'a> {
    fn width(&self) -> usize {
        match self {
            Input::View(x) | Input::Normed { x, .. } | Input::Gated { gate: x, .. } => x.width,
        }
    }
}

/// q, k and v, not yet computed: the projection (and its adapters) that `rope_kv` records.
pub struct Qkv<'a> {
    p: &'a Projection,
    x: Input<'a>,
    outs: [View<'a>; 3],
    place: Place,
}

/// The weights whose output rows, concatenated, are one or more activations: q, k, v (three
/// tensors, stacked into one weight where their types agree, or phi3's one fused tensor), or
/// gate and up.
pub struct Projection {
    /// In row order.
    pub weights: Vec<GpuWeight>,
    /// Widths of the outputs the rows make, in order (they sum to the rows of all weights).
    pub outputs: Vec<usize>,
}

impl Projection {
    /// Per weight, where its row ranges go when output `i` is written at element `bases[i]`
    /// of the output buffer.
    fn routes(&self, bases: &[u64]) -> Vec<Vec<Route>> {
        let rows: Vec<u64> = self.weights.iter().map(|w| w.rows).collect();
        route_rows(&rows, &self.outputs, bases)
    }

    pub fn weights(&self) -> impl Iterator<Item = &GpuWeight> {
        self.weights.iter()
    }
}

/// Weights of `rows` rows each, one after another, make outputs of `widths` values (per
/// token) one after another; output `i` is written from element `bases[i]`, `widths[i]` apart
/// per token. Per weight, the routes of its row ranges.
fn route_rows(rows: &[u64], widths: &[usize], bases: &[u64]) -> Vec<Vec<Route>> {
    let mut starts = Vec::with_capacity(widths.len());
    let mut end = 0u64;
    for &w in widths {
        starts.push(end);
        end += w as u64;
    }
    let mut first = 0u64;
    rows.iter()
        .map(|&n| {
            let span = first..first + n;
            first = span.end;
            let outputs = widths.iter().zip(&starts).zip(bases);
            outputs
                .filter_map(|((&width, &start), &base)| {
                    let lo = span.start.max(start);
                    let hi = span.end.min(start + width as u64);
                    // `then`, not `then_some`: `hi - lo` must not be computed when lo >= hi.
                    (lo < hi).then(|| Route {
                        first_row: lo - span.start,
                        rows: hi - lo,
                        base: base + (lo - start),
                        stride: width as u64,
                    })
                })
                .collect()
        })
        .collect()
}

/// Records the ops of a forward pass over batches of up to `tokens` tokens.
pub struct Graph<'a> {
    ctx: &'a GpuContext,
    k: &'a Kernels,
    /// The step uniform: batch size and position of each run.
    step: &'a wgpu::Buffer,
    tokens: usize,
    /// The active LoRA adapters and their pipelines, if any (`lora` records nothing without).
    lora: Option<(&'a GpuLora, &'a LoraKernels)>,
    pub ops: Vec<Op>,
}

impl<'a> Graph<'a> {
    pub fn new(
        ctx: &'a GpuContext,
        k: &'a Kernels,
        step: &'a wgpu::Buffer,
        tokens: usize,
    ) -> Graph<'a> {
        Graph {
            ctx,
            k,
            step,
            tokens,
            lora: None,
            ops: Vec::new(),
        }
    }

    /// Apply these adapters where the pass calls [`lora`](Self::lora).
    pub fn with_lora(mut self, lora: Option<(&'a GpuLora, &'a LoraKernels)>) -> Graph<'a> {
        self.lora = lora;
        self
    }

    /// x = table[ids] * scale
    pub fn embed(
        &mut self,
        table: &GpuWeight,
        ids: &wgpu::Buffer,
        x: View<'_>,
        scale: f32,
    ) -> Result<()> {
        check_width("embedding", x.width, table.cols as usize)?;
        let t = self.tokens as u32;
        let ids = range(ids, 0, self.tokens as u64 * 4);
        let ops = self
            .k
            .embed
            .op(self.ctx, table, ids, x.buffer, t, self.step, scale)?;
        self.ops.extend(ops);
        Ok(())
    }

    /// out = rmsnorm(x) * w; for one token where the kernels fuse inputs, nothing is recorded
    /// and the projection that reads the result normalizes x as it loads it (`out` unwritten).
    pub fn rmsnorm<'v>(
        &mut self,
        x: View<'v>,
        w: &'v wgpu::Buffer,
        out: View<'v>,
    ) -> Result<Input<'v>> {
        let (k, t) = (&self.k.norm, self.tokens);
        if t == 1 && self.k.fuse_inputs {
            return Ok(Input::Normed { x, weight: w });
        }
        let w = range(w, 0, x.width as u64 * 4);
        let op = k.op(
            self.ctx,
            self.step,
            x.binding(t),
            w,
            out.binding(t),
            x.width,
            t,
        )?;
        self.ops.push(op);
        Ok(Input::View(out))
    }

    /// x += rmsnorm(y) * w (a post-norm on a block's output)
    pub fn rmsnorm_add(&mut self, y: View<'_>, w: &wgpu::Buffer, x: View<'_>) -> Result<()> {
        let (k, t) = (&self.k.norm, self.tokens);
        let w = range(w, 0, y.width as u64 * 4);
        let op = k.op_add(
            self.ctx,
            self.step,
            y.binding(t),
            w,
            x.binding(t),
            y.width,
            t,
        )?;
        self.ops.push(op);
        Ok(())
    }

    /// y = W x
    pub fn linear<'v>(
        &mut self,
        w: &GpuWeight,
        x: impl Into<Input<'v>>,
        y: View<'_>,
    ) -> Result<()> {
        self.matmul_into(w, x.into(), y, false)
    }

    /// y += W x (a residual add fused into the product)
    pub fn linear_add<'v>(
        &mut self,
        w: &GpuWeight,
        x: impl Into<Input<'v>>,
        y: View<'_>,
    ) -> Result<()> {
        self.matmul_into(w, x.into(), y, true)
    }

    fn matmul_into(&mut self, w: &GpuWeight, x: Input<'_>, y: View<'_>, add: bool) -> Result<()> {
        let products = (&self.k.matvec, &self.k.matmul);
        let routes = Route::contiguous(w, y.offset / 4);
        self.matmul(products, w, x, y.buffer, &routes, add)
    }

    /// [outs[0]; outs[1]; ...] = P x: every output view in one buffer.
    pub fn project(&mut self, p: &Projection, x: Input<'_>, outs: &[View<'_>]) -> Result<()> {
        let products = (&self.k.matvec, &self.k.matmul);
        self.project_with(products, p, x, outs, false)
    }

    /// [outs[0]; outs[1]; ...] += B (A x) for the active adapters' group at `place`, when they
    /// have one: right after the projection it adapts (before biases and post-norms), on the
    /// same input and outputs.
    pub fn lora(&mut self, place: Place, x: Input<'_>, outs: &[View<'_>]) -> Result<()> {
        let Some((lora, kernels)) = self.lora else {
            return Ok(());
        };
        let Some(g) = lora.group(place) else {
            return Ok(());
        };
        if self.tokens > lora.max_tokens {
            return Err(Error::InvalidArgument(format!(
                "the adapters' scratch holds {} tokens, the batch {}",
                lora.max_tokens, self.tokens
            )));
        }
        let products = (&kernels.matvec, &kernels.matmul);
        // t = A x                                                               [T][rank]
        let t = View {
            buffer: &lora.scratch,
            offset: 0,
            width: g.a.rows as usize,
        };
        let routes = Route::contiguous(&g.a, 0);
        self.matmul(products, &g.a, x, t.buffer, &routes, false)?;
        // outs += B t
        self.project_with(products, &g.b, t.into(), outs, true)
    }

    fn project_with(
        &mut self,
        products: (&MatVec, &MatMul),
        p: &Projection,
        x: Input<'_>,
        outs: &[View<'_>],
        accumulate: bool,
    ) -> Result<()> {
        let buffer = outs[0].buffer;
        let same = outs.iter().all(|o| o.buffer == buffer);
        let widths: Vec<usize> = outs.iter().map(|o| o.width).collect();
        if !same || widths != p.outputs {
            return Err(Error::InvalidArgument(format!(
                "a projection to outputs of {:?} values was given views of {widths:?}, or views \
                 in several buffers",
                p.outputs
            )));
        }
        let bases: Vec<u64> = outs.iter().map(|o| o.offset / 4).collect();
        for (w, routes) in p.weights.iter().zip(p.routes(&bases)) {
            self.matmul(products, w, x, buffer, &routes, accumulate)?;
        }
        Ok(())
    }

    /// One token: a matvec, applying what `x` still asks for as it loads it; a batch: a matmul.
    fn matmul(
        &mut self,
        (matvec, matmul): (&MatVec, &MatMul),
        w: &GpuWeight,
        x: Input<'_>,
        y: &wgpu::Buffer,
        routes: &[Route],
        accumulate: bool,
    ) -> Result<()> {
        check_width(&w.name, x.width(), w.cols as usize)?;
        let (ctx, t) = (self.ctx, self.tokens);
        let ops = match (t, x) {
            (1, x) => {
                let input = self.matvec_input(x)?;
                matvec.op_input(ctx, w, input, y, routes, accumulate)?
            }
            (n, Input::View(x)) => matmul.op_routed(
                ctx,
                w,
                x.binding(n),
                n as u32,
                self.step,
                y,
                routes,
                accumulate,
            )?,
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "`{}`: a batch's input must be computed before the product",
                    w.name
                )))
            }
        };
        self.ops.extend(ops);
        Ok(())
    }

    /// The matvec's binding of `x` for one token.
    fn matvec_input<'v>(&self, x: Input<'v>) -> Result<MatVecInput<'v>> {
        Ok(match x {
            Input::View(x) => MatVecInput::X(x.binding(1)),
            Input::Normed { x, weight } => MatVecInput::Normed {
                x: x.binding(1),
                weight: range(weight, 0, x.width as u64 * 4),
                eps: self.k.norm.eps(),
            },
            Input::Gated { gate, up } => {
                if gate.buffer != up.buffer || up.offset < gate.offset + gate.width as u64 * 4 {
                    return Err(Error::InvalidArgument(
                        "a gated input wants up after gate in one buffer".into(),
                    ));
                }
                let end = up.offset + up.width as u64 * 4;
                MatVecInput::Gated {
                    gate_up: range(gate.buffer, gate.offset, end - gate.offset),
                    up_offset: (up.offset - gate.offset) / 4,
                    activation: self.k.ffn.activation(),
                }
            }
        })
    }

    /// [q; k; v] = P x (+ the active adapters' group at `place`), recorded by `rope_kv`.
    pub fn qkv<'v>(
        &self,
        p: &'v Projection,
        x: Input<'v>,
        outs: [View<'v>; 3],
        place: Place,
    ) -> Qkv<'v> {
        Qkv { p, x, outs, place }
    }

    /// q_out = rope(norm(q + bq)); rope(norm(k + bk)) and v + bv into the cache rows of the
    /// step's positions (biases and norms as the architecture has them: `extras`), q, k, v
    /// computed first as `qkv` says. For one token where the kernels take RoPE into the
    /// projection (`Kernels::rope_in_projection`), one matvec does all of it, unless adapters
    /// add to q, k or v (before RoPE, so after the projection's epilogue would have run).
    pub fn rope_kv(
        &mut self,
        qkv: Qkv<'_>,
        q_out: View<'_>,
        extras: RopeExtras<'_>,
        cache: &KvCache,
        layer: usize,
    ) -> Result<()> {
        let adapted = self.lora.is_some_and(|(l, _)| l.group(qkv.place).is_some());
        if self.tokens == 1 && self.k.rope_in_projection && !adapted {
            return self.project_rope_kv(qkv, q_out, extras, cache, layer);
        }
        self.project(qkv.p, qkv.x, &qkv.outs)?;
        self.lora(qkv.place, qkv.x, &qkv.outs)?;
        let [q, k, v] = qkv.outs;
        let t = self.tokens;
        let qkv = [q.binding(t), k.binding(t), v.binding(t)];
        let ops = self.k.rope.ops(
            self.ctx,
            self.step,
            qkv,
            q_out.binding(t),
            extras,
            cache,
            layer,
            t,
        )?;
        self.ops.extend(ops);
        Ok(())
    }

    /// `rope_kv` for one token in the q/k/v matvec's epilogue: its rows routed to q | k | v
    /// coordinates (`MatVec::op_rope_kv`).
    fn project_rope_kv(
        &mut self,
        qkv: Qkv<'_>,
        q_out: View<'_>,
        extras: RopeExtras<'_>,
        cache: &KvCache,
        layer: usize,
    ) -> Result<()> {
        let widths = qkv.outs.map(|o| o.width);
        if extras.norms.is_some() || widths[..] != qkv.p.outputs {
            return Err(Error::InvalidArgument(format!(
                "rope epilogue: q/k norms given, or q, k, v of {widths:?} values for a \
                 projection to {:?}",
                qkv.p.outputs
            )));
        }
        let target = self
            .k
            .rope
            .epilogue(self.ctx, self.step, extras.bias, cache, layer)?;
        let input = self.matvec_input(qkv.x)?;
        let bases = [0, widths[0], widths[0] + widths[1]].map(|b| b as u64);
        for (w, routes) in qkv.p.weights.iter().zip(qkv.p.routes(&bases)) {
            check_width(&w.name, qkv.x.width(), w.cols as usize)?;
            let ops = (self.k.matvec).op_rope_kv(
                self.ctx,
                w,
                input.clone(),
                q_out.buffer,
                &routes,
                &target,
            )?;
            self.ops.extend(ops);
        }
        Ok(())
    }

    /// out = softmax(q K^T * scale) V over the keys each token sees (a sliding `window`, or all
    /// earlier ones).
    pub fn attention(
        &mut self,
        q: View<'_>,
        cache: &KvCache,
        layer: usize,
        scratch: &AttentionScratch,
        out: View<'_>,
        window: Option<usize>,
    ) -> Result<()> {
        let t = self.tokens;
        let k: &Attention = &self.k.attention;
        let ops = k.ops(
            self.ctx,
            self.step,
            q.binding(t),
            cache,
            layer,
            scratch,
            out.binding(t),
            window,
        )?;
        self.ops.extend(ops);
        Ok(())
    }

    /// gate = act(gate) * up; for one token where the kernels fuse inputs, nothing is recorded
    /// and the projection that reads the result applies the gate as it loads it.
    pub fn gate<'v>(&mut self, gate: View<'v>, up: View<'v>) -> Result<Input<'v>> {
        let t = self.tokens;
        if t == 1 && self.k.fuse_inputs {
            return Ok(Input::Gated { gate, up });
        }
        let op = self.k.ffn.gate(
            self.ctx,
            self.step,
            gate.binding(t),
            up.binding(t),
            gate.width,
            t,
        )?;
        self.ops.push(op);
        Ok(Input::View(gate))
    }
}

fn check_width(what: &str, got: usize, width: usize) -> Result<()> {
    match got == width {
        true => Ok(()),
        false => Err(Error::InvalidArgument(format!(
            "`{what}` wants rows of {width} values, the view holds {got}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes(rows: &[u64], widths: &[usize], bases: &[u64]) -> Vec<Vec<(u64, u64, u64, u64)>> {
        let r = route_rows(rows, widths, bases);
        let tuple = |r: &Route| (r.first_row, r.rows, r.base, r.stride);
        r.iter().map(|w| w.iter().map(tuple).collect()).collect()
    }

    #[test]
    fn a_fused_tensor_splits_into_one_route_per_output() {
        // phi3's attn_qkv: 64 rows of q, 32 of k, 32 of v in one tensor.
        let got = routes(&[128], &[64, 32, 32], &[0, 100, 200]);
        let want = vec![vec![(0, 64, 0, 64), (64, 32, 100, 32), (96, 32, 200, 32)]];
        assert_eq!(got, want);
    }

    #[test]
    fn separate_tensors_route_whole_and_a_stack_routes_per_member() {
        // q, k, v apart: one route each, from row 0 of its weight.
        let got = routes(&[64, 32, 32], &[64, 32, 32], &[0, 100, 200]);
        let want = vec![
            vec![(0, 64, 0, 64)],
            vec![(0, 32, 100, 32)],
            vec![(0, 32, 200, 32)],
        ];
        assert_eq!(got, want);
        // q alone, k and v stacked (e.g. q in Q4_K, k and v in Q6_K).
        let got = routes(&[64, 64], &[64, 32, 32], &[0, 100, 200]);
        let want = vec![
            vec![(0, 64, 0, 64)],
            vec![(0, 32, 100, 32), (32, 32, 200, 32)],
        ];
        assert_eq!(got, want);
    }
}

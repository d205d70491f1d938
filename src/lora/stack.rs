//! The active adapters combined per projection, as every backend applies them.
//!
//! A projection group is the weights that read one input: q/k/v (three tensors or phi3's one),
//! the attention output, gate/up, down, and the LM head. For each group the pairs of every
//! active adapter are stacked into one `A` (their rows one after another) and one `B` (each
//! pair's columns at its rows of the group's output, zero elsewhere), with each pair's scale
//! folded into its `B`. So any number of adapters costs two products per group,
//! `y += B (A x)`, and a change of scales is a rebuild of these small matrices, not of the
//! model. The rank is padded with zeros to `RANK_ALIGN`, the unit the GPU's matvec reads rows
//! in.

use super::adapter::Adapter;
use crate::arch::BlockTensor;
use crate::config::{Config, OUTPUT};
use crate::error::{Error, Result};
use crate::reference::ops::dot;

/// Ranks are padded to a multiple of this (the GPU kernels read 32-value units).
pub const RANK_ALIGN: usize = 32;

/// The projection groups of a block, in the order the forward pass runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    Qkv = 0,
    AttnOutput = 1,
    GateUp = 2,
    Down = 3,
}

pub const SLOTS: [Slot; 4] = [Slot::Qkv, Slot::AttnOutput, Slot::GateUp, Slot::Down];

/// Where a group applies: a slot of a block, or the LM head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    Block(usize, Slot),
    Head,
}

/// Every active adapter's pairs of one group: `y[t] += B (A x[t])`.
#[derive(Debug, Clone)]
pub struct LoraGroup {
    /// The stacked rank, a multiple of `RANK_ALIGN`.
    pub rank: usize,
    pub n_in: usize,
    /// The group's output width (q + k + v, gate + up, ...).
    pub n_out: usize,
    /// `[rank][n_in]`.
    pub a: Vec<f32>,
    /// `[n_out][rank]`, scales folded in.
    pub b: Vec<f32>,
}

impl LoraGroup {
    /// `y[t] += B (A x[t])` for each row of `x` (`[T][n_in]`, `y` `[T][n_out]`), `A x` kept in
    /// `t` (grown to the largest batch once, not allocated per call).
    pub fn apply(&self, x: &[f32], y: &mut [f32], t: &mut Vec<f32>) {
        let tokens = x.len() / self.n_in;
        t.resize(tokens * self.rank, 0.0);
        for (x, t) in x.chunks_exact(self.n_in).zip(t.chunks_exact_mut(self.rank)) {
            for (t, a) in t.iter_mut().zip(self.a.chunks_exact(self.n_in)) {
                *t = dot(a, x);
            }
        }
        let work = tokens * self.n_out * self.rank;
        let (n_out, rank, b) = (self.n_out, self.rank, &self.b);
        let _ = crate::cpu::pool::for_each_chunk(y, n_out, work, |start, y| {
            let t = &t[start / n_out * rank..][..rank];
            for (y, b) in y.iter_mut().zip(b.chunks_exact(rank)) {
                *y += dot(b, t);
            }
            Ok::<_, ()>(())
        });
    }
}

/// `y[t] += B (A x[t])` with the group of `lora` at `place`, if it has one: what the CPU
/// decoders call after each projection.
pub fn apply(lora: &mut Option<LoraStack>, place: Place, x: &[f32], y: &mut [f32]) {
    if let Some(stack) = lora {
        // Taken out for the call: `group` borrows the stack.
        let mut t = std::mem::take(&mut stack.scratch);
        if let Some(g) = stack.group(place) {
            g.apply(x, y, &mut t);
        }
        stack.scratch = t;
    }
}

/// The active adapters, combined: per layer and slot, and for the LM head.
#[derive(Debug, Clone)]
pub struct LoraStack {
    pub layers: Vec<[Option<LoraGroup>; 4]>,
    pub head: Option<LoraGroup>,
    /// `A x` of the CPU decoders' `apply`, reused from call to call.
    scratch: Vec<f32>,
}

/// Where an adaptable tensor's output rows go: its group, and its first row in the group's
/// output.
struct Target {
    name: String,
    place: Place,
    first_row: usize,
    n_in: usize,
    n_out: usize,
}

impl LoraStack {
    /// Combine `active` adapters at their user scales for `config`'s model. Every pair must
    /// adapt a matrix the model has, with its shape (`MODEL_INVALID` naming the tensor);
    /// `None` when nothing is active (no adapters, or every scale 0).
    pub fn build(config: &Config, active: &[(&Adapter, f32)]) -> Result<Option<LoraStack>> {
        for (adapter, _) in active {
            check(config, adapter)?;
        }
        let active: Vec<_> = active.iter().filter(|(_, s)| *s != 0.0).collect();
        if active.is_empty() {
            return Ok(None);
        }
        let targets = targets(config);
        let mut stack = LoraStack {
            layers: (0..config.n_layer)
                .map(|_| [None, None, None, None])
                .collect(),
            head: None,
            scratch: Vec::new(),
        };
        // Pass 1: each group's rank.
        let mut ranks: Vec<(Place, usize, usize, usize)> = Vec::new();
        for (adapter, _) in &active {
            for pair in &adapter.pairs {
                let t = target(&targets, &pair.target)?;
                match ranks.iter_mut().find(|r| r.0 == t.place) {
                    Some(r) => r.1 += pair.rank,
                    None => {
                        let n_out = group_width(&targets, t.place);
                        ranks.push((t.place, pair.rank, t.n_in, n_out));
                    }
                }
            }
        }
        for &(place, rank, n_in, n_out) in &ranks {
            let rank = rank.next_multiple_of(RANK_ALIGN);
            *stack.group_mut(place) = Some(LoraGroup {
                rank,
                n_in,
                n_out,
                a: vec![0.0; rank * n_in],
                b: vec![0.0; n_out * rank],
            });
        }
        // Pass 2: each pair's rows of A and columns of B, in adapter order.
        let mut filled: Vec<(Place, usize)> = Vec::new();
        for (adapter, user_scale) in &active {
            for pair in &adapter.pairs {
                let t = target(&targets, &pair.target)?;
                let at = match filled.iter_mut().find(|f| f.0 == t.place) {
                    Some(f) => f,
                    None => {
                        filled.push((t.place, 0));
                        filled.last_mut().expect("just pushed")
                    }
                };
                let first = at.1;
                at.1 += pair.rank;
                let scale = adapter.pair_scale(pair, *user_scale);
                let g = stack.group_mut(t.place).as_mut().expect("sized in pass 1");
                g.a[first * g.n_in..][..pair.rank * g.n_in].copy_from_slice(&pair.a);
                for (o, b) in pair.b.chunks_exact(pair.rank).enumerate() {
                    let row = &mut g.b[(t.first_row + o) * g.rank..][..g.rank];
                    for (dst, &v) in row[first..first + pair.rank].iter_mut().zip(b) {
                        *dst = scale * v;
                    }
                }
            }
        }
        Ok(Some(stack))
    }

    fn group_mut(&mut self, place: Place) -> &mut Option<LoraGroup> {
        match place {
            Place::Block(l, slot) => &mut self.layers[l][slot as usize],
            Place::Head => &mut self.head,
        }
    }

    pub fn group(&self, place: Place) -> Option<&LoraGroup> {
        match place {
            Place::Block(l, slot) => self.layers.get(l)?[slot as usize].as_ref(),
            Place::Head => self.head.as_ref(),
        }
    }

    /// Every group.
    pub fn groups(&self) -> impl Iterator<Item = &LoraGroup> {
        self.layers.iter().flatten().flatten().chain(&self.head)
    }

    /// f32 values the groups hold.
    pub fn floats(&self) -> usize {
        self.groups().map(|g| g.a.len() + g.b.len()).sum()
    }

    /// The largest stacked rank (the GPU sizes its scratch by it).
    pub fn max_rank(&self) -> usize {
        self.groups().map(|g| g.rank).max().unwrap_or(0)
    }
}

/// Refuse an adapter that does not fit `config`'s model, naming the tensor.
pub fn check(config: &Config, adapter: &Adapter) -> Result<()> {
    if adapter.architecture != config.arch.name {
        return Err(Error::ModelInvalid(format!(
            "the adapter is for `{}` models, this model is `{}`",
            adapter.architecture, config.arch.name
        )));
    }
    let targets = targets(config);
    for pair in &adapter.pairs {
        let t = target(&targets, &pair.target)?;
        if (pair.n_in, pair.n_out) != (t.n_in, t.n_out) {
            return Err(Error::ModelInvalid(format!(
                "adapter tensors `{0}.lora_a`/`{0}.lora_b` make a {1}x{2} update, and the \
                 model's `{0}` is {3}x{4} (rows x columns): the adapter is for another base \
                 model",
                pair.target, pair.n_out, pair.n_in, t.n_out, t.n_in
            )));
        }
    }
    Ok(())
}

fn target<'a>(targets: &'a [Target], name: &str) -> Result<&'a Target> {
    targets.iter().find(|t| t.name == name).ok_or_else(|| {
        Error::ModelInvalid(format!(
            "the adapter adapts `{name}`, which this model has no LoRA place for (adaptable: \
             the attention and feed-forward projections and `{OUTPUT}`)"
        ))
    })
}

/// The width of a group's output: the rows of all its tensors.
fn group_width(targets: &[Target], place: Place) -> usize {
    targets
        .iter()
        .filter(|t| t.place == place)
        .map(|t| t.n_out)
        .sum()
}

/// Every matrix an adapter may adapt, from the architecture's description.
fn targets(config: &Config) -> Vec<Target> {
    let dims = config.block_dims();
    let arch = config.arch;
    let groups: [(Slot, &[BlockTensor]); 4] = [
        (Slot::Qkv, arch.qkv_tensors()),
        (Slot::AttnOutput, &[BlockTensor::AttnOutput]),
        (Slot::GateUp, arch.gate_up_tensors()),
        (Slot::Down, &[BlockTensor::Down]),
    ];
    let mut out = Vec::new();
    for layer in 0..config.n_layer {
        for (slot, tensors) in groups {
            let mut first_row = 0;
            for &t in tensors {
                let d = t.dims(&dims);
                let (n_in, n_out) = (d[0] as usize, d[1] as usize);
                out.push(Target {
                    name: t.name(layer),
                    place: Place::Block(layer, slot),
                    first_row,
                    n_in,
                    n_out,
                });
                first_row += n_out;
            }
        }
    }
    if !config.tied_embeddings {
        out.push(Target {
            name: OUTPUT.to_string(),
            place: Place::Head,
            first_row: 0,
            n_in: config.n_embd,
            n_out: config.n_vocab,
        });
    }
    out
}

//! Sampling: turning logits into the next token id.
//!
//! This is the CPU definition of sampling; the GPU sampler (`gpu::kernels::sample`) computes
//! the same distribution with the same random number, so for a given seed the two agree on
//! every draw except when that number lands within rounding of a boundary between two ids.
//! The draw comes from [`uniform`], a counter-based generator built from 32-bit integer
//! operations only (WGSL has no u64). The chain follows llama.cpp's order:
//!
//! ```text
//! logit_bias -> penalties (repetition, then frequency and presence) -> response-format mask
//!   -> top-k -> top-p -> min-p -> temperature -> draw
//! ```
//!
//! Each filter keeps a prefix of the candidates sorted by logit (descending), and never splits
//! equal logits: every token tied with the last one kept is kept too. So the kept set is
//! always "logit >= some threshold", which a GPU finds by searching on the logits' bits instead
//! of sorting (equal means equal bits, NaN counting as -inf: -0 ranks below +0, as in
//! `f32::total_cmp`). Sums are computed in f64 here; a GPU sums in f32 in another order, which
//! moves boundaries by rounding only.

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::logprobs::TokenLogprobs;
use serde::{Deserialize, Serialize};

/// The most `logit_bias` entries a request may give (the GPU sampler's bias buffer holds this
/// many).
pub const MAX_LOGIT_BIAS: usize = 1024;

/// How to pick the next token. A zero `top_k`, a `top_p` of 1, a `min_p` of 0, a
/// `repeat_penalty` of 1, zero presence and frequency penalties, a `repeat_last_n` of 0 or an
/// empty `logit_bias` turns that part off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SamplingParams {
    /// 0 picks the most likely token (greedy); higher flattens the distribution.
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens (0: all), and any tied with the k-th.
    pub top_k: usize,
    /// Keep the most likely tokens down to the highest logit at which their probabilities (over
    /// the top-k set) sum to at least `top_p`.
    pub top_p: f32,
    /// Keep tokens at least `min_p` times as likely as the most likely one.
    pub min_p: f32,
    /// Divide positive logits (multiply negative ones) of recently seen tokens by this.
    pub repeat_penalty: f32,
    /// How many of the most recent tokens the penalties look at.
    pub repeat_last_n: usize,
    /// Subtracted once from the logit of every token seen in the window (OpenAI's
    /// `presence_penalty`, in [-2, 2]).
    pub presence_penalty: f32,
    /// Subtracted from a token's logit once per occurrence in the window (OpenAI's
    /// `frequency_penalty`, in [-2, 2]).
    pub frequency_penalty: f32,
    /// Added to the logits of these ids before anything else (OpenAI's `logit_bias`: a JSON
    /// object from id strings to values in [-100, 100], at most [`MAX_LOGIT_BIAS`] entries).
    /// Ids past the vocabulary are ignored, like ids past it in the penalty window: the
    /// parameters are checked without a model.
    pub logit_bias: BTreeMap<u32, f32>,
    /// Seed of the random draws; the same seed gives the same sequence.
    pub seed: u64,
}

impl Default for SamplingParams {
    /// llama.cpp's defaults.
    fn default() -> Self {
        SamplingParams {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            logit_bias: BTreeMap::new(),
            seed: 0,
        }
    }
}

impl SamplingParams {
    /// Always the most likely token, no filters.
    pub fn greedy() -> Self {
        SamplingParams {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repeat_penalty: 1.0,
            ..Self::default()
        }
    }

    /// Whether the penalties change anything: a window and a penalty that is not neutral.
    pub fn penalties_on(&self) -> bool {
        self.repeat_last_n > 0
            && (self.repeat_penalty != 1.0
                || self.frequency_penalty != 0.0
                || self.presence_penalty != 0.0)
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |what: String| Err(Error::InvalidArgument(what));
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return bad(format!(
                "temperature {} must be finite and >= 0",
                self.temperature
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad(format!("top_p {} must be in (0, 1]", self.top_p));
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return bad(format!("min_p {} must be in [0, 1]", self.min_p));
        }
        if !(self.repeat_penalty > 0.0 && self.repeat_penalty.is_finite()) {
            return bad(format!(
                "repeat_penalty {} must be finite and > 0",
                self.repeat_penalty
            ));
        }
        for (name, v) in [
            ("presence_penalty", self.presence_penalty),
            ("frequency_penalty", self.frequency_penalty),
        ] {
            if !(-2.0..=2.0).contains(&v) {
                return bad(format!("{name} {v} must be in [-2, 2]"));
            }
        }
        if self.logit_bias.len() > MAX_LOGIT_BIAS {
            return bad(format!(
                "logit_bias has {} entries, at most {MAX_LOGIT_BIAS} are allowed",
                self.logit_bias.len()
            ));
        }
        if let Some((id, v)) = self
            .logit_bias
            .iter()
            .find(|(_, v)| !(-100.0..=100.0).contains(*v))
        {
            return bad(format!("logit_bias[{id}] = {v} must be in [-100, 100]"));
        }
        Ok(())
    }
}

/// PCG output hash of one 32-bit word (Jarzynski & Olano, "Hash Functions for GPU Rendering",
/// 2020): an LCG step followed by PCG's RXS-M-XS permutation. A bijection on u32.
fn pcg_hash(v: u32) -> u32 {
    let state = v.wrapping_mul(747_796_405).wrapping_add(2_891_336_453);
    let word = ((state >> ((state >> 28) + 4)) ^ state).wrapping_mul(277_803_737);
    (word >> 22) ^ word
}

/// The `step`-th uniform number of the stream `seed`, in [0, 1), from 32-bit operations only:
///
/// ```text
/// h = pcg_hash(seed_lo)
/// h = pcg_hash(h ^ seed_hi)
/// h = pcg_hash(h ^ step_hi)
/// h = pcg_hash(h ^ step_lo)
/// u = f32(h >> 8) * 2^-24
/// ```
///
/// where `x_lo`/`x_hi` are the low and high 32 bits, `^` is xor, and `pcg_hash(v)` is, with
/// wrapping u32 arithmetic: `s = v * 747796405 + 2891336453;
/// w = ((s >> ((s >> 28) + 4)) ^ s) * 277803737; return (w >> 22) ^ w`.
/// The 24 kept bits convert to f32 exactly, so WGSL gets the same value with
/// `f32(h >> 8u) * (1.0 / 16777216.0)`. For a fixed seed, the last step is a bijection of
/// `step_lo`, so 2^32 consecutive steps never repeat a hash.
pub fn uniform(seed: u64, step: u64) -> f32 {
    let mut h = pcg_hash(seed as u32);
    h = pcg_hash(h ^ (seed >> 32) as u32);
    h = pcg_hash(h ^ (step >> 32) as u32);
    h = pcg_hash(h ^ step as u32);
    (h >> 8) as f32 * (1.0 / 16_777_216.0)
}

/// Picks tokens from logits with fixed parameters. The draw counter advances once per
/// `sample` call (greedy ones included), so a sequence depends only on the seed and the logits.
#[derive(Debug, Clone)]
pub struct Sampler {
    params: SamplingParams,
    step: u64,
    /// The tokens the next draw may pick (a bit per id, `constraint::allowed`), when a
    /// response format constrains the output; set before each draw.
    mask: Option<Vec<u32>>,
    /// How many alternatives to report with each draw's logprobs, when they are asked.
    top_logprobs: Option<usize>,
    /// The last draw's logprobs, until taken.
    logprobs: Option<TokenLogprobs>,
}

/// Most likely first; among equal logits (equal bits) the lower id first.
fn by_logit(a: &(u32, f32), b: &(u32, f32)) -> std::cmp::Ordering {
    b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
}

impl Sampler {
    /// A sampler at step 0. Check `params.validate()` first: out-of-range values never make
    /// `sample` panic, but what they pick is unspecified (a temperature that is not > 0 is
    /// greedy).
    pub fn new(params: SamplingParams) -> Sampler {
        Sampler {
            params,
            step: 0,
            mask: None,
            top_logprobs: None,
            logprobs: None,
        }
    }

    /// Report the logprobs of each draw and of its `n` most likely alternatives
    /// (`crate::logprobs`), or stop reporting them (`None`).
    pub fn set_logprobs(&mut self, top_n: Option<usize>) {
        self.top_logprobs = top_n;
    }

    /// The alternatives asked per draw, if logprobs are.
    pub fn top_logprobs(&self) -> Option<usize> {
        self.top_logprobs
    }

    /// Keep the logprobs of a draw made elsewhere (by the GPU sampler).
    pub fn record_logprobs(&mut self, logprobs: TokenLogprobs) {
        self.logprobs = Some(logprobs);
    }

    /// The last draw's logprobs, if they were asked and not taken yet.
    pub fn take_logprobs(&mut self) -> Option<TokenLogprobs> {
        self.logprobs.take()
    }

    /// Limit the next draws to the tokens set in `mask` (`None`: every token).
    pub fn set_mask(&mut self, mask: Option<Vec<u32>>) {
        self.mask = mask;
    }

    /// The allowed tokens, if a response format limits them.
    pub fn mask(&self) -> Option<&[u32]> {
        self.mask.as_deref()
    }

    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Count a draw made elsewhere (by the GPU sampler, from this sampler's params and step),
    /// so the next draw uses the next step of the stream.
    pub fn advance(&mut self) {
        self.step += 1;
    }

    /// Draws made so far (the step the next draw uses).
    pub fn step(&self) -> u64 {
        self.step
    }

    /// The candidates the filters see: (id, logit) of every allowed id, NaN read as -inf, with
    /// `logit_bias` added and then the penalties applied, in id order.
    ///
    /// Penalties, over the last `repeat_last_n` of `recent_tokens`, once per distinct id
    /// (ids past the vocabulary are ignored), with `c` its count there, as llama.cpp does:
    /// `l = if l > 0 { l / repeat_penalty } else { l * repeat_penalty }`, then
    /// `l -= c * frequency_penalty + presence_penalty` (f32 operations, in this order).
    pub fn candidates(&self, logits: &[f32], recent_tokens: &[u32]) -> Vec<(u32, f32)> {
        let p = &self.params;
        let mut l: Vec<f32> = logits
            .iter()
            .map(|&x| if x.is_nan() { f32::NEG_INFINITY } else { x })
            .collect();
        for (&id, &bias) in &p.logit_bias {
            if let Some(x) = l.get_mut(id as usize) {
                *x += bias;
            }
        }
        if p.penalties_on() {
            let window = &recent_tokens[recent_tokens.len().saturating_sub(p.repeat_last_n)..];
            let mut counts = BTreeMap::<u32, u32>::new();
            for &t in window {
                *counts.entry(t).or_default() += 1;
            }
            for (t, c) in counts {
                if let Some(x) = l.get_mut(t as usize) {
                    *x = if *x > 0.0 {
                        *x / p.repeat_penalty
                    } else {
                        *x * p.repeat_penalty
                    };
                    *x -= c as f32 * p.frequency_penalty + p.presence_penalty;
                }
            }
        }
        l.into_iter()
            .enumerate()
            .filter(|&(i, _)| {
                self.mask
                    .as_ref()
                    .is_none_or(|m| crate::constraint::allowed(m, i))
            })
            .map(|(i, x)| (i as u32, x))
            .collect()
    }

    /// What the draw chooses from: the candidates that survive top-k, top-p and min-p, in id
    /// order, and the largest logit `M` (the argmax). `None` when the draw is greedy: a
    /// temperature that is not > 0, no allowed id, or a largest logit that is not finite.
    ///
    /// With the candidates sorted by logit (descending), each filter keeps a prefix, extended
    /// over every logit equal to its last one:
    /// - top-k: logit >= the k-th largest logit (when 0 < top_k < the number of candidates);
    /// - top-p: over the top-k set with weights `exp(l - M)`, logit >= the largest threshold
    ///   `t` for which the weight of {logit >= t} is at least `top_p` times the whole set's
    ///   (when top_p < 1);
    /// - min-p: `exp(l - M) >= min_p`.
    pub fn kept(&self, cand: &[(u32, f32)]) -> Option<(Vec<(u32, f32)>, f32)> {
        let p = &self.params;
        let mut sorted = cand.to_vec();
        sorted.sort_unstable_by(by_logit);
        let max = sorted.first()?.1;
        if p.temperature.is_nan() || p.temperature <= 0.0 || !max.is_finite() {
            return None;
        }
        let weight = |l: f32| (l as f64 - max as f64).exp();
        // The end of the run of logits equal to sorted[i] (bits, as the GPU compares them).
        let tie_end = |i: usize| {
            let bits = sorted[i].1.to_bits();
            i + sorted[i..]
                .iter()
                .take_while(|c| c.1.to_bits() == bits)
                .count()
        };
        let mut keep = sorted.len();
        if p.top_k > 0 && p.top_k < keep {
            keep = tie_end(p.top_k - 1);
        }
        if p.top_p < 1.0 {
            let target = p.top_p as f64 * sorted[..keep].iter().map(|c| weight(c.1)).sum::<f64>();
            let (mut end, mut mass) = (0, 0.0);
            while end < keep && mass < target {
                let next = tie_end(end);
                mass += sorted[end..next].iter().map(|c| weight(c.1)).sum::<f64>();
                end = next;
            }
            keep = end.max(1);
        }
        if p.min_p > 0.0 {
            keep = sorted[..keep]
                .iter()
                .take_while(|c| weight(c.1) >= p.min_p as f64)
                .count()
                .max(1);
        }
        sorted.truncate(keep);
        sorted.sort_unstable_by_key(|c| c.0);
        Some((sorted, max))
    }

    /// The probability of each id that `sample` can return for these logits (f64, in id order,
    /// zeros left out): the definition the GPU sampler is tested against.
    pub fn distribution(&self, logits: &[f32], recent_tokens: &[u32]) -> Vec<(u32, f64)> {
        let cand = self.candidates(logits, recent_tokens);
        let Some((kept, max)) = self.kept(&cand) else {
            let best = cand.iter().min_by(|a, b| by_logit(a, b)).map_or(0, |c| c.0);
            return vec![(best, 1.0)];
        };
        let t = self.params.temperature as f64;
        let w: Vec<f64> = kept
            .iter()
            .map(|c| ((c.1 as f64 - max as f64) / t).exp())
            .collect();
        let total: f64 = w.iter().sum();
        kept.iter()
            .zip(&w)
            .filter(|(_, &w)| w > 0.0)
            .map(|(c, &w)| (c.0, w / total))
            .collect()
    }

    /// The next token id for `logits` (one per vocabulary entry), given the ids generated or
    /// read so far (`recent_tokens`, oldest first; only the last `repeat_last_n` matter).
    ///
    /// Greedy (temperature 0, or a largest logit that is not finite): the largest logit, the
    /// lowest id among equal ones. Otherwise, with `M` the largest logit, weights
    /// `exp((l - M) / temperature)` over the kept candidates ([`Sampler::kept`]),
    /// `target = u * their sum` with `u = uniform(seed, step)`: the first id **in id order**
    /// whose cumulative weight exceeds the target (if rounding leaves it unreached, the last
    /// kept id with a positive weight). Penalties apply at temperature 0 too. With a mask set,
    /// only allowed ids are picked (id 0 if none is); NaN logits count as -inf; empty logits
    /// give id 0. With logprobs asked ([`Sampler::set_logprobs`]), the draw's are kept for
    /// [`Sampler::take_logprobs`].
    pub fn sample(&mut self, logits: &[f32], recent_tokens: &[u32]) -> u32 {
        let u = uniform(self.params.seed, self.step);
        self.step += 1;
        let cand = self.candidates(logits, recent_tokens);
        let id = self.draw(&cand, u);
        if let Some(n) = self.top_logprobs {
            self.logprobs = Some(crate::logprobs::token_logprobs(&cand, id, n));
        }
        id
    }

    /// The id `sample` picks from `cand` with the random number `u`.
    fn draw(&self, cand: &[(u32, f32)], u: f32) -> u32 {
        let Some((kept, max)) = self.kept(cand) else {
            return cand.iter().min_by(|a, b| by_logit(a, b)).map_or(0, |c| c.0);
        };
        let t = self.params.temperature as f64;
        let w: Vec<f64> = kept
            .iter()
            .map(|c| ((c.1 as f64 - max as f64) / t).exp())
            .collect();
        let target = u as f64 * w.iter().sum::<f64>();
        let mut cumulative = 0.0;
        for (c, &w) in kept.iter().zip(&w) {
            cumulative += w;
            if cumulative > target {
                return c.0;
            }
        }
        // Unreachable in f64 (the sum of the same terms exceeds u * sum for u < 1); kept for
        // the definition's sake.
        kept.iter()
            .zip(&w)
            .rev()
            .find(|(_, &w)| w > 0.0)
            .map_or(kept[0].0, |(c, _)| c.0)
    }
}

#[cfg(test)]
mod tests;

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
mod tests {
    use super::*;

    fn params(temperature: f32) -> SamplingParams {
        SamplingParams {
            temperature,
            ..SamplingParams::greedy()
        }
    }

    /// Ids drawn over `seeds` different seeds (one draw each).
    fn draws(p: SamplingParams, logits: &[f32], seeds: u64) -> Vec<u32> {
        (0..seeds)
            .map(|seed| Sampler::new(SamplingParams { seed, ..p.clone() }).sample(logits, &[]))
            .collect()
    }

    /// The ids `kept` keeps for `p` (sorted).
    fn kept_ids(p: SamplingParams, logits: &[f32]) -> Vec<u32> {
        let s = Sampler::new(p);
        let (kept, _) = s.kept(&s.candidates(logits, &[])).unwrap();
        kept.iter().map(|c| c.0).collect()
    }

    #[test]
    fn greedy_takes_the_argmax_and_the_lowest_id_on_ties() {
        let mut s = Sampler::new(SamplingParams::greedy());
        assert_eq!(s.sample(&[0.1, 2.0, -1.0, 1.9], &[]), 1);
        assert_eq!(s.sample(&[0.5, 3.0, 3.0, 3.0], &[]), 1);
        assert_eq!(s.sample(&[f32::NAN, -1.0, f32::NAN], &[]), 1);
        // +0 ranks above -0 (bits, as the GPU compares them).
        assert_eq!(s.sample(&[-0.0, 0.0, -1.0], &[]), 1);
        assert_eq!(s.sample(&[], &[]), 0);
        assert_eq!(s.step(), 5);
        // A largest logit that is not finite is greedy at any temperature.
        let mut s = Sampler::new(params(1.0));
        assert_eq!(s.sample(&[1.0, f32::INFINITY, 3.0, f32::INFINITY], &[]), 1);
        assert_eq!(s.sample(&[f32::NEG_INFINITY; 3], &[]), 0);
    }

    #[test]
    fn top_k_keeps_the_k_best_and_every_tie_of_the_kth() {
        let logits = [1.0, 3.0, 0.5, 2.9, 2.0, 2.5];
        let p = SamplingParams {
            top_k: 2,
            ..params(1.5)
        };
        assert_eq!(kept_ids(p.clone(), &logits), [1, 3]);
        let d = draws(p, &logits, 2000);
        assert!(d.iter().all(|&t| t == 1 || t == 3));
        assert!(d.contains(&1) && d.contains(&3));
        // The 2nd largest is 2.0, shared by ids 0, 2 and 4: all kept; 1.0 is not.
        let tied = [2.0, 3.0, 2.0, 1.0, 2.0];
        let p = SamplingParams {
            top_k: 2,
            ..params(1.0)
        };
        assert_eq!(kept_ids(p, &tied), [0, 1, 2, 4]);
        // A top_k at or past the number of candidates keeps them all.
        for top_k in [5, 6, 1000] {
            let p = SamplingParams {
                top_k,
                ..params(1.0)
            };
            assert_eq!(kept_ids(p, &tied), [0, 1, 2, 3, 4]);
        }
    }

    #[test]
    fn top_p_keeps_down_to_the_highest_threshold_reaching_p() {
        // probabilities 0.5, 0.3, 0.15, 0.05: p = 0.75 needs the first two, p = 0.85 three.
        let logits = [0.5f32, 0.3, 0.15, 0.05].map(f32::ln);
        let top_p = |top_p| SamplingParams {
            top_p,
            ..params(1.0)
        };
        assert_eq!(kept_ids(top_p(0.75), &logits), [0, 1]);
        assert_eq!(kept_ids(top_p(0.85), &logits), [0, 1, 2]);
        assert_eq!(kept_ids(top_p(0.999), &logits), [0, 1, 2, 3]);
        // A tiny top_p still keeps the best token.
        assert_eq!(kept_ids(top_p(1e-6), &logits), [0]);
        let d = draws(top_p(0.75), &logits, 2000);
        assert!(d.iter().all(|&t| t <= 1) && d.contains(&1));
        // Ties are never split: 0.4, then 0.2 three times. p = 0.5 is reached inside the tie,
        // so all of it is kept.
        let tied = [0.2f32, 0.4, 0.2, 0.2].map(f32::ln);
        assert_eq!(kept_ids(top_p(0.5), &tied), [0, 1, 2, 3]);
        assert_eq!(kept_ids(top_p(0.35), &tied), [1]);
        // Top-p weighs the top-k set only: within the best three (0.5, 0.3, 0.15 -> 0.53,
        // 0.32, 0.16), 0.8 needs two.
        let p = SamplingParams {
            top_k: 3,
            top_p: 0.8,
            ..params(1.0)
        };
        assert_eq!(kept_ids(p, &logits), [0, 1]);
        let p = SamplingParams {
            top_k: 3,
            top_p: 0.86,
            ..params(1.0)
        };
        assert_eq!(kept_ids(p, &logits), [0, 1, 2]);
    }

    #[test]
    fn min_p_drops_tokens_below_the_fraction_of_the_best() {
        // p = 0.4, 0.3, 0.2, 0.1: min_p 0.4 keeps p >= 0.16, i.e. ids 0, 1, 2.
        let logits = [0.4f32, 0.3, 0.2, 0.1].map(f32::ln);
        let p = SamplingParams {
            min_p: 0.4,
            ..params(1.0)
        };
        assert_eq!(kept_ids(p.clone(), &logits), [0, 1, 2]);
        let d = draws(p, &logits, 2000);
        assert!(d.iter().all(|&t| t <= 2) && d.contains(&2));
        // min_p 1 keeps the best and its ties.
        let p = SamplingParams {
            min_p: 1.0,
            ..params(1.0)
        };
        assert_eq!(kept_ids(p, &[1.0, 2.0, 0.0, 2.0]), [1, 3]);
    }

    #[test]
    fn the_draw_walks_the_kept_ids_in_id_order() {
        // Weights 1/4 (id 0) and 3/4 (id 1): id 0 exactly when u < 1/4. A walk in sorted order
        // would give id 1 when u < 3/4.
        let logits = [0.0f32, 3f32.ln()];
        let mut zeros = 0;
        for seed in 0..500u64 {
            let u = uniform(seed, 0);
            let want = if (u as f64) < 0.25 { 0 } else { 1 };
            zeros += usize::from(want == 0);
            assert_eq!(
                Sampler::new(SamplingParams {
                    seed,
                    ..params(1.0)
                })
                .sample(&logits, &[]),
                want,
                "seed {seed}, u {u}"
            );
        }
        assert!(zeros > 80 && zeros < 170, "{zeros}");
        // Temperature 2 flattens to weights 1 : sqrt(3): id 0 when u < 1 / (1 + sqrt(3)).
        let t2 = 1.0 / (1.0 + 3f64.sqrt());
        for seed in 0..200u64 {
            let u = uniform(seed, 0) as f64;
            let want = if u < t2 { 0 } else { 1 };
            assert_eq!(
                Sampler::new(SamplingParams {
                    seed,
                    ..params(2.0)
                })
                .sample(&logits, &[]),
                want
            );
        }
    }

    #[test]
    fn repeat_penalty_flips_a_close_argmax() {
        let logits = [0.0, 2.0, 1.9, -1.0];
        let mut s = Sampler::new(SamplingParams {
            repeat_penalty: 1.1,
            ..SamplingParams::greedy()
        });
        assert_eq!(s.sample(&logits, &[]), 1);
        // 2.0 / 1.1 = 1.82 < 1.9; a repeated id counts once.
        assert_eq!(s.sample(&logits, &[1, 1, 1]), 2);
        // Negative logits are multiplied: id 3 moves further down, not up.
        let mut s = Sampler::new(SamplingParams {
            repeat_penalty: 2.0,
            ..SamplingParams::greedy()
        });
        assert_eq!(s.sample(&[-1.0, -1.5, -3.0], &[0]), 1);
        // Only the last repeat_last_n tokens count; ids past the vocabulary are ignored.
        let mut s = Sampler::new(SamplingParams {
            repeat_penalty: 1.1,
            repeat_last_n: 2,
            ..SamplingParams::greedy()
        });
        assert_eq!(s.sample(&logits, &[1, 7, 99]), 1);
    }

    #[test]
    fn bias_then_penalties_follow_llama_cpp() {
        let p = SamplingParams {
            repeat_penalty: 2.0,
            presence_penalty: 0.25,
            frequency_penalty: 0.5,
            repeat_last_n: 4,
            logit_bias: [(1, 1.0), (2, -0.5), (4, 3.0), (900, 5.0)].into(),
            ..SamplingParams::greedy()
        };
        let s = Sampler::new(p);
        let logits = [1.0, 1.0, -1.0, 3.0, 0.5];
        // Window: the last 4 of [3, 1, 1, 2, 1]: id 1 three times, id 2 once (id 3 falls out).
        let got = s.candidates(&logits, &[3, 1, 1, 2, 1]);
        let want = [
            (0, 1.0),
            // (1 + 1) / 2 - (3 * 0.5 + 0.25)
            (1, 1.0 - 1.75),
            // (-1 - 0.5) * 2 - (1 * 0.5 + 0.25)
            (2, -3.0 - 0.75),
            (3, 3.0),
            (4, 3.5),
        ];
        assert_eq!(got, want);
        // Penalties with a neutral repetition penalty, and a penalty that raises a logit.
        let s = Sampler::new(SamplingParams {
            presence_penalty: -2.0,
            repeat_last_n: 1,
            ..SamplingParams::greedy()
        });
        assert_eq!(s.candidates(&[0.0, 1.0], &[0]), [(0, 2.0), (1, 1.0)]);
        // Off: a zero window, or neutral penalties.
        for p in [
            SamplingParams {
                presence_penalty: 1.0,
                repeat_last_n: 0,
                ..SamplingParams::greedy()
            },
            SamplingParams::greedy(),
        ] {
            assert!(!p.penalties_on());
            assert_eq!(
                Sampler::new(p).candidates(&[-0.0, 1.0], &[0, 0]),
                [(0, -0.0), (1, 1.0)]
            );
        }
    }

    #[test]
    fn masked_ids_are_never_drawn() {
        let logits = [5.0, 1.0, 4.0, 1.0, 0.0];
        // Ids 1, 3 and 4 allowed.
        let mask = vec![0b11010u32];
        for seed in 0..300 {
            let mut s = Sampler::new(SamplingParams {
                seed,
                ..params(3.0)
            });
            s.set_mask(Some(mask.clone()));
            let id = s.sample(&logits, &[]);
            assert!([1, 3, 4].contains(&id), "{id}");
        }
        let mut s = Sampler::new(SamplingParams::greedy());
        s.set_mask(Some(mask));
        // Greedy among the allowed: ids 1 and 3 tie, the lower wins.
        assert_eq!(s.sample(&logits, &[]), 1);
        // Nothing allowed: id 0.
        s.set_mask(Some(vec![0]));
        assert_eq!(s.sample(&logits, &[]), 0);
        let mut s = Sampler::new(params(1.0));
        s.set_mask(Some(vec![0]));
        assert_eq!(s.sample(&logits, &[]), 0);
    }

    /// Chi-square of `n` draws (one seed each, step 0) against `probs` (all expected counts
    /// >= 5), and its 99.9% quantile (Wilson-Hilferty).
    fn chi_square(p: &SamplingParams, logits: &[f32], recent: &[u32], probs: &[f64]) {
        let n = 20_000u64;
        let mut counts = vec![0u64; probs.len()];
        for seed in 0..n {
            let mut s = Sampler::new(SamplingParams {
                seed: seed.wrapping_mul(0x9e37_79b9_7f4a_7c15),
                ..p.clone()
            });
            counts[s.sample(logits, recent) as usize] += 1;
        }
        let mut chi2 = 0.0;
        let mut df = -1.0f64;
        for (&c, &q) in counts.iter().zip(probs) {
            if q == 0.0 {
                assert_eq!(c, 0, "{p:?}: a dropped id was drawn");
                continue;
            }
            let expected = n as f64 * q;
            assert!(expected >= 5.0);
            chi2 += (c as f64 - expected).powi(2) / expected;
            df += 1.0;
        }
        // A correct sampler exceeds the 99.9% quantile with probability 0.001; the draws are
        // deterministic (fixed seeds), so this either always passes or always fails.
        let bound = df * (1.0 - 2.0 / (9.0 * df) + 3.09 * (2.0 / (9.0 * df)).sqrt()).powi(3);
        assert!(
            chi2 < bound,
            "{p:?}: chi-square {chi2} >= {bound}, {counts:?}"
        );
    }

    #[test]
    fn draws_follow_the_definition() {
        let logits = [1.0f32, 0.5, 0.0, -0.5, 0.2, 1.3, -1.0, 0.8];
        let softmax = |l: &[f64], t: f64| {
            let w: Vec<f64> = l.iter().map(|&x| (x / t).exp()).collect();
            let total: f64 = w.iter().sum();
            w.iter().map(|w| w / total).collect::<Vec<_>>()
        };
        let l64: Vec<f64> = logits.iter().map(|&x| x as f64).collect();
        // Temperature only.
        chi_square(&params(0.7), &logits, &[], &softmax(&l64, 0.7));
        // Top-k 3 keeps ids 5, 0, 7; temperature 1.5.
        let mut top3: Vec<f64> = l64.clone();
        for (i, x) in top3.iter_mut().enumerate() {
            if ![5, 0, 7].contains(&i) {
                *x = f64::NEG_INFINITY;
            }
        }
        let p = SamplingParams {
            top_k: 3,
            ..params(1.5)
        };
        chi_square(&p, &logits, &[], &softmax(&top3, 1.5));
        // Bias, presence and frequency: ids 2 and 6 move up, id 5 (seen twice) down.
        let p = SamplingParams {
            presence_penalty: 0.5,
            frequency_penalty: 0.25,
            repeat_last_n: 8,
            logit_bias: [(2, 1.5), (6, 2.0)].into(),
            ..params(1.0)
        };
        let mut adjusted = l64.clone();
        adjusted[2] += 1.5;
        adjusted[6] += 2.0;
        adjusted[5] -= 2.0 * 0.25 + 0.5;
        chi_square(&p, &logits, &[5, 5], &softmax(&adjusted, 1.0));
    }

    #[test]
    fn the_same_seed_gives_the_same_sequence() {
        let logits: Vec<f32> = (0..50).map(|i| ((i * 37) % 11) as f32 * 0.3).collect();
        let run = |seed| {
            let mut s = Sampler::new(SamplingParams {
                seed,
                ..SamplingParams::default()
            });
            (0..64).map(|_| s.sample(&logits, &[])).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
        assert_ne!(run(7), run(7 + (1 << 32)));
    }

    #[test]
    fn uniform_is_in_range_with_mean_one_half() {
        let n = 100_000u64;
        let mut sum = 0.0f64;
        let mut bins = [0u64; 16];
        for step in 0..n {
            let u = uniform(42, step);
            assert!((0.0..1.0).contains(&u));
            sum += u as f64;
            bins[(u * 16.0) as usize] += 1;
        }
        // The mean of n uniforms has standard deviation 1 / sqrt(12 n) = 0.0009: 0.005 is 5.5
        // sigma.
        assert!((sum / n as f64 - 0.5).abs() < 0.005);
        // 15 degrees of freedom: P(chi2 > 37.70) = 0.001.
        let expected = n as f64 / 16.0;
        let chi2: f64 = bins
            .iter()
            .map(|&c| (c as f64 - expected).powi(2) / expected)
            .sum();
        assert!(chi2 < 37.70, "chi-square {chi2}");
        assert_eq!(uniform(42, 5), uniform(42, 5));
        assert_ne!(uniform(42, 5), uniform(43, 5));
        assert_ne!(uniform(42, 5), uniform(42 + (1 << 32), 5));
    }

    #[test]
    fn uniform_is_pinned() {
        // The GPU sampler must reproduce these bit for bit (values times 2^24, i.e. `h >> 8`);
        // checked against an independent Python transcription of the documented function.
        let got: Vec<u32> = [(0, 0), (0, 1), (1, 0), (u64::MAX, u64::MAX)]
            .iter()
            .map(|&(seed, step)| (uniform(seed, step) * 16_777_216.0) as u32)
            .collect();
        assert_eq!(got, [9253448, 83003, 2169020, 7941414]);
    }

    #[test]
    fn validate_rejects_out_of_range_values() {
        assert!(SamplingParams::default().validate().is_ok());
        assert!(SamplingParams::greedy().validate().is_ok());
        let edges = SamplingParams {
            presence_penalty: -2.0,
            frequency_penalty: 2.0,
            logit_bias: (0..MAX_LOGIT_BIAS as u32)
                .map(|i| (i, if i % 2 == 0 { 100.0 } else { -100.0 }))
                .collect(),
            ..Default::default()
        };
        assert!(edges.validate().is_ok());
        let bad = [
            SamplingParams {
                temperature: -0.1,
                ..Default::default()
            },
            SamplingParams {
                temperature: f32::NAN,
                ..Default::default()
            },
            SamplingParams {
                top_p: 0.0,
                ..Default::default()
            },
            SamplingParams {
                top_p: 1.01,
                ..Default::default()
            },
            SamplingParams {
                min_p: -0.01,
                ..Default::default()
            },
            SamplingParams {
                min_p: 1.5,
                ..Default::default()
            },
            SamplingParams {
                repeat_penalty: 0.0,
                ..Default::default()
            },
            SamplingParams {
                presence_penalty: 2.01,
                ..Default::default()
            },
            SamplingParams {
                presence_penalty: f32::NAN,
                ..Default::default()
            },
            SamplingParams {
                frequency_penalty: -2.5,
                ..Default::default()
            },
            SamplingParams {
                frequency_penalty: f32::INFINITY,
                ..Default::default()
            },
            SamplingParams {
                logit_bias: [(1, 100.5)].into(),
                ..Default::default()
            },
            SamplingParams {
                logit_bias: [(1, f32::NEG_INFINITY)].into(),
                ..Default::default()
            },
            SamplingParams {
                logit_bias: [(1, f32::NAN)].into(),
                ..Default::default()
            },
            SamplingParams {
                logit_bias: (0..MAX_LOGIT_BIAS as u32 + 1).map(|i| (i, 1.0)).collect(),
                ..Default::default()
            },
        ];
        for p in bad {
            assert!(
                matches!(p.validate(), Err(Error::InvalidArgument(_))),
                "{p:?}"
            );
            // Out-of-range values still never panic or pick an id outside the logits.
            let id = Sampler::new(p).sample(&[0.5, 1.0, -2.0], &[0, 1]);
            assert!(id < 3);
        }
    }

    #[test]
    fn params_round_trip_through_json_and_fill_defaults() {
        let p = SamplingParams {
            seed: 99,
            presence_penalty: 0.5,
            frequency_penalty: -0.25,
            logit_bias: [(7, -100.0), (50256, 2.5)].into(),
            ..SamplingParams::default()
        };
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<SamplingParams>(&json).unwrap(), p);
        let partial: SamplingParams = serde_json::from_str(r#"{"temperature": 0.0}"#).unwrap();
        assert_eq!(partial.top_k, 40);
        assert_eq!(partial.presence_penalty, 0.0);
        assert!(partial.logit_bias.is_empty());
        // OpenAI's shape: token ids as string keys.
        let openai: SamplingParams = serde_json::from_str(
            r#"{"logit_bias": {"42": -100, "7": 5.5}, "frequency_penalty": 1}"#,
        )
        .unwrap();
        assert_eq!(openai.logit_bias, [(7, 5.5), (42, -100.0)].into());
        assert_eq!(openai.frequency_penalty, 1.0);
        assert!(serde_json::from_str::<SamplingParams>(r#"{"logit_bias": {"x": 1}}"#).is_err());
    }
}

//! Sampling: turning logits into the next token id.
//!
//! This is the CPU definition of sampling; the GPU sampler must reproduce it, random draws
//! included. The draw therefore comes from [`uniform`], a counter-based generator built from
//! 32-bit integer operations only (WGSL has no u64), and the filter chain follows llama.cpp's
//! default order: repetition penalty -> top-k -> softmax -> top-p -> min-p -> temperature ->
//! softmax -> draw.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// How to pick the next token. A zero `top_k`, a `top_p` of 1, a `min_p` of 0, a
/// `repeat_penalty` of 1 or a `repeat_last_n` of 0 turns that filter off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SamplingParams {
    /// 0 picks the most likely token (greedy); higher flattens the distribution.
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens (0: all).
    pub top_k: usize,
    /// Keep the smallest set of most likely tokens whose probabilities sum to at least `top_p`.
    pub top_p: f32,
    /// Keep tokens at least `min_p` times as likely as the most likely one.
    pub min_p: f32,
    /// Divide positive logits (multiply negative ones) of recently seen tokens by this.
    pub repeat_penalty: f32,
    /// How many of the most recent tokens the repetition penalty looks at.
    pub repeat_last_n: usize,
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
        }
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

    /// The next token id for `logits` (one per vocabulary entry), given the ids generated or
    /// read so far (`recent_tokens`, oldest first; only the last `repeat_last_n` matter).
    /// The repetition penalty applies at temperature 0 too; greedy ties go to the lowest id.
    /// With a mask set, only allowed ids are picked (id 0 if none is).
    /// NaN logits are never picked unless all are NaN; empty logits give id 0.
    pub fn sample(&mut self, logits: &[f32], recent_tokens: &[u32]) -> u32 {
        let p = &self.params;
        let u = uniform(p.seed, self.step);
        self.step += 1;

        // (id, logit) with NaN as -inf, so every comparison below is a total order.
        let mut cand: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .map(|(i, &l)| (i as u32, if l.is_nan() { f32::NEG_INFINITY } else { l }))
            .collect();

        // Repetition penalty, once per distinct recent token.
        if p.repeat_penalty != 1.0 && p.repeat_last_n > 0 {
            let recent = &recent_tokens[recent_tokens.len().saturating_sub(p.repeat_last_n)..];
            let mut seen = std::collections::HashSet::new();
            for &t in recent {
                if let Some(c) = cand.get_mut(t as usize).filter(|_| seen.insert(t)) {
                    c.1 = if c.1 > 0.0 {
                        c.1 / p.repeat_penalty
                    } else {
                        c.1 * p.repeat_penalty
                    };
                }
            }
        }

        // A response format's mask, after the penalties (which index by id): the filters
        // below see only what the grammar allows.
        if let Some(mask) = &self.mask {
            cand.retain(|c| crate::constraint::allowed(mask, c.0 as usize));
        }

        // Most likely first; among equal logits the lower id first.
        let by_logit = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));

        if p.temperature.is_nan() || p.temperature <= 0.0 {
            return cand.iter().min_by(|a, b| by_logit(a, b)).map_or(0, |c| c.0);
        }

        // Top-k, then sort what is left.
        if p.top_k > 0 && p.top_k < cand.len() {
            cand.select_nth_unstable_by(p.top_k - 1, by_logit);
            cand.truncate(p.top_k);
        }
        cand.sort_unstable_by(by_logit);
        let Some(&(best, max_logit)) = cand.first() else {
            return 0;
        };
        if !max_logit.is_finite() {
            return best;
        }

        // Softmax of the survivors (sorted, so probabilities are descending).
        let mut probs = softmax(&cand, 1.0);

        // Top-p: the shortest prefix whose probability reaches top_p (at least one token).
        if p.top_p < 1.0 {
            let mut cumulative = 0.0;
            let keep = probs
                .iter()
                .position(|&q| {
                    cumulative += q;
                    cumulative >= p.top_p
                })
                .map_or(probs.len(), |i| i + 1);
            cand.truncate(keep);
            probs.truncate(keep);
        }

        // Min-p: tokens at least min_p times as likely as the best one.
        if p.min_p > 0.0 {
            let threshold = p.min_p * probs[0];
            let keep = probs.iter().take_while(|&&q| q >= threshold).count().max(1);
            cand.truncate(keep);
        }

        // Temperature, softmax, and the draw: the first token whose cumulative probability
        // exceeds u (scaled by the total, which rounding may leave a little off 1).
        let probs = softmax(&cand, p.temperature);
        let target = u * probs.iter().sum::<f32>();
        let mut cumulative = 0.0;
        for (&(id, _), &q) in cand.iter().zip(&probs) {
            cumulative += q;
            if cumulative > target {
                return id;
            }
        }
        cand.last().map_or(best, |c| c.0)
    }
}

/// softmax(logit / temperature) of candidates sorted most likely first (the first has the
/// largest, finite logit), computed as exp((logit - max) / temperature) / sum.
fn softmax(cand: &[(u32, f32)], temperature: f32) -> Vec<f32> {
    let max = cand.first().map_or(0.0, |c| c.1);
    let mut e: Vec<f32> = cand
        .iter()
        .map(|c| ((c.1 - max) / temperature).exp())
        .collect();
    let sum: f32 = e.iter().sum();
    e.iter_mut().for_each(|v| *v /= sum);
    e
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

    #[test]
    fn greedy_takes_the_argmax_and_the_lowest_id_on_ties() {
        let mut s = Sampler::new(SamplingParams::greedy());
        assert_eq!(s.sample(&[0.1, 2.0, -1.0, 1.9], &[]), 1);
        assert_eq!(s.sample(&[0.5, 3.0, 3.0, 3.0], &[]), 1);
        assert_eq!(s.sample(&[f32::NAN, -1.0, f32::NAN], &[]), 1);
        assert_eq!(s.sample(&[], &[]), 0);
        assert_eq!(s.step(), 4);
    }

    #[test]
    fn top_k_only_returns_the_k_best() {
        let logits = [1.0, 3.0, 0.5, 2.9, 2.0, 2.5];
        let p = SamplingParams {
            top_k: 2,
            ..params(1.5)
        };
        let d = draws(p, &logits, 2000);
        assert!(d.iter().all(|&t| t == 1 || t == 3));
        assert!(d.contains(&1) && d.contains(&3));
    }

    #[test]
    fn top_p_keeps_the_smallest_prefix_reaching_p() {
        // probabilities 0.5, 0.3, 0.15, 0.05: p = 0.75 needs the first two, p = 0.85 three.
        let logits = [0.5f32, 0.3, 0.15, 0.05].map(f32::ln);
        let d = draws(
            SamplingParams {
                top_p: 0.75,
                ..params(1.0)
            },
            &logits,
            2000,
        );
        assert!(d.iter().all(|&t| t <= 1) && d.contains(&1));
        let d = draws(
            SamplingParams {
                top_p: 0.85,
                ..params(1.0)
            },
            &logits,
            2000,
        );
        assert!(d.iter().all(|&t| t <= 2) && d.contains(&2));
        // A tiny top_p still keeps the best token.
        let d = draws(
            SamplingParams {
                top_p: 1e-6,
                ..params(1.0)
            },
            &logits,
            200,
        );
        assert!(d.iter().all(|&t| t == 0));
    }

    #[test]
    fn min_p_drops_tokens_below_the_fraction_of_the_best() {
        // p = 0.4, 0.3, 0.2, 0.1: min_p 0.4 keeps p >= 0.16, i.e. ids 0, 1, 2.
        let logits = [0.4f32, 0.3, 0.2, 0.1].map(f32::ln);
        let d = draws(
            SamplingParams {
                min_p: 0.4,
                ..params(1.0)
            },
            &logits,
            2000,
        );
        assert!(d.iter().all(|&t| t <= 2) && d.contains(&2));
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
    fn draws_follow_softmax_of_logits_over_temperature() {
        let logits = [1.0f32, 0.5, 0.0, -0.5, 0.2, 1.3, -1.0, 0.8];
        let t = 0.7f32;
        let n = 20_000u64;
        let mut s = Sampler::new(SamplingParams {
            seed: 1234,
            ..params(t)
        });
        let mut counts = [0u64; 8];
        for _ in 0..n {
            counts[s.sample(&logits, &[]) as usize] += 1;
        }
        let w: Vec<f64> = logits
            .iter()
            .map(|&l| (l as f64 / t as f64).exp())
            .collect();
        let total: f64 = w.iter().sum();
        let chi2: f64 = counts
            .iter()
            .zip(&w)
            .map(|(&c, &w)| {
                let expected = n as f64 * w / total;
                assert!(expected >= 5.0);
                (c as f64 - expected).powi(2) / expected
            })
            .sum();
        // 7 degrees of freedom: P(chi2 > 24.32) = 0.001 for a correct sampler. The draws are
        // deterministic (fixed seed), so this either always passes or always fails.
        assert!(chi2 < 24.32, "chi-square {chi2}, counts {counts:?}");
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
            ..SamplingParams::default()
        };
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<SamplingParams>(&json).unwrap(), p);
        let partial: SamplingParams = serde_json::from_str(r#"{"temperature": 0.0}"#).unwrap();
        assert_eq!(partial.top_k, 40);
    }
}

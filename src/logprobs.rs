//! Log-probabilities of the generated tokens (OpenAI's `logprobs` and `top_logprobs`).
//!
//! Of which distribution: the softmax of the logits after `logit_bias`, the penalties and the
//! response-format mask (a masked token has none), at temperature 1 and before top-k, top-p
//! and min-p. So a logprob is the model's view of a token with the request's adjustments,
//! whatever the draw's truncation and temperature: the same numbers greedy or sampled.
//!
//! The CPU sampler computes them here from its candidates (`Sampler::sample`); the GPU computes
//! the same from its keys (`shaders/sample_logprobs.wgsl`) and reads back only the chosen token
//! and the top `n`, and only when asked. Both sum in their own order (f64 here, f32 there), so
//! they agree to rounding.

use serde::Serialize;

use crate::error::{Error, Result};
use crate::tokenizer::Tokenizer;

/// The most alternatives a request may ask for per token (OpenAI's limit).
pub const MAX_TOP_LOGPROBS: usize = 20;

/// What a token too unlikely to have a finite logprob (or a masked one) reports, as OpenAI's
/// API does: JSON has no -inf.
pub const LOGPROB_FLOOR: f32 = -9999.0;

/// One generated token's logprob and the `n` most likely tokens at its step, by id: most likely
/// first, the lower id first among equal logits.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprobs {
    pub id: u32,
    pub logprob: f32,
    pub top: Vec<(u32, f32)>,
}

/// Check a request's `top_logprobs` (`None`: logprobs not asked).
pub fn validate(top_n: Option<usize>) -> Result<()> {
    match top_n {
        Some(n) if n > MAX_TOP_LOGPROBS => Err(Error::InvalidArgument(format!(
            "top_logprobs {n} must be at most {MAX_TOP_LOGPROBS}"
        ))),
        _ => Ok(()),
    }
}

/// `logit - log(sum of exp(logit - max))` over the candidates, with `max` the largest logit:
/// each term is `exp(0)` for a logit equal to `max` (so a largest logit of +inf or -inf still
/// gives its ties equal shares) and `exp(logit - max)` otherwise.
pub fn logprob(logit: f32, max: f32, log_sum: f64) -> f32 {
    let d = if logit.to_bits() == max.to_bits() {
        0.0
    } else {
        logit as f64 - max as f64
    };
    let lp = (d - log_sum) as f32;
    if lp.is_nan() || lp < LOGPROB_FLOOR {
        LOGPROB_FLOOR
    } else {
        lp
    }
}

/// The logprobs of `chosen` and of the `top_n` best of `cand` ((id, logit) in id order, as
/// `Sampler::candidates` makes them). An id that is not a candidate gets [`LOGPROB_FLOOR`].
pub fn token_logprobs(cand: &[(u32, f32)], chosen: u32, top_n: usize) -> TokenLogprobs {
    let Some(max) = cand.iter().map(|c| c.1).max_by(f32::total_cmp) else {
        return TokenLogprobs {
            id: chosen,
            logprob: LOGPROB_FLOOR,
            top: Vec::new(),
        };
    };
    let sum: f64 = cand
        .iter()
        .map(|c| match c.1.to_bits() == max.to_bits() {
            true => 1.0,
            false => (c.1 as f64 - max as f64).exp(),
        })
        .sum();
    let log_sum = sum.ln();
    let of = |l: f32| logprob(l, max, log_sum);
    let mut best = cand.to_vec();
    let n = top_n.min(best.len());
    if n > 0 {
        let order = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        best.select_nth_unstable_by(n - 1, order);
        best.truncate(n);
        best.sort_unstable_by(order);
    }
    TokenLogprobs {
        id: chosen,
        logprob: cand
            .binary_search_by_key(&chosen, |c| c.0)
            .map_or(LOGPROB_FLOOR, |i| of(cand[i].1)),
        top: best
            .into_iter()
            .take(n)
            .map(|(id, l)| (id, of(l)))
            .collect(),
    }
}

/// One token of OpenAI's `choices[].logprobs.content`: its text, logprob and bytes, with the
/// most likely alternatives at its step in `top_logprobs` (the field names are OpenAI's).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogprobEntry {
    pub token: String,
    pub logprob: f32,
    /// The token's bytes (its text may be part of a UTF-8 character).
    pub bytes: Vec<u8>,
    pub top_logprobs: Vec<TopLogprob>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopLogprob {
    pub token: String,
    pub logprob: f32,
    pub bytes: Vec<u8>,
}

impl TopLogprob {
    fn new(tokenizer: &Tokenizer, id: u32, logprob: f32) -> TopLogprob {
        let bytes = tokenizer.piece_bytes(id);
        TopLogprob {
            token: String::from_utf8_lossy(&bytes).into_owned(),
            logprob,
            bytes,
        }
    }
}

impl LogprobEntry {
    pub fn new(tokenizer: &Tokenizer, t: &TokenLogprobs) -> LogprobEntry {
        let token = TopLogprob::new(tokenizer, t.id, t.logprob);
        LogprobEntry {
            token: token.token,
            logprob: token.logprob,
            bytes: token.bytes,
            top_logprobs: t
                .top
                .iter()
                .map(|&(id, lp)| TopLogprob::new(tokenizer, id, lp))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(logits: &[f32]) -> Vec<(u32, f32)> {
        logits
            .iter()
            .enumerate()
            .map(|(i, &l)| (i as u32, l))
            .collect()
    }

    #[test]
    fn logprobs_are_a_log_softmax() {
        let logits = [1.0f32, 3.0, -2.0, 3.0, 0.5];
        let t = token_logprobs(&cand(&logits), 4, 3);
        let z: f64 = logits.iter().map(|&l| (l as f64).exp()).sum();
        let expect = |l: f32| (l as f64 - z.ln()) as f32;
        assert!((t.logprob - expect(0.5)).abs() < 1e-6);
        // Most likely first; the tie of ids 1 and 3 in id order.
        let ids: Vec<u32> = t.top.iter().map(|c| c.0).collect();
        assert_eq!(ids, [1, 3, 0]);
        for &(id, lp) in &t.top {
            assert!((lp - expect(logits[id as usize])).abs() < 1e-6);
        }
    }

    #[test]
    fn masked_and_missing_ids_get_the_floor() {
        // Id 1 is masked: not a candidate, so neither in the sum nor in the top.
        let c = vec![(0u32, 0.0f32), (2, 0.0)];
        let t = token_logprobs(&c, 1, 5);
        assert_eq!(t.logprob, LOGPROB_FLOOR);
        assert_eq!(t.top.len(), 2);
        assert!((t.top[0].1 - 0.5f32.ln()).abs() < 1e-6);
        let empty = token_logprobs(&[], 7, 3);
        assert_eq!(
            (empty.id, empty.logprob, empty.top.len()),
            (7, LOGPROB_FLOOR, 0)
        );
    }

    #[test]
    fn non_finite_logits_stay_finite() {
        let t = token_logprobs(&cand(&[f32::NEG_INFINITY, 2.0, f32::INFINITY]), 0, 3);
        assert_eq!(t.logprob, LOGPROB_FLOOR);
        assert_eq!(t.top[0], (2, 0.0), "+inf takes all the probability");
        assert_eq!(t.top[1], (1, LOGPROB_FLOOR));
        let all_low = token_logprobs(&cand(&[f32::NEG_INFINITY; 4]), 2, 1);
        assert!(
            (all_low.logprob - 0.25f32.ln()).abs() < 1e-6,
            "ties share equally"
        );
    }

    #[test]
    fn top_n_is_bounded() {
        assert!(validate(Some(MAX_TOP_LOGPROBS)).is_ok());
        assert!(validate(None).is_ok());
        let e = validate(Some(MAX_TOP_LOGPROBS + 1)).unwrap_err();
        assert_eq!(e.code(), "INVALID_ARGUMENT");
        assert!(token_logprobs(&cand(&[1.0, 2.0]), 0, 0).top.is_empty());
    }
}

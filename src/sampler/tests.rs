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
    let openai: SamplingParams =
        serde_json::from_str(r#"{"logit_bias": {"42": -100, "7": 5.5}, "frequency_penalty": 1}"#)
            .unwrap();
    assert_eq!(openai.logit_bias, [(7, 5.5), (42, -100.0)].into());
    assert_eq!(openai.frequency_penalty, 1.0);
    assert!(serde_json::from_str::<SamplingParams>(r#"{"logit_bias": {"x": 1}}"#).is_err());
}

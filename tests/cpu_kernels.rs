//! The CPU engine's kernels (`llama_wgpu::cpu`) against the f32 oracle `quant::dequantize`:
//! every supported type, random valid blocks, random activations.

mod common;

use common::quant_data::{Rng, Tensor};
use llama_wgpu::cpu::{self, Q8Activations, QK8};
use llama_wgpu::quant::{GgmlType, CPU_TYPES};

/// The smallest row length of `ty` that is also whole activation blocks.
fn unit_cols(ty: GgmlType) -> u64 {
    ty.block_size().max(QK8 as u64)
}

/// Activations whose magnitude changes from block to block, so that block scales differ.
fn activations(cols: usize, rng: &mut Rng) -> Vec<f32> {
    let mut x = rng.vec(cols);
    for (b, block) in x.chunks_exact_mut(QK8).enumerate() {
        let scale = [1.0, 0.1, 3.0, 0.01][b % 4];
        block.iter_mut().for_each(|v| *v *= scale);
    }
    x
}

/// `rows` random rows of `ty`, `n_units` times `unit_cols(ty)` values each, and random
/// activations of that length.
struct Case {
    w: Tensor,
    x: Vec<f32>,
    act: Q8Activations,
    row_bytes: usize,
}

impl Case {
    fn new(ty: GgmlType, rows: usize, n_units: u64, rng: &mut Rng) -> Case {
        Case::with_cols(ty, rows, unit_cols(ty) * n_units, rng)
    }

    /// `rows` rows of `cols` values (whole blocks of `ty`).
    fn with_cols(ty: GgmlType, rows: usize, cols: u64, rng: &mut Rng) -> Case {
        let w = Tensor::random(ty, rows as u64, cols, rng);
        let x = activations(cols as usize, rng);
        let act = Q8Activations::quantize(&x).unwrap();
        let row_bytes = w.bytes.len() / rows;
        Case {
            w,
            x,
            act,
            row_bytes,
        }
    }

    /// Each row's bytes and its values as `quant.rs` decodes them.
    fn rows(&self) -> impl Iterator<Item = (&[u8], &[f32])> {
        let values = self.w.values.chunks_exact(self.x.len());
        self.w.bytes.chunks_exact(self.row_bytes).zip(values)
    }
}

/// A bound on the magnitude of all the terms a kernel sums for one row: each block's term is
/// at most (max |w| + |the block's offset|) Σ |x| <= 2 max |w| Σ |x| over the block.
fn largest_terms(row: &[f32], x: &[f32]) -> f64 {
    let max_w = row.iter().fold(0f64, |m, &w| m.max(w.abs() as f64));
    2.0 * max_w * x.iter().map(|&v| v.abs() as f64).sum::<f64>()
}

/// What f32 rounding may move a row's dot by, whatever the order of summation: a few ulps of
/// each block's term.
fn summation_bound(row: &[f32], x: &[f32]) -> f64 {
    let terms = (x.len() / QK8 + 8) as f64;
    terms * f32::EPSILON as f64 * largest_terms(row, x)
}

/// |dot_row - dequantize(row) · x| <= Σ_i |w_i| (d(i) / 2 + 2 ulp(x_i)) + f32 summation: each
/// activation moves by at most half its block's step (the ulps: the rounding of x / d and
/// q * d); float rows are dotted with x itself, so only the summation term applies.
#[test]
fn dot_row_is_within_the_activation_rounding_bound() {
    let mut rng = Rng(7);
    for ty in CPU_TYPES {
        let mut worst = 0f64;
        for n_units in [1, 2, 5] {
            let case = Case::new(ty, 4, n_units, &mut rng);
            let (x, act) = (&case.x, &case.act);
            for ((bytes, row), (exact, abs)) in case.rows().zip(case.w.dot_rows(x)) {
                let got = cpu::dot_row(ty, bytes, act).unwrap();
                let mut bound = summation_bound(row, x);
                if ty.block_size() > 1 {
                    let blocks = act.blocks().iter().flat_map(|b| [b.d; QK8]);
                    let steps = row.iter().zip(x).zip(blocks);
                    bound += steps
                        .map(|((&w, &x), d)| {
                            let step = d * 0.5 + 2.0 * f32::EPSILON * x.abs();
                            w.abs() as f64 * step as f64
                        })
                        .sum::<f64>();
                    assert!(
                        bound < 0.05 * abs,
                        "{ty}: the bound {bound} says nothing ({abs})"
                    );
                }
                let err = (got as f64 - exact).abs();
                assert!(
                    err <= bound,
                    "{ty} x{}: {got} vs {exact}, bound {bound}",
                    x.len()
                );
                worst = worst.max(err / bound);
            }
        }
        eprintln!("{ty}: worst error {:.3} of the bound", worst);
    }
}

/// The types that must have a SIMD kernel where the machine has the instruction set.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
const SIMD_TYPES: &[GgmlType] = {
    use GgmlType::*;
    &[Q4_0, Q4_1, Q8_0, Q5_0, Q4_K, Q6_K, Q5_K, IQ4_NL]
};

#[cfg(target_arch = "x86_64")]
#[test]
fn avx2_kernels_exist_where_the_cpu_has_avx2() {
    let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
    if !(avx2 && is_x86_feature_detected!("f16c")) {
        eprintln!("SKIPPED: no AVX2+FMA+F16C on this CPU");
        return;
    }
    for &ty in SIMD_TYPES {
        assert_eq!(cpu::simd_path(ty), Some("avx2"), "{ty}");
    }
}

/// NEON is part of every aarch64 CPU: the SIMD kernels are always there. (This test runs on
/// x86-64 machines too, under `qemu-aarch64`: see `build.sh test-aarch64`.)
#[cfg(target_arch = "aarch64")]
#[test]
fn neon_kernels_exist_on_aarch64() {
    for &ty in SIMD_TYPES {
        assert_eq!(cpu::simd_path(ty), Some("neon"), "{ty}");
    }
}

/// The SIMD kernels sum in another order than the scalar ones, so they may differ by f32
/// reassociation: 1e-5 of the largest terms (as `summation_bound` takes them), about 80 ulps.
#[test]
fn simd_equals_scalar_on_odd_row_lengths() {
    let mut rng = Rng(11);
    for ty in CPU_TYPES {
        if cpu::simd_path(ty).is_none() {
            continue;
        }
        for n_units in [1, 3, 7] {
            // Float rows may have any length: 5 more values than whole SIMD steps leave a tail.
            let cols = unit_cols(ty) * n_units + if ty.block_size() == 1 { 5 } else { 0 };
            let case = Case::with_cols(ty, 3, cols, &mut rng);
            let (x, act) = (&case.x, &case.act);
            for (bytes, row) in case.rows() {
                let simd = cpu::dot_row(ty, bytes, act).unwrap();
                let scalar = cpu::dot_row_scalar(ty, bytes, act).unwrap();
                let bound = 2e-5 * largest_terms(row, x);
                let diff = (simd as f64 - scalar as f64).abs();
                assert!(
                    diff <= bound,
                    "{ty} x{}: simd {simd} scalar {scalar}",
                    x.len()
                );
            }
        }
    }
}

/// matvec and matmul run the same kernel as dot_row on each row, so they agree bit for bit; 70
/// rows is two whole tasks of rows and a partial one.
#[test]
fn matvec_and_matmul_equal_dot_row() {
    let mut rng = Rng(3);
    let rows = 70;
    for ty in CPU_TYPES {
        for n_units in [1, 3] {
            let case = Case::new(ty, rows, n_units, &mut rng);
            let (w, row_bytes, cols) = (&case.w.bytes, case.row_bytes, case.x.len());
            let mut acts = vec![case.act.clone()];
            acts.extend(
                (0..2).map(|_| Q8Activations::quantize(&activations(cols, &mut rng)).unwrap()),
            );
            let per_row = |act: &Q8Activations| -> Vec<f32> {
                let rows = case.rows();
                rows.map(|(row, _)| cpu::dot_row(ty, row, act).unwrap())
                    .collect()
            };
            let mut out = vec![f32::NAN; rows];
            cpu::matvec(ty, rows, row_bytes, w, &acts[0], &mut out).unwrap();
            assert_eq!(out, per_row(&acts[0]), "{ty} x{cols} matvec");
            let mut out = vec![f32::NAN; rows * acts.len()];
            cpu::matmul(ty, rows, row_bytes, w, &acts, &mut out).unwrap();
            for (t, (out, act)) in out.chunks_exact(rows).zip(&acts).enumerate() {
                assert_eq!(out, per_row(act), "{ty} x{cols} matmul token {t}");
            }
        }
    }
}

#[test]
fn zero_activations_give_exactly_zero() {
    let mut rng = Rng(5);
    for ty in CPU_TYPES {
        let case = Case::new(ty, 5, 2, &mut rng);
        let act = Q8Activations::quantize(&vec![0.0; case.x.len()]).unwrap();
        let mut out = vec![f32::NAN; 5];
        cpu::matvec(ty, 5, case.row_bytes, &case.w.bytes, &act, &mut out).unwrap();
        assert_eq!(out, [0.0; 5], "{ty}");
    }
}

#[test]
fn bad_lengths_and_types_are_invalid_argument() {
    let act = Q8Activations::quantize(&[1.0; 64]).unwrap();
    let q4_0 = GgmlType::Q4_0;
    let errors = [
        cpu::dot_row(q4_0, &[0; 18], &act).unwrap_err(),
        cpu::dot_row(GgmlType::Q4_K, &[0; 144], &act).unwrap_err(),
        cpu::dot_row_scalar(q4_0, &[0; 37], &act).unwrap_err(),
        cpu::dot_row(GgmlType::Q8_1, &[0; 72], &act).unwrap_err(),
        cpu::matvec(q4_0, 2, 36, &[0; 36], &act, &mut [0.0; 2]).unwrap_err(),
        cpu::matvec(q4_0, 2, 36, &[0; 72], &act, &mut [0.0; 3]).unwrap_err(),
        cpu::matvec(q4_0, usize::MAX, 36, &[0; 72], &act, &mut [0.0; 2]).unwrap_err(),
        cpu::matmul(
            q4_0,
            2,
            36,
            &[0; 72],
            &[act.clone(), act.clone()],
            &mut [0.0; 2],
        )
        .unwrap_err(),
        cpu::matmul(
            q4_0,
            2,
            36,
            &[0; 72],
            &[Q8Activations::new()],
            &mut [0.0; 2],
        )
        .unwrap_err(),
    ];
    for err in errors {
        assert_eq!(err.code(), "INVALID_ARGUMENT", "{err}");
    }
    let mut out = [f32::NAN; 2];
    cpu::matmul(q4_0, 2, 36, &[0; 72], &[], &mut []).unwrap();
    cpu::matvec(q4_0, 2, 36, &[0; 72], &act, &mut out).unwrap();
    assert_eq!(out, [0.0; 2], "zero blocks dot to zero");
}

/// Not a test: ns per 4096-value row of every type, `dot_row` against `dot_row_scalar`. `cargo test --test cpu_kernels -- --ignored --nocapture`.
#[test]
#[ignore]
fn print_ns_per_row() {
    let mut rng = Rng(13);
    for ty in CPU_TYPES {
        let case = Case::new(ty, 256, 4096 / unit_cols(ty), &mut rng);
        let time = |dot: fn(GgmlType, &[u8], &Q8Activations) -> llama_wgpu::Result<f32>| {
            let start = std::time::Instant::now();
            for _ in 0..20 {
                for (row, _) in case.rows() {
                    std::hint::black_box(dot(ty, row, &case.act).unwrap());
                }
            }
            start.elapsed().as_nanos() as f64 / (20 * 256) as f64
        };
        let (scalar, fast) = (time(cpu::dot_row_scalar), time(cpu::dot_row));
        let path = cpu::simd_path(ty).unwrap_or("scalar");
        eprintln!("{ty:>7}: scalar {scalar:8.0} ns/row, {path} {fast:8.0} ns/row");
    }
}

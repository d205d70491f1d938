//! `llama-wgpu quantize`: the quantizers against llama.cpp's own output byte for byte
//! (tests/fixtures/quant: `source.f32.gguf` holds the unquantized values, `<TYPE>.gguf` what
//! llama.cpp's quantizer wrote for them), and the whole-file rewrite.

mod common;

use llama_wgpu::gguf::GgufFile;
use llama_wgpu::quant::{dequantize_tensor, GgmlType};
use llama_wgpu::quantize::{quantize, quantize_file, QUANTIZE_TYPES};

fn fixture(name: &str) -> GgufFile {
    GgufFile::open(common::local_fixture(&format!("quant/{name}"))).unwrap()
}

#[test]
fn quantizers_match_llama_cpp_byte_for_byte() {
    let source = fixture("source.f32.gguf");
    for ty in QUANTIZE_TYPES {
        let want = fixture(&format!("{}.gguf", ty.name()));
        for t in &source.header.tensors {
            let values = dequantize_tensor(t, &source.read_tensor(t).unwrap()).unwrap();
            let got = quantize(ty, &values).unwrap();
            let expected = want
                .read_tensor(want.header.tensor(&t.name).unwrap())
                .unwrap();
            assert_eq!(got.len(), expected.len(), "{ty} {}: length", t.name);
            if let Some(i) = got.iter().zip(&expected).position(|(a, b)| a != b) {
                let block = i / ty.type_size() as usize;
                panic!(
                    "{ty} {}: byte {i} (block {block}) is {:#04x}, llama.cpp wrote {:#04x}",
                    t.name, got[i], expected[i]
                );
            }
        }
    }
}

#[test]
fn edge_blocks_quantize_like_the_reference_rules() {
    // All zeros: scale 0 and every quant at its zero point.
    let zeros = [0f32; 32];
    assert_eq!(quantize(GgmlType::Q8_0, &zeros).unwrap(), vec![0u8; 34]);
    let q4_0 = quantize(GgmlType::Q4_0, &zeros).unwrap();
    assert_eq!(&q4_0[2..], &[0x88u8; 16][..], "q = trunc(0 + 8.5) = 8");
    // The largest magnitude maps to -8 in Q4_0 (d = max / -8) and to +-127 in Q8_0.
    let mut ramp: Vec<f32> = (0..32).map(|i| i as f32 - 16.0).collect();
    ramp[5] = -40.0;
    let q8 = quantize(GgmlType::Q8_0, &ramp).unwrap();
    assert_eq!(q8[2 + 5] as i8, -127);
    let q4 = quantize(GgmlType::Q4_0, &ramp).unwrap();
    assert_eq!(q4[2 + 5] & 0x0F, 0, "the extreme value is -8 (stored 0)");
    assert!(quantize(GgmlType::Q8_0, &[1.0; 31]).is_err());
    assert!(quantize(GgmlType::Q4_K, &zeros).is_err());
}

#[test]
fn a_requantized_file_keeps_its_metadata_and_vectors() {
    let Some(path) = common::tiny_model("tiny-llama-d256-smollm2vocab.Q4_K_M").map(|m| m.gguf)
    else {
        return;
    };
    let input = GgufFile::open(&path).unwrap();
    let dir = std::env::temp_dir().join(format!("llama-wgpu-quantize-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("q8_0.gguf");
    let report = quantize_file(&input, &out, GgmlType::Q8_0).unwrap();
    let output = GgufFile::open(&out).unwrap();
    assert_eq!(report.bytes_out, output.file_size);
    assert_eq!(output.header.tensors.len(), input.header.tensors.len());
    assert_eq!(
        output.header.metadata.get_u64("general.file_type"),
        Some(7),
        "LLAMA_FTYPE_MOSTLY_Q8_0"
    );
    for (key, value) in input.header.metadata.iter() {
        if key != "general.file_type" && key != "general.quantization_version" {
            assert_eq!(output.header.metadata.get(key), Some(value), "{key}");
        }
    }
    for (a, b) in input.header.tensors.iter().zip(&output.header.tensors) {
        assert_eq!((&a.name, &a.dims), (&b.name, &b.dims));
        let before = dequantize_tensor(a, &input.read_tensor(a).unwrap()).unwrap();
        let after = dequantize_tensor(b, &output.read_tensor(b).unwrap()).unwrap();
        if a.dims.len() == 1 {
            assert_eq!(b.ty, a.ty, "{}: vectors keep their type", a.name);
            assert_eq!(before, after);
            continue;
        }
        assert_eq!(b.ty, GgmlType::Q8_0, "{}", a.name);
        // Q8_0 rounds each value to the nearest multiple of d = max|x| / 127 of its block
        // (d itself rounded to f16: a relative 2^-11 more on the largest values).
        for (block, (x, y)) in before.chunks(32).zip(after.chunks(32)).enumerate() {
            let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
            let bound = amax / 127.0 * 0.5 + amax * 2f32.powi(-10);
            for (v, w) in x.iter().zip(y) {
                assert!(
                    (v - w).abs() <= bound,
                    "{} block {block}: {v} -> {w}",
                    a.name
                );
            }
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

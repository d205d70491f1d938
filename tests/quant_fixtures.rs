//! Dequantization against llama.cpp's own output: every supported type must reproduce the
//! fixture values bit for bit (see tests/fixtures/quant, written by llama.cpp; LICENSE.llama.cpp).

use std::path::{Path, PathBuf};

use llama_wgpu::gguf::GgufFile;
use llama_wgpu::quant::{dequantize_tensor, GgmlType};

const SUPPORTED: &[&str] = &[
    "F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K",
    "Q6_K", "IQ4_NL", "IQ4_XS",
];
const UNSUPPORTED: &[&str] = &["IQ2_XXS", "TQ1_0", "MXFP4"];
const TENSORS: &[(&str, &str, [u64; 2])] = &[
    ("tensor_a.weight", "tensor_a", [256, 8]),
    ("tensor_b.weight", "tensor_b", [512, 3]),
];

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/quant")
        .join(name)
}

fn manifest() -> serde_json::Value {
    let text = std::fs::read_to_string(fixture("manifest.json")).expect("reading manifest.json");
    serde_json::from_str(&text).expect("parsing manifest.json")
}

/// A NumPy v1 `.npy` file of little-endian f32 (`<f4`, C order), as its flat values.
fn read_npy_f32(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    assert_eq!(
        &bytes[..6],
        b"\x93NUMPY",
        "{}: not an .npy file",
        path.display()
    );
    assert_eq!(
        bytes[6],
        1,
        "{}: only .npy version 1 is read",
        path.display()
    );
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).expect("npy header is ASCII");
    assert!(
        header.contains("'descr': '<f4'"),
        "{}: {header}",
        path.display()
    );
    assert!(
        header.contains("'fortran_order': False"),
        "{}: {header}",
        path.display()
    );
    let data = &bytes[10 + header_len..];
    assert_eq!(data.len() % 4, 0, "{}: ragged data", path.display());
    data.chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

#[test]
fn supported_types_match_llama_cpp_bit_for_bit() {
    for &ty_name in SUPPORTED {
        let file = GgufFile::open(fixture(&format!("{ty_name}.gguf")))
            .unwrap_or_else(|e| panic!("{ty_name}.gguf: {e}"));
        for &(tensor, short, _) in TENSORS {
            let info = file.header.tensor(tensor).expect("tensor present");
            assert_eq!(info.ty.name(), ty_name);
            let bytes = file.read_tensor(info).unwrap();
            let got = dequantize_tensor(info, &bytes).unwrap_or_else(|e| panic!("{ty_name}: {e}"));
            let want = read_npy_f32(&fixture(&format!("{ty_name}.{short}.f32.npy")));
            assert_eq!(got.len(), want.len(), "{ty_name} {tensor}: length");
            if let Some(i) = (0..got.len()).find(|&i| got[i].to_bits() != want[i].to_bits()) {
                panic!(
                    "{ty_name} {tensor}: first mismatch at element {i} (row {}, column {}): \
                     got {:e} ({:#010x}), want {:e} ({:#010x})",
                    i as u64 / info.dims[0],
                    i as u64 % info.dims[0],
                    got[i],
                    got[i].to_bits(),
                    want[i],
                    want[i].to_bits()
                );
            }
        }
    }
}

#[test]
fn the_supported_list_is_the_cpu_table() {
    let names: Vec<&str> = llama_wgpu::quant::CPU_TYPES
        .iter()
        .map(|t| t.name())
        .collect();
    assert_eq!(names, SUPPORTED);
}

#[test]
fn tensor_table_matches_manifest() {
    let manifest = manifest();
    for &ty_name in SUPPORTED.iter().chain(UNSUPPORTED) {
        let file = GgufFile::open(fixture(&format!("{ty_name}.gguf")))
            .unwrap_or_else(|e| panic!("{ty_name}.gguf: {e}"));
        let entry = &manifest["types"][ty_name];
        let ty = GgmlType::from_id(entry["ggml_type_id"].as_u64().unwrap() as u32).unwrap();
        assert_eq!(ty.name(), ty_name);
        assert_eq!(
            ty.block_size(),
            entry["block_size"].as_u64().unwrap(),
            "{ty_name}"
        );
        assert_eq!(
            ty.type_size(),
            entry["type_size"].as_u64().unwrap(),
            "{ty_name}"
        );
        for &(tensor, _, dims) in TENSORS {
            let info = file.header.tensor(tensor).expect("tensor present");
            assert_eq!(info.ty, ty, "{ty_name} {tensor}");
            assert_eq!(info.dims, dims, "{ty_name} {tensor}");
            let want = entry["tensors"][tensor]["n_bytes"].as_u64().unwrap();
            assert_eq!(info.n_bytes, want, "{ty_name} {tensor}: n_bytes");
            let offset = entry["tensors"][tensor]["data_offset_in_file"]
                .as_u64()
                .unwrap();
            assert_eq!(
                file.header.data_offset + info.offset,
                offset,
                "{ty_name} {tensor}"
            );
        }
    }
}

#[test]
fn unsupported_types_are_named_errors() {
    for &ty_name in UNSUPPORTED {
        let file = GgufFile::open(fixture(&format!("{ty_name}.gguf")))
            .unwrap_or_else(|e| panic!("{ty_name}.gguf: {e}"));
        let info = file
            .header
            .tensor("tensor_a.weight")
            .expect("tensor present");
        let bytes = file.read_tensor(info).unwrap();
        let err = dequantize_tensor(info, &bytes).unwrap_err();
        assert_eq!(err.code(), "UNSUPPORTED_TENSOR_TYPE", "{ty_name}: {err}");
        let message = err.to_string();
        assert!(message.contains("tensor_a.weight"), "{message}");
        assert!(message.contains(ty_name), "{message}");
    }
}

//! Inside real headless Chromium (WebGPU on SwiftShader), through wasm-bindgen-test: the matvec
//! kernels of every weight type and both variants against the CPU, and the streaming loader
//! (GGUF bytes pushed in odd chunks, straight into GPU buffers) against the CPU reference
//! decoder, the CPU engine's SIMD128 kernels and decoder in wasm, plus the JS-facing
//! `ModelLoader`'s errors and codes. Run by `./build.sh test`
//! (`cargo test --target wasm32-unknown-unknown --test web`, runner and flags in build.sh and
//! webdriver.json).
//!
//! Tolerances are the native tests' (tests/gpu_matvec.rs argues the matvec bound; the whole
//! model is argued at `LOGIT_TOLERANCE`): the browser runs the same WGSL through another
//! compiler (Tint, SwiftShader), and f32 arithmetic in any order stays within them.
#![cfg(target_arch = "wasm32")]

mod common;

use common::quant_data::{Rng, Tensor};
use llama_wgpu::config::Config;
use llama_wgpu::cpu::{self, CpuModel, Q8Activations};
use llama_wgpu::gguf::{Event, Header, StreamReader, Value};
use llama_wgpu::gguf_writer::GgufWriter;
use llama_wgpu::gpu::kernel::{read_f32, storage_buffer, submit_ops, whole};
use llama_wgpu::gpu::kernels::matvec::{MatVec, MatVecVariant};
use llama_wgpu::gpu::weights::{GpuWeight, GPU_TYPES};
use llama_wgpu::gpu::{GpuContext, GpuOptions};
use llama_wgpu::model::{GpuModel, WeightLoader};
use llama_wgpu::quant::{GgmlType, CPU_TYPES};
use llama_wgpu::reference::ReferenceModel;
use llama_wgpu::sampler::{Sampler, SamplingParams};
use llama_wgpu::web::ModelLoader;
use wasm_bindgen::JsValue;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

const U: f64 = 1.0 / (1u64 << 24) as f64;

async fn gpu() -> GpuContext {
    GpuContext::new(&GpuOptions::default()).await.unwrap()
}

fn f32_buffer(ctx: &GpuContext, values: &[f32]) -> wgpu::Buffer {
    let buffer = storage_buffer(ctx, "f32", values.len() as u64 * 4);
    ctx.queue
        .write_buffer(&buffer, 0, bytemuck::cast_slice(values));
    buffer
}

/// y = W x on the GPU for `t`, checked row by row against the f64 dot of the CPU's values with
/// the bound of tests/gpu_matvec.rs: (cols + 4) u sum|w x|.
async fn check_matvec(ctx: &GpuContext, matvec: &MatVec, t: &Tensor, seed: u64) {
    let (rows, cols) = t.rows_cols();
    let w = GpuWeight::upload(ctx, &t.info, &t.bytes).unwrap();
    let x = Rng(seed).vec(cols);
    let (xb, yb) = (f32_buffer(ctx, &x), f32_buffer(ctx, &vec![f32::NAN; rows]));
    let ops = matvec.op(ctx, &w, whole(&xb), &yb, 0, false).unwrap();
    submit_ops(ctx, &ops.iter().collect::<Vec<_>>());
    let got = read_f32(ctx, &yb, 0, rows).await.unwrap();
    ctx.check().unwrap();
    for (i, (dot, abs)) in t.dot_rows(&x).into_iter().enumerate() {
        let tol = (cols as f64 + 4.0) * U * abs;
        let err = (got[i] as f64 - dot).abs();
        assert!(
            err <= tol,
            "{:?} {} row {i}: GPU {} CPU {dot} (error {err:e}, tolerance {tol:e})",
            matvec.variant(),
            t.info.name,
            got[i]
        );
    }
}

#[wasm_bindgen_test]
async fn matvec_of_every_type_and_variant_matches_the_cpu() {
    let ctx = gpu().await;
    let mut rng = Rng(7);
    // Every variant this browser's adapter runs (the subgroup one where it offers subgroups).
    for variant in MatVecVariant::available(&ctx) {
        let matvec = MatVec::with_variant(&ctx, variant).await.unwrap();
        for ty in GPU_TYPES {
            let block_cols = ty.block_size().max(32);
            // Rows not a multiple of any workgroup size; rows of one and of several blocks.
            for (rows, cols) in [(300, 2 * block_cols), (7, block_cols)] {
                let t = Tensor::random(ty, rows, cols, &mut rng);
                check_matvec(&ctx, &matvec, &t, rows ^ cols).await;
            }
        }
    }
}

/// llama.cpp's own quantized bytes (tests/fixtures/quant, bit-exact with ggml's dequantizer).
#[wasm_bindgen_test]
async fn matvec_on_llama_cpp_blocks_matches_the_cpu() {
    let ctx = gpu().await;
    let matvec = MatVec::new(&ctx).await.unwrap();
    // One fixture per GPU type (the list is checked against GPU_TYPES below).
    let fixtures: [(GgmlType, &[u8]); 15] = [
        (GgmlType::F32, include_bytes!("fixtures/quant/F32.gguf")),
        (GgmlType::F16, include_bytes!("fixtures/quant/F16.gguf")),
        (GgmlType::BF16, include_bytes!("fixtures/quant/BF16.gguf")),
        (GgmlType::Q4_0, include_bytes!("fixtures/quant/Q4_0.gguf")),
        (GgmlType::Q4_1, include_bytes!("fixtures/quant/Q4_1.gguf")),
        (GgmlType::Q5_0, include_bytes!("fixtures/quant/Q5_0.gguf")),
        (GgmlType::Q5_1, include_bytes!("fixtures/quant/Q5_1.gguf")),
        (GgmlType::Q8_0, include_bytes!("fixtures/quant/Q8_0.gguf")),
        (GgmlType::Q2_K, include_bytes!("fixtures/quant/Q2_K.gguf")),
        (GgmlType::Q3_K, include_bytes!("fixtures/quant/Q3_K.gguf")),
        (GgmlType::Q4_K, include_bytes!("fixtures/quant/Q4_K.gguf")),
        (GgmlType::Q5_K, include_bytes!("fixtures/quant/Q5_K.gguf")),
        (GgmlType::Q6_K, include_bytes!("fixtures/quant/Q6_K.gguf")),
        (
            GgmlType::IQ4_NL,
            include_bytes!("fixtures/quant/IQ4_NL.gguf"),
        ),
        (
            GgmlType::IQ4_XS,
            include_bytes!("fixtures/quant/IQ4_XS.gguf"),
        ),
    ];
    assert_eq!(fixtures.map(|f| f.0), GPU_TYPES);
    for (ty, bytes) in fixtures {
        let header = Header::parse(bytes, Some(bytes.len() as u64))
            .unwrap()
            .unwrap();
        for info in &header.tensors {
            assert_eq!(info.ty, ty);
            let start = (header.data_offset + info.offset) as usize;
            let data = bytes[start..start + info.n_bytes as usize].to_vec();
            check_matvec(&ctx, &matvec, &Tensor::new(info.clone(), data), 11).await;
        }
    }
}

/// A two-block llama whose matrices use most 32-value block types and F32, F16, BF16 (the
/// super-block types need rows of 256 and are covered above). Block 0 mixes types in its
/// projections (one weight each); block 1's q/k/v and gate/up share one (stacked weights).
fn small_llama() -> Vec<u8> {
    let (e, kv, ff, vocab) = (64u64, 32u64, 128u64, 96u64);
    let mut w = GgufWriter::new();
    w.metadata("general.architecture", Value::String("llama".into()))
        .metadata("llama.embedding_length", Value::U32(e as u32))
        .metadata("llama.block_count", Value::U32(2))
        .metadata("llama.attention.head_count", Value::U32(4))
        .metadata("llama.attention.head_count_kv", Value::U32(2))
        .metadata("llama.feed_forward_length", Value::U32(ff as u32))
        .metadata("llama.context_length", Value::U32(64))
        .metadata("llama.rope.freq_base", Value::F32(10000.0))
        .metadata("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5));
    let mut rng = Rng(3);
    let mut matrix = |w: &mut GgufWriter, name: &str, ty, rows, cols| {
        let t = Tensor::random(ty, rows, cols, &mut rng);
        w.tensor(name, &[cols, rows], ty, t.bytes);
    };
    let norm = |w: &mut GgufWriter, name: &str| {
        let ones: Vec<u8> = (0..e)
            .flat_map(|i| (0.9 + 0.01 * i as f32).to_le_bytes())
            .collect();
        w.tensor(name, &[e], GgmlType::F32, ones);
    };
    matrix(&mut w, "token_embd.weight", GgmlType::Q8_0, vocab, e);
    norm(&mut w, "output_norm.weight");
    matrix(&mut w, "output.weight", GgmlType::Q4_0, vocab, e);
    for l in 0..2 {
        let name = |n: &str| format!("blk.{l}.{n}.weight");
        norm(&mut w, &name("attn_norm"));
        let (q, k, v) = match l {
            0 => (GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::IQ4_NL),
            _ => (GgmlType::Q4_0, GgmlType::Q4_0, GgmlType::Q4_0),
        };
        matrix(&mut w, &name("attn_q"), q, e, e);
        matrix(&mut w, &name("attn_k"), k, kv, e);
        matrix(&mut w, &name("attn_v"), v, kv, e);
        let output = [GgmlType::BF16, GgmlType::F16][l];
        matrix(&mut w, &name("attn_output"), output, e, e);
        norm(&mut w, &name("ffn_norm"));
        let (gate, up) = match l {
            0 => (GgmlType::Q4_1, GgmlType::Q8_0),
            _ => (GgmlType::Q8_0, GgmlType::Q8_0),
        };
        matrix(&mut w, &name("ffn_gate"), gate, ff, e);
        matrix(&mut w, &name("ffn_up"), up, ff, e);
        matrix(&mut w, &name("ffn_down"), GgmlType::F32, e, ff);
    }
    w.to_bytes()
}

/// One event of the streaming reader: the header sets up the weight loader, tensor pieces go
/// straight to GPU buffers (what `ModelLoader` does, minus the tokenizer).
fn into_gpu(
    ctx: &GpuContext,
    state: &mut Option<(Config, WeightLoader)>,
    event: Event<'_>,
) -> llama_wgpu::Result<()> {
    match event {
        Event::Header(h) => {
            let config = Config::from_header(h)?;
            let loader = WeightLoader::new(ctx, h, &config)?;
            *state = Some((config, loader));
        }
        Event::TensorData {
            tensor,
            offset,
            bytes,
        } => state.as_mut().unwrap().1.write(tensor, offset, bytes)?,
        Event::TensorDone { .. } => {}
    }
    Ok(())
}

/// Push `bytes` through the streaming reader in `chunk`-byte pieces into GPU weights.
async fn stream_into_gpu(ctx: &GpuContext, bytes: &[u8], chunk: usize) -> GpuModel {
    let mut reader = StreamReader::new(None);
    let mut state: Option<(Config, WeightLoader)> = None;
    let mut sink = |event: Event<'_>| into_gpu(ctx, &mut state, event);
    for piece in bytes.chunks(chunk) {
        reader.push(piece, &mut sink).unwrap();
    }
    reader.finish(&mut sink).unwrap();
    let (config, loader) = state.unwrap();
    let weights = loader.finish(&config).unwrap();
    GpuModel::build(ctx.clone(), config, weights, 32)
        .await
        .unwrap()
}

/// The CPU reference's logits after the last of `prompt`, on a GGUF held in memory.
fn reference_logits(bytes: &[u8], prompt: &[u32]) -> Vec<f32> {
    let header = Header::parse(bytes, Some(bytes.len() as u64))
        .unwrap()
        .unwrap();
    let mut reference = ReferenceModel::from_tensors(&header, 32, |info| {
        let start = (header.data_offset + info.offset) as usize;
        Ok(bytes[start..start + info.n_bytes as usize].to_vec())
    })
    .unwrap();
    let mut want = Vec::new();
    for &t in prompt {
        want = reference.forward(t).unwrap().to_vec();
    }
    want
}

fn largest_difference(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len());
    got.iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max)
}

/// Logits of a streamed model against the CPU reference on the same bytes. Both compute in
/// f32 from the same dequantized weights; they differ only in summation order and in the
/// GPU's exp/rsqrt, so logits of size ~1 agree to ~1e-5; 2e-4 leaves room for two blocks of
/// such differences without admitting a wrong weight (which moves logits by ~0.1).
const LOGIT_TOLERANCE: f32 = 2e-4;

#[wasm_bindgen_test]
async fn a_model_streamed_in_odd_chunks_computes_the_reference_logits() {
    let ctx = gpu().await;
    let bytes = small_llama();
    let prompt = [1u32, 50, 7, 95];
    let want = reference_logits(&bytes, &prompt);
    for chunk in [7, 4099, bytes.len()] {
        let mut model = stream_into_gpu(&ctx, &bytes, chunk).await;
        let worst = largest_difference(&model.forward_logits(&prompt).await.unwrap(), &want);
        assert!(
            worst <= LOGIT_TOLERANCE,
            "chunks of {chunk} bytes: logits differ from the CPU reference by {worst} (largest |logit| {})",
            want.iter().fold(0f32, |m, v| m.max(v.abs()))
        );
    }
}

/// Every architecture (qwen2 biases, qwen3 q/k norms, gemma3 post-norms, GELU and sliding
/// window, phi3 fused tensors and LongRoPE) streamed into WebGPU against the CPU reference.
#[wasm_bindgen_test]
async fn every_architecture_streamed_computes_the_reference_logits() {
    let ctx = gpu().await;
    let prompt = [1u32, 50, 7, 95, 3, 60];
    for arch in llama_wgpu::arch::ARCHITECTURES {
        let bytes = common::small_models::small_model(arch, 9);
        let want = reference_logits(&bytes, &prompt);
        let mut model = stream_into_gpu(&ctx, &bytes, 4099).await;
        let worst = largest_difference(&model.forward_logits(&prompt).await.unwrap(), &want);
        assert!(
            worst <= LOGIT_TOLERANCE,
            "{}: logits differ from the CPU reference by {worst}",
            arch.name
        );
    }
}

/// The CPU engine's kernels in the browser are the SIMD128 ones (`.cargo/config.toml` builds
/// every wasm with `+simd128`), and each equals the scalar kernel up to f32 reassociation:
/// 2e-5 of Σ|w x|, as `tests/cpu_kernels.rs` argues natively.
#[wasm_bindgen_test]
fn cpu_kernels_run_simd128_and_equal_the_scalar_ones() {
    assert_eq!(cpu::simd_path(GgmlType::Q4_0), Some("simd128"));
    let mut rng = Rng(5);
    let mut simd_types = 0;
    for ty in CPU_TYPES {
        if cpu::simd_path(ty).is_none() {
            continue;
        }
        simd_types += 1;
        for units in [1, 3] {
            // Float rows may have any length: 5 values past whole SIMD steps leave a tail.
            let cols = 256 * units + if ty.block_size() == 1 { 5 } else { 0 };
            let t = Tensor::random(ty, 4, cols, &mut rng);
            let x = rng.vec(cols as usize);
            let act = Q8Activations::quantize(&x).unwrap();
            let row_bytes = t.bytes.len() / 4;
            for (row, (_, magnitude)) in t.bytes.chunks_exact(row_bytes).zip(t.dot_rows(&x)) {
                let simd = cpu::dot_row(ty, row, &act).unwrap();
                let scalar = cpu::dot_row_scalar(ty, row, &act).unwrap();
                let diff = (simd as f64 - scalar as f64).abs();
                assert!(
                    diff <= 2e-5 * magnitude,
                    "{ty}: simd {simd}, scalar {scalar}"
                );
            }
        }
    }
    assert!(simd_types >= 13, "{simd_types} types have SIMD128 kernels");
}

/// The CPU engine in wasm against the CPU reference: every architecture's small model with F16
/// matrices, where the engine does the reference's f32 arithmetic (1e-3 covers the summation
/// order on logits of ~50, as in `tests/cpu_model.rs`), and the mixed-type original, whose
/// batched prompt must give the token-by-token logits bit for bit.
#[wasm_bindgen_test]
fn cpu_engine_computes_the_reference_logits() {
    let prompt = [1u32, 50, 7, 95, 3, 60];
    let engine = |bytes: &[u8]| {
        let header = Header::parse(bytes, Some(bytes.len() as u64))
            .unwrap()
            .unwrap();
        CpuModel::from_tensors(&header, 32, |info| {
            let start = (header.data_offset + info.offset) as usize;
            Ok(bytes[start..start + info.n_bytes as usize].to_vec())
        })
        .unwrap()
    };
    for arch in llama_wgpu::arch::ARCHITECTURES {
        let mixed = common::small_models::small_model(arch, 9);
        let f16 = common::small_models::with_f16_matrices(&mixed);
        let want = reference_logits(&f16, &prompt);
        let got = engine(&f16).forward(&prompt).unwrap().to_vec();
        let worst = largest_difference(&got, &want);
        assert!(worst <= 1e-3, "{}: {worst} from the reference", arch.name);

        let batched = engine(&mixed).forward(&prompt).unwrap().to_vec();
        let mut one = engine(&mixed);
        let mut last = Vec::new();
        for &t in &prompt {
            last = one.forward(&[t]).unwrap().to_vec();
        }
        assert!(batched == last, "{}: batched differs", arch.name);
    }
}

/// Pipelined decode (the next step submitted before this one's id is mapped, as on real GPUs)
/// through the browser's WebGPU and async mapping: the same ids as step by step, for seeded
/// sampling with a repetition penalty.
#[wasm_bindgen_test]
async fn pipelined_decoding_gives_the_step_by_step_ids() {
    let ctx = gpu().await;
    let bytes = small_llama();
    let mut runs = Vec::new();
    for pipelined in [false, true] {
        let mut model = stream_into_gpu(&ctx, &bytes, bytes.len()).await;
        model.set_pipelined(pipelined);
        let mut sampler = Sampler::new(SamplingParams {
            temperature: 1.0,
            top_k: 20,
            repeat_penalty: 1.2,
            seed: 5,
            ..SamplingParams::greedy()
        });
        let mut history = vec![1u32, 50, 7];
        let prompt = history.clone();
        let mut next = model
            .next_token(&prompt, &mut sampler, &history)
            .await
            .unwrap();
        let mut ids = vec![next];
        for _ in 0..12 {
            history.push(next);
            next = model
                .next_token(&[next], &mut sampler, &history)
                .await
                .unwrap();
            ids.push(next);
        }
        runs.push(ids);
    }
    assert_eq!(runs[0], runs[1]);
}

fn code_of(error: &JsValue) -> String {
    js_sys::Reflect::get(error, &"code".into())
        .ok()
        .and_then(|c| c.as_string())
        .unwrap_or_default()
}

fn loader_options(file_size: usize) -> JsValue {
    let options = js_sys::Object::new();
    js_sys::Reflect::set(&options, &"fileSize".into(), &(file_size as f64).into()).unwrap();
    options.into()
}

#[wasm_bindgen_test]
async fn bad_bytes_are_errors_with_codes_and_a_later_load_works() {
    let not_gguf = b"<!doctype html><html>not a model</html>".to_vec();
    let mut loader = ModelLoader::create(loader_options(not_gguf.len()))
        .await
        .unwrap();
    let e = loader.push(&not_gguf).unwrap_err();
    assert_eq!(code_of(&e), "GGUF_INVALID");
    // The loader stays failed: later pushes repeat the error instead of parsing on.
    assert_eq!(code_of(&loader.push(b"more").unwrap_err()), "GGUF_INVALID");

    // A header claiming 2^40 tensors in a 24-byte file.
    let mut huge = b"GGUF".to_vec();
    huge.extend(3u32.to_le_bytes());
    huge.extend((1u64 << 40).to_le_bytes());
    huge.extend(0u64.to_le_bytes());
    let mut loader = ModelLoader::create(loader_options(huge.len()))
        .await
        .unwrap();
    let e = match loader.push(&huge) {
        Err(e) => e,
        Ok(()) => loader.finish().await.err().unwrap(),
    };
    assert_eq!(code_of(&e), "GGUF_INVALID");

    // A file cut in the middle of its tensors, through the streaming path under ModelLoader
    // (this model carries no tokenizer, which ModelLoader would reject before any tensor).
    let bytes = small_llama();
    let ctx = gpu().await;
    let mut reader = StreamReader::new(None);
    let mut state = None;
    let mut sink = |event: Event<'_>| into_gpu(&ctx, &mut state, event);
    reader
        .push(&bytes[..bytes.len() * 2 / 3], &mut sink)
        .unwrap();
    let e = reader
        .finish(&mut sink)
        .expect_err("a cut file does not finish");
    assert_eq!(
        e.code(),
        "GGUF_INVALID",
        "a file cut inside its tensor data: {e}"
    );

    // The page is unharmed: a whole model still streams in and runs.
    let mut model = stream_into_gpu(&ctx, &bytes, 1 << 20).await;
    model.forward_logits(&[1, 2]).await.unwrap();
}

/// Resolves in a later task of the page's event loop (a `setTimeout(0)`), so the page stays
/// responsive during a long synchronous-looking stream.
async fn next_task() {
    use wasm_bindgen::JsCast;
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        let set_timeout: js_sys::Function =
            js_sys::Reflect::get(&js_sys::global(), &"setTimeout".into())
                .unwrap()
                .unchecked_into();
        set_timeout
            .call2(&JsValue::UNDEFINED, &resolve, &0.into())
            .unwrap();
    });
    wasm_bindgen_futures::JsFuture::from(promise).await.unwrap();
}

/// Bytes of the page's wasm memory (it only ever grows).
fn wasm_memory_bytes() -> f64 {
    use wasm_bindgen::JsCast;
    let memory: js_sys::WebAssembly::Memory = wasm_bindgen::memory().unchecked_into();
    memory
        .buffer()
        .unchecked_into::<js_sys::ArrayBuffer>()
        .byte_length() as f64
}

/// The header of a Llama-7B-shaped model of `blocks` blocks in Q8_0 (about 0.2 GB a block)
/// and the size of the whole file.
fn llama_7b_shaped(blocks: u32) -> (Vec<u8>, u64) {
    let (e, kv, ff, vocab) = (4096u64, 1024u64, 11008u64, 32000u64);
    let mut w = GgufWriter::new();
    w.metadata("general.architecture", Value::String("llama".into()))
        .metadata("llama.embedding_length", Value::U32(e as u32))
        .metadata("llama.block_count", Value::U32(blocks))
        .metadata("llama.attention.head_count", Value::U32(32))
        .metadata("llama.attention.head_count_kv", Value::U32(8))
        .metadata("llama.feed_forward_length", Value::U32(ff as u32))
        .metadata("llama.context_length", Value::U32(4096))
        .metadata("llama.rope.freq_base", Value::F32(10000.0))
        .metadata("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5));
    let q8 = |rows: u64, cols: u64| GgmlType::Q8_0.bytes_for(rows * cols).unwrap();
    let matrix = |w: &mut GgufWriter, name: &str, rows: u64, cols: u64| {
        w.tensor_of_size(name, &[cols, rows], GgmlType::Q8_0, q8(rows, cols));
    };
    matrix(&mut w, "token_embd.weight", vocab, e);
    matrix(&mut w, "output.weight", vocab, e);
    w.tensor_of_size("output_norm.weight", &[e], GgmlType::F32, 4 * e);
    for l in 0..blocks {
        let name = |n: &str| format!("blk.{l}.{n}.weight");
        for norm in ["attn_norm", "ffn_norm"] {
            w.tensor_of_size(&name(norm), &[e], GgmlType::F32, 4 * e);
        }
        matrix(&mut w, &name("attn_q"), e, e);
        matrix(&mut w, &name("attn_k"), kv, e);
        matrix(&mut w, &name("attn_v"), kv, e);
        matrix(&mut w, &name("attn_output"), e, e);
        matrix(&mut w, &name("ffn_gate"), ff, e);
        matrix(&mut w, &name("ffn_up"), ff, e);
        matrix(&mut w, &name("ffn_down"), e, ff);
    }
    let header = w.header_bytes();
    let layout = w.data_layout();
    let total = header.len() as u64 + layout.iter().map(|(n, pad)| n + pad).sum::<u64>();
    (header, total)
}

/// The CPU engine keeps the weights in wasm memory: a model that cannot fit its 4 GiB is
/// refused from the header, before any weight arrives, saying how much it needs.
#[wasm_bindgen_test]
async fn a_model_too_large_for_wasm_memory_is_refused_from_its_header() {
    let (header, total) = llama_7b_shaped(24);
    assert!(total > 4 << 30, "the synthetic model is {total} bytes");
    // (usize is 32 bits here: the size goes over as the JS number it is.)
    let options = js_sys::Object::new();
    js_sys::Reflect::set(&options, &"fileSize".into(), &(total as f64).into()).unwrap();
    js_sys::Reflect::set(&options, &"device".into(), &"cpu".into()).unwrap();
    let mut loader = ModelLoader::create(options.into()).await.unwrap();
    let e = loader.push(&header).unwrap_err();
    assert_eq!(code_of(&e), "MODEL_TOO_LARGE");
    let message = js_sys::Reflect::get(&e, &"message".into())
        .unwrap()
        .as_string()
        .unwrap();
    assert!(message.contains("MiB"), "{message}");
}

/// A Llama-7B-shaped GGUF of 11 blocks in Q8_0: 2.35 GB, more than a wasm32 module could
/// ever hold (its memory tops out at 4 GiB and allocations in practice fail well before).
/// Its tensor data (all zero blocks: scale 0, a valid Q8_0 value) is generated chunk by chunk
/// and pushed through the streaming reader into GPU buffers, as a fetch body would be; the
/// page's wasm memory must stay bounded by the chunk, not the model.
#[wasm_bindgen_test]
async fn a_model_over_2_gib_streams_to_the_gpu_in_bounded_wasm_memory() {
    let (header, total) = llama_7b_shaped(11);
    assert!(total > 2 << 30, "the synthetic model is {total} bytes");

    let ctx = gpu().await;
    let mut reader = StreamReader::new(Some(total));
    let mut state: Option<(Config, WeightLoader)> = None;
    let mut sink = |event: Event<'_>| into_gpu(&ctx, &mut state, event);
    reader.push(&header, &mut sink).unwrap();
    // Zero bytes are a valid encoding of every tensor here (norms of 0.0, Q8_0 blocks with
    // scale 0), so one reusable chunk serves the whole stream.
    const CHUNK: u64 = 8 << 20;
    let zeros = vec![0u8; CHUNK as usize];
    let memory_before = wasm_memory_bytes();
    let mut left = total - header.len() as u64;
    while left > 0 {
        let n = left.min(CHUNK);
        reader.push(&zeros[..n as usize], &mut sink).unwrap();
        left -= n;
        // A fetch body arrives over many tasks; pushing 2.35 GB in one would keep the page
        // from answering the test driver (it gives up after 300 s on a slow machine).
        next_task().await;
    }
    reader.finish(&mut sink).unwrap();
    let (config, loader) = state.unwrap();
    let weights = loader.finish(&config).unwrap();
    let model = GpuModel::build(ctx.clone(), config, weights, 16)
        .await
        .unwrap();
    ctx.check().unwrap();
    let growth = wasm_memory_bytes() - memory_before;
    console_log!(
        "streamed {total} bytes to the GPU ({} held); wasm memory {memory_before} -> {} bytes",
        model.gpu_bytes(),
        wasm_memory_bytes()
    );
    assert!(
        model.gpu_bytes() > total - (64 << 20),
        "all {total} bytes reached the GPU ({} held)",
        model.gpu_bytes()
    );
    // The chunk is already allocated; what may grow is the loader's bookkeeping, the f32 norm
    // vectors (23 x 16 KiB) and the kernels' setup: a few MiB, never the model's 2.35 GB.
    assert!(
        growth <= (32 << 20) as f64,
        "wasm memory grew by {growth} bytes while streaming {total} bytes"
    );
}

//! The memory budget (`memory_budget.rs`): the need counted from a GGUF header against what a
//! load really allocates, a context fitted to a budget, and a model refused from its header
//! before anything is allocated. GPU tests run on whatever adapter wgpu finds (lavapipe here).

mod common;

use std::path::{Path, PathBuf};

use llama_wgpu::engine::{Device, Engine, EngineOptions};
use llama_wgpu::generate::GenerateOptions;
use llama_wgpu::gguf::{Event, GgufFile, StreamReader};
use llama_wgpu::gpu::{GpuContext, GpuOptions};
use llama_wgpu::loader::{load_file, DeviceChoice, LoadOptions, Loading, Target};
use llama_wgpu::memory_budget::{cpu_need, gpu_need, MIN_CONTEXT};
use llama_wgpu::sampler::SamplingParams;
use llama_wgpu::{config::Config, Error};

/// The estimate is an upper bound (a budget it admits must hold the model) and exceeds what is
/// allocated by at most this: the kernel-parameter uniforms it over-counts on purpose (4 KiB a
/// layer and 128 bytes a weight part, `memory_budget.rs`) and the logprobs buffers only a
/// request asking for them adds (~ 3 x 1 KiB).
const GPU_SLACK: u64 = 512 << 10;

/// Models of every architecture and several weight types: the default model (and its Q8_0
/// copy), the cached models of setup (Q4_K_M Gemma 3 and Qwen 2.5), and the tiny fixtures when
/// present.
fn models() -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = Vec::new();
    found.extend(common::default_model());
    // The Q8_0 copy `./build.sh bench` makes, when it has been made.
    let q8 = common::cache_dir().join("models/SmolLM2-135M-Instruct.Q8_0.gguf");
    found.extend(q8.exists().then_some(q8));
    found.extend(common::cached_model("gemma-3-270m.Q4_K_M.gguf"));
    found.extend(common::cached_model(
        "Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf",
    ));
    for rel in [
        "tiny-models/tiny-llama-d64-smollm2vocab.F32.gguf",
        "tiny-models/tiny-llama-d64-smollm2vocab.Q4_0.gguf",
        "tiny-models/tiny-llama-d256-smollm2vocab.Q6_K.gguf",
        "tiny-models-2/tiny-gemma3-d64-smollm2vocab.F32.gguf",
        "tiny-models-2/tiny-phi3-d64-smollm2vocab.F32.gguf",
        "tiny-models-2/tiny-qwen2-d64-smollm2vocab.F32.gguf",
        "tiny-models-2/tiny-qwen3-d64-smollm2vocab.F32.gguf",
        "tiny-models-2/tiny-llama-d256-spmvocab.IQ4_XS.gguf",
        "tiny-models-2/tiny-llama-d256-spmvocab.Q3_K_M.gguf",
        "tiny-models-2/tiny-llama-d256-spmvocab.Q5_0.gguf",
    ] {
        found.extend(common::shared_or_skip(rel));
    }
    found
}

fn gpu(options: GpuOptions) -> Option<GpuContext> {
    match GpuContext::new_blocking(&options) {
        Ok(ctx) => Some(ctx),
        Err(e) => {
            eprintln!("SKIPPED: no GPU adapter ({e})");
            None
        }
    }
}

fn on_gpu(ctx: &GpuContext) -> DeviceChoice {
    DeviceChoice {
        target: Target::Gpu(Box::new(ctx.clone())),
        reason: "test".into(),
    }
}

fn name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

#[test]
fn the_gpu_estimate_is_what_the_load_allocates() {
    // The adapter's own limits, and a 1 MiB binding limit that splits every large weight and
    // the KV cache into parts (more buffers, more alignment padding, more ops).
    let split = GpuOptions {
        max_binding_size: Some(1 << 20),
        ..GpuOptions::default()
    };
    for options in [GpuOptions::default(), split] {
        let Some(ctx) = gpu(options.clone()) else {
            return;
        };
        for path in models() {
            let file = GgufFile::open(&path).unwrap();
            let config = Config::from_header(&file.header).unwrap();
            let context = config.context_length.min(1024);
            let load = LoadOptions {
                context_length: Some(context),
                ..LoadOptions::default()
            };
            let need = match gpu_need(&ctx, &file.header, &config, context) {
                Ok(need) => need,
                // A model the estimate finds too large for the binding limit (Qwen 2.5's
                // 4864-wide FFN batch under 1 MiB) must be one the load cannot build either.
                Err(e) => {
                    assert_eq!(e.code(), "MODEL_TOO_LARGE", "{e}");
                    let ctx = gpu(options.clone()).unwrap();
                    let refused = load_file(&file, &on_gpu(&ctx), &load).err();
                    assert!(
                        refused.is_some(),
                        "{}: estimated too large ({e}), loaded",
                        name(&path)
                    );
                    continue;
                }
            };
            let engine = load_file(&file, &on_gpu(&ctx), &load).unwrap();
            let actual = engine.backend_stats().gpu_bytes;
            let (name, estimate) = (name(&path), need.total());
            eprintln!(
                "{name} (binding limit {}): estimate {estimate}, allocated {actual}",
                ctx.max_binding_size
            );
            assert!(estimate >= actual, "{name}: {estimate} < {actual}");
            assert!(
                estimate - actual <= GPU_SLACK,
                "{name}: {estimate} vs {actual}"
            );
        }
    }
}

/// Greedy ids after "Once upon a time" on `engine`.
fn greedy(engine: &mut Engine, n: usize) -> Vec<u32> {
    let options = GenerateOptions {
        max_tokens: n,
        sampling: SamplingParams::greedy(),
        ignore_eos: true,
        ..Default::default()
    };
    let g = engine.generate("Once upon a time", &options, &mut |_| true);
    g.unwrap().ids
}

#[test]
fn a_gpu_budget_for_a_smaller_context_fits_that_context() {
    let (Some(path), Some(ctx)) = (common::default_model(), gpu(GpuOptions::default())) else {
        return;
    };
    let file = GgufFile::open(&path).unwrap();
    let config = Config::from_header(&file.header).unwrap();
    let need = |context| gpu_need(&ctx, &file.header, &config, context).unwrap();
    // Room for 1024 positions, not for 2048: the default 4096 is fitted down to 1024.
    let budget = need(1024).total() + (need(2048).total() - need(1024).total()) / 2;
    let options = EngineOptions {
        device: Device::Gpu,
        gpu: GpuOptions {
            max_gpu_bytes: Some(budget),
            ..GpuOptions::default()
        },
        ..EngineOptions::default()
    };
    let mut fitted = Engine::load(&path, &options).unwrap();
    assert_eq!(fitted.context_length(), 1024);
    let reduced = fitted.context_reduced().expect("the reduction is reported");
    assert_eq!(reduced.requested, 4096);
    assert!(reduced.reason.contains("max_gpu_bytes"), "{reduced:?}");
    assert!(fitted.backend_stats().gpu_bytes <= budget);

    let direct = EngineOptions {
        device: Device::Gpu,
        context_length: Some(1024),
        ..EngineOptions::default()
    };
    let mut direct = Engine::load(&path, &direct).unwrap();
    assert_eq!(direct.context_reduced(), None);
    assert_eq!(greedy(&mut fitted, 12), greedy(&mut direct, 12));
}

/// Feed only `path`'s header (nothing past the tensor table) to a streaming load on `target`:
/// the result of `Loading::new`, which is where the budget is checked.
fn load_header_only(path: &Path, target: &Target, options: &LoadOptions) -> Result<(), Error> {
    let bytes = std::fs::read(path).unwrap();
    let file_size = bytes.len() as u64;
    let header_len = GgufFile::open(path).unwrap().header.data_offset as usize;
    let mut reader = StreamReader::new(Some(file_size));
    let mut loading = None;
    reader.push(&bytes[..header_len], &mut |event| {
        if let Event::Header(header) = event {
            loading = Some(Loading::new(header, target, options)?);
        }
        Ok(())
    })?;
    assert!(loading.is_some(), "the header arrived whole");
    Ok(())
}

#[test]
fn a_gpu_budget_too_small_is_refused_from_the_header_before_any_allocation() {
    let (Some(path), Some(ctx)) = (common::default_model(), gpu(GpuOptions::default())) else {
        return;
    };
    let file = GgufFile::open(&path).unwrap();
    let config = Config::from_header(&file.header).unwrap();
    let need = gpu_need(&ctx, &file.header, &config, MIN_CONTEXT).unwrap();
    let budget = need.total() - 1;
    let tight = GpuOptions {
        max_gpu_bytes: Some(budget),
        ..GpuOptions::default()
    };
    let ctx = gpu(tight).unwrap();
    let target = Target::Gpu(Box::new(ctx.clone()));
    let e = load_header_only(&path, &target, &LoadOptions::default()).unwrap_err();
    assert_eq!(e.code(), "MODEL_TOO_LARGE", "{e}");
    let text = e.to_string();
    let mib = |b: u64| b.div_ceil(1 << 20);
    assert!(
        text.contains(&format!("needs {} MiB", mib(need.total()))),
        "{text}"
    );
    assert!(text.contains(&format!("of {} MiB", mib(budget))), "{text}");
    // Refused before a single buffer was made on the device.
    assert_eq!(ctx.allocated_bytes(), 0);
}

#[test]
fn the_cpu_engine_is_budgeted_the_same_way() {
    let Some(path) = common::default_model() else {
        return;
    };
    let file = GgufFile::open(&path).unwrap();
    let config = Config::from_header(&file.header).unwrap();
    let need = |context| cpu_need(&file.header, &config, context);
    let cpu = DeviceChoice {
        target: Target::Cpu,
        reason: "test".into(),
    };

    // Estimate against what the engine holds after a batch of 64 prompt tokens (its largest).
    let load = LoadOptions {
        context_length: Some(1024),
        ..LoadOptions::default()
    };
    let mut engine = load_file(&file, &cpu, &load).unwrap();
    let prompt = "word ".repeat(80);
    let options = GenerateOptions {
        max_tokens: 1,
        ..Default::default()
    };
    engine.generate(&prompt, &options, &mut |_| true).unwrap();
    let (estimate, actual) = (need(1024).total(), engine.backend_stats().cpu_bytes);
    eprintln!("CPU engine: estimate {estimate}, held {actual}");
    // An upper bound, over by at most what `memory_bytes` does not count or the estimate
    // bounds loosely: the norm vectors, a 64-token batch's 8-bit activations and its `part`
    // buffer (unused when q/k/v and gate/up are of one type): under 4 MiB for a model this size.
    assert!(
        estimate >= actual && estimate - actual <= 4 << 20,
        "{estimate} vs {actual}"
    );

    // A limit with room for 1024 positions, not 2048.
    let limit = need(1024).total() + (need(2048).total() - need(1024).total()) / 2;
    let fitted = EngineOptions {
        device: Device::Cpu,
        max_cpu_bytes: Some(limit),
        ..EngineOptions::default()
    };
    let mut fitted = Engine::load(&path, &fitted).unwrap();
    assert_eq!(fitted.context_length(), 1024);
    let reduced = fitted.context_reduced().unwrap();
    assert!(reduced.reason.contains("CPU engine"), "{reduced:?}");
    engine.reset();
    assert_eq!(greedy(&mut fitted, 12), greedy(&mut engine, 12));

    // Too small for the smallest context: refused from the header alone.
    let tight = LoadOptions {
        max_cpu_bytes: Some(need(MIN_CONTEXT).total() - 1),
        ..LoadOptions::default()
    };
    let e = load_header_only(&path, &Target::Cpu, &tight).unwrap_err();
    assert_eq!(e.code(), "MODEL_TOO_LARGE", "{e}");
    assert!(e.to_string().contains("CPU engine"), "{e}");
}

#[test]
fn a_context_above_the_trained_one_is_reported() {
    let Some(path) = common::shared_or_skip("tiny-models/tiny-llama-d64-smollm2vocab.Q8_0.gguf")
    else {
        return;
    };
    let file = GgufFile::open(&path).unwrap();
    let trained = Config::from_header(&file.header).unwrap().context_length;
    let options = EngineOptions {
        device: Device::Cpu,
        context_length: Some(trained * 4),
        ..EngineOptions::default()
    };
    let engine = Engine::load(&path, &options).unwrap();
    assert_eq!(engine.context_length(), trained);
    let reduced = engine.context_reduced().unwrap();
    assert_eq!(reduced.requested, trained * 4);
    assert!(reduced.reason.contains("trained for"), "{reduced:?}");
}

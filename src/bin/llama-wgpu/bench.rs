//! `bench` and `bench-kernels`: load, prefill and decode figures, per-kernel profiles.

use llama_wgpu::generate::GenerateOptions;
use llama_wgpu::gguf::GgufFile;
use llama_wgpu::model::GpuModel;
use llama_wgpu::sampler::{Sampler, SamplingParams};
use llama_wgpu::{Error, Result};

use crate::args::BenchArgs;
use crate::commands::load;

pub(crate) fn bench_kernels(json: bool, quick: bool) -> Result<()> {
    let ctx = llama_wgpu::gpu::GpuContext::new_blocking(&Default::default())?;
    let t = pollster::block_on(llama_wgpu::gpu::kernel_bench::kernel_table(&ctx, quick))?;
    if json {
        println!("{}", serde_json::to_string(&t).unwrap_or_default());
        return Ok(());
    }
    println!("device: {}", t.adapter);
    println!("copy kernel: {:.2} GB/s read (the ceiling)", t.copy_gbps);
    println!(
        "{:<6} {:>12} {:>10} {:>8} {:>8}",
        "matvec", "rows x cols", "ms", "GB/s", "of copy"
    );
    for f in &t.matvec {
        println!(
            "{:<6} {:>12} {:>10.3} {:>8.2} {:>7.0}%",
            f.ty,
            format!("{}x{}", f.rows, f.cols),
            f.ms,
            f.gbps,
            100.0 * f.of_copy
        );
    }
    println!(
        "{:<6} {:>12} {:>6} {:>10} {:>8}",
        "matmul", "rows x cols", "tokens", "ms", "GFLOP/s"
    );
    for f in &t.matmul {
        println!(
            "{:<6} {:>12} {:>6} {:>10.3} {:>8.2}",
            f.ty,
            format!("{}x{}", f.rows, f.cols),
            f.tokens,
            f.ms,
            f.gflops
        );
    }
    Ok(())
}

fn spread(mut v: Vec<f64>) -> serde_json::Value {
    v.sort_by(f64::total_cmp);
    let median = match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    };
    serde_json::json!({
        "median": median,
        "min": v.first().copied().unwrap_or(0.0),
        "max": v.last().copied().unwrap_or(0.0),
    })
}

fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

pub(crate) fn bench(a: BenchArgs) -> Result<()> {
    if a.prompt_tokens == 0 || a.repeats == 0 {
        return Err(Error::InvalidArgument(
            "--prompt-tokens and --repeats must be positive".into(),
        ));
    }
    if a.profile {
        return profile(&a);
    }
    let start = std::time::Instant::now();
    let mut engine = load(&a.model)?;
    let load_s = start.elapsed().as_secs_f64();
    let load_peak_rss = peak_rss_bytes();
    if a.prompt_tokens + a.gen_tokens >= engine.context_length() {
        return Err(Error::ContextOverflow {
            tokens: a.prompt_tokens + a.gen_tokens,
            context: engine.context_length(),
        });
    }
    // A prompt of exactly N tokens: ordinary prose, repeated and cut.
    let text =
        "The quick brown fox jumps over the lazy dog while the river runs past the old mill. ";
    let unit = engine.tokenizer.encode(text, false, false)?;
    let prompt: Vec<u32> = unit.iter().copied().cycle().take(a.prompt_tokens).collect();
    let options = GenerateOptions {
        max_tokens: a.gen_tokens.max(1),
        sampling: SamplingParams::greedy(),
        stop: Vec::new(),
        ignore_eos: true,
        ..Default::default()
    };
    let (mut prefill, mut decode, mut ttft) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..a.repeats {
        engine.reset();
        let g = engine.generate_ids(&prompt, &options, &mut |_| true)?;
        prefill.push(g.stats.prefill_tokens_per_second());
        decode.push(g.stats.decode_tokens_per_second());
        ttft.push(g.stats.time_to_first_token_seconds);
    }
    let structured = structured_output(&mut engine, a.repeats)?;
    let embeddings = embeddings(&mut engine, &prompt, a.repeats)?;
    let stats = engine.backend_stats();
    let ttft = spread(ttft)["median"].clone();
    let (device, device_reason) = engine.device();
    let mut compiled = stats.compiled_kernels.clone();
    compiled.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
    let compile_s: f64 = compiled.iter().map(|k| k.seconds).sum();
    let report = serde_json::json!({
        "adapter": stats.device,
        "device": device,
        "device_reason": device_reason,
        "cpu_bytes": stats.cpu_bytes,
        "prompt_tokens": a.prompt_tokens,
        "gen_tokens": a.gen_tokens,
        "repeats": a.repeats,
        "prefill_tokens_per_s": spread(prefill),
        "decode_tokens_per_s": spread(decode),
        "load_s": load_s,
        "host_peak_rss_bytes_after_load": load_peak_rss,
        "ttft_s": ttft,
        "gpu_bytes": stats.gpu_bytes,
        "dispatches_per_token": stats.dispatches_per_token,
        "dispatches_per_token_long_context": stats.dispatches_per_token_long_context,
        "dispatches_per_layer": stats.dispatches_per_layer,
        "dispatches_per_layer_long_context": stats.dispatches_per_layer_long_context,
        "direct_attention_keys": stats.direct_attention_keys,
        "submits_per_token": stats.submits_per_token,
        "readback_bytes_per_token": stats.readback_bytes_per_token,
        "encode_us_per_token": stats.encode_us_per_token,
        "submit_us_per_token": stats.submit_us_per_token,
        "pipelines": compiled.len(),
        "compile_s": compile_s,
        "compile_s_by_kernel": compiled,
        "json_schema": structured,
        "embeddings": embeddings,
    });
    if a.json {
        println!("{report}");
        return Ok(());
    }
    let r = &report;
    let fig = |k: &str| {
        format!(
            "{:.1} tok/s (min {:.1}, max {:.1})",
            r[k]["median"].as_f64().unwrap_or(0.0),
            r[k]["min"].as_f64().unwrap_or(0.0),
            r[k]["max"].as_f64().unwrap_or(0.0)
        )
    };
    println!("device:      {}", stats.device);
    println!("load:        {load_s:.2} s");
    println!(
        "prefill:     {} over {} tokens",
        fig("prefill_tokens_per_s"),
        a.prompt_tokens
    );
    println!(
        "decode:      {} over {} tokens",
        fig("decode_tokens_per_s"),
        a.gen_tokens
    );
    println!(
        "first token: {:.3} s (median of {})",
        r["ttft_s"].as_f64().unwrap_or(0.0),
        a.repeats
    );
    println!("chosen:      {device} ({device_reason})");
    println!("gpu memory:  {:.1} MB", stats.gpu_bytes as f64 / 1e6);
    println!("cpu memory:  {:.1} MB", stats.cpu_bytes as f64 / 1e6);
    if let Some(rss) = load_peak_rss {
        println!(
            "host memory: {:.1} MB peak resident after load",
            rss as f64 / 1e6
        );
    }
    println!(
        "per token:   {} dispatches ({} past {} keys; per layer {} and {}), {} submits, {} bytes \
         read back; CPU {:.0} µs to encode, {:.0} µs in submit",
        stats.dispatches_per_token,
        stats.dispatches_per_token_long_context,
        stats.direct_attention_keys,
        stats.dispatches_per_layer,
        stats.dispatches_per_layer_long_context,
        stats.submits_per_token,
        stats.readback_bytes_per_token,
        stats.encode_us_per_token,
        stats.submit_us_per_token
    );
    if !compiled.is_empty() {
        let slowest: Vec<String> = compiled
            .iter()
            .take(5)
            .map(|k| format!("{} {:.3} s", k.name, k.seconds))
            .collect();
        println!(
            "kernels:     {} pipelines compiled in {compile_s:.2} s (slowest: {})",
            compiled.len(),
            slowest.join(", ")
        );
    }
    let e = &r["embeddings"];
    println!(
        "embeddings:  {:.2} per s of {}-token inputs ({} per call, {} pooling)",
        e["embeddings_per_s"]["median"].as_f64().unwrap_or(0.0),
        e["input_tokens"],
        e["inputs_per_call"],
        e["pooling"].as_str().unwrap_or("?"),
    );
    let j = &r["json_schema"];
    println!(
        "JSON schema: decode {:.1} tok/s over {} tokens (free text, same tokens: {:.1}); mask {:.3} ms/token",
        j["decode_tokens_per_s"]["median"].as_f64().unwrap_or(0.0),
        j["tokens"],
        j["free_decode_tokens_per_s"]["median"].as_f64().unwrap_or(0.0),
        j["mask_ms_per_token"]["median"].as_f64().unwrap_or(0.0),
    );
    Ok(())
}

/// Embeddings per second of `input`-long inputs (the bench's prompt), `INPUTS_PER_CALL` per
/// call, `repeats` calls. A generation model is pooled by its last token for the measurement:
/// every pooling runs all of an input's tokens and reads each final row back, so the figure is
/// an embedding model's of the same shape.
fn embeddings(
    engine: &mut llama_wgpu::Engine,
    input: &[u32],
    repeats: usize,
) -> Result<serde_json::Value> {
    use llama_wgpu::embed::{EmbedInput, Pooling};
    const INPUTS_PER_CALL: usize = 4;
    if engine.pooling().is_err() {
        engine.set_pooling(Some(Pooling::Last));
    }
    let pooling = engine.pooling()?.as_str();
    let inputs = vec![EmbedInput::Ids(input.to_vec()); INPUTS_PER_CALL];
    let mut rates = Vec::new();
    for _ in 0..repeats {
        let start = std::time::Instant::now();
        engine.embed(&inputs)?;
        rates.push(INPUTS_PER_CALL as f64 / start.elapsed().as_secs_f64());
    }
    engine.set_pooling(None);
    Ok(serde_json::json!({
        "input_tokens": input.len(),
        "inputs_per_call": INPUTS_PER_CALL,
        "pooling": pooling,
        "embeddings_per_s": spread(rates),
    }))
}

/// Decode under a JSON schema against free text of the same length, and the grammar's mask
/// time per token: a chat reply held to a small schema, greedy, `repeats` times.
fn structured_output(engine: &mut llama_wgpu::Engine, repeats: usize) -> Result<serde_json::Value> {
    use llama_wgpu::constraint::{JsonSchema, ResponseFormat};
    let schema = serde_json::json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 24},
            "age": {"type": "integer", "minimum": 0, "maximum": 120},
            "city": {"type": "string", "maxLength": 24}
        },
        "required": ["name", "age", "city"],
        "additionalProperties": false
    });
    let messages = [llama_wgpu::chat::Message::new(
        "user",
        "Describe a person as JSON.",
    )];
    let constrained = GenerateOptions {
        max_tokens: 64,
        sampling: SamplingParams::greedy(),
        response_format: ResponseFormat::JsonSchema {
            json_schema: JsonSchema {
                name: None,
                description: None,
                schema,
                strict: Some(true),
            },
        },
        ..Default::default()
    };
    let (mut decode, mut free_decode, mut mask_ms) = (Vec::new(), Vec::new(), Vec::new());
    let mut tokens = 0;
    for _ in 0..repeats {
        engine.reset();
        let g = engine.chat(&messages, &constrained, &mut |_| true)?;
        tokens = g.stats.generated_tokens;
        decode.push(g.stats.decode_tokens_per_second());
        mask_ms.push(1e3 * g.stats.mask_seconds / tokens.max(1) as f64);
        engine.reset();
        let free = GenerateOptions {
            max_tokens: tokens,
            sampling: SamplingParams::greedy(),
            ignore_eos: true,
            ..Default::default()
        };
        let f = engine.chat(&messages, &free, &mut |_| true)?;
        free_decode.push(f.stats.decode_tokens_per_second());
    }
    engine.reset();
    Ok(serde_json::json!({
        "tokens": tokens,
        "decode_tokens_per_s": spread(decode),
        "free_decode_tokens_per_s": spread(free_decode),
        "mask_ms_per_token": spread(mask_ms),
    }))
}

/// `bench --profile`: the GPU model built as the model options say (features, kernels,
/// pipelining, context, `--lora`), each op of a decode step timed alone.
pub(crate) fn profile(a: &BenchArgs) -> Result<()> {
    let file = GgufFile::open(&a.model.model)?;
    let options = crate::commands::engine_options(&a.model)?;
    let context = options.context_length.unwrap_or(1024);
    let ctx = llama_wgpu::gpu::GpuContext::new_blocking(&options.gpu)?;
    let mut model = pollster::block_on(GpuModel::load(ctx, &file, context))?;
    if let Some(on) = options.gpu.pipelined_decode {
        model.set_pipelined(on);
    }
    let adapters = crate::commands::adapters(&a.model)?;
    let active: Vec<_> = adapters.iter().map(|(adapter, s)| (adapter, *s)).collect();
    let stack = llama_wgpu::lora::LoraStack::build(model.config(), &active)?;
    pollster::block_on(model.set_lora(stack.as_ref()))?;
    let prompt: Vec<u32> = (0..a.prompt_tokens as u32)
        .map(|i| 100 + i % 1000)
        .collect();
    let mut sampler = Sampler::new(SamplingParams::greedy());
    pollster::block_on(model.next_token(&prompt, &mut sampler, &prompt))?;
    let rows = model.profile_decode_step(a.repeats)?;
    let total: f64 = rows.iter().map(|r| r.2).sum();
    let report = serde_json::json!({
        "adapter": model.context().describe(),
        "position": model.position(),
        "step_seconds": total,
        "kernels": rows.iter().map(|(name, n, s)| serde_json::json!({
            "kernel": name, "dispatches": n, "seconds": s,
        })).collect::<Vec<_>>(),
    });
    if a.json {
        println!("{report}");
        return Ok(());
    }
    println!("device: {}", model.context().describe());
    println!(
        "decode step at position {}, each op submitted alone (mean of {} steps)",
        model.position(),
        a.repeats
    );
    println!(
        "{:<28} {:>10} {:>12} {:>7}",
        "kernel", "dispatches", "ms/step", "share"
    );
    for (name, n, s) in &rows {
        println!(
            "{name:<28} {n:>10} {:>12.3} {:>6.1}%",
            s * 1e3,
            100.0 * s / total
        );
    }
    println!("{:<28} {:>10} {:>12.3}", "total", "", total * 1e3);
    Ok(())
}

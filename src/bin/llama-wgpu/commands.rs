//! Every subcommand but the benchmarks.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use clap::Parser;
use llama_wgpu::chat::Message;
use llama_wgpu::config::Config;
use llama_wgpu::embed::{EmbedInput, Pooling};
use llama_wgpu::engine::{Engine, EngineOptions};
use llama_wgpu::generate::Generation;
use llama_wgpu::gguf::{GgufFile, Value};
use llama_wgpu::gpu::GpuOptions;
use llama_wgpu::tokenizer::Tokenizer;
use llama_wgpu::{Error, Result};

use crate::args::{ChatArgs, Cli, Command, EmbedArgs, GenerateArgs, ModelArgs, TokenizeArgs};
use crate::bench::{bench, bench_kernels};
use crate::interrupt::interrupted;

/// `writeln!` into a String, which cannot fail.
macro_rules! outln {
    ($o:expr, $($arg:tt)*) => {{
        use std::fmt::Write as _;
        let _ = writeln!($o, $($arg)*);
    }};
}

pub fn run() -> Result<()> {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return argument_error(e),
    };
    match cli.command {
        Command::Generate(a) => generate(a),
        Command::Chat(a) => chat(a),
        Command::Tokenize(a) => tokenize(a),
        Command::Embed(a) => embed(a),
        Command::Bench(a) => bench(a),
        Command::Inspect { model } => inspect(model),
        Command::Quantize { model, out, ty } => quantize(model, out, &ty),
        Command::SynthLora {
            model,
            out,
            rank,
            alpha,
            amplitude,
            ty,
            seed,
        } => {
            let config = Config::from_header(&GgufFile::open(&model)?.header)?;
            let ty = match ty.to_ascii_uppercase().as_str() {
                "F32" => llama_wgpu::quant::GgmlType::F32,
                "F16" => llama_wgpu::quant::GgmlType::F16,
                other => {
                    return Err(Error::InvalidArgument(format!(
                        "--type {other}: expected F32 or F16"
                    )))
                }
            };
            let alpha = alpha.unwrap_or(rank as f32);
            let bytes =
                llama_wgpu::synth::random_lora(&config, rank, alpha, amplitude, ty, seed, &|_| {
                    true
                })?;
            std::fs::write(&out, &bytes)
                .map_err(|e| Error::io(format!("writing {}", out.display()), e))?;
            println!("{}: {} bytes", out.display(), bytes.len());
            Ok(())
        }
        Command::BenchKernels { json, quick } => bench_kernels(json, quick),
        Command::Synth {
            model,
            out,
            header_only,
        } => {
            // The header is at most a few MB; reading only a prefix keeps a whole model
            // from being loaded into memory.
            let mut bytes = Vec::new();
            let file = std::fs::File::open(&model)
                .map_err(|e| Error::io(format!("opening {}", model.display()), e))?;
            std::io::Read::read_to_end(&mut std::io::Read::take(file, 64 << 20), &mut bytes)
                .map_err(|e| Error::io(format!("reading {}", model.display()), e))?;
            let n = llama_wgpu::synth::synthesize(&bytes, &out, header_only)?;
            println!("{}: {n} bytes", out.display());
            Ok(())
        }
    }
}

fn quantize(model: PathBuf, out: PathBuf, ty: &str) -> Result<()> {
    let ty = llama_wgpu::quantize::QUANTIZE_TYPES
        .into_iter()
        .find(|t| t.name().eq_ignore_ascii_case(ty))
        .ok_or_else(|| {
            Error::InvalidArgument(format!("--type {ty}: expected Q8_0, Q4_0 or Q4_1"))
        })?;
    if model == out {
        return Err(Error::InvalidArgument(
            "--out must differ from --model".into(),
        ));
    }
    let input = GgufFile::open(&model)?;
    let r = llama_wgpu::quantize::quantize_file(&input, &out, ty)?;
    println!(
        "{}: {} of {} tensors requantized to {ty}; {:.1} MB -> {:.1} MB",
        out.display(),
        r.requantized,
        r.tensors,
        r.bytes_in as f64 / 1e6,
        r.bytes_out as f64 / 1e6
    );
    Ok(())
}

/// The engine options the model arguments ask for.
pub(crate) fn engine_options(m: &ModelArgs) -> Result<EngineOptions> {
    Ok(EngineOptions {
        device: m.device,
        context_length: m.context_length,
        gpu: GpuOptions {
            allow_f16: !m.no_f16,
            allow_subgroups: !m.no_subgroups,
            emulator_kernels: m.kernels.emulator(),
            pipelined_decode: m.pipeline.pipelined(),
            max_gpu_bytes: m.max_gpu_bytes,
            ..GpuOptions::default()
        },
        max_cpu_bytes: m.max_cpu_bytes,
    })
}

/// The `--lora` adapters, read (and announced on stderr), with their scales.
pub(crate) fn adapters(m: &ModelArgs) -> Result<Vec<(llama_wgpu::lora::Adapter, f32)>> {
    let mut adapters = Vec::new();
    for (path, scale) in &m.lora {
        let adapter = llama_wgpu::lora::Adapter::load(path)?;
        eprintln!(
            "[adapter {}: rank {}, {} tensors, scale {scale}]",
            path.display(),
            adapter.rank(),
            adapter.pairs.len()
        );
        adapters.push((adapter, *scale));
    }
    Ok(adapters)
}

pub(crate) fn load(m: &ModelArgs) -> Result<Engine> {
    let mut engine = Engine::load_until(&m.model, &engine_options(m)?, &interrupted)?;
    let mut active = Vec::new();
    for (adapter, scale) in adapters(m)? {
        active.push((engine.add_adapter(adapter)?, scale));
    }
    if !active.is_empty() {
        engine.set_adapters(&active)?;
    }
    if let Some(r) = engine.context_reduced() {
        eprintln!(
            "[context {} instead of {}: {}]",
            engine.context_length(),
            r.requested,
            r.reason
        );
    }
    Ok(engine)
}

/// Help and the version print as clap writes them; any other argument error (an unknown flag,
/// a bad value, a missing argument) becomes the one-line `error [INVALID_ARGUMENT]: ...` every
/// other error of the CLI is, exit status 1, its possible values kept.
fn argument_error(e: clap::Error) -> Result<()> {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        e.exit();
    }
    let text = e.render().to_string();
    let message: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("Usage:") && !l.starts_with("For more"))
        .collect();
    let message = message.join(" ");
    Err(Error::InvalidArgument(
        message
            .strip_prefix("error: ")
            .unwrap_or(&message)
            .to_string(),
    ))
}

/// Print a generated piece; `false` (stop generating) once Ctrl-C was pressed, the piece
/// printed first so the output holds every token generated.
fn stdout_piece(piece: &str) -> bool {
    let mut out = std::io::stdout().lock();
    // A closed pipe (e.g. `| head`) stops generation instead of erroring.
    let written = out.write_all(piece.as_bytes()).and_then(|_| out.flush());
    written.is_ok() && !interrupted()
}

fn generate(a: GenerateArgs) -> Result<()> {
    let mut engine = load(&a.model)?;
    let options = a.sampling.options()?;
    let mut sink = |piece: &str| match a.json {
        true => !interrupted(),
        false => stdout_piece(piece),
    };
    let (prompt_ids, result) = match (&a.prompt, &a.chat) {
        (Some(prompt), _) => {
            let ids = engine.encode_prompt(prompt)?;
            let r = engine.generate_ids(&ids, &options, &mut sink)?;
            (ids, r)
        }
        (None, Some(user)) => {
            let messages = conversation(a.system.as_deref(), user);
            let ids = engine.chat_prompt_ids_for(&messages, &options)?;
            let r = engine.chat(&messages, &options, &mut sink)?;
            (ids, r)
        }
        (None, None) => unreachable!("clap requires --prompt or --chat"),
    };
    if a.json {
        print_json(&engine, &prompt_ids, &result);
    } else {
        println!();
        for call in &result.tool_calls {
            println!(
                "{}",
                serde_json::to_string(call).expect("a call serialises")
            );
        }
        print_logprobs(&result);
        print_stats(&result);
    }
    Ok(())
}

fn conversation(system: Option<&str>, user: &str) -> Vec<Message> {
    let mut messages = Vec::new();
    if let Some(s) = system {
        messages.push(Message::new("system", s));
    }
    messages.push(Message::new("user", user));
    messages
}

fn print_json(engine: &Engine, prompt_ids: &[u32], g: &Generation) {
    let (device, device_reason) = engine.device();
    let v = serde_json::json!({
        "device": device,
        "device_reason": device_reason,
        "context_length": engine.context_length(),
        "context_reduced": engine.context_reduced(),
        "prompt_ids": prompt_ids,
        "ids": g.ids,
        "text": g.text,
        "tool_calls": g.tool_calls,
        "logprobs": g.logprobs,
        "stop_reason": g.stop_reason.as_str(),
        "prefill_tokens_per_s": g.stats.prefill_tokens_per_second(),
        "decode_tokens_per_s": g.stats.decode_tokens_per_second(),
    });
    println!("{v}");
}

/// One line per generated token: its text, logprob and the alternatives asked for.
fn print_logprobs(g: &Generation) {
    for entry in &g.logprobs {
        let top: Vec<String> = entry
            .top_logprobs
            .iter()
            .map(|t| format!("{:?} {:.4}", t.token, t.logprob))
            .collect();
        eprintln!(
            "{:?}\t{:.4}\t{}",
            entry.token,
            entry.logprob,
            top.join("  ")
        );
    }
}

fn print_stats(g: &Generation) {
    eprintln!(
        "[{} prompt tokens, {} generated, stop: {}; prefill {:.1} tok/s, decode {:.1} tok/s, first token after {:.2} s]",
        g.stats.prompt_tokens,
        g.stats.generated_tokens,
        g.stop_reason.as_str(),
        g.stats.prefill_tokens_per_second(),
        g.stats.decode_tokens_per_second(),
        g.stats.time_to_first_token_seconds,
    );
}

fn chat(a: ChatArgs) -> Result<()> {
    let mut engine = load(&a.model)?;
    let options = a.sampling.options()?;
    let mut messages = Vec::new();
    if let Some(s) = &a.system {
        messages.push(Message::new("system", s));
    }
    eprintln!(
        "Model loaded ({}, {} layers, context {}; chatting through {}). Type a message; \
         Ctrl-D quits, Ctrl-C stops a reply and quits.",
        engine.config.architecture,
        engine.config.n_layer,
        engine.context_length(),
        engine.template.describe_origin()
    );
    let stdin = std::io::stdin();
    loop {
        eprint!("> ");
        let mut line = String::new();
        if stdin
            .lock()
            .read_line(&mut line)
            .map_err(|e| Error::io("reading stdin", e))?
            == 0
        {
            return Ok(());
        }
        // Ctrl-C at the prompt: read_line does not return for it, the Enter that follows does.
        if interrupted() {
            return Ok(());
        }
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        messages.push(Message::new("user", line));
        match engine.chat(&messages, &options, &mut stdout_piece) {
            Ok(reply) => {
                println!();
                for call in &reply.tool_calls {
                    println!(
                        "{}",
                        serde_json::to_string(call).expect("a call serialises")
                    );
                }
                print_logprobs(&reply);
                print_stats(&reply);
                if interrupted() {
                    return Ok(());
                }
                let mut answer = Message::new("assistant", &reply.text);
                answer.tool_calls = reply.tool_calls;
                messages.push(answer);
            }
            Err(e @ Error::ContextOverflow { .. }) => {
                eprintln!("error [{}]: {e}; starting a new conversation", e.code());
                messages.truncate(a.system.is_some() as usize);
                engine.reset();
            }
            Err(e) => return Err(e),
        }
    }
}

/// Median, min and max of a list of figures.
/// The process's peak resident memory (Linux `VmHWM`), to show that loading streams
/// tensors instead of holding the file.
fn tokenize(a: TokenizeArgs) -> Result<()> {
    let file = GgufFile::open(&a.model)?;
    let tokenizer = Tokenizer::from_gguf(&file.header.metadata)?;
    let encode = |text: &str| -> Result<String> {
        let ids = tokenizer.encode(text, a.add_special, a.parse_special)?;
        Ok(serde_json::to_string(&ids).expect("ids serialize"))
    };
    if let Some(text) = &a.text {
        println!("{}", encode(text)?);
        return Ok(());
    }
    for (n, line) in std::io::stdin().lock().lines().enumerate() {
        let line = line.map_err(|e| Error::io("reading stdin", e))?;
        if line.trim().is_empty() {
            continue;
        }
        let text: String = serde_json::from_str(&line).map_err(|e| {
            Error::InvalidArgument(format!("stdin line {}: not a JSON string: {e}", n + 1))
        })?;
        println!("{}", encode(&text)?);
    }
    Ok(())
}

/// `{"model", "device", "pooling", "dimensions", "prompt_tokens", "embeddings"}`: one unit
/// vector per input, in input order.
fn embed(a: EmbedArgs) -> Result<()> {
    let texts = match a.texts.is_empty() {
        false => a.texts,
        true => {
            let mut lines = Vec::new();
            for line in std::io::stdin().lock().lines() {
                let line = line.map_err(|e| Error::io("reading stdin", e))?;
                if !line.trim().is_empty() {
                    lines.push(line);
                }
            }
            lines
        }
    };
    if texts.is_empty() {
        return Err(Error::InvalidArgument(
            "nothing to embed: give texts or lines on stdin".into(),
        ));
    }
    let pooling = a.pooling.as_deref().map(Pooling::from_name).transpose()?;
    let mut engine = load(&a.model)?;
    engine.set_pooling(pooling);
    // A generation model is refused before its inputs are tokenized.
    engine.pooling()?;
    let inputs: Vec<EmbedInput> = texts.into_iter().map(EmbedInput::Text).collect();
    let result = engine.embed(&inputs)?;
    let v = serde_json::json!({
        "model": a.model.model.file_name().map(|n| n.to_string_lossy()),
        "device": engine.device().0,
        "pooling": result.pooling.as_str(),
        "dimensions": engine.config.n_embd,
        "prompt_tokens": result.prompt_tokens,
        "embeddings": result.vectors,
    });
    println!("{v}");
    Ok(())
}

fn inspect(path: PathBuf) -> Result<()> {
    let file = GgufFile::open(&path)?;
    let h = &file.header;
    let mut o = String::new();
    outln!(o, "file:        {}", path.display());
    outln!(o, "size:        {} bytes", file.file_size);
    outln!(
        o,
        "gguf:        version {}, alignment {}, data at byte {}",
        h.version,
        h.alignment,
        h.data_offset
    );
    outln!(o, "\nmetadata ({} keys):", h.metadata.len());
    for (key, value) in h.metadata.iter() {
        outln!(o, "  {key:<44} {}", show_value(value));
    }
    outln!(o, "\ntensors ({}):", h.tensors.len());
    outln!(
        o,
        "  {:<36} {:<8} {:<22} {:>12} {:>12}",
        "name",
        "type",
        "dims",
        "offset",
        "bytes"
    );
    for t in &h.tensors {
        let dims = format!("{:?}", t.dims);
        outln!(
            o,
            "  {:<36} {:<8} {:<22} {:>12} {:>12}",
            t.name,
            t.ty.name(),
            dims,
            t.offset,
            t.n_bytes
        );
    }
    let total: u64 = h.tensors.iter().map(|t| t.n_bytes).sum();
    outln!(o, "  total {total} bytes of tensor data");
    match Config::from_header(h) {
        Ok(c) => outln!(
            o,
            "\nmodel: {} — dim {}, {} layers, {} heads ({} KV, head {}), ffn {}, vocab {}, context {}, rope base {}, rms eps {}, tied embeddings: {}, sliding window: {}",
            c.architecture, c.n_embd, c.n_layer, c.n_head, c.n_head_kv, c.head_dim, c.n_ff, c.n_vocab,
            c.context_length, c.rope_base, c.rms_eps, c.tied_embeddings,
            match c.sliding_window {
                Some(w) => format!("{w} on {} of {} layers", c.local_layers.iter().filter(|&&l| l).count(), c.n_layer),
                None => "none".into(),
            }
        ),
        Err(e) => outln!(o, "\nnot runnable as a model: [{}] {e}", e.code()),
    }
    // Written at once, and a closed pipe (`| head`) is not an error.
    let _ = std::io::stdout().lock().write_all(o.as_bytes());
    Ok(())
}

fn show_value(v: &Value) -> String {
    match v {
        Value::String(s) if s.len() > 80 => {
            let cut = (0..=80).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0);
            format!("{:?}… ({} bytes)", &s[..cut], s.len())
        }
        Value::String(s) => format!("{s:?}"),
        Value::Array(items) => {
            let head: Vec<String> = items.iter().take(6).map(show_value).collect();
            let more = if items.len() > 6 { ", …" } else { "" };
            let ty = items.first().map(Value::type_name).unwrap_or("?");
            format!("[{ty}; {}] [{}{more}]", items.len(), head.join(", "))
        }
        Value::Bool(b) => b.to_string(),
        Value::F32(x) => format!("{x}"),
        Value::F64(x) => format!("{x}"),
        other => match other.as_i64() {
            Some(i) => i.to_string(),
            None => other
                .as_u64()
                .map(|u| u.to_string())
                .unwrap_or_else(|| format!("{other:?}")),
        },
    }
}

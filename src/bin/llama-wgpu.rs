//! The native command line: generate, chat, tokenize, inspect, bench, quantize.

#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    if let Err(e) = cli::run() {
        eprintln!("error [{}]: {e}", e.code());
        std::process::exit(1);
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod cli {
    use std::io::{BufRead, Write};
    use std::path::PathBuf;

    use clap::{Args, Parser, Subcommand};
    use llama_wgpu::chat::Message;
    use llama_wgpu::config::Config;
    use llama_wgpu::engine::{Device, Engine, EngineOptions};
    use llama_wgpu::generate::{GenerateOptions, Generation};
    use llama_wgpu::gguf::{GgufFile, Value};
    use llama_wgpu::gpu::GpuOptions;
    use llama_wgpu::model::GpuModel;
    use llama_wgpu::sampler::{Sampler, SamplingParams};
    use llama_wgpu::tokenizer::Tokenizer;
    use llama_wgpu::{Error, Result};

    #[derive(Parser)]
    #[command(name = "llama-wgpu", version, about = "Run Llama-family GGUF models")]
    struct Cli {
        #[command(subcommand)]
        command: Command,
    }

    #[derive(Subcommand)]
    enum Command {
        /// Generate text from a raw prompt or one chat message, streaming it to stdout.
        Generate(GenerateArgs),
        /// Chat in the terminal: one user message per line, the model's reply streamed back.
        Chat(ChatArgs),
        /// Print the token ids of TEXT (or of JSON strings read one per line from stdin).
        Tokenize(TokenizeArgs),
        /// Measure load time, prefill and decode speed.
        Bench(BenchArgs),
        /// Show a GGUF file's metadata and tensor table.
        Inspect {
            #[arg(long)]
            model: PathBuf,
        },
        /// Time each matvec kernel and the prefill matmul against a copy kernel (GB/s, GFLOP/s).
        BenchKernels {
            /// Print one JSON object.
            #[arg(long)]
            json: bool,
            /// One shape per kernel, one run: checks the table runs, not a measurement.
            #[arg(long)]
            quick: bool,
        },
        /// Copy a GGUF's header (metadata, tokenizer, tensor table) and fill every tensor with
        /// random valid blocks: the same model shape for benchmarks where the weights cannot go.
        Synth {
            /// A GGUF, or just its header (as written by --header-only).
            #[arg(long)]
            model: PathBuf,
            #[arg(long)]
            out: PathBuf,
            /// Write only the header (a few MB: what travels to the benchmark machine).
            #[arg(long)]
            header_only: bool,
        },
        /// Rewrite a GGUF with its matrices requantized (llama.cpp's reference quantizers).
        Quantize {
            #[arg(long)]
            model: PathBuf,
            #[arg(long)]
            out: PathBuf,
            /// Q8_0, Q4_0 or Q4_1.
            #[arg(long = "type")]
            ty: String,
        },
    }

    #[derive(Args)]
    struct ModelArgs {
        /// Path to a GGUF file.
        #[arg(long)]
        model: PathBuf,
        /// Where the decoder runs: `gpu` (WGSL kernels through wgpu) or `cpu` (the f32
        /// reference decoder).
        #[arg(long, default_value = "gpu")]
        device: String,
        /// KV cache length in tokens (default: the model's, at most 4096).
        #[arg(long)]
        context_length: Option<usize>,
        /// Do not use the adapter's shader-f16 (the KV cache stays f32).
        #[arg(long)]
        no_f16: bool,
        /// Do not use the adapter's subgroup operations.
        #[arg(long)]
        no_subgroups: bool,
        /// Kernel family: `auto` (from the adapter), `emulator` (shaped for CPU emulations of a
        /// GPU) or `gpu` (shaped for real GPUs). For comparisons; `auto` is what users get.
        #[arg(long, default_value = "auto")]
        kernels: String,
        /// Pipelined decode steps: `auto` (on real GPUs), `on` or `off`.
        #[arg(long, default_value = "auto")]
        pipeline: String,
    }

    #[derive(Args)]
    struct SamplingArgs {
        #[arg(long, default_value_t = 256)]
        max_tokens: usize,
        /// 0 means greedy.
        #[arg(long, default_value_t = 0.8)]
        temperature: f32,
        /// 0 disables top-k.
        #[arg(long, default_value_t = 40)]
        top_k: usize,
        #[arg(long, default_value_t = 0.95)]
        top_p: f32,
        #[arg(long, default_value_t = 0.05)]
        min_p: f32,
        #[arg(long, default_value_t = 1.0)]
        repeat_penalty: f32,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Stop when the text contains this (repeatable).
        #[arg(long)]
        stop: Vec<String>,
    }

    impl SamplingArgs {
        fn options(&self) -> GenerateOptions {
            GenerateOptions {
                max_tokens: self.max_tokens,
                sampling: SamplingParams {
                    temperature: self.temperature,
                    top_k: self.top_k,
                    top_p: self.top_p,
                    min_p: self.min_p,
                    repeat_penalty: self.repeat_penalty,
                    seed: self.seed,
                    ..SamplingParams::default()
                },
                stop: self.stop.clone(),
                ignore_eos: false,
            }
        }
    }

    #[derive(Args)]
    struct GenerateArgs {
        #[command(flatten)]
        model: ModelArgs,
        /// Raw text to continue (special-token text is parsed; BOS only if the model adds one).
        #[arg(long, conflicts_with = "chat", required_unless_present = "chat")]
        prompt: Option<String>,
        /// A user message, rendered through the model's chat template.
        #[arg(long)]
        chat: Option<String>,
        /// System message for --chat.
        #[arg(long, requires = "chat")]
        system: Option<String>,
        #[command(flatten)]
        sampling: SamplingArgs,
        /// Print one JSON object instead of streaming text.
        #[arg(long)]
        json: bool,
    }

    #[derive(Args)]
    struct ChatArgs {
        #[command(flatten)]
        model: ModelArgs,
        #[arg(long)]
        system: Option<String>,
        #[command(flatten)]
        sampling: SamplingArgs,
    }

    #[derive(Args)]
    struct BenchArgs {
        #[command(flatten)]
        model: ModelArgs,
        /// Prompt length in tokens.
        #[arg(long, default_value_t = 128)]
        prompt_tokens: usize,
        /// Greedy tokens generated after the prompt (end-of-text does not stop them).
        #[arg(long, default_value_t = 128)]
        gen_tokens: usize,
        #[arg(long, default_value_t = 3)]
        repeats: usize,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
        /// Instead of the run figures: time each kernel of a decode step alone (GPU only),
        /// after a prompt of --prompt-tokens tokens, averaged over --repeats steps.
        #[arg(long)]
        profile: bool,
    }

    #[derive(Args)]
    struct TokenizeArgs {
        #[arg(long)]
        model: PathBuf,
        /// Recognise special-token text (e.g. `<|im_start|>`) as tokens.
        #[arg(long)]
        parse_special: bool,
        /// Add BOS/EOS as the model's metadata says.
        #[arg(long)]
        add_special: bool,
        text: Option<String>,
    }

    /// `writeln!` into a String, which cannot fail.
    macro_rules! outln {
        ($o:expr, $($arg:tt)*) => {{
            use std::fmt::Write as _;
            let _ = writeln!($o, $($arg)*);
        }};
    }

    pub fn run() -> Result<()> {
        let cli = Cli::parse();
        match cli.command {
            Command::Generate(a) => generate(a),
            Command::Chat(a) => chat(a),
            Command::Tokenize(a) => tokenize(a),
            Command::Bench(a) => bench(a),
            Command::Inspect { model } => inspect(model),
            Command::Quantize { model, out, ty } => quantize(model, out, &ty),
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

    fn bench_kernels(json: bool, quick: bool) -> Result<()> {
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

    fn load(m: &ModelArgs) -> Result<Engine> {
        let emulator_kernels = auto_or("--kernels", &m.kernels, "emulator", "gpu")?;
        let pipelined_decode = auto_or("--pipeline", &m.pipeline, "on", "off")?;
        let options = EngineOptions {
            device: m.device.parse::<Device>()?,
            context_length: m.context_length,
            gpu: GpuOptions {
                allow_f16: !m.no_f16,
                allow_subgroups: !m.no_subgroups,
                emulator_kernels,
                pipelined_decode,
                ..GpuOptions::default()
            },
        };
        Engine::load(&m.model, &options)
    }

    /// `auto` -> None (the adapter decides), `yes` -> Some(true), `no` -> Some(false).
    fn auto_or(flag: &str, value: &str, yes: &str, no: &str) -> Result<Option<bool>> {
        match value {
            "auto" => Ok(None),
            v if v == yes => Ok(Some(true)),
            v if v == no => Ok(Some(false)),
            other => Err(Error::InvalidArgument(format!(
                "{flag} {other}: expected auto, {yes} or {no}"
            ))),
        }
    }

    fn stdout_piece(piece: &str) -> bool {
        let mut out = std::io::stdout().lock();
        // A closed pipe (e.g. `| head`) stops generation instead of erroring.
        out.write_all(piece.as_bytes())
            .and_then(|_| out.flush())
            .is_ok()
    }

    fn generate(a: GenerateArgs) -> Result<()> {
        let mut engine = load(&a.model)?;
        let options = a.sampling.options();
        let mut sink = |piece: &str| a.json || stdout_piece(piece);
        let (prompt_ids, result) = match (&a.prompt, &a.chat) {
            (Some(prompt), _) => {
                let ids = engine.encode_prompt(prompt)?;
                let r = engine.generate_ids(&ids, &options, &mut sink)?;
                (ids, r)
            }
            (None, Some(user)) => {
                let messages = conversation(a.system.as_deref(), user);
                let ids = engine.chat_prompt_ids(&messages)?;
                let r = engine.generate_ids(&ids, &options, &mut sink)?;
                (ids, r)
            }
            (None, None) => unreachable!("clap requires --prompt or --chat"),
        };
        if a.json {
            print_json(&prompt_ids, &result);
        } else {
            println!();
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

    fn print_json(prompt_ids: &[u32], g: &Generation) {
        let v = serde_json::json!({
            "prompt_ids": prompt_ids,
            "ids": g.ids,
            "text": g.text,
            "stop_reason": g.stop_reason.as_str(),
            "prefill_tokens_per_s": g.stats.prefill_tokens_per_second(),
            "decode_tokens_per_s": g.stats.decode_tokens_per_second(),
        });
        println!("{v}");
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
        let options = a.sampling.options();
        let mut messages = Vec::new();
        if let Some(s) = &a.system {
            messages.push(Message::new("system", s));
        }
        eprintln!(
            "Model loaded ({}, {} layers, context {}; chatting through {}). Type a message; \
             Ctrl-D quits.",
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
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            messages.push(Message::new("user", line));
            match engine.chat(&messages, &options, &mut stdout_piece) {
                Ok(reply) => {
                    println!();
                    print_stats(&reply);
                    messages.push(Message::new("assistant", &reply.text));
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

    /// The process's peak resident memory (Linux `VmHWM`), to show that loading streams
    /// tensors instead of holding the file.
    fn peak_rss_bytes() -> Option<u64> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024)
    }

    fn bench(a: BenchArgs) -> Result<()> {
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
        };
        let (mut prefill, mut decode, mut ttft) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..a.repeats {
            engine.reset();
            let g = engine.generate_ids(&prompt, &options, &mut |_| true)?;
            prefill.push(g.stats.prefill_tokens_per_second());
            decode.push(g.stats.decode_tokens_per_second());
            ttft.push(g.stats.time_to_first_token_seconds);
        }
        let stats = engine.backend_stats();
        let ttft = spread(ttft)["median"].clone();
        let report = serde_json::json!({
            "adapter": stats.device,
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
            "submits_per_token": stats.submits_per_token,
            "readback_bytes_per_token": stats.readback_bytes_per_token,
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
        println!("gpu memory:  {:.1} MB", stats.gpu_bytes as f64 / 1e6);
        if let Some(rss) = load_peak_rss {
            println!(
                "host memory: {:.1} MB peak resident after load",
                rss as f64 / 1e6
            );
        }
        println!(
            "per token:   {} dispatches, {} submits, {} bytes read back",
            stats.dispatches_per_token, stats.submits_per_token, stats.readback_bytes_per_token
        );
        Ok(())
    }

    fn profile(a: &BenchArgs) -> Result<()> {
        let file = GgufFile::open(&a.model.model)?;
        let context = a.model.context_length.unwrap_or(1024);
        let ctx = llama_wgpu::gpu::GpuContext::new_blocking(&Default::default())?;
        let mut model = pollster::block_on(GpuModel::load(ctx, &file, context))?;
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
}

//! The `llama-wgpu` binary end to end: generate (text and JSON, raw prompt and chat), tokenize
//! (argument, special tokens, stdin), inspect, and the one-line errors.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use llama_wgpu::gpu::{GpuContext, GpuOptions};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_llama-wgpu"))
}

/// Runs the binary with `args` (and `stdin`, when given, on its standard input).
fn run(args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = bin();
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("the llama-wgpu binary starts");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(input.as_bytes()).unwrap();
    }
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("stdout is UTF-8")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs and insists on success, returning stdout.
fn ok(args: &[&str], stdin: Option<&str>) -> String {
    let o = run(args, stdin);
    assert!(
        o.status.success(),
        "llama-wgpu {args:?} failed ({}):\n{}",
        o.status,
        stderr(&o)
    );
    stdout(&o)
}

/// Runs and insists on a failure reported as exactly one line `error [CODE]: ...` on stderr.
fn fails_with(args: &[&str], code: &str) -> String {
    let o = run(args, None);
    let err = stderr(&o);
    assert!(
        !o.status.success(),
        "llama-wgpu {args:?} succeeded; stdout:\n{}",
        stdout(&o)
    );
    assert_eq!(o.status.code(), Some(1), "{args:?}: {}\n{err}", o.status);
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "{args:?} panicked:\n{err}"
    );
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "{args:?}: expected one line on stderr, got:\n{err}"
    );
    let prefix = format!("error [{code}]: ");
    assert!(
        lines[0].starts_with(&prefix) && lines[0].len() > prefix.len(),
        "{args:?}: expected `{prefix}...`, got: {}",
        lines[0]
    );
    lines[0].to_string()
}

fn model() -> Option<String> {
    common::default_model().map(|p| p.to_str().expect("UTF-8 model path").to_string())
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn ids(v: &serde_json::Value) -> Vec<u64> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect()
}

/// A scratch file in Cargo's per-test-target temp folder.
fn scratch(name: &str, bytes: &[u8]) -> PathBuf {
    let p =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("cli-{}-{name}", std::process::id()));
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn generate_prints_the_reference_continuation() {
    let Some(m) = model() else { return };
    let args = [
        "generate",
        "--model",
        &m,
        "--prompt",
        "Once upon a time",
        "--max-tokens",
        "30",
        "--temperature",
        "0",
        "--device",
        "reference",
    ];
    let o = run(&args, None);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), format!("{}\n", common::REFERENCE_CONTINUATION));
    // The statistics go to stderr.
    let err = stderr(&o);
    assert!(err.contains("4 prompt tokens, 30 generated"), "{err}");
    assert!(err.contains("tok/s"), "{err}");
}

#[test]
fn generate_json() {
    let Some(m) = model() else { return };
    let out = ok(
        &[
            "generate",
            "--model",
            &m,
            "--prompt",
            "Once upon a time",
            "--max-tokens",
            "30",
            "--temperature",
            "0",
            "--json",
        ],
        None,
    );
    assert_eq!(out.trim_end().lines().count(), 1, "one JSON object: {out}");
    let v = json(&out);
    assert_eq!(
        ids(&v["prompt_ids"]),
        common::ONCE_UPON_A_TIME.map(u64::from)
    );
    assert_eq!(ids(&v["ids"]).len(), 30);
    assert_eq!(v["stop_reason"], "length");
    // The default device is `auto`: the GPU where the adapter is hardware, else the CPU engine
    // (lavapipe, on machines without a GPU, is software).
    let hardware_gpu = GpuContext::new_blocking(&GpuOptions::default())
        .map(|ctx| !ctx.is_software())
        .unwrap_or(false);
    let want = if hardware_gpu { "gpu" } else { "cpu" };
    assert_eq!(v["device"], want, "{v}");
    assert!(!v["device_reason"].as_str().unwrap().is_empty());
    // Greedy text: llama.cpp's for as long as the margins allow. Both engines round (the CPU
    // engine its activations to 8 bits, as llama.cpp does), which moves these logits by up to
    // ~0.3 (tests/cpu_model.rs); the f32 reference's top1 - top2 margins on the first four
    // tokens are 4.06, 0.34, 0.50 and 0.69, the fifth's 0.16.
    let text = v["text"].as_str().unwrap();
    let expected = &common::REFERENCE_CONTINUATION[..", the city of".len()];
    assert!(text.starts_with(expected), "{text}");
    for key in ["prefill_tokens_per_s", "decode_tokens_per_s"] {
        let rate = v[key].as_f64().unwrap_or_else(|| panic!("{key} in {v}"));
        assert!(rate > 0.0 && rate.is_finite(), "{key} = {rate}");
    }
}

#[test]
fn generate_chat_json() {
    let Some(m) = model() else { return };
    let out = ok(
        &[
            "generate",
            "--model",
            &m,
            "--chat",
            "What is 2+2?",
            "--max-tokens",
            "16",
            "--temperature",
            "0",
            "--json",
        ],
        None,
    );
    let v = json(&out);
    let prompt = ids(&v["prompt_ids"]);
    assert_eq!(
        prompt.first(),
        Some(&1),
        "starts with <|im_start|>: {prompt:?}"
    );
    assert!(prompt.len() > 5, "{prompt:?}");
    let stop = v["stop_reason"].as_str().unwrap();
    assert!(stop == "stop" || stop == "length", "{stop}");
    let generated = ids(&v["ids"]);
    assert!(
        !generated.is_empty() && generated.len() <= 16,
        "{generated:?}"
    );
    assert!(v["text"].is_string());
}

#[test]
fn tokenize_text_special_and_stdin() {
    let Some(m) = model() else { return };
    let tok = |extra: &[&str], stdin: Option<&str>| {
        let mut args = vec!["tokenize", "--model", &m];
        args.extend_from_slice(extra);
        ok(&args, stdin)
    };

    assert_eq!(
        ids(&json(&tok(&["Once upon a time"], None))),
        common::ONCE_UPON_A_TIME.map(u64::from)
    );
    // Special-token text is one token only when asked.
    assert_eq!(
        ids(&json(&tok(&["--parse-special", "<|im_start|>"], None))),
        [1]
    );
    let plain = ids(&json(&tok(&["<|im_start|>"], None)));
    assert!(plain.len() > 1 && !plain.contains(&1), "{plain:?}");

    // Stdin: one JSON string per line in, one JSON array per line out (blank lines skipped).
    let input = "\"Once upon a time\"\n\n\"<|im_start|>user\\nHi\"\n\"\"\n";
    let out = tok(&["--parse-special"], Some(input));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert_eq!(
        ids(&json(lines[0])),
        common::ONCE_UPON_A_TIME.map(u64::from)
    );
    let second = ids(&json(lines[1]));
    assert_eq!(second.first(), Some(&1), "{second:?}");
    assert!(ids(&json(lines[2])).is_empty());

    // A line that is not a JSON string is an argument error.
    let o = run(&["tokenize", "--model", &m], Some("not json\n"));
    assert!(!o.status.success());
    assert!(
        stderr(&o).starts_with("error [INVALID_ARGUMENT]: "),
        "{}",
        stderr(&o)
    );
}

#[test]
fn tokenize_add_special_on_a_vocab_only_gguf() {
    // llama.cpp's vocab-only SentencePiece GGUF (no tensors), fetched by `./build.sh setup`.
    let Some(vocab) = common::vocab_path("llama-spm") else {
        return;
    };
    let v = vocab.to_str().unwrap();
    let with = ids(&json(&ok(
        &["tokenize", "--model", v, "--add-special", "Hello world"],
        None,
    )));
    assert_eq!(with.first(), Some(&1), "BOS first: {with:?}");
    let without = ids(&json(&ok(&["tokenize", "--model", v, "Hello world"], None)));
    assert_eq!(with[1..], without[..], "BOS is the only addition");
    assert_ne!(without.first(), Some(&1));
}

#[test]
fn inspect_shows_the_tensor_table_and_model() {
    let Some(m) = model() else { return };
    let n_tensors = llama_wgpu::gguf::GgufFile::open(&m)
        .unwrap()
        .header
        .tensors
        .len();
    let out = ok(&["inspect", "--model", &m], None);
    assert!(
        out.lines()
            .any(|l| l.trim() == format!("tensors ({n_tensors}):")),
        "no `tensors ({n_tensors}):` line"
    );
    assert!(out.contains("token_embd.weight"));
    assert!(out.contains("general.architecture"));
    let summary = out
        .lines()
        .find(|l| l.starts_with("model: "))
        .unwrap_or_else(|| panic!("no model summary line in:\n{out}"));
    assert!(
        summary.starts_with("model: llama")
            && summary.contains("dim 576")
            && summary.contains("30 layers")
            && summary.contains("vocab 49152")
            && summary.contains("tied embeddings: true"),
        "{summary}"
    );
}

#[test]
fn errors_are_one_line_with_a_code() {
    // A file that is not GGUF.
    let junk = scratch(
        "junk.gguf",
        b"this is a text file, not a GGUF model at all\n",
    );
    let junk = junk.to_str().unwrap();
    let line = fails_with(
        &["generate", "--model", junk, "--prompt", "hi"],
        "GGUF_INVALID",
    );
    assert!(line.contains("magic"), "{line}");
    fails_with(&["tokenize", "--model", junk, "hi"], "GGUF_INVALID");
    fails_with(&["inspect", "--model", junk], "GGUF_INVALID");

    // A path that does not exist.
    let missing = Path::new(env!("CARGO_TARGET_TMPDIR")).join("no/such/model.gguf");
    let missing = missing.to_str().unwrap();
    fails_with(
        &["generate", "--model", missing, "--prompt", "hi"],
        "IO_ERROR",
    );
    fails_with(&["inspect", "--model", missing], "IO_ERROR");

    let Some(m) = model() else { return };
    // The first megabyte of the real model.
    let mut head = std::fs::read(&m).unwrap();
    head.truncate(1_000_000);
    let truncated = scratch("truncated.gguf", &head);
    let truncated = truncated.to_str().unwrap();
    fails_with(
        &["generate", "--model", truncated, "--prompt", "hi"],
        "GGUF_INVALID",
    );
    fails_with(&["inspect", "--model", truncated], "GGUF_INVALID");

    // An unknown device.
    let line = fails_with(
        &[
            "generate", "--model", &m, "--prompt", "hi", "--device", "tpu",
        ],
        "INVALID_ARGUMENT",
    );
    assert!(line.contains("tpu"), "{line}");
    // Every argument error is such a line too, not clap's multi-line usage text: a value
    // outside a typed option's choices (which it names), an unknown flag, a missing argument.
    let line = fails_with(
        &["generate", "--model", &m, "--kernels", "fast"],
        "INVALID_ARGUMENT",
    );
    assert!(
        line.contains("'fast'") && line.contains("emulator"),
        "{line}"
    );
    let line = fails_with(&["generate", "--model", &m, "--bogus"], "INVALID_ARGUMENT");
    assert!(line.contains("--bogus"), "{line}");
    let line = fails_with(&["generate", "--prompt", "hi"], "INVALID_ARGUMENT");
    assert!(line.contains("--model"), "{line}");
    // The GPU decoder: it runs where an adapter exists (lavapipe counts); where it cannot run,
    // a one-line error with a GPU code.
    let args = [
        "generate",
        "--model",
        &m,
        "--prompt",
        "hi",
        "--device",
        "gpu",
        "--max-tokens",
        "1",
        "--temperature",
        "0",
    ];
    let o = run(&args, None);
    if !o.status.success() {
        // Graphics drivers may write their own notes to stderr (mesa: "error: XDG_RUNTIME_DIR
        // is invalid ..."); of the CLI's own lines there must be exactly one.
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(!err.contains("panicked"), "--device gpu panicked:\n{err}");
        let ours: Vec<&str> = err.lines().filter(|l| l.starts_with("error [")).collect();
        assert_eq!(ours.len(), 1, "{err}");
        let codes = [
            "INVALID_ARGUMENT",
            "WEBGPU_UNAVAILABLE",
            "GPU_ERROR",
            "MODEL_TOO_LARGE",
            "DEVICE_LOST",
        ];
        assert!(
            codes
                .iter()
                .any(|c| ours[0].starts_with(&format!("error [{c}]: "))),
            "--device gpu failed without a GPU error code:\n{err}"
        );
    }
    // Sampling parameters out of range.
    let line = fails_with(
        &["generate", "--model", &m, "--prompt", "hi", "--top-p", "2"],
        "INVALID_ARGUMENT",
    );
    assert!(line.contains("top_p"), "{line}");
}

/// The kernel table runs and reports every kernel with positive figures (its quick mode: the
/// figures themselves are for `./build.sh bench`, never asserted).
#[test]
fn bench_kernels_reports_every_kernel() {
    let t = json(&ok(&["bench-kernels", "--quick", "--json"], None));
    assert!(t["copy_gbps"].as_f64().unwrap() > 0.0);
    let types: Vec<&str> = t["matvec"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            assert!(f["ms"].as_f64().unwrap() > 0.0 && f["gbps"].as_f64().unwrap() > 0.0);
            f["type"].as_str().unwrap()
        })
        .collect();
    // Every GPU type but F32, which no model uses for its large matrices.
    let want: Vec<&str> = llama_wgpu::gpu::weights::GPU_TYPES
        .iter()
        .filter(|&&t| t != llama_wgpu::quant::GgmlType::F32)
        .map(|t| t.name())
        .collect();
    assert_eq!(types, want);
    assert!(t["matmul"][0]["gflops"].as_f64().unwrap() > 0.0);
}

#[test]
fn quantize_rejects_bad_arguments() {
    let Some(m) = model() else { return };
    fails_with(
        &[
            "quantize",
            "--model",
            &m,
            "--out",
            "/tmp/x.gguf",
            "--type",
            "Q5_K",
        ],
        "INVALID_ARGUMENT",
    );
    fails_with(
        &["quantize", "--model", &m, "--out", &m, "--type", "Q8_0"],
        "INVALID_ARGUMENT",
    );
}

/// `synth` keeps the header byte for byte and refills the data: a header-only copy grows back
/// into a file of the original's size whose weights are valid (the GPU decoder runs on them).
#[test]
fn synth_rebuilds_a_model_of_the_same_shape_from_its_header() {
    let Some(m) = model() else { return };
    let dir = std::env::temp_dir().join(format!("llama-wgpu-synth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (header, full) = (dir.join("h.gguf"), dir.join("s.gguf"));
    ok(
        &[
            "synth",
            "--model",
            &m,
            "--out",
            header.to_str().unwrap(),
            "--header-only",
        ],
        None,
    );
    ok(
        &[
            "synth",
            "--model",
            header.to_str().unwrap(),
            "--out",
            full.to_str().unwrap(),
        ],
        None,
    );
    let original = std::fs::read(&m).unwrap();
    let synthetic = std::fs::read(&full).unwrap();
    let header_len = std::fs::metadata(&header).unwrap().len() as usize;
    assert_eq!(synthetic.len(), original.len());
    assert_eq!(synthetic[..header_len], original[..header_len]);
    assert_ne!(synthetic[header_len..], original[header_len..]);
    let out = json(&ok(
        &[
            "generate",
            "--model",
            full.to_str().unwrap(),
            "--prompt",
            "Hi",
            "--max-tokens",
            "3",
            "--temperature",
            "0",
            "--json",
        ],
        None,
    ));
    assert_eq!(ids(&out["ids"]).len(), 3, "{out}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `embed`: texts from the arguments or stdin lines, one JSON object whose vectors are the
/// library's (`Engine::embed` on the same device, bit for bit: the same code on the same
/// bytes); a generation model is EMBEDDINGS_UNSUPPORTED.
#[test]
fn embed_prints_the_engines_vectors_as_json() {
    use llama_wgpu::embed::EmbedInput;
    use llama_wgpu::{Device, Engine, EngineOptions};

    let path = common::embedding_models::pooling_model(&llama_wgpu::arch::QWEN3, 3);
    let m = path.to_str().unwrap();
    let from_args = ok(
        &[
            "embed", "--device", "cpu", "--model", m, "a note", "another",
        ],
        None,
    );
    let from_stdin = ok(
        &["embed", "--device", "cpu", "--model", m],
        Some("a note\n\nanother\n"),
    );
    assert_eq!(from_args, from_stdin, "blank lines are skipped");
    let v: serde_json::Value = serde_json::from_str(&from_args).unwrap();
    assert_eq!(v["device"], "cpu");
    assert_eq!(v["pooling"], "last");
    assert_eq!(v["dimensions"], 64);
    assert_eq!(
        v["prompt_tokens"],
        6 + 1 + 7 + 1,
        "each input's bytes and its EOS"
    );
    let options = EngineOptions {
        device: Device::Cpu,
        ..Default::default()
    };
    let inputs = ["a note", "another"].map(|t| EmbedInput::Text(t.into()));
    let expected = Engine::load(&path, &options)
        .unwrap()
        .embed(&inputs)
        .unwrap();
    let got: Vec<Vec<f32>> = serde_json::from_value(v["embeddings"].clone()).unwrap();
    assert_eq!(got, expected.vectors);
    fails_with(&["embed", "--model", m], "INVALID_ARGUMENT");
    std::fs::remove_file(&path).ok();

    let Some(model) = model() else {
        return;
    };
    let err = fails_with(
        &["embed", "--model", &model, "hi"],
        "EMBEDDINGS_UNSUPPORTED",
    );
    assert!(err.contains("generation model"), "{err}");
    // Unless a pooling is asked for: a unit vector per input all the same.
    let args = [
        "embed",
        "--device",
        "cpu",
        "--pooling",
        "mean",
        "--model",
        &model,
        "hi",
    ];
    let v: serde_json::Value = serde_json::from_str(&ok(&args, None)).unwrap();
    let vector: Vec<f32> = serde_json::from_value(v["embeddings"][0].clone()).unwrap();
    assert_eq!(vector.len(), 576);
    let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!(
        (norm - 1.0).abs() < 1e-5,
        "f32 rounding of 576 squares: {norm}"
    );
    fails_with(
        &["embed", "--pooling", "max", "--model", &model, "hi"],
        "INVALID_ARGUMENT",
    );
}

/// `--lora FILE[:SCALE]` through the engine: an adapter from `synth-lora` changes the greedy
/// text; scale 0 gives the base text back; two copies of it at half scale each give the text
/// of one at full scale (the update is linear in the scale); a file that is no adapter is
/// MODEL_INVALID.
#[test]
fn lora_adapters_from_the_command_line() {
    let Some(m) = model() else {
        eprintln!("SKIPPED: the default model is not in the cache (./build.sh setup)");
        return;
    };
    let dir = std::env::temp_dir().join("llama-wgpu-cli-lora");
    std::fs::create_dir_all(&dir).unwrap();
    let lora = dir.join("r8.gguf");
    let lora = lora.to_str().unwrap();
    let made = ok(
        &[
            "synth-lora",
            "--model",
            &m,
            "--out",
            lora,
            "--rank",
            "8",
            "--amplitude",
            "0.2",
        ],
        None,
    );
    assert!(made.contains("bytes"), "{made}");
    let text = |extra: &[&str]| {
        let mut args = vec!["generate", "--model", &m, "--device", "cpu", "--json"];
        args.extend(["--prompt", "The capital of France is", "--max-tokens", "10"]);
        args.extend(["--temperature", "0"]);
        args.extend(extra);
        json(&ok(&args, None))["text"].as_str().unwrap().to_string()
    };
    let base = text(&[]);
    let adapted = text(&["--lora", lora]);
    assert_ne!(adapted, base, "the adapter changes the text");
    assert_eq!(text(&["--lora", &format!("{lora}:0")]), base, "scale 0");
    // A copy of the adapter: two adapters at half scale make the same update as one at 1, up
    // to f32 rounding; greedy text survives that unless two tokens tie to 1e-6.
    let copy = dir.join("r8-copy.gguf");
    std::fs::copy(lora, &copy).unwrap();
    let half = [
        "--lora".to_string(),
        format!("{lora}:0.5"),
        "--lora".to_string(),
        format!("{}:0.5", copy.display()),
    ];
    let half: Vec<&str> = half.iter().map(String::as_str).collect();
    assert_eq!(text(&half), adapted, "two halves of the adapter");
    let e = fails_with(
        &[
            "generate", "--model", &m, "--device", "cpu", "--prompt", "x", "--lora", &m,
        ],
        "MODEL_INVALID",
    );
    assert!(e.contains("not a LoRA adapter"), "{e}");
}

/// Send SIGINT (Ctrl-C) to `child` and wait for it to exit, at most 10 s (see the tests
/// below): its exit status and stderr.
#[cfg(unix)]
fn interrupt(child: &mut std::process::Child) -> (std::process::ExitStatus, String) {
    use std::io::Read;
    use std::time::{Duration, Instant};
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(kill.success());
    let signalled = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            let stderr = child.stderr.as_mut().expect("stderr piped");
            stderr.read_to_string(&mut err).unwrap();
            return (status, err);
        }
        if signalled.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            panic!("still running 10 s after SIGINT");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Ctrl-C during a generation: the CLI stops at the next token, keeps what it printed, reports
/// the stop (`stop: abort`) and exits with 130 (128 + SIGINT). Bound: 10 s from the signal to
/// the exit. One token of the default model takes about 30 ms on the CPU engine here (about
/// 0.3 s in an unoptimised build), so 10 s leaves room for a loaded machine, while a CLI that
/// ignored the signal would run on to its 100000-token limit (many minutes).
#[cfg(unix)]
#[test]
fn ctrl_c_stops_a_generation_keeps_its_text_and_exits_130() {
    use std::io::Read;
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    let Some(m) = model() else { return };
    let mut child = bin()
        .args(["generate", "--model", &m, "--prompt", "Once upon a time"])
        .args(["--max-tokens", "100000", "--device", "cpu"])
        // No end-of-text token (SmolLM2's <|endoftext|> and <|im_end|>): the generation runs
        // until the signal comes.
        .args(["--logit-bias", "0=-100", "--logit-bias", "2=-100"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the llama-wgpu binary starts");
    // Stdout read on a thread, so the test can wait for text with a deadline.
    let mut out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = out.read(&mut buf) {
            if tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    // Some generated text first: the model is loaded and the generation under way.
    let mut text = Vec::new();
    let started = Instant::now();
    while text.len() < 40 {
        let left = Duration::from_secs(300).saturating_sub(started.elapsed());
        match rx.recv_timeout(left) {
            Ok(piece) => text.extend(piece),
            Err(e) => panic!("no generated text within 300 s ({e}): {child:?}"),
        }
    }
    let (status, err) = interrupt(&mut child);
    reader.join().unwrap();
    text.extend(rx.try_iter().flatten());
    assert_eq!(status.code(), Some(130), "{status}; stderr:\n{err}");
    let text = String::from_utf8_lossy(&text);
    assert!(text.trim().len() >= 40, "partial output: {text:?}");
    assert!(err.contains("stop: abort"), "stderr:\n{err}");
    assert!(err.trim_end().ends_with("[interrupted]"), "stderr:\n{err}");
    assert!(!err.contains("panicked"), "stderr:\n{err}");
}

/// Ctrl-C during the load: the loader gives up at its next 1 MiB weight piece, nothing is
/// generated (no text, no `stop:` line), and the CLI exits with 130. The 491 MB Qwen2.5 model
/// takes about 1.8 s to load into the CPU engine here (at least 0.8 s on an idle machine: its
/// weights are repacked), so a signal 250 ms after the start lands inside the load; the bound
/// of 10 s from the signal to the exit is far above the tens of milliseconds a piece takes,
/// while a CLI that ignored the signal until the load ended would print a generation.
#[cfg(unix)]
#[test]
fn ctrl_c_during_the_load_stops_it_and_exits_130() {
    use std::io::Read;
    use std::time::Duration;

    let Some(m) = common::cached_model("Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf") else {
        return;
    };
    let mut child = bin()
        .args([
            "generate",
            "--model",
            m.to_str().unwrap(),
            "--prompt",
            "Once upon a time",
        ])
        .args(["--max-tokens", "8", "--device", "cpu"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the llama-wgpu binary starts");
    std::thread::sleep(Duration::from_millis(250));
    let (status, err) = interrupt(&mut child);
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert_eq!(status.code(), Some(130), "{status}; stderr:\n{err}");
    assert_eq!(out, "", "nothing generated after an interrupted load");
    assert!(
        !err.contains("stop:"),
        "the load ended before the signal:\n{err}"
    );
    assert!(err.trim_end().ends_with("[interrupted]"), "stderr:\n{err}");
    assert!(!err.contains("panicked"), "stderr:\n{err}");
}

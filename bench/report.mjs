#!/usr/bin/env node
// Merges the benchmark outputs of one folder into results.json, results.md and chart.svg.
//
//   node bench/report.mjs --out DIR [--update-benchmarks BENCHMARKS.md]
//
// Reads from DIR, each optional (at least one must be there):
//   browser.json           bench/browser.mjs: llama-wgpu (WebGPU and CPU engine) vs wllama in Chromium
//   native-gpu.json        `llama-wgpu bench --json --device gpu`
//   native-cpu.json        `llama-wgpu bench --json --device cpu` (the CPU engine)
//   native-reference.json  `llama-wgpu bench --json --device reference` (the f32 reference decoder)
//   native-{gpu,cpu}-lora.json  the same with `--lora` (a random rank-16 adapter of every projection)
//   native-llama-cpp.json  the same shape from llama.cpp, plus "engine": "llama.cpp"
//   models/NAME.DEVICE.json `llama-wgpu bench --json --device DEVICE` on another architecture's
//                          model (NAME.gguf)
//   kernels.json           {adapter, copy_gbps, matvec: [{type, rows, cols, ms, gbps, of_copy}],
//                           matmul: [{type, rows, cols, tokens, ms, gflops}]}
// Writes DIR/results.json (all of it plus commit, date, machine), DIR/results.md and DIR/chart.svg.
// --update-benchmarks FILE replaces the text between <!-- bench:start --> and <!-- bench:end -->
// in FILE with results.md (adding the section, or the file, when missing).

import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { forEachOption } from "../www/cli-options.mjs";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, "..");
const START = "<!-- bench:start -->";
// How the tables name llama-wgpu's devices (the "device" field of `llama-wgpu bench --json`).
const DEVICE_NAMES = { gpu: "GPU", cpu: "CPU engine", reference: "f32 reference" };
const deviceOrder = (d) => ["gpu", "cpu", "reference"].indexOf(d) >>> 0;
// The browser rows in table (and chart) order: every core first, then one thread.
const BROWSER_ENGINES = ["ours", "ours_cpu", "wllama", "ours_cpu_1", "wllama_1"];
// The ratios (llama-wgpu's row over wllama's); the CPU ones compare equal thread counts.
const BROWSER_PAIRS = ["ours/wllama", "ours_cpu/wllama", "ours_cpu_1/wllama_1"];
// The browser table: each ratio line under the rows it divides.
const BROWSER_LAYOUT = [
  ["row", "ours"], ["row", "ours_cpu"], ["row", "wllama"], ["ratio", "ours/wllama"], ["ratio", "ours_cpu/wllama"],
  ["row", "ours_cpu_1"], ["row", "wllama_1"], ["ratio", "ours_cpu_1/wllama_1"],
];
const END = "<!-- bench:end -->";

function usage(message) {
  if (message) process.stderr.write(`report.mjs: ${message}\n`);
  process.stderr.write("usage: node bench/report.mjs --out DIR [--update-benchmarks FILE]\n");
  process.exit(message ? 2 : 0);
}

function parseArgs(argv) {
  const o = { out: null, update: null };
  forEachOption(argv, usage, (arg, take) => {
    switch (arg) {
      case "--out": o.out = path.resolve(take()); break;
      case "--update-benchmarks": o.update = path.resolve(take()); break;
      case "--help": case "-h": usage(); break;
      default: usage(`unknown argument ${arg}`);
    }
    });
  if (!o.out) usage("--out is required");
  return o;
}

function readJson(dir, name) {
  const file = path.join(dir, name);
  if (!fs.existsSync(file)) return null;
  try {
    return JSON.parse(fs.readFileSync(file, "utf8"));
  } catch (err) {
    throw new Error(`${file}: ${err.message}`);
  }
}

function git(args) {
  try {
    return execFileSync("git", args, { cwd: REPO, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
  } catch {
    return null;
  }
}

function machine(browser) {
  let cpu = browser?.cpu?.model ?? null;
  if (!cpu) {
    try {
      const line = fs.readFileSync("/proc/cpuinfo", "utf8").split("\n").find((l) => l.startsWith("model name"));
      cpu = line ? line.split(":").slice(1).join(":").trim() : null;
    } catch {}
  }
  return {
    cpu: cpu ?? os.cpus()[0]?.model ?? "unknown",
    cores: browser?.cpu?.cores ?? os.cpus().length,
    memory_gib: browser?.cpu?.memory_gib ?? +(os.totalmem() / 2 ** 30).toFixed(1),
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
  };
}

// ---------------------------------------------------------------------------------------------
// Numbers

// A figure may be a number or {median, min, max, values}.
const med = (x) => (x == null ? null : typeof x === "number" ? x : x.median ?? null);
const lo = (x) => (x && typeof x === "object" ? x.min ?? null : null);
const hi = (x) => (x && typeof x === "object" ? x.max ?? null : null);
const finite = (x) => typeof x === "number" && Number.isFinite(x);

function num(x, digits) {
  if (!finite(x)) return "–";
  if (digits === undefined) digits = Math.abs(x) >= 100 ? 0 : Math.abs(x) >= 10 ? 1 : 2;
  return x.toFixed(digits);
}

// "12.3 (11.9–12.8)" when there is a spread, "12.3" otherwise.
function spread(x, digits) {
  const m = med(x);
  if (!finite(m)) return "–";
  const a = lo(x);
  const b = hi(x);
  if (finite(a) && finite(b) && (x.values?.length ?? 2) > 1 && a !== b) return `${num(m, digits)} (${num(a, digits)}–${num(b, digits)})`;
  return num(m, digits);
}

function ratio(x) {
  return finite(x) ? `${x.toFixed(2)}×` : "–";
}

function mb(bytes) {
  return finite(bytes) ? `${(bytes / 1e6).toFixed(1)} MB` : "–";
}

function isEmulated(adapter) {
  return /swiftshader|llvmpipe|lavapipe|\bcpu\b|software/i.test(String(adapter ?? ""));
}

function mdCell(s) {
  return String(s ?? "–").replace(/\|/g, "\\|").replace(/\n/g, " ");
}

// ---------------------------------------------------------------------------------------------
// Markdown

function markdown(r) {
  const L = [];
  const b = r.browser;
  const date = r.date.slice(0, 10);
  L.push(`Commit \`${r.commit ?? "unknown"}\`${r.commit_dirty ? " (with uncommitted changes)" : ""}, ${date}. Rerun with \`./build.sh bench\`.`);
  L.push("");
  L.push("### Machine");
  L.push("");
  L.push(`- CPU: ${r.machine.cpu}, ${r.machine.cores} cores, ${r.machine.memory_gib} GiB memory; ${r.machine.os}.`);
  if (b) {
    L.push(`- Browser: ${b.browser ?? "Chromium"}, headless (\`${(b.browser_flags ?? []).join(" ")}\`).`);
    const ai = b.adapter_info;
    const aiText = ai
      ? ` The page's adapter: ${[ai.vendor, ai.architecture, ai.description].filter(Boolean).join(" / ") || "unnamed"}` +
        `${ai.isFallbackAdapter ? " (fallback adapter)" : ""}; shader-f16 ${ai.shaderF16 ? "yes" : "no"}, subgroups ${ai.subgroups ? "yes" : "no"}.`
      : "";
    L.push(`- WebGPU adapter as llama-wgpu reports it: \`${(b.adapter ?? "unknown").trim()}\`.${aiText}`);
    if (b.cpu_engine) {
      const c = b.cpu_engine;
      const bits = [];
      if (c.adapter) bits.push(`\`${c.adapter}\` by default (${threadsText(c.threads)}: every core of the cross-origin isolated page)`);
      if (c.one_thread?.adapter) bits.push(`\`${c.one_thread.adapter}\` with \`threads: 1\``);
      if (bits.length) L.push(`- llama-wgpu's CPU engine in the browser (wasm SIMD128): ${bits.join("; ")}.`);
    }
    if (b.auto) {
      L.push(`- llama-wgpu's default (\`device: "auto"\`) chose **${DEVICE_NAMES[b.auto.device] ?? b.auto.device}** here: ${mdCell(b.auto.device_reason)}.`);
    }
    if (b.wllama) {
      const w = b.wllama;
      const threads = [finite(w.threads) ? `${threadsText(w.threads)} (navigator.hardwareConcurrency ${w.hardware_concurrency ?? "?"})` : null, finite(w.threads_1) ? threadsText(w.threads_1) : null]
        .filter(Boolean)
        .join(" and ");
      L.push(
        `- wllama ${w.version}${w.libllama ? ` (llama.cpp ${w.libllama})` : ""}: ${threads || "? threads"},` +
          ` ${w.multithread ? "multi-thread build" : "single-thread build"},` +
          ` page ${w.cross_origin_isolated ? "cross-origin isolated" : "NOT cross-origin isolated"}; weights on ${w.backend ?? "?"}` +
          (w.backend === "CPU" ? " (llama.cpp's load log names only CPU buffers)" : "") +
          (w.adapter_shader_f16 === false ? ": its WebGPU backend needs shader-f16, which this adapter lacks, so it runs on the CPU." : "."),
      );
    }
    const before = b.machine_state?.before;
    if (before) {
      const p = before.cpu_pressure;
      L.push(
        `- Before the browser run: load average ${before.load_average.map((x) => x.toFixed(2)).join(" ")}` +
          (p ? `, CPU pressure ${num(p.some_avg10, 0)}% (10 s) / ${num(p.some_avg60, 0)}% (60 s) of the time some task waited for a CPU` : "") +
          ". Other work on the machine slows both engines, wllama's spinning threads most; the table gives the CPU pressure " +
          "(10 s average, the benchmark's own threads included) at the end of each run.",
      );
    }
  }
  for (const [key, label] of [["gpu", "Native GPU adapter"], ["cpu", "Native CPU engine"]]) {
    if (r.native[key]?.adapter) L.push(`- ${label}: \`${r.native[key].adapter}\`.`);
  }
  if (r.kernels?.adapter) L.push(`- Kernel probes adapter: \`${r.kernels.adapter}\`.`);
  const adapters = [b?.adapter, r.native.gpu?.adapter, r.kernels?.adapter].filter(Boolean);
  if (adapters.some(isEmulated)) {
    L.push("");
    L.push(
      "> The GPU figures below come from an emulated adapter (a GPU implemented on the CPU, e.g. SwiftShader or " +
        "lavapipe). They are good for comparing kernels and engines on this machine, not as what a real GPU does.",
    );
  }

  if (b) {
    const labels = Object.keys(b.models ?? {});
    L.push("");
    L.push("### In the browser: llama-wgpu (WebGPU, CPU engine) vs wllama");
    L.push("");
    L.push(
      `${b.prompt_tokens}-token prompt, ${b.gen_tokens} tokens generated greedily (EOS ignored), ` +
        `median of ${b.runs} run${b.runs === 1 ? "" : "s"} (min–max)${b.quick ? "; **quick mode**: too few tokens for the rates to mean much" : ""}. ` +
        "Engines alternate run by run, each in a fresh page. Load is a first visit: download from the same local server, " +
        "store in the browser's cache, load into the engine. Prefill and TTFT are the engines' own clocks " +
        "(llama-wgpu: `engine.stats()`; wllama: llama.cpp's `timings`). llama-wgpu runs with `device: \"gpu\"` " +
        "(WebGPU) and with `device: \"cpu\"` (its CPU engine) on its default threads (every core) and with `threads: 1`; " +
        "wllama with `n_threads` navigator.hardwareConcurrency and 1. The CPU engine is compared with wllama at the same " +
        "thread count (its own `stats().adapter` against `wllama.getNumThreads()`). Ratios are llama-wgpu / wllama: " +
        "above 1 is better for llama-wgpu in tok/s, worse in seconds.",
    );
    L.push("");
    L.push("| model | engine | load s (compile) | prefill tok/s | decode tok/s | TTFT s | encode µs / token | CPU pressure after each run |");
    L.push("|---|---|---:|---:|---:|---:|---:|---:|");
    const pressure = (e) => {
      const v = (e?.cpu_pressure_after_each_run ?? []).filter(finite);
      return v.length ? v.map((x) => `${x.toFixed(0)}%`).join(", ") : "–";
    };
    for (const label of labels) {
      const size = b.models[label]?.bytes ? ` (${(b.models[label].bytes / 1e6).toFixed(0)} MB)` : "";
      let first = true;
      const name = () => {
        const s = first ? `${label}${size}` : "";
        first = false;
        return s;
      };
      for (const [kind, key] of BROWSER_LAYOUT) {
        if (kind === "row") {
          const e = b.engines?.[key]?.[label];
          if (!e) continue;
          const compile = finite(med(e.compile_s)) ? ` (${num(med(e.compile_s), 2)})` : "";
          L.push(`| ${name()} | ${browserEngineName(b, key, label)} | ${spread(e.load_s)}${compile} | ${spread(e.prefill_tokens_per_s)} | ${spread(e.decode_tokens_per_s)} | ${spread(e.ttft_s)} | ${spread(e.encode_us_per_token, 0)} | ${pressure(e)} |`);
        } else {
          const q = b.ratios?.[label]?.[key];
          if (!q) continue;
          L.push(`| ${name()} | *ratio ${pairName(b, key, label)}* | *${ratio(q.load_s)}* | *${ratio(q.prefill)}* | *${ratio(q.decode)}* | *${ratio(q.ttft)}* | | |`);
        }
      }
    }
    const phases = labels
      .map((label) => {
        const rows = [];
        for (const [key, into, compile] of [["ours", "into GPU memory", "kernel compilation"], ["ours_cpu", "into wasm memory", "engine setup"]]) {
          const p = b.engines?.[key]?.[label]?.load_phases?.[0];
          if (!p) continue;
          const part = (k) => (p[k] ? Math.max(0, p[k].last_s - p[k].first_s) : null);
          const bits = [];
          if (p.download) bits.push(`download ${num(p.download.last_s)} s`);
          if (p.load) bits.push(`${into} ${num(part("load"))} s`);
          if (p.compile) bits.push(`${compile} ${num(part("compile"))} s`);
          if (bits.length) rows.push(`${label} ${shortName(b, key, label)}: ${bits.join(", ")}`);
        }
        return rows.length ? rows.join("; ") : null;
      })
      .filter(Boolean);
    if (phases.length) {
      L.push("");
      L.push(`Where llama-wgpu's load time went (first run, from its progress events): ${phases.join("; ")}.`);
    }
    const texts = [];
    for (const label of labels) {
      for (const key of BROWSER_ENGINES) {
        const e = b.engines?.[key]?.[label];
        if (e?.text != null) texts.push({ label, key, name: browserEngineName(b, key, label), text: e.text });
      }
    }
    if (texts.length) {
      L.push("");
      L.push(`Greedy continuation of "${b.ref_prompt ?? "Once upon a time"}" (${b.ref_tokens ?? 30} tokens), so that a fast wrong answer shows:`);
      L.push("");
      L.push("| model | engine | text | same as llama.cpp (wllama) |");
      L.push("|---|---|---|---|");
      for (const { label, key, name, text } of texts) {
        const llama = texts.find((x) => x.label === label && x.key === "wllama") ?? texts.find((x) => x.label === label && x.key.startsWith("wllama"));
        const same = key.startsWith("wllama") || !llama ? "–" : llama.text === text ? "yes" : "**no**";
        L.push(`| ${label} | ${name} | ${mdCell(JSON.stringify(text))} | ${same} |`);
      }
    }
    const agree = [];
    for (const label of labels) {
      for (const pair of BROWSER_PAIRS) {
        const [x, y] = pair.split("/");
        const a = b.engines?.[x]?.[label];
        const c = b.engines?.[y]?.[label];
        if (!a || !c) continue;
        const same = a.bench_text_head != null && a.bench_text_head === c.bench_text_head;
        agree.push(`${label} ${shortName(b, x, label)} vs ${shortName(b, y, label)}: ${same ? "the same" : "**different**"}`);
      }
    }
    if (agree.length) {
      L.push("");
      L.push(`The first 120 characters of the benchmark generations: ${agree.join("; ")}.`);
    }
    if (b.errors?.length) {
      L.push("");
      L.push(`**${b.errors.length} run(s) failed:** ` + b.errors.map((e) => `${e.engine} ${e.model} run ${e.run}: ${mdCell(e.error)}`).join("; "));
    }
  }

  const native = [
    ["gpu", "llama-wgpu, GPU"],
    ["gpu_lora", "llama-wgpu, GPU + rank-16 LoRA"],
    ["cpu", "llama-wgpu, CPU engine"],
    ["cpu_lora", "llama-wgpu, CPU engine + rank-16 LoRA"],
    ["reference", "llama-wgpu, f32 reference"],
    ["llama_cpp", "llama.cpp, CPU"],
  ].filter(([k]) => r.native[k]);
  if (native.length) {
    L.push("");
    L.push("### Native (command line)");
    L.push("");
    const n0 = r.native[native[0][0]];
    L.push(
      `\`llama-wgpu bench --json --device gpu|cpu|reference\`: ${n0.prompt_tokens}-token prompt, ${n0.gen_tokens} generated, median of ${n0.repeats} (min–max), ` +
        "unless the tokens column says otherwise (the f32 reference runs shorter); load once per process. " +
        "The CPU engine is the quantized SIMD one users get without a GPU; the f32 reference is the slow decoder the tests compare against. " +
        "Embeddings/s: `engine.embed` of inputs as long as the prompt, 4 per call, the default model pooled by its last token (any pooling costs the same). " +
        "\"+ rank-16 LoRA\": the same with `--lora`, a random rank-16 adapter (`llama-wgpu synth-lora`) on every projection of every layer.",
    );
    L.push("");
    L.push("| engine | device | tokens (prompt + generated × runs) | load s | prefill tok/s | decode tok/s | TTFT s | embeddings/s (prompt-long inputs) | GPU memory | CPU engine memory | host peak RSS after load | dispatches / token | submits / token | readback / token | encode µs / token |");
    L.push("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (const [k, name] of native) {
      const n = r.native[k];
      L.push(
        `| ${name} | ${mdCell(n.adapter)} | ${n.prompt_tokens ?? "?"} + ${n.gen_tokens ?? "?"} × ${n.repeats ?? "?"} | ${spread(n.load_s)} | ${spread(n.prefill_tokens_per_s)} | ${spread(n.decode_tokens_per_s)} | ${spread(n.ttft_s, 3)} | ${spread(n.embeddings?.embeddings_per_s, 2)} | ` +
          `${n.gpu_bytes ? mb(n.gpu_bytes) : "–"} | ${n.cpu_bytes ? mb(n.cpu_bytes) : "–"} | ${mb(n.host_peak_rss_bytes_after_load)} | ${n.dispatches_per_token ?? "–"} | ${n.submits_per_token ?? "–"} | ` +
          `${finite(n.readback_bytes_per_token) ? `${n.readback_bytes_per_token} B` : "–"} | ${n.encode_us_per_token ? num(n.encode_us_per_token, 0) : "–"} |`,
      );
    }
  }

  if (r.models?.length) {
    L.push("");
    L.push("### Other architectures (native)");
    L.push("");
    const m0 = r.models[0];
    L.push(
      `\`llama-wgpu bench --json\` on each model: ${m0.prompt_tokens}-token prompt, ${m0.gen_tokens} generated, median of ${m0.repeats} (min–max).`,
    );
    L.push("");
    L.push("| model | engine | device | load s | prefill tok/s | decode tok/s | GPU memory | CPU engine memory | dispatches / token |");
    L.push("|---|---|---|---:|---:|---:|---:|---:|---:|");
    for (const m of r.models) {
      L.push(
        `| ${mdCell(m.file)} | ${DEVICE_NAMES[m.device] ?? mdCell(m.device)} | ${mdCell(m.adapter)} | ${spread(m.load_s)} | ${spread(m.prefill_tokens_per_s)} | ${spread(m.decode_tokens_per_s)} | ` +
          `${m.gpu_bytes ? mb(m.gpu_bytes) : "–"} | ${m.cpu_bytes ? mb(m.cpu_bytes) : "–"} | ${m.dispatches_per_token ?? "–"} |`,
      );
    }
  }

  const k = r.kernels;
  if (k) {
    L.push("");
    L.push("### Kernels");
    L.push("");
    L.push(
      `On \`${k.adapter ?? "?"}\`. Copy ceiling (a plain copy kernel's read bandwidth): **${num(k.copy_gbps)} GB/s**. ` +
        "Matvec GB/s counts the bytes it reads and writes (the quantized weights, x and y) per second; the share is of that ceiling. Small matrices fit in the CPU caches the emulator runs on, so they can beat a copy through memory.",
    );
    if (k.matvec?.length) {
      L.push("");
      L.push("| matvec | rows × cols | ms | GB/s | share of copy |");
      L.push("|---|---:|---:|---:|---:|");
      for (const m of k.matvec) {
        const share = finite(m.of_copy) ? m.of_copy : finite(m.gbps) && finite(k.copy_gbps) && k.copy_gbps > 0 ? m.gbps / k.copy_gbps : null;
        L.push(`| ${m.type} | ${m.rows} × ${m.cols} | ${num(m.ms, 3)} | ${num(m.gbps)} | ${finite(share) ? `${(share * 100).toFixed(0)}%` : "–"} |`);
      }
    }
    if (k.matmul?.length) {
      L.push("");
      L.push("| matmul | rows × cols × tokens | ms | GFLOP/s |");
      L.push("|---|---:|---:|---:|");
      for (const m of k.matmul) {
        L.push(`| ${m.type} | ${m.rows} × ${m.cols} × ${m.tokens} | ${num(m.ms, 3)} | ${num(m.gflops)} |`);
      }
    }
  }

  if (r.chart) {
    L.push("");
    L.push(`![Prefill and decode tokens per second, per engine and model](${r.chart})`);
  }

  L.push("");
  L.push("### How to rerun");
  L.push("");
  L.push("```sh");
  L.push("./build.sh bench    # everything: browser side by side, native, kernels; then this report");
  L.push("node bench/browser.mjs --out DIR --model q4_1=MODEL.gguf [--model q8_0=MODEL.gguf] [--runs 3] [--quick]");
  L.push("node bench/report.mjs --out DIR [--update-benchmarks BENCHMARKS.md]");
  L.push("```");
  return L.join("\n") + "\n";
}

// ---------------------------------------------------------------------------------------------
// Chart: grouped bars, prefill and decode panels, log scale (the figures span 100x and more).

// The browser series' names get their thread counts from the results (seriesName).
const SERIES = [
  { key: "ours", name: "llama-wgpu, browser (WebGPU)", color: "#2563eb" },
  { key: "ours_cpu", name: "llama-wgpu, browser (CPU engine, all threads)", color: "#0891b2" },
  { key: "wllama", name: "wllama, browser (CPU wasm, all threads)", color: "#ea580c" },
  { key: "ours_cpu_1", name: "llama-wgpu, browser (CPU engine, 1 thread)", color: "#22d3ee" },
  { key: "wllama_1", name: "wllama, browser (CPU wasm, 1 thread)", color: "#fb923c" },
  { key: "gpu", name: "llama-wgpu, native GPU", color: "#16a34a" },
  { key: "cpu", name: "llama-wgpu, native CPU engine", color: "#7c3aed" },
  { key: "reference", name: "llama-wgpu, native f32 reference", color: "#9ca3af" },
  { key: "llama_cpp", name: "llama.cpp, native CPU", color: "#dc2626" },
];

function threadsText(t) {
  return finite(t) ? `${t} thread${t === 1 ? "" : "s"}` : "? threads";
}

// A browser row's threads: on `label` when given (its first run), else the row's first model's.
function rowThreads(b, key, label) {
  const t = (label ? b.engines?.[key]?.[label]?.info?.threads : null) ?? b.threads?.[key] ?? (key === "ours_cpu" ? b.cpu_engine?.threads : null);
  return finite(t) ? t : key.endsWith("_1") ? 1 : null;
}

// Short names for ratios and notes: "WebGPU", "CPU engine, 2 threads", "wllama, 1 thread".
function shortName(b, key, label) {
  if (key === "ours") return "WebGPU";
  return `${key.startsWith("wllama") ? "wllama" : "CPU engine"}, ${threadsText(rowThreads(b, key, label))}`;
}

// A ratio line's name: "WebGPU / wllama, 2 threads", "CPU engine / wllama, 2 threads each".
function pairName(b, pair, label) {
  const [x, y] = pair.split("/");
  const tx = rowThreads(b, x, label);
  const ty = rowThreads(b, y, label);
  if (x === "ours") return `WebGPU / wllama, ${threadsText(ty)}`;
  if (tx === ty) return `CPU engine / wllama, ${threadsText(tx)} each`;
  return `CPU engine, ${threadsText(tx)} / wllama, ${threadsText(ty)} (**not the same thread count**)`;
}

// A browser row's name: the library, its device and threads.
function browserEngineName(b, key, label) {
  if (key === "ours") return "llama-wgpu, WebGPU";
  if (key.startsWith("ours_cpu")) return `llama-wgpu, CPU engine, ${threadsText(rowThreads(b, key, label))}`;
  return `wllama, ${threadsText(rowThreads(b, key, label))}`;
}

// A chart series' name, with the browser rows' thread counts where the results have them.
function seriesName(r, s) {
  const b = r.browser;
  if (!b || !/^(ours_cpu|wllama)/.test(s.key)) return s.name;
  const t = rowThreads(b, s.key);
  if (!finite(t)) return s.name;
  return s.key.startsWith("wllama") ? `wllama, browser (CPU wasm, ${threadsText(t)})` : `llama-wgpu, browser (CPU engine, ${threadsText(t)})`;
}

function chartGroups(r) {
  const groups = [];
  const b = r.browser;
  if (b) {
    for (const label of Object.keys(b.models ?? {})) {
      const bars = [];
      for (const key of BROWSER_ENGINES) {
        const e = b.engines?.[key]?.[label];
        if (e) bars.push({ key, prefill: med(e.prefill_tokens_per_s), decode: med(e.decode_tokens_per_s) });
      }
      if (bars.length) groups.push({ title: `browser · ${label}`, bars });
    }
  }
  const bars = [];
  for (const key of ["gpu", "cpu", "reference", "llama_cpp"]) {
    const n = r.native[key];
    if (n) bars.push({ key, prefill: med(n.prefill_tokens_per_s), decode: med(n.decode_tokens_per_s) });
  }
  const model = Object.values(r.native).find((n) => n?.model)?.model;
  if (bars.length) groups.push({ title: `native${model ? ` · ${path.basename(String(model))}` : ""}`, bars });
  return groups;
}

function esc(s) {
  return String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

function chartSvg(r) {
  const groups = chartGroups(r);
  const used = SERIES.filter((s) => groups.some((g) => g.bars.some((b) => b.key === s.key))).map((s) => ({ ...s, name: seriesName(r, s) }));
  const barW = 34;
  const barGap = 6;
  const groupGap = 40;
  const left = 64;
  const right = 24;
  const panelH = 220;
  const top = 84;
  const panelGap = 78;
  const groupWidths = groups.map((g) => Math.max(g.bars.length * barW + (g.bars.length - 1) * barGap, g.title.length * 6.5));
  const content = groupWidths.reduce((a, b) => a + b, 0) + groupGap * (groups.length + 1);
  const plotW = Math.max(560, content);
  const legendColW = Math.max(...used.map((s) => s.name.length * 6.8 + 34), 100);
  const legendCols = Math.max(1, Math.min(used.length, Math.floor(plotW / legendColW)));
  const legendRows = Math.ceil(used.length / legendCols);
  const width = left + plotW + right;
  const height = top + 2 * panelH + panelGap + 50 + legendRows * 22;
  const out = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif" font-size="12">`);
  out.push(`<rect width="${width}" height="${height}" fill="#ffffff"/>`);
  out.push(`<text x="${width / 2}" y="24" text-anchor="middle" font-size="16" font-weight="600" fill="#111827">Tokens per second (higher is better, log scale)</text>`);
  const sub = [r.commit ? `commit ${r.commit}` : null, r.date?.slice(0, 10), r.browser?.adapter ? `browser adapter: ${r.browser.adapter.trim()}` : null]
    .filter(Boolean)
    .join(" · ");
  out.push(`<text x="${width / 2}" y="44" text-anchor="middle" fill="#4b5563">${esc(sub)}</text>`);

  const panels = [
    { key: "prefill", title: "Prefill" },
    { key: "decode", title: "Decode" },
  ];
  panels.forEach((panel, pi) => {
    const y0 = top + pi * (panelH + panelGap); // panel top
    const values = groups.flatMap((g) => g.bars.map((b) => b[panel.key])).filter((v) => finite(v) && v > 0);
    const minV = values.length ? Math.min(...values) : 1;
    const maxV = values.length ? Math.max(...values) : 10;
    let dLo = Math.floor(Math.log10(minV));
    let dHi = Math.ceil(Math.log10(maxV));
    if (dHi === dLo) dHi += 1;
    if (Math.log10(maxV) > dHi - 0.15) dHi += 1; // room for the value label above the tallest bar
    const y = (v) => y0 + panelH - ((Math.log10(v) - dLo) / (dHi - dLo)) * panelH;
    out.push(`<text x="${left}" y="${y0 - 10}" font-size="14" font-weight="600" fill="#111827">${panel.title} (tok/s)</text>`);
    for (let d = dLo; d <= dHi; d++) {
      for (const m of [1, 2, 5]) {
        const v = m * 10 ** d;
        if (v < 10 ** dLo || v > 10 ** dHi) continue;
        const yy = y(v).toFixed(1);
        const major = m === 1;
        out.push(`<line x1="${left}" x2="${left + plotW}" y1="${yy}" y2="${yy}" stroke="${major ? "#d1d5db" : "#f3f4f6"}"/>`);
        out.push(`<text x="${left - 6}" y="${(+yy + 4).toFixed(1)}" text-anchor="end" fill="#6b7280">${v >= 1 ? v : v.toPrecision(1)}</text>`);
      }
    }
    out.push(`<line x1="${left}" x2="${left}" y1="${y0}" y2="${y0 + panelH}" stroke="#9ca3af"/>`);
    out.push(`<line x1="${left}" x2="${left + plotW}" y1="${y0 + panelH}" y2="${y0 + panelH}" stroke="#9ca3af"/>`);
    let x = left + groupGap + (plotW - content) / 2;
    groups.forEach((g, gi) => {
      const barsW = g.bars.length * barW + (g.bars.length - 1) * barGap;
      g.bars.forEach((bar, bi) => {
        const s = used.find((q) => q.key === bar.key);
        const bx = x + (groupWidths[gi] - barsW) / 2 + bi * (barW + barGap);
        const v = bar[panel.key];
        if (finite(v) && v > 0) {
          const by = Math.min(y(v), y0 + panelH - 1);
          out.push(`<rect x="${bx}" y="${by.toFixed(1)}" width="${barW}" height="${(y0 + panelH - by).toFixed(1)}" fill="${s.color}"><title>${esc(`${g.title}, ${s.name}: ${num(v)} tok/s`)}</title></rect>`);
          out.push(`<text x="${bx + barW / 2}" y="${(by - 4).toFixed(1)}" text-anchor="middle" font-size="11" fill="#111827">${num(v)}</text>`);
        } else {
          out.push(`<text x="${bx + barW / 2}" y="${y0 + panelH - 4}" text-anchor="middle" font-size="11" fill="#6b7280">n/a</text>`);
        }
      });
      out.push(`<text x="${x + groupWidths[gi] / 2}" y="${y0 + panelH + 16}" text-anchor="middle" fill="#374151">${esc(g.title)}</text>`);
      x += groupWidths[gi] + groupGap;
    });
  });

  const ly = top + 2 * panelH + panelGap + 34;
  used.forEach((s, i) => {
    const col = i % legendCols;
    const row = Math.floor(i / legendCols);
    const lx = left + col * legendColW;
    const yy = ly + row * 22;
    out.push(`<rect x="${lx}" y="${yy - 10}" width="14" height="14" fill="${s.color}"/>`);
    out.push(`<text x="${lx + 20}" y="${yy + 1}" fill="#111827">${esc(s.name)}</text>`);
  });
  out.push("</svg>");
  return out.join("\n") + "\n";
}

// ---------------------------------------------------------------------------------------------

function updateBenchmarks(file, md, chartFile) {
  let body = md;
  // The chart is copied next to FILE (bench-results/ is not committed, FILE is), and the link
  // in results.md (relative to DIR) points at the copy.
  const dir = path.dirname(file);
  if (chartFile) {
    const copy = path.join(dir, `${path.basename(file, path.extname(file))}-chart.svg`);
    fs.copyFileSync(chartFile, copy);
    process.stderr.write(`report.mjs: copied the chart to ${copy}\n`);
    body = body.replace(/\]\(chart\.svg\)/g, `](${path.basename(copy)})`);
  }
  const section = `${START}\n${body.trimEnd()}\n${END}`;
  let text = fs.existsSync(file) ? fs.readFileSync(file, "utf8") : "# Benchmarks\n";
  const a = text.indexOf(START);
  const b = text.indexOf(END);
  if (a >= 0 && b > a) {
    text = text.slice(0, a) + section + text.slice(b + END.length);
  } else {
    if (a >= 0 || b >= 0) throw new Error(`${file}: the markers ${START} and ${END} are not in order`);
    text = `${text.trimEnd()}\n\n## Latest results\n\n${section}\n`;
  }
  fs.writeFileSync(file, text);
}

function main() {
  const o = parseArgs(process.argv.slice(2));
  if (!fs.existsSync(o.out)) usage(`${o.out} does not exist`);
  const browser = readJson(o.out, "browser.json");
  const native = {
    gpu: readJson(o.out, "native-gpu.json"),
    gpu_lora: readJson(o.out, "native-gpu-lora.json"),
    cpu: readJson(o.out, "native-cpu.json"),
    cpu_lora: readJson(o.out, "native-cpu-lora.json"),
    reference: readJson(o.out, "native-reference.json"),
    llama_cpp: readJson(o.out, "native-llama-cpp.json"),
  };
  const kernels = readJson(o.out, "kernels.json");
  // models/<file>.<device>.json: `llama-wgpu bench --json` on the other architectures' models.
  const modelsDir = path.join(o.out, "models");
  const models = fs.existsSync(modelsDir)
    ? fs
        .readdirSync(modelsDir)
        .filter((f) => f.endsWith(".json"))
        .sort()
        .map((f) => {
          const [, name, device] = /^(.*)\.(gpu|cpu|reference)\.json$/.exec(f) ?? [null, f.replace(/\.json$/, ""), null];
          const run = readJson(modelsDir, f);
          return { file: `${name}.gguf`, ...run, device: run.device ?? device };
        })
        .sort((x, y) => x.file.localeCompare(y.file) || deviceOrder(x.device) - deviceOrder(y.device))
    : [];
  if (!browser && !Object.values(native).some(Boolean) && !kernels) {
    throw new Error(`${o.out} holds none of browser.json, native-{gpu,cpu,reference,llama-cpp}.json, kernels.json`);
  }
  for (const k of Object.keys(native)) if (!native[k]) delete native[k];
  const status = git(["status", "--porcelain", "--untracked-files=no"]);
  const results = {
    // build.sh bench fixes the commit when it starts (HEAD may move while the bench runs).
    commit: process.env.BENCH_COMMIT || git(["rev-parse", "--short", "HEAD"]),
    commit_dirty: status == null ? null : status.length > 0,
    date: new Date().toISOString(),
    machine: machine(browser),
    browser,
    native,
    kernels,
    models,
    chart: "chart.svg",
  };
  const hasBars = chartGroups(results).length > 0;
  if (!hasBars) results.chart = null;
  const md = markdown(results);
  const chartFile = path.join(o.out, "chart.svg");
  if (hasBars) fs.writeFileSync(chartFile, chartSvg(results));
  else fs.rmSync(chartFile, { force: true });
  fs.writeFileSync(path.join(o.out, "results.md"), md);
  fs.writeFileSync(path.join(o.out, "results.json"), JSON.stringify(results, null, 2) + "\n");
  const written = ["results.json", "results.md", ...(hasBars ? ["chart.svg"] : [])];
  process.stderr.write(`report.mjs: wrote ${written.map((f) => path.join(o.out, f)).join(", ")}\n`);
  if (o.update) {
    updateBenchmarks(o.update, md, hasBars ? chartFile : null);
    process.stderr.write(`report.mjs: updated ${o.update}\n`);
  }
}

try {
  main();
} catch (err) {
  process.stderr.write(`report.mjs: ${err.message}\n`);
  process.exit(1);
}

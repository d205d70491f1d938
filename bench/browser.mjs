#!/usr/bin/env node
// Side-by-side browser benchmark in headless Chromium, on the same GGUF files served by
// www/serve.mjs: llama-wgpu's worker engine on WebGPU (device "gpu") and on its CPU engine
// (device "cpu", wasm SIMD128) with its default threads (every core) and with one, against wllama
// (llama.cpp in wasm, CPU) with navigator.hardwareConcurrency threads and with one. Which device
// llama-wgpu's default ("auto") chooses in this browser is recorded too.
//
//   node bench/browser.mjs --out DIR --model q4_1=PATH [--model q8_0=PATH ...]
//        [--runs 3] [--prompt-tokens 128] [--gen-tokens 128] [--ref-tokens 30] [--quick]
//        [--pkg DIR] [--engines ours,ours_cpu,ours_cpu_1,wllama,wllama_1] [--ours-cache true|false]
//
// Engines: ours (llama-wgpu, WebGPU), ours_cpu (llama-wgpu, CPU engine, default threads: all
// cores), ours_cpu_1 (the CPU engine with `threads: 1`), wllama (n_threads:
// navigator.hardwareConcurrency), wllama_1 (n_threads: 1). Ratios: ours/wllama, ours_cpu/wllama
// (the thread counts, from stats().adapter and wllama.getNumThreads(), must be equal) and
// ours_cpu_1/wllama_1 (both must run 1 thread).
// --quick: 1 run, an 8-token prompt, 4 generated tokens (CI). For each model and run, the engines
// alternate (ours, ours_cpu, ours_cpu_1, wllama, wllama_1, ours, ...) so that drift of the machine
// hits all, each in a fresh page. Writes DIR/browser.json (see bench/README.md) and prints a summary.
//
// Load time: each run is a first visit. llama-wgpu is created with `cache: true` (its default)
// after deleting the model from its Cache API store; wllama with `useCache: true` (its default)
// after clearing its cache. Both download the file from the same local server, store it in the
// browser, and load it into their engine; the clock runs from the call to the resolved promise.

import { spawn, execFileSync } from "node:child_process";
import { createRequire } from "node:module";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { CHROMIUM_ARGS, startServer as startServeMjs } from "../tests/browser/helpers.mjs";
import { forEachOption } from "../www/cli-options.mjs";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, "..");
const CACHE = process.env.LLAMA_WGPU_CACHE || path.join(os.homedir(), ".cache", "llama-wgpu");
const WLLAMA_VERSION = "3.13.0";
const BENCH_TOOLS = path.join(CACHE, "bench-tools");
const WLLAMA_DIR = path.join(BENCH_TOOLS, "node_modules", "@wllama", "wllama");
const PLAYWRIGHT = path.join(CACHE, "npm-tools", "node_modules", "playwright-core");
const CHROMIUM = "/usr/bin/chromium";
// The rows, in the order they run within a model's run.
const ENGINES = ["ours", "ours_cpu", "ours_cpu_1", "wllama", "wllama_1"];
const OURS_DEVICE = { ours: "gpu", ours_cpu: "cpu", ours_cpu_1: "cpu" };
// The threads each row asks for: undefined is the library's default (ours_cpu: every core the page
// has) or, for wllama, navigator.hardwareConcurrency (set in the page).
const THREADS = { ours_cpu_1: 1, wllama_1: 1 };
const isOurs = (engine) => engine in OURS_DEVICE;
const isWllama = (engine) => engine === "wllama" || engine === "wllama_1";
// The ratios: llama-wgpu's row over wllama's. The CPU pairs must run as many threads each.
const PAIRS = [["ours", "wllama"], ["ours_cpu", "wllama"], ["ours_cpu_1", "wllama_1"]];
const SAME_THREADS = new Set(["ours_cpu/wllama", "ours_cpu_1/wllama_1"]);
// Threads of our CPU engine, from its description ("CPU engine (simd128, 1 thread)").
const threadsOf = (adapter) => Number(/(\d+) threads?\b/.exec(String(adapter ?? ""))?.[1]) || null;


function usage(message) {
  if (message) process.stderr.write(`browser.mjs: ${message}\n`);
  process.stderr.write(
    "usage: node bench/browser.mjs --out DIR --model LABEL=PATH [--model LABEL=PATH ...]\n" +
      "       [--runs N] [--prompt-tokens N] [--gen-tokens N] [--ref-tokens N] [--quick]\n" +
      "       [--pkg DIR] [--engines ours,ours_cpu,ours_cpu_1,wllama,wllama_1] [--ours-cache true|false]\n",
  );
  process.exit(message ? 2 : 0);
}

function parseArgs(argv) {
  const o = {
    out: null,
    models: [],
    runs: 3,
    promptTokens: 128,
    genTokens: 128,
    refTokens: 30,
    quick: false,
    pkg: path.join(REPO, "pkg"),
    engines: [...ENGINES],
    oursCache: true,
  };
  const given = new Set();
  forEachOption(argv, usage, (arg, take) => {
    const int = (name) => {
      const n = Number(take());
      if (!Number.isInteger(n) || n < 0) usage(`${name} wants a whole number`);
      given.add(name);
      return n;
    };
    switch (arg) {
      case "--out": o.out = path.resolve(take()); break;
      case "--model": {
        const pair = take();
        const at = pair.indexOf("=");
        if (at <= 0) usage(`--model wants LABEL=PATH, got ${pair}`);
        const label = pair.slice(0, at);
        if (!/^[A-Za-z0-9_.-]+$/.test(label)) usage(`model label ${label}: letters, digits, _ . - only`);
        if (o.models.some((m) => m.label === label)) usage(`model label ${label} given twice`);
        const file = path.resolve(pair.slice(at + 1));
        if (!fs.existsSync(file)) usage(`${file} does not exist`);
        o.models.push({ label, file });
        break;
      }
      case "--runs": o.runs = int("runs"); break;
      case "--prompt-tokens": o.promptTokens = int("promptTokens"); break;
      case "--gen-tokens": o.genTokens = int("genTokens"); break;
      case "--ref-tokens": o.refTokens = int("refTokens"); break;
      case "--quick": o.quick = true; break;
      case "--pkg": o.pkg = path.resolve(take()); break;
      case "--engines": {
        const list = take().split(",").filter(Boolean);
        if (!list.length || list.some((e) => !ENGINES.includes(e))) usage(`--engines: some of ${ENGINES.join(", ")}`);
        o.engines = ENGINES.filter((e) => list.includes(e)); // in the run order above, whatever the list's
        break;
      }
      case "--ours-cache": {
        const v = take();
        if (v !== "true" && v !== "false") usage("--ours-cache true|false");
        o.oursCache = v === "true";
        break;
      }
      case "--help": case "-h": usage(); break;
      default: usage(`unknown argument ${arg}`);
    }
    });
  if (!o.out) usage("--out is required");
  if (!o.models.length) usage("at least one --model LABEL=PATH is required");
  if (o.quick) {
    if (!given.has("runs")) o.runs = 1;
    if (!given.has("promptTokens")) o.promptTokens = 8;
    if (!given.has("genTokens")) o.genTokens = 4;
  }
  if (o.runs < 1 || o.promptTokens < 1 || o.genTokens < 2) usage("need runs >= 1, prompt tokens >= 1, gen tokens >= 2");
  return o;
}

function log(message) {
  process.stderr.write(`[bench] ${message}\n`);
}

// wllama goes into the cache folder, not the checkout; npm is only asked when it is missing.
function ensureWllama() {
  const pkgJson = path.join(WLLAMA_DIR, "package.json");
  const have = fs.existsSync(pkgJson) ? JSON.parse(fs.readFileSync(pkgJson, "utf8")).version : null;
  if (have !== WLLAMA_VERSION || !fs.existsSync(path.join(WLLAMA_DIR, "esm", "index.js"))) {
    log(`npm: installing @wllama/wllama@${WLLAMA_VERSION} into ${BENCH_TOOLS}`);
    fs.mkdirSync(BENCH_TOOLS, { recursive: true });
    execFileSync("npm", ["install", "--silent", "--no-audit", "--no-fund", "--prefix", BENCH_TOOLS, `@wllama/wllama@${WLLAMA_VERSION}`], {
      stdio: "inherit",
    });
  }
  for (const f of ["esm/index.js", "esm/wasm/wllama.wasm"]) {
    if (!fs.existsSync(path.join(WLLAMA_DIR, f))) throw new Error(`${path.join(WLLAMA_DIR, f)} is missing after npm install`);
  }
  return JSON.parse(fs.readFileSync(pkgJson, "utf8")).version;
}

function checkPrerequisites(o) {
  const missing = [];
  for (const f of ["index.js", "worker.js", "llama_wgpu_bg.wasm"]) {
    if (!fs.existsSync(path.join(o.pkg, f))) missing.push(`${path.join(o.pkg, f)} (run ./build.sh build)`);
  }
  if (!fs.existsSync(PLAYWRIGHT)) missing.push(`${PLAYWRIGHT} (run ./build.sh setup)`);
  if (!fs.existsSync(CHROMIUM)) missing.push(`${CHROMIUM} (apt-get install chromium)`);
  if (missing.length) throw new Error(`missing:\n  ${missing.join("\n  ")}`);
}

// www/serve.mjs on a free port serving the models, the package, wllama and the bench page
// (the tests' launcher: same readiness check and shutdown).
function startServer(o) {
  const args = ["--pkg", o.pkg, "--model", o.models[0].file];
  for (const m of o.models) args.push("--serve", `/models/${m.label}.gguf=${m.file}`);
  args.push("--serve", `/wllama/=${path.join(WLLAMA_DIR, "esm")}`);
  args.push("--serve", `/bench/=${path.join(HERE, "page")}`);
  return startServeMjs(args);
}

function cpuDescription() {
  let model = "unknown";
  try {
    const line = fs.readFileSync("/proc/cpuinfo", "utf8").split("\n").find((l) => l.startsWith("model name"));
    if (line) model = line.split(":").slice(1).join(":").trim();
  } catch {}
  return { model, cores: os.cpus().length, memory_gib: +(os.totalmem() / 2 ** 30).toFixed(1) };
}

// CPU pressure (Linux PSI): the share of time some runnable task waited for a CPU. Other work on
// the machine (builds, other sessions, possibly invisible to ps) shows here before the benchmark
// starts; during it, the benchmark's own threads count too.
function cpuPressure() {
  try {
    const line = fs.readFileSync("/proc/pressure/cpu", "utf8").split("\n").find((l) => l.startsWith("some"));
    const get = (k) => Number(new RegExp(`${k}=([\\d.]+)`).exec(line)?.[1]);
    return { some_avg10: get("avg10"), some_avg60: get("avg60"), some_avg300: get("avg300") };
  } catch {
    return null;
  }
}

function machineState() {
  const [l1, l5, l15] = os.loadavg();
  return { load_average: [l1, l5, l15], cpu_pressure: cpuPressure() };
}

function summary(values) {
  const v = values.filter((x) => typeof x === "number" && Number.isFinite(x));
  if (!v.length) return { median: null, min: null, max: null, values };
  const s = [...v].sort((a, b) => a - b);
  const mid = s.length >> 1;
  const median = s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
  return { median, min: s[0], max: s[s.length - 1], values };
}

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: no result after ${Math.round(ms / 1000)} s`)), ms);
    }),
  ]);
}

function fmt(x, digits = 2) {
  return typeof x === "number" && Number.isFinite(x) ? x.toFixed(digits) : "-";
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  checkPrerequisites(o);
  const wllamaVersion = o.engines.some(isWllama) ? ensureWllama() : null;
  fs.mkdirSync(o.out, { recursive: true });
  const { chromium } = createRequire(import.meta.url)(PLAYWRIGHT);
  const started = Date.now();
  const stateStart = machineState();

  const server = await startServer(o);
  log(`server ${server.url}`);
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "llama-wgpu-bench-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
  });

  const results = {}; // engine -> label -> [run results]
  const errors = [];
  let auto = null; // what device "auto" chose in this browser
  const prompts = {}; // label -> prompt text of exactly promptTokens tokens
  let browserVersion = null;
  let env = null;
  try {
    for (const p of context.pages()) await p.close().catch(() => {});
    // Seconds a run may take: load, prompt and generation at a pessimistic 0.5 tok/s on the
    // emulated adapter, the reference text, and slack.
    const budgetMs = (180 + (o.promptTokens / 5 + o.genTokens + o.refTokens) * 2) * 1000;
    if (o.engines.some(isOurs)) {
      // The default device's choice, once: load the first model with no device option.
      const page = await context.newPage();
      try {
        await page.goto(new URL("/bench/index.html", server.url).href);
        const modelUrl = new URL(`/models/${o.models[0].label}.gguf`, server.url).href;
        auto = await withTimeout(
          page.evaluate((a) => import("/bench/bench-page.js").then((m) => m.autoChoice(a)), { modelUrl }),
          budgetMs,
          "auto choice",
        );
        log(`device "auto" chose ${auto.device}: ${auto.device_reason} (${auto.adapter})`);
      } catch (err) {
        errors.push({ engine: "auto", model: o.models[0].label, run: 0, error: err.message.split("\n")[0] });
        log(`FAILED the auto choice: ${err.message}`);
      } finally {
        await page.close().catch(() => {});
      }
    }
    for (const model of o.models) {
      const modelUrl = new URL(`/models/${model.label}.gguf`, server.url).href;
      for (let run = 0; run < o.runs; run++) {
        for (const engine of o.engines) {
          const page = await context.newPage();
          const pageLog = [];
          page.on("console", (m) => pageLog.push(`[console.${m.type()}] ${m.text()}`));
          page.on("pageerror", (e) => pageLog.push(`[pageerror] ${e.stack || e.message}`));
          page.on("crash", () => pageLog.push("[crash]"));
          const what = `${engine} ${model.label} run ${run + 1}/${o.runs}`;
          const t0 = Date.now();
          try {
            await page.goto(new URL("/bench/index.html", server.url).href);
            if (!browserVersion) {
              const cdp = await context.newCDPSession(page);
              browserVersion = (await cdp.send("Browser.getVersion")).product;
              await cdp.detach().catch(() => {});
            }
            // The reference text is generated once per engine and model (first run).
            const refTokens = run === 0 ? o.refTokens : 0;
            const args = {
              modelUrl,
              promptText: prompts[model.label] ?? null,
              promptTokens: o.promptTokens,
              genTokens: o.genTokens,
              refTokens,
            };
            if (isWllama(engine) && !args.promptText) {
              log(`${model.label}: building the ${o.promptTokens}-token prompt with llama-wgpu's tokenizer`);
              args.promptText = prompts[model.label] = await withTimeout(
                page.evaluate((a) => import("/bench/bench-page.js").then((m) => m.preparePrompt(a)), { modelUrl, promptTokens: o.promptTokens }),
                budgetMs,
                `${model.label} prompt`,
              );
            }
            const fn = isOurs(engine)
              ? (a) => import("/bench/bench-page.js").then((m) => m.runOurs(a))
              : (a) => import("/bench/bench-page.js").then((m) => m.runWllama(a));
            const extra = isOurs(engine)
              ? { cache: o.oursCache, clearCache: true, device: OURS_DEVICE[engine], threads: THREADS[engine] }
              : { useCache: true, clearCache: true, nThreads: THREADS[engine] };
            const r = await withTimeout(page.evaluate(fn, { ...args, ...extra }), budgetMs, what);
            if (isOurs(engine) && !prompts[model.label]) prompts[model.label] = r.promptText;
            if (isOurs(engine) && r.info.device !== OURS_DEVICE[engine]) {
              throw new Error(`asked for device ${OURS_DEVICE[engine]}, ran on ${r.info.device} (${r.info.deviceReason})`);
            }
            // Our CPU engine's threads, from its description; wllama's from getNumThreads().
            if (OURS_DEVICE[engine] === "cpu") r.info.threads = threadsOf(r.info.adapter);
            if (THREADS[engine] && r.info.threads !== THREADS[engine]) {
              throw new Error(`asked for ${THREADS[engine]} thread(s), ran on ${r.info.threads} (${isOurs(engine) ? r.info.adapter : "wllama.getNumThreads()"})`);
            }
            env = env ?? r.env;
            delete r.promptText;
            r.machine_state_after = machineState();
            ((results[engine] ??= {})[model.label] ??= []).push(r);
            const threadsNote = r.info?.threads != null ? `, ${r.info.threads} thread${r.info.threads === 1 ? "" : "s"}` : "";
            log(
              `${what}${threadsNote}: load ${fmt(r.load_s)} s, prefill ${fmt(r.prefill_tokens_per_s, 1)} tok/s, ` +
                `decode ${fmt(r.decode_tokens_per_s, 1)} tok/s, ttft ${fmt(r.ttft_s)} s (${((Date.now() - t0) / 1000).toFixed(0)} s)` +
                (r.text != null ? `\n        text: ${JSON.stringify(r.text)}` : ""),
            );
          } catch (err) {
            const message = `${what}: ${err.message}`;
            const [first, ...rest] = String(err.message).split("\n");
            errors.push({ engine, model: model.label, run: run + 1, error: first.replace(/^page\.evaluate: /, ""), detail: rest.join("\n"), log: pageLog.slice(-30) });
            log(`FAILED ${message}\n${pageLog.slice(-30).join("\n")}`);
          } finally {
            await page.close().catch(() => {});
          }
        }
      }
    }
  } finally {
    await context.close().catch(() => {});
    fs.rmSync(profile, { recursive: true, force: true });
    await server.stop();
  }

  const engines = {};
  for (const [engine, byModel] of Object.entries(results)) {
    engines[engine] = {};
    for (const [label, runs] of Object.entries(byModel)) {
      const pick = (k) => summary(runs.map((r) => r[k]));
      engines[engine][label] = {
        load_s: pick("load_s"),
        prefill_tokens_per_s: pick("prefill_tokens_per_s"),
        decode_tokens_per_s: pick("decode_tokens_per_s"),
        encode_us_per_token: pick("encode_us_per_token"),
        compile_s: pick("compile_s"),
        ttft_s: pick("ttft_s"),
        ttft_wall_s: pick("ttft_wall_s"),
        text: runs.find((r) => r.text != null)?.text ?? null,
        prompt_tokens: runs[0].prompt_tokens,
        completion_tokens: runs[0].completion_tokens,
        file: o.models.find((m) => m.label === label).file,
        file_bytes: fs.statSync(o.models.find((m) => m.label === label).file).size,
        info: runs[0].info,
        ...(runs[0].info?.threads !== undefined ? { threads_each_run: runs.map((r) => r.info?.threads ?? null) } : {}),
        ...(isOurs(engine) ? { load_s_engine: pick("load_s_engine"), load_phases: runs.map((r) => r.load_phases) } : {}),
        ...(isWllama(engine) ? { decode_tokens_per_s_reported: pick("decode_tokens_per_s_reported"), log_excerpt: runs[0].log_excerpt } : {}),
        bench_text_head: runs[0].bench_text_head,
        cpu_pressure_after_each_run: runs.map((r) => r.machine_state_after?.cpu_pressure?.some_avg10 ?? null),
      };
    }
  }
  // ratios[label]["ours/wllama"]: WebGPU against wllama with all threads;
  // ratios[label]["ours_cpu/wllama"]: the CPU engine against wllama, both on every core;
  // ratios[label]["ours_cpu_1/wllama_1"]: both on one thread.
  // The CPU pairs record both thread counts (every run's), and differing counts are an error.
  const ratios = {};
  for (const m of o.models) {
    for (const [x, y] of PAIRS) {
      const a = engines[x]?.[m.label];
      const b = engines[y]?.[m.label];
      if (!a || !b) continue;
      const pair = `${x}/${y}`;
      const r = (p, q) => (p.median != null && q.median ? p.median / q.median : null);
      (a.bench_text_agrees ??= {})[y] = a.bench_text_head != null && a.bench_text_head === b.bench_text_head;
      const entry = ((ratios[m.label] ??= {})[pair] = {
        load_s: r(a.load_s, b.load_s),
        prefill: r(a.prefill_tokens_per_s, b.prefill_tokens_per_s),
        decode: r(a.decode_tokens_per_s, b.decode_tokens_per_s),
        ttft: r(a.ttft_s, b.ttft_s),
      });
      if (SAME_THREADS.has(pair)) {
        const ta = a.threads_each_run ?? [];
        const tb = b.threads_each_run ?? [];
        const all = [...ta, ...tb];
        const equal = all.length > 0 && all.every((t) => Number.isInteger(t) && t === all[0]);
        entry.threads = { [x]: a.info?.threads ?? null, [y]: b.info?.threads ?? null, equal };
        if (!equal) {
          errors.push({ engine: pair, model: m.label, run: 0, error: `thread counts differ: ${x} ran ${ta.join(", ")}, ${y} ran ${tb.join(", ")}` });
          log(`FAILED ${m.label} ${pair}: thread counts differ (${x}: ${ta.join(", ")}; ${y}: ${tb.join(", ")})`);
        }
      }
    }
  }
  const first = (engine) => Object.values(engines[engine] ?? {})[0];
  const oursAny = first("ours");
  const oursCpuAny = first("ours_cpu");
  const oursCpu1Any = first("ours_cpu_1");
  const wllamaAny = first("wllama") ?? first("wllama_1");
  const out = {
    browser: browserVersion,
    browser_flags: CHROMIUM_ARGS,
    adapter: oursAny?.info?.adapter ?? null,
    adapter_info: env?.adapter ?? null,
    auto,
    // The CPU engine as ours_cpu ran it (its default threads), and as ours_cpu_1 did.
    cpu_engine: oursCpuAny || oursCpu1Any
      ? {
          adapter: oursCpuAny?.info?.adapter ?? null,
          threads: oursCpuAny?.info?.threads ?? null,
          one_thread: oursCpu1Any ? { adapter: oursCpu1Any.info?.adapter ?? null, threads: oursCpu1Any.info?.threads ?? null } : null,
        }
      : null,
    // Every row's threads (its first model's first run; each run's are in engines.*.*.threads_each_run).
    threads: {
      hardware_concurrency: env?.hardwareConcurrency ?? null,
      ...Object.fromEntries(o.engines.filter((e) => e !== "ours").map((e) => [e, first(e)?.info?.threads ?? null])),
    },
    cpu: cpuDescription(),
    machine_state: { before: stateStart, after: machineState() },
    date: new Date().toISOString(),
    runs: o.runs,
    quick: o.quick,
    prompt_tokens: o.promptTokens,
    gen_tokens: o.genTokens,
    ref_prompt: "Once upon a time",
    ref_tokens: o.refTokens,
    models: Object.fromEntries(o.models.map((m) => [m.label, { file: m.file, bytes: fs.statSync(m.file).size }])),
    method: {
      order: "per model and run: " + o.engines.join(", ") + " alternating, each in a fresh page of one Chromium profile",
      threads: "ours_cpu: the CPU engine's default (every core of the cross-origin isolated page); ours_cpu_1: threads: 1; " +
        "wllama: n_threads navigator.hardwareConcurrency; wllama_1: n_threads 1. Ours from stats().adapter, wllama's from getNumThreads()",
      auto: "createWorkerEngine({model: url, cache: false}) with no device option, once: stats().device, deviceReason, adapter",
      ours: `createWorkerEngine({model: url, cache: ${o.oursCache}, device: "gpu" (ours) or "cpu" (ours_cpu; ours_cpu_1 with threads: 1)}) after deleteCachedModel(url) (a first visit); ` +
        "generate(prompt, {maxTokens, temperature: 0, ignoreEos: true}); figures from engine.stats()",
      wllama: "loadModelFromUrl(url, {n_threads: navigator.hardwareConcurrency (wllama) or 1 (wllama_1), n_ctx, useCache: true}) after cacheManager.clear() (a first visit); " +
        "createCompletion({prompt, max_tokens, temperature: 0, ignore_eos: true, cache_prompt: false}); figures from llama.cpp's timings: " +
        "prefill = prompt_n / prompt_ms, decode = (predicted_n - 1) / predicted_ms, ttft = prompt_ms",
      load_s: "page clock from the create/load call to its resolved promise, downloading from the same local server",
      ttft_s: "engine-reported: from the start of the generation call to the first sampled token; ttft_wall_s is the page's clock to the first text piece",
    },
    page: env,
    wllama: wllamaVersion
      ? {
          version: wllamaVersion,
          libllama: wllamaAny?.info?.libllama ?? null,
          threads: first("wllama")?.info?.threads ?? null,
          threads_1: first("wllama_1")?.info?.threads ?? null,
          multithread: first("wllama")?.info?.multithread ?? wllamaAny?.info?.multithread ?? null,
          cross_origin_isolated: env?.crossOriginIsolated ?? null,
          hardware_concurrency: env?.hardwareConcurrency ?? null,
          webgpu_api_present: wllamaAny?.info?.isSupportWebGPU ?? null,
          adapter_shader_f16: wllamaAny?.info?.adapter_shader_f16 ?? null,
          backend: wllamaAny?.info?.backend ?? null,
          model_buffers: wllamaAny?.info?.model_buffers ?? null,
        }
      : null,
    engines,
    ratios,
    errors,
    wall_s: (Date.now() - started) / 1000,
  };
  const file = path.join(o.out, "browser.json");
  fs.writeFileSync(file, JSON.stringify(out, null, 2) + "\n");
  log(`wrote ${file} (${out.wall_s.toFixed(0)} s)`);
  for (const [label, pairs] of Object.entries(ratios)) {
    for (const [pair, r] of Object.entries(pairs)) {
      const threads = r.threads ? ` (threads ${Object.entries(r.threads).filter(([k]) => k !== "equal").map(([k, v]) => `${k} ${v}`).join(", ")})` : "";
      log(`${label} ${pair}: load ${fmt(r.load_s)}, prefill ${fmt(r.prefill)}, decode ${fmt(r.decode)}, ttft ${fmt(r.ttft)}${threads}`);
    }
  }
  if (errors.length) {
    log(`${errors.length} run(s) failed`);
    process.exitCode = 1;
  }
}

main().catch((err) => {
  process.stderr.write(`browser.mjs: ${err.stack || err.message}\n`);
  process.exit(1);
});

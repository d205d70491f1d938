// Shared by the browser tests: the demo server, headless Chromium through playwright-core, and the
// artifacts folder. Not a test file itself (node --test runs *.test.mjs).

import { execFile, spawn } from "node:child_process";
import { after, before } from "node:test";
import { createRequire } from "node:module";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
export const CACHE = process.env.LLAMA_WGPU_CACHE || path.join(os.homedir(), ".cache", "llama-wgpu");
export const ARTIFACTS = process.env.LLAMA_WGPU_ARTIFACTS || path.join(os.tmpdir(), "llama-wgpu-artifacts");
export const DEFAULT_MODEL = path.join(CACHE, "models", "SmolLM2-135M-Instruct.Q4_1.gguf");
// The built package under test; LLAMA_WGPU_PKG points elsewhere (e.g. a package built in another tree).
export const PKG = path.resolve(process.env.LLAMA_WGPU_PKG || path.join(REPO, "pkg"));

// Greedy continuation of the raw prompt "Once upon a time", 30 tokens, agreed by llama.cpp and an
// f32 reference (see ../shared/TOOLCHAIN.md).
export const REFERENCE_PROMPT = "Once upon a time";
export const REFERENCE_CONTINUATION =
  ", the city of Nova Haven was a thriving metropolis, with towering skyscrapers and bustling streets. But as the years went by, the city began to lose";
// What every engine must write first. The GPU kernels do the f32 arithmetic and write all of
// REFERENCE_CONTINUATION; the CPU engine rounds its activations to 8 bits (as llama.cpp does,
// with other luck) and may part from it where the f32 top1 - top2 margin is within that
// rounding: the fifth token's margin is 0.16 (" Nova" over " New"), the first four's 4.06,
// 0.34, 0.50 and 0.69 (tests/cli.rs).
export const REFERENCE_START = ", the city of";

// The native CLI, built by `cargo build --release` (./build.sh test builds it first).
export const CLI = path.join(process.env.CARGO_TARGET_DIR || path.join(CACHE, "target"), "release", "llama-wgpu");

// The native CLI's greedy text for `prompt` on `device` (the same engine, natively: its AVX2 or
// scalar kernels instead of SIMD128).
// `args` replace the prompt when given (e.g. ["--chat", text]).
export function nativeGreedy({ model = DEFAULT_MODEL, device, prompt = REFERENCE_PROMPT, maxTokens, args = ["--prompt", prompt] }) {
  const all = ["generate", "--model", model, "--device", device, "--temperature", "0", "--max-tokens", String(maxTokens), "--json", ...args];
  return new Promise((resolve, reject) => {
    execFile(CLI, all, { timeout: 5 * 60_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`${CLI} ${all.join(" ")}: ${err.message}\n${stderr}`));
      resolve(JSON.parse(stdout).text);
    });
  });
}

// The greedy continuation of REFERENCE_PROMPT an engine on `device` ("gpu" or "cpu") must write:
// llama.cpp's on the GPU; on the CPU engine, the native CPU engine's, which must itself begin
// with REFERENCE_START.
export async function expectedGreedy(device, maxTokens) {
  if (device === "gpu") return null;
  const text = await nativeGreedy({ device, maxTokens });
  if (!text.startsWith(REFERENCE_START)) throw new Error(`the native ${device} engine wrote ${JSON.stringify(text)}`);
  return text;
}

// Check `out`, `maxTokens` greedy tokens of REFERENCE_PROMPT on `device`.
export async function assertGreedy(assert, device, out, maxTokens, what = "") {
  const want = await expectedGreedy(device, maxTokens);
  if (want === null) {
    assert.ok(REFERENCE_CONTINUATION.startsWith(out) && out.length >= REFERENCE_START.length, `${what}${JSON.stringify(out)} is not the reference continuation`);
  } else {
    assert.equal(out, want, `${what}the ${device} engine in the browser and natively differ`);
  }
}

export const CHROMIUM_ARGS = [
  "--enable-unsafe-webgpu",
  "--no-sandbox",
  "--headless=new",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
];

// Chromium without usable WebGPU, as in a browser where it is missing or disabled: no
// --enable-unsafe-webgpu, and --disable-webgpu (navigator.gpu stays, requestAdapter() gives null).
export const NO_WEBGPU_CHROMIUM_ARGS = [...CHROMIUM_ARGS.filter((a) => a !== "--enable-unsafe-webgpu"), "--disable-webgpu"];

// What must exist before a browser test can run; a list of missing things (empty when ready).
export function missingPrerequisites({ model = true } = {}) {
  const missing = [];
  if (!fs.existsSync(path.join(PKG, "index.js")) || !fs.existsSync(path.join(PKG, "llama_wgpu_bg.wasm"))) {
    missing.push(`${PKG}/index.js and llama_wgpu_bg.wasm (run ./build.sh build)`);
  }
  if (model && !fs.existsSync(DEFAULT_MODEL)) missing.push(`${DEFAULT_MODEL} (run ./build.sh setup)`);
  if (!fs.existsSync(playwrightPath())) missing.push(`${playwrightPath()} (run ./build.sh setup)`);
  if (!fs.existsSync("/usr/bin/chromium")) missing.push("/usr/bin/chromium (apt-get install chromium)");
  return missing;
}

function playwrightPath() {
  return path.join(CACHE, "npm-tools", "node_modules", "playwright-core");
}

export function playwright() {
  const require = createRequire(import.meta.url);
  return require(playwrightPath());
}

// Ajv (JSON Schema validation), installed beside playwright-core by ./build.sh setup.
export function ajv() {
  const require = createRequire(import.meta.url);
  const Ajv = require(path.join(CACHE, "npm-tools", "node_modules", "ajv"));
  return new (Ajv.default ?? Ajv)({ allErrors: true });
}

// Starts www/serve.mjs on a free port. Resolves to {url, stop, requests, resetRequests}.
export async function startServer(args = []) {
  const child = spawn(process.execPath, [path.join(REPO, "www", "serve.mjs"), "--port", "0", "--pkg", PKG, ...args], {
    cwd: REPO,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr.on("data", (d) => {
    stderr += d;
  });
  const url = await new Promise((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error(`serve.mjs printed nothing in 10 s; stderr: ${stderr}`)), 10_000);
    child.stdout.on("data", (d) => {
      out += d;
      const m = /^serving (http:\/\/\S+\/)\n/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`serve.mjs exited with ${code}; stderr: ${stderr}`));
    });
  });
  return {
    url,
    get stderr() {
      return stderr;
    },
    async requests() {
      const res = await fetch(new URL("/__requests", url));
      return res.json();
    },
    async resetRequests() {
      const res = await fetch(new URL("/__requests/reset", url), { method: "POST" });
      if (!res.ok) throw new Error(`reset: ${res.status}`);
    },
    stop() {
      return new Promise((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once("exit", () => resolve());
        child.kill("SIGTERM");
        setTimeout(() => {
          if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
        }, 3000).unref();
      });
    },
  };
}

// A persistent context in a fresh profile folder, so the Cache API keeps the model across reloads
// (and has a disk quota). Resolves to {context, page, logs, close}.
// `webgpu: false` launches it without WebGPU (NO_WEBGPU_CHROMIUM_ARGS).
export async function launchBrowser({ viewport = { width: 1280, height: 900 }, webgpu = true } = {}) {
  const { chromium } = playwright();
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "llama-wgpu-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: "/usr/bin/chromium",
    headless: true,
    args: webgpu ? CHROMIUM_ARGS : NO_WEBGPU_CHROMIUM_ARGS,
    viewport,
  });
  const logs = [];
  const watch = (page) => {
    page.on("console", (msg) => logs.push(`[console.${msg.type()}] ${msg.text()}`));
    page.on("pageerror", (err) => logs.push(`[pageerror] ${err.stack || err.message}`));
    page.on("requestfailed", (req) => logs.push(`[requestfailed] ${req.url()} ${req.failure()?.errorText || ""}`));
    page.on("crash", () => logs.push("[crash] the page crashed"));
  };
  context.on("page", watch);
  const page = context.pages()[0] || (await context.newPage());
  watch(page);
  return {
    context,
    page,
    logs,
    async close() {
      await context.close().catch(() => {});
      fs.rmSync(profile, { recursive: true, force: true });
    },
  };
}

export function artifactPath(name) {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  return path.join(ARTIFACTS, name);
}

// Runs a test body; on failure prints the page's errors and console lines logged during the step,
// saves a full-page screenshot under the artifacts folder, and rethrows.
export function stepRunner(browserRef, prefix) {
  return async (name, fn) => {
    const from = browserRef.logs?.length ?? 0;
    try {
      await fn();
    } catch (err) {
      const during = (browserRef.logs || []).slice(from);
      const errors = during.filter((l) => /^\[(console\.error|pageerror|crash|requestfailed)/.test(l));
      console.error(`\n--- ${name} failed: page errors during the step (${errors.length}) ---\n${errors.join("\n") || "(none)"}`);
      console.error(`--- console during the step ---\n${during.join("\n") || "(none)"}\n---`);
      if (browserRef.page) {
        const file = artifactPath(`${prefix}-failed-${name.replace(/[^a-z0-9]+/gi, "-")}.png`);
        await browserRef.page.screenshot({ path: file, fullPage: true }).catch(() => {});
        console.error(`screenshot: ${file}`);
      }
      throw err;
    }
  };
}

export function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

// `bytes` (a GGUF) with two metadata entries added after its header counts: `{arch}.pooling_type`
// = `pooling` (a UINT32; 3 is last-token pooling), making a generation model an embedding model
// for the tests, and a string entry that pads the insertion to 256 bytes: the tensor data starts
// at the header's end rounded up to the alignment (a power of two up to 256 here), so it moves by
// exactly as much and every tensor offset stays valid. Runs in Node and, passed as source, in a
// page.
export function withPoolingType(bytes, arch, pooling) {
  const enc = new TextEncoder();
  const u32 = (v) => new Uint8Array(new Uint32Array([v]).buffer);
  const u64 = (v) => new Uint8Array(new BigUint64Array([BigInt(v)]).buffer);
  const join = (...parts) => {
    const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    parts.reduce((at, p) => (all.set(p, at), at + p.length), 0);
    return all;
  };
  const entry = (key, type, value) => join(u64(key.length), enc.encode(key), u32(type), value);
  const pool = entry(`${arch}.pooling_type`, 4 /* UINT32 */, u32(pooling));
  const padKey = "llama_wgpu.test.padding";
  const n = (256 - ((pool.length + 8 + padKey.length + 4 + 8) % 256)) % 256;
  const padding = entry(padKey, 8 /* STRING */, join(u64(n), enc.encode("x".repeat(n))));
  const header = bytes.slice(0, 24); // magic, version, tensor count, metadata entry count
  const view = new DataView(header.buffer);
  view.setBigUint64(16, view.getBigUint64(16, true) + 2n, true);
  return join(header, pool, padding, bytes.subarray(24));
}

// The setup most browser test files share, as before/after hooks of the enclosing describe():
// the prerequisites checked, the demo server started, Chromium launched (with `initScript`, a
// function, run in every page before its scripts). Returns {browser, step, server}; `server` is
// set once the before hook has run.
export function browserSuite(prefix, { initScript, webgpu = true, serverArgs = [] } = {}) {
  const suite = { browser: {}, server: null };
  suite.step = stepRunner(suite.browser, prefix);
  before(async () => {
    const missing = missingPrerequisites();
    if (missing.length) throw new Error(`missing prerequisites:\n  ${missing.join("\n  ")}`);
    suite.server = await startServer(serverArgs);
    Object.assign(suite.browser, await launchBrowser({ webgpu }));
    if (initScript) await suite.browser.context.addInitScript(initScript);
  });
  after(async () => {
    await suite.browser.close?.();
    await suite.server?.stop();
  });
  return suite;
}

// An init script: counts the bytes of every GPUBuffer the page creates and which device made it;
// `GPUBuffer.destroy()` or the device's `destroy()` frees them (the WebGPU spec: destroying a
// device destroys every buffer made on it). `__gpuMemory.liveBytes()` and `.stats` in the page.
export function countGpuMemory() {
  const live = new Map(); // GPUBuffer -> [device, bytes]
  const stats = { devices: 0, destroyedDevices: 0, createdBytes: 0 };
  globalThis.__gpuMemory = { stats, liveBytes: () => [...live.values()].reduce((n, [, b]) => n + b, 0) };
  const requestDevice = GPUAdapter.prototype.requestDevice;
  GPUAdapter.prototype.requestDevice = async function (...args) {
    const device = await requestDevice.apply(this, args);
    stats.devices += 1;
    globalThis.__gpuMemory.lastDevice = device;
    return device;
  };
  const createBuffer = GPUDevice.prototype.createBuffer;
  GPUDevice.prototype.createBuffer = function (descriptor) {
    const buffer = createBuffer.call(this, descriptor);
    live.set(buffer, [this, descriptor.size]);
    stats.createdBytes += descriptor.size;
    return buffer;
  };
  const destroyBuffer = GPUBuffer.prototype.destroy;
  GPUBuffer.prototype.destroy = function () {
    live.delete(this);
    return destroyBuffer.call(this);
  };
  const destroyDevice = GPUDevice.prototype.destroy;
  GPUDevice.prototype.destroy = function () {
    stats.destroyedDevices += 1;
    for (const [buffer, [device]] of live) if (device === this) live.delete(buffer);
    return destroyDevice.call(this);
  };
}

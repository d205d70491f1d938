// Shared by the browser tests: the demo server, headless Chromium through playwright-core, and the
// artifacts folder. Not a test file itself (node --test runs *.test.mjs).

import { spawn } from "node:child_process";
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

export const CHROMIUM_ARGS = [
  "--enable-unsafe-webgpu",
  "--no-sandbox",
  "--headless=new",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
];

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
export async function launchBrowser({ viewport = { width: 1280, height: 900 } } = {}) {
  const { chromium } = playwright();
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "llama-wgpu-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: "/usr/bin/chromium",
    headless: true,
    args: CHROMIUM_ARGS,
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

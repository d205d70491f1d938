// The package as a user gets it: `npm pack` of pkg/, installed into a scratch Vite app and built
// with `vite build`, then opened in headless Chromium; and the same tarball imported by a plain
// <script type="module"> page with no bundler.
//
//   node --test tests/browser/vite-app.test.mjs
//
// Needs what demo.test.mjs needs, plus the npm registry (for vite); the npm cache is kept in
// $LLAMA_WGPU_CACHE/npm-cache. Skipped, with a message, only when the registry is unreachable.
// LLAMA_WGPU_KEEP_TMP=1 keeps the scratch folders.

import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import {
  CACHE,
  PKG,
  REFERENCE_PROMPT,
  assertGreedy,
  artifactPath,
  launchBrowser,
  missingPrerequisites,
  startServer,
  stepRunner,
} from "./helpers.mjs";

const MINUTE = 60_000;
const NPM_CACHE = path.join(CACHE, "npm-cache");
const VITE_VERSION = "^6";

function run(cmd, args, { cwd, timeout = 5 * MINUTE } = {}) {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { cwd, timeout, maxBuffer: 64 << 20, env: { ...process.env, npm_config_cache: NPM_CACHE } }, (err, stdout, stderr) => {
      if (err) {
        err.message += `\n$ ${cmd} ${args.join(" ")}\n${stdout}\n${stderr}`;
        err.stdout = stdout;
        err.stderr = stderr;
        reject(err);
      } else resolve({ stdout, stderr });
    });
  });
}

// Whether the npm registry answers; the reason when it does not.
async function registryProblem() {
  try {
    await run("npm", ["view", `vite@${VITE_VERSION}`, "version", "--json", "--prefer-online"], { timeout: MINUTE });
    return null;
  } catch (err) {
    const text = `${err.stderr || ""} ${err.message}`;
    if (/ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENETUNREACH|EHOSTUNREACH|network|timed out|socket hang up/i.test(text) || err.killed) {
      return `npm registry unreachable: ${text.split("\n").find((l) => /ERR|error/i.test(l)) || err.message.split("\n")[0]}`;
    }
    throw err; // anything else is a real failure
  }
}

const problem = await registryProblem();
if (problem) console.log(`SKIPPED: ${problem}`);

// The app's entry: createEngine, or createWorkerEngine with ?worker=1; greedy 8 tokens of the
// reference prompt into #out.
const MAIN_JS = (importFrom) => `import { createEngine, createWorkerEngine } from ${JSON.stringify(importFrom)};

const out = document.querySelector("#out");
const worker = new URLSearchParams(location.search).get("worker") === "1";

// No top-level await, so Vite's default build target accepts it.
async function main() {
  const create = worker ? createWorkerEngine : createEngine;
  const engine = await create({ model: new URL("/models/default.gguf", location.href).href });
  let text = "";
  for await (const piece of engine.generate(${JSON.stringify(REFERENCE_PROMPT)}, { maxTokens: 8, temperature: 0 })) {
    text += piece;
  }
  out.textContent = text;
  document.body.dataset.variant = worker ? "worker" : "main";
  document.body.dataset.state = "done";
  await engine.unload();
}

main().catch((err) => {
  out.textContent = \`ERROR \${err?.code}: \${err?.message}\`;
  document.body.dataset.state = "error";
  console.error(err);
});
`;

const PAGE = (script) => `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>llama-wgpu scratch app</title></head>
<body data-state="running">
  <pre id="out"></pre>
  ${script}
</body>
</html>
`;

const missing = missingPrerequisites();
if (missing.length) console.error(`missing prerequisites, every test will fail:\n  ${missing.join("\n  ")}`);

describe("llama-wgpu from its npm tarball", { skip: problem || false, timeout: 20 * MINUTE }, () => {
  let tmp;
  let tarball;
  let server;
  const browser = {};
  const step = stepRunner(browser, "vite-app");

  before(async () => {
    if (missing.length) throw new Error(`missing prerequisites:\n  ${missing.join("\n  ")}`);
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), "llama-wgpu-vite-"));
    console.log(`scratch folder: ${tmp}`);
  });

  after(async () => {
    await browser.close?.();
    await server?.stop();
    if (tmp && process.env.LLAMA_WGPU_KEEP_TMP !== "1") fs.rmSync(tmp, { recursive: true, force: true });
  });

  it("npm pack, install into a Vite app, vite build", { timeout: 10 * MINUTE }, async () => {
    const packed = await run("npm", ["pack", PKG, "--json", "--pack-destination", tmp]);
    const info = JSON.parse(packed.stdout)[0];
    tarball = path.join(tmp, info.filename);
    assert.ok(fs.existsSync(tarball), `npm pack made no ${tarball}`);
    const files = info.files.map((f) => f.path);
    console.log(`tarball ${info.filename}: ${info.size} bytes, files: ${files.join(" ")}`);
    for (const f of ["package.json", "index.js", "llama_wgpu_bg.wasm"]) {
      assert.ok(files.includes(f), `the tarball lacks ${f}`);
    }

    const app = path.join(tmp, "app");
    fs.mkdirSync(app);
    fs.writeFileSync(
      path.join(app, "package.json"),
      JSON.stringify(
        {
          name: "llama-wgpu-scratch-app",
          private: true,
          type: "module",
          dependencies: { "llama-wgpu": `file:${tarball}` },
          devDependencies: { vite: VITE_VERSION },
        },
        null,
        2,
      ),
    );
    // No vite.config.js: the package must work with Vite's defaults.
    fs.writeFileSync(path.join(app, "index.html"), PAGE(`<script type="module" src="/main.js"></script>`));
    fs.writeFileSync(path.join(app, "main.js"), MAIN_JS("llama-wgpu"));
    await run("npm", ["install", "--no-audit", "--no-fund", "--prefer-offline", "--loglevel", "error"], { cwd: app });
    const build = await run(path.join(app, "node_modules", ".bin", "vite"), ["build"], { cwd: app });
    console.log(build.stdout.trim());
    const dist = path.join(app, "dist");
    const assets = fs.readdirSync(path.join(dist, "assets"));
    assert.ok(assets.some((f) => f.endsWith(".wasm")), `vite build emitted no .wasm: ${assets}`);

    // The same tarball unpacked, for a page with no bundler.
    const unpacked = path.join(tmp, "unpacked");
    fs.mkdirSync(unpacked);
    await run("tar", ["-xzf", tarball, "-C", unpacked]);
    const plain = path.join(tmp, "plain");
    fs.mkdirSync(plain);
    fs.writeFileSync(path.join(plain, "index.html"), PAGE(`<script type="module">\n${MAIN_JS("/unpacked/index.js")}</script>`));

    server = await startServer([
      "--root", dist,
      "--serve", `/unpacked/=${path.join(unpacked, "package")}`,
      "--serve", `/plain/=${plain}`,
    ]);
    Object.assign(browser, await launchBrowser());
  });

  const openAndCheck = (name, urlPath) => async () =>
    step(name, async () => {
      assert.ok(server && browser.page, "the app was not built (see the first test)");
      const { page } = browser;
      await page.goto(new URL(urlPath, server.url).href);
      await page.waitForFunction(() => document.body.dataset.state !== "running", null, { timeout: 5 * MINUTE, polling: 500 });
      const out = await page.locator("#out").textContent();
      await page.screenshot({ path: artifactPath(`vite-app-${name}.png`) });
      console.log(`${name}: ${JSON.stringify(out)}`);
      assert.equal(await page.evaluate(() => document.body.dataset.state), "done", out);
      // Device "auto": the CPU engine in this Chromium (SwiftShader is a fallback adapter).
      await assertGreedy(assert, "cpu", out, 8);
    });

  it("the Vite build runs the model on the main thread (createEngine)", { timeout: 6 * MINUTE }, openAndCheck("vite-main", "/"));
  it("the Vite build runs the model in a worker (createWorkerEngine)", { timeout: 6 * MINUTE }, openAndCheck("vite-worker", "/?worker=1"));
  it("a plain <script type=module> page imports the unpacked tarball", { timeout: 6 * MINUTE }, openAndCheck("plain", "/plain/"));
});

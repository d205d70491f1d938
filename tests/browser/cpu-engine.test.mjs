// The CPU engine (wasm SIMD128) through the npm package in headless Chromium: in a browser
// without WebGPU (device "auto" must fall back to it), the demo
// in that browser, and in the usual WebGPU-on-SwiftShader browser, where "auto" must also choose
// the CPU engine (SwiftShader is a fallback adapter) while device "gpu" still runs the WebGPU
// kernels. Greedy text: the native CPU engine's, which begins with llama.cpp's (helpers.mjs,
// REFERENCE_START); the GPU's is llama.cpp's.
//
//   node --test tests/browser/cpu-engine.test.mjs
//
// Needs pkg/ built (./build.sh build), the default model and playwright-core in
// $LLAMA_WGPU_CACHE (./build.sh setup), and /usr/bin/chromium.

import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import {
  REFERENCE_PROMPT,
  assertGreedy,
  artifactPath,
  launchBrowser,
  missingPrerequisites,
  startServer,
  stepRunner,
} from "./helpers.mjs";

const MINUTE = 60_000;
const tid = (id) => `[data-testid="${id}"]`;

const missing = missingPrerequisites();
if (missing.length) console.error(`missing prerequisites, every test will fail:\n  ${missing.join("\n  ")}`);

// In the page: whether WebGPU would give an adapter, as the package sees it.
const probeWebGPU = () =>
  import("/pkg/index.js").then(async ({ hasWebGPU }) => {
    const gpu = navigator.gpu;
    const adapter = gpu ? await gpu.requestAdapter().catch(() => null) : null;
    return {
      navigatorGpu: gpu !== undefined,
      adapter: adapter !== null,
      fallback: adapter ? (adapter.info?.isFallbackAdapter ?? adapter.isFallbackAdapter ?? null) : null,
      hasWebGPU: await hasWebGPU(),
    };
  });

// In the page: load the default model with createEngine(options), continue the prompt greedily,
// unload. Returns the text, stats() and the seconds taken.
const greedy = ({ options, prompt, maxTokens }) =>
  import("/pkg/index.js").then(async ({ createEngine }) => {
    const t0 = performance.now();
    const engine = await createEngine({ model: "/models/default.gguf", ...options });
    const loadS = (performance.now() - t0) / 1000;
    try {
      let text = "";
      for await (const piece of engine.generate(prompt, { maxTokens, temperature: 0 })) text += piece;
      return { text, stats: engine.stats(), loadS };
    } finally {
      await engine.unload();
    }
  });

const summary = (r) =>
  `${r.stats.device} (${r.stats.adapter}; ${r.stats.deviceReason}): load ${r.loadS.toFixed(1)} s, ` +
  `decode ${r.stats.decodeTokensPerS?.toFixed(1)} tok/s: ${JSON.stringify(r.text)}`;

describe("the CPU engine in Chromium", { timeout: 8 * MINUTE }, () => {
  let server;

  before(async () => {
    if (missing.length) throw new Error(`missing prerequisites:\n  ${missing.join("\n  ")}`);
    server = await startServer();
  });

  after(async () => {
    await server?.stop();
  });

  describe("a browser without WebGPU", () => {
    const browser = {};
    const step = stepRunner(browser, "cpu-engine");

    before(async () => {
      Object.assign(browser, await launchBrowser({ webgpu: false }));
    });

    after(async () => {
      await browser.close?.();
    });

    // Cross-origin isolated (the demo server's headers): shared memory, so the threaded build
    // with a worker per core; with `?coi=0` the page is not isolated: the one-thread build. The
    // same text from both (each output row is computed whole by one thread).
    for (const { name, query, isolated } of [
      { name: "cross-origin isolated: the threaded build", query: "", isolated: true },
      { name: "not isolated: one thread", query: "?coi=0", isolated: false },
    ]) {
      it(`createEngine({model}) runs on the CPU engine and writes the native engine's greedy text (${name})`, { timeout: 3 * MINUTE }, () =>
        step(isolated ? "package-threads" : "package-one-thread", async () => {
          const { page } = browser;
          await page.goto(server.url + query);
          const gpu = await page.evaluate(probeWebGPU);
          console.log(`WebGPU in this browser: ${JSON.stringify(gpu)}`);
          assert.ok(!gpu.navigatorGpu || !gpu.adapter, `WebGPU gave an adapter: ${JSON.stringify(gpu)}`);
          assert.equal(gpu.hasWebGPU, false);
          const env = await page.evaluate(() => ({ isolated: globalThis.crossOriginIsolated, cores: navigator.hardwareConcurrency }));
          assert.equal(env.isolated, isolated);

          const r = await page.evaluate(greedy, { options: {}, prompt: REFERENCE_PROMPT, maxTokens: 30 });
          console.log(`no WebGPU, default options, ${name}: ${summary(r)}`);
          assert.equal(r.stats.device, "cpu");
          assert.ok(r.stats.deviceReason.length > 0, "no deviceReason");
          const threads = isolated ? env.cores : 1;
          assert.match(r.stats.adapter, new RegExp(`^CPU engine \\(simd128, ${threads} threads?\\)$`));
          assert.ok(r.stats.cpuBytes > 50e6, `cpuBytes ${r.stats.cpuBytes}`);
          assert.equal(r.stats.gpuBytes, 0);
          assert.equal(r.stats.completionTokens, 30);
          assert.equal(r.stats.finishReason, "length");
          await assertGreedy(assert, "cpu", r.text, 30);
        }));
    }

    it("the demo loads the default model on the CPU engine, says so, and answers a chat message", { timeout: 3 * MINUTE }, () =>
      step("demo", async () => {
        const { page } = browser;
        const counter = (name) => page.evaluate((n) => Number(document.body.dataset[n] || 0), name);
        const waitCounter = (name, above) =>
          page.waitForFunction(([n, v]) => Number(document.body.dataset[n] || 0) > v, [name, above], { timeout: 2 * MINUTE, polling: 250 });
        const errorShown = async () =>
          (await page.locator(tid("error-box")).isVisible()) ? await page.locator(tid("error-box")).innerText() : null;

        await page.goto(`${server.url}?autoload=default`);
        await waitCounter("loads", 0);
        assert.equal(await errorShown(), null, "loading showed an error");
        assert.equal(await page.evaluate(() => document.body.dataset.lastLoad), "ok");
        const engine = await page.locator(tid("model-engine")).innerText();
        const why = await page.locator(tid("model-engine")).getAttribute("title");
        console.log(`the demo's model panel: Engine ${JSON.stringify(engine)} (title ${JSON.stringify(why)})`);
        assert.match(engine, /^CPU \(simd128, \d+ threads?\) — \S/);
        assert.ok(why && why.length > 0, "no reason in the engine row's title");

        await page.fill(tid("temperature"), "0");
        await page.fill(tid("max-tokens"), "8");
        await page.fill(tid("seed"), "");
        const before = await counter("generations");
        await page.fill(tid("chat-input"), "What is the capital of France?");
        await page.press(tid("chat-input"), "Enter");
        await waitCounter("generations", before);
        assert.equal(await errorShown(), null, "the chat showed an error");
        const bubble = page.locator(tid("msg-assistant")).last();
        const reply = await bubble.locator(".msg-text").textContent();
        console.log(`chat reply: ${JSON.stringify(reply)}; stats: ${(await page.locator(tid("stats")).innerText()).replace(/\s+/g, " ")}`);
        assert.ok(reply.trim().length > 0, "empty reply");
        assert.equal(await bubble.getAttribute("data-done"), "true");
        assert.match(await page.locator(tid("stat-decode")).innerText(), /\d tok\/s/);
        await page.screenshot({ path: artifactPath("cpu-engine-demo.png"), fullPage: true });
      }));
  });

  describe("a browser with WebGPU on SwiftShader (a fallback adapter)", () => {
    const browser = {};
    const step = stepRunner(browser, "cpu-engine-webgpu");

    before(async () => {
      Object.assign(browser, await launchBrowser());
    });

    after(async () => {
      await browser.close?.();
    });

    it('device "auto" chooses the CPU engine, device "gpu" the GPU; both write the same greedy text', { timeout: 4 * MINUTE }, () =>
      step("auto-vs-gpu", async () => {
        const { page } = browser;
        await page.goto(server.url);
        const gpu = await page.evaluate(probeWebGPU);
        console.log(`WebGPU in this browser: ${JSON.stringify(gpu)}`);
        assert.ok(gpu.adapter, "no WebGPU adapter in the WebGPU browser");

        const auto = await page.evaluate(greedy, { options: {}, prompt: REFERENCE_PROMPT, maxTokens: 8 });
        console.log(`SwiftShader, default options: ${summary(auto)}`);
        assert.equal(auto.stats.device, "cpu");
        assert.match(auto.stats.deviceReason, /hardware|fallback|software|cpu/i);
        assert.equal(auto.stats.gpuBytes, 0);

        const onGpu = await page.evaluate(greedy, { options: { device: "gpu" }, prompt: REFERENCE_PROMPT, maxTokens: 8 });
        console.log(`SwiftShader, device "gpu": ${summary(onGpu)}`);
        assert.equal(onGpu.stats.device, "gpu");
        assert.ok(onGpu.stats.gpuBytes > 50e6, `gpuBytes ${onGpu.stats.gpuBytes}`);
        assert.equal(onGpu.stats.cpuBytes, 0);
        assert.doesNotMatch(onGpu.stats.adapter, /CPU engine/);

        await assertGreedy(assert, "cpu", auto.text, 8, "auto: ");
        await assertGreedy(assert, "gpu", onGpu.text, 8, "gpu: ");
      }));
  });
});

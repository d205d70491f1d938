// LoRA adapters through the npm package in headless Chromium, on the CPU engine (worker) and
// the WebGPU kernels (page): a random rank-8 adapter of every projection of the default model
// (`llama-wgpu synth-lora`, served at /test/lora.gguf) is loaded from a URL, switched off and on
// and unloaded between generations. Greedy text with the adapter must be the native engine's
// with `--lora` (the CPU engine's natively; the f32 reference decoder's for the GPU, whose
// kernels compute in f32), differ from the base model's, and switching back must restore the
// base text exactly. A file that is no adapter is MODEL_INVALID. (The base text itself is not
// compared with the native one here: after "Paris.\n\n" two continuations are nearly tied, and
// the CPU engine's SIMD128 and AVX2 kernels round apart; other tests cover the base model.)
//
//   node --test tests/browser/lora.test.mjs
//
// Needs pkg/ built (./build.sh build), the native CLI (cargo build --release), the default
// model, playwright-core in $LLAMA_WGPU_CACHE (./build.sh setup), and /usr/bin/chromium.

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { CLI, DEFAULT_MODEL, browserSuite, nativeGreedy } from "./helpers.mjs";

const MINUTE = 60_000;
const PROMPT = "The capital of France is";
const TOKENS = 12;

const ADAPTER = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "llama-wgpu-lora-")), "lora.gguf");
if (fs.existsSync(CLI) && fs.existsSync(DEFAULT_MODEL)) {
  const args = ["--model", DEFAULT_MODEL, "--out", ADAPTER, "--rank", "8", "--amplitude", "0.2", "--seed", "7"];
  execFileSync(CLI, ["synth-lora", ...args]);
}

const run = ({ device, worker, prompt, maxTokens }) =>
  import("/pkg/index.js").then(async ({ createEngine, createWorkerEngine }) => {
    const create = worker ? createWorkerEngine : createEngine;
    const engine = await create({ model: "/models/default.gguf", device, contextLength: 256 });
    const text = async () => {
      let out = "";
      for await (const piece of engine.generate(prompt, { maxTokens, temperature: 0 })) out += piece;
      return out;
    };
    const code = (promise) => promise.then(() => "no error", (e) => `${e.code}: ${e.message}`);
    const out = { device: engine.stats().device };
    try {
      out.base = await text();
      const phases = [];
      const adapter = await engine.loadAdapter("/test/lora.gguf", { onProgress: (e) => phases.push(e.phase) });
      out.adapter = { ...adapter };
      out.phases = [...new Set(phases)];
      out.active = engine.adapters().map(({ adapter: a, scale }) => [a.id, scale]);
      out.adapted = await text();
      await engine.setAdapters([]);
      out.off = await text();
      await engine.setAdapters([{ adapter, scale: 1 }]);
      out.on = await text();
      await engine.setAdapters([{ adapter, scale: 0 }]);
      out.zero = await text();
      await engine.unloadAdapter(adapter);
      out.unloaded = await text();
      out.stale = await code(engine.setAdapters([{ adapter }]));
      out.notAdapter = await code(engine.loadAdapter("/models/default.gguf", { cache: false }));
      out.badScale = await code(engine.loadAdapter("/test/lora.gguf", { scale: Number.NaN }));
      out.after = await text();
    } finally {
      await engine.unload();
    }
    return out;
  });

describe("LoRA adapters in Chromium", () => {
  const suite = browserSuite("lora", { serverArgs: ["--serve", `/test/lora.gguf=${ADAPTER}`] });

  for (const [device, worker, native] of [
    ["cpu", true, "cpu"],
    ["gpu", false, "reference"],
  ]) {
    it(`load, switch and unload on the ${device} engine`, { timeout: 15 * MINUTE }, async () => {
      await suite.step(`lora-${device}`, async () => {
        const page = suite.browser.page;
        await page.goto(suite.server.url);
        const out = await page.evaluate(run, { device, worker, prompt: PROMPT, maxTokens: TOKENS });
        const args = ["--prompt", PROMPT];
        const adapted = await nativeGreedy({ device: native, maxTokens: TOKENS, args: [...args, "--lora", ADAPTER] });
        console.error(`${device} (${out.device}): base ${JSON.stringify(out.base)}, adapted ${JSON.stringify(out.adapted)}`);
        assert.equal(out.adapter.rank, 8);
        assert.equal(out.adapter.tensors, 30 * 7, "every projection of 30 layers");
        assert.deepEqual(out.active, [[out.adapter.id, 1]]);
        assert.ok(out.phases.some((p) => p === "download" || p === "load"), `phases ${out.phases}`);
        assert.notEqual(out.adapted, out.base, "the adapter changes the text");
        assert.equal(adapted, out.adapted, `the ${native} engine natively with --lora`);
        assert.equal(out.off, out.base, "no adapter: the base text again");
        assert.equal(out.on, out.adapted, "on again: the adapted text");
        assert.equal(out.zero, out.base, "scale 0");
        assert.equal(out.unloaded, out.base, "unloaded");
        assert.match(out.stale, /^INVALID_ARGUMENT/);
        assert.match(out.notAdapter, /^MODEL_INVALID: .*not a LoRA adapter/);
        assert.match(out.badScale, /^INVALID_ARGUMENT: .*scale/);
        assert.equal(out.after, out.base);
      });
    });
  }

  it("the demo's adapter picker applies, rescales and removes an adapter", { timeout: 10 * MINUTE }, async () => {
    await suite.step("lora-demo", async () => {
      const page = suite.browser.page;
      const tid = (id) => `[data-testid="${id}"]`;
      const state = () => page.getAttribute(tid("adapter-panel"), "data-state");
      const settled = (want) =>
        page.waitForFunction((w) => w.includes(document.querySelector('[data-testid="adapter-panel"]').dataset.state), want, { timeout: 3 * MINUTE });
      await page.goto(suite.server.url);
      await page.click(tid("adapter-load"));
      assert.equal(await state(), "error", "no model yet");
      await page.click(tid("load-button"));
      await page.waitForFunction(() => window.__demo?.engine, null, { timeout: 5 * MINUTE });
      await page.fill(tid("adapter-url"), "/test/lora.gguf");
      await page.click(tid("adapter-load"));
      await settled(["active", "error"]);
      const status = await page.textContent(tid("adapter-status"));
      assert.equal(await state(), "active", status);
      assert.match(status, /rank 8, 210 weights, scale 1/);
      await page.evaluate(() => {
        const slider = document.querySelector('[data-testid="adapter-scale"]');
        slider.value = "0.5";
        slider.dispatchEvent(new Event("change"));
      });
      await page.waitForFunction(() => document.querySelector('[data-testid="adapter-status"]').textContent.includes("scale 0.5"), null, { timeout: MINUTE });
      assert.deepEqual(await page.evaluate(() => window.__demo.engine.adapters().map((a) => a.scale)), [0.5]);
      await page.click(tid("adapter-remove"));
      await settled(["idle", "error"]);
      assert.equal(await state(), "idle");
      assert.deepEqual(await page.evaluate(() => window.__demo.engine.adapters()), []);
    });
  });
});

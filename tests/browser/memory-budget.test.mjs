// The memory budget through the npm package in headless Chromium (WebGPU on SwiftShader):
// `maxGpuBytes` too small for the model is MODEL_TOO_LARGE with the need and the limit in the
// message; one with room for a 512-token KV cache but not a 1024-token one fits the default
// context down to 512, says so in stats(), and generates what an engine made with 512 does.
//
//   node --test tests/browser/memory-budget.test.mjs
//
// Needs pkg/ built (./build.sh build), the default model, playwright-core in $LLAMA_WGPU_CACHE
// (./build.sh setup), and /usr/bin/chromium.

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { browserSuite } from "./helpers.mjs";

const MINUTE = 60_000;

const budgets = () =>
  import("/pkg/index.js").then(async ({ createEngine }) => {
    const model = "/models/default.gguf";
    const tooSmall = await createEngine({ model, device: "gpu", maxGpuBytes: 1e6 }).then(
      () => null,
      (e) => ({ code: e.code, message: e.message }),
    );
    const greedy = async (engine) => {
      let text = "";
      for await (const piece of engine.generate("Once upon a time", { maxTokens: 8, temperature: 0 })) text += piece;
      return text;
    };
    // What a 512-token engine really allocates; the estimate is within 512 KiB of it, and a
    // 1024-token cache needs megabytes more (SmolLM2: 30 layers x 192 values x 2 x 512 tokens).
    const direct = await createEngine({ model, device: "gpu", contextLength: 512 });
    const gpuBytes = direct.stats().gpuBytes;
    const directText = await greedy(direct);
    await direct.unload();
    const budget = gpuBytes + (1 << 20); // over the estimate for 512, under the one for 1024
    const fitted = await createEngine({ model, device: "gpu", maxGpuBytes: budget });
    const { contextLength, contextReduced, gpuBytes: fittedBytes } = fitted.stats();
    const fittedText = await greedy(fitted);
    await fitted.unload();
    return { tooSmall, budget, contextLength, contextReduced, fittedBytes, directText, fittedText };
  });

describe("the GPU memory budget in Chromium", { timeout: 4 * MINUTE }, () => {
  const suite = browserSuite("memory-budget");
  const { browser, step } = suite;


  it("maxGpuBytes refuses a model too large for it and fits the context to it", { timeout: 3 * MINUTE }, () =>
    step("budgets", async () => {
      const { page } = browser;
      await page.goto(suite.server.url);
      const r = await page.evaluate(budgets);
      console.log(`memory budget: ${JSON.stringify(r)}`);
      assert.ok(r.tooSmall, "a 1 MB budget loaded the model");
      assert.equal(r.tooSmall.code, "MODEL_TOO_LARGE", r.tooSmall.message);
      assert.match(r.tooSmall.message, /needs \d+ MiB/);
      assert.match(r.tooSmall.message, /of 1 MiB/);
      assert.equal(r.contextLength, 512);
      assert.equal(r.contextReduced?.requested, 4096, "the default context: the model's, capped at 4096");
      assert.match(r.contextReduced.reason, /GPU budget/);
      assert.ok(r.fittedBytes <= r.budget, `${r.fittedBytes} bytes allocated over a budget of ${r.budget}`);
      assert.equal(r.fittedText, r.directText, "greedy text as an engine made with 512 tokens");
    }));
});

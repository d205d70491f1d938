// Calls made at once from several parts of a page, through the npm package in headless
// Chromium: the engine queues them (one generation at a time, never interleaved) and each gets
// exactly what it gets when made alone. Greedy requests on the worker engine (the CPU engine on
// this machine: SwiftShader is a software adapter), first one by one, then all together.
//
//   node --test tests/browser/concurrent.test.mjs
//
// Needs pkg/ built (./build.sh build), the default model, playwright-core in $LLAMA_WGPU_CACHE
// (./build.sh setup), and /usr/bin/chromium.

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { browserSuite } from "./helpers.mjs";

const MINUTE = 60_000;

const together = () =>
  import("/pkg/index.js").then(async ({ createWorkerEngine }) => {
    const engine = await createWorkerEngine({ model: "/models/default.gguf", contextLength: 512 });
    const text = async (prompt, maxTokens) => {
      let out = "";
      for await (const piece of engine.generate(prompt, { maxTokens, temperature: 0 })) out += piece;
      return out;
    };
    const streamed = async (content) => {
      let out = "";
      const chunks = await engine.chat.completions.create({ messages: [{ role: "user", content }], stream: true, max_tokens: 10, temperature: 0 });
      for await (const chunk of chunks) out += chunk.choices[0]?.delta?.content ?? "";
      return out;
    };
    const whole = async (content) => {
      const reply = await engine.chat.completions.create({ messages: [{ role: "user", content }], max_tokens: 10, temperature: 0 });
      return reply.choices[0].message.content;
    };
    // Each part of the page: a completion, a streamed chat, a whole chat, a token count, and a
    // second completion of another prompt.
    const parts = [
      () => text("Once upon a time", 8),
      () => streamed("Name a color."),
      () => whole("What is 2 + 2?"),
      () => engine.countTokens("The quick brown fox"),
      () => text("The capital of France is", 6),
    ];
    const alone = [];
    for (const part of parts) alone.push(await part());
    const started = performance.now();
    const atOnce = await Promise.all(parts.map((part) => part()));
    const seconds = (performance.now() - started) / 1000;
    await engine.unload();
    return { alone, atOnce, seconds };
  });

describe("concurrent calls in Chromium", { timeout: 5 * MINUTE }, () => {
  const suite = browserSuite("concurrent");
  const { browser, step } = suite;


  it("calls made at once are queued, and each gets what it gets alone", { timeout: 4 * MINUTE }, () =>
    step("together", async () => {
      await browser.page.goto(suite.server.url);
      const r = await browser.page.evaluate(together);
      console.log(`concurrent: ${JSON.stringify(r)}`);
      for (const value of r.alone) assert.ok(value !== "" && value !== 0, `every call gave something: ${JSON.stringify(r.alone)}`);
      assert.deepEqual(r.atOnce, r.alone);
    }));
});

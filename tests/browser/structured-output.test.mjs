// Structured output through the npm package in headless Chromium: chat.completions.create with
// OpenAI's response_format (json_schema, json_object), streamed and not, and generate() with a
// regex, on the default engine (the CPU engine here: SwiftShader is a fallback adapter) and on
// the WebGPU kernels (device "gpu", where the token mask is applied by the sampling shader).
// Outputs are parsed and validated in Node by Ajv, a JSON Schema validator.
//
//   node --test tests/browser/structured-output.test.mjs
//
// Needs pkg/ built (./build.sh build), the default model, playwright-core and ajv in
// $LLAMA_WGPU_CACHE (./build.sh setup), and /usr/bin/chromium.

import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { ajv, launchBrowser, missingPrerequisites, startServer, stepRunner } from "./helpers.mjs";

const MINUTE = 60_000;

const missing = missingPrerequisites();
if (missing.length) console.error(`missing prerequisites, every test will fail:\n  ${missing.join("\n  ")}`);

// Every string, number and array bounded: a 135M model may otherwise write one forever.
const PERSON = {
  type: "object",
  properties: {
    name: { type: "string", maxLength: 24 },
    age: { type: "integer", minimum: 0, maximum: 120 },
    languages: { type: "array", items: { enum: ["English", "French", "German"] }, minItems: 1, maxItems: 2 },
  },
  required: ["name", "age", "languages"],
  additionalProperties: false,
};

// In the page: load the default model with `options`, run the requests, unload. Each result is
// the content (streamed requests: the deltas joined), the finish reason and the chunk count.
const run = ({ options, schema }) =>
  import("/pkg/index.js").then(async ({ createEngine }) => {
    const engine = await createEngine({ model: "/models/default.gguf", ...options });
    const messages = [{ role: "user", content: "Describe a person as JSON." }];
    const response_format = { type: "json_schema", json_schema: { name: "person", schema, strict: true } };
    const out = { adapter: engine.stats().adapter };
    try {
      const r = await engine.chat.completions.create({ messages, response_format, temperature: 0, max_tokens: 120 });
      out.plain = { content: r.choices[0].message.content, finish: r.choices[0].finish_reason };

      let content = "";
      let finish = null;
      let chunks = 0;
      const stream = await engine.chat.completions.create({
        messages,
        response_format,
        temperature: 0.9,
        seed: 4,
        max_tokens: 120,
        stream: true,
      });
      for await (const chunk of stream) {
        chunks += 1;
        content += chunk.choices[0].delta.content ?? "";
        finish = chunk.choices[0].finish_reason ?? finish;
      }
      out.streamed = { content, finish, chunks };

      const object = await engine.chat.completions.create({
        messages: [{ role: "user", content: 'Reply with a JSON object whose key "ok" is true.' }],
        response_format: { type: "json_object" },
        temperature: 0,
        max_tokens: 60,
      });
      out.object = { content: object.choices[0].message.content, finish: object.choices[0].finish_reason };

      let phone = "";
      for await (const piece of engine.generate("A phone number:", {
        responseFormat: { type: "regex", regex: "[0-9]{3}-[0-9]{4}" },
        temperature: 0.7,
        maxTokens: 20,
      })) {
        phone += piece;
      }
      out.phone = phone;

      try {
        await engine.chat.completions.create({
          messages,
          response_format: { type: "json_schema", json_schema: { name: "bad", schema: { type: "no-such-type" } } },
        });
        out.badSchema = "no error";
      } catch (e) {
        out.badSchema = `${e.code}: ${e.message}`;
      }
      return out;
    } finally {
      await engine.unload();
    }
  });

const WEATHER = {
  type: "object",
  properties: { city: { type: "string", maxLength: 30 }, unit: { enum: ["celsius", "fahrenheit"] } },
  required: ["city"],
};

// In the page: a named call on the default engine (SmolLM2's template has no tools: they are
// described in a system message), streamed and not, then the call's result as the next turn.
const runTools = ({ parameters }) =>
  import("/pkg/index.js").then(async ({ createEngine }) => {
    const engine = await createEngine({ model: "/models/default.gguf" });
    const tools = [
      { type: "function", function: { name: "get_weather", description: "The weather in a city", parameters } },
      { type: "function", function: { name: "add", description: "Add two integers", parameters: { type: "object", properties: { a: { type: "integer" }, b: { type: "integer" } } } } },
    ];
    const messages = [{ role: "user", content: "What is the weather in Oslo?" }];
    const tool_choice = { type: "function", function: { name: "get_weather" } };
    try {
      const r = await engine.chat.completions.create({ messages, tools, tool_choice, temperature: 0, max_tokens: 80 });
      const plain = { message: r.choices[0].message, finish: r.choices[0].finish_reason };
      const message = { role: "assistant", content: "", tool_calls: [] };
      let finish = null;
      let callChunks = 0;
      const stream = await engine.chat.completions.create({ messages, tools, tool_choice, temperature: 0.7, seed: 3, max_tokens: 80, stream: true });
      for await (const chunk of stream) {
        const { delta, finish_reason } = chunk.choices[0];
        message.content += delta.content ?? "";
        if (delta.tool_calls) {
          callChunks += 1;
          for (const { index, ...call } of delta.tool_calls) message.tool_calls[index] = call;
        }
        finish = finish_reason ?? finish;
      }
      if (message.content === "") message.content = null;
      const next = [...messages, plain.message, { role: "tool", tool_call_id: plain.message.tool_calls?.[0]?.id, content: '{"temperature": 21, "sky": "clear"}' }];
      const a = await engine.chat.completions.create({ messages: next, tools, tool_choice: "none", temperature: 0, max_tokens: 30 });
      return { plain, streamed: { message, finish, callChunks }, answer: { content: a.choices[0].message.content ?? "", finish: a.choices[0].finish_reason } };
    } finally {
      await engine.unload();
    }
  });

// In the page: a greedy reply with logprobs, whole and streamed (each chunk's entries joined).
const runLogprobs = ({ options }) =>
  import("/pkg/index.js").then(async ({ createEngine }) => {
    const engine = await createEngine({ model: "/models/default.gguf", ...options });
    const params = { messages: [{ role: "user", content: "Name three colours." }], temperature: 0, max_tokens: 12, logprobs: true, top_logprobs: 3 };
    try {
      const r = await engine.chat.completions.create(params);
      const streamed = [];
      for await (const chunk of await engine.chat.completions.create({ ...params, stream: true })) {
        streamed.push(...chunk.choices[0].logprobs.content);
      }
      const off = await engine.chat.completions.create({ ...params, logprobs: undefined, top_logprobs: undefined });
      return { adapter: engine.stats().adapter, content: r.choices[0].message.content, usage: r.usage, logprobs: r.choices[0].logprobs, streamed, off: off.choices[0].logprobs };
    } finally {
      await engine.unload();
    }
  });

describe("structured output in Chromium", { timeout: 8 * MINUTE }, () => {
  let server;
  const browser = {};
  const step = stepRunner(browser, "structured-output");

  before(async () => {
    if (missing.length) throw new Error(`missing prerequisites:\n  ${missing.join("\n  ")}`);
    server = await startServer();
    Object.assign(browser, await launchBrowser());
  });

  after(async () => {
    await browser.close?.();
    await server?.stop();
  });

  for (const { name, options } of [
    { name: "the default engine", options: {} },
    { name: "WebGPU kernels", options: { device: "gpu" } },
  ]) {
    it(`response_format and a regex hold on ${name}`, { timeout: 4 * MINUTE }, () =>
      step(name.replace(/\W+/g, "-"), async () => {
        const { page } = browser;
        await page.goto(server.url);
        const r = await page.evaluate(run, { options, schema: PERSON });
        console.log(`${name} (${r.adapter}): ${JSON.stringify(r)}`);
        const validate = ajv().compile(PERSON);
        for (const [what, { content, finish }] of Object.entries({ plain: r.plain, streamed: r.streamed })) {
          assert.equal(finish, "stop", `${what}: finish_reason`);
          const value = JSON.parse(content);
          assert.ok(validate(value), `${what}: ${content} does not follow the schema: ${JSON.stringify(validate.errors)}`);
        }
        assert.ok(r.streamed.chunks > 3, `${r.streamed.chunks} chunks`);
        assert.equal(r.object.finish, "stop");
        const object = JSON.parse(r.object.content);
        assert.ok(object !== null && typeof object === "object" && !Array.isArray(object), r.object.content);
        assert.match(r.phone, /^[0-9]{3}-[0-9]{4}$/);
        assert.match(r.badSchema, /^INVALID_ARGUMENT: /);
      }));
  }

  it("logprobs: greedy picks the most likely, the top alternatives sum to at most 1, streamed as whole, on the CPU engine and WebGPU", { timeout: 4 * MINUTE }, () =>
    step("logprobs", async () => {
      const { page } = browser;
      for (const options of [{}, { device: "gpu" }]) {
        await page.goto(server.url);
        const r = await page.evaluate(runLogprobs, { options });
        console.log(`logprobs (${r.adapter}): ${JSON.stringify(r.logprobs.content.slice(0, 2))}`);
        const entries = r.logprobs.content;
        assert.equal(r.logprobs.refusal, null);
        assert.equal(r.off, null, "no logprobs unless asked");
        assert.equal(entries.length, r.usage.completion_tokens, "one entry per generated token");
        for (const e of entries) {
          assert.equal(e.top_logprobs.length, 3);
          assert.deepEqual([e.token, e.logprob], [e.top_logprobs[0].token, e.top_logprobs[0].logprob], "greedy takes the most likely");
          assert.ok(e.top_logprobs.every((t, i) => i === 0 || t.logprob <= e.top_logprobs[i - 1].logprob), "most likely first");
          const mass = e.top_logprobs.reduce((sum, t) => sum + Math.exp(t.logprob), 0);
          assert.ok(e.logprob <= 0 && mass <= 1 + 1e-4, `probabilities sum to ${mass}`);
        }
        // The tokens' bytes make the reply (a byte-level vocabulary; no stop string held back).
        assert.equal(Buffer.from(entries.flatMap((e) => e.bytes)).toString("utf8"), r.content);
        assert.deepEqual(r.streamed, entries, "the stream's entries are the reply's");
      }
    }));

  // The wasm engine itself (under the facade, which checks the same things first): values cross
  // through serde-wasm-bindgen, the result is camelCase with StopReason's words, and options are
  // read strictly.
  it("the wasm boundary: camelCase results, strict options naming the key, logit_bias ids, schema order kept", { timeout: 3 * MINUTE }, () =>
    step("boundary", async () => {
      const { page } = browser;
      await page.goto(server.url);
      const r = await page.evaluate(async () => {
        const { loadModel } = await import("/pkg/load.js");
        const wasm = await import("/pkg/wasm.js"); // wasm.ModelLoader is set once loadModel loaded the wasm
        const failure = (promise) => promise.then((v) => `resolved ${JSON.stringify(v)}`, (e) => `${e.code}: ${e.message}`);
        const { engine } = await loadModel({ model: "/models/default.gguf", device: "cpu" });
        const out = {};
        try {
          const pieces = [];
          const result = await engine.generate("Once upon a time", { max_tokens: 4, temperature: 0, logit_bias: { 11: -100, "1980": 0 } }, (p) => (pieces.push(p), true));
          out.result = result;
          out.pieces = pieces.join("");
          out.unknown = await failure(engine.generate("x", { max_tokens: 1, maxTokens: 2 }, () => true));
          out.badValue = await failure(engine.generate("x", { temperature: "hot" }, () => true));
          out.badNested = await failure(engine.generate("x", { top_k: -1 }, () => true));
          out.badBias = await failure(engine.generate("x", { logit_bias: { abc: 1 } }, () => true));
          out.undefinedOk = (await engine.generate("x", { max_tokens: 1, temperature: 0, stop: undefined }, () => true)).finishReason;
          out.aborted = (await engine.generate("Once", { max_tokens: 8, temperature: 0 }, () => false)).finishReason;
          out.loaderUnknown = await failure(wasm.ModelLoader.create({ device: "cpu", context_length: 64 }));
          out.loaderBad = await failure(wasm.ModelLoader.create({ device: "cpu", contextLength: "big" }));
          const schema = { type: "object", properties: { zeta: { type: "integer", minimum: 0, maximum: 9 }, alpha: { type: "integer", minimum: 0, maximum: 9 } }, required: ["zeta", "alpha"], additionalProperties: false };
          const json = await engine.chat([{ role: "user", content: "Two digits as JSON." }], { max_tokens: 40, temperature: 0, response_format: { type: "json_schema", json_schema: { name: "z", schema, strict: true } } }, () => true);
          out.jsonKeys = Object.keys(JSON.parse(json.text));
          out.info = engine.info();
        } finally {
          engine.free();
        }
        return out;
      });
      console.log(`boundary: ${JSON.stringify(r)}`);
      assert.deepEqual(Object.keys(r.result), ["text", "toolCalls", "logprobs", "finishReason", "promptTokens", "cachedPromptTokens", "completionTokens",
        "prefillTokensPerS", "decodeTokensPerS", "timeToFirstTokenS", "prefillS", "decodeS"]);
      assert.equal(r.result.finishReason, "length");
      assert.equal(r.result.completionTokens, 4);
      assert.deepEqual(r.result.toolCalls, []);
      assert.equal(r.result.text, r.pieces);
      assert.match(r.unknown, /^INVALID_ARGUMENT: invalid argument: unknown generation option "maxTokens" \(options: max_tokens, temperature, /);
      assert.match(r.badValue, /^INVALID_ARGUMENT: invalid argument: generation option "temperature": invalid type: string "hot", expected f32$/);
      assert.match(r.badNested, /^INVALID_ARGUMENT: invalid argument: generation option "top_k": invalid value: integer `-1`, expected usize$/);
      assert.match(r.badBias, /^INVALID_ARGUMENT: invalid argument: generation option "logit_bias": "abc" is not a token id/);
      assert.equal(r.undefinedOk, "length");
      assert.equal(r.aborted, "abort");
      assert.match(r.loaderUnknown, /^INVALID_ARGUMENT: invalid argument: unknown loader option "context_length" \(options: contextLength, /);
      assert.match(r.loaderBad, /^INVALID_ARGUMENT: invalid argument: loader option "contextLength": invalid type: string "big", expected usize$/);
      assert.deepEqual(r.jsonKeys, ["zeta", "alpha"], "the schema's property order was lost on the way in");
      assert.equal(r.info.model.name === null || typeof r.info.model.name === "string", true);
      assert.equal(typeof r.info.model.nParams, "number");
      assert.equal(typeof r.info.features.shaderF16, "boolean");
    }));

  it("tools: a named call parses and follows its schema, streamed and not; its result is accepted next turn", { timeout: 3 * MINUTE }, () =>
    step("tools", async () => {
      const { page } = browser;
      await page.goto(server.url);
      const r = await page.evaluate(runTools, { parameters: WEATHER });
      console.log(`tools: ${JSON.stringify(r)}`);
      const validate = ajv().compile(WEATHER);
      for (const [what, { message, finish }] of Object.entries({ plain: r.plain, streamed: r.streamed })) {
        assert.equal(finish, "tool_calls", `${what}: finish_reason`);
        assert.equal(message.content, null, `${what}: content`);
        assert.equal(message.tool_calls.length, 1, `${what}: one call`);
        const [call] = message.tool_calls;
        assert.match(call.id, /^call_[0-9a-f]{24}$/);
        assert.equal(call.type, "function");
        assert.equal(call.function.name, "get_weather");
        const args = JSON.parse(call.function.arguments);
        assert.ok(validate(args), `${what}: ${call.function.arguments}: ${JSON.stringify(validate.errors)}`);
      }
      assert.equal(r.streamed.callChunks, 1, "the call arrives in one delta");
      assert.ok(["stop", "length"].includes(r.answer.finish), r.answer.finish);
      assert.ok(r.answer.content.length > 0);

      // The demo's example tools, run in the page on a call as the engine returns it.
      const demo = await page.evaluate(() =>
        import("/tools.js").then(({ calculate, runToolCall }) => ({
          value: calculate("(17 + 25) * 3 - 2^3 / -4"),
          result: runToolCall({ id: "call_1", type: "function", function: { name: "calculate", arguments: '{"expression": "1 +"}' } }),
        })),
      );
      assert.equal(demo.value, 128);
      assert.equal(demo.result.role, "tool");
      assert.equal(demo.result.tool_call_id, "call_1");
      assert.match(JSON.parse(demo.result.content).error, /unexpected end/);
    }));

  it("the demo's JSON toggle: a reply held to the schema in its box; a box that is not JSON is an error", { timeout: 3 * MINUTE }, () =>
    step("demo", async () => {
      const { page } = browser;
      const tid = (id) => `[data-testid="${id}"]`;
      const counter = (name) => page.evaluate((n) => Number(document.body.dataset[n] || 0), name);
      const waitCounter = (name, above) =>
        page.waitForFunction(([n, v]) => Number(document.body.dataset[n] || 0) > v, [name, above], { timeout: 2 * MINUTE, polling: 250 });
      await page.goto(`${server.url}?autoload=default`);
      await waitCounter("loads", 0);
      assert.equal(await page.evaluate(() => document.body.dataset.lastLoad), "ok");

      await page.fill(tid("temperature"), "0");
      await page.fill(tid("max-tokens"), "120");
      assert.equal(await page.locator(tid("json-schema")).isVisible(), false);
      await page.check(tid("json-output"));
      assert.equal(await page.locator(tid("json-schema")).isVisible(), true);

      await page.fill(tid("json-schema"), "{not json");
      await page.fill(tid("chat-input"), "Describe a person as JSON.");
      await page.press(tid("chat-input"), "Enter");
      await page.locator(tid("error-box")).waitFor({ state: "visible", timeout: 10_000 });
      assert.match(await page.locator(tid("error-box")).innerText(), /not JSON/);
      await page.click(tid("error-dismiss")).catch(() => {});

      await page.fill(tid("json-schema"), JSON.stringify(PERSON));
      const before = await counter("generations");
      await page.fill(tid("chat-input"), "Describe a person as JSON.");
      await page.press(tid("chat-input"), "Enter");
      await waitCounter("generations", before);
      const reply = await page.locator(tid("msg-assistant")).last().locator(".msg-text").textContent();
      console.log(`the demo's JSON reply: ${reply}`);
      const validate = ajv().compile(PERSON);
      assert.ok(validate(JSON.parse(reply)), `${reply}: ${JSON.stringify(validate.errors)}`);
    }));
});

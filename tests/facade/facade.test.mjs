import "./env.mjs";
import { test } from "node:test";
import assert from "node:assert/strict";
import { gguf, collect } from "./env.mjs";
import { createEngine, createWorkerEngine, LlamaWgpuError, hasWebGPU } from "./pkg/index.js";
import { log } from "./pkg/llama_wgpu.js";
import { generateOptions, chatOptions, chatMessages, deviceOption } from "./pkg/options.js";
import { Mutex } from "./pkg/mutex.js";
import { Channel } from "./pkg/channel.js";

const load = (extra = {}) => createEngine({ model: gguf(1000), ...extra });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

test("generate options map camelCase to snake_case and refuse unknown keys", () => {
  assert.deepEqual(generateOptions({ maxTokens: 5, topK: 3, topP: 0.9, minP: 0.1, repeatPenalty: 1.1, seed: 7, stop: "x", temperature: 0, signal: new AbortController().signal, ignoreEos: true }),
    { max_tokens: 5, top_k: 3, top_p: 0.9, min_p: 0.1, repeat_penalty: 1.1, seed: 7, stop: ["x"], temperature: 0, ignore_eos: true });
  assert.throws(() => generateOptions({ max_tokens: 5 }), (e) => e.code === "INVALID_ARGUMENT" && /max_tokens/.test(e.message));
  assert.throws(() => generateOptions({ stop: [1] }), (e) => e.code === "INVALID_ARGUMENT");
  // NaN and Infinity would cross as null (the default); token counts are whole numbers.
  for (const bad of [{ maxTokens: NaN }, { maxTokens: Infinity }, { maxTokens: 0 }, { maxTokens: 2.5 }, { temperature: NaN }, { topK: -1 }, { seed: "7" }, { ignoreEos: 1 }]) {
    assert.throws(() => generateOptions(bad), (e) => e.code === "INVALID_ARGUMENT", JSON.stringify(bad));
  }
  assert.deepEqual(generateOptions({ topK: 0, repeatLastN: 0 }), { top_k: 0, repeat_last_n: 0 });
  assert.deepEqual(generateOptions({ responseFormat: { type: "json_object" } }), { response_format: { type: "json_object" } });
  assert.throws(() => generateOptions({ responseFormat: { type: "xml" } }), (e) => e.code === "INVALID_ARGUMENT");
});

test("chat params map to engine options", () => {
  assert.deepEqual(chatOptions({ max_tokens: 4, temperature: 0.5, top_p: 0.9, seed: 1, stop: "\n", top_k: 2, min_p: 0.1, repeat_penalty: 1.2, model: "x", user: "u" }),
    { max_tokens: 4, temperature: 0.5, top_p: 0.9, seed: 1, stop: ["\n"], top_k: 2, min_p: 0.1, repeat_penalty: 1.2 });
  assert.deepEqual(chatOptions({ max_completion_tokens: 9 }), { max_tokens: 9 });
  assert.deepEqual(chatOptions({ presence_penalty: 0.5, frequency_penalty: -0.2, logit_bias: { 5: -100 } }),
    { presence_penalty: 0.5, frequency_penalty: -0.2, logit_bias: { 5: -100 } });
  assert.deepEqual(generateOptions({ presencePenalty: 1, frequencyPenalty: 1, logitBias: { 7: 2 } }),
    { presence_penalty: 1, frequency_penalty: 1, logit_bias: { 7: 2 } });
  for (const bad of [{ logit_bias: [1] }, { logit_bias: { x: 1 } }, { logit_bias: { 1: NaN } }, { seed: 1.5 }, { seed: -1 }]) {
    assert.throws(() => chatOptions(bad), (e) => e.code === "INVALID_ARGUMENT", JSON.stringify(bad));
  }
  assert.throws(() => chatOptions({ n: 2 }), (e) => e.code === "INVALID_ARGUMENT");
  assert.throws(() => chatOptions({ max_tokens: 0 }), (e) => e.code === "INVALID_ARGUMENT");
  assert.throws(() => chatOptions({ temperature: Infinity }), (e) => e.code === "INVALID_ARGUMENT");
  assert.deepEqual(chatOptions({ response_format: { type: "json_schema", json_schema: { schema: {} } } }),
    { response_format: { type: "json_schema", json_schema: { schema: {} } } });
  assert.deepEqual(chatMessages([{ role: "user", content: [{ type: "text", text: "a" }, { type: "text", text: "b" }] }, { role: "assistant", content: null }]),
    [{ role: "user", content: "ab" }, { role: "assistant", content: "" }]);
  assert.throws(() => chatMessages([]), (e) => e.code === "INVALID_ARGUMENT");
  assert.throws(() => chatMessages([{ role: "user", content: [{ type: "image_url" }] }]), (e) => e.code === "INVALID_ARGUMENT");
});

test("mutex runs tasks in order, one at a time; a queued task can be aborted", async () => {
  const m = new Mutex(); const order = []; let active = 0;
  const task = (name, ms) => async () => { active++; assert.equal(active, 1); order.push(name); await sleep(ms); active--; return name; };
  const c = new AbortController();
  const a = m.run(task("a", 20)); const b = m.run(task("b", 5), c.signal); const d = m.run(task("d", 1));
  c.abort();
  await assert.rejects(b, (e) => e.name === "AbortError" && e.code === "ABORTED");
  assert.equal(await a, "a"); assert.equal(await d, "d");
  assert.deepEqual(order, ["a", "d"]);
  await assert.rejects(m.run(async () => { throw new Error("x"); }));
  assert.equal(await m.run(async () => 1), 1); // a failed task does not block the queue
});

test("channel delivers pushes in order, then the end or the error", async () => {
  const ch = new Channel(); ch.push(1); const p = ch.next(); ch.push(2);
  assert.deepEqual(await p, { done: false, value: 1 });
  const q = ch.next(); await sleep(1);
  ch.close("r");
  assert.deepEqual(await q, { done: false, value: 2 }); // wait: q took 2
  assert.deepEqual(await ch.next(), { done: true, value: "r" });
  const ch2 = new Channel(); const r = ch2.next(); ch2.fail(new Error("boom"));
  await assert.rejects(r, /boom/);
});

test("generate yields non-empty pieces and returns the result; wasm is initialised once", async () => {
  const engine = await load();
  const it = engine.generate("Once", { maxTokens: 5, temperature: 0 });
  const pieces = []; let r;
  while (!(r = await it.next()).done) pieces.push(r.value);
  assert.deepEqual(pieces, ["Once", " upon", " a", " time"]);
  assert.equal(r.value.finishReason, "length");
  const e = log.engines.at(-1);
  assert.deepEqual(e.calls[0].options, { max_tokens: 5, temperature: 0 });
  assert.deepEqual(e.calls[0].input, { prompt: "Once" });
  const s = engine.stats();
  assert.equal(s.completionTokens, 5); assert.equal(s.finishReason, "length"); assert.equal(s.adapter, "mock"); assert.equal(s.model.name, "Mock 1M");
  assert.equal(typeof s.loadSeconds, "number");
  assert.ok(s.compileSeconds >= 0 && s.compileSeconds <= s.loadSeconds);
  assert.equal(s.encodeUsPerToken, null);
  // The load's breakdown: each part a time, together within the load (the first byte's wait
  // aside: the stub's source has none worth counting, so 50 ms covers timer granularity).
  for (const k of ["downloadSeconds", "uploadSeconds"]) assert.ok(s[k] >= 0, `${k}: ${s[k]}`);
  assert.ok(s.downloadSeconds + s.uploadSeconds + s.compileSeconds <= s.loadSeconds + 0.05);
  assert.equal(s.firstTokenSeconds, 0.1, "the first generation's time to first token");
  assert.deepEqual(s.compiledKernels, [], "none reported by the engine: an empty list");
  assert.equal(s.contextReduced, null, "the engine's context report reaches stats()");
  await load(); assert.equal(log.inits, 1);
});

test("breaking out of the loop stops the generation and frees the engine", async () => {
  const engine = await load(); const e = log.engines.at(-1);
  for await (const piece of engine.generate("x", { maxTokens: 100, seed: 5 })) { if (piece === " upon") break; }
  assert.equal(e.calls[0].aborted, true);
  assert.equal(e.busy, false); // return() waited for the engine
  assert.equal(e.calls[0].pieces.length, 4); // stopped at the token after the break
  assert.equal((await collect(engine.generate("y", { maxTokens: 3 }))).join(""), "Once upon");
  assert.equal((await collect(engine.generate("y", null))).length, 11); // null options: all defaults
});

test("abort stops within a token, throws AbortError/ABORTED, engine stays usable", async () => {
  const engine = await load(); const e = log.engines.at(-1);
  const c = new AbortController(); const got = [];
  await assert.rejects(async () => { for await (const p of engine.generate("x", { maxTokens: 100, signal: c.signal })) { got.push(p); if (got.length === 2) c.abort(); } },
    (err) => err instanceof LlamaWgpuError && err.name === "AbortError" && err.code === "ABORTED");
  assert.equal(e.calls[0].pieces.length <= 4, true);
  assert.equal(e.calls[0].aborted, true);
  assert.equal(got.length, 2);
  // Pieces the engine wrote while the consumer was busy are not handed out after abort().
  const c1 = new AbortController(); const seen = [];
  await assert.rejects(async () => {
    for await (const p of engine.generate("x", { maxTokens: 100, seed: 0, signal: c1.signal })) {
      seen.push(p);
      await new Promise((r) => setTimeout(r, 30));
      c1.abort();
    }
  }, (err) => err.code === "ABORTED");
  assert.ok(e.calls[1].pieces.length > 1, "pieces were queued while the consumer waited");
  assert.equal(seen.length, 1);
  e.calls.splice(1, 1);
  // aborted before the call: throws at once, nothing runs
  const c2 = new AbortController(); c2.abort();
  assert.throws(() => engine.generate("x", { signal: c2.signal }), (err) => err.name === "AbortError");
  await assert.rejects(engine.chat.completions.create({ messages: [{ role: "user", content: "hi" }], signal: c2.signal }), (err) => err.code === "ABORTED");
  assert.equal(e.calls.length, 1);
  assert.equal((await collect(engine.generate("x", { maxTokens: 2 }))).join(""), "Once");
});

test("concurrent generations are queued, never interleaved or ENGINE_BUSY", async () => {
  const engine = await load(); const e = log.engines.at(-1);
  const [a, b, n] = await Promise.all([collect(engine.generate("a", { maxTokens: 4 })), collect(engine.generate("b", { maxTokens: 3 })), engine.countTokens("one two three")]);
  assert.deepEqual(a, ["Once", " upon", " a"]); assert.deepEqual(b, ["Once", " upon"]); assert.equal(n, 3);
  await Promise.all([engine.resetChat(), engine.chat.completions.create({ messages: [{ role: "user", content: "x" }], max_tokens: 2 })]);
  assert.equal(e.resets, 1);
});

test("tools: options checked, calls shaped as OpenAI's message.tool_calls and streamed deltas", async () => {
  const tools = [{ type: "function", function: { name: "add", parameters: { type: "object" } } }];
  assert.deepEqual(chatOptions({ tools, tool_choice: "required", parallel_tool_calls: false }), { tools, tool_choice: "required", parallel_tool_calls: false });
  assert.deepEqual(chatOptions({ tools, tool_choice: { type: "function", function: { name: "add" } } }).tool_choice, { type: "function", function: { name: "add" } });
  for (const bad of [{ tools: {} }, { tools: [{ type: "code" }] }, { tools, tool_choice: "always" }, { tools, parallel_tool_calls: "yes" }]) {
    assert.throws(() => chatOptions(bad), (e) => e.code === "INVALID_ARGUMENT", JSON.stringify(bad));
  }
  const call = { id: "call_1", type: "function", function: { name: "add", arguments: '{"a":1}' } };
  assert.deepEqual(chatMessages([{ role: "assistant", content: null, tool_calls: [call] }, { role: "tool", tool_call_id: "call_1", content: "2" }]),
    [{ role: "assistant", content: "", tool_calls: [call] }, { role: "tool", content: "2", tool_call_id: "call_1" }]);
  assert.throws(() => chatMessages([{ role: "assistant", tool_calls: [{ function: { name: "add", arguments: {} } }] }]), (e) => e.code === "INVALID_ARGUMENT");

  const engine = await load();
  const messages = [{ role: "user", content: "1+1?" }];
  const reply = await engine.chat.completions.create({ messages, tools, tool_choice: "required" });
  assert.deepEqual(reply.choices[0].message, { role: "assistant", content: null, tool_calls: [call] });
  assert.equal(reply.choices[0].finish_reason, "tool_calls");
  const chunks = await collect(await engine.chat.completions.create({ messages, tools, tool_choice: "required", stream: true }));
  assert.equal(chunks.length, 2);
  assert.deepEqual(chunks[0].choices[0].delta, { role: "assistant", tool_calls: [{ index: 0, ...call }] });
  assert.equal(chunks[0].choices[0].finish_reason, null);
  assert.equal(chunks[1].choices[0].finish_reason, "tool_calls");
});

test("chat.completions.create: OpenAI shapes, streaming and not", async () => {
  const engine = await load(); const e = log.engines.at(-1);
  const reply = await engine.chat.completions.create({ messages: [{ role: "system", content: "s" }, { role: "user", content: "hi" }], max_tokens: 4, temperature: 0, stop: "zz" });
  assert.match(reply.id, /^chatcmpl-[0-9a-f]{24}$/);
  assert.equal(reply.object, "chat.completion"); assert.equal(reply.model, "Mock 1M"); assert.equal(typeof reply.created, "number");
  assert.deepEqual(reply.choices, [{ index: 0, message: { role: "assistant", content: "Once upon a" }, finish_reason: "length", logprobs: null }]);
  assert.deepEqual(reply.usage, { prompt_tokens: 4, completion_tokens: 4, total_tokens: 8, prompt_tokens_details: { cached_tokens: 1 } });
  assert.deepEqual(e.calls[0].options, { max_tokens: 4, temperature: 0, stop: ["zz"] });
  assert.deepEqual(e.calls[0].input.messages, [{ role: "system", content: "s" }, { role: "user", content: "hi" }]);

  const stream = await engine.chat.completions.create({ messages: [{ role: "user", content: "hi" }], stream: true, max_tokens: 50 });
  const chunks = await collect(stream);
  assert.equal(chunks.length, 12); // 11 non-empty pieces + the last
  assert.ok(chunks.every((c) => c.object === "chat.completion.chunk" && c.id === chunks[0].id && c.choices[0].index === 0 && c.choices[0].logprobs === null));
  assert.deepEqual(chunks[0].choices[0].delta, { role: "assistant", content: "Once" });
  assert.deepEqual(chunks[1].choices[0].delta, { content: " upon" });
  assert.equal(chunks[1].choices[0].finish_reason, null);
  const last = chunks.at(-1);
  assert.equal(last.choices[0].finish_reason, "stop"); assert.deepEqual(last.choices[0].delta, {});
  assert.equal(last.usage.completion_tokens, 12);
  assert.equal(chunks.slice(0, -1).map((c) => c.choices[0].delta.content).join(""), "Once upon a time there was a cat. The end");
  // break out of a stream
  for await (const c of await engine.chat.completions.create({ messages: [{ role: "user", content: "x" }], stream: true, seed: 5 })) break;
  assert.equal(e.calls.at(-1).aborted, true); assert.equal(e.busy, false);
  // signal in the second argument (OpenAI SDK form)
  const c = new AbortController();
  const s2 = await engine.chat.completions.create({ messages: [{ role: "user", content: "x" }], stream: true }, { signal: c.signal });
  await assert.rejects(async () => { for await (const _ of s2) c.abort(); }, (err) => err.code === "ABORTED");
  // wasm errors keep code and message
  await assert.rejects(engine.chat.completions.create({ messages: [{ role: "bad", content: "x" }] }), (err) => err instanceof LlamaWgpuError && err.code === "CHAT_TEMPLATE_ERROR" && err.message === "bad role");
  // Bad options throw at once, as the d.ts says (the facade checks numbers before the engine).
  assert.throws(() => engine.generate("x", { maxTokens: -1 }), (err) => err.code === "INVALID_ARGUMENT");
});

test("unload: running generation stops, queued and later calls reject ENGINE_UNLOADED", async () => {
  const engine = await load(); const e = log.engines.at(-1);
  const running = collect(engine.generate("x", { maxTokens: 100, seed: 5 }));
  const queued = collect(engine.generate("y", { maxTokens: 100 }));
  running.catch(() => {}); queued.catch(() => {});
  await sleep(12);
  const unloaded = engine.unload();
  await assert.rejects(running, (err) => err.code === "ENGINE_UNLOADED");
  await assert.rejects(queued, (err) => err.code === "ENGINE_UNLOADED");
  await unloaded; assert.equal(e.freed, true);
  assert.equal(e.calls.length, 1);
  await assert.rejects(collect(engine.generate("x")), (err) => err.code === "ENGINE_UNLOADED");
  await assert.rejects(engine.resetChat(), (err) => err.code === "ENGINE_UNLOADED");
  await assert.rejects(engine.chat.completions.create({ messages: [{ role: "user", content: "x" }] }), (err) => err.code === "ENGINE_UNLOADED");
  await engine.unload(); // idempotent
  assert.equal(engine.stats().completionTokens !== undefined, true);
});

test("device \"gpu\" without WebGPU rejects with WEBGPU_UNAVAILABLE before loading, and says what is needed", async () => {
  const gpu = navigator.gpu; delete navigator.gpu; navigator.gpu = undefined;
  const loaders = log.loaders.length;
  try {
    await assert.rejects(load({ device: "gpu" }), (e) => e instanceof LlamaWgpuError && e.code === "WEBGPU_UNAVAILABLE" && /Chrome or Edge 113\+/.test(e.message) && /Safari 26\+/.test(e.message) && /"auto"/.test(e.message));
    assert.equal(await hasWebGPU(), false);
  } finally { navigator.gpu = gpu; }
  globalThis.__noGpuAdapter = true;
  try { await assert.rejects(load({ device: "gpu" }), (e) => e.code === "WEBGPU_UNAVAILABLE" && /no adapter/.test(e.message)); } finally { globalThis.__noGpuAdapter = false; }
  assert.equal(log.loaders.length, loaders, "the facade's check refused before the wasm loader was created");
  assert.equal(await hasWebGPU(), true);
});

test("device: \"auto\" by default, passed to the loader; no WebGPU check in the facade for auto and cpu", async () => {
  const gpu = navigator.gpu;
  let adapterRequests = 0;
  navigator.gpu = { requestAdapter: async () => { adapterRequests++; return {}; } };
  try {
    const engine = await load();
    assert.equal(log.loaders.at(-1).options.device, "auto");
    assert.equal(adapterRequests, 0, "auto left the adapter to the wasm side");
    const s = engine.stats();
    assert.equal(s.device, "gpu"); assert.equal(s.deviceReason, "hardware GPU: mock");
    assert.equal(s.gpuBytes, 1000); assert.equal(s.cpuBytes, 0);
    await load({ device: "cpu" });
    assert.equal(log.loaders.at(-1).options.device, "cpu");
    assert.equal(adapterRequests, 0, "cpu never asks for an adapter");
    await load({ device: "gpu" });
    assert.equal(log.loaders.at(-1).options.device, "gpu");
    assert.equal(adapterRequests, 1, "gpu checks for an adapter before the download");
    assert.equal(log.engines.at(-1).info().device, "gpu");
  } finally { navigator.gpu = gpu; }
  // A browser without WebGPU at all: auto and cpu load on the CPU engine.
  delete navigator.gpu; navigator.gpu = undefined;
  try {
    for (const device of [undefined, "auto", "cpu"]) {
      const engine = await load({ device });
      const s = engine.stats();
      assert.equal(s.device, "cpu", `device ${device}`);
      assert.ok(s.deviceReason.length > 0);
      assert.equal(s.adapter, "CPU engine (simd128, 1 thread)");
      assert.equal(s.cpuBytes, 1000); assert.equal(s.gpuBytes, 0);
      assert.equal((await collect(engine.generate("x", { maxTokens: 3 }))).join(""), "Once upon");
      await engine.unload();
    }
  } finally { navigator.gpu = gpu; }
  // An adapter that the wasm side refuses (__noGpuAdapter: requestAdapter gives null) under auto.
  globalThis.__noGpuAdapter = true;
  try { assert.equal((await load()).stats().device, "cpu"); } finally { globalThis.__noGpuAdapter = false; }
});

test("an unknown device is INVALID_ARGUMENT, before any loading", async () => {
  const loaders = log.loaders.length;
  for (const device of ["GPU", "webgpu", "", 1, true]) {
    await assert.rejects(load({ device }), (e) => e instanceof LlamaWgpuError && e.code === "INVALID_ARGUMENT" && /device/.test(e.message) && /auto, gpu, cpu/.test(e.message), `device ${JSON.stringify(device)}`);
  }
  assert.equal(log.loaders.length, loaders);
  assert.equal(deviceOption(undefined), "auto"); assert.equal(deviceOption("cpu"), "cpu");
});

test("bad model arguments and bad files", async () => {
  await assert.rejects(createEngine({}), (e) => e.code === "INVALID_ARGUMENT");
  await assert.rejects(createEngine({ model: 42 }), (e) => e.code === "INVALID_ARGUMENT");
  // Checked before any download: unknown keys (as generate() refuses them) and context lengths.
  for (const bad of [{ contextLenght: 512 }, { contextLength: 0 }, { contextLength: 1.5 }, { contextLength: NaN }, { threads: 0 }, { device: "tpu" },
    { maxGpuBytes: 0 }, { maxGpuBytes: -1 }, { maxGpuBytes: 1.5e3 + 0.5 }, { maxGpuBytes: Infinity }, { maxGpuBytes: NaN }, { maxGpuBytes: "512M" }, { maxGPUBytes: 1 }]) {
    await assert.rejects(createEngine({ model: gguf(1000), ...bad }), (e) => e.code === "INVALID_ARGUMENT", JSON.stringify(bad));
  }
  await assert.rejects(createEngine({ model: gguf(100, "GGUX") }), (e) => e.code === "GGUF_INVALID" && /bad magic/.test(e.message));
  assert.equal(log.loaders.at(-1).freed, true);
  await assert.rejects(createEngine({ model: gguf(6) }), (e) => e.code === "MODEL_INVALID");
});

test("logprobs: options checked; OpenAI's choice.logprobs, streamed with the chunk that releases each token", async () => {
  assert.deepEqual(generateOptions({ logprobs: true, topLogprobs: 3 }), { logprobs: true, top_logprobs: 3 });
  assert.deepEqual(chatOptions({ logprobs: true, top_logprobs: 0 }), { logprobs: true, top_logprobs: 0 });
  for (const bad of [{ topLogprobs: 2 }, { logprobs: true, topLogprobs: 21 }, { logprobs: true, topLogprobs: 1.5 }, { logprobs: "yes" }]) {
    assert.throws(() => generateOptions(bad), (e) => e.code === "INVALID_ARGUMENT", JSON.stringify(bad));
  }
  assert.throws(() => chatOptions({ top_logprobs: 2 }), (e) => e.code === "INVALID_ARGUMENT" && /logprobs: true/.test(e.message));
  const engine = await load();
  const messages = [{ role: "user", content: "hi" }];
  const plain = await engine.chat.completions.create({ messages, max_tokens: 4 });
  assert.equal(plain.choices[0].logprobs, null, "null unless asked");
  const reply = await engine.chat.completions.create({ messages, max_tokens: 4, logprobs: true, top_logprobs: 2 });
  assert.deepEqual(reply.choices[0].logprobs.content.map((e) => e.token), ["Once", "", " upon", " a"]);
  assert.equal(reply.choices[0].logprobs.refusal, null);
  const chunks = await collect(await engine.chat.completions.create({ messages, max_tokens: 4, logprobs: true, stream: true }));
  const per = chunks.map((c) => c.choices[0].logprobs.content.map((e) => e.token));
  // "" has no text: its entry goes with " upon"; the last chunk carries none left.
  assert.deepEqual(per, [["Once"], ["", " upon"], [" a"], []]);
  // generate(): in the result; the pieces stay strings.
  const it = engine.generate("x", { maxTokens: 3, logprobs: true });
  const pieces = [];
  let next;
  while (!(next = await it.next()).done) pieces.push(next.value);
  assert.deepEqual(pieces, ["Once", " upon"]);
  assert.deepEqual(next.value.logprobs.map((e) => e.logprob), [-0, -0.1, -0.2]);
});

test("a lost device: DEVICE_LOST, state lost, onDeviceLost once, calls fail at once, reload() recovers", async () => {
  const lost = [];
  const engine = await load({ onDeviceLost: (e) => lost.push(e.code) });
  const first = log.engines.at(-1);
  assert.equal(engine.stats().state, "ready");
  globalThis.__loseDevice = true;
  await assert.rejects(collect(engine.generate("x", { maxTokens: 3 })), (e) => e.code === "DEVICE_LOST");
  await sleep(0);
  assert.equal(engine.stats().state, "lost");
  assert.deepEqual(lost, ["DEVICE_LOST"]);
  const calls = first.calls.length;
  await assert.rejects(engine.chat.completions.create({ messages: [{ role: "user", content: "x" }] }), (e) => e.code === "DEVICE_LOST" && /reload/.test(e.message));
  await assert.rejects(engine.countTokens("a b"), (e) => e.code === "DEVICE_LOST");
  assert.equal(first.calls.length, calls, "nothing reached the lost engine");
  await engine.reload();
  assert.equal(first.freed, true, "the lost engine was freed");
  assert.notEqual(log.engines.at(-1), first, "a new wasm engine");
  assert.equal(engine.stats().state, "ready");
  assert.equal((await collect(engine.generate("x", { maxTokens: 2 }))).join(""), "Once");
  assert.deepEqual(lost, ["DEVICE_LOST"]);
  await engine.unload();
  assert.equal(engine.stats().state, "unloaded");
  await assert.rejects(engine.reload(), (e) => e.code === "ENGINE_UNLOADED");
  await assert.rejects(createEngine({ model: gguf(1000), onDeviceLost: 5 }), (e) => e.code === "INVALID_ARGUMENT");
  // A stream cannot be read twice.
  const streamed = await createEngine({ model: new Blob([gguf(1000)]).stream() });
  await assert.rejects(streamed.reload(), (e) => e.code === "INVALID_ARGUMENT" && /ReadableStream/.test(e.message));
});

// The little-endian f32 values of OpenAI's base64 embedding.
function decodeBase64Floats(text) {
  const bytes = Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
  const view = new DataView(bytes.buffer);
  return Array.from({ length: bytes.length / 4 }, (_, i) => view.getFloat32(i * 4, true));
}

test("embeddings.create: OpenAI's list, float and base64, dimensions, usage", async () => {
  const engine = await load(); const e = log.engines.at(-1);
  const one = await engine.embeddings.create({ input: "hello", model: "ignored" });
  assert.equal(one.object, "list"); assert.equal(one.model, "Mock 1M");
  assert.equal(one.data.length, 1);
  assert.deepEqual(Object.keys(one.data[0]), ["object", "index", "embedding"]);
  assert.equal(one.data[0].object, "embedding"); assert.equal(one.data[0].index, 0);
  assert.equal(one.data[0].embedding.length, 8);
  assert.ok(Array.isArray(one.data[0].embedding) && one.data[0].embedding.every((x) => typeof x === "number"));
  assert.deepEqual(one.usage, { prompt_tokens: 5, total_tokens: 5 });
  assert.deepEqual(e.embedded[0], ["hello"]);

  const many = await engine.embeddings.create({ input: ["hello", "world", [1, 2, 3]], encoding_format: "float" });
  assert.deepEqual(many.data.map((d) => d.index), [0, 1, 2]);
  assert.deepEqual(many.data[0].embedding, one.data[0].embedding, "an input's vector does not depend on the batch");
  assert.deepEqual(many.usage, { prompt_tokens: 13, total_tokens: 13 });
  const ids = await engine.embeddings.create({ input: [4, 5] });
  assert.deepEqual(e.embedded.at(-1), [[4, 5]], "an array of numbers is one input of token ids");
  assert.equal(ids.data.length, 1);

  const b64 = await engine.embeddings.create({ input: ["hello", "world", [1, 2, 3]], encoding_format: "base64" });
  b64.data.forEach((d, i) => {
    assert.equal(typeof d.embedding, "string");
    // base64 carries the f32 bits the float form's numbers were widened from: exact.
    assert.deepEqual(decodeBase64Floats(d.embedding), many.data[i].embedding);
  });

  const short = await engine.embeddings.create({ input: "hello", dimensions: 3 });
  const head = one.data[0].embedding.slice(0, 3);
  const norm = Math.hypot(...head);
  // Renormalized in f64 from the f32 values, then widened again: about 1e-7 relative.
  short.data[0].embedding.forEach((x, i) => assert.ok(Math.abs(x - head[i] / norm) < 1e-6));
  assert.ok(Math.abs(Math.hypot(...short.data[0].embedding) - 1) < 1e-6);
  assert.equal((await engine.embeddings.create({ input: "hello", dimensions: 8 })).data[0].embedding.length, 8);
  await assert.rejects(engine.embeddings.create({ input: "hello", dimensions: 9 }), (err) => err.code === "INVALID_ARGUMENT" && /dimensions 9/.test(err.message));
});

test("embeddings.create refuses bad params and reports a generation model's error code", async () => {
  const engine = await load(); const e = log.engines.at(-1);
  const bad = [undefined, {}, { input: "" }, { input: [] }, { input: [""] }, { input: [[]] }, { input: [1.5] }, { input: [-1] }, { input: [["a"]] }, { input: 3 },
    { input: "x", encoding_format: "binary" }, { input: "x", dimensions: 0 }, { input: "x", dimensions: 2.5 }, { input: "x", model: 3 },
    { input: "x", stream: true }, { input: "x", encodingFormat: "base64" }];
  for (const params of bad) {
    await assert.rejects(engine.embeddings.create(params), (err) => err instanceof LlamaWgpuError && err.code === "INVALID_ARGUMENT", JSON.stringify(params));
  }
  assert.equal(e.embedded, undefined, "nothing reached the engine");
  globalThis.__generationModel = true;
  try {
    await assert.rejects(engine.embeddings.create({ input: "x" }), (err) => err instanceof LlamaWgpuError && err.code === "EMBEDDINGS_UNSUPPORTED");
  } finally { globalThis.__generationModel = false; }
  const c = new AbortController(); c.abort();
  await assert.rejects(engine.embeddings.create({ input: "x" }, { signal: c.signal }), (err) => err.code === "ABORTED");
});

test("embeddings queue behind a running generation, never ENGINE_BUSY", async () => {
  const engine = await load(); const e = log.engines.at(-1);
  const order = [];
  const gen = collect(engine.generate("a", { maxTokens: 5, seed: 3 })).then(() => order.push("generate"));
  const emb = engine.embeddings.create({ input: ["q"] }).then((r) => order.push("embed") && r);
  // Queued behind the generation: a signal aborted while it waits drops it.
  const c = new AbortController();
  const dropped = engine.embeddings.create({ input: "z" }, { signal: c.signal });
  c.abort();
  await assert.rejects(dropped, (err) => err.code === "ABORTED");
  await Promise.all([gen, emb]);
  assert.deepEqual(order, ["generate", "embed"]);
  assert.deepEqual(e.embedded, [["q"]]);
});

test("every promise-returning API reports a bad argument as a rejection, never a synchronous throw", async () => {
  const engine = await load();
  const messages = [{ role: "user", content: "hi" }];
  const calls = {
    "createEngine (unknown option)": () => createEngine({ model: gguf(1000), bogus: 1 }),
    "createEngine (bad threads)": () => createEngine({ model: gguf(1000), threads: 0 }),
    "createWorkerEngine (unknown option)": () => createWorkerEngine({ model: gguf(1000), bogus: 1 }),
    "countTokens (not a string)": () => engine.countTokens(5),
    "chat.completions.create (no params)": () => engine.chat.completions.create(),
    "chat.completions.create (empty messages)": () => engine.chat.completions.create({ messages: [] }),
    "chat.completions.create (n: 2)": () => engine.chat.completions.create({ messages, n: 2 }),
    "chat.completions.create (stream, bad option)": () => engine.chat.completions.create({ messages, stream: true, max_tokens: -1 }),
    "embeddings.create (no params)": () => engine.embeddings.create(),
    "embeddings.create (bad input)": () => engine.embeddings.create({ input: 3 }),
  };
  for (const [name, call] of Object.entries(calls)) {
    let result;
    assert.doesNotThrow(() => { result = call(); }, `${name} threw synchronously`);
    assert.ok(result instanceof Promise, `${name} returned ${result}`);
    await assert.rejects(result, (err) => err.code === "INVALID_ARGUMENT", name);
  }
});

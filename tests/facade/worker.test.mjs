import "./env.mjs";
import { test } from "node:test";
import assert from "node:assert/strict";
import { gguf, collect } from "./env.mjs";
import { server, installFetch, installCaches, store } from "./net.mjs";
import { createWorkerEngine, LlamaWgpuError } from "./pkg/index.js";
import { serve } from "./pkg/worker-server.js";
import { log } from "./pkg/llama_wgpu.js";

installFetch(); installCaches();
const MiB = 1024 * 1024;

// A "worker": the page end of a MessageChannel whose other end is served in this thread.
function fakeWorker({ noStreamTransfer = false } = {}) {
  const { port1, port2 } = new MessageChannel();
  serve(port2);
  const messages = [];
  return {
    messages,
    postMessage(msg, transfer) {
      messages.push(msg);
      if (noStreamTransfer && transfer?.some((t) => t instanceof ReadableStream)) throw new DOMException("cannot transfer", "DataCloneError");
      port1.postMessage(msg, transfer);
    },
    addEventListener: (...a) => port1.addEventListener(...a),
    start: () => port1.start(),
    close: () => { port1.close(); port2.close(); },
  };
}

test("worker engine: same API, pieces, stats, queue, OpenAI shapes", async () => {
  const worker = fakeWorker();
  const events = [];
  const bytes = gguf(9 * MiB);
  const engine = await createWorkerEngine({ model: bytes, worker, onProgress: (e) => events.push(e) });
  assert.equal(bytes.buffer.byteLength, 0, "the buffer was transferred");
  assert.deepEqual([...new Set(events.map((e) => e.phase))], ["load", "compile"]);
  assert.equal(engine.stats().model.name, "Mock 1M");
  assert.equal(engine.stats().completionTokens, null);
  const [a, b] = await Promise.all([collect(engine.generate("a", { maxTokens: 4 })), collect(engine.generate("b", { maxTokens: 3 }))]);
  assert.deepEqual(a, ["Once", " upon", " a"]); assert.deepEqual(b, ["Once", " upon"]);
  assert.equal(engine.stats().completionTokens, 3);
  const reply = await engine.chat.completions.create({ messages: [{ role: "user", content: "x" }], max_tokens: 2 });
  assert.equal(reply.choices[0].message.content, "Once");
  assert.equal(reply.model, "Mock 1M");
  const chunks = await collect(await engine.chat.completions.create({ messages: [{ role: "user", content: "x" }], max_tokens: 3, stream: true }));
  assert.equal(chunks.length, 3); assert.equal(chunks.at(-1).usage.total_tokens, 7);
  assert.equal(await engine.countTokens("a b"), 2);
  // Embeddings cross the worker (the Float32Array is cloned) and queue with generations.
  const [, embedded] = await Promise.all([collect(engine.generate("c", { maxTokens: 3 })), engine.embeddings.create({ input: ["hi", [1, 2]], encoding_format: "base64" })]);
  assert.equal(embedded.object, "list"); assert.equal(embedded.model, "Mock 1M");
  assert.deepEqual(embedded.usage, { prompt_tokens: 4, total_tokens: 4 });
  assert.ok(embedded.data.every((d) => typeof d.embedding === "string" && atob(d.embedding).length === 32));
  const floats = await engine.embeddings.create({ input: "hi" });
  assert.equal(floats.data[0].embedding.length, 8);
  globalThis.__generationModel = true;
  await assert.rejects(engine.embeddings.create({ input: "x" }), (err) => err instanceof LlamaWgpuError && err.code === "EMBEDDINGS_UNSUPPORTED");
  globalThis.__generationModel = false;
  await engine.resetChat();
  assert.equal(log.engines.at(-1).resets, 1);
  await engine.unload();
  assert.equal(log.engines.at(-1).freed, true);
  await assert.rejects(collect(engine.generate("x")), (e) => e.code === "ENGINE_UNLOADED");
  worker.close();
});

test("worker engine: abort, break, errors with codes cross the boundary", async () => {
  const worker = fakeWorker();
  const engine = await createWorkerEngine({ model: new Blob([gguf(5000)]), worker });
  const e = log.engines.at(-1);
  const c = new AbortController(); const got = [];
  await assert.rejects(async () => { for await (const p of engine.generate("x", { maxTokens: 100, signal: c.signal, seed: 3 })) { got.push(p); if (got.length === 2) c.abort(); } },
    (err) => err instanceof LlamaWgpuError && err.name === "AbortError" && err.code === "ABORTED");
  assert.equal(e.calls[0].aborted, true);
  assert.ok(e.calls[0].pieces.length <= 5, `${e.calls[0].pieces.length} pieces`);
  for await (const p of engine.generate("x", { maxTokens: 100, seed: 3 })) break;
  assert.equal(e.calls[1].aborted, true); assert.equal(e.busy, false);
  await assert.rejects(engine.chat.completions.create({ messages: [{ role: "bad", content: "x" }] }), (err) => err instanceof LlamaWgpuError && err.code === "CHAT_TEMPLATE_ERROR" && err.message === "bad role");
  assert.deepEqual(await collect(engine.generate("x", { maxTokens: 2 })), ["Once"]);
  // queued behind a running one, then aborted while queued: rejected at once, never run
  const running = collect(engine.generate("x", { maxTokens: 8, seed: 5 }));
  const c2 = new AbortController();
  const queued = collect(engine.generate("y", { signal: c2.signal }));
  queued.catch(() => {});
  c2.abort();
  await assert.rejects(queued, (err) => err.code === "ABORTED");
  await running;
  assert.equal(e.calls.length, 4); // the bad-role chat failed before running
  await engine.unload();
  worker.close();
});

test("worker engine: load errors and load abort", async () => {
  const w1 = fakeWorker();
  await assert.rejects(createWorkerEngine({ model: gguf(100, "ABCD"), worker: w1 }), (e) => e instanceof LlamaWgpuError && e.code === "GGUF_INVALID");
  w1.close();
  const w2 = fakeWorker();
  server.set("http://models.test/w.gguf", { bytes: gguf(4 * MiB) });
  const c = new AbortController();
  await assert.rejects(createWorkerEngine({ model: "http://models.test/w.gguf", worker: w2, signal: c.signal, onProgress: (e) => { if (e.loaded > MiB) c.abort(); } }), (e) => e.code === "ABORTED");
  assert.equal(store.size, 0);
  w2.close();
  const w3 = fakeWorker();
  globalThis.__noGpuAdapter = true;
  try { await assert.rejects(createWorkerEngine({ model: gguf(100), worker: w3, device: "gpu" }), (e) => e.code === "WEBGPU_UNAVAILABLE"); } finally { globalThis.__noGpuAdapter = false; }
  w3.close();
  const w4 = fakeWorker();
  await assert.rejects(createWorkerEngine({ model: gguf(100), worker: w4, device: "tpu" }), (e) => e instanceof LlamaWgpuError && e.code === "INVALID_ARGUMENT" && /device/.test(e.message));
  assert.equal(w4.messages.length, 0, "a bad device is refused on the page, before the worker is asked");
  w4.close();
});

test("worker engine: the device option crosses to the worker; stats carry device, deviceReason, cpuBytes", async () => {
  const w1 = fakeWorker();
  globalThis.__noGpuAdapter = true; // auto finds no adapter: the CPU engine
  let engine;
  try { engine = await createWorkerEngine({ model: gguf(3000), worker: w1 }); } finally { globalThis.__noGpuAdapter = false; }
  assert.equal(log.loaders.at(-1).options.device, "auto");
  let s = engine.stats();
  assert.equal(s.device, "cpu"); assert.ok(s.deviceReason.length > 0); assert.equal(s.cpuBytes, 3000); assert.equal(s.gpuBytes, 0);
  assert.equal(s.adapter, "CPU engine (simd128, 1 thread)");
  await collect(engine.generate("x", { maxTokens: 2 }));
  assert.equal(engine.stats().device, "cpu");
  await engine.unload(); w1.close();
  for (const device of ["cpu", "gpu"]) {
    const w = fakeWorker();
    const e = await createWorkerEngine({ model: gguf(2000), worker: w, device });
    assert.equal(log.loaders.at(-1).options.device, device);
    s = e.stats();
    assert.equal(s.device, device); assert.equal(s[device === "cpu" ? "cpuBytes" : "gpuBytes"], 2000);
    await e.unload(); w.close();
  }
});

test("worker engine: URL sources and streams, transferred or relayed", async () => {
  server.set("http://models.test/u.gguf", { bytes: gguf(2 * MiB) });
  const w1 = fakeWorker();
  const events = [];
  const e1 = await createWorkerEngine({ model: new URL("http://models.test/u.gguf"), worker: w1, onProgress: (e) => events.push(e) });
  assert.deepEqual([...new Set(events.map((e) => e.phase))], ["download", "compile"]);
  await e1.unload(); w1.close();
  const bytes = gguf(20 * MiB + 3);
  for (const noStreamTransfer of [false, true]) {
    const w = fakeWorker({ noStreamTransfer });
    let pulls = 0;
    const stream = new ReadableStream({ start(c) { c.enqueue(bytes.subarray(0, 12 * MiB)); c.enqueue(bytes.subarray(12 * MiB)); c.close(); } });
    const engine = await createWorkerEngine({ model: stream, worker: w });
    assert.equal(log.loaders.at(-1).bytesReceived, bytes.length);
    const relayed = w.messages.filter((m) => m.type === "chunk").length;
    assert.equal(relayed > 0, noStreamTransfer, `relay used: ${relayed}`);
    await engine.unload(); w.close();
  }
});

test("worker engine: a lost device is reported on the page and reload() rebuilds the engine in the worker", async () => {
  const worker = fakeWorker();
  const lost = [];
  const engine = await createWorkerEngine({ model: gguf(1000), worker, onDeviceLost: (e) => lost.push(e.code) });
  const first = log.engines.at(-1);
  globalThis.__loseDevice = true;
  await assert.rejects(collect(engine.generate("x", { maxTokens: 3 })), (e) => e.code === "DEVICE_LOST");
  await new Promise((r) => setTimeout(r, 0));
  assert.equal(engine.stats().state, "lost");
  assert.deepEqual(lost, ["DEVICE_LOST"]);
  const events = [];
  await engine.reload({ onProgress: (e) => events.push(e.phase) });
  assert.ok(events.includes("compile"), "the reload reports its progress");
  assert.ok(first.freed && log.engines.at(-1) !== first, "a new wasm engine in the worker");
  assert.equal(engine.stats().state, "ready");
  assert.equal((await collect(engine.generate("x", { maxTokens: 2 }))).join(""), "Once");
  await engine.unload();
  worker.close();
});

test("worker engine: a worker the package started is terminated by unload() and by a failed load", async () => {
  const started = [];
  globalThis.Worker = class {
    constructor(url, options) {
      const w = fakeWorker();
      Object.assign(this, w, { url: String(url), options, terminated: false });
      this.terminate = () => { this.terminated = true; w.close(); };
      started.push(this);
    }
  };
  try {
    const engine = await createWorkerEngine({ model: gguf(1000) });
    assert.equal(started.length, 1);
    assert.match(started[0].url, /worker\.js$/);
    assert.deepEqual(started[0].options, { type: "module" });
    assert.equal(started[0].terminated, false);
    await engine.unload();
    assert.equal(started[0].terminated, true);
    await assert.rejects(createWorkerEngine({ model: gguf(1000, "HTML") }), (e) => e.code === "GGUF_INVALID");
    assert.equal(started[1].terminated, true);
  } finally {
    delete globalThis.Worker;
  }
});

test("a GPU device lost between calls is reported at once, page and worker alike", async () => {
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  for (const worker of [null, fakeWorker()]) {
    const lost = [];
    const options = { model: gguf(1000), onDeviceLost: (e) => lost.push(e.code) };
    const engine = worker ? await createWorkerEngine({ ...options, worker }) : await (await import("./pkg/index.js")).createEngine(options);
    await collect(engine.generate("a", { maxTokens: 2 }));
    log.engines.at(-1).loseIdle();
    for (let i = 0; i < 50 && !lost.length; i++) await sleep(10);
    assert.deepEqual(lost, ["DEVICE_LOST"], worker ? "worker" : "page");
    assert.equal(engine.stats().state, "lost", "known before any call");
    await assert.rejects(engine.countTokens("x"), (e) => e.code === "DEVICE_LOST");
    await engine.reload();
    assert.equal(engine.stats().state, "ready");
    // The replaced engine's listener is gone; the new one's works.
    assert.equal((await collect(engine.generate("b", { maxTokens: 2 }))).length > 0, true);
    await engine.unload();
    log.engines.at(-1).loseIdle(); // after unload: no news
    await sleep(20);
    assert.deepEqual(lost, ["DEVICE_LOST"]);
    worker?.close();
  }
});

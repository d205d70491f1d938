import "./env.mjs";
import { test, beforeEach } from "node:test";
import assert from "node:assert/strict";
import { gguf } from "./env.mjs";
import { server, stats, store, installFetch, installCaches } from "./net.mjs";
import { createEngine, listCachedModels, deleteCachedModel } from "./pkg/index.js";
import { log } from "./pkg/llama_wgpu.js";
import { bytesChunks, blobChunks, streamChunks, CHUNK_BYTES } from "./pkg/sources.js";

const MiB = 1024 * 1024;
const URL1 = "http://models.test/m.gguf";
installFetch();
beforeEach(() => { store.clear(); stats.fetches.length = 0; stats.puts = 0; log.maxChunk = 0; installCaches(); });
const loaderBytes = () => log.loaders.at(-1).bytesReceived;

test("chunkers keep every chunk within 8 MiB", async () => {
  const big = gguf(20 * MiB + 5);
  const sizes = [...bytesChunks(big)].map((c) => c.byteLength);
  assert.deepEqual(sizes, [CHUNK_BYTES, CHUNK_BYTES, 4 * MiB + 5]);
  const blobSizes = []; for await (const c of blobChunks(new Blob([big]))) blobSizes.push(c.byteLength);
  assert.deepEqual(blobSizes, sizes);
  const stream = new ReadableStream({ start(c) { c.enqueue(big); c.enqueue(new Uint8Array(3)); c.close(); } });
  const streamSizes = []; for await (const c of streamChunks(stream)) streamSizes.push(c.byteLength);
  assert.deepEqual(streamSizes, [...sizes, 3]);
});

test("every source kind loads, with load progress", async () => {
  const bytes = gguf(17 * MiB);
  for (const model of [bytes, bytes.buffer, new Blob([bytes]), new ReadableStream({ start(c) { c.enqueue(bytes.slice(0, 10 * MiB)); c.enqueue(bytes.slice(10 * MiB)); c.close(); } })]) {
    const events = [];
    const engine = await createEngine({ model, onProgress: (e) => events.push(e), contextLength: 512 });
    assert.equal(loaderBytes(), bytes.length);
    assert.ok(log.maxChunk <= CHUNK_BYTES);
    assert.equal(log.loaders.at(-1).options.contextLength, 512);
    const loads = events.filter((e) => e.phase === "load");
    assert.equal(loads.at(-1).loaded, bytes.length);
    assert.deepEqual(events.slice(-2), [{ phase: "compile", loaded: 0, total: 1 }, { phase: "compile", loaded: 1, total: 1 }]);
    assert.ok(loads.length >= 3 && loads.length <= 20, `${loads.length} load events`);
    await engine.unload();
  }
  assert.equal(log.loaders.at(-4).options.fileSize, bytes.length);
  assert.equal(log.loaders.at(-1).options.fileSize, undefined);
});

test("URL: downloaded into the cache, then loaded from it; the second load uses no network", async () => {
  const bytes = gguf(3 * MiB + 7);
  server.set(URL1, { bytes });
  const events = [];
  await createEngine({ model: URL1, onProgress: (e) => events.push(e) });
  assert.deepEqual(stats.fetches, [URL1]);
  assert.equal(store.get(URL1).bytes.length, bytes.length);
  const phases = [...new Set(events.map((e) => e.phase))];
  assert.deepEqual(phases, ["download", "load", "compile"]);
  assert.deepEqual(events.filter((e) => e.phase === "download").at(-1), { phase: "download", loaded: bytes.length, total: bytes.length });
  assert.equal(events.filter((e) => e.phase === "download").length, 4); // first, then ~1 per MiB, then the last
  assert.equal(loaderBytes(), bytes.length);
  assert.equal(log.loaders.at(-1).options.fileSize, bytes.length);
  events.length = 0;
  await createEngine({ model: new URL(URL1), onProgress: (e) => events.push(e) });
  assert.deepEqual(stats.fetches, [URL1]);
  assert.deepEqual([...new Set(events.map((e) => e.phase))], ["load", "compile"]);
  assert.deepEqual(await listCachedModels(), [{ url: URL1, bytes: bytes.length }]);
  assert.equal(await deleteCachedModel(URL1), true);
  assert.equal(await deleteCachedModel(URL1), false);
  assert.deepEqual(await listCachedModels(), []);
});

test("relative URLs resolve against the page; cache: false streams from the network", async () => {
  globalThis.location = { href: "http://models.test/app/index.html" };
  try {
    server.set("http://models.test/app/r.gguf", { bytes: gguf(1000) });
    const events = [];
    await createEngine({ model: "r.gguf", cache: false, onProgress: (e) => events.push(e) });
    assert.equal(stats.puts, 0); assert.equal(store.size, 0);
    assert.deepEqual([...new Set(events.map((e) => e.phase))], ["download", "compile"]);
    assert.equal(loaderBytes(), 1000);
    assert.equal(await deleteCachedModel("r.gguf"), false);
  } finally { delete globalThis.location; }
});

test("HTTP errors and network errors are FETCH_FAILED; nothing is cached", async () => {
  server.set(URL1, { bytes: gguf(10), status: 404 });
  await assert.rejects(createEngine({ model: URL1 }), (e) => e.code === "FETCH_FAILED" && /HTTP 404/.test(e.message));
  await assert.rejects(createEngine({ model: "http://models.test/nothing" }), (e) => e.code === "FETCH_FAILED" && /Failed to fetch/.test(e.message));
  server.set(URL1, { bytes: gguf(300000), failAfter: 131072 });
  await assert.rejects(createEngine({ model: URL1 }), (e) => e.code === "FETCH_FAILED" && /after 131072 bytes/.test(e.message));
  assert.equal(store.size, 0);
});

test("a full cache (quota) falls back to streaming from the network", async () => {
  installCaches({ quota: 100000 });
  server.set(URL1, { bytes: gguf(300000) });
  const events = [];
  await createEngine({ model: URL1, onProgress: (e) => events.push(e) });
  assert.equal(stats.fetches.length, 2);
  assert.equal(store.size, 0);
  assert.equal(loaderBytes(), 300000);
});

test("a short body is refused; an invalid cached file is dropped", async () => {
  // server says 5 MiB but sends less: the cached copy would be truncated
  const bytes = gguf(2000);
  server.set(URL1, { bytes, chunk: 500 });
  const origFetch = globalThis.fetch;
  globalThis.fetch = async (...a) => { const r = await origFetch(...a); return new Response(r.body, { headers: { "content-length": "5000" } }); };
  try {
    await assert.rejects(createEngine({ model: URL1 }), (e) => e.code === "FETCH_FAILED" && /2000 of 5000/.test(e.message));
  } finally { globalThis.fetch = origFetch; }
  assert.equal(store.size, 0);
  server.set(URL1, { bytes: gguf(2000, "HTML") });
  await assert.rejects(createEngine({ model: URL1 }), (e) => e.code === "GGUF_INVALID");
  assert.equal(store.size, 0, "the invalid entry was deleted");
});

test("abort during download or load", async () => {
  server.set(URL1, { bytes: gguf(4 * MiB), chunk: 65536 });
  const c = new AbortController();
  const p = createEngine({ model: URL1, signal: c.signal, onProgress: (e) => { if (e.loaded > MiB) c.abort(); } });
  await assert.rejects(p, (e) => e.name === "AbortError" && e.code === "ABORTED");
  assert.equal(store.size, 0);
  const c2 = new AbortController();
  const bytes = gguf(20 * MiB);
  await assert.rejects(createEngine({ model: new Blob([bytes]), signal: c2.signal, onProgress: (e) => { if (e.phase === "load") c2.abort(); } }), (e) => e.code === "ABORTED");
  assert.equal(log.loaders.at(-1).freed, true);
  assert.ok(log.loaders.at(-1).bytesReceived < bytes.length);
  const c3 = new AbortController(); c3.abort();
  await assert.rejects(createEngine({ model: bytes, signal: c3.signal }), (e) => e.code === "ABORTED");
});

test("without the Cache API, URLs stream from the network and the cache helpers are empty", async () => {
  delete globalThis.caches;
  server.set(URL1, { bytes: gguf(1000) });
  await createEngine({ model: URL1 });
  assert.equal(loaderBytes(), 1000);
  assert.deepEqual(await listCachedModels(), []);
  assert.equal(await deleteCachedModel(URL1), false);
});

test("blob: URLs are not cached (the Cache API refuses them)", async () => {
  server.set("blob:http://models.test/1234", { bytes: gguf(1000) });
  await createEngine({ model: "blob:http://models.test/1234" });
  assert.equal(stats.puts, 0); assert.equal(store.size, 0); assert.equal(loaderBytes(), 1000);
  assert.equal(stats.fetches.length, 1);
});

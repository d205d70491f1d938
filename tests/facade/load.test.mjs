import "./env.mjs";
import { test, beforeEach } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { gguf } from "./env.mjs";
import { server, stats, store, installFetch, installCaches } from "./net.mjs";
import { createEngine, listCachedModels, deleteCachedModel } from "./pkg/index.js";
import { log } from "./pkg/llama_wgpu.js";
import { bytesChunks, blobChunks, streamChunks, CHUNK_BYTES } from "./pkg/sources.js";

const MiB = 1024 * 1024;
const URL1 = "http://models.test/m.gguf";
installFetch();
beforeEach(() => { store.clear(); stats.fetches.length = 0; stats.ranges.length = 0; stats.puts = 0; stats.sent = 0; log.maxChunk = 0; installCaches(); });
const sha256 = (bytes) => createHash("sha256").update(bytes).digest("hex");
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

test("URL: downloaded into the engine and the cache at once; the second load uses no network", async () => {
  const bytes = gguf(3 * MiB + 7);
  server.set(URL1, { bytes });
  const events = [];
  await createEngine({ model: URL1, onProgress: (e) => events.push(e) });
  assert.deepEqual(stats.fetches, [URL1]);
  assert.deepEqual(store.get(URL1).bytes, bytes);
  const phases = [...new Set(events.map((e) => e.phase))];
  assert.deepEqual(phases, ["download", "compile"]);
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
  assert.equal(store.size, 0);
});

test("a dropped connection resumes with Range requests; the engine and the cache get every byte once", async () => {
  const bytes = gguf(3 * MiB + 5);
  server.set(URL1, { bytes, dropEvery: MiB });
  await createEngine({ model: URL1 });
  assert.deepEqual(stats.ranges, [MiB, 2 * MiB, 3 * MiB]);
  assert.equal(loaderBytes(), bytes.length);
  assert.deepEqual(store.get(URL1).bytes, bytes);
  // A server without ranges sends the whole file again; what the engine has is skipped.
  store.clear(); stats.ranges.length = 0;
  server.set(URL1, { bytes, dropEvery: MiB + 3, drops: 1, ranges: false });
  await createEngine({ model: URL1, cache: false });
  assert.deepEqual(stats.ranges, [MiB + 3]);
  assert.equal(loaderBytes(), bytes.length);
});

test("a download that cannot resume is FETCH_FAILED after bounded retries; nothing is cached", { timeout: 30_000 }, async () => {
  server.set(URL1, { bytes: gguf(300000), failAfter: 131072 });
  const started = Date.now();
  await assert.rejects(createEngine({ model: URL1 }), (e) => e.code === "FETCH_FAILED" && /at 131072 of 300000 bytes: network error; gave up after 4 attempts/.test(e.message));
  assert.equal(stats.ranges.length, 4);
  assert.ok(Date.now() - started >= 7000, "pauses of 0.5, 1, 2 and 4 s between the attempts");
  assert.equal(store.size, 0);
  // A file that changes on the server between attempts (another ETag) is not stitched together.
  let version = 0;
  server.set(URL1, { bytes: gguf(300000), dropEvery: 100000, etag: () => `"v${version++}"` });
  await assert.rejects(createEngine({ model: URL1, cache: false }), (e) => e.code === "FETCH_FAILED" && /changed on the server/.test(e.message));
});

test("a full cache (quota) never fails the load nor downloads twice; a progress event says so", async () => {
  installCaches({ quota: 100000 });
  server.set(URL1, { bytes: gguf(300000) });
  const events = [];
  await createEngine({ model: URL1, onProgress: (e) => events.push(e) });
  assert.equal(stats.fetches.length, 1);
  assert.equal(store.size, 0);
  assert.equal(loaderBytes(), 300000);
  const note = events.find((e) => e.cacheError);
  assert.match(note.cacheError, /QuotaExceededError.*next load downloads it again/);
  assert.equal(note.loaded, 300000);
});

test("a Content-Length that lies, an empty body, a bad cached entry: FETCH_FAILED or a fresh download, never a bad entry", async () => {
  server.set(URL1, { bytes: gguf(2000), announce: 5000 });
  await assert.rejects(createEngine({ model: URL1 }), (e) => e.code === "FETCH_FAILED" && /at 2000 of 5000 bytes: the server has no bytes past those/.test(e.message));
  assert.equal(store.size, 0);
  server.set(URL1, { bytes: new Uint8Array(0) });
  await assert.rejects(createEngine({ model: URL1 }), (e) => e.code === "FETCH_FAILED" && /empty body/.test(e.message));
  assert.equal(store.size, 0);
  // An empty entry stored by an older version is dropped and the model downloaded again.
  store.set(URL1, { bytes: new Uint8Array(0), headers: {} });
  const bytes = gguf(3000);
  server.set(URL1, { bytes });
  stats.fetches.length = 0;
  await createEngine({ model: URL1 });
  assert.equal(stats.fetches.length, 1);
  assert.deepEqual(store.get(URL1).bytes, bytes);
  // A stored body that fails to read is removed, so the next load downloads.
  const brokenCaches = globalThis.caches;
  const cache = await brokenCaches.open("llama-wgpu-models-v1");
  const match = cache.match;
  cache.match = async () => new Response(new ReadableStream({ pull(c) { c.error(new TypeError("storage gone")); } }), { headers: { "content-length": "3000" } });
  await assert.rejects(createEngine({ model: URL1 }), (e) => e.code === "FETCH_FAILED" && /cached copy .*storage gone.*removed/.test(e.message));
  cache.match = match;
  assert.equal(store.size, 0);
  server.set(URL1, { bytes: gguf(2000, "HTML") });
  await assert.rejects(createEngine({ model: URL1 }), (e) => e.code === "GGUF_INVALID");
  assert.equal(store.size, 0, "the invalid file was not stored");
});

test("a file the engine refuses at its header stops the download there", async () => {
  server.set(URL1, { bytes: gguf(20 * MiB, "HTML") });
  await assert.rejects(createEngine({ model: URL1 }), (e) => e.code === "GGUF_INVALID");
  assert.ok(stats.sent <= 4 * 65536, `${stats.sent} bytes sent`);
  assert.equal(store.size, 0);
});

test("sha256: checked on download before the entry is stored, trusted from the cache, refused when different", async () => {
  const bytes = gguf(2 * MiB + 1);
  const digest = sha256(bytes);
  server.set(URL1, { bytes });
  await createEngine({ model: URL1, sha256: digest.toUpperCase() });
  assert.equal(store.get(URL1).headers["x-llama-wgpu-sha256"], digest);
  await createEngine({ model: URL1, sha256: digest });
  assert.equal(stats.fetches.length, 1, "the checked copy is used");
  // Another digest: the stored copy is not the asked-for file; it is dropped and the download
  // refused at its end, before anything is stored or the engine built.
  const wrong = sha256(new Uint8Array(1));
  await assert.rejects(createEngine({ model: URL1, sha256: wrong }), (e) => e.code === "FETCH_FAILED" && e.message.includes(`has sha256 ${digest}, not the expected ${wrong}`));
  assert.equal(stats.fetches.length, 2);
  assert.equal(store.size, 0);
  assert.equal(log.loaders.at(-1).freed, true);
  // Other sources are checked too.
  await createEngine({ model: new Blob([bytes]), sha256: digest });
  await assert.rejects(createEngine({ model: bytes, sha256: wrong }), (e) => e.code === "FETCH_FAILED");
  await assert.rejects(createEngine({ model: bytes, sha256: "abc" }), (e) => e.code === "INVALID_ARGUMENT" && /64 hex digits/.test(e.message));
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
  // During compilation: the call answers at once; the engine finished later is freed.
  const c4 = new AbortController();
  const engines = log.engines.length;
  await assert.rejects(createEngine({ model: bytes, signal: c4.signal, onProgress: (e) => { if (e.phase === "compile" && e.loaded === 0) c4.abort(); } }), (e) => e.code === "ABORTED");
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(log.engines.length, engines + 1);
  assert.equal(log.engines.at(-1).freed, true, "the engine compiled after the abort is freed");
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

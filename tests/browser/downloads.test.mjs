// Downloads under network faults, through the npm package in headless Chromium, against
// www/serve.mjs's fault routes (each serves the default model with one fault):
// - a connection that drops every third of the file resumes with Range requests, loads, writes
//   the same text as the model from a healthy server, and is cached whole;
// - a Content-Length that promises more than the file has, and an empty body, are FETCH_FAILED
//   and leave no cache entry;
// - a model the engine refuses at its header (an architecture renamed "mamba") stops the
//   download there: the server sends a small part of the file, and nothing is cached;
// - a storage quota error from cache.put (injected by replacing caches.open) never fails the
//   load nor downloads twice, and a progress event says the model was not cached;
// - `sha256` accepts the right digest and refuses another with FETCH_FAILED, storing nothing.
//
//   node --test tests/browser/downloads.test.mjs
//
// Needs pkg/ built (./build.sh build), the default model, playwright-core in $LLAMA_WGPU_CACHE
// (./build.sh setup), and /usr/bin/chromium.

import { describe, it, before } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import fs from "node:fs";
import { DEFAULT_MODEL, browserSuite } from "./helpers.mjs";

const MINUTE = 60_000;

// In the page: load `url` with `options`, greedily write 4 tokens, unload. Resolves to the
// text or the error, the progress events that were not plain byte counts, and the cached URLs.
// `quota`: replace caches.open first with a cache whose put() reads a little of the body and
// then fails as a full storage quota does.
const load = ({ url, options = {}, quota = false }) =>
  import("/pkg/index.js").then(async ({ createEngine, listCachedModels }) => {
    if (quota) {
      caches.open = async () => ({
        match: async () => undefined,
        delete: async () => false,
        keys: async () => [],
        put: async (_, response) => {
          const reader = response.body.getReader();
          await reader.read();
          await reader.read();
          throw new DOMException("the storage quota is exceeded", "QuotaExceededError");
        },
      });
    }
    const notes = [];
    let lastDownload = null;
    const onProgress = (e) => {
      if (e.cacheError) notes.push(e);
      if (e.phase === "download") lastDownload = e;
    };
    const cached = async () => (await listCachedModels()).map((m) => new URL(m.url).pathname + new URL(m.url).search);
    try {
      const engine = await createEngine({ model: url, contextLength: 256, onProgress, ...options });
      let text = "";
      for await (const piece of engine.generate("Once upon a time", { maxTokens: 4, temperature: 0 })) text += piece;
      await engine.unload();
      return { text, notes, lastDownload, cached: await cached() };
    } catch (e) {
      return { error: { code: e.code, message: e.message }, notes, cached: await cached() };
    }
  });

describe("downloads under network faults in Chromium", { timeout: 8 * MINUTE }, () => {
  const suite = browserSuite("downloads");
  const { browser, step } = suite;
  let healthy;

  const sent = async () => (await fetch(new URL("/__sent", suite.server.url))).json();

  before(async () => {
    await browser.page.goto(suite.server.url);
    healthy = await browser.page.evaluate(load, { url: "/models/default.gguf", options: { cache: false } });
    assert.ok(healthy.text, `the healthy model loads: ${JSON.stringify(healthy)}`);
  });

  it("a connection that keeps dropping is resumed with Range requests and cached whole", { timeout: 3 * MINUTE }, () =>
    step("flaky", async () => {
      await suite.server.resetRequests();
      const r = await browser.page.evaluate(load, { url: "/test/flaky.gguf" });
      console.log(`flaky: ${JSON.stringify(r)}`);
      assert.equal(r.error, undefined, JSON.stringify(r.error));
      assert.equal(r.text, healthy.text, "the resumed model writes what the healthy one does");
      // Each response carries at most a third of the file; a connection reset can also lose
      // bytes that were in flight, which costs another resume.
      const requests = (await suite.server.requests())["/test/flaky.gguf"];
      assert.ok(requests >= 3 && requests <= 8, `${requests} requests`);
      assert.ok(r.cached.includes("/test/flaky.gguf"));
      // The cached copy is whole: it loads without the network and writes the same text.
      const again = await browser.page.evaluate(load, { url: "/test/flaky.gguf" });
      assert.equal(again.text, healthy.text);
      assert.equal((await suite.server.requests())["/test/flaky.gguf"], requests, "the second load used the cache");
    }));

  it("a Content-Length that lies and an empty body are FETCH_FAILED and cache nothing", { timeout: 2 * MINUTE }, () =>
    step("lies", async () => {
      await suite.server.resetRequests();
      const long = await browser.page.evaluate(load, { url: "/test/long-length.gguf" });
      console.log(`long length: ${JSON.stringify(long)}`);
      assert.equal(long.error?.code, "FETCH_FAILED", JSON.stringify(long));
      // Chromium notices the short body at the end (the resume is answered 416) or, when the
      // reset loses bytes in flight, earlier (the resume's Content-Range gives the true size).
      assert.match(long.error.message, /the server has no bytes past those|the server's sizes disagree \(its Content-Length said \d+ bytes, its Content-Range says \d+\)/);
      assert.equal((await suite.server.requests())["/test/long-length.gguf"], 2, "one resume");
      const empty = await browser.page.evaluate(load, { url: "/test/empty.gguf" });
      assert.equal(empty.error?.code, "FETCH_FAILED", JSON.stringify(empty));
      assert.match(empty.error.message, /empty body/);
      assert.ok(!empty.cached.some((u) => u.startsWith("/test/long-length.gguf") || u.startsWith("/test/empty.gguf")), `cached: ${empty.cached}`);
    }));

  it("a model the engine refuses at its header stops the download there and is not cached", { timeout: 2 * MINUTE }, () =>
    step("unsupported", async () => {
      await suite.server.resetRequests();
      const r = await browser.page.evaluate(load, { url: "/test/unsupported.gguf" });
      console.log(`unsupported: ${JSON.stringify(r)}`);
      assert.equal(r.error?.code, "UNSUPPORTED_ARCHITECTURE", JSON.stringify(r));
      const bytes = (await sent())["/test/unsupported.gguf"];
      const size = fs.statSync(DEFAULT_MODEL).size;
      // The header is a few MB (the vocabulary); what the socket had buffered comes on top.
      assert.ok(bytes < size / 4, `the server sent ${bytes} of ${size} bytes`);
      assert.ok(!r.cached.includes("/test/unsupported.gguf"));
    }));

  it("a full storage quota never fails the load nor downloads twice; a progress event says so", { timeout: 2 * MINUTE }, () =>
    step("quota", async () => {
      await suite.server.resetRequests();
      const r = await browser.page.evaluate(load, { url: "/models/default.gguf?quota", quota: true });
      console.log(`quota: ${JSON.stringify({ ...r, cached: r.cached.length })}`);
      assert.equal(r.text, healthy.text);
      assert.equal((await suite.server.requests())["/models/default.gguf"], 1, "downloaded once");
      assert.equal(r.notes.length, 1);
      assert.match(r.notes[0].cacheError, /QuotaExceededError/);
      await browser.page.reload(); // the real caches.open again
    }));

  it("sha256: the right digest loads and is cached, another is FETCH_FAILED and stores nothing", { timeout: 2 * MINUTE }, () =>
    step("sha256", async () => {
      const digest = createHash("sha256").update(fs.readFileSync(DEFAULT_MODEL)).digest("hex");
      const wrong = createHash("sha256").update("another file").digest("hex");
      const bad = await browser.page.evaluate(load, { url: "/models/default.gguf?sha=bad", options: { sha256: wrong } });
      assert.equal(bad.error?.code, "FETCH_FAILED", JSON.stringify(bad));
      assert.ok(bad.error.message.includes(`has sha256 ${digest}, not the expected ${wrong}`), bad.error.message);
      assert.ok(!bad.cached.includes("/models/default.gguf?sha=bad"));
      const good = await browser.page.evaluate(load, { url: "/models/default.gguf?sha=good", options: { sha256: digest } });
      assert.equal(good.text, healthy.text);
      assert.ok(good.cached.includes("/models/default.gguf?sha=good"));
    }));
});

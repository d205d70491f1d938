// End-to-end tests of the chat demo (www/) in headless Chromium on WebGPU (SwiftShader here).
// The demo runs with the package's default device ("auto"), which on SwiftShader, a fallback
// adapter, is the CPU engine: what a user of this browser gets. (cpu-engine.test.mjs compares it
// with device "gpu"; architectures.test.mjs drives the demo on the GPU.)
//
//   node --test tests/browser/demo.test.mjs
//
// Needs pkg/ built (./build.sh build), the default model and playwright-core in
// $LLAMA_WGPU_CACHE (./build.sh setup), and /usr/bin/chromium. Screenshots go to
// $LLAMA_WGPU_ARTIFACTS (default /tmp/llama-wgpu-artifacts).
//
// One browser, one page and one loaded model are shared by the tests, which run in order: load,
// greedy completion, chat, markdown rendering, screenshots, abort, broken models, reload from the
// cache, a local file.

import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import {
  DEFAULT_MODEL,
  REFERENCE_PROMPT,
  REFERENCE_START,
  assertGreedy,
  artifactPath,
  launchBrowser,
  missingPrerequisites,
  startServer,
  stepRunner,
} from "./helpers.mjs";

const MINUTE = 60_000;
const LOAD_TIMEOUT = 5 * MINUTE;
const GEN_TIMEOUT = 3 * MINUTE;

const tid = (id) => `[data-testid="${id}"]`;

const missing = missingPrerequisites();
if (missing.length) console.error(`missing prerequisites, every test will fail:\n  ${missing.join("\n  ")}`);

describe("chat demo in Chromium", { timeout: 15 * MINUTE }, () => {
  let server;
  const browser = {}; // {context, page, logs, close}
  const step = stepRunner(browser, "demo");
  let page;
  let loaded = false;

  before(async () => {
    if (missing.length) throw new Error(`missing prerequisites:\n  ${missing.join("\n  ")}`);
    server = await startServer();
    Object.assign(browser, await launchBrowser());
    page = browser.page;
    // Records every change of the progress bar as the page shows it, independently of the app.
    await browser.context.addInitScript(() => {
      window.__bar = [];
      document.addEventListener("DOMContentLoaded", () => {
        const box = document.querySelector('[data-testid="progress-box"]');
        const bar = document.querySelector('[data-testid="progress"]');
        const label = document.querySelector('[data-testid="progress-label"]');
        if (!box || !bar) return;
        new MutationObserver(() => {
          window.__bar.push({ value: bar.getAttribute("value"), phase: box.dataset.phase || null, label: label.textContent });
        }).observe(box, { attributes: true, childList: true, subtree: true, characterData: true });
      });
    });
  });

  after(async () => {
    await browser.close?.();
    await server?.stop();
  });

  // Page helpers.
  const counter = (name) => page.evaluate((n) => Number(document.body.dataset[n] || 0), name);
  const waitCounter = (name, above, timeout) =>
    page.waitForFunction(([n, v]) => Number(document.body.dataset[n] || 0) > v, [name, above], { timeout, polling: 250 });
  const text = (id) => page.locator(tid(id)).innerText();
  const errorShown = async () =>
    (await page.locator(tid("error-box")).isVisible())
      ? `${await text("error-code")}: ${await text("error-message")}`
      : null;
  const setSettings = async ({ temperature, topP, maxTokens, seed }) => {
    if (temperature !== undefined) await page.fill(tid("temperature"), String(temperature));
    if (topP !== undefined) await page.fill(tid("top-p"), String(topP));
    if (maxTokens !== undefined) await page.fill(tid("max-tokens"), String(maxTokens));
    if (seed !== undefined) await page.fill(tid("seed"), String(seed));
  };
  const requireModel = () => assert.ok(loaded, "the default model did not load (see the first test)");
  const cachedUrls = () =>
    page.evaluate(async () => {
      const { listCachedModels } = await import("/pkg/index.js");
      const items = (await listCachedModels()) || [];
      return items.map((i) => (typeof i === "string" ? i : i?.url ?? i?.key ?? i?.name ?? JSON.stringify(i)));
    });

  // A raw completion through the demo's completion tab; returns the generated text.
  const complete = async (prompt, maxTokens) => {
    await page.click(tid("mode-completion"));
    await setSettings({ temperature: 0, maxTokens, seed: "" });
    await page.fill(tid("completion-prompt"), prompt);
    const before = await counter("generations");
    await page.click(tid("completion-generate"));
    await waitCounter("generations", before, GEN_TIMEOUT);
    assert.equal(await errorShown(), null, "an error was shown");
    return page.locator(tid("completion-output")).textContent();
  };

  it("loads the default model from the local server, with download and compile progress", { timeout: LOAD_TIMEOUT + MINUTE }, () =>
    step("load", async () => {
      await server.resetRequests();
      await page.goto(`${server.url}?autoload=default`);
      await waitCounter("loads", 0, LOAD_TIMEOUT);
      const state = await page.evaluate(() => ({
        state: document.body.dataset.state,
        lastLoad: document.body.dataset.lastLoad,
        progress: window.__demo.progress,
        bar: window.__bar,
      }));
      assert.equal(await errorShown(), null, "loading showed an error");
      assert.equal(state.lastLoad, "ok");
      assert.equal(state.state, "ready");
      loaded = true;

      // The package reported download progress (a first visit: the bytes go into the engine as
      // they arrive, so there is no separate load phase), then the engine's preparation.
      const phases = state.progress.map((e) => e.phase);
      const firstDownload = phases.indexOf("download");
      const firstCompile = phases.indexOf("compile");
      assert.ok(firstDownload >= 0, `no download progress; phases seen: ${[...new Set(phases)]}`);
      assert.ok(firstCompile > firstDownload, `no compile progress after the download; phases seen: ${[...new Set(phases)]}`);
      assert.ok(!phases.includes("load"), `a first visit read the model twice; phases seen: ${[...new Set(phases)]}`);
      const downloads = state.progress.filter((e) => e.phase === "download");
      for (let i = 1; i < downloads.length; i++) {
        assert.ok(downloads[i].loaded >= downloads[i - 1].loaded, "download progress went backwards");
      }
      const lastDownload = downloads.at(-1);
      assert.ok(lastDownload.total > 0, "the download's total size was not reported");
      assert.equal(lastDownload.loaded, lastDownload.total, "the download did not reach its total");

      // The bar on the page moved during the download.
      const values = state.bar
        .filter((b) => b.phase === "download" && b.value !== null)
        .map((b) => Number(b.value));
      assert.ok(values.length >= 2, `the progress bar changed ${values.length} times during the download`);
      assert.ok(Math.max(...values) > Math.min(...values), "the progress bar did not move");
      assert.ok(state.bar.some((b) => b.phase === "compile"), "the progress bar never showed the compile phase");
      assert.match(state.bar.find((b) => b.phase === "download" && / MB/.test(b.label))?.label || "", /MB/);

      const requests = await server.requests();
      assert.ok(requests["/models/default.gguf"] >= 1, "the model was not requested from the server");
      assert.ok(await page.locator(tid("model-info")).isVisible(), "no model info shown");
      // The panel says which engine runs and why: the CPU engine, since SwiftShader is a fallback adapter.
      const engine = await page.locator(tid("model-engine")).innerText();
      console.log(`Engine: ${engine} (${await page.locator(tid("model-engine")).getAttribute("title")})`);
      assert.match(engine, /^CPU \(simd128, \d+ threads?\) — no hardware GPU$/);
      const stats = await page.evaluate(() => window.__demo.engine.stats());
      assert.equal(stats.device, "cpu");
      assert.ok(stats.cpuBytes > 0 && stats.gpuBytes === 0, `cpuBytes ${stats.cpuBytes}, gpuBytes ${stats.gpuBytes}`);
    }));

  it("greedy completion of the reference prompt matches the reference continuation", { timeout: GEN_TIMEOUT + MINUTE }, () =>
    step("greedy", async () => {
      requireModel();
      const out = await complete(REFERENCE_PROMPT, 30);
      const device = await page.evaluate(() => window.__demo.engine.stats().device);
      await assertGreedy(assert, device, out, 30);
      const chunks = Number(await page.locator(tid("completion-output")).getAttribute("data-chunks"));
      assert.ok(chunks >= 2, `the continuation arrived in ${chunks} piece(s), not streamed`);
      assert.ok(await page.locator(tid("stats")).isVisible(), "no stats after the completion");
      assert.match(await text("stat-decode"), /tok\/s/);
    }));

  it("a chat reply streams into a growing bubble and ends with stats", { timeout: GEN_TIMEOUT + MINUTE }, () =>
    step("chat", async () => {
      requireModel();
      await page.click(tid("mode-chat"));
      await setSettings({ temperature: 0, maxTokens: 24, seed: "" });
      // Record the length of the newest assistant bubble each time it changes.
      await page.evaluate(() => {
        window.__growth = [];
        const box = document.querySelector('[data-testid="messages"]');
        new MutationObserver(() => {
          const bubbles = box.querySelectorAll('[data-testid="msg-assistant"] .msg-text');
          const last = bubbles[bubbles.length - 1];
          // The reply's text as streamed (the bubble shows it rendered as markdown).
          if (last) window.__growth.push((last.dataset.markdown ?? last.textContent).length);
        }).observe(box, { childList: true, subtree: true, characterData: true });
      });
      const before = await counter("generations");
      await page.fill(tid("chat-input"), "What is the capital of France?");
      await page.press(tid("chat-input"), "Enter");
      await page.waitForFunction(() => document.body.dataset.state === "generating", null, { timeout: 10_000 }).catch(() => {});
      await waitCounter("generations", before, GEN_TIMEOUT);
      assert.equal(await errorShown(), null, "the chat showed an error");

      assert.equal(await page.locator(tid("msg-user")).count(), 1);
      const bubble = page.locator(tid("msg-assistant")).last();
      const reply = await bubble.locator(".msg-text").textContent();
      assert.ok(reply.trim().length > 0, "empty reply");
      assert.equal(await bubble.getAttribute("data-done"), "true");
      const chunks = Number(await bubble.getAttribute("data-chunks"));
      assert.ok(chunks >= 3, `only ${chunks} chunk(s) arrived`);
      const growth = await page.evaluate(() => window.__growth);
      const distinct = [...new Set(growth.filter((n) => n > 0))];
      assert.ok(distinct.length >= 3, `the bubble grew only ${distinct.length} time(s): ${distinct}`);
      for (let i = 1; i < distinct.length; i++) assert.ok(distinct[i] > distinct[i - 1], "the bubble shrank");

      assert.ok(await page.locator(tid("stats")).isVisible(), "no stats after the reply");
      assert.match(await text("stat-prefill"), /\d tok\/s/);
      assert.match(await text("stat-decode"), /\d tok\/s/);
      assert.match(await text("stat-ttft"), /\d/);
      assert.match(await text("stat-tokens"), /^\d+ in, \d+ out$/);
      console.log(`chat reply (${chunks} chunks): ${JSON.stringify(reply)}; stats: ${(await text("stats")).replace(/\s+/g, " ")}`);
    }));

  it("replies render as markdown with code blocks, sanitised (nothing in a reply runs)", { timeout: MINUTE }, () =>
    step("markdown", async () => {
      requireModel();
      // The chat reply above went through the renderer.
      assert.equal(await page.locator(`${tid("msg-assistant")} .msg-text.markdown`).count() > 0, true, "the reply was not rendered as markdown");
      const reply = [
        "Some **bold** text and `inline` code:",
        "",
        "```js",
        "const ok = 1 < 2 && \"<b>\";",
        "```",
        "",
        '<img src="x" onerror="window.__xss++"><script>window.__xss++</script>',
        '[a link](javascript:window.__xss++) <a href="#" onclick="window.__xss++">b</a> <svg onload="window.__xss++"></svg>',
      ].join("\n");
      const r = await page.evaluate(async (source) => {
        const { initMarkdown, renderMarkdown } = await import("/markdown.js");
        const ready = await initMarkdown();
        window.__xss = 0;
        const el = document.createElement("div");
        document.querySelector('[data-testid="messages"]').append(el);
        // Streamed: rendered again on every piece, as the chat does.
        for (let i = 1; i <= source.length; i += 7) renderMarkdown(el, source.slice(0, i));
        renderMarkdown(el, source);
        await new Promise((resolve) => setTimeout(resolve, 500)); // an image error would have fired
        for (const a of el.querySelectorAll("a")) a.click();
        const all = [...el.querySelectorAll("*")];
        const out = {
          ready,
          code: el.querySelector("pre > code")?.textContent ?? null,
          codeClass: el.querySelector("pre > code")?.className ?? null,
          strong: el.querySelector("strong")?.textContent ?? null,
          inline: el.querySelector("p code")?.textContent ?? null,
          xss: window.__xss,
          scripts: el.querySelectorAll("script").length,
          handlers: all.filter((n) => [...n.attributes].some((a) => a.name.toLowerCase().startsWith("on"))).length,
          jsLinks: all.filter((n) => /^\s*javascript:/i.test(n.getAttribute("href") || "")).length,
          source: el.dataset.markdown === source,
        };
        el.remove();
        return out;
      }, reply);
      assert.equal(r.ready, true, "marked and DOMPurify did not load from /vendor/");
      assert.equal(r.code, 'const ok = 1 < 2 && "<b>";\n');
      assert.match(r.codeClass, /language-js/);
      assert.equal(r.strong, "bold");
      assert.equal(r.inline, "inline");
      assert.deepEqual({ xss: r.xss, scripts: r.scripts, handlers: r.handlers, jsLinks: r.jsLinks }, { xss: 0, scripts: 0, handlers: 0, jsLinks: 0 });
      assert.equal(r.source, true);
    }));

  it("screenshots of the demo after a chat (desktop and phone)", { timeout: MINUTE }, () =>
    step("screenshots", async () => {
      requireModel();
      const desktop = artifactPath("demo-chat.png");
      await page.screenshot({ path: desktop, fullPage: true });
      const size = page.viewportSize();
      await page.setViewportSize({ width: 390, height: 844 });
      try {
        const phone = artifactPath("demo-chat-phone.png");
        await page.screenshot({ path: phone });
        // Nothing on the phone layout is wider than the screen.
        const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
        assert.ok(overflow <= 1, `the page is ${overflow}px wider than a 390px screen`);
        assert.ok(await page.locator(tid("chat-input")).isVisible());
        console.log(`screenshots: ${desktop} ${phone}`);
      } finally {
        await page.setViewportSize(size);
      }
    }));

  it("Stop aborts a generation, and the next generation succeeds", { timeout: 2 * GEN_TIMEOUT + MINUTE }, () =>
    step("abort", async () => {
      requireModel();
      await page.click(tid("mode-chat"));
      await setSettings({ temperature: 0, maxTokens: 200, seed: "" });
      const before = await counter("generations");
      await page.fill(tid("chat-input"), "Tell me a long story about a brave knight and a dragon.");
      await page.click(tid("send-button"));
      const bubble = page.locator(tid("msg-assistant")).last();
      await page.waitForFunction(
        () => {
          const all = document.querySelectorAll('[data-testid="msg-assistant"]');
          return Number(all[all.length - 1]?.dataset.chunks || 0) >= 3;
        },
        null,
        { timeout: GEN_TIMEOUT, polling: 100 },
      );
      assert.ok(await page.locator(tid("stop-button")).isVisible(), "no Stop button while generating");
      await page.click(tid("stop-button"));
      await waitCounter("generations", before, GEN_TIMEOUT);
      assert.equal(await errorShown(), null, "aborting showed an error");
      assert.equal(await bubble.getAttribute("data-stopped"), "true", "the reply was not marked stopped");
      const chunks = Number(await bubble.getAttribute("data-chunks"));
      assert.ok(chunks < 200, "the generation ran to its end instead of stopping");
      assert.equal(await page.evaluate(() => document.body.dataset.state), "ready");
      console.log(`aborted after ${chunks} chunks`);

      // The engine is still usable and still right: a greedy completion after the aborted chat.
      const out = await complete(REFERENCE_PROMPT, 8);
      const device = await page.evaluate(() => window.__demo.engine.stats().device);
      await assertGreedy(assert, device, out, 8, "after abort: ");

      // Clear chat empties the conversation.
      await page.click(tid("mode-chat"));
      await page.click(tid("clear-button"));
      await page.waitForFunction(() => document.querySelectorAll('[data-testid="messages"] > *').length === 0, null, { timeout: 10_000 });
    }));

  it("broken models show their error code, and an interrupted download is not cached", { timeout: 4 * MINUTE }, () =>
    step("errors", async () => {
      const tryLoad = async (url) => {
        const before = await counter("loads");
        await page.fill(tid("model-url"), url);
        await page.check(tid("source-url"));
        await page.click(tid("load-button"));
        await waitCounter("loads", before, 2 * MINUTE);
        assert.equal(await page.evaluate(() => document.body.dataset.lastLoad), "error", `${url} loaded without an error`);
        assert.ok(await page.locator(tid("error-box")).isVisible(), `no error shown for ${url}`);
        const code = await text("error-code");
        const message = await text("error-message");
        console.log(`${url}: ${code}: ${message}`);
        return code;
      };
      loaded = false; // loading another model replaces the default one
      assert.equal(await tryLoad("/test/corrupt.gguf"), "GGUF_INVALID");
      await page.screenshot({ path: artifactPath("demo-error.png") });
      assert.equal(await tryLoad("/test/not-gguf.gguf"), "GGUF_INVALID");
      assert.equal(await tryLoad("/test/missing.gguf"), "FETCH_FAILED");
      assert.equal(await tryLoad("/test/truncated.gguf"), "FETCH_FAILED");

      const cached = await cachedUrls();
      console.log(`cached after the broken loads: ${JSON.stringify(cached)}`);
      assert.ok(!cached.some((u) => u.includes("/test/truncated.gguf")), "the interrupted download was cached");
      assert.ok(!cached.some((u) => u.includes("/test/missing.gguf")), "the 404 was cached");
      // A downloaded file found not to be a GGUF is dropped from the cache, so a retry fetches it again.
      assert.ok(!cached.some((u) => u.includes("/test/corrupt.gguf")), "the corrupt file stayed cached");
      assert.ok(!cached.some((u) => u.includes("/test/not-gguf.gguf")), "the non-GGUF file stayed cached");
      assert.equal(await page.evaluate(() => document.body.dataset.state), "idle");
    }));

  it("a reload loads the default model from the cache without fetching it", { timeout: LOAD_TIMEOUT + GEN_TIMEOUT }, () =>
    step("reload", async () => {
      const defaultUrl = new URL("/models/default.gguf", server.url).href;
      assert.ok((await cachedUrls()).includes(defaultUrl), `${defaultUrl} is not in the cache`);
      await server.resetRequests();
      await page.goto(`${server.url}?autoload=default`);
      await waitCounter("loads", 0, LOAD_TIMEOUT);
      assert.equal(await errorShown(), null, "loading from the cache showed an error");
      assert.equal(await page.evaluate(() => document.body.dataset.lastLoad), "ok");
      loaded = true;
      const requests = await server.requests();
      assert.ok(requests["/"] >= 1 || requests["/index.html"] >= 1, `the reload did not reach the server: ${JSON.stringify(requests)}`);
      assert.equal(requests["/models/default.gguf"] ?? 0, 0, `the model was fetched again: ${JSON.stringify(requests)}`);
      const phases = await page.evaluate(() => [...new Set(window.__demo.progress.map((e) => e.phase))]);
      console.log(`progress phases when loading from the cache: ${phases}`);
      const items = await page.locator(`${tid("cached-item")}[data-url="${defaultUrl}"]`).count();
      assert.equal(items, 1, "the cached-models list does not show the default model");

      const out = await complete(REFERENCE_PROMPT, 4);
      assert.equal(out, REFERENCE_START, "from the cache");
    }));

  it("a local .gguf picked with the file input loads and generates", { timeout: LOAD_TIMEOUT + GEN_TIMEOUT }, () =>
    step("file", async () => {
      await server.resetRequests();
      const before = await counter("loads");
      await page.setInputFiles(tid("model-file"), DEFAULT_MODEL);
      await page.check(tid("source-file"));
      await page.click(tid("load-button"));
      await waitCounter("loads", before, LOAD_TIMEOUT);
      assert.equal(await errorShown(), null, "loading the file showed an error");
      assert.equal(await page.evaluate(() => document.body.dataset.lastLoad), "ok");
      loaded = true;
      const phases = await page.evaluate(() => [...new Set(window.__demo.progress.map((e) => e.phase))]);
      assert.ok(phases.includes("load"), `no load progress from the file: ${phases}`);
      assert.ok(!phases.includes("download"), `a local file reported download progress: ${phases}`);
      assert.equal((await server.requests())["/models/default.gguf"] ?? 0, 0, "the file load fetched the model");
      const out = await complete(REFERENCE_PROMPT, 4);
      assert.equal(out, REFERENCE_START, "from the file");
    }));

  it("Cancel stops a load half-way, without an error", { timeout: 2 * MINUTE }, () =>
    step("cancel-load", async () => {
      const before = await counter("loads");
      await page.check(tid("source-default"));
      await page.click(tid("load-button"));
      await page.waitForFunction(
        () => window.__demo.progress.some((e) => e.phase === "load" && e.loaded > 0),
        null,
        { timeout: MINUTE, polling: 50 },
      );
      await page.click(tid("cancel-load-button"));
      await waitCounter("loads", before, MINUTE);
      loaded = false;
      assert.equal(await page.evaluate(() => document.body.dataset.lastLoad), "aborted");
      assert.equal(await errorShown(), null, "cancelling showed an error");
      assert.equal(await page.evaluate(() => document.body.dataset.state), "idle");
    }));
});

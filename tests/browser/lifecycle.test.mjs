// An engine's GPU memory is freed when it is unloaded, through the npm package in headless
// Chromium (WebGPU on SwiftShader): an init script counts the bytes of every GPUBuffer the page
// creates and which device made it; `GPUBuffer.destroy()` or the device's `destroy()` frees them
// (the WebGPU spec: destroying a device destroys every buffer made on it). Cycles of
// createEngine -> generate -> unload must leave no live GPU bytes and destroy one device each.
//
//   node --test tests/browser/lifecycle.test.mjs
//
// Needs pkg/ built (./build.sh build), the default model, playwright-core in $LLAMA_WGPU_CACHE
// (./build.sh setup), and /usr/bin/chromium.

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { browserSuite, countGpuMemory } from "./helpers.mjs";

const MINUTE = 60_000;
const CYCLES = 4;
const CPU_CYCLES = 50;
const WARMUP_CYCLES = 10;

const cycles = ({ cycles }) =>
  import("/pkg/index.js").then(async ({ createEngine }) => {
    const after = [];
    for (let i = 0; i < cycles; i++) {
      const engine = await createEngine({ model: "/models/default.gguf", device: "gpu", contextLength: 256 });
      let text = "";
      for await (const piece of engine.generate("Once upon a time", { maxTokens: 3, temperature: 0 })) text += piece;
      const loadedBytes = globalThis.__gpuMemory.liveBytes();
      await engine.unload();
      after.push({ text, loadedBytes, liveBytes: globalThis.__gpuMemory.liveBytes() });
    }
    return { after, stats: globalThis.__gpuMemory.stats };
  });

// CPU_CYCLES cycles on the CPU engine (the plain build: `threads: 1`), reading the module's
// memory size after each: wasm memory cannot shrink, so an engine that leaked would make it
// grow cycle after cycle; one that frees everything lets the allocator reuse the same pages.
const cpuCycles = ({ cycles }) =>
  import("/pkg/index.js").then(async ({ createEngine }) => {
    const glue = await import("/pkg/llama_wgpu.js");
    const memory = [];
    const texts = new Set();
    for (let i = 0; i < cycles; i++) {
      const engine = await createEngine({ model: "/models/default.gguf", device: "cpu", threads: 1, contextLength: 64 });
      let text = "";
      for await (const piece of engine.generate("Once upon a time", { maxTokens: 2, temperature: 0 })) text += piece;
      texts.add(text);
      await engine.unload();
      // The glue's init returns the instance's exports once the module is loaded.
      memory.push((await glue.default()).memory.buffer.byteLength);
    }
    return { memory, texts: [...texts] };
  });

// A device lost mid-generation (destroyed by the page, as a driver reset or a backgrounded
// mobile tab would lose it): the call ends with DEVICE_LOST, the engine is "lost" (onDeviceLost
// called once, later calls fail at once), and reload() recovers it from the cached model without
// downloading it again (network fetches of the model counted by the Resource Timing API).
const loseDevice = () =>
  import("/pkg/index.js").then(async ({ createEngine, deleteCachedModel }) => {
    // Downloaded (and cached) by this engine, so that a download by reload() would show.
    await deleteCachedModel("/models/default.gguf");
    const fetches = () => performance.getEntriesByType("resource").filter((e) => e.name.endsWith("/models/default.gguf")).length;
    const lost = [];
    const engine = await createEngine({ model: "/models/default.gguf", device: "gpu", contextLength: 256, onDeviceLost: (e) => lost.push(e.code) });
    let before = "";
    let error = null;
    const started = performance.now();
    try {
      for await (const piece of engine.generate("Once upon a time", { maxTokens: 50, temperature: 0 })) {
        before += piece;
        if (before.length > 0 && !globalThis.__lostOnce) {
          globalThis.__lostOnce = true;
          globalThis.__gpuMemory.lastDevice.destroy();
        }
      }
    } catch (e) {
      error = { code: e.code, message: e.message, seconds: (performance.now() - started) / 1000 };
    }
    const state = engine.stats().state;
    const again = performance.now();
    const second = await engine.countTokens("hi").then(() => "resolved", (e) => e.code);
    const secondSeconds = (performance.now() - again) / 1000;
    const fetchesBefore = fetches();
    await engine.reload();
    const reloadedState = engine.stats().state;
    let text = "";
    for await (const piece of engine.generate("Once upon a time", { maxTokens: 6, temperature: 0 })) text += piece;
    await engine.unload();
    return { before, error, state, second, secondSeconds, lost, fetchesBefore, fetchesAfter: fetches(), reloadedState, text, stateAfterUnload: engine.stats().state };
  });

// A device lost while the engine is idle (no call running): onDeviceLost and the "lost" state
// come from the device's own notice, without a call to find it; after reload() the new
// engine's device is watched in turn, and unload() (which destroys the device itself) is not
// reported.
const loseIdleDevice = () =>
  import("/pkg/index.js").then(async ({ createEngine }) => {
    const lost = [];
    let told;
    const notice = new Promise((resolve) => (told = resolve));
    const engine = await createEngine({
      model: "/models/default.gguf",
      device: "gpu",
      contextLength: 256,
      onDeviceLost: (e) => {
        lost.push(e.code);
        told();
      },
    });
    for await (const piece of engine.generate("Once upon a time", { maxTokens: 2, temperature: 0 })) void piece;
    const started = performance.now();
    globalThis.__gpuMemory.lastDevice.destroy();
    const timeout = new Promise((resolve) => setTimeout(resolve, 10_000));
    await Promise.race([notice, timeout]);
    const seconds = (performance.now() - started) / 1000;
    const state = engine.stats().state;
    await engine.reload();
    const reloaded = engine.stats().state;
    await engine.unload();
    await new Promise((resolve) => setTimeout(resolve, 500));
    return { lost, seconds, state, reloaded };
  });

describe("engine lifecycle in Chromium", { timeout: 6 * MINUTE }, () => {
  const suite = browserSuite("lifecycle", { initScript: countGpuMemory });
  const { browser, step } = suite;


  it(`${CYCLES} create -> generate -> unload cycles on the GPU leave no GPU memory held`, { timeout: 5 * MINUTE }, () =>
    step("gpu-cycles", async () => {
      const { page } = browser;
      await page.goto(suite.server.url);
      const r = await page.evaluate(cycles, { cycles: CYCLES });
      console.log(`lifecycle: ${JSON.stringify(r)}`);
      for (const [i, c] of r.after.entries()) {
        assert.ok(c.text.length > 0, `cycle ${i} generated`);
        assert.ok(c.loadedBytes > 50e6, `cycle ${i}: the model's ${c.loadedBytes} bytes were counted while loaded`);
        assert.equal(c.liveBytes, 0, `cycle ${i}: GPU bytes still held after unload`);
      }
      assert.equal(r.stats.devices, CYCLES, "one device per engine");
      assert.equal(r.stats.destroyedDevices, CYCLES, "each unload destroys its device");
    }));

  it(`${CPU_CYCLES} cycles on the CPU engine leave wasm memory flat`, { timeout: 5 * MINUTE }, () =>
    step("cpu-cycles", async () => {
      const { page } = browser;
      await page.goto(suite.server.url);
      const r = await page.evaluate(cpuCycles, { cycles: CPU_CYCLES });
      console.log(`cpu cycles: memory ${r.memory[0]} -> ${r.memory.at(-1)} bytes, texts ${JSON.stringify(r.texts)}`);
      assert.equal(r.texts.length, 1, "every cycle writes the same greedy text");
      assert.ok(r.texts[0].length > 0);
      // The first cycles grow the memory to its working size (the model's weights, the
      // tokenizer, scratch: ~135 MB). After that, a leak grows it in most cycles: the model's
      // weights (~100 MB) or KV cache (~24 MB) every cycle, the tokenizer (~1 MB) at least every
      // few. The allocator's fragmentation grows it in rare steps instead: a freed region a
      // later allocation does not fit (measured: none in most runs; a 3 MB step; once one step
      // of 28.75 MB, a KV cache, at cycle 38 of 50, flat before and after). Hence: at most two
      // growing cycles after the warm-up, adding less than one model (64 MB).
      const settled = r.memory.slice(WARMUP_CYCLES - 1);
      const growths = settled.slice(1).filter((m, i) => m > settled[i]).length;
      const growth = r.memory.at(-1) - settled[0];
      const detail = `${growths} growing cycles, ${growth} bytes after cycle ${WARMUP_CYCLES}: ${r.memory.join(", ")}`;
      assert.ok(growths <= 2 && growth < 64 << 20, `wasm memory kept growing: ${detail}`);
    }));

  it("a device lost mid-generation ends the call with DEVICE_LOST; the engine is lost until reload() recovers it from the cache", { timeout: 3 * MINUTE }, () =>
    step("device-lost", async () => {
      const { page } = browser;
      await page.goto(suite.server.url);
      const r = await page.evaluate(loseDevice);
      console.log(`device lost: ${JSON.stringify(r)}`);
      assert.ok(r.error, `the generation went on after its device was destroyed (${JSON.stringify(r.before)})`);
      assert.equal(r.error.code, "DEVICE_LOST", r.error.message);
      assert.equal(r.state, "lost");
      assert.deepEqual(r.lost, ["DEVICE_LOST"], "onDeviceLost is called once");
      assert.equal(r.second, "DEVICE_LOST", "a call on a lost engine fails");
      assert.ok(r.secondSeconds < 1, `at once (${r.secondSeconds} s)`);
      assert.ok(r.fetchesBefore >= 1);
      assert.equal(r.fetchesAfter, r.fetchesBefore, "reload() read the cached model, not the network");
      assert.equal(r.reloadedState, "ready");
      assert.ok(r.text.length > 0 && r.text.startsWith(r.before), `the reloaded engine continues greedily as before: ${JSON.stringify(r.text)} vs ${JSON.stringify(r.before)}`);
      assert.equal(r.stateAfterUnload, "unloaded");
    }));

  it("a device lost while idle is reported at once, without a call", { timeout: 3 * MINUTE }, () =>
    step("device-lost-idle", async () => {
      const { page } = browser;
      await page.goto(suite.server.url);
      const r = await page.evaluate(loseIdleDevice);
      console.log(`device lost while idle: ${JSON.stringify(r)}`);
      assert.deepEqual(r.lost, ["DEVICE_LOST"], "onDeviceLost once, and not for unload()");
      assert.ok(r.seconds < 5, `told after ${r.seconds} s`);
      assert.equal(r.state, "lost");
      assert.equal(r.reloaded, "ready");
    }));
});

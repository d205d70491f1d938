// Embeddings through the npm package in headless Chromium, on the WebGPU kernels and on the CPU
// engine (that one in the worker engine). The default model (SmolLM2, a generation model) refuses with EMBEDDINGS_UNSUPPORTED;
// the same file with `llama.pooling_type = 3` (last token) written into its header, in the page,
// is an embedding model whose vectors must match the native f32 reference decoder's
// (`llama-wgpu embed --device reference --pooling last`), float and base64 alike.
//
//   node --test tests/browser/embeddings.test.mjs
//
// Needs pkg/ built (./build.sh build), the native CLI (cargo build --release), the default
// model, playwright-core in $LLAMA_WGPU_CACHE (./build.sh setup), and /usr/bin/chromium.

import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { CLI, DEFAULT_MODEL, launchBrowser, missingPrerequisites, startServer, stepRunner, withPoolingType } from "./helpers.mjs";

const MINUTE = 60_000;
const TEXTS = ["The cat sat on the mat.", "Quarterly revenue grew by four percent."];

const missing = missingPrerequisites();
if (missing.length) console.error(`missing prerequisites, every test will fail:\n  ${missing.join("\n  ")}`);

// In the page: the default model refused, then the same bytes with a pooling type in the header
// (helpers.mjs's withPoolingType, sent as source), embedded as floats and as base64 (decoded
// here to the floats they carry).
const run = ({ device, worker, texts, withPoolingTypeSource }) =>
  import("/pkg/index.js").then(async ({ createEngine, createWorkerEngine }) => {
    const create = worker ? createWorkerEngine : createEngine;
    const bytes = new Uint8Array(await (await fetch("/models/default.gguf")).arrayBuffer());
    const out = {};
    // A copy: the worker engine takes (transfers) the buffer it is given.
    const plain = await create({ model: bytes.slice(), device });
    try {
      await plain.embeddings.create({ input: texts[0] });
      out.refused = "no error";
    } catch (e) {
      out.refused = `${e.code}: ${e.message}`;
    } finally {
      await plain.unload();
    }

    // helpers.mjs's function, sent as its source (page.evaluate takes one function).
    const embedding = new Function(`return (${withPoolingTypeSource})`)()(bytes, "llama", 3);

    const engine = await create({ model: embedding, device });
    out.adapter = engine.stats().adapter;
    try {
      const floats = await engine.embeddings.create({ input: texts });
      const packed = await engine.embeddings.create({ input: texts, encoding_format: "base64" });
      out.floats = floats;
      out.decoded = packed.data.map(({ embedding: text }) => {
        const raw = Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
        const v = new DataView(raw.buffer);
        return Array.from({ length: raw.length / 4 }, (_, i) => v.getFloat32(i * 4, true));
      });
    } finally {
      await engine.unload();
    }
    return out;
  });

const cosine = (a, b) => a.reduce((s, x, i) => s + x * b[i], 0);

describe("embeddings in Chromium", { timeout: 6 * MINUTE }, () => {
  let server;
  let reference;
  const browser = {};
  const step = stepRunner(browser, "embeddings");

  before(async () => {
    if (missing.length) throw new Error(`missing prerequisites:\n  ${missing.join("\n  ")}`);
    const args = ["embed", "--device", "reference", "--pooling", "last", "--model", DEFAULT_MODEL, ...TEXTS];
    reference = JSON.parse(execFileSync(CLI, args, { timeout: 2 * MINUTE, maxBuffer: 16 << 20 }).toString());
    server = await startServer();
    Object.assign(browser, await launchBrowser());
  });

  after(async () => {
    await browser.close?.();
    await server?.stop();
  });

  // Tolerances on 1 - cosine similarity with the reference's unit vectors: the WebGPU kernels
  // do the reference's f32 arithmetic in another order (measured 7e-9 at worst, about the f32
  // rounding of the dot product itself); the CPU engine rounds each matrix product's input to 8
  // bits as llama.cpp's CPU backend does (measured 4.6e-4). The two texts are 0.16 apart.
  for (const { device, worker, within } of [
    { device: "gpu", worker: false, within: 1e-6 },
    { device: "cpu", worker: true, within: 2e-3 },
  ]) {
    it(`embeddings.create on ${device}${worker ? " in the worker engine" : ""}: refused for a generation model, the reference's vectors for an embedding model`, { timeout: 3 * MINUTE }, () =>
      step(device, async () => {
        const { page } = browser;
        await page.goto(server.url);
        const r = await page.evaluate(run, { device, worker, texts: TEXTS, withPoolingTypeSource: withPoolingType.toString() });
        console.log(`${device} (${r.adapter}): ${r.refused}; usage ${JSON.stringify(r.floats.usage)}`);
        assert.match(r.refused, /^EMBEDDINGS_UNSUPPORTED: /);
        assert.equal(r.floats.object, "list");
        assert.equal(r.floats.usage.prompt_tokens, reference.prompt_tokens);
        assert.equal(r.floats.data.length, TEXTS.length);
        r.floats.data.forEach(({ embedding, index }, i) => {
          assert.equal(index, i);
          assert.equal(embedding.length, reference.dimensions);
          assert.deepEqual(r.decoded[i], embedding, "base64 carries the same f32 values");
          const similarity = cosine(embedding, reference.embeddings[i]);
          console.log(`${device} input ${i}: 1 - cosine = ${(1 - similarity).toExponential(2)}`);
          assert.ok(1 - similarity < within, `input ${i}: cosine ${similarity}`);
        });
        // The two texts' vectors are farther apart than the tolerance allows (so the comparison
        // above could not pass with the wrong input's vector).
        const apart = 1 - cosine(r.floats.data[0].embedding, r.floats.data[1].embedding);
        console.log(`${device}: 1 - cosine between the two texts = ${apart.toExponential(2)}`);
        assert.ok(apart > 10 * within, `the texts' vectors are ${apart} apart`);
      }));
  }
});

import "./env.mjs";
import { test } from "node:test";
import assert from "node:assert/strict";
import { gguf } from "./env.mjs";
import { createEngine } from "./pkg/index.js";
import { log } from "./pkg/llama_wgpu.js";

// The facade's side of LoRA adapters (engine.js, adapters.js, local-backend.js) over the stubbed
// wasm engine: handles, the active set, the ids the wasm side gives, and argument errors, which
// always arrive as rejected promises.

const invalid = (e) => e.code === "INVALID_ARGUMENT";

test("loadAdapter applies the adapter beside the active ones; setAdapters and unloadAdapter keep the set", async () => {
  const engine = await createEngine({ model: gguf(1000) });
  const wasm = log.engines.at(-1);
  const phases = [];
  const first = await engine.loadAdapter(gguf(300), { scale: 0.5, onProgress: (e) => phases.push(e.phase) });
  assert.deepEqual({ ...first, id: 0 }, { id: 0, name: null, rank: 4, alpha: 8, tensors: 2, bytes: 300 });
  assert.ok(Object.isFrozen(first));
  assert.ok(phases.includes("load"));
  const [wasmFirst] = [...wasm.adapters.keys()];
  assert.deepEqual(wasm.adapterSets.at(-1), [{ id: wasmFirst, scale: 0.5 }]);
  const second = await engine.loadAdapter(gguf(200));
  assert.notEqual(second.id, first.id);
  assert.deepEqual(engine.adapters(), [{ adapter: first, scale: 0.5 }, { adapter: second, scale: 1 }]);
  assert.equal(wasm.adapterSets.at(-1).length, 2);

  await engine.setAdapters([{ adapter: second, scale: -0.25 }]);
  assert.deepEqual(engine.adapters(), [{ adapter: second, scale: -0.25 }]);
  await engine.setAdapters([]);
  assert.deepEqual(wasm.adapterSets.at(-1), []);
  await engine.setAdapters([{ adapter: first }, { adapter: second, scale: 2 }]);
  await engine.unloadAdapter(first);
  assert.deepEqual(engine.adapters(), [{ adapter: second, scale: 2 }]);
  assert.deepEqual(wasm.removed, [wasmFirst]);
  await assert.rejects(engine.setAdapters([{ adapter: first }]), invalid, "an unloaded handle");
  await assert.rejects(engine.unloadAdapter(first), invalid);
  await engine.unload();
});

test("adapter argument errors reject, never throw, and change nothing", async () => {
  const engine = await createEngine({ model: gguf(1000) });
  const wasm = log.engines.at(-1);
  const adapter = await engine.loadAdapter(gguf(100), { scale: 1 });
  const calls = [
    () => engine.loadAdapter(42),
    () => engine.loadAdapter(gguf(100), { scale: Number.NaN }),
    () => engine.loadAdapter(gguf(100), { scale: "1" }),
    () => engine.loadAdapter(gguf(100), { weight: 1 }),
    () => engine.loadAdapter(gguf(100), null),
    () => engine.setAdapters("all"),
    () => engine.setAdapters([{ adapter: { ...adapter } }]), // a copy is no handle
    () => engine.setAdapters([{ adapter, scale: Infinity }]),
    () => engine.setAdapters([{ adapter }, { adapter }]),
    () => engine.setAdapters([{ adapter, extra: 1 }]),
    () => engine.unloadAdapter({ id: adapter.id }),
  ];
  const sets = wasm.adapterSets.length;
  for (const call of calls) {
    let promise;
    assert.doesNotThrow(() => (promise = call()), String(call));
    await assert.rejects(promise, invalid, String(call));
  }
  assert.equal(wasm.adapterSets.length, sets, "nothing reached the engine");
  assert.deepEqual(engine.adapters(), [{ adapter, scale: 1 }]);
  // A file that is no GGUF: the loader's error, and the adapter is not kept.
  await assert.rejects(engine.loadAdapter(new Uint8Array(64)), (e) => e.code === "GGUF_INVALID");
  assert.deepEqual(engine.adapters(), [{ adapter, scale: 1 }]);
  await engine.unload();
  await assert.rejects(engine.loadAdapter(gguf(100)), (e) => e.code === "ENGINE_UNLOADED");
});

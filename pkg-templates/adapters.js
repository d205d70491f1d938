import { invalidArgument, throwIfAborted, wrapError } from "./errors.js";
import { feedChunks, openModelSource } from "./model-source.js";
import { throttledProgress } from "./progress.js";
import { sourceKind } from "./sources.js";
import { AdapterLoader } from "./wasm.js";

// LoRA adapters: read like models (a URL is downloaded with resume and kept in the Cache API; a
// File, bytes or a stream are read in chunks) into an AdapterLoader, then kept by the wasm
// engine, which checks them against the model. The facade (engine.js) turns what the engine
// reports into Adapter handles and keeps the active set.

// Streams `source` into `engine` (a WasmEngine): resolves to {id, name, rank, alpha, tensors, bytes}.
export async function loadAdapterInto(engine, source, { cache = true, sha256, signal, onProgress } = {}) {
  throwIfAborted(signal);
  const progress = throttledProgress(onProgress);
  const opened = await openModelSource(source, { cache, sha256: sha256?.toLowerCase(), signal, progress });
  const loader = new AdapterLoader(opened.size);
  try {
    await feedChunks(opened, (chunk) => loader.push(chunk), { signal, progress, what: "the adapter" });
  } catch (cause) {
    loader.free();
    opened.cancel();
    const error = wrapError(cause);
    if (opened.discard && error.code === "GGUF_INVALID") await opened.discard().catch(() => {});
    throw error;
  }
  return engine.addAdapter(loader); // consumes the loader
}

const LOAD_OPTIONS = new Set(["scale", "cache", "sha256", "signal", "onProgress"]);

// engine.loadAdapter(source, options)'s arguments, checked before anything is read.
export function adapterLoadArgs(source, options = {}) {
  sourceKind(source);
  if (options === null || typeof options !== "object") throw invalidArgument("loadAdapter options must be an object");
  for (const key of Object.keys(options)) {
    if (!LOAD_OPTIONS.has(key)) throw invalidArgument(`unknown loadAdapter option "${key}"`);
  }
  const { scale = 1, cache = true, sha256, signal, onProgress } = options;
  return { scale: scaleOf(scale), load: { cache, sha256, signal, onProgress } };
}

// setAdapters([{adapter, scale}, ...]): each adapter a handle of this engine that is still
// loaded, listed once, with a finite scale (default 1). Resolves to the wasm side's list.
export function activeList(list, isLoaded) {
  if (!Array.isArray(list)) throw invalidArgument("setAdapters takes an array of {adapter, scale}");
  const seen = new Set();
  return list.map((entry, i) => {
    const { adapter, scale = 1, ...rest } = entry ?? {};
    const extra = Object.keys(rest);
    if (extra.length) throw invalidArgument(`setAdapters entry ${i}: unknown key "${extra[0]}"`);
    if (!isLoaded(adapter)) throw invalidArgument(`setAdapters entry ${i}: not an adapter loaded in this engine (or already unloaded)`);
    if (seen.has(adapter)) throw invalidArgument(`setAdapters entry ${i}: the adapter is listed twice`);
    seen.add(adapter);
    return { adapter, scale: scaleOf(scale, `setAdapters entry ${i}`) };
  });
}

function scaleOf(scale, where = "loadAdapter") {
  if (typeof scale !== "number" || !Number.isFinite(scale)) throw invalidArgument(`${where}: scale must be a finite number`);
  return scale;
}

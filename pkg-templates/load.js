import { throwIfAborted, wrapError } from "./errors.js";
import { feedChunks, openModelSource } from "./model-source.js";
import { deviceOption, threadsOption } from "./options.js";
import { throttledProgress } from "./progress.js";
import { untilAborted } from "./signals.js";
import { sourceKind } from "./sources.js";
import { ModelLoader, loadWasm } from "./wasm.js";
import { requireWebGPU } from "./webgpu.js";

// Codes that mean the bytes are not a usable GGUF; a cached copy giving one is dropped so the next
// load downloads the file again. (An unsupported but intact model stays cached.)
const INVALID_FILE = new Set(["GGUF_INVALID", "MODEL_INVALID"]);

// Streams a model into a new wasm engine: returns { engine: WasmEngine, loadSeconds,
// downloadSeconds, uploadSeconds, compileSeconds } (the breakdown is engine.stats()'s).
export async function loadModel(options, { onProgress, signal } = {}) {
  const { model, cache = true, contextLength, maxBindingSize, maxGpuBytes } = options;
  const sha256 = options.sha256?.toLowerCase();
  const device = deviceOption(options.device);
  const threads = threadsOption(options.threads);
  sourceKind(model); // a bad argument fails before any GPU or network work
  throwIfAborted(signal);
  // Only an explicit "gpu" needs WebGPU, and then a browser without it fails before the download.
  // "auto" goes on to the CPU engine when there is no (hardware) adapter; the wasm side decides.
  if (device === "gpu") await requireWebGPU();
  await loadWasm({ threads });
  const progress = throttledProgress(onProgress);
  const opening = performance.now();
  const source = await openModelSource(model, { cache, sha256, signal, progress });
  const started = performance.now();
  let loader = null;
  try {
    loader = await ModelLoader.create({ contextLength, fileSize: source.size, maxBindingSize, maxGpuBytes, device });
    const fed = await feedChunks(source, (chunk) => loader.push(chunk), { signal, progress, what: "the model" });
    progress({ phase: "compile", loaded: 0, total: 1 }, true);
    const finishing = loader;
    loader = null; // finish() consumes the loader, even when it fails
    // Compiling cannot be interrupted; an abort answers at once and the engine, when it is
    // done, is freed (its GPU device destroyed) instead of returned.
    const compiling = performance.now();
    const engine = await untilAborted(finishing.finish(), signal, (late) => late.free());
    progress({ phase: "compile", loaded: 1, total: 1 }, true);
    const now = performance.now();
    return {
      engine,
      loadSeconds: (now - started) / 1000,
      downloadSeconds: (started - opening) / 1000 + fed.readSeconds,
      uploadSeconds: fed.pushSeconds,
      compileSeconds: (now - compiling) / 1000,
    };
  } catch (cause) {
    loader?.free();
    source.cancel();
    const error = wrapError(cause);
    if (source.discard && INVALID_FILE.has(error.code)) await source.discard().catch(() => {});
    throw error;
  }
}

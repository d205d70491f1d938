import { LlamaWgpuError, WASM_LOAD_FAILED } from "./errors.js";
import * as plain from "./llama_wgpu.js";

// The threaded build is imported by URL at run time, where it is wanted, and hidden from
// bundlers: their worker builds cannot split code (Vite's default worker format), and an app
// that bundles the package without copying `threads/` next to it runs the plain build.
const THREADED_GLUE = "llama_wgpu.js";

// The package ships two builds of the module: `llama_wgpu_bg.wasm` runs the CPU engine on one
// thread; `threads/llama_wgpu_bg.wasm` (built with wasm atomics) runs its loops on a pool of Web
// Workers sharing the module's memory. Shared memory exists only in cross-origin isolated pages
// (served with COOP `same-origin` and COEP `require-corp` or `credentialless`), so the threaded
// build is loaded there and the plain one elsewhere. The GPU path is the same in both.

// The loaded build's ModelLoader, AdapterLoader and Sha256 (live bindings: set once loadWasm()
// has resolved).
export let ModelLoader = null;
export let AdapterLoader = null;
export let Sha256 = null;

let ready = null;

// The most threads the CPU engine can have in this page or worker: the machine's cores where
// shared memory is allowed, else 1.
export function threadsAvailable() {
  const shared = globalThis.crossOriginIsolated === true && typeof SharedArrayBuffer === "function";
  return shared ? Math.max(1, globalThis.navigator?.hardwareConcurrency ?? 1) : 1;
}

// The module is fetched and compiled once per page or worker, on first use, not at import:
// importing the package must stay cheap for pages that may never load a model. The first call's
// `threads` (default: every core available) decides the build and its pool for this page or
// worker; resolves to the threads the CPU engine runs on.
export function loadWasm({ threads } = {}) {
  ready ??= load(Math.min(threads ?? Infinity, threadsAvailable())).catch((cause) => {
    ready = null; // a failed fetch (offline, 404) may succeed on the next try
    throw new LlamaWgpuError(WASM_LOAD_FAILED, `loading the wasm module failed: ${cause?.message ?? cause}`, { cause });
  });
  return ready;
}

async function load(threads) {
  if (threads > 1) {
    const url = new URL("./threads/" + THREADED_GLUE, import.meta.url).href;
    try {
      const threaded = await import(/* @vite-ignore */ /* webpackIgnore: true */ url);
      await threaded.default();
      await threaded.startThreads(threads);
      ({ ModelLoader, AdapterLoader, Sha256 } = threaded);
      return threads;
    } catch (cause) {
      console.warn(`llama-wgpu: the threaded build (${url}) did not load; running on one thread`, cause);
    }
  }
  await plain.default();
  ({ ModelLoader, AdapterLoader, Sha256 } = plain);
  return 1;
}

import init, { ModelLoader } from "./llama_wgpu.js";
import { LlamaWgpuError, WASM_LOAD_FAILED } from "./errors.js";

export { ModelLoader };

let ready = null;

// The wasm module is fetched and compiled once per page or worker, on first use, not at import:
// importing the package must stay cheap for pages that may never load a model.
export function loadWasm() {
  ready ??= init().catch((cause) => {
    ready = null; // a failed fetch (offline, 404) may succeed on the next try
    throw new LlamaWgpuError(WASM_LOAD_FAILED, `loading llama_wgpu_bg.wasm failed: ${cause?.message ?? cause}`, { cause });
  });
  return ready;
}

// llama-wgpu: Llama-family GGUF models on the GPU through WebGPU, or on the CPU engine (wasm SIMD)
// where there is no hardware GPU. Types and docs: index.d.ts.
export { createEngine } from "./create-engine.js";
export { createWorkerEngine } from "./worker-client.js";
export { listCachedModels, deleteCachedModel } from "./cache.js";
export { hasWebGPU } from "./webgpu.js";
export { LlamaWgpuError } from "./errors.js";

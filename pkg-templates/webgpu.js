import { LlamaWgpuError, WEBGPU_UNAVAILABLE } from "./errors.js";

const NEEDS =
  'device "gpu" needs WebGPU: Chrome or Edge 113+, Safari 26+, or Firefox 141+ on Windows ' +
  "(elsewhere, enable WebGPU with a browser flag, e.g. chrome://flags/#enable-unsafe-webgpu), " +
  'on a page served over https or from localhost. Leave device at "auto" (the default) to run on ' +
  "the CPU engine where there is no GPU.";

// Whether this browser offers WebGPU: present and an adapter granted (possibly a software one;
// device "auto" runs those models on the CPU engine). shader-f16 is not required (the kernels
// have f32 paths). The engine itself runs without WebGPU too, on the CPU engine.
export async function hasWebGPU() {
  const gpu = globalThis.navigator?.gpu;
  if (!gpu) return false;
  try {
    return (await gpu.requestAdapter()) !== null;
  } catch {
    return false;
  }
}

// For device "gpu", checked before any download, so a browser without WebGPU fails in
// milliseconds rather than after fetching a model it cannot run.
export async function requireWebGPU() {
  const gpu = globalThis.navigator?.gpu;
  if (!gpu) {
    throw new LlamaWgpuError(WEBGPU_UNAVAILABLE, `WebGPU is not available here (navigator.gpu is missing). ${NEEDS}`);
  }
  let adapter = null;
  try {
    adapter = await gpu.requestAdapter();
  } catch (cause) {
    throw new LlamaWgpuError(WEBGPU_UNAVAILABLE, `requesting a WebGPU adapter failed: ${cause?.message ?? cause}. ${NEEDS}`, { cause });
  }
  if (!adapter) {
    throw new LlamaWgpuError(
      WEBGPU_UNAVAILABLE,
      `WebGPU is present but no adapter was granted (the GPU may be blocklisted or WebGPU disabled). ${NEEDS}`,
    );
  }
}

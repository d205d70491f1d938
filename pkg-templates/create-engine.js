import { Engine } from "./engine.js";
import { LocalBackend } from "./local-backend.js";
import { checkEngineOptions } from "./options.js";

// The engine on the calling thread. Loading and generation are asynchronous and mostly GPU
// work, but tokenizing and prompt rendering run here, and on the CPU engine (device "cpu", or
// "auto" without a hardware GPU) so does the model itself: use createWorkerEngine() to keep the
// page fully responsive.
export async function createEngine(options = {}) {
  checkEngineOptions(options);
  const { onProgress, onDeviceLost, signal, ...loadOptions } = options;
  return new Engine(await LocalBackend.load(loadOptions, { onProgress, signal }), { onDeviceLost });
}

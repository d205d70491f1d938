import { abortError } from "./errors.js";

// An internal AbortController that also follows the caller's signal. Stopping a generation has
// two causes (the caller aborts, or the consumer stops iterating) and the engine sees only one
// signal. AbortSignal.any would do this, but it is newer than WebGPU in Chrome (116 vs 113).
export function linkedController(signal) {
  const controller = new AbortController();
  if (!signal) return { controller, dispose() {} };
  const follow = () => controller.abort(signal.reason);
  if (signal.aborted) follow();
  else signal.addEventListener("abort", follow, { once: true });
  return { controller, dispose: () => signal.removeEventListener("abort", follow) };
}

// `work` (a promise that cannot itself be stopped, such as compiling the GPU kernels) as seen by
// a caller who may abort: rejects with an AbortError as soon as `signal` aborts, and when the
// work completes after that, `dispose` gets its result (e.g. to free an engine nobody will use).
export function untilAborted(work, signal, dispose) {
  if (!signal) return work;
  return new Promise((resolve, reject) => {
    const stop = () => reject(abortError(signal.reason));
    if (signal.aborted) stop();
    else signal.addEventListener("abort", stop, { once: true });
    work.then(
      (result) => {
        signal.removeEventListener("abort", stop);
        if (signal.aborted) dispose(result);
        else resolve(result);
      },
      (error) => {
        signal.removeEventListener("abort", stop);
        reject(error);
      },
    );
  });
}

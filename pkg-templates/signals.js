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

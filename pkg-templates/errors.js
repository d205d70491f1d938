// One error class for everything the package throws, so callers branch on `error.code` alone,
// whichever layer (wasm, fetch, cache, worker) failed.

export class LlamaWgpuError extends Error {
  constructor(code, message, options) {
    super(message, options);
    this.name = "LlamaWgpuError";
    this.code = code;
  }
}

// Codes the facade adds to those of the wasm engine (see index.d.ts for the full list).
export const ABORTED = "ABORTED";
export const FETCH_FAILED = "FETCH_FAILED";
export const ENGINE_UNLOADED = "ENGINE_UNLOADED";
export const INVALID_ARGUMENT = "INVALID_ARGUMENT";
export const WEBGPU_UNAVAILABLE = "WEBGPU_UNAVAILABLE";
export const WASM_LOAD_FAILED = "WASM_LOAD_FAILED";
export const WORKER_ERROR = "WORKER_ERROR";
export const INTERNAL = "INTERNAL";

// `name` is "AbortError" so code written for fetch() aborts (`e.name === "AbortError"`) works as is.
export function abortError(reason) {
  const error = new LlamaWgpuError(ABORTED, "the operation was aborted", reason === undefined ? undefined : { cause: reason });
  error.name = "AbortError";
  return error;
}

export function throwIfAborted(signal) {
  if (signal?.aborted) throw abortError(signal.reason);
}

export function unloadedError() {
  return new LlamaWgpuError(ENGINE_UNLOADED, "the engine was unloaded; create a new one to generate again");
}

export function invalidArgument(message) {
  return new LlamaWgpuError(INVALID_ARGUMENT, message);
}

// Errors from wasm carry `.code`; anything without one (a wasm trap, a bug) is INTERNAL, since the
// engine may be unusable afterwards and the caller should know it is not their input's fault.
export function wrapError(error) {
  if (error instanceof LlamaWgpuError) return error;
  if (error?.name === "AbortError") return abortError(error);
  if (error instanceof Error) {
    const code = typeof error.code === "string" && error.code ? error.code : INTERNAL;
    return new LlamaWgpuError(code, error.message, { cause: error });
  }
  return new LlamaWgpuError(INTERNAL, String(error));
}

// Errors cross the worker boundary as plain objects: structured clone keeps neither the class
// nor custom properties such as `code`.
export function serializeError(error) {
  const e = wrapError(error);
  return { name: e.name, code: e.code, message: e.message };
}

export function deserializeError({ name, code, message }) {
  const error = new LlamaWgpuError(code, message);
  error.name = name;
  return error;
}

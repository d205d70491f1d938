import { Engine } from "./engine.js";
import { LlamaWgpuError, WORKER_ERROR, abortError, deserializeError, throwIfAborted, unloadedError } from "./errors.js";
import { absoluteUrl } from "./fetch.js";
import { checkEngineOptions } from "./options.js";
import { asBytes, sourceKind } from "./sources.js";
import { RelaySender } from "./stream-relay.js";

// Same engine as createEngine(), hosted in a module worker so the page stays responsive while a
// model loads and generates. `options.worker` is for bundlers that must construct the worker
// themselves (e.g. Vite's `?worker` imports); it is not terminated by unload(), since its owner
// may want it back.
export async function createWorkerEngine(options = {}) {
  const { worker: given, onProgress, onDeviceLost, signal, model, ...loadOptions } = options;
  const kind = sourceKind(model);
  checkEngineOptions(options, ["worker"]); // bad options fail here, before a worker starts
  throwIfAborted(signal);
  if (!given && typeof Worker === "undefined") throw new LlamaWgpuError(WORKER_ERROR, "Web Workers are not available here; use createEngine()");
  // This exact expression is what Vite, webpack 5, Parcel and esbuild-based tools recognise to
  // bundle the worker as its own entry.
  const worker = given ?? new Worker(new URL("./worker.js", import.meta.url), { type: "module" });
  const connection = new WorkerConnection(worker);
  try {
    await sendLoad(connection, kind, model, loadOptions, { onProgress, signal });
    return new Engine(new WorkerBackend(connection, given ? null : worker), { onDeviceLost });
  } catch (error) {
    if (!given) worker.terminate();
    throw error;
  }
}

// Blobs and URLs are cloned (a Blob clone shares its data); byte buffers are transferred to avoid
// a copy of the whole model; a ReadableStream is transferred where the browser can (Chromium,
// Firefox), else relayed chunk by chunk.
function sendLoad(connection, kind, model, loadOptions, hooks) {
  const load = (source, transfer = []) => connection.call("load", [{ ...loadOptions, model: source }], { ...hooks, transfer });
  return sendSource(connection, kind, model, load);
}

// `send(source, transfer)` with the source in the form that crosses to the worker best.
function sendSource(connection, kind, model, send) {
  const load = send;
  if (kind === "url") return load(absoluteUrl(model));
  if (kind === "blob") return load(model);
  if (kind === "bytes") {
    const bytes = asBytes(model);
    return attempt(
      () => load(bytes, [bytes.buffer]),
      () => load(bytes), // shared or non-detachable (wasm memory) buffers are copied instead
    );
  }
  return attempt(
    () => load(model, [model]),
    () => load({ relayStream: connection.relay.add(model) }),
  );
}

function attempt(first, fallback) {
  try {
    return first();
  } catch (error) {
    if (error?.name !== "DataCloneError") throw error;
    return fallback();
  }
}

class WorkerBackend {
  #connection;
  #owned;
  #unloading = null;

  constructor(connection, owned) {
    this.#connection = connection;
    this.#owned = owned;
  }

  // The engine's listener for a GPU device lost between calls (the worker says so unasked).
  onLost(listener) {
    this.#connection.onLost = listener;
  }

  // The worker sends its stats with every reply, so stats() stays synchronous like the local one.
  stats() {
    return structuredClone(this.#connection.stats);
  }

  generate(request, options, onPiece, signal) {
    return this.#call("generate", [request, options], { signal, onPiece });
  }

  embed(inputs, signal) {
    return this.#call("embed", [inputs], { signal });
  }

  loadAdapter(source, load, { signal, onProgress } = {}) {
    if (this.#unloading) return Promise.reject(unloadedError());
    const send = (from, transfer = []) => this.#connection.call("loadAdapter", [from, load], { signal, onProgress, transfer });
    return sendSource(this.#connection, sourceKind(source), source, send);
  }

  async setAdapters(list) {
    await this.#call("setAdapters", [list]);
  }

  async removeAdapter(id) {
    await this.#call("removeAdapter", [id]);
  }

  async resetChat() {
    await this.#call("resetChat", []);
  }

  countTokens(text) {
    return this.#call("countTokens", [text]);
  }

  reload({ onProgress, signal } = {}) {
    return this.#call("reload", [], { onProgress, signal });
  }

  unload() {
    if (!this.#unloading) {
      this.#unloading = this.#connection
        .call("unload", [])
        .catch(() => {}) // a crashed worker has freed everything already
        .then(() => {
          this.#owned?.terminate();
          this.#connection.close();
        });
    }
    return this.#unloading;
  }

  #call(method, args, hooks = {}) {
    if (this.#unloading) return Promise.reject(unloadedError());
    if (hooks.signal?.aborted) return Promise.reject(abortError(hooks.signal.reason));
    return this.#connection.call(method, args, hooks);
  }
}

// Request/response over postMessage: one call id per request, its events routed back to it.
class WorkerConnection {
  #worker;
  #calls = new Map();
  #nextId = 1;
  #failure = null;
  relay;
  stats = null; // the latest engine stats the worker sent
  onLost = null; // told when the worker's engine lost its GPU device

  constructor(worker) {
    this.#worker = worker;
    this.relay = new RelaySender(worker);
    worker.addEventListener("message", ({ data }) => this.#receive(data));
    // A module that fails to load or throws at the top level only shows up as an "error" event.
    worker.addEventListener("error", (event) => {
      this.#fail(`the worker failed: ${event.message || "its script could not be loaded (check that worker.js is served next to index.js)"}`);
    });
    worker.addEventListener("messageerror", () => this.#fail("a message from the worker could not be read"));
    worker.start?.();
  }

  // Posting throws synchronously (DataCloneError) before anything is registered, so callers can
  // retry with another form of the message.
  call(method, args, { signal, onPiece, onProgress, transfer = [] } = {}) {
    if (this.#failure) return Promise.reject(this.#failure);
    const id = this.#nextId++;
    this.#worker.postMessage({ type: "call", id, method, args }, transfer);
    return new Promise((resolve, reject) => {
      const onAbort = () => this.#worker.postMessage({ type: "abort", id });
      signal?.addEventListener("abort", onAbort, { once: true });
      const done = () => signal?.removeEventListener("abort", onAbort);
      this.#calls.set(id, { resolve, reject, onPiece, onProgress, done });
    });
  }

  close() {
    this.#fail(unloadedError());
  }

  #receive(message) {
    if (message?.type === "pull" || message?.type === "cancel") {
      this.relay.receive(message);
      return;
    }
    if (message?.type === "lost") {
      if (message.stats) this.stats = message.stats;
      this.onLost?.(deserializeError(message.error));
      return;
    }
    const call = this.#calls.get(message?.id);
    if (!call) return;
    if (message.stats) this.stats = message.stats;
    switch (message.type) {
      case "piece":
        call.onPiece?.(message.piece, message.entry);
        return;
      case "progress":
        call.onProgress?.(message.event);
        return;
      case "result":
        this.#settle(message.id, call);
        call.resolve(message.value);
        return;
      case "error":
        this.#settle(message.id, call);
        call.reject(deserializeError(message.error));
        return;
    }
  }

  #settle(id, call) {
    this.#calls.delete(id);
    call.done();
  }

  #fail(reason) {
    this.#failure = reason instanceof Error ? reason : new LlamaWgpuError(WORKER_ERROR, reason);
    for (const [id, call] of this.#calls) {
      this.#settle(id, call);
      call.reject(this.#failure);
    }
  }
}

import { loadAdapterInto } from "./adapters.js";
import { LlamaWgpuError, abortError, invalidArgument, unloadedError, wrapError } from "./errors.js";
import { loadModel } from "./load.js";
import { Mutex } from "./mutex.js";
import { linkedController } from "./signals.js";

// stats()'s figures of the last generation: GenerationResult's, null before the first one.
const NO_GENERATION = {
  promptTokens: null,
  cachedPromptTokens: null,
  completionTokens: null,
  prefillTokensPerS: null,
  decodeTokensPerS: null,
  timeToFirstTokenS: null,
  prefillS: null,
  decodeS: null,
  finishReason: null,
};

// The engine backend running the wasm engine on this thread (the page, or inside the worker).
// Every WasmEngine call goes through one queue; see Mutex for why.
export class LocalBackend {
  #engine;
  #mutex = new Mutex();
  #info;
  #load; // { loadSeconds, downloadSeconds, uploadSeconds, compileSeconds }
  #firstToken = null; // the first generation's time to first token after the load
  #last = NO_GENERATION;
  #unloading = null;
  #running = new Set(); // controllers of queued and running generations, stopped by unload()

  #options; // what load() was given, for reload()
  // LoRA adapters by the ids this backend gives out: { wasmId, source, load } (the source is
  // kept so reload() can read it again), and the active set [{ id, scale }].
  #adapters = new Map();
  #nextAdapter = 1;
  #active = [];
  #onLost = null; // told when the GPU device is lost, even between calls

  static async load(options, hooks) {
    const { engine, ...timing } = await loadModel(options, hooks);
    return new LocalBackend(engine, timing, options);
  }

  constructor(engine, timing, options) {
    this.#engine = engine;
    this.#load = timing;
    this.#info = engine.info();
    this.#options = options;
    this.#watchDevice(engine);
  }

  // `listener(error)` once per lost GPU device, whether or not a call was running.
  onLost(listener) {
    this.#onLost = listener;
  }

  #watchDevice(engine) {
    engine.onDeviceLost?.((error) => {
      if (engine === this.#engine && !this.#unloading) this.#onLost?.(wrapError(error));
    });
  }

  // A new wasm engine from the same source, after the device was lost: a URL comes from the
  // Cache API (no download when it was cached), a File or buffer is read again. A stream cannot
  // be read twice. Queued behind running calls; the old engine is freed first.
  reload(hooks) {
    if (this.#unloading) return Promise.reject(unloadedError());
    const model = this.#options.model;
    if (typeof model?.getReader === "function") {
      return Promise.reject(invalidArgument("a model loaded from a ReadableStream cannot be reloaded: create a new engine"));
    }
    if ([...this.#adapters.values()].some((a) => typeof a.source?.getReader === "function")) {
      return Promise.reject(invalidArgument("an adapter loaded from a ReadableStream cannot be reloaded: create a new engine"));
    }
    return this.#mutex.run(async () => {
      this.#engine?.free();
      this.#engine = null;
      const { engine, ...timing } = await loadModel(this.#options, hooks);
      if (this.#unloading) {
        engine.free();
        throw unloadedError();
      }
      this.#engine = engine;
      this.#load = timing;
      this.#firstToken = null;
      this.#info = engine.info();
      this.#last = NO_GENERATION;
      this.#watchDevice(engine);
      // The adapters again, from their sources, and the same active set.
      for (const adapter of this.#adapters.values()) {
        adapter.wasmId = (await loadAdapterInto(engine, adapter.source, adapter.load)).id;
      }
      await engine.setAdapters(this.#wasmList(this.#active));
    }).catch((error) => {
      throw wrapError(error);
    });
  }

  stats() {
    const { model, device, deviceReason, adapter, features, contextLength, contextReduced, gpuBytes, cpuBytes } = this.#info;
    const { encodeUsPerToken = null, compiledKernels = [] } = this.#info;
    const { loadSeconds, downloadSeconds = null, uploadSeconds = null, compileSeconds } = this.#load;
    const firstTokenSeconds = this.#firstToken;
    return {
      model, device, deviceReason, adapter, features, contextLength, contextReduced, gpuBytes, cpuBytes,
      loadSeconds, downloadSeconds, uploadSeconds, compileSeconds, firstTokenSeconds, compiledKernels, encodeUsPerToken,
      ...this.#last,
    };
  }

  generate(request, options, onPiece, signal) {
    if (this.#unloading) return Promise.reject(unloadedError());
    if (signal?.aborted) return Promise.reject(abortError(signal.reason));
    const { controller, dispose } = linkedController(signal);
    this.#running.add(controller);
    const stop = controller.signal;
    const task = async () => {
      const engine = this.#open();
      let pieceError = null;
      // Returning false stops the engine after this token: that is how an abort takes effect.
      // `entry` is the token's logprobs, when asked.
      const onToken = (piece, entry) => {
        try {
          if ((piece || entry) && !stop.aborted) onPiece(piece, entry);
        } catch (error) {
          pieceError ??= error;
        }
        return !stop.aborted && !pieceError;
      };
      const result = request.messages
        ? await engine.chat(request.messages, options, onToken)
        : await engine.generate(request.prompt, options, onToken);
      this.#last = pick(result);
      this.#firstToken ??= this.#last.timeToFirstTokenS;
      this.#info = engine.info();
      if (pieceError) throw pieceError;
      if (result.finishReason === "abort") {
        if (this.#unloading) throw unloadedError();
        throw abortError(stop.reason);
      }
      return result;
    };
    return this.#mutex
      .run(task, stop)
      .catch((error) => {
        throw this.#unloading && error?.name === "AbortError" ? unloadedError() : wrapError(error);
      })
      .finally(() => {
        this.#running.delete(controller);
        dispose();
      });
  }

  // Embeddings of `inputs` (checked by the facade), queued like a generation; `signal` drops
  // the call while it waits its turn (a running embedding has no cancel point).
  embed(inputs, signal) {
    if (this.#unloading) return Promise.reject(unloadedError());
    if (signal?.aborted) return Promise.reject(abortError(signal.reason));
    const task = async () => {
      const engine = this.#open();
      const result = await engine.embed(inputs);
      this.#info = engine.info();
      return result;
    };
    return this.#mutex.run(task, signal).catch((error) => {
      throw wrapError(error);
    });
  }

  // A LoRA adapter read from `source` (checked by the facade) and kept by the engine, not yet
  // active: its { id, name, rank, alpha, tensors, bytes }. Queued like every call.
  loadAdapter(source, load, { signal, onProgress } = {}) {
    if (this.#unloading) return Promise.reject(unloadedError());
    const task = async () => {
      const info = await loadAdapterInto(this.#open(), source, { ...load, signal, onProgress });
      const id = this.#nextAdapter++;
      this.#adapters.set(id, { wasmId: info.id, source, load });
      return { ...info, id };
    };
    return this.#mutex.run(task, signal).catch((error) => {
      throw wrapError(error);
    });
  }

  // Make [{ id, scale }] the active adapters; the KV cache starts over.
  setAdapters(list) {
    return this.#call(async (engine) => {
      this.#active = [];
      await engine.setAdapters(this.#wasmList(list));
      this.#active = list;
    });
  }

  removeAdapter(id) {
    return this.#call(async (engine) => {
      const adapter = this.#adapters.get(id);
      if (!adapter) throw invalidArgument(`no adapter has id ${id}`);
      await engine.removeAdapter(adapter.wasmId);
      this.#adapters.delete(id);
      this.#active = this.#active.filter((a) => a.id !== id);
    });
  }

  #wasmList(list) {
    return list.map(({ id, scale }) => {
      const adapter = this.#adapters.get(id);
      if (!adapter) throw invalidArgument(`no adapter has id ${id}`);
      return { id: adapter.wasmId, scale };
    });
  }

  resetChat() {
    return this.#call((engine) => engine.reset());
  }

  countTokens(text) {
    return this.#call((engine) => engine.countTokens(text));
  }

  // Later calls reject with ENGINE_UNLOADED; a running generation stops at its next token, and
  // queued ones are refused, so the GPU memory is freed as soon as possible.
  unload() {
    if (!this.#unloading) {
      this.#unloading = true;
      for (const controller of this.#running) controller.abort();
      this.#unloading = this.#mutex.run(() => {
        this.#engine?.free();
        this.#engine = null;
      });
    }
    return this.#unloading;
  }

  #call(use) {
    if (this.#unloading) return Promise.reject(unloadedError());
    return this.#mutex.run(async () => use(this.#open())).catch((error) => {
      throw wrapError(error);
    });
  }

  #open() {
    if (this.#unloading) throw unloadedError();
    if (!this.#engine) throw new LlamaWgpuError("DEVICE_LOST", "the engine could not be reloaded: call reload() again or create a new engine");
    return this.#engine;
  }
}

function pick(result) {
  const last = {};
  for (const key of Object.keys(NO_GENERATION)) last[key] = result[key];
  return last;
}

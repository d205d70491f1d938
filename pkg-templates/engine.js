import { activeList, adapterLoadArgs } from "./adapters.js";
import { Channel } from "./channel.js";
import { LlamaWgpuError, abortError, invalidArgument, throwIfAborted } from "./errors.js";
import { ChunkShaper, chatCompletion, completionId, embeddingList } from "./openai.js";
import { chatMessages, chatOptions, embeddingParams, generateOptions } from "./options.js";
import { linkedController } from "./signals.js";

// The public engine object. It is the same class whether the model runs on this thread or in a
// worker; only the backend differs. A backend has:
//   generate(request, options, onPiece, signal) -> Promise<result>, request {prompt} or {messages},
//     onPiece(piece, logprobEntry?) once per token that has text or logprobs
//   embed(inputs, signal) -> Promise<{data: Float32Array, dimensions, promptTokens, pooling}>
//   stats(), resetChat(), countTokens(text), reload({onProgress, signal}), unload()
//   loadAdapter(source, {cache, sha256}, {signal, onProgress}) -> Promise<{id, name, rank, ...}>,
//     setAdapters([{id, scale}]), removeAdapter(id)
// and queues its calls, so generations started together run one after another.
//
// A lost GPU device (driver reset, a mobile tab backgrounded, device.destroy()) ends the call
// that meets it with DEVICE_LOST, and is reported by the backend's onLost when no call runs;
// from then on the engine is "lost": onDeviceLost is called once,
// calls fail at once with DEVICE_LOST, and reload() builds the engine again from its source.
export class Engine {
  #backend;
  #state = "ready"; // "ready" | "lost" | "unloaded"
  #onDeviceLost;
  #adapters = new Set(); // the Adapter handles loadAdapter gave, until unloadAdapter
  #active = []; // [{adapter, scale}]

  constructor(backend, { onDeviceLost } = {}) {
    this.#backend = backend;
    this.#onDeviceLost = onDeviceLost;
    // A device lost while no call runs is known at once, not at the next call.
    backend.onLost?.((error) => this.#lose(error));
    this.chat = { completions: { create: (params, requestOptions) => this.#createCompletion(params, requestOptions) } };
    this.embeddings = { create: (params, requestOptions) => this.#createEmbeddings(params, requestOptions) };
  }

  generate(prompt, options) {
    if (typeof prompt !== "string") throw invalidArgument("prompt must be a string");
    const engineOptions = generateOptions(options);
    const signal = options?.signal;
    throwIfAborted(signal);
    return this.#pieces({ prompt }, engineOptions, signal);
  }

  stats() {
    return { ...this.#backend.stats(), state: this.#state };
  }

  // A LoRA adapter GGUF (llama.cpp's format) for this model, from a URL (downloaded and cached
  // like a model), a File/Blob, bytes or a stream; applied at `scale` (default 1) beside the
  // adapters already active. Resolves to its handle {id, name, rank, alpha, tensors, bytes}.
  async loadAdapter(source, options = {}) {
    const { scale, load } = adapterLoadArgs(source, options);
    const { signal, onProgress, ...read } = load;
    throwIfAborted(signal);
    const info = await this.#watch(() => this.#backend.loadAdapter(source, read, { signal, onProgress }));
    const adapter = Object.freeze({ ...info });
    this.#adapters.add(adapter);
    try {
      await this.setAdapters([...this.#active, { adapter, scale }]);
    } catch (error) {
      await this.unloadAdapter(adapter).catch(() => {});
      throw error;
    }
    return adapter;
  }

  // The adapters every later call runs with: [{adapter, scale}] (empty: none). Scales are
  // llama.cpp's (the update is scale * alpha / rank * BA); 0 leaves an adapter out. The
  // conversation cache starts over.
  async setAdapters(list) {
    const active = activeList(list, (a) => this.#adapters.has(a));
    const ids = active.map(({ adapter, scale }) => ({ id: adapter.id, scale }));
    try {
      await this.#watch(() => this.#backend.setAdapters(ids));
    } catch (error) {
      if (error?.code !== "INVALID_ARGUMENT") this.#active = []; // the engine dropped them all
      throw error;
    }
    this.#active = active;
  }

  // Free an adapter (taken out of the active set first).
  async unloadAdapter(adapter) {
    if (!this.#adapters.has(adapter)) throw invalidArgument("unloadAdapter: not an adapter loaded in this engine (or already unloaded)");
    await this.#watch(() => this.#backend.removeAdapter(adapter.id));
    this.#adapters.delete(adapter);
    this.#active = this.#active.filter((a) => a.adapter !== adapter);
  }

  // The active adapters: [{adapter, scale}].
  adapters() {
    return this.#active.map(({ adapter, scale }) => ({ adapter, scale }));
  }

  resetChat() {
    return this.#watch(() => this.#backend.resetChat());
  }

  countTokens(text) {
    if (typeof text !== "string") return Promise.reject(invalidArgument("text must be a string"));
    return this.#watch(() => this.#backend.countTokens(text));
  }

  // After a lost device: the model again, from the Cache API for a URL (no download), or from
  // the File or buffer it was given. The KV cache (the conversation) starts empty.
  async reload({ onProgress, signal } = {}) {
    if (this.#state === "unloaded") return this.#backend.reload(); // rejects: ENGINE_UNLOADED
    throwIfAborted(signal);
    await this.#watch(() => this.#backend.reload({ onProgress, signal }), true);
    this.#state = "ready";
  }

  unload() {
    this.#state = "unloaded";
    return this.#backend.unload();
  }

  // Runs a backend call, failing at once while the device is lost, and turning a DEVICE_LOST it
  // meets into the "lost" state.
  async #watch(run, reloading = false) {
    if (this.#state === "lost" && !reloading) throw lostError();
    try {
      return await run();
    } catch (error) {
      if (error?.code === "DEVICE_LOST") this.#lose(error);
      throw error;
    }
  }

  #lose(error) {
    if (this.#state !== "ready") return;
    this.#state = "lost";
    // The app's handler must not break the call that found the loss.
    if (this.#onDeviceLost) queueMicrotask(() => this.#onDeviceLost(error));
  }

  // OpenAI's SDK takes the signal in a second argument; it is accepted in the params too, beside
  // the other per-request settings.
  async #createCompletion(params, requestOptions) {
    const signal = requestOptions?.signal ?? params?.signal;
    const request = { messages: chatMessages(params?.messages) };
    const options = chatOptions(params);
    throwIfAborted(signal);
    const meta = { id: completionId(), created: Math.floor(Date.now() / 1000), model: this.#modelName(), logprobs: options.logprobs === true };
    if (params.stream) return this.#chunks(request, options, signal, meta);
    const result = await this.#watch(() => this.#backend.generate(request, options, () => {}, signal));
    return chatCompletion(meta, result);
  }

  // OpenAI's embeddings.create with an embedding model (a generation model rejects with
  // EMBEDDINGS_UNSUPPORTED). Queued with the other calls; the signal acts while it waits.
  async #createEmbeddings(params, requestOptions) {
    const request = embeddingParams(params);
    const signal = requestOptions?.signal;
    throwIfAborted(signal);
    const result = await this.#watch(() => this.#backend.embed(request.inputs, signal));
    return embeddingList(this.#modelName(), result, request);
  }

  async *#chunks(request, options, signal, meta) {
    const shaper = new ChunkShaper(meta);
    const tokens = this.#tokens(request, options, signal);
    try {
      let next;
      while (!(next = await tokens.next()).done) {
        const out = shaper.token(...next.value);
        if (out) yield out;
      }
      yield* shaper.calls(next.value);
      yield shaper.last(next.value);
    } finally {
      await tokens.return();
    }
  }

  // generate()'s iteration: the text pieces.
  async *#pieces(request, options, signal) {
    const tokens = this.#tokens(request, options, signal);
    try {
      let next;
      while (!(next = await tokens.next()).done) {
        const [piece] = next.value;
        if (piece) yield piece;
      }
      return next.value;
    } finally {
      await tokens.return();
    }
  }

  // [piece, logprob entry] per token, then the result. Generation starts when iteration does. If the consumer stops early (break, return()), the
  // finally block stops the engine at the next token and waits, so the engine is free again
  // when the loop has exited.
  async *#tokens(request, options, signal) {
    const { controller, dispose } = linkedController(signal);
    const channel = new Channel();
    const run = this.#watch(() => this.#backend.generate(request, options, (piece, entry) => channel.push([piece, entry]), controller.signal));
    run.then(
      (result) => channel.close(result),
      (error) => channel.fail(error),
    );
    let finished = false;
    try {
      for (;;) {
        const next = await channel.next();
        // Pieces the engine wrote before it saw an abort stay unread: once abort() has been
        // called, the next thing the caller gets is the call's end (ABORTED, or the error the
        // engine ended with).
        if (controller.signal.aborted) {
          await run;
          throw abortError(controller.signal.reason);
        }
        if (next.done) {
          finished = true;
          return next.value;
        }
        yield next.value;
      }
    } finally {
      if (!finished) {
        controller.abort();
        await run.catch(() => {});
      }
      dispose();
    }
  }

  #modelName() {
    const model = this.#backend.stats().model;
    return model?.name || model?.architecture || "llama-wgpu";
  }
}

function lostError() {
  return new LlamaWgpuError("DEVICE_LOST", "the GPU device was lost: call engine.reload() (or create a new engine)");
}

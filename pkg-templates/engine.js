import { Channel } from "./channel.js";
import { invalidArgument, throwIfAborted } from "./errors.js";
import { ChunkShaper, chatCompletion, completionId } from "./openai.js";
import { chatMessages, chatOptions, generateOptions } from "./options.js";
import { linkedController } from "./signals.js";

// The public engine object. It is the same class whether the model runs on this thread or in a
// worker; only the backend differs. A backend has:
//   generate(request, options, onPiece, signal) -> Promise<result>, request {prompt} or {messages},
//     onPiece(piece, logprobEntry?) once per token that has text or logprobs
//   stats(), resetChat(), countTokens(text), unload()
// and queues its calls, so generations started together run one after another.
export class Engine {
  #backend;

  constructor(backend) {
    this.#backend = backend;
    this.chat = { completions: { create: (params, requestOptions) => this.#createCompletion(params, requestOptions) } };
  }

  generate(prompt, options) {
    if (typeof prompt !== "string") throw invalidArgument("prompt must be a string");
    const engineOptions = generateOptions(options);
    const signal = options?.signal;
    throwIfAborted(signal);
    return this.#pieces({ prompt }, engineOptions, signal);
  }

  stats() {
    return this.#backend.stats();
  }

  resetChat() {
    return this.#backend.resetChat();
  }

  countTokens(text) {
    if (typeof text !== "string") return Promise.reject(invalidArgument("text must be a string"));
    return this.#backend.countTokens(text);
  }

  unload() {
    return this.#backend.unload();
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
    const result = await this.#backend.generate(request, options, () => {}, signal);
    return chatCompletion(meta, result);
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
    const run = this.#backend.generate(request, options, (piece, entry) => channel.push([piece, entry]), controller.signal);
    run.then(
      (result) => channel.close(result),
      (error) => channel.fail(error),
    );
    let finished = false;
    try {
      for (;;) {
        const next = await channel.next();
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

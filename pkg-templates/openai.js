import { invalidArgument } from "./errors.js";

// The shapes of OpenAI's chat completion objects, so code and UI written for that API (or for
// llama.cpp's server, which copies it) work against a local engine.

export function completionId() {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return "chatcmpl-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export function usage(result) {
  return {
    prompt_tokens: result.promptTokens,
    completion_tokens: result.completionTokens,
    total_tokens: result.promptTokens + result.completionTokens,
    prompt_tokens_details: { cached_tokens: result.cachedPromptTokens },
  };
}

// The result is ours (camelCase), the objects made from it OpenAI's (snake_case). "abort" never
// reaches here: an aborted request throws instead of completing.
function finishReason(result) {
  return ["length", "tool_calls"].includes(result.finishReason) ? result.finishReason : "stop";
}

// The assistant's message: content is null when the reply is only tool calls, as in OpenAI's.
function message(result) {
  const calls = result.toolCalls ?? [];
  if (calls.length === 0) return { role: "assistant", content: result.text };
  return { role: "assistant", content: result.text || null, tool_calls: calls };
}

// OpenAI's choice.logprobs: {content: [entry per token], refusal: null} when asked, else null.
// The engine makes the entries ({token, logprob, bytes, top_logprobs}).
function logprobs(asked, entries) {
  return asked ? { content: entries ?? [], refusal: null } : null;
}

export function chatCompletion({ id, created, model, logprobs: asked }, result) {
  return {
    id,
    object: "chat.completion",
    created,
    model,
    choices: [
      {
        index: 0,
        message: message(result),
        finish_reason: finishReason(result),
        logprobs: logprobs(asked, result.logprobs),
      },
    ],
    usage: usage(result),
  };
}

function chunk({ id, created, model, logprobs: asked }, delta, finish_reason, entries) {
  return {
    id,
    object: "chat.completion.chunk",
    created,
    model,
    choices: [{ index: 0, delta, finish_reason, logprobs: logprobs(asked, entries) }],
  };
}

// Chunks for a stream of text pieces: the first carries the role, the last the finish reason and
// usage (OpenAI sends usage in a separate chunk only when asked; one fewer chunk is simpler here).
// With logprobs asked, a chunk carries the entries of the tokens since the previous one (a token
// whose text is held back, e.g. a possible stop string, goes with the piece that releases it;
// the last chunk carries any left).
export class ChunkShaper {
  #meta;
  #roleSent = false;
  #entries = [];

  constructor(meta) {
    this.#meta = meta;
  }

  // A token: its text (possibly empty) and its logprob entry (when asked). Returns a chunk, or
  // null while there is no text to send.
  token(content, entry) {
    if (entry) this.#entries.push(entry);
    if (!content) return null;
    return chunk(this.#meta, this.#delta({ content }), null, this.#takeEntries());
  }

  // Tool calls arrive whole once the reply is done: each in one delta, with its index.
  calls(result) {
    const calls = result.toolCalls ?? [];
    if (calls.length === 0) return [];
    const tool_calls = calls.map((call, index) => ({ index, ...call }));
    return [chunk(this.#meta, this.#delta({ tool_calls }), null, this.#takeEntries())];
  }

  last(result) {
    return { ...chunk(this.#meta, this.#delta({}), finishReason(result), this.#takeEntries()), usage: usage(result) };
  }

  #takeEntries() {
    const entries = this.#entries;
    this.#entries = [];
    return entries;
  }

  #delta(delta) {
    if (this.#roleSent) return delta;
    this.#roleSent = true;
    return { role: "assistant", ...delta };
  }
}

// OpenAI's embeddings response from the engine's result ({data: Float32Array of every unit
// vector, dimensions, promptTokens}). `dimensions` keeps each vector's first values and scales
// them back to unit length (what OpenAI's text-embedding-3 and Qwen3-Embedding's Matryoshka
// training make meaningful); base64 is the vector's little-endian f32 bytes, as OpenAI sends.
export function embeddingList(model, result, { encoding_format, dimensions }) {
  const width = result.dimensions;
  if (dimensions != null && dimensions > width) {
    throw invalidArgument(`dimensions ${dimensions} is more than the model's ${width}`);
  }
  const data = [];
  for (let i = 0; i * width < result.data.length; i++) {
    let vector = result.data.subarray(i * width, (i + 1) * width);
    if (dimensions != null && dimensions < width) vector = unitVector(vector.slice(0, dimensions));
    const embedding = encoding_format === "base64" ? base64Floats(vector) : Array.from(vector);
    data.push({ object: "embedding", index: i, embedding });
  }
  return { object: "list", data, model, usage: { prompt_tokens: result.promptTokens, total_tokens: result.promptTokens } };
}

function unitVector(v) {
  let sum = 0;
  for (const x of v) sum += x * x;
  const norm = Math.sqrt(sum);
  return norm > 0 ? v.map((x) => x / norm) : v;
}

function base64Floats(vector) {
  const bytes = new Uint8Array(vector.length * 4);
  const view = new DataView(bytes.buffer);
  vector.forEach((x, i) => view.setFloat32(i * 4, x, true));
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(binary);
}

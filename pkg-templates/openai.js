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

export function chatCompletion({ id, created, model }, result) {
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
        logprobs: null,
      },
    ],
    usage: usage(result),
  };
}

function chunk({ id, created, model }, delta, finish_reason) {
  return {
    id,
    object: "chat.completion.chunk",
    created,
    model,
    choices: [{ index: 0, delta, finish_reason, logprobs: null }],
  };
}

// Chunks for a stream of text pieces: the first carries the role, the last the finish reason and
// usage (OpenAI sends usage in a separate chunk only when asked; one fewer chunk is simpler here).
export class ChunkShaper {
  #meta;
  #roleSent = false;

  constructor(meta) {
    this.#meta = meta;
  }

  piece(content) {
    return chunk(this.#meta, this.#delta({ content }), null);
  }

  // Tool calls arrive whole once the reply is done: each in one delta, with its index.
  calls(result) {
    const calls = result.toolCalls ?? [];
    if (calls.length === 0) return [];
    const tool_calls = calls.map((call, index) => ({ index, ...call }));
    return [chunk(this.#meta, this.#delta({ tool_calls }), null)];
  }

  last(result) {
    return { ...chunk(this.#meta, this.#delta({}), finishReason(result)), usage: usage(result) };
  }

  #delta(delta) {
    if (this.#roleSent) return delta;
    this.#roleSent = true;
    return { role: "assistant", ...delta };
  }
}

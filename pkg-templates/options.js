import { invalidArgument } from "./errors.js";

// Where the model runs: "auto" (the GPU when WebGPU grants a hardware adapter, else the CPU
// engine), "gpu" or "cpu". The engine also knows "reference" (the f32 decoder, for tests); it is
// passed through but not advertised.
const DEVICES = ["auto", "gpu", "cpu"];

export function deviceOption(device) {
  if (device === undefined || device === null) return "auto";
  if (DEVICES.includes(device) || device === "reference") return device;
  throw invalidArgument(`unknown device ${JSON.stringify(device)} (devices: ${DEVICES.join(", ")})`);
}

// Threads for the CPU engine: a whole number >= 1, or undefined for every core the page may use.
export function threadsOption(threads) {
  if (threads === undefined || threads === null) return undefined;
  if (Number.isInteger(threads) && threads >= 1) return threads;
  throw invalidArgument(`threads must be a whole number >= 1, got ${JSON.stringify(threads)}`);
}

// createEngine() / createWorkerEngine() options, checked before anything is downloaded or a
// worker started: unknown keys are refused as generate() refuses them, and a context length or a
// byte count must be a whole number >= 1 (the engine fits the context to what the model was
// trained for and to maxGpuBytes, and reports it in stats().contextReduced).
const ENGINE_OPTIONS = ["model", "device", "threads", "onProgress", "onDeviceLost", "contextLength", "cache", "signal", "maxBindingSize", "maxGpuBytes", "sha256"];

export function checkEngineOptions(options, extra = []) {
  for (const key of Object.keys(options ?? {})) {
    if (!ENGINE_OPTIONS.includes(key) && !extra.includes(key)) {
      throw invalidArgument(`unknown engine option "${key}" (options: ${[...ENGINE_OPTIONS, ...extra].join(", ")})`);
    }
  }
  deviceOption(options?.device);
  threadsOption(options?.threads);
  for (const name of ["onProgress", "onDeviceLost"]) {
    if (options?.[name] != null && typeof options[name] !== "function") throw invalidArgument(`${name} must be a function`);
  }
  const sha256 = options?.sha256;
  if (sha256 != null && !(typeof sha256 === "string" && /^[0-9a-fA-F]{64}$/.test(sha256))) {
    throw invalidArgument(`sha256 must be 64 hex digits (a SHA-256 digest), got ${JSON.stringify(String(sha256)).slice(0, 80)}`);
  }
  for (const name of ["contextLength", "maxBindingSize", "maxGpuBytes"]) {
    const value = options?.[name];
    if (value != null && !(Number.isInteger(value) && value >= 1)) {
      throw invalidArgument(`${name} must be a whole number >= 1, got ${String(value)}`);
    }
  }
}

// generate() takes camelCase (our options, JS style); the engine takes the snake_case names of
// OpenAI and llama.cpp (those of chat.completions). Unknown keys are an error here, so
// `max_tokens` passed to generate() is caught instead of silently ignored; the engine refuses
// keys it does not know as well (src/web/convert.rs).
const GENERATE_OPTIONS = {
  maxTokens: "max_tokens",
  temperature: "temperature",
  topK: "top_k",
  topP: "top_p",
  minP: "min_p",
  repeatPenalty: "repeat_penalty",
  repeatLastN: "repeat_last_n",
  presencePenalty: "presence_penalty",
  frequencyPenalty: "frequency_penalty",
  logitBias: "logit_bias",
  seed: "seed",
  stop: "stop",
  ignoreEos: "ignore_eos",
  responseFormat: "response_format",
  logprobs: "logprobs",
  topLogprobs: "top_logprobs",
};

export function generateOptions(options) {
  const out = {};
  for (const [key, value] of Object.entries(options ?? {})) {
    if (key === "signal" || value === undefined) continue;
    const name = GENERATE_OPTIONS[key];
    if (!name) throw invalidArgument(`unknown generate() option "${key}" (options: ${Object.keys(GENERATE_OPTIONS).join(", ")}, signal)`);
    out[name] = name === "stop" ? stopList(value) : name === "response_format" ? responseFormat(value) : checked(name, value);
  }
  return logprobsAsked(out, "topLogprobs", "logprobs");
}

// OpenAI's rule: top_logprobs (0 to 20 alternatives per token) only with logprobs: true.
function logprobsAsked(out, top, flag) {
  if (out.top_logprobs != null && out.logprobs !== true) throw invalidArgument(`${top} needs ${flag}: true`);
  return out;
}

// chat.completions.create() is lenient like the OpenAI API it mirrors: parameters that do not
// change what a single local completion means (model, user, stream_options, ...) are ignored, so
// code written for OpenAI runs unchanged. Those that would silently change the result are refused.
const CHAT_PARAMS = ["temperature", "top_p", "top_k", "min_p", "repeat_penalty", "repeat_last_n", "presence_penalty", "frequency_penalty", "logit_bias", "seed", "ignore_eos", "logprobs", "top_logprobs"];

export function chatOptions(params) {
  const out = {};
  const maxTokens = params.max_completion_tokens ?? params.max_tokens;
  if (maxTokens != null) out.max_tokens = checked("max_tokens", maxTokens);
  for (const name of CHAT_PARAMS) if (params[name] != null) out[name] = checked(name, params[name]);
  if (params.stop != null) out.stop = stopList(params.stop);
  if (params.response_format != null) out.response_format = responseFormat(params.response_format);
  if (params.n != null && params.n !== 1) throw invalidArgument("n must be 1: one completion per request");
  if (params.tools != null) out.tools = toolList(params.tools);
  if (params.tool_choice != null) out.tool_choice = toolChoice(params.tool_choice);
  if (params.parallel_tool_calls != null) {
    if (typeof params.parallel_tool_calls !== "boolean") throw invalidArgument("parallel_tool_calls must be true or false");
    out.parallel_tool_calls = params.parallel_tool_calls;
  }
  return logprobsAsked(out, "top_logprobs", "logprobs");
}

// OpenAI's tools: [{type: "function", function: {name, description?, parameters?, strict?}}]. The
// engine checks the rest (distinct names, parameters a schema object) and answers
// INVALID_ARGUMENT.
function toolList(tools) {
  if (!Array.isArray(tools)) throw invalidArgument("tools must be an array");
  tools.forEach((tool, i) => {
    if (tool?.type !== "function" || typeof tool.function?.name !== "string") {
      throw invalidArgument(`tools[${i}] must be {type: "function", function: {name, description, parameters}}`);
    }
  });
  return tools;
}

const TOOL_CHOICES = ["auto", "none", "required"];

function toolChoice(choice) {
  if (TOOL_CHOICES.includes(choice)) return choice;
  if (choice?.type === "function" && typeof choice.function?.name === "string") return choice;
  throw invalidArgument(`tool_choice must be "auto", "none", "required" or {type: "function", function: {name}}, got ${JSON.stringify(choice)}`);
}

// A number option must be a finite number (NaN and Infinity would cross to the engine as null,
// read there as "the default"), a token count a whole number >= 1; ignore_eos and logprobs
// booleans; top_logprobs 0 to 20.
const COUNTS = ["max_tokens", "top_k", "repeat_last_n", "seed"];

function checked(name, value) {
  if (name === "logit_bias") {
    if (typeof value !== "object" || Array.isArray(value)) throw invalidArgument("logit_bias must be an object of token id -> bias");
    for (const [id, bias] of Object.entries(value)) {
      if (!/^\d+$/.test(id) || typeof bias !== "number" || !Number.isFinite(bias)) {
        throw invalidArgument(`logit_bias: ${JSON.stringify(id)} -> ${String(bias)} is not a token id and a finite bias`);
      }
    }
    return value;
  }
  if (name === "top_logprobs" && !(Number.isInteger(value) && value >= 0 && value <= 20)) {
    throw invalidArgument(`top_logprobs must be a whole number from 0 to 20, got ${String(value)}`);
  }
  if (name === "ignore_eos" || name === "logprobs") {
    if (typeof value !== "boolean") throw invalidArgument(`${name} must be true or false, got ${JSON.stringify(value)}`);
    return value;
  }
  if (typeof value !== "number" || !Number.isFinite(value)) {
    throw invalidArgument(`${name} must be a finite number, got ${String(value)}`);
  }
  if (COUNTS.includes(name) && !(Number.isInteger(value) && (value >= 1 || (name !== "max_tokens" && value >= 0)))) {
    throw invalidArgument(`${name} must be a whole number ${name === "max_tokens" ? ">= 1" : ">= 0"}, got ${value}`);
  }
  return value;
}

// OpenAI's response_format ({type: "text" | "json_object" | "json_schema", json_schema}) and two
// grammar forms of ours ({type: "grammar", grammar: "<Lark>"}, {type: "regex", regex}). The engine
// checks the rest (unknown fields, a schema or grammar its library cannot compile) and answers
// INVALID_ARGUMENT with the library's message.
const RESPONSE_FORMATS = ["text", "json_object", "json_schema", "grammar", "regex"];

function responseFormat(format) {
  if (typeof format !== "object" || !RESPONSE_FORMATS.includes(format.type)) {
    throw invalidArgument(`response_format.type must be one of ${RESPONSE_FORMATS.join(", ")}, got ${JSON.stringify(format?.type)}`);
  }
  return format;
}

function stopList(stop) {
  const list = typeof stop === "string" ? [stop] : stop;
  if (!Array.isArray(list) || !list.every((s) => typeof s === "string")) {
    throw invalidArgument("stop must be a string or an array of strings");
  }
  return list;
}

// OpenAI messages may carry content as an array of parts; a text-only model reads the text parts.
export function chatMessages(messages) {
  if (!Array.isArray(messages) || messages.length === 0) throw invalidArgument("messages must be a non-empty array");
  return messages.map((message, i) => {
    if (typeof message?.role !== "string") throw invalidArgument(`messages[${i}].role must be a string`);
    const out = { role: message.role, content: messageText(message.content, i) };
    if (message.tool_calls != null) out.tool_calls = toolCalls(message.tool_calls, i);
    if (message.tool_call_id != null) out.tool_call_id = String(message.tool_call_id);
    if (message.name != null) out.name = String(message.name);
    return out;
  });
}

// An assistant message's calls, as the engine returned them (or as OpenAI's API did).
function toolCalls(calls, i) {
  if (!Array.isArray(calls)) throw invalidArgument(`messages[${i}].tool_calls must be an array`);
  return calls.map((call, j) => {
    const fn = call?.function;
    if (typeof fn?.name !== "string" || typeof fn.arguments !== "string") {
      throw invalidArgument(`messages[${i}].tool_calls[${j}] must be {id, type: "function", function: {name, arguments: "<JSON text>"}}`);
    }
    return { id: String(call.id ?? ""), type: "function", function: { name: fn.name, arguments: fn.arguments } };
  });
}

function messageText(content, i) {
  if (typeof content === "string") return content;
  if (content == null) return "";
  if (Array.isArray(content)) {
    return content
      .map((part) => {
        if (part?.type !== "text" || typeof part.text !== "string") {
          throw invalidArgument(`messages[${i}].content: only text parts are supported, got "${part?.type}"`);
        }
        return part.text;
      })
      .join("");
  }
  throw invalidArgument(`messages[${i}].content must be a string or an array of text parts`);
}

// embeddings.create() params, OpenAI's: {input, model?, encoding_format?, dimensions?, user?}.
// Unlike chat's, unknown keys are refused: the API is small and a misspelt key would silently
// change the vectors' format or size. `input` is a string, an array of strings, an array of
// token ids (one input) or an array of such arrays; none may be empty (OpenAI refuses "" too).
const EMBEDDING_PARAMS = ["input", "model", "encoding_format", "dimensions", "user"];

export function embeddingParams(params) {
  if (params == null || typeof params !== "object") throw invalidArgument("embeddings.create needs {input}");
  for (const key of Object.keys(params)) {
    if (!EMBEDDING_PARAMS.includes(key)) throw invalidArgument(`unknown embeddings.create parameter "${key}" (parameters: ${EMBEDDING_PARAMS.join(", ")})`);
  }
  const { input, encoding_format = "float", dimensions } = params;
  if (encoding_format !== "float" && encoding_format !== "base64") {
    throw invalidArgument(`encoding_format must be "float" or "base64", got ${JSON.stringify(encoding_format)}`);
  }
  if (dimensions != null && !(Number.isInteger(dimensions) && dimensions >= 1)) {
    throw invalidArgument(`dimensions must be a whole number >= 1, got ${String(dimensions)}`);
  }
  for (const name of ["model", "user"]) {
    if (params[name] != null && typeof params[name] !== "string") throw invalidArgument(`${name} must be a string`);
  }
  return { inputs: embeddingInputs(input), encoding_format, dimensions };
}

const isTokenId = (v) => Number.isInteger(v) && v >= 0 && v <= 0xffffffff;

function embeddingInputs(input) {
  const bad = () => invalidArgument("input must be a non-empty string, an array of them, an array of token ids, or an array of token id arrays");
  if (typeof input === "string") input = [input];
  else if (Array.isArray(input) && input.length > 0 && input.every((v) => typeof v === "number")) input = [input];
  if (!Array.isArray(input) || input.length === 0) throw bad();
  for (const item of input) {
    const text = typeof item === "string" && item.length > 0;
    const ids = Array.isArray(item) && item.length > 0 && item.every(isTokenId);
    if (!text && !ids) throw bad();
  }
  return input;
}

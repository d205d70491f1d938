// Types of the llama-wgpu package. The engine runs Llama-family GGUF models on the GPU through
// WebGPU, or on the CPU engine (wasm SIMD) where there is no hardware GPU; see README.md for the
// walk-through.
//
// Naming: OpenAI's objects keep OpenAI's snake_case (chat.completions.create's params, its
// completions and chunks, messages, tools and tool calls, response_format and its json_schema);
// everything of llama-wgpu's own is camelCase (EngineOptions, GenerateOptions, GenerationResult,
// EngineStats, ModelInfo, ProgressEvent). Unknown keys in EngineOptions and GenerateOptions are
// refused with INVALID_ARGUMENT; chat.completions.create is the one exception, lenient like
// OpenAI's API (see ChatCompletionParams).

/** Where the model comes from. A string or URL is fetched (and cached, see `cache`); relative URLs
 * resolve against the page. An ArrayBuffer or typed array given to createWorkerEngine is
 * transferred to the worker (detached on the page) to avoid copying it. */
export type ModelSource = string | URL | Blob | ArrayBuffer | ArrayBufferView | ReadableStream<Uint8Array>;

export interface ProgressEvent {
  /** "download": bytes from the network, going into the engine (and into the Cache API beside
   * it) as they arrive; "load": bytes into the engine, GPU memory or the CPU engine's wasm memory,
   * from the cache, a file, a buffer or a stream; "compile": preparing the engine, e.g. building
   * the GPU kernels (loaded 0 of 1, then 1 of 1). */
  phase: "download" | "load" | "compile";
  loaded: number;
  /** Undefined when the size is not known (a stream, a response without Content-Length). */
  total: number | undefined;
  /** Present on one "download" event when the Cache API refused the model (storage quota
   * exceeded, a storage error): the load goes on from the network, and the next load downloads
   * the model again. Says why. */
  cacheError?: string;
}

/** Where the model runs. See EngineOptions.device. */
export type Device = "auto" | "gpu" | "cpu";

export interface EngineOptions {
  model: ModelSource;
  /** Where the model runs. Default "auto": the GPU through WebGPU when the browser grants a
   * hardware adapter; otherwise (no `navigator.gpu`, no adapter, or a software/fallback adapter
   * such as SwiftShader, which is slower than the CPU engine) the CPU engine: quantized wasm
   * SIMD128 kernels on `threads` threads, weights in wasm memory (a model too large for wasm's
   * 4 GiB is refused with MODEL_TOO_LARGE before its weights are read). `stats().device` and
   * `stats().deviceReason` say what was chosen and why.
   * "gpu": WebGPU only; rejects with WEBGPU_UNAVAILABLE, before any download, when there is no
   * adapter (a software adapter is accepted). "cpu": the CPU engine, even where a GPU exists. */
  device?: Device;
  /** Threads for the CPU engine (a whole number >= 1). Default: every core
   * (`navigator.hardwareConcurrency`) in a cross-origin isolated page (COOP `same-origin` + COEP
   * `require-corp` or `credentialless`), which wasm threads need for shared memory; elsewhere 1.
   * The first engine of a page (or of a worker) decides for that page or worker; the threads in
   * use are in `stats().adapter`. */
  threads?: number;
  /** Called as the model downloads, loads and compiles (at most about once per MiB). */
  onProgress?: (event: ProgressEvent) => void;
  /** Called once when the engine's GPU device is lost (a driver reset, a mobile tab sent to the
   * background, `device.destroy()`), as soon as the device says so, whether or not a call is
   * running (never for unload()): a call that meets the loss rejects with DEVICE_LOST,
   * `stats().state` becomes "lost", and later calls reject with DEVICE_LOST at once until
   * `engine.reload()` succeeds. */
  onDeviceLost?: (error: LlamaWgpuError) => void;
  /** Tokens the KV cache holds. Default: the model's context length, capped at 4096. A value
   * above the model's trained context, or one whose KV cache does not fit `maxGpuBytes` (or the
   * CPU engine's wasm memory), is fitted down (the largest power of two that fits, at least 256)
   * and the reduction reported in `stats().contextReduced`; never silently. */
  contextLength?: number;
  /** Keep URL models in the browser's Cache API (key: the absolute URL). Default true. A
   * download is stored only once it is whole (and matched `sha256` when given); a stored copy
   * that is empty or cannot be read is removed. A full storage quota never fails the load (see
   * ProgressEvent.cacheError). */
  cache?: boolean;
  /** The model's SHA-256, 64 hex digits. The bytes are checked as they load, and a mismatch
   * rejects with FETCH_FAILED before the engine is built; a download that does not match is
   * never cached. A cached copy is used only when it was checked against this same digest
   * (otherwise it is removed and the model downloaded again). Any source kind. */
  sha256?: string;
  /** Aborts the download or load; the promise then rejects with an AbortError (code "ABORTED"). */
  signal?: AbortSignal;
  /** Advanced: split weights into GPU bindings no larger than this many bytes (default: the
   * adapter's limit). Ignored by the CPU engine. */
  maxBindingSize?: number;
  /** The most GPU memory the model may take, in bytes (a whole number >= 1): weights, KV cache,
   * activations and the sampler, counted from the file's header before anything is allocated
   * and before the rest of the download arrives. A context that does not fit is reduced (see
   * `contextLength`); a model that does not fit even 256 tokens of context rejects with
   * MODEL_TOO_LARGE, whose message gives the need and the limit in MiB. Default: no total
   * (WebGPU does not tell a page how much memory the GPU has; the adapter's per-buffer limits
   * are always checked): set it where you know your users' devices, e.g. about 1.2e9 for phones
   * whose tabs are killed near 1.5 GB. Ignored by the CPU engine. */
  maxGpuBytes?: number;
}

export interface WorkerEngineOptions extends EngineOptions {
  /** A worker running "llama-wgpu/worker", for bundlers that must construct it themselves.
   * One engine per worker; it is not terminated by unload() (a worker the package started is). */
  worker?: Worker;
}

export interface GenerateOptions {
  /** Default 256. */
  maxTokens?: number;
  /** 0 = greedy (deterministic). Default 0.8. */
  temperature?: number;
  /** Default 40 (0 = off). */
  topK?: number;
  /** Default 0.95. */
  topP?: number;
  /** Default 0.05. */
  minP?: number;
  /** Default 1.0 (off). */
  repeatPenalty?: number;
  /** Tokens the repeat, presence and frequency penalties look back over. Default 64. */
  repeatLastN?: number;
  /** Subtracted once from the logit of every token seen in the last repeatLastN, in [-2, 2].
   * Default 0. */
  presencePenalty?: number;
  /** Subtracted from a token's logit once per time it was seen there, in [-2, 2]. Default 0. */
  frequencyPenalty?: number;
  /** Added to the logits of these token ids before sampling ({"id": bias}, bias in
   * [-100, 100]; -100 all but bans a token). */
  logitBias?: Record<string, number>;
  /** Sampling seed. Default 0: the same call gives the same text; vary it for variety. */
  seed?: number;
  /** Generation ends where the text contains one of these; the stop string is not emitted. */
  stop?: string | string[];
  /** Keep going past end-of-generation tokens (benchmarks). */
  ignoreEos?: boolean;
  /** Hold the output to JSON (by schema), a Lark grammar or a regex. Default: free text. */
  responseFormat?: ResponseFormat;
  /** Report each generated token's log-probability in the result's `logprobs`. Of the model's
   * distribution after logitBias, the penalties and the response format (a token it forbids has
   * none), before topK, topP, minP and temperature: the same numbers greedy or sampled. Computed
   * where the model runs (on the GPU, read back only when asked). Default false. */
  logprobs?: boolean;
  /** The most likely alternatives listed per token, 0 to 20 (needs logprobs: true). Default 0. */
  topLogprobs?: number;
  /** Stops the generation within one token: iteration then throws (rejects `next()`) with a
   * LlamaWgpuError named "AbortError", code "ABORTED"; no GenerationResult is returned. */
  signal?: AbortSignal;
}

/** What the output must be. OpenAI's forms ("text", "json_object", "json_schema") and two of
 * llama-wgpu's: a grammar in llguidance's Lark syntax, and a regular expression the whole
 * output matches. Tokens the format does not allow are never sampled; generation ends with
 * finishReason (finish_reason in OpenAI's objects) "stop" once the format is complete. JSON is written with ", " and ": " between
 * items and no other whitespace. A schema or grammar that cannot be compiled is
 * INVALID_ARGUMENT. */
export type ResponseFormat =
  | { type: "text" }
  | { type: "json_object" }
  | {
      type: "json_schema";
      json_schema: { name?: string; description?: string; schema: Record<string, unknown>; strict?: boolean | null };
    }
  | { type: "grammar"; grammar: string }
  | { type: "regex"; regex: string };

/** Why a generation ended, the same words in the CLI and in OpenAI's objects: "stop" (an
 * end-of-generation token, a stop string, or a complete response format), "length" (maxTokens or
 * the context is full), "tool_calls" (chat with tools only), "abort" (stopped by a signal, an early
 * exit from the loop, or unload()). */
export type FinishReason = "stop" | "length" | "tool_calls" | "abort";

/** What a finished generation reports: the value the generate() iterator returns when it is done
 * (`{done: true, value}`). An aborted generation returns none: it throws an AbortError. */
export interface GenerationResult {
  /** The whole generated text (the pieces joined). */
  text: string;
  /** Always empty from generate() (tools are a chat.completions feature); OpenAI objects. */
  toolCalls: ToolCall[];
  finishReason: "stop" | "length";
  promptTokens: number;
  /** Prompt tokens found in the KV cache from the previous turn, so not computed again. */
  cachedPromptTokens: number;
  completionTokens: number;
  prefillTokensPerS: number;
  /** (completionTokens - 1) / decodeS. */
  decodeTokensPerS: number;
  timeToFirstTokenS: number;
  prefillS: number;
  decodeS: number;
  /** One entry per generated token when logprobs were asked (OpenAI's objects), else empty. */
  logprobs: LogprobEntry[];
}

/** One token's log-probability (OpenAI's `choices[].logprobs.content[]`): its text, its bytes
 * (the text may be part of a UTF-8 character) and the most likely tokens at its step, most likely
 * first. A token too unlikely for a finite logprob reports -9999, as OpenAI's API does. */
export interface LogprobEntry {
  token: string;
  logprob: number;
  bytes: number[];
  top_logprobs: { token: string; logprob: number; bytes: number[] }[];
}

/** OpenAI's `choices[].logprobs`: null unless the request asked for logprobs. */
export type ChoiceLogprobs = { content: LogprobEntry[]; refusal: null } | null;

/** A context shorter than the one asked for: `requested` tokens were asked (or were the
 * default), and `reason` says why fewer fit (for display and logs; the wording may change). */
export interface ContextReduced {
  requested: number;
  reason: string;
}

export interface ModelInfo {
  architecture: string;
  name: string | null;
  fileType: number | null;
  nParams: number;
  /** The context the model was trained for. */
  contextLength: number;
  /** The context this engine allocated. */
  contextLengthUsed: number;
  /** Why `contextLengthUsed` is shorter than the context asked for (see `EngineStats`). */
  contextReduced: ContextReduced | null;
  nLayer: number;
  nEmbd: number;
  nVocab: number;
  /** Distinct weight types in the file, e.g. ["F32", "Q4_1", "Q8_0"]. */
  tensorTypes: string[];
  /** Where the chat template came from: the model's own, or the built-in turn format used
   * because the file has none (e.g. "the built-in `gemma` turn format ..."). */
  chatTemplate: string;
  /** GPU memory the engine holds (0 on the CPU engine). */
  gpuBytes: number;
  /** Memory the CPU engine holds: weights, KV cache, activations (0 on the GPU). */
  cpuBytes: number;
  loadSeconds: number;
}

/** The engine and its last generation (from generate() or chat.completions.create, finished or
 * aborted). The generation fields are GenerationResult's, null before the first generation. */
export interface EngineStats {
  model: ModelInfo;
  /** Where the model runs: "gpu" (WebGPU) or "cpu" (the CPU engine). */
  device: "gpu" | "cpu";
  /** Why that device was chosen, e.g. "hardware GPU: ...", "no hardware GPU (the adapter is
   * ...)", "no GPU (...)" or "asked for the CPU". For display and logs; the wording may change. */
  deviceReason: string;
  /** The WebGPU adapter, as the browser describes it; on the CPU engine, its instruction set and
   * threads (e.g. "CPU engine (simd128, 1 thread)"). */
  adapter: string;
  /** The GPU features in use (both false on the CPU engine). */
  features: { shaderF16: boolean; subgroups: boolean };
  /** Tokens the KV cache holds. */
  contextLength: number;
  /** null, or the context asked for (or the default one) and why `contextLength` is shorter:
   * the model's trained context, or the memory limit (`maxGpuBytes`, the CPU engine's wasm
   * memory). */
  contextReduced: ContextReduced | null;
  /** GPU memory the engine holds (0 on the CPU engine). */
  gpuBytes: number;
  /** Memory the CPU engine holds in wasm memory (0 on the GPU). */
  cpuBytes: number;
  /** Seconds from the first byte read (a download's included: it goes straight into the engine)
   * to the engine being ready. */
  loadSeconds: number;
  /** Where the load's time went. Waiting for the model's bytes: the network, or the Cache API
   * for a cached model (opening the source included). null when the engine came from a reload
   * that failed to time it. */
  downloadSeconds: number | null;
  /** Pushing the bytes into the engine as they arrived: parsing, and writing the tensors into
   * GPU buffers (or wasm memory). Downloads and uploads interleave chunk by chunk, so
   * downloadSeconds + uploadSeconds + compileSeconds is about loadSeconds plus the wait for the
   * first byte. */
  uploadSeconds: number | null;
  /** The part of loadSeconds after the last byte: building the engine (on the GPU, compiling
   * its kernels). */
  compileSeconds: number;
  /** The first generation's time to its first token after the load (its prompt's prefill, and
   * any work a GPU driver defers to a pipeline's first use); null until then. */
  firstTokenSeconds: number | null;
  /** GPU engine: each compute pipeline it compiled, in order, with the wall time from creating
   * its shader module to the browser answering that it compiled (the GPU process's compilation
   * included); [] on the CPU engine. For finding which kernels make a load slow. */
  compiledKernels: { name: string; seconds: number }[];
  /** GPU engine: the mean CPU time to encode one decode step (its WebGPU calls: pipelines,
   * bind groups, dispatches, finishing the command buffer), in microseconds; null before the
   * first decoded token and on the CPU engine. */
  encodeUsPerToken: number | null;
  promptTokens: number | null;
  cachedPromptTokens: number | null;
  completionTokens: number | null;
  prefillTokensPerS: number | null;
  decodeTokensPerS: number | null;
  timeToFirstTokenS: number | null;
  prefillS: number | null;
  decodeS: number | null;
  /** "abort" when the last generation was stopped. */
  finishReason: FinishReason | null;
  /** "ready"; "lost" after the GPU device was lost (see EngineOptions.onDeviceLost) until
   * reload(); "unloaded" after unload(). */
  state: "ready" | "lost" | "unloaded";
}

export type ChatRole = "system" | "user" | "assistant" | "tool" | (string & {});

export interface ChatMessage {
  role: ChatRole;
  /** Text, or OpenAI content parts of type "text" (joined). */
  content: string | { type: "text"; text: string }[] | null;
  /** On an assistant message: the calls it made (as a completion returned them). */
  tool_calls?: ToolCall[];
  /** On a "tool" message: the call this is the result of. */
  tool_call_id?: string;
  /** On a "tool" message: the function's name (some templates print it). */
  name?: string;
}

/** A function the model may call; `parameters` is a JSON schema of its arguments object. */
export interface Tool {
  type: "function";
  function: { name: string; description?: string; parameters?: Record<string, unknown>; strict?: boolean | null };
}

/** "auto": the model chooses; "none": no calls; "required": at least one call; or one named
 * function. "required" and a named function hold the reply to the call syntax, so the call
 * always parses and its arguments follow the schema (no properties beyond those listed, unless
 * the schema sets additionalProperties). */
export type ToolChoice = "auto" | "none" | "required" | { type: "function"; function: { name: string } };

/** A call the model made. `arguments` is JSON text, as in OpenAI's API. */
export interface ToolCall {
  id: string;
  type: "function";
  function: { name: string; arguments: string };
}

export interface ChatCompletionParams {
  messages: ChatMessage[];
  stream?: boolean;
  max_tokens?: number;
  /** OpenAI's newer name for max_tokens. */
  max_completion_tokens?: number;
  temperature?: number;
  top_p?: number;
  seed?: number;
  stop?: string | string[];
  /** In [-2, 2]; over the last repeat_last_n tokens (64 unless set). */
  presence_penalty?: number;
  frequency_penalty?: number;
  /** Token id (as a string key) -> bias in [-100, 100], added to its logit. */
  logit_bias?: Record<string, number>;
  /** llama.cpp extras. */
  top_k?: number;
  min_p?: number;
  repeat_penalty?: number;
  repeat_last_n?: number;
  ignore_eos?: boolean;
  /** JSON by schema (OpenAI's shape), or a grammar or regex: see ResponseFormat. Not with tools. */
  response_format?: ResponseFormat;
  /** Functions the model may call, rendered through the model's chat template (or described in
   * a system message for a template without tools). */
  tools?: Tool[];
  /** Default "auto". */
  tool_choice?: ToolChoice;
  /** false: at most one call per reply. Default true. */
  parallel_tool_calls?: boolean;
  /** Each token's log-probability in `choices[].logprobs` (streamed: a chunk carries the tokens
   * since the previous chunk). See GenerateOptions.logprobs for which distribution. */
  logprobs?: boolean;
  /** Alternatives per token, 0 to 20 (needs logprobs: true). */
  top_logprobs?: number;
  /** Only 1 is supported. */
  n?: number;
  signal?: AbortSignal;
  /** The one lenient entry point: other OpenAI parameters (model, user, stream_options, ...) are
   * accepted and ignored, so code written for OpenAI runs unchanged. Those that would change the
   * result silently (n other than 1) are refused with INVALID_ARGUMENT. */
  [other: string]: unknown;
}

export interface ChatCompletionUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  prompt_tokens_details: { cached_tokens: number };
}

export interface ChatCompletion {
  id: string;
  object: "chat.completion";
  /** Unix seconds. */
  created: number;
  /** The model's name from its GGUF metadata. */
  model: string;
  choices: {
    index: 0;
    /** content is null when the reply is only tool calls. */
    message: { role: "assistant"; content: string | null; tool_calls?: ToolCall[] };
    finish_reason: "stop" | "length" | "tool_calls";
    logprobs: ChoiceLogprobs;
  }[];
  usage: ChatCompletionUsage;
}

export interface ChatCompletionChunk {
  id: string;
  object: "chat.completion.chunk";
  created: number;
  model: string;
  choices: {
    index: 0;
    /** The first chunk's delta carries role "assistant"; tool calls come whole, one chunk before
     * the last, each with its index; the last chunk's delta has no content. */
    delta: { role?: "assistant"; content?: string; tool_calls?: (ToolCall & { index: number })[] };
    finish_reason: "stop" | "length" | "tool_calls" | null;
    logprobs: ChoiceLogprobs;
  }[];
  /** On the last chunk only. */
  usage?: ChatCompletionUsage;
}

/** OpenAI's embeddings.create params. Unknown keys are INVALID_ARGUMENT (unlike
 * chat.completions.create's). */
export interface EmbeddingCreateParams {
  /** A string, an array of strings, an array of token ids (one input), or an array of such
   * arrays; none empty. Text is tokenized with the BOS/EOS the model's metadata asks for. */
  input: string | string[] | number[] | number[][];
  /** Accepted for OpenAI compatibility and ignored: the engine's model answers. */
  model?: string;
  /** "float" (the default): arrays of numbers; "base64": each vector's little-endian f32 bytes. */
  encoding_format?: "float" | "base64";
  /** Keep the first N values of each vector, scaled back to unit length (at most the model's
   * embedding width; more is INVALID_ARGUMENT). */
  dimensions?: number;
  /** Accepted and ignored. */
  user?: string;
}

export interface Embedding<E extends number[] | string = number[]> {
  object: "embedding";
  index: number;
  /** A unit vector (L2 norm 1): a dot product of two is their cosine similarity. */
  embedding: E;
}

export interface CreateEmbeddingResponse<E extends number[] | string = number[]> {
  object: "list";
  data: Embedding<E>[];
  /** The model's name from its GGUF metadata. */
  model: string;
  usage: { prompt_tokens: number; total_tokens: number };
}

export interface Engine {
  /** Continues a raw prompt, yielding text pieces as they are generated (never empty strings),
   * then returning its GenerationResult. The generation starts when iteration does and stops if
   * the loop exits early. Calls made while another generation runs wait their turn. Throws at
   * once (INVALID_ARGUMENT) for bad or unknown options, and an AbortError (code "ABORTED") for an
   * already aborted signal; a signal aborted later makes iteration throw that AbortError. */
  generate(prompt: string, options?: GenerateOptions): AsyncGenerator<string, GenerationResult, undefined>;

  /** OpenAI-style chat through the model's chat template. The KV cache of earlier turns is reused
   * when the messages extend the previous conversation. */
  readonly chat: {
    readonly completions: {
      create(params: ChatCompletionParams & { stream: true }, options?: { signal?: AbortSignal }): Promise<AsyncGenerator<ChatCompletionChunk, void, undefined>>;
      create(params: ChatCompletionParams & { stream?: false }, options?: { signal?: AbortSignal }): Promise<ChatCompletion>;
      create(params: ChatCompletionParams, options?: { signal?: AbortSignal }): Promise<ChatCompletion | AsyncGenerator<ChatCompletionChunk, void, undefined>>;
    };
  };

  /** OpenAI-style embeddings with an embedding GGUF (one whose metadata names a pooling type:
   * mean, cls or last, e.g. Qwen3-Embedding). Each input runs from an empty KV cache, so the
   * conversation cache is dropped (the next chat runs its prompt in full). A generation model
   * rejects with EMBEDDINGS_UNSUPPORTED. Queued with generations; the signal drops the call while
   * it waits its turn. */
  readonly embeddings: {
    create(params: EmbeddingCreateParams & { encoding_format: "base64" }, options?: { signal?: AbortSignal }): Promise<CreateEmbeddingResponse<string>>;
    create(params: EmbeddingCreateParams & { encoding_format?: "float" }, options?: { signal?: AbortSignal }): Promise<CreateEmbeddingResponse<number[]>>;
    create(params: EmbeddingCreateParams, options?: { signal?: AbortSignal }): Promise<CreateEmbeddingResponse<number[] | string>>;
  };

  /** The model, the device and adapter, and the last generation's figures. Synchronous in both
   * engines (the worker engine keeps the latest figures the worker sent). */
  stats(): EngineStats;

  /** Forgets the conversation kept in the KV cache (after any running generation). */
  resetChat(): Promise<void>;

  /** Tokens the text makes as a raw prompt. */
  countTokens(text: string): Promise<number>;

  /** Reads a LoRA adapter GGUF (llama.cpp's format: `general.type` "adapter", `lora_a`/`lora_b`
   * tensors) for this model and applies it beside the active ones. An adapter made for another
   * base model rejects with MODEL_INVALID naming the tensor; a file that is no adapter too. */
  loadAdapter(source: ModelSource, options?: LoadAdapterOptions): Promise<Adapter>;
  /** Makes exactly these adapters active, at these scales (default 1), for every later call;
   * `[]` runs the base model. Switching is cheap (no reload); the conversation starts over. */
  setAdapters(adapters: { adapter: Adapter; scale?: number }[]): Promise<void>;
  /** Frees an adapter (taken out of the active set first). */
  unloadAdapter(adapter: Adapter): Promise<void>;
  /** The active adapters and their scales. */
  adapters(): { adapter: Adapter; scale: number }[];

  /** Stops any running generation, refuses queued ones and frees the model's memory (and ends the
   * worker the package started). Later calls reject with code "ENGINE_UNLOADED". */
  unload(): Promise<void>;
  /** Builds the engine again from its model source, e.g. after the GPU device was lost: a URL
   * is read from the Cache API (no download when it was cached), a File, Blob or buffer again
   * (a ReadableStream cannot be read twice: INVALID_ARGUMENT). The conversation starts over.
   * Rejects as createEngine() would (the state stays "lost"), ENGINE_UNLOADED after unload(). */
  reload(options?: { onProgress?: (event: ProgressEvent) => void; signal?: AbortSignal }): Promise<void>;
}

/** A LoRA adapter loaded into an engine (engine.loadAdapter): a handle for setAdapters and
 * unloadAdapter, with what its file says. */
export interface Adapter {
  readonly id: number;
  /** `general.name`, when the file has one. */
  readonly name: string | null;
  /** The largest rank of its tensors. */
  readonly rank: number;
  /** `adapter.lora.alpha` (0: none). */
  readonly alpha: number;
  /** Adapted weights (lora_a/lora_b pairs). */
  readonly tensors: number;
  /** Bytes it holds in memory (f32). */
  readonly bytes: number;
}

export interface LoadAdapterOptions {
  /** Applied at this scale beside the adapters already active (default 1; 0 loads it inactive).
   * The update is `scale * alpha / rank * B A`, as in llama.cpp. */
  scale?: number;
  /** A URL is kept in the Cache API like a model (default true). */
  cache?: boolean;
  /** Expected SHA-256 of the file (hex): a mismatch is FETCH_FAILED. */
  sha256?: string;
  onProgress?: (event: ProgressEvent) => void;
  signal?: AbortSignal;
}

/** Loads a model and runs it on this thread. Rejects with a LlamaWgpuError. */
export function createEngine(options: EngineOptions): Promise<Engine>;

/** Loads a model in a module worker (keeps the page responsive). Same engine API. */
export function createWorkerEngine(options: WorkerEngineOptions): Promise<Engine>;

/** Models kept in the Cache API by earlier loads. Empty where the Cache API is unavailable. */
export function listCachedModels(): Promise<{ url: string; bytes: number }[]>;

/** Deletes a cached model; true if there was one. Relative URLs resolve against the page. */
export function deleteCachedModel(url: string | URL): Promise<boolean>;

/** Whether WebGPU is present and grants an adapter (shader-f16 is not needed; a software adapter
 * counts). The engine does not need it: device "auto" runs on the CPU engine without WebGPU. */
export function hasWebGPU(): Promise<boolean>;

export type LlamaWgpuErrorCode =
  | "WEBGPU_UNAVAILABLE"
  | "FETCH_FAILED"
  | "ABORTED"
  | "GGUF_INVALID"
  | "UNSUPPORTED_ARCHITECTURE"
  | "UNSUPPORTED_TENSOR_TYPE"
  | "MODEL_TOO_LARGE"
  | "MODEL_INVALID"
  | "TOKENIZER_ERROR"
  | "CHAT_TEMPLATE_ERROR"
  | "CONTEXT_OVERFLOW"
  | "INVALID_ARGUMENT"
  | "DEVICE_LOST"
  | "GPU_ERROR"
  | "ENGINE_BUSY"
  | "EMBEDDINGS_UNSUPPORTED"
  | "ENGINE_UNLOADED"
  | "WASM_LOAD_FAILED"
  | "WORKER_ERROR"
  | "IO_ERROR"
  | "INTERNAL";

/** Every error the package throws or rejects with. `name` is "AbortError" for aborts. */
export class LlamaWgpuError extends Error {
  constructor(code: LlamaWgpuErrorCode, message: string, options?: { cause?: unknown });
  readonly code: LlamaWgpuErrorCode;
}

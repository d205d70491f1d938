// Stands in for the wasm-bindgen glue (pkg/llama_wgpu.js) so that the facade's own logic (options,
// queue, abort, OpenAI shapes, chunking, the cache flow, the worker protocol) runs in Node. The
// real wasm is exercised in Chromium by tests/web.rs and tests/browser/.
import { createHash } from "node:crypto";

export const log = { inits: 0, loaders: [], engines: [], maxChunk: 0 };
export default async function init() { log.inits++; }

// The real one is sha2 in wasm (src/web/digest.rs); Node's streaming hash gives the same digest.
export class Sha256 {
  #hash = createHash("sha256");
  update(bytes) { this.#hash.update(bytes); }
  hex() { return this.#hash.digest("hex"); }
  free() {}
}

function codeError(code, message) { const e = new Error(message); e.code = code; return e; }

export class ModelLoader {
  // Device choice as src/loader.rs makes it: "gpu" needs an adapter; "auto" falls back to the
  // CPU engine without one (the stub's adapter is a hardware one unless a flag says otherwise).
  static async create(options) {
    const device = options.device ?? "auto";
    if (!["auto", "gpu", "cpu", "reference"].includes(device)) throw codeError("INVALID_ARGUMENT", `unknown device ${device}`);
    const gpu = !globalThis.__noAdapter && !globalThis.__noGpuAdapter && !!globalThis.navigator?.gpu;
    if (device === "gpu" && !gpu) throw codeError("WEBGPU_UNAVAILABLE", "no adapter");
    const l = new ModelLoader(); l.options = options;
    l.choice = device === "gpu" || (device === "auto" && gpu)
      ? { device: "gpu", reason: device === "gpu" ? "asked for the GPU: mock" : "hardware GPU: mock" }
      : { device: "cpu", reason: device === "cpu" ? "asked for the CPU" : "no GPU (mock)" };
    log.loaders.push(l); return l;
  }
  constructor() { this.bytesReceived = 0; this.head = []; this.freed = false; this.consumed = false; }
  push(chunk) {
    if (this.consumed || this.freed) throw new Error("use after free");
    if (!(chunk instanceof Uint8Array)) throw new Error("not a Uint8Array");
    log.maxChunk = Math.max(log.maxChunk, chunk.byteLength);
    for (let i = 0; i < chunk.length && this.head.length < 4; i++) this.head.push(chunk[i]);
    if (this.head.length === 4 && String.fromCharCode(...this.head) !== "GGUF") throw codeError("GGUF_INVALID", "invalid GGUF at byte 0: bad magic");
    this.bytesReceived += chunk.byteLength;
  }
  modelInfo() { return undefined; }
  async finish() {
    this.consumed = true;
    if (this.bytesReceived < 8) throw codeError("MODEL_INVALID", "file too short");
    await new Promise((r) => setTimeout(r, 5));
    const e = new WasmEngine(this.bytesReceived, this.choice); log.engines.push(e); return e;
  }
  free() { if (this.consumed) throw new Error("free after consume"); this.freed = true; }
}

// An adapter file: any GGUF (the real checks are src/lora/'s, tested natively and in Chromium).
export class AdapterLoader {
  constructor(size) { this.size = size; this.bytes = 0; this.head = []; this.freed = false; log.adapterLoaders = (log.adapterLoaders ?? 0) + 1; }
  push(chunk) {
    if (this.freed) throw new Error("use after free");
    for (let i = 0; i < chunk.length && this.head.length < 4; i++) this.head.push(chunk[i]);
    if (this.head.length === 4 && String.fromCharCode(...this.head) !== "GGUF") throw codeError("GGUF_INVALID", "invalid GGUF at byte 0: bad magic");
    this.bytes += chunk.byteLength;
  }
  free() { this.freed = true; }
}

const WORDS = ["Once", "", " upon", " a", " time", " there", " was", " a", " cat", ".", " The", " end"];

export class WasmEngine {
  constructor(bytes, choice = { device: "gpu", reason: "hardware GPU: mock" }) {
    this.bytes = bytes; this.choice = choice; this.busy = false; this.freed = false; this.calls = []; this.resets = 0;
  }
  async generate(prompt, options, onToken) { return this.#run({ prompt }, options, onToken); }
  async chat(messages, options, onToken) {
    if (messages.some((m) => m.role === "bad")) throw codeError("CHAT_TEMPLATE_ERROR", "bad role");
    return this.#run({ messages }, options, onToken);
  }
  async #run(input, options, onToken) {
    if (this.freed) throw new Error("freed");
    if (this.busy) throw codeError("ENGINE_BUSY", "busy");
    if (globalThis.__loseDevice) { globalThis.__loseDevice = false; this.lost = true; }
    if (this.lost) throw codeError("DEVICE_LOST", "the GPU device was lost");
    if (options.max_tokens !== undefined && !(options.max_tokens >= 0)) throw codeError("INVALID_ARGUMENT", "max_tokens");
    this.busy = true;
    const call = { input, options, pieces: [], aborted: false };
    this.calls.push(call);
    try {
      // A required tool call (the facade's shaping of it is under test, not the parsing).
      if (options.tool_choice === "required") {
        const tool_calls = [{ id: "call_1", type: "function", function: { name: options.tools[0].function.name, arguments: '{"a":1}' } }];
        return { text: "", toolCalls: tool_calls, finishReason: "tool_calls", promptTokens: 4, cachedPromptTokens: 0, completionTokens: 12,
          prefillTokensPerS: 100, decodeTokensPerS: 10, timeToFirstTokenS: 0.1, prefillS: 0.04, decodeS: 0.5 };
      }
      const max = options.max_tokens ?? 256;
      const delay = options.seed ?? 2; // tests use seed as the per-token delay
      let text = "", n = 0, reason = "length";
      const logprobs = [];
      for (; n < max; n++) {
        await new Promise((r) => setTimeout(r, delay));
        if (n >= WORDS.length) { reason = "stop"; break; }
        const piece = WORDS[n];
        text += piece; call.pieces.push(piece);
        // The engine's entry per token when asked (the empty word stands for held-back text).
        const entry = options.logprobs ? { token: piece, logprob: -n / 10, bytes: [...new TextEncoder().encode(piece)], top_logprobs: [] } : undefined;
        if (entry) logprobs.push(entry);
        if (onToken(piece, entry) === false) { reason = "abort"; call.aborted = true; n++; break; }
      }
      return { text, toolCalls: [], finishReason: reason, promptTokens: 4, cachedPromptTokens: 1, completionTokens: n,
        prefillTokensPerS: 100, decodeTokensPerS: 10, timeToFirstTokenS: 0.1, prefillS: 0.04, decodeS: 0.5, logprobs };
    } finally { this.busy = false; }
  }
  // An embedding model's answer: each input's 8 values from its characters (or ids), scaled to
  // unit length, all in one Float32Array; `__generationModel` makes it a generation model.
  async embed(inputs) {
    if (this.freed) throw new Error("freed");
    if (this.busy) throw codeError("ENGINE_BUSY", "busy");
    if (globalThis.__generationModel) throw codeError("EMBEDDINGS_UNSUPPORTED", "no embeddings: the model has no `llama.pooling_type`");
    this.busy = true;
    try {
      await new Promise((r) => setTimeout(r, 3));
      const ids = inputs.map((input) => (typeof input === "string" ? [...input].map((c) => c.charCodeAt(0)) : input));
      const data = new Float32Array(inputs.length * 8);
      ids.forEach((t, i) => {
        const v = data.subarray(i * 8, i * 8 + 8);
        for (let j = 0; j < 8; j++) v[j] = t.reduce((s, c, k) => s + Math.sin(c * (j + 1) + k), 0);
        const norm = Math.hypot(...v);
        for (let j = 0; j < 8; j++) v[j] /= norm;
      });
      (this.embedded ??= []).push(inputs);
      return { data, dimensions: 8, promptTokens: ids.reduce((n, t) => n + t.length, 0), pooling: "last" };
    } finally { this.busy = false; }
  }
  info() {
    const gpu = this.choice.device === "gpu";
    const gpuBytes = gpu ? this.bytes : 0, cpuBytes = gpu ? 0 : this.bytes;
    return { model: { architecture: "llama", name: "Mock 1M", fileType: 3, nParams: 1e6, contextLength: 2048, nLayer: 2, nEmbd: 8, nVocab: 32, tensorTypes: ["Q4_1"], gpuBytes, cpuBytes },
      device: this.choice.device, deviceReason: this.choice.reason, adapter: gpu ? "mock" : "CPU engine (simd128, 1 thread)",
      features: { shaderF16: false, subgroups: gpu }, contextLength: 2048, contextReduced: null, gpuBytes, cpuBytes };
  }
  addAdapter(loader) {
    if (loader.freed) throw new Error("use after free");
    loader.freed = true;
    this.adapters ??= new Map();
    this.nextAdapter = (this.nextAdapter ?? 100) + 1; // ids of their own, unlike the facade's
    this.adapters.set(this.nextAdapter, loader.bytes);
    return { id: this.nextAdapter, name: null, rank: 4, alpha: 8, tensors: 2, bytes: loader.bytes };
  }
  async setAdapters(list) {
    if (this.busy) throw codeError("ENGINE_BUSY", "busy");
    for (const { id } of list) if (!this.adapters?.has(id)) throw codeError("INVALID_ARGUMENT", `no adapter has id ${id}`);
    (this.adapterSets ??= []).push(list);
  }
  async removeAdapter(id) {
    if (!this.adapters?.delete(id)) throw codeError("INVALID_ARGUMENT", `no adapter has id ${id}`);
    (this.removed ??= []).push(id);
  }
  // The GPU device lost while idle: `loseIdle()` plays the GPUDevice.lost promise resolving.
  onDeviceLost(listener) { this.lostListener = listener; }
  loseIdle() { this.lost = true; const l = this.lostListener; this.lostListener = null; l?.(codeError("DEVICE_LOST", "the GPU device was lost: Unknown: destroyed")); }
  countTokens(text) { if (this.busy) throw codeError("ENGINE_BUSY", "busy"); return text.split(" ").length; }
  reset() { if (this.busy) throw codeError("ENGINE_BUSY", "busy"); this.resets++; }
  free() { this.freed = true; }
}

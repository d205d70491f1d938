// Runs inside the benchmark page (served by www/serve.mjs, cross-origin isolated). bench/browser.mjs
// opens a fresh page per engine and run, imports this module and calls runOurs() or runWllama();
// each returns plain JSON. Nothing here decides what to compare: both functions take the same
// model URL, the same prompt text and the same token counts.

// Prose repeated to cut prompts of an exact token count from (no special tokens, no markup).
const PROSE =
  "The river left the hills in early spring, when the snow on the northern slopes began to melt " +
  "and the small streams that fed it grew loud and fast. By the time it reached the valley it was " +
  "wide and brown, carrying branches, stones and the occasional fence post from farms upstream. " +
  "The people of the town had learned long ago to read its moods. They watched the colour of the " +
  "water, the speed of the foam along the banks, and the height of the mark on the old stone " +
  "bridge. When the water touched the third line, the miller closed his gates and the baker moved " +
  "his flour to the upper room. When it touched the fourth, everyone carried what they could up " +
  "the hill to the church, and waited. Most years the river stopped at the second line and then " +
  "fell back, leaving fresh mud on the meadows and a smell of wet earth that lasted for weeks. " +
  "Children were sent to look for things the flood had brought: a wooden spoon, a boot, once a " +
  "small boat with its oars still tied inside. The schoolteacher kept a list of these finds in a " +
  "thick notebook, with the date and the name of the child who found each one, and on winter " +
  "evenings she would read from it to anyone who asked. ";

export const REFERENCE_PROMPT = "Once upon a time";

function now() {
  return performance.now();
}

async function environment() {
  // The page's WebGPU adapter as the browser describes it (llama-wgpu's stats().adapter is wgpu's
  // summary, which has no name on the web).
  const adapter = navigator.gpu ? await navigator.gpu.requestAdapter().catch(() => null) : null;
  return {
    crossOriginIsolated: globalThis.crossOriginIsolated === true,
    hardwareConcurrency: navigator.hardwareConcurrency,
    userAgent: navigator.userAgent,
    adapter: adapter
      ? {
          vendor: adapter.info?.vendor ?? null,
          architecture: adapter.info?.architecture ?? null,
          description: adapter.info?.description ?? null,
          isFallbackAdapter: adapter.info?.isFallbackAdapter ?? adapter.isFallbackAdapter ?? null,
          shaderF16: adapter.features.has("shader-f16"),
          subgroups: adapter.features.has("subgroups"),
        }
      : null,
  };
}

// The shortest prefix of PROSE (repeated) whose token count is exactly `n`, by the engine's own
// count: whole words first, then characters inside the last word if a word boundary skips over n.
export async function buildPrompt(countTokens, n) {
  const words = [];
  while (words.length < n * 2 + 16) words.push(...PROSE.trim().split(/\s+/));
  const text = (k) => words.slice(0, k).join(" ");
  let lo = 1;
  let hi = words.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if ((await countTokens(text(mid))) >= n) hi = mid;
    else lo = mid + 1;
  }
  const whole = text(lo);
  if ((await countTokens(whole)) === n) return whole;
  const shorter = text(lo - 1);
  for (let len = shorter.length + 1; len < whole.length; len++) {
    const cut = whole.slice(0, len);
    if ((await countTokens(cut)) === n) return cut;
  }
  throw new Error(`no prefix of the benchmark prose has exactly ${n} tokens`);
}

// A prompt for wllama-only runs: llama-wgpu's tokenizer counts (same GGUF, same vocabulary).
export async function preparePrompt({ modelUrl, promptTokens }) {
  const pkg = await import("/pkg/index.js");
  const engine = await pkg.createWorkerEngine({ model: modelUrl, cache: false });
  try {
    return await buildPrompt((t) => engine.countTokens(t), promptTokens);
  } finally {
    await engine.unload().catch(() => {});
  }
}

async function drain(iterator, onFirst) {
  let text = "";
  let first = true;
  for await (const piece of iterator) {
    if (first) {
      onFirst?.();
      first = false;
    }
    text += piece;
  }
  return text;
}

// What llama-wgpu's default device ("auto") chooses in this browser, for the first model.
export async function autoChoice({ modelUrl }) {
  const pkg = await import("/pkg/index.js");
  const engine = await pkg.createWorkerEngine({ model: modelUrl, cache: false });
  try {
    const s = engine.stats();
    return { device: s.device, device_reason: s.deviceReason, adapter: s.adapter };
  } finally {
    await engine.unload().catch(() => {});
  }
}

// llama-wgpu's worker engine on `device` ("gpu" or "cpu"), with `threads` when given (the CPU
// engine's pool; its default is every core). `cache`: whether the model goes through the Cache
// API; with `clearCache` the entry is deleted first, so each run is a first visit (download,
// store, load).
export async function runOurs({ modelUrl, promptText, promptTokens, genTokens, refTokens, cache, clearCache, device, threads }) {
  const env = await environment();
  const pkg = await import("/pkg/index.js");
  if (cache && clearCache) await pkg.deleteCachedModel(modelUrl);
  // Seconds from the call at which each phase ("download", "load", "compile") was first and last reported.
  const phases = {};
  const t0 = now();
  const engine = await pkg.createWorkerEngine({
    model: modelUrl,
    cache,
    device,
    ...(threads !== undefined && threads !== null ? { threads } : {}),
    onProgress: ({ phase }) => {
      const t = (now() - t0) / 1000;
      phases[phase] ??= { first_s: t, last_s: t };
      phases[phase].last_s = t;
    },
  });
  const loadS = (now() - t0) / 1000;
  try {
    const loaded = engine.stats();
    if (!promptText) promptText = await buildPrompt((t) => engine.countTokens(t), promptTokens);
    const counted = await engine.countTokens(promptText);
    if (counted !== promptTokens) throw new Error(`the prompt has ${counted} tokens, not ${promptTokens}`);

    let firstAt = null;
    const g0 = now();
    const benchText = await drain(
      engine.generate(promptText, { maxTokens: genTokens, temperature: 0, ignoreEos: true }),
      () => (firstAt = now()),
    );
    const s = engine.stats();
    if (s.promptTokens !== promptTokens || s.cachedPromptTokens !== 0 || s.completionTokens !== genTokens) {
      throw new Error(
        `ran ${s.promptTokens} prompt tokens (${s.cachedPromptTokens} cached) and ${s.completionTokens} generated; ` +
          `wanted ${promptTokens} and ${genTokens}`,
      );
    }

    let text = null;
    if (refTokens > 0) {
      await engine.resetChat();
      text = await drain(engine.generate(REFERENCE_PROMPT, { maxTokens: refTokens, temperature: 0 }));
    }
    return {
      env,
      promptText,
      load_s: loadS,
      load_s_engine: loaded.loadSeconds,
      load_phases: phases,
      prefill_tokens_per_s: s.prefillTokensPerS,
      decode_tokens_per_s: s.decodeTokensPerS,
      encode_us_per_token: s.encodeUsPerToken ?? null,
      compile_s: loaded.compileSeconds ?? null,
      ttft_s: s.timeToFirstTokenS,
      ttft_wall_s: firstAt === null ? null : (firstAt - g0) / 1000,
      prompt_tokens: s.promptTokens,
      completion_tokens: s.completionTokens,
      bench_text_head: benchText.slice(0, 120),
      text,
      info: {
        device: loaded.device,
        deviceReason: loaded.deviceReason,
        adapter: loaded.adapter,
        requested_threads: threads ?? null,
        features: loaded.features,
        gpuBytes: loaded.gpuBytes,
        cpuBytes: loaded.cpuBytes,
        contextLength: loaded.contextLength,
        model: { name: loaded.model?.name, tensorTypes: loaded.model?.tensorTypes },
      },
    };
  } finally {
    await engine.unload().catch(() => {});
  }
}

// wllama (llama.cpp compiled to wasm): the same URL through loadModelFromUrl, the same prompt text,
// greedy, ignore_eos. Figures come from llama.cpp's own timings (the server's prompt_ms and
// predicted_ms), so they count engine time the way llama-wgpu's stats do.
export async function runWllama({ modelUrl, promptText, promptTokens, genTokens, refTokens, nThreads, useCache, clearCache }) {
  const env = await environment();
  if (!env.crossOriginIsolated) throw new Error("the page is not cross-origin isolated: wllama would run single-threaded");
  const { Wllama } = await import("/wllama/index.js");
  const logs = [];
  const keep = (level) => (...args) => {
    const line = args.map((a) => (typeof a === "string" ? a : JSON.stringify(a))).join(" ");
    logs.push(`[${level}] ${line}`);
  };
  const logger = { debug: keep("debug"), log: keep("log"), warn: keep("warn"), error: keep("error") };
  const wllama = new Wllama({ default: "/wllama/wasm/wllama.wasm" }, { logger });
  if (clearCache) await wllama.cacheManager.clear();
  const threads = nThreads ?? navigator.hardwareConcurrency;
  const nCtx = Math.max(256, Math.ceil((promptTokens + genTokens + refTokens + 16) / 256) * 256);
  const t0 = now();
  await wllama.loadModelFromUrl(modelUrl, { n_threads: threads, n_ctx: nCtx, useCache });
  const loadS = (now() - t0) / 1000;
  try {
    const info = {
      multithread: wllama.isMultithread(),
      threads: wllama.getNumThreads(),
      requested_threads: threads,
      n_ctx: nCtx,
      libllama: typeof Wllama.getLibllamaVersion === "function" ? Wllama.getLibllamaVersion() : null,
      isSupportWebGPU: wllama.isSupportWebGPU(),
    };

    let firstAt = null;
    let last = null;
    let benchText = "";
    const g0 = now();
    await wllama.createCompletion({
      prompt: promptText,
      max_tokens: genTokens,
      temperature: 0,
      ignore_eos: true,
      cache_prompt: false,
      stream: true,
      onData: (chunk) => {
        const piece = chunk.choices?.[0]?.text ?? "";
        if (piece && firstAt === null) firstAt = now();
        benchText += piece;
        if (chunk.timings) last = chunk;
      },
    });
    const t = last?.timings;
    if (!t) throw new Error("wllama returned no timings");
    if (t.prompt_n !== promptTokens || t.predicted_n !== genTokens) {
      throw new Error(`wllama ran ${t.prompt_n} prompt tokens and generated ${t.predicted_n}; wanted ${promptTokens} and ${genTokens}`);
    }

    let text = null;
    if (refTokens > 0) {
      const reply = await wllama.createCompletion({
        prompt: "Once upon a time",
        max_tokens: refTokens,
        temperature: 0,
        cache_prompt: false,
      });
      text = reply.choices[0].text;
    }
    // wllama's WebGPU backend needs shader-f16.
    info.adapter_shader_f16 = env.adapter ? env.adapter.shaderF16 : null;
    // Where llama.cpp put the weights, from its load log ("CPU model buffer size", "WebGPU model buffer size").
    const buffers = logs.map((l) => /(\S+) model buffer size\s*=\s*([\d.]+ \w+)/.exec(l)).filter(Boolean);
    info.model_buffers = buffers.map((m) => `${m[1]} ${m[2]}`);
    info.backend = buffers.length && buffers.every((m) => m[1] === "CPU") ? "CPU" : buffers.map((m) => m[1]).join("+") || "unknown";
    const interesting = logs.filter((l) => /webgpu|gpu|f16|thread|backend|device|cpu|simd|offload/i.test(l));
    return {
      env,
      load_s: loadS,
      // llama.cpp's server: prompt_ms runs from the start of the prompt to the first sampled token;
      // predicted_ms from that token to the last, so it covers predicted_n - 1 decode steps.
      prefill_tokens_per_s: t.prompt_n / (t.prompt_ms / 1000),
      decode_tokens_per_s: (t.predicted_n - 1) / (t.predicted_ms / 1000),
      decode_tokens_per_s_reported: t.predicted_per_second,
      ttft_s: t.prompt_ms / 1000,
      ttft_wall_s: firstAt === null ? null : (firstAt - g0) / 1000,
      prompt_tokens: t.prompt_n,
      completion_tokens: t.predicted_n,
      timings: t,
      bench_text_head: benchText.slice(0, 120),
      text,
      info,
      log_excerpt: interesting.slice(0, 40),
    };
  } finally {
    await wllama.exit().catch(() => {});
  }
}

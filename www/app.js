// The llama-wgpu chat demo: plain ES modules, no build step. It uses the package exactly as an app
// would, from /pkg/index.js (the built package, served by www/serve.mjs).
//
// Query parameters: ?autoload=default loads the default model at once; ?model=<url> loads that URL;
// ?mode=completion opens the completion tab; ?worker=0 runs the engine on the main thread
// (createEngine) instead of a worker; ?cache=0 turns the download cache off; ?ctx=N sets the
// context length; ?device=gpu|cpu|auto picks where the model runs (default auto: the GPU when
// there is a hardware one, else the CPU engine).
//
// For tests: <body data-state="idle|loading|ready|generating">, data-loads and data-generations
// count finished loads (successful or not) and generations; window.__demo exposes the engine and
// the progress events seen.

import { renderCachedModels } from "./cached-models.js";
import { initMarkdown, renderMarkdown } from "./markdown.js";
import { modelInfoRows } from "./model-info.js";
import { responseFormat } from "./response-format.js";
import { DEMO_TOOLS, chatTurn, toolCallNotes } from "./tools.js";

const DEFAULT_MODEL_URL = new URL("/models/default.gguf", location.href).href;
const PHASES = { download: "Downloading", load: "Loading weights", compile: "Preparing the engine" };

const $ = (id) => document.querySelector(`[data-testid="${id}"]`);
const ui = {
  status: $("status"),
  sources: [...document.querySelectorAll('input[name="source"]')],
  modelUrl: $("model-url"),
  modelFile: $("model-file"),
  useCache: $("use-cache"),
  load: $("load-button"),
  cancelLoad: $("cancel-load-button"),
  unload: $("unload-button"),
  progressBox: $("progress-box"),
  progress: $("progress"),
  progressLabel: $("progress-label"),
  modelInfo: $("model-info"),
  temperature: $("temperature"),
  topP: $("top-p"),
  maxTokens: $("max-tokens"),
  jsonOutput: $("json-output"),
  useTools: $("use-tools"),
  jsonSchema: $("json-schema"),
  seed: $("seed"),
  cachedList: $("cached-list"),
  cachedEmpty: $("cached-empty"),
  cacheRefresh: $("cache-refresh"),
  errorBox: $("error-box"),
  errorCode: $("error-code"),
  errorMessage: $("error-message"),
  errorDismiss: $("error-dismiss"),
  tabs: [...document.querySelectorAll("[data-mode]")],
  chatView: $("chat-view"),
  completionView: $("completion-view"),
  systemPrompt: $("system-prompt"),
  messages: $("messages"),
  chatForm: $("chat-form"),
  chatInput: $("chat-input"),
  send: $("send-button"),
  stop: $("stop-button"),
  clear: $("clear-button"),
  completionPrompt: $("completion-prompt"),
  completionGenerate: $("completion-generate"),
  completionStop: $("completion-stop"),
  completionEcho: $("completion-prompt-echo"),
  completionOutput: $("completion-output"),
  stats: $("stats"),
  statPrefill: $("stat-prefill"),
  statDecode: $("stat-decode"),
  statTtft: $("stat-ttft"),
  statTokens: $("stat-tokens"),
};

const params = new URLSearchParams(location.search);
const demo = {
  engine: null,
  progress: [], // every progress event: {phase, loaded, total}
  pkg: null,
};
window.__demo = demo;

let pkg = null;
let engine = null;
let loadController = null;
let genController = null;
let history = []; // the conversation without the system prompt: [{role, content}]
let loadedSource = null;

// ---------------------------------------------------------------- small helpers

function setState(state) {
  document.body.dataset.state = state;
  const busy = state === "loading" || state === "generating";
  const ready = state === "ready";
  ui.load.disabled = busy;
  ui.cancelLoad.hidden = state !== "loading";
  ui.unload.disabled = !engine || busy;
  ui.send.disabled = !ready;
  ui.completionGenerate.disabled = !ready;
  ui.stop.hidden = !(state === "generating" && genController?.mode === "chat");
  ui.completionStop.hidden = !(state === "generating" && genController?.mode === "completion");
  ui.clear.disabled = busy;
}

function bump(counter) {
  document.body.dataset[counter] = String(Number(document.body.dataset[counter] || 0) + 1);
}

function setStatus(text) {
  ui.status.textContent = text;
}

function mb(bytes) {
  return (bytes / 1e6).toFixed(1);
}

function isAbort(err) {
  return err?.code === "ABORTED" || err?.name === "AbortError";
}

function showError(err) {
  const code = err?.code || (isAbort(err) ? "ABORTED" : err?.name || "ERROR");
  ui.errorCode.textContent = code;
  ui.errorMessage.textContent = err?.message || String(err);
  ui.errorBox.dataset.code = code;
  ui.errorBox.hidden = false;
  console.warn(`[demo] ${code}:`, err);
}

function clearError() {
  ui.errorBox.hidden = true;
  ui.errorCode.textContent = "";
  ui.errorMessage.textContent = "";
  delete ui.errorBox.dataset.code;
}

function numberFrom(input, fallback, { integer = false } = {}) {
  if (input.value.trim() === "") return fallback;
  const n = Number(input.value);
  if (!Number.isFinite(n)) return fallback;
  return integer ? Math.trunc(n) : n;
}

function sampling() {
  return {
    temperature: Math.max(0, numberFrom(ui.temperature, 0.7)),
    topP: Math.min(1, Math.max(0, numberFrom(ui.topP, 0.9))),
    maxTokens: Math.max(1, numberFrom(ui.maxTokens, 256, { integer: true })),
    seed: numberFrom(ui.seed, undefined, { integer: true }),
    responseFormat: responseFormat(ui.jsonOutput.checked, ui.jsonSchema.value),
    tools: ui.useTools.checked ? DEMO_TOOLS : undefined,
  };
}

// The settings, or null once the error box says why they cannot be used.
function settingsOrShowError() {
  try {
    return sampling();
  } catch (err) {
    showError(err);
    return null;
  }
}

// ---------------------------------------------------------------- loading

function sourceKind() {
  return ui.sources.find((r) => r.checked)?.value || "default";
}

function selectSource(kind) {
  for (const r of ui.sources) r.checked = r.value === kind;
}

function onProgress(event) {
  if (event?.cacheError) return console.warn(`[demo] ${event.cacheError}`);
  const { phase, loaded = 0, total = 0 } = event || {};
  demo.progress.push({ phase, loaded, total });
  ui.progressBox.hidden = false;
  ui.progressBox.dataset.phase = phase;
  if (total > 0) {
    ui.progress.max = 1;
    ui.progress.value = Math.min(1, loaded / total);
  } else {
    ui.progress.removeAttribute("value"); // indeterminate
  }
  const name = PHASES[phase] || phase;
  let amount;
  if (phase === "compile") amount = total > 0 ? `${loaded} / ${total}` : `${loaded}`;
  else amount = total > 0 ? `${mb(loaded)} / ${mb(total)} MB` : `${mb(loaded)} MB`;
  ui.progressLabel.textContent = `${name}: ${amount}`;
}

async function unloadEngine() {
  const old = engine;
  engine = null;
  demo.engine = null;
  loadedSource = null;
  ui.modelInfo.hidden = true;
  ui.modelInfo.replaceChildren();
  if (old) {
    try {
      await old.unload();
    } catch (err) {
      console.warn("[demo] unload:", err);
    }
  }
}

async function load(kind = sourceKind()) {
  let model;
  let label;
  if (kind === "default") {
    model = DEFAULT_MODEL_URL;
    label = "SmolLM2-135M-Instruct Q4_1";
  } else if (kind === "url") {
    const text = ui.modelUrl.value.trim();
    if (!text) {
      showError(Object.assign(new Error("Type the URL of a .gguf file first."), { code: "NO_MODEL" }));
      return;
    }
    model = new URL(text, location.href).href;
    label = model;
  } else {
    const file = ui.modelFile.files?.[0];
    if (!file) {
      showError(Object.assign(new Error("Pick a local .gguf file first."), { code: "NO_MODEL" }));
      return;
    }
    model = file;
    label = file.name;
  }

  clearError();
  await unloadEngine();
  loadController = new AbortController();
  demo.progress.length = 0;
  ui.progress.value = 0;
  ui.progressLabel.textContent = "Starting…";
  ui.progressBox.hidden = false;
  delete ui.progressBox.dataset.phase;
  setState("loading");
  setStatus(`Loading ${label}…`);

  const create = params.get("worker") === "0" ? pkg.createEngine : pkg.createWorkerEngine;
  const options = { model, onProgress, cache: ui.useCache.checked, signal: loadController.signal };
  const ctx = Number(params.get("ctx"));
  if (Number.isInteger(ctx) && ctx > 0) options.contextLength = ctx;
  if (params.get("device")) options.device = params.get("device");

  try {
    engine = await create(options);
    demo.engine = engine;
    loadedSource = label;
    ui.progressBox.hidden = true;
    setState("ready");
    setStatus(`Ready: ${label}`);
    await showModelInfo();
    document.body.dataset.lastLoad = "ok";
  } catch (err) {
    engine = null;
    demo.engine = null;
    ui.progressBox.hidden = true;
    setState("idle");
    setStatus(isAbort(err) ? "Loading cancelled" : "No model loaded");
    if (!isAbort(err)) showError(err);
    document.body.dataset.lastLoad = isAbort(err) ? "aborted" : "error";
  } finally {
    loadController = null;
    bump("loads");
    refreshCached();
  }
}

async function showModelInfo() {
  let stats = {};
  try {
    stats = (await engine.stats()) || {};
  } catch (err) {
    console.warn("[demo] stats:", err);
  }
  ui.modelInfo.replaceChildren(
    ...modelInfoRows(stats, loadedSource).flatMap(({ label, value, title, testid }) => {
      const dt = document.createElement("dt");
      dt.textContent = label;
      const dd = document.createElement("dd");
      dd.textContent = value;
      if (title) dd.title = title;
      if (testid) dd.dataset.testid = testid;
      return [dt, dd];
    }),
  );
  ui.modelInfo.hidden = false;
}

// ---------------------------------------------------------------- cached models

async function refreshCached() {
  if (!pkg?.listCachedModels) return;
  const onLoad = (url) => {
    const kind = url === DEFAULT_MODEL_URL ? "default" : "url";
    if (kind === "url") ui.modelUrl.value = url;
    selectSource(kind);
    load(kind);
  };
  await renderCachedModels(pkg, { list: ui.cachedList, empty: ui.cachedEmpty, onLoad, onChange: refreshCached, onError: showError });
}

// ---------------------------------------------------------------- chat

function addBubble(role, text) {
  const div = document.createElement("div");
  div.className = `msg ${role}`;
  div.dataset.testid = `msg-${role}`;
  const body = document.createElement("div");
  body.className = "msg-text";
  body.textContent = text;
  div.append(body);
  ui.messages.append(div);
  scrollMessages();
  return div;
}

function scrollMessages() {
  ui.messages.scrollTop = ui.messages.scrollHeight;
}

async function sendChat() {
  const text = ui.chatInput.value.trim();
  if (!text || !engine || document.body.dataset.state !== "ready") return;
  clearError();
  const s = settingsOrShowError();
  if (!s) return;
  ui.chatInput.value = "";
  const turnStart = history.length; // a failed or empty turn is dropped from here on
  history.push({ role: "user", content: text });
  const userBubble = addBubble("user", text);
  const bubble = addBubble("assistant", "");
  const bubbleText = bubble.querySelector(".msg-text");
  bubble.classList.add("pending");
  bubble.dataset.chunks = "0";

  const messages = [];
  const system = ui.systemPrompt.value.trim();
  if (system) messages.push({ role: "system", content: system });
  messages.push(...history);

  genController = new AbortController();
  genController.mode = "chat";
  setState("generating");
  let content = "";
  let usage = null;
  try {
    const request = {
      messages,
      stream: true,
      max_tokens: s.maxTokens,
      temperature: s.temperature,
      top_p: s.topP,
      signal: genController.signal,
    };
    if (s.seed !== undefined) request.seed = s.seed;
    if (s.responseFormat) request.response_format = s.responseFormat;
    if (s.tools) request.tools = s.tools;
    const { added } = await chatTurn(engine, request, {
      onText(text) {
        content += text;
        // JSON held to a schema is shown as it is; free replies as (sanitised) markdown.
        if (s.responseFormat) bubbleText.textContent = content;
        else renderMarkdown(bubbleText, content);
        bubble.dataset.chunks = String(Number(bubble.dataset.chunks) + 1);
        scrollMessages();
      },
      onUsage: (u) => (usage = u),
      onFinish: (finish) => (bubble.dataset.finish = finish),
      // The calls and results go above the text the model then writes from them.
      onToolCalls(calls, results) {
        for (const note of toolCallNotes(calls, results)) bubble.insertBefore(note, bubbleText);
        content = "";
      },
    });
    history.push(...added);
    history.push({ role: "assistant", content });
    bubble.dataset.done = "true";
  } catch (err) {
    if (isAbort(err)) {
      bubble.dataset.stopped = "true";
      const note = document.createElement("div");
      note.className = "msg-note";
      note.textContent = "stopped";
      bubble.append(note);
      // Keep what was shown as the assistant's turn; a turn with nothing in it is dropped.
      if (content) history.push({ role: "assistant", content });
      else {
        history.length = turnStart;
        userBubble.classList.add("unsent");
      }
    } else {
      showError(err);
      bubble.classList.add("failed");
      bubble.dataset.failed = "true";
      history.length = turnStart;
      userBubble.classList.add("unsent");
    }
  } finally {
    bubble.classList.remove("pending");
    genController = null;
    afterGeneration(usage);
  }
}

async function clearChat() {
  history = [];
  ui.messages.replaceChildren();
  ui.stats.hidden = true;
  if (engine) {
    try {
      await engine.resetChat();
    } catch (err) {
      showError(err);
    }
  }
}

// ---------------------------------------------------------------- completion

async function complete() {
  if (!engine || document.body.dataset.state !== "ready") return;
  clearError();
  const prompt = ui.completionPrompt.value;
  const s = settingsOrShowError();
  if (!s) return;
  ui.completionEcho.textContent = prompt;
  ui.completionOutput.textContent = "";
  const out = ui.completionOutput;
  delete out.dataset.done;
  delete out.dataset.stopped;
  out.dataset.chunks = "0";
  genController = new AbortController();
  genController.mode = "completion";
  setState("generating");
  let text = "";
  try {
    const options = {
      maxTokens: s.maxTokens,
      temperature: s.temperature,
      topP: s.topP,
      signal: genController.signal,
    };
    if (s.seed !== undefined) options.seed = s.seed;
    if (s.responseFormat) options.responseFormat = s.responseFormat;
    for await (const piece of engine.generate(prompt, options)) {
      text += piece;
      out.textContent = text;
      out.dataset.chunks = String(Number(out.dataset.chunks) + 1);
    }
    out.dataset.done = "true";
  } catch (err) {
    if (isAbort(err)) out.dataset.stopped = "true";
    else showError(err);
  } finally {
    genController = null;
    afterGeneration(null);
  }
}

// ---------------------------------------------------------------- after a generation

async function afterGeneration(usage) {
  const lost = ui.errorBox.dataset.code === "DEVICE_LOST";
  if (lost) {
    await unloadEngine();
    setStatus("The GPU device was lost: load the model again.");
  }
  setState(engine ? "ready" : "idle");
  if (engine) await showStats(usage);
  bump("generations");
}

function fmt(value, digits, unit) {
  return Number.isFinite(value) ? `${value.toFixed(digits)}${unit}` : "–";
}

async function showStats(usage) {
  let stats = {};
  try {
    stats = (await engine.stats()) || {};
  } catch (err) {
    console.warn("[demo] stats:", err);
    return;
  }
  const prompt = stats.promptTokens ?? usage?.prompt_tokens;
  const completion = stats.completionTokens ?? usage?.completion_tokens;
  ui.statPrefill.textContent = fmt(stats.prefillTokensPerS, 1, " tok/s");
  ui.statDecode.textContent = fmt(stats.decodeTokensPerS, 1, " tok/s");
  const ttft = stats.timeToFirstTokenS;
  ui.statTtft.textContent = Number.isFinite(ttft)
    ? ttft < 1
      ? `${Math.round(ttft * 1000)} ms`
      : `${ttft.toFixed(2)} s`
    : "–";
  ui.statTokens.textContent =
    prompt !== undefined || completion !== undefined ? `${prompt ?? "?"} in, ${completion ?? "?"} out` : "–";
  ui.stats.hidden = false;
  ui.stats.dataset.updated = String(Number(ui.stats.dataset.updated || 0) + 1);
}

// ---------------------------------------------------------------- wiring

function setMode(mode) {
  for (const tab of ui.tabs) tab.setAttribute("aria-selected", String(tab.dataset.mode === mode));
  ui.chatView.hidden = mode !== "chat";
  ui.completionView.hidden = mode !== "completion";
  document.body.dataset.mode = mode;
}

function wire() {
  ui.load.addEventListener("click", () => load());
  ui.cancelLoad.addEventListener("click", () => loadController?.abort());
  ui.unload.addEventListener("click", async () => {
    await unloadEngine();
    setState("idle");
    setStatus("No model loaded");
  });
  ui.modelUrl.addEventListener("input", () => selectSource("url"));
  ui.modelUrl.addEventListener("keydown", (e) => {
    if (e.key === "Enter") {
      selectSource("url");
      load("url");
    }
  });
  ui.modelFile.addEventListener("change", () => {
    if (ui.modelFile.files?.length) selectSource("file");
  });
  ui.cacheRefresh.addEventListener("click", refreshCached);
  ui.jsonOutput.addEventListener("change", () => {
    ui.jsonSchema.hidden = !ui.jsonOutput.checked;
  });
  ui.errorDismiss.addEventListener("click", clearError);
  for (const tab of ui.tabs) tab.addEventListener("click", () => setMode(tab.dataset.mode));

  ui.chatForm.addEventListener("submit", (e) => {
    e.preventDefault();
    sendChat();
  });
  ui.chatInput.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      sendChat();
    }
  });
  ui.stop.addEventListener("click", () => genController?.abort());
  ui.completionStop.addEventListener("click", () => genController?.abort());
  ui.clear.addEventListener("click", clearChat);
  ui.completionGenerate.addEventListener("click", complete);
  ui.completionPrompt.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      complete();
    }
  });
}

async function start() {
  wire();
  initMarkdown(); // replies are plain text until (unless) the libraries arrive
  setMode(params.get("mode") === "completion" ? "completion" : "chat");
  if (params.get("cache") === "0") ui.useCache.checked = false;
  setState("idle");
  try {
    pkg = await import("/pkg/index.js");
    demo.pkg = pkg;
  } catch (err) {
    ui.load.disabled = true;
    showError(Object.assign(new Error(`Could not import /pkg/index.js (run ./build.sh build): ${err?.message || err}`), { code: "PACKAGE_MISSING" }));
    document.body.dataset.state = "broken";
    return;
  }
  await refreshCached();
  const url = params.get("model");
  if (url) {
    ui.modelUrl.value = url;
    selectSource("url");
    load("url");
  } else if (params.get("autoload") === "default") {
    selectSource("default");
    load("default");
  }
}

start();

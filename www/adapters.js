// The LoRA adapter picker: an adapter GGUF (llama.cpp's format) for the chat's model, by URL or
// local file, applied at the slider's scale. Changing the scale switches at once (no reload);
// "Remove" frees it. The chat's engine is app.js's (window.__demo.engine); loading another model
// drops its adapters with it.
//
// For tests: the panel's data-state is "idle", "loading", "active" or "error".

const $ = (id) => document.querySelector(`[data-testid="${id}"]`);
const ui = {
  panel: $("adapter-panel"),
  url: $("adapter-url"),
  file: $("adapter-file"),
  scale: $("adapter-scale"),
  scaleValue: $("adapter-scale-value"),
  load: $("adapter-load"),
  remove: $("adapter-remove"),
  status: $("adapter-status"),
};

let current = null; // { engine, adapter }

function setState(state, message) {
  ui.panel.dataset.state = state;
  ui.status.textContent = message;
  ui.load.disabled = state === "loading";
  ui.remove.disabled = state !== "active";
}

const failed = (error) => setState(current ? "active" : "error", `${error?.code ?? "ERROR"}: ${error?.message ?? error}`);

function engine() {
  const e = window.__demo?.engine;
  if (current && current.engine !== e) current = null; // the model was replaced
  return e;
}

function describe(adapter, scale) {
  const name = adapter.name ?? "adapter";
  return `${name}: rank ${adapter.rank}, ${adapter.tensors} weights, scale ${scale}`;
}

async function load() {
  const chat = engine();
  if (!chat) return setState("error", "Load a model first.");
  const source = ui.file.files[0] ?? ui.url.value.trim();
  if (!source) return setState("error", "Give an adapter's URL or file.");
  setState("loading", "Loading the adapter…");
  try {
    if (current) await chat.unloadAdapter(current.adapter);
    current = null;
    const scale = Number(ui.scale.value);
    const adapter = await chat.loadAdapter(source, { scale });
    current = { engine: chat, adapter };
    setState("active", describe(adapter, scale));
  } catch (error) {
    failed(error);
  }
}

async function rescale() {
  const scale = Number(ui.scale.value);
  ui.scaleValue.textContent = scale.toFixed(2);
  if (!current || engine() !== current.engine) return;
  try {
    await current.engine.setAdapters([{ adapter: current.adapter, scale }]);
    setState("active", describe(current.adapter, scale));
  } catch (error) {
    failed(error);
  }
}

async function remove() {
  if (!current) return;
  try {
    await current.engine.unloadAdapter(current.adapter);
    current = null;
    setState("idle", "No adapter.");
  } catch (error) {
    failed(error);
  }
}

ui.load.addEventListener("click", load);
ui.remove.addEventListener("click", remove);
ui.scale.addEventListener("change", rescale);
ui.scale.addEventListener("input", () => (ui.scaleValue.textContent = Number(ui.scale.value).toFixed(2)));
setState("idle", "No adapter.");

// The demo's model panel: what engine.stats() says about the loaded model and where it runs, as
// rows of a <dl>. Plain functions, no state (app.js renders them).

function mb(bytes) {
  return `${(bytes / 1e6).toFixed(1)} MB`;
}

// The reason without its details: "no hardware GPU (the adapter is …)" -> "no hardware GPU",
// "hardware GPU: …" -> "hardware GPU".
function shortReason(reason) {
  return String(reason ?? "").split(/ \(|: /)[0].trim();
}

// "CPU (simd128, 1 thread) — no hardware GPU", "GPU (<adapter>) — hardware GPU".
export function describeEngine(stats) {
  const adapter = typeof stats.adapter === "string" ? stats.adapter.trim() : "";
  const why = shortReason(stats.deviceReason);
  let what;
  if (stats.device === "cpu") {
    // The CPU engine describes itself as "CPU engine (simd128, 1 thread)".
    const detail = /\(([^()]*)\)\s*$/.exec(adapter)?.[1] ?? adapter;
    what = detail ? `CPU (${detail})` : "CPU";
  } else if (stats.device === "gpu") {
    what = adapter ? `GPU (${adapter})` : "GPU";
  } else {
    what = adapter || String(stats.device ?? "unknown");
  }
  return why ? `${what} — ${why}` : what;
}

// [{label, value, title?, testid?}] for the model panel.
export function modelInfoRows(stats, source) {
  const m = stats.model || {};
  const rows = [{ label: "Source", value: source }];
  if (stats.device || stats.adapter) {
    rows.push({ label: "Engine", value: describeEngine(stats), title: stats.deviceReason || undefined, testid: "model-engine" });
  }
  if (m.name) rows.push({ label: "Model", value: m.name });
  if (m.architecture) rows.push({ label: "Architecture", value: m.architecture });
  if (Number.isFinite(m.nParams)) rows.push({ label: "Parameters", value: `${(m.nParams / 1e6).toFixed(0)} M` });
  if (Array.isArray(m.tensorTypes) && m.tensorTypes.length) rows.push({ label: "Weights", value: m.tensorTypes.join(", ") });
  if (m.chatTemplate) rows.push({ label: "Chat format", value: m.chatTemplate });
  const ctxUsed = m.contextLengthUsed ?? stats.contextLength;
  if (Number.isFinite(ctxUsed)) {
    const value = Number.isFinite(m.contextLength) ? `${ctxUsed} of ${m.contextLength} tokens` : `${ctxUsed} tokens`;
    rows.push({ label: "Context", value });
  }
  const gpuBytes = stats.gpuBytes ?? m.gpuBytes;
  const cpuBytes = stats.cpuBytes ?? m.cpuBytes;
  if (Number.isFinite(gpuBytes) && (gpuBytes > 0 || stats.device !== "cpu")) rows.push({ label: "GPU memory", value: mb(gpuBytes) });
  if (Number.isFinite(cpuBytes) && cpuBytes > 0) rows.push({ label: "Wasm memory", value: mb(cpuBytes) });
  if (stats.device !== "cpu" && stats.features) {
    const on = Object.entries(stats.features).filter(([, v]) => v).map(([k]) => k);
    rows.push({ label: "GPU features", value: on.length ? on.join(", ") : "none" });
  }
  if (Number.isFinite(stats.loadSeconds)) rows.push({ label: "Load time", value: `${stats.loadSeconds.toFixed(1)} s` });
  return rows;
}

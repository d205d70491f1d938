#!/usr/bin/env node
// The benchmark cannot rot silently: `./build.sh bench --quick` (run by `./build.sh test`) ends
// here, and every engine and model must have produced positive figures and some greedy text,
// natively and in the browser, on the device its row names. No timing is judged, only that each
// figure exists.
//
//   node bench/check-results.mjs DIR/results.json

import fs from "node:fs";

const file = process.argv[2];
const r = JSON.parse(fs.readFileSync(file, "utf8"));
const problems = [];
const positive = (where, v) => {
  if (!(typeof v === "number" && v > 0 && Number.isFinite(v))) problems.push(`${where} is ${v}`);
};
const median = (x) => (typeof x === "object" && x !== null ? x.median : x);

// Browser rows: llama-wgpu on WebGPU (ours) and on its CPU engine (ours_cpu), wllama with the CPU
// engine's threads (wllama_matched) and with all of them (wllama, unless recorded as skipped
// because that is the same count), each on every model.
const wllamaSkipped = (r.browser?.skipped ?? []).some((s) => s.engine === "wllama");
const browserEngines = ["ours", "ours_cpu", "wllama_matched", ...(wllamaSkipped ? [] : ["wllama"])];
const modelLabels = Object.keys(r.browser?.models ?? {});
if (!modelLabels.length) problems.push("browser: no models");
for (const engine of browserEngines) {
  const models = r.browser?.engines?.[engine];
  if (!models || !Object.keys(models).length) {
    problems.push(`browser: no figures from ${engine}`);
    continue;
  }
  for (const label of modelLabels) if (!models[label]) problems.push(`browser ${engine}: no figures for ${label}`);
  for (const [model, f] of Object.entries(models)) {
    for (const key of ["load_s", "prefill_tokens_per_s", "decode_tokens_per_s", "ttft_s"]) {
      positive(`browser ${engine} ${model} ${key}`, median(f[key]));
    }
    if (typeof f.text !== "string" || !f.text.trim()) problems.push(`browser ${engine} ${model}: no greedy text`);
    const want = { ours: "gpu", ours_cpu: "cpu" }[engine];
    if (want && f.info?.device !== want) problems.push(`browser ${engine} ${model}: ran on ${f.info?.device}, not ${want}`);
  }
}
positive("browser cpu_engine threads", r.browser?.cpu_engine?.threads);
const matched = Object.values(r.browser?.engines?.wllama_matched ?? {})[0]?.info?.threads;
if (matched !== r.browser?.cpu_engine?.threads) problems.push(`browser: wllama_matched ran ${matched} threads, the CPU engine ${r.browser?.cpu_engine?.threads}`);
if (!["gpu", "cpu"].includes(r.browser?.auto?.device) || !r.browser?.auto?.device_reason) {
  problems.push(`browser: the auto choice is not recorded (${JSON.stringify(r.browser?.auto)})`);
}
// Native, the default model: the GPU, the CPU engine and the f32 reference, each labelled by the
// device that actually ran.
for (const device of ["gpu", "cpu", "reference"]) {
  const n = r.native?.[device];
  if (!n) problems.push(`native ${device}: missing`);
  else {
    for (const key of ["prefill_tokens_per_s", "decode_tokens_per_s"]) positive(`native ${device} ${key}`, median(n[key]));
    if (n.device !== device) problems.push(`native ${device}: the run says it ran on ${n.device}`);
  }
}
// The other architectures: the GPU and the CPU engine on each model.
if (!r.models?.length) problems.push("models: no runs of the other architectures");
for (const file of new Set((r.models || []).map((m) => m.file))) {
  for (const device of ["gpu", "cpu"]) {
    if (!r.models.some((m) => m.file === file && m.device === device)) problems.push(`${file}: no ${device} run`);
  }
}
for (const m of r.models || []) {
  for (const key of ["prefill_tokens_per_s", "decode_tokens_per_s"]) positive(`${m.file} on ${m.device} (${m.adapter}) ${key}`, median(m[key]));
}
positive("kernels copy_gbps", r.kernels?.copy_gbps);
if (!r.kernels?.matvec?.length) problems.push("kernels: no matvec rows");

if (problems.length) {
  console.error(`benchmark results incomplete (${file}):\n  ${problems.join("\n  ")}`);
  process.exit(1);
}
console.log(
  `benchmark results complete: ${modelLabels.length} model(s) x ${browserEngines.length} browser engines (${browserEngines.join(", ")}; ` +
    `auto chose ${r.browser.auto.device}), native GPU, CPU engine and f32 reference, ${r.models.length} other-architecture run(s), kernel table`,
);

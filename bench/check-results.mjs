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

// Browser rows: llama-wgpu on WebGPU (ours), on its CPU engine with its default threads (ours_cpu)
// and with one (ours_cpu_1), wllama with navigator.hardwareConcurrency threads (wllama) and with
// one (wllama_1), each on every model.
const browserEngines = ["ours", "ours_cpu", "ours_cpu_1", "wllama", "wllama_1"];
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
    const want = { ours: "gpu", ours_cpu: "cpu", ours_cpu_1: "cpu" }[engine];
    if (want && f.info?.device !== want) problems.push(`browser ${engine} ${model}: ran on ${f.info?.device}, not ${want}`);
    if (engine !== "ours") {
      const runs = f.threads_each_run ?? [];
      if (!runs.length || runs.some((t) => !(Number.isInteger(t) && t >= 1))) problems.push(`browser ${engine} ${model}: threads per run ${JSON.stringify(runs)}`);
      if (engine.endsWith("_1") && runs.some((t) => t !== 1)) problems.push(`browser ${engine} ${model}: ran ${runs.join(", ")} threads, not 1`);
    }
  }
}
// Thread counts: ours_cpu as many as wllama (both every core), ours_cpu_1 and wllama_1 one, on
// every model and run.
for (const label of modelLabels) {
  const runs = (engine) => r.browser?.engines?.[engine]?.[label]?.threads_each_run ?? [];
  const all = [...runs("ours_cpu"), ...runs("wllama")];
  if (!all.length || all.some((t) => t !== all[0])) {
    problems.push(`browser ${label}: ours_cpu ran ${runs("ours_cpu").join(", ")} threads, wllama ${runs("wllama").join(", ")}: not the same`);
  }
  for (const pair of ["ours/wllama", "ours_cpu/wllama", "ours_cpu_1/wllama_1"]) {
    const q = r.browser?.ratios?.[label]?.[pair];
    if (!q) problems.push(`browser ${label}: no ratio ${pair}`);
    else {
      for (const key of ["load_s", "prefill", "decode", "ttft"]) positive(`browser ${label} ratio ${pair} ${key}`, q[key]);
      if (pair !== "ours/wllama" && q.threads?.equal !== true) problems.push(`browser ${label} ${pair}: thread counts not recorded equal (${JSON.stringify(q.threads)})`);
    }
  }
}
const t = r.browser?.threads ?? {};
positive("browser threads ours_cpu", t.ours_cpu);
if (t.ours_cpu !== t.wllama) problems.push(`browser: ours_cpu ran ${t.ours_cpu} threads, wllama ${t.wllama}`);
if (t.ours_cpu_1 !== 1 || t.wllama_1 !== 1) problems.push(`browser: ours_cpu_1 ran ${t.ours_cpu_1} threads, wllama_1 ${t.wllama_1}; both should run 1`);
if (r.browser?.cpu_engine?.threads !== t.ours_cpu) problems.push(`browser: cpu_engine.threads ${r.browser?.cpu_engine?.threads}, ours_cpu ${t.ours_cpu}`);
if (r.browser?.errors?.length) problems.push(`browser: ${r.browser.errors.length} failed run(s): ${r.browser.errors.map((e) => `${e.engine} ${e.model}: ${e.error}`).join("; ")}`);
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
    positive(`native ${device} embeddings_per_s`, median(n.embeddings?.embeddings_per_s));
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
    `CPU threads ${t.ours_cpu} (ours_cpu) = ${t.wllama} (wllama), 1 = 1 (ours_cpu_1, wllama_1); auto chose ${r.browser.auto.device}), ` +
    `native GPU, CPU engine and f32 reference, ${r.models.length} other-architecture run(s), kernel table`,
);

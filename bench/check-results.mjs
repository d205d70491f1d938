#!/usr/bin/env node
// The benchmark cannot rot silently: `./build.sh bench --quick` (run by `./build.sh test`) ends
// here, and every engine and model must have produced positive figures and some greedy text,
// natively and in the browser. No timing is judged, only that each figure exists.
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

for (const engine of ["ours", "wllama"]) {
  const models = r.browser?.engines?.[engine];
  if (!models || !Object.keys(models).length) {
    problems.push(`browser: no figures from ${engine}`);
    continue;
  }
  for (const [model, f] of Object.entries(models)) {
    for (const key of ["load_s", "prefill_tokens_per_s", "decode_tokens_per_s", "ttft_s"]) {
      positive(`browser ${engine} ${model} ${key}`, median(f[key]));
    }
    if (typeof f.text !== "string" || !f.text.trim()) problems.push(`browser ${engine} ${model}: no greedy text`);
  }
}
for (const device of ["gpu", "cpu"]) {
  const n = r.native?.[device];
  if (!n) problems.push(`native ${device}: missing`);
  else for (const key of ["prefill_tokens_per_s", "decode_tokens_per_s"]) positive(`native ${device} ${key}`, median(n[key]));
}
if (!r.models?.length) problems.push("models: no runs of the other architectures");
for (const m of r.models || []) {
  for (const key of ["prefill_tokens_per_s", "decode_tokens_per_s"]) positive(`${m.file} on ${m.adapter} ${key}`, median(m[key]));
}
positive("kernels copy_gbps", r.kernels?.copy_gbps);
if (!r.kernels?.matvec?.length) problems.push("kernels: no matvec rows");

if (problems.length) {
  console.error(`benchmark results incomplete (${file}):\n  ${problems.join("\n  ")}`);
  process.exit(1);
}
console.log(`benchmark results complete: ${Object.keys(r.browser.engines.ours).length} model(s) x 2 browser engines, native GPU and CPU, ${r.models.length} other-architecture run(s), kernel table`);

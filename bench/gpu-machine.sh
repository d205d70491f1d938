#!/usr/bin/env bash
# The native benchmarks on a Linux x86-64 machine with a real NVIDIA GPU, through Vulkan, in
# under 10 minutes, printing one JSON summary on stdout (progress on stderr).
#
# That machine has no network, so everything it needs travels beside this script in
# bench/gpu-machine-bundle/, made here by `./build.sh gpu-bundle`:
#   llama-wgpu          the release binary built here (same architecture, x86-64)
#   model.header.gguf   the default model's header (metadata, tokenizer, tensor table; 1.8 MB):
#                       the 98 MB weights exceed what may travel (64 MiB), so `llama-wgpu synth`
#                       refills them there with random valid blocks of the same types and
#                       shapes. Speed is the real model's; the generated text is meaningless.
#   debs/*.deb          Debian's Vulkan loader (libvulkan1), unpacked with `dpkg -x` into a
#                       private folder when the machine has no libvulkan of its own.
# The NVIDIA driver's Vulkan ICD comes from the machine itself.
#
# Usage there: bash bench/gpu-machine.sh [BUNDLE_DIR] > summary.json
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bundle="${1:-$here/gpu-machine-bundle}"
bin="$bundle/llama-wgpu"
work="$(mktemp -d)"
say() { printf '[gpu-machine] %s\n' "$*" >&2; }
[ -x "$bin" ] || { say "missing $bin: run ./build.sh gpu-bundle on the build machine"; exit 1; }

if ! ldconfig -p 2>/dev/null | grep -q 'libvulkan.so.1'; then
  say "no Vulkan loader installed: unpacking the carried one"
  for deb in "$bundle"/debs/*.deb; do dpkg -x "$deb" "$work/root"; done
  export LD_LIBRARY_PATH="$work/root/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
fi
if [ -z "${VK_DRIVER_FILES:-}${VK_ICD_FILENAMES:-}" ]; then
  for icd in /usr/share/vulkan/icd.d/nvidia_icd.json /etc/vulkan/icd.d/nvidia_icd.json \
             /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json; do
    if [ -f "$icd" ]; then export VK_DRIVER_FILES="$icd"; break; fi
  done
fi
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$work}"

model="$work/model.gguf"
"$bin" synth --model "$bundle/model.header.gguf" --out "$model" >&2

say "kernel table"
timeout 180 "$bin" bench-kernels --json > "$work/kernels.json"
say "GPU decoder: 128-token prompt, 128 greedy tokens, 3 repeats"
timeout 240 "$bin" bench --model "$model" --device gpu --prompt-tokens 128 --gen-tokens 128 \
  --repeats 3 --context-length 1024 --json > "$work/native-gpu.json"
say "GPU decoder without each optional path, for their effect: 1 run of 128 + 128 tokens each"
variants=""
for flags in "--no-subgroups" "--no-f16" "--pipeline off"; do
  out="$(timeout 90 "$bin" bench --model "$model" --device gpu --prompt-tokens 128 --gen-tokens 128 \
    --repeats 1 --context-length 1024 --json $flags || echo '{}')"
  variants="$variants${variants:+,}\"$flags\":$out"
done
say "CPU reference (all cores), for scale: 128-token prompt, 32 tokens, 1 run"
timeout 120 "$bin" bench --model "$model" --device cpu --prompt-tokens 128 --gen-tokens 32 \
  --repeats 1 --context-length 1024 --json > "$work/native-cpu.json" || echo '{}' > "$work/native-cpu.json"

gpu_name="$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1 || true)"
cpu_name="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//' || true)"
printf '{"machine":{"gpu":"%s","cpu":"%s","cores":%s},"model":"SmolLM2-135M-Instruct Q4_1 shape, synthetic weights","native_gpu":%s,"native_gpu_without":{%s},"native_cpu":%s,"kernels":%s}\n' \
  "$gpu_name" "$cpu_name" "$(nproc)" "$(cat "$work/native-gpu.json")" "$variants" \
  "$(cat "$work/native-cpu.json")" "$(cat "$work/kernels.json")"
rm -rf "$work"

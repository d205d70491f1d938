#!/usr/bin/env bash
# Fetches llama.cpp's vocab-only test GGUFs (llama-spm, llama-bpe, gpt-2) into DEST, for
# tests/tokenizer_vectors.rs. They carry their models' licence terms, so the repository does not
# hold them; they come from PyPI's llama-cpp-python source package, which vendors llama.cpp with
# its models/ folder. Files already in DEST with the right sha256 are kept.
#
# Usage: tests/fetch-vocabs.sh DEST
set -euo pipefail

VERSION=0.3.36
NAMES=(llama-spm llama-bpe gpt-2)

expected_sha256() {
  case $1 in
    llama-spm) echo 16c3724582d59aa8bf84711894e833f916ee46a31d80e21312759c48bf8d0e69 ;;
    llama-bpe) echo 97272e430d53bc7688f52d5e0ad8ea8f163ede9f1bbd1694feaa504797d5d96e ;;
    gpt-2) echo cedc56ca6e2e89f63e781696d1fd76b4b1d49e6720dee86463e915f6e90016ac ;;
  esac
}

sha256_of() {
  if command -v sha256sum >/dev/null; then sha256sum "$1"; else shasum -a 256 "$1"; fi | cut -d' ' -f1
}

has_right_hash() {
  [ -f "$1" ] && [ "$(sha256_of "$1")" = "$2" ]
}

dest=${1:?usage: $0 DEST}
mkdir -p "$dest"

missing=()
for name in "${NAMES[@]}"; do
  has_right_hash "$dest/ggml-vocab-$name.gguf" "$(expected_sha256 "$name")" || missing+=("$name")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "vocabs: already in $dest"
  exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# --no-binary names only this package: with ":all:" pip would also build the sdist's build tools
# (cmake) from source just to read its metadata, which takes many minutes.
download() {
  python3 -m pip download --quiet --no-deps --no-binary llama-cpp-python \
    "llama-cpp-python==$VERSION" -d "$tmp"
}
if ! download; then
  echo "vocabs: download of llama-cpp-python==$VERSION failed, retrying once" >&2
  sleep 5
  if ! download; then
    echo "error: could not download llama-cpp-python==$VERSION (source package) from PyPI" >&2
    exit 1
  fi
fi

models="llama_cpp_python-$VERSION/vendor/llama.cpp/models"
members=()
for name in "${missing[@]}"; do
  members+=("$models/ggml-vocab-$name.gguf")
done
tar -xzf "$tmp/llama_cpp_python-$VERSION.tar.gz" -C "$tmp" "${members[@]}"

for name in "${missing[@]}"; do
  file="$tmp/$models/ggml-vocab-$name.gguf"
  want=$(expected_sha256 "$name")
  if ! has_right_hash "$file" "$want"; then
    echo "error: ggml-vocab-$name.gguf from llama-cpp-python==$VERSION has sha256 $(sha256_of "$file"), expected $want" >&2
    exit 1
  fi
  mv "$file" "$dest/ggml-vocab-$name.gguf"
  echo "vocabs: ggml-vocab-$name.gguf -> $dest"
done

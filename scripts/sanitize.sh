#!/usr/bin/env bash
# Builds the test suite with AddressSanitizer + UndefinedBehaviorSanitizer (build-asan) and runs it;
# then the concurrent tests (ctest label "threads") under ThreadSanitizer (build-tsan).
set -euo pipefail
cd "$(dirname "$0")/.."
common=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DENGRAM_BUILD_BENCH=OFF -DENGRAM_BUILD_EXAMPLES=OFF -DENGRAM_INSTALL=OFF)
cmake -S . -B build-asan "${common[@]}" -DENGRAM_SANITIZE=address,undefined >/dev/null
cmake --build build-asan -j"$(nproc)"
ctest --test-dir build-asan --output-on-failure -j"$(nproc)" -E cmake_import
if ctest --test-dir build-asan -N -L threads | grep -q "Total Tests: [1-9]"; then
  cmake -S . -B build-tsan "${common[@]}" -DENGRAM_SANITIZE=thread >/dev/null
  cmake --build build-tsan -j"$(nproc)" --target engram_threads_tests
  ctest --test-dir build-tsan --output-on-failure -L threads
fi

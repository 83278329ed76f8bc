#!/usr/bin/env bash
# Installs dependencies, builds everything (Release) and runs the whole test suite with ctest.
# ENGRAM_REQUIRE_ALL=ON: configuration fails if any optional component or test tool is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DENGRAM_BUILD_TESTS=ON -DENGRAM_REQUIRE_ALL=ON
cmake --build build -j"$(nproc)"
ctest --test-dir build --output-on-failure --no-tests=error -j"$(nproc)"

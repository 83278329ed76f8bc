#!/usr/bin/env bash
# Installs dependencies, builds (Release) and runs the demo: compresses the DeepSeek-V3 vocabulary
# and runs an Engram layer over the King James Bible (DeepSeek-V3 token ids).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build --target engram_cli -j"$(nproc)"
build/bin/engram demo --tokenizer tests/data/tokenizer/deepseek_v3/tokenizer.json.gz \
  --corpus data/kjv.dsv3.safetensors --config examples/demo_config.json "$@"

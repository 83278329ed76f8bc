#!/usr/bin/env bash
# Runs the PyTorch baseline (bench/torch_engram.py, the official demo module) and `engram bench`
# back to back on the same config and prints tokens/s of each and their ratio, for each T given.
# Needs Debian's python3-torch python3-numpy python3-sympy and a Release build (build/bin/engram).
#   bench/compare_torch.sh [CONFIG] [THREADS] [T...]
set -euo pipefail
cd "$(dirname "$0")/.."
config="${1:-bench/configs/paper_demo.json}"
threads="${2:-2}"
shift $(( $# > 2 ? 2 : $# )) || true
lengths=("${@:-1 2048}")
lookup=tests/data/tokenizer/deepseek_v3/lookup.safetensors
printf "%-8s %14s %14s %8s\n" "T" "torch tok/s" "engram tok/s" "ratio"
for T in ${lengths[@]}; do
  reps=5; [ "$T" -le 16 ] && reps=21
  torch=$(/usr/bin/python3 bench/torch_engram.py bench "$config" "$lookup" --seqlen "$T" \
          --threads "$threads" --reps "$reps" | sed -n 's/.*tokens\/s \([0-9.]*\).*/\1/p')
  ours=$(build/bin/engram bench --config "$config" --lookup "$lookup" --seqlen "$T" \
         --threads "$threads" --reps "$reps" | sed -n 's/^tokens\/s \([0-9.]*\)$/\1/p')
  printf "%-8s %14s %14s %7.2fx\n" "$T" "$torch" "$ours" "$(awk -v a="$ours" -v b="$torch" 'BEGIN{print a/b}')"
done

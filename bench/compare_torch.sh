#!/usr/bin/env bash
# Runs the PyTorch baseline (bench/torch_engram.py, the official demo module) and `engram bench`
# back to back on the same config and prints tokens/s of each and their ratios, for each dtype and
# T given; optionally plots tokens/s against T (gnuplot, Debian gnuplot-nox) into a PNG.
# Two PyTorch columns: "torch+hash" times the whole forward with NumPy hashing inside the call, as
# the demo module does (engram's figure includes its hashing too); "torch nn" hashes before the
# timer (torch_engram.py --prehash), the nn part alone. ratio = engram / torch+hash,
# ratio nn = engram / torch nn (engram still hashing inside its call).
# Needs Debian's python3-torch python3-numpy python3-sympy and a Release build (build/bin/engram).
#   bench/compare_torch.sh [CONFIG] [THREADS] [T...]
# Environment:
#   BATCH=B          sequences per call (default 1; e.g. BATCH=32 with T=1 for batched decode)
#   DTYPES="f32 bf16" dtypes to run (default f32; bf16 = bf16 weights/table in both; bf16-native =
#                    engram's --dtype bf16-native: bf16 activations on AVX512-BF16 CPUs, against PyTorch bf16)
#   ENGRAM_BIN=path  the engram executable (default build/bin/engram)
#   PLOT=out.png     also write a tokens/s-vs-T plot (log-log) there
set -euo pipefail
cd "$(dirname "$0")/.."
config="${1:-bench/configs/paper_demo.json}"
threads="${2:-2}"
shift $(( $# > 2 ? 2 : $# )) || true
lengths=("${@:-1 2048}")
batch="${BATCH:-1}"
dtypes="${DTYPES:-f32}"
engram_bin="${ENGRAM_BIN:-build/bin/engram}"
plot="${PLOT:-}"
lookup=tests/data/tokenizer/deepseek_v3/lookup.safetensors
data=$(mktemp)
trap 'rm -f "$data"' EXIT
printf "%-11s %-6s %-6s %16s %14s %14s %8s %9s\n" "dtype" "B" "T" "torch+hash tok/s" \
  "torch nn tok/s" "engram tok/s" "ratio" "ratio nn"
for dtype in $dtypes; do
  for T in ${lengths[@]}; do
    reps=5; [ $(( batch * T )) -le 64 ] && reps=21
    torch=$(/usr/bin/python3 bench/torch_engram.py bench "$config" "$lookup" --seqlen "$T" \
            --batch "$batch" --threads "$threads" --reps "$reps" --dtype "${dtype%-native}" |
            sed -n 's/.*tokens\/s \([0-9.]*\).*/\1/p')
    torch_nn=$(/usr/bin/python3 bench/torch_engram.py bench "$config" "$lookup" --seqlen "$T" \
               --batch "$batch" --threads "$threads" --reps "$reps" --dtype "${dtype%-native}" --prehash |
               sed -n 's/.*tokens\/s \([0-9.]*\).*/\1/p')
    ours=$("$engram_bin" bench --config "$config" --lookup "$lookup" --seqlen "$T" \
           --batch "$batch" --threads "$threads" --reps "$reps" --dtype "$dtype" |
           sed -n 's/^tokens\/s \([0-9.]*\)$/\1/p')
    ratio=$(awk -v a="$ours" -v b="$torch" 'BEGIN{printf "%.2f", a/b}')
    ratio_nn=$(awk -v a="$ours" -v b="$torch_nn" 'BEGIN{printf "%.2f", a/b}')
    printf "%-11s %-6s %-6s %16s %14s %14s %7sx %8sx\n" "$dtype" "$batch" "$T" "$torch" "$torch_nn" \
      "$ours" "$ratio" "$ratio_nn"
    echo "$dtype $T $torch $ours $torch_nn" >> "$data"
  done
done
if [ -n "$plot" ]; then
  command -v gnuplot > /dev/null || { echo "compare_torch: gnuplot not found (gnuplot-nox)" >&2; exit 1; }
  mkdir -p "$(dirname "$plot")"
  cmds="set terminal pngcairo noenhanced size 900,560; set output '$plot';"
  cmds+="set title 'Engram layer forward, $(basename "$config"), B=$batch, $threads threads';"
  cmds+="set xlabel 'T (tokens per sequence)'; set ylabel 'tokens/s'; set logscale xy; set grid;"
  cmds+="set key left top; plot "
  sep=""
  for dtype in $dtypes; do
    cmds+="$sep'$data' using (stringcolumn(1) eq '$dtype' ? \$2 : NaN):3 with linespoints title 'PyTorch+hash $dtype',"
    cmds+="'$data' using (stringcolumn(1) eq '$dtype' ? \$2 : NaN):5 with linespoints title 'PyTorch nn $dtype',"
    cmds+="'$data' using (stringcolumn(1) eq '$dtype' ? \$2 : NaN):4 with linespoints title 'engram $dtype'"
    sep=","
  done
  gnuplot -e "$cmds"
  echo "plot: $plot"
fi

#!/usr/bin/env bash
# DirectIOTier (io_uring + O_DIRECT) against fio's random 4 KiB read IOPS on the same file, by queue
# depth. Usage: bench/memory/tiers/fio_compare.sh BUILD_DIR [QD...]   (default QDs: 1 4 16 32 64 128 256)
# Needs fio (apt-get install fio). The bench file is created on first use (ENGRAM_BENCH_DIR,
# ENGRAM_BENCH_GB as for tiers_tier_bench). Run it on an otherwise idle machine.
set -euo pipefail
build=${1:?usage: fio_compare.sh BUILD_DIR [QD...]}
shift
qds=("$@")
[ ${#qds[@]} -gt 0 ] || qds=(1 4 16 32 64 128 256)
bench="$build/bench/tiers_tier_bench"
dir=${ENGRAM_BENCH_DIR:-/var/tmp/engram-bench}
gb=${ENGRAM_BENCH_GB:-4}
runtime=${FIO_RUNTIME:-8}
command -v fio >/dev/null || { echo "fio not found (apt-get install fio)" >&2; exit 1; }

# Creates the file if needed (a short run of the smallest benchmark).
"$bench" --benchmark_filter='BM_DirectIOUring/1/' --benchmark_min_time=0.01 >/dev/null
file=$(printf '%s/bench_%.1fGB_fp8_d512.engram' "$dir" "$gb")

printf '%6s %14s %14s %8s\n' qd fio_iops engram_pages/s ratio
for qd in "${qds[@]}"; do
  fio_iops=$(fio --name=randread --filename="$file" --rw=randread --bs=4k --direct=1 \
    --ioengine=io_uring --iodepth="$qd" --runtime="$runtime" --time_based --readonly \
    --output-format=json 2>/dev/null |
    /usr/bin/python3 -c 'import json,sys; print(round(json.load(sys.stdin)["jobs"][0]["read"]["iops"]))')
  ours=$("$bench" --benchmark_filter="BM_DirectIOUring/$qd/" --benchmark_format=json 2>/dev/null |
    /usr/bin/python3 -c 'import json,sys; print(round(json.load(sys.stdin)["benchmarks"][0]["pages_per_s"]))')
  ratio=$(/usr/bin/python3 -c "print(f'{$ours / $fio_iops:.2f}')")
  printf '%6s %14s %14s %8s\n' "$qd" "$fio_iops" "$ours" "$ratio"
done

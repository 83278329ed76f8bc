#!/usr/bin/env bash
# Compile time of engram as a user pays it: a translation unit holding the README's quick start
# (bench/compile_time/quick_start.cpp), the umbrella header alone, and Eigen alone, compiled at -O2
# with the flags a consumer of engram::engram + engram::tokenizer gets (include paths, C++20,
# -march=native). Prints CPU seconds (user + sys: robust on a loaded machine), wall seconds and
# peak RSS of each, the best of N runs (default 3) by CPU time.
#
#   bench/compile_time.sh [-n N] [-x CXX] [-- EXTRA_FLAGS...]
#   e.g. bench/compile_time.sh -- -DENGRAM_EXTERN_TEMPLATES   (the extern-template switch)
# Needs /usr/bin/time (GNU time). The machine is shared: read the figures as best of N.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=3
cxx=${CXX:-g++}
while [[ $# -gt 0 ]]; do
  case $1 in
    -n) runs=$2; shift 2 ;;
    -x) cxx=$2; shift 2 ;;
    --) shift; break ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "compile_time.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
extra=("$@")
[[ -x /usr/bin/time ]] || { echo "compile_time.sh: needs /usr/bin/time (GNU time)" >&2; exit 1; }

flags=(-std=c++20 -O2 -march=native -Iinclude -isystem /usr/include/eigen3 -c -o /dev/null)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf '#include <engram/engram.hpp>\n' >"$tmp/umbrella.cpp"
printf '#include <Eigen/Dense>\n' >"$tmp/eigen_dense.cpp"
printf '#include <Eigen/Core>\n' >"$tmp/eigen_core.cpp"

# best_of NAME FILE: the compilation with the least CPU time of $runs.
best_of() {
  local best_cpu="" best_wall="" best_kb="" wall user sys kb cpu
  for ((i = 0; i < runs; ++i)); do
    /usr/bin/time -f "%e %U %S %M" -o "$tmp/time" "$cxx" "${flags[@]}" "${extra[@]}" "$2" \
      2>"$tmp/err" || { cat "$tmp/err" >&2; echo "compile_time.sh: $1 does not compile" >&2; exit 1; }
    read -r wall user sys kb <"$tmp/time"
    cpu=$(awk "BEGIN{print $user + $sys}")
    if [[ -z $best_cpu ]] || awk "BEGIN{exit !($cpu < $best_cpu)}"; then
      best_cpu=$cpu best_wall=$wall best_kb=$kb
    fi
  done
  printf '%-14s %6.2f s CPU %7.2f s wall %8d KB peak  (best of %d)\n' "$1" "$best_cpu" \
    "$best_wall" "$best_kb" "$runs"
}

echo "$cxx $("$cxx" -dumpfullversion 2>/dev/null || true), ${flags[*]} ${extra[*]}"
best_of quick_start bench/compile_time/quick_start.cpp
best_of umbrella "$tmp/umbrella.cpp"
best_of eigen_dense "$tmp/eigen_dense.cpp"
best_of eigen_core "$tmp/eigen_core.cpp"

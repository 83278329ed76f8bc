#!/usr/bin/env bash
# Dependencies between the header folders point one way (STYLE.md, issue 14):
#   core (error.hpp, config.hpp, engram_fwd.hpp, detail/) -> io -> {tokenizer, hashing, memory}
#   -> nn -> layer -> train
# A header may include headers of its own level or of an earlier one, never of a later one; and
# memory/ (outside memory/tiers/) never includes memory/tiers/ (tiers sit on the tables). The
# umbrella engram.hpp may include everything. Prints every violation as
# "FILE:LINE: FOLDER includes LATER_FOLDER (HEADER)" and exits 1 if there is any.
# Usage: scripts/check-layering.sh [INCLUDE_ROOT]   (default: include)
set -euo pipefail
cd "$(dirname "$0")/.."
root=${1:-include}

# Level of a header path relative to $root/engram ("" for the umbrella: exempt).
level_of() {
  case $1 in
    engram.hpp) echo "" ;;
    error.hpp | config.hpp | engram_fwd.hpp | detail/*) echo 0 ;;
    io/*) echo 1 ;;
    tokenizer/* | hashing/* | memory/*) echo 2 ;;
    nn/*) echo 3 ;;
    layer/*) echo 4 ;;
    train/*) echo 5 ;;  # training (backward passes, optimisers) builds on the layers
    *) echo 6 ;;        # a new folder: place it in the order above
  esac
}
folder_of() {
  case $1 in
    */*) echo "${1%%/*}/" ;;
    *) echo "core" ;;
  esac
}

violations=0
while IFS= read -r -d '' file; do
  rel=${file#"$root"/engram/}
  from=$(level_of "$rel")
  [ -n "$from" ] || continue
  while IFS=: read -r line header; do
    to=$(level_of "$header")
    [ -n "$to" ] || to=6
    bad=""
    if [ "$to" -gt "$from" ]; then
      bad="$(folder_of "$rel") includes $(folder_of "$header"), a later folder"
    elif [[ $rel == memory/* && $rel != memory/tiers/* && $header == memory/tiers/* ]]; then
      bad="memory/ includes memory/tiers/ (tiers depend on tables, not the reverse)"
    fi
    if [ -n "$bad" ]; then
      echo "$file:$line: $bad (engram/$header)"
      violations=$((violations + 1))
    fi
  done < <(grep -nE '^[[:space:]]*#[[:space:]]*include[[:space:]]*["<]engram/' "$file" |
    sed -E 's/^([0-9]+):[^"<]*["<]engram\/([^">]+)[">].*/\1:\2/')
done < <(find "$root/engram" -name '*.hpp' -print0 | sort -z)

if [ "$violations" -gt 0 ]; then
  echo "check-layering: $violations include(s) against the order core -> io ->" \
    "{tokenizer, hashing, memory} -> nn -> layer -> train" >&2
  exit 1
fi
echo "check-layering: every header includes only its own level or earlier ones"

#!/usr/bin/env bash
# Tests, benchmarks, examples, scripts and fuzzers may send traffic only to loopback (127.0.0.0/8,
# ::1). This check fails, naming file:line, on any IPv4 literal in their text files other than
# 127.x.x.x and 0.0.0.0 (a bind address): documentation ranges and parse-only examples included,
# so that none can become a destination. Usage: scripts/check-loopback.sh [DIR...]
set -euo pipefail
cd "$(dirname "$0")/.."
dirs=("$@")
[ ${#dirs[@]} -gt 0 ] || dirs=(tests bench examples scripts fuzz)
existing=()
for d in "${dirs[@]}"; do [ -e "$d" ] && existing+=("$d"); done
[ ${#existing[@]} -gt 0 ] || exit 0

# grep -I skips binary files; the look-arounds keep longer dotted numbers (versions) out.
found=$(grep -rInoP '(?<![0-9A-Za-z.])(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?![0-9.])' "${existing[@]}" |
  awk -F: '{
    address = $NF; n = split(address, octet, ".")
    valid = n == 4
    for (i = 1; i <= 4 && valid; ++i) if (octet[i] + 0 > 255) valid = 0
    if (valid && octet[1] != "127" && address != "0.0.0.0") print
  }' || true)
if [ -n "$found" ]; then
  echo "check-loopback: IPv4 addresses other than loopback (127.0.0.0/8) in tests, benchmarks," >&2
  echo "examples, scripts or fuzzers (FILE:LINE:ADDRESS); use 127.x.x.x or a local listener:" >&2
  echo "$found" >&2
  exit 1
fi
echo "check-loopback: no IPv4 literal beyond loopback in ${existing[*]}"

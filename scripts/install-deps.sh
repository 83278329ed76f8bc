#!/usr/bin/env bash
# Installs engram's build and test dependencies from Debian's packages (idempotent).
# Extra package names given as arguments are installed too; for bench/compare_torch.sh:
#   scripts/install-deps.sh python3-torch python3-numpy python3-sympy gnuplot-nox
# libopenblas-dev is optional (engram::blas: LinearT's large GEMMs on OpenBLAS).
# libdnnl-dev (oneDNN) is for bench/nn/onednn_compare_bench only.
set -euo pipefail
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
PACKAGES=(build-essential cmake pkg-config
          libeigen3-dev nlohmann-json3-dev libutf8proc-dev zlib1g-dev libxxhash-dev liburing-dev
          libgtest-dev libgmock-dev libbenchmark-dev
          libmemcached-dev memcached libopenblas-dev libdnnl-dev libpng-dev "$@")
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

#!/usr/bin/env bash
# Installs engram's build and test dependencies from Debian's packages (idempotent).
# Extra package names given as arguments are installed too.
set -euo pipefail
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
PACKAGES=(build-essential cmake pkg-config
          libeigen3-dev nlohmann-json3-dev libutf8proc-dev zlib1g-dev libxxhash-dev liburing-dev
          libgtest-dev libgmock-dev libbenchmark-dev "$@")
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

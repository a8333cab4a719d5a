#!/usr/bin/env bash
# GPU benchmark of the model runtime on the lent H100/H200 (no network there).
#
# Here, once:  benchmarks/gpu/prepare.sh   (trimmed llama-cpp-python sdist + two wheels into .device/)
# There:       bash benchmarks/gpu/run_gpu_bench.sh start    (background: CUDA build, 3B-shaped pack)
#              bash benchmarks/gpu/run_gpu_bench.sh wait     (poll until both are done, <= 9 min)
#              bash benchmarks/gpu/run_gpu_bench.sh bench    (in-process and server benchmarks)
#              bash benchmarks/gpu/run_gpu_bench.sh server NAME ARGS...   (one bench_server.py run;
#                   ARGS --own-server --parallel 64 --no-grammar --server-args=--gpu-sampling:
#                   sleepvlm-ws serve instead of llama-server)
#              bash benchmarks/gpu/run_gpu_bench.sh floor    (llama-batched-bench: decode without a server)
# with `.device/src.tar.xz` and `.device/whl` carried. Results land in $OUT (or ./gpu-results).
#
# One CMake build of the vendored llama.cpp (shared libraries + llama-server, sm_90) serves both
# the Python bindings (its .so files are copied into a copy of the llama_cpp package) and the
# server, so ggml-cuda is compiled once.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SRC="$ROOT/.device/src"
W=/tmp/svlm-gpu
OUTDIR="${OUT:-$ROOT/gpu-results}"
mkdir -p "$W" "$OUTDIR"
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0
export PYTHONPATH="$W/pylib:$ROOT/app:$ROOT/tests:/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
export SLEEPVLM_WS_LLAMA_CPP_SRC="$SRC/vendor/llama.cpp" SLEEPVLM_WS_HOME="$W/home"

case "${1:-}" in
start)
  # the sources travel compressed (the working tree and what is carried must stay under 64 MiB)
  [ -d "$SRC" ] || tar xJf "$ROOT/.device/src.tar.xz" -C "$ROOT/.device"
  # SERVER_DEBUG_TIMINGS=1: llama-server logs its mean pre-decode / decode / post-decode / sampling
  # times every 5 s (llama.cpp's own DEBUG_TIMINGS switch, defined on the device copy only)
  F="$SRC/vendor/llama.cpp/tools/server/server-context.cpp"
  [ -z "${SERVER_DEBUG_TIMINGS:-}" ] || grep -q "define DEBUG_TIMINGS" "$F" || sed -i '1i #define DEBUG_TIMINGS' "$F"
  python3 -m pip install -q --no-index --no-deps --target /tmp/site "$ROOT"/.device/whl/*.whl
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$OUTDIR/gpu.txt"
  setsid bash -c "
    cmake -S '$SRC/vendor/llama.cpp' -B '$W/build' -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=90 -DBUILD_SHARED_LIBS=ON -DGGML_NATIVE=ON \
      -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
      -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF \
      > '$W/build.log' 2>&1 &&
    cmake --build '$W/build' --target llama mtmd llama-server llama-batched-bench -j 14 >> '$W/build.log' 2>&1
    rc=\$?
    mkdir -p '$W/pylib' && cp -r '$SRC/llama_cpp' '$W/pylib/' && mkdir -p '$W/pylib/llama_cpp/lib' &&
      cp -a '$W'/build/bin/*.so* '$W/pylib/llama_cpp/lib/' 2>>'$W/build.log'
    echo \$rc > '$W/build.rc'" < /dev/null > /dev/null 2>&1 &
  setsid bash -c "
    python3 '$ROOT/benchmarks/gpu/make_shaped_pack.py' --checkpoint-only '$W/hf' > '$W/pack.log' 2>&1
    while [ ! -f '$W/build.rc' ]; do sleep 5; done
    python3 '$ROOT/benchmarks/gpu/make_shaped_pack.py' --from-checkpoint '$W/hf' '$W/pack' >> '$W/pack.log' 2>&1
    echo \$? > '$W/pack.rc'" < /dev/null > /dev/null 2>&1 &
  echo "started"
  ;;
wait)
  for _ in $(seq 1 108); do
    [ -f "$W/pack.rc" ] && break
    sleep 5
  done
  echo "build rc: $(cat "$W/build.rc" 2>/dev/null || echo running)   pack rc: $(cat "$W/pack.rc" 2>/dev/null || echo running)"
  tail -n 3 "$W/build.log"; tail -n 8 "$W/pack.log"
  cp "$W/build.log" "$W/pack.log" "$OUTDIR/" 2>/dev/null
  ;;
bench)
  cd "$ROOT"
  [ -n "${SKIP_INPROCESS:-}" ] || python3 benchmarks/bench_inference.py --pack "$W/pack" --n-gpu-layers -1 \
    --epochs 12 --rationales 3 --no-grammar 2>&1 | tee "$OUTDIR/bench_inference.txt"
  for run in "16 --no-grammar" "32 --no-grammar" "16"; do
    set -- $run
    python3 benchmarks/bench_server.py --server-bin "$W/build/bin/llama-server" --pack "$W/pack" \
      --parallel $1 --requests $(($1 * 4)) --rationale-tokens 300 ${2:-} \
      --log "$OUTDIR/llama-server-np$1${2:-}.log" 2>&1 | tee "$OUTDIR/bench_server_np$1${2:-}.txt"
  done
  ;;
server)
  # e.g. server np32-bs --parallel 32 --no-grammar --server-args -bs
  cd "$ROOT"; name=$2; shift 2
  python3 benchmarks/bench_server.py --server-bin "$W/build/bin/llama-server" --pack "$W/pack" \
    --log "$OUTDIR/llama-server-$name.log" "$@" 2>&1 | tee "$OUTDIR/bench_server-$name.txt"
  ;;
floor)
  # the LM alone: 2,000-token prompts (one per sequence), 128 new tokens, 1/8/32/64 sequences
  "$W/build/bin/llama-batched-bench" -m "$W/pack/lm.gguf" -ngl 999 -fa on -c 280000 -b 2048 -ub 512 \
    -npp 2000 -ntg 128 -npl 1,8,32,64 2>&1 | grep -v "^llama_\|^load\|^print_info\|^\.\|^common" \
    | tee "$OUTDIR/batched-bench.txt"
  ;;
*) sed -n 2,14p "$0"; exit 2 ;;
esac

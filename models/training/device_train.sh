#!/usr/bin/env bash
# Train the default model on the lent GPU (no network there; 10-minute commands).
#
# Here, once:  benchmarks/gpu/prepare.sh is NOT needed; stage the wheel the GPU image lacks (it has
#              torch, transformers, scipy 1.18, pillow, tokenizers; not pyedflib, which the
#              generator imports). Carry is limited to 64 MiB with the tree, so stage only it:
#              pip download --no-deps --only-binary=:all: --python-version 3.12 \
#                --platform manylinux2014_x86_64 -d .device/train-whl pyedflib
# There (carry .device/train-whl):
#              bash models/training/device_train.sh start   # background: data, phase 1, phase 2, export
#              bash models/training/device_train.sh wait    # poll (<= 9 min); when done, results to $OUT
# The run is resumable: `start` again continues where the work folder stopped.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
W=${SVLM_TRAIN_WORK:-/tmp/svlm-train}
OUTDIR="${OUT:-$ROOT/train-results}"
mkdir -p "$W" "$OUTDIR"
export PYTHONUNBUFFERED=1 PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}" TOKENIZERS_PARALLELISM=false
ARGS=(--work "$W/work" --nights "${NIGHTS:-44}" --seed 2026 --workers 15
      --phase1-seconds "${P1:-120}" --phase2-seconds "${P2:-780}" --phase2-batch 64)

case "${1:-}" in
start)
  python3 -c "import scipy, PIL, tokenizers, pyedflib" 2>/dev/null ||
    python3 -m pip install -q --no-index --no-deps --target /tmp/site "$ROOT"/.device/train-whl/*.whl
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$OUTDIR/gpu.txt"
  python3 -c "import sys, torch, transformers; print(sys.version.split()[0], torch.__version__, transformers.__version__)" >> "$OUTDIR/gpu.txt"
  rm -f "$W/rc"
  setsid bash -c "
    cd '$ROOT' && python3 models/training/train_default.py data ${ARGS[*]} &&
    python3 models/training/train_default.py train ${ARGS[*]} &&
    python3 models/training/train_default.py export ${ARGS[*]}
    echo \$? > '$W/rc'" < /dev/null > "$W/train.log" 2>&1 &
  sleep 20; tail -n 5 "$W/train.log"; cat "$OUTDIR/gpu.txt"
  ;;
wait)
  for _ in $(seq 1 "${POLLS:-105}"); do
    [ -f "$W/rc" ] && break
    sleep 5
  done
  echo "rc: $(cat "$W/rc" 2>/dev/null || echo running)"
  grep -v Warning "$W/train.log" | tail -n 12
  cp "$W/work/log.jsonl" "$OUTDIR/" 2>/dev/null
  if [ -f "$W/rc" ] && [ -d "$W/work/hf" ]; then
    # whole checkpoint as a tar in 15 MB parts (what comes back per call is limited in count and size)
    tar cf "$W/hf.tar" -C "$W/work" hf config.json split.json log.jsonl validation.json -C "$W" train.log && split -b 15M -d "$W/hf.tar" "$OUTDIR/hf.tar."
    sha256sum "$W/hf.tar" | tee "$OUTDIR/hf.tar.sha256"
  fi
  ;;
*) sed -n 2,11p "$0"; exit 2 ;;
esac

#!/usr/bin/env bash
# Smoke test of the BUILT Linux bundle (not the source checkout, not any virtual environment):
#   packaging/linux/smoke_test.sh [BUNDLE.tar.gz | BUNDLE_FOLDER]
# Default: packaging/dist/SleepVLM-Workstation-linux-x86_64.tar.gz, unpacked into a temporary folder
# so that what ships is what runs, from a place it was not built in. Every run of the program gets
# a clean environment (env -i): PATH=/usr/bin:/bin, no PYTHONPATH, no VIRTUAL_ENV, a fresh
# HOME and SLEEPVLM_WS_HOME, QT_QPA_PLATFORM=offscreen. Checks and figures are printed; the last
# line counts them ("N passed, N failed") and the exit status is 1 if any check failed.
# The study file is read with SQLite by the bundle's own Python (`sleepvlm-ws -c CODE`).
set -uo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(dirname "$(dirname "$HERE")")"
TARGET="${1:-$REPO/packaging/dist/SleepVLM-Workstation-linux-x86_64.tar.gz}"
APP="SleepVLM-Workstation"

T="$(mktemp -d "${TMPDIR:-/tmp}/sleepvlm-ws-smoke.XXXXXX")"
trap 'rm -rf "$T"' EXIT
mkdir -p "$T/home" "$T/ws-home" "$T/tmp"
passed=0; failed=0
ok()   { passed=$((passed + 1)); printf 'smoke: PASS %s\n' "$*"; }
bad()  { failed=$((failed + 1)); printf 'smoke: FAIL %s\n' "$*"; }
check() { local name="$1"; shift; if "$@"; then ok "$name"; else bad "$name"; fi; }
figure() { printf 'smoke: FIGURE %-34s %s\n' "$1" "$2"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

if [ -f "$TARGET" ]; then
  tar -xzf "$TARGET" -C "$T" || { echo "smoke: cannot unpack $TARGET"; exit 1; }
  APPDIR="$T/$APP"
  figure "tar.gz size" "$(du -sh "$TARGET" | cut -f1) ($(stat -c %s "$TARGET") bytes)"
elif [ -d "$TARGET" ]; then
  APPDIR="$(cd "$TARGET" && pwd)"
else
  echo "smoke: no bundle at $TARGET (run packaging/linux/build.sh first)"; exit 1
fi
BIN="$APPDIR/sleepvlm-ws"
PACK="$APPDIR/_internal/models/default"
figure "bundle folder size" "$(du -sh "$APPDIR" | cut -f1) ($(du -sb "$APPDIR" | cut -f1) bytes)"

# The program in a clean environment. OPENBLAS_* pass through: the machine sets them for its CPU.
ws() {
  env -i HOME="$T/home" PATH=/usr/bin:/bin LANG=C.UTF-8 TMPDIR="$T/tmp" QT_QPA_PLATFORM=offscreen \
    SLEEPVLM_WS_HOME="$T/ws-home" ${OPENBLAS_CORETYPE:+OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE} \
    ${OPENBLAS_L2_SIZE:+OPENBLAS_L2_SIZE=$OPENBLAS_L2_SIZE} "$BIN" "$@"
}

# -- what is inside ------------------------------------------------------------------------------
for f in sleepvlm-ws sleepvlm-ws.desktop sleepvlm-ws.png sleepvlm-ws.svg install.sh NOTICE.txt \
         README-bundle.txt licences/INDEX.txt _internal/models/default/manifest.json \
         _internal/models/default/lm.gguf _internal/models/default/mmproj.gguf \
         _internal/resources/rules/aasm-rules.json _internal/llama_cpp/lib/libllama.so \
         _internal/PySide6/Qt/plugins/platforms/libqxcb.so \
         _internal/PySide6/Qt/plugins/platforms/libqoffscreen.so; do
  [ -e "$APPDIR/$f" ] || missing="${missing:-} $f"
done
check "bundle layout (program, desktop entry, icon, licences, default pack, rules, llama.cpp, Qt platforms)${missing:+; missing:$missing}" \
  test -z "${missing:-}"
unwanted=$(cd "$APPDIR" && find . \( -iname '*WebEngine*' -o -iname '*qwayland*' -o -iname 'libQt6Qml*' \
  -o -iname 'libQt6Quick*' -o -name 'torch' -o -iname 'libQt6Pdf*' \) | head -5)
check "no QtWebEngine, Qml/Quick, Wayland plugins or torch in the bundle${unwanted:+ (found: $unwanted)}" \
  test -z "$unwanted"

zmm_total=0
for lib in "$APPDIR"/_internal/llama_cpp/lib/lib*.so; do
  n=$(objdump -d "$lib" | grep -c zmm || true)
  printf 'smoke:   %-28s zmm (AVX-512) instructions: %s\n' "$(basename "$lib")" "$n"
  zmm_total=$((zmm_total + n))
done
check "llama.cpp libraries hold no AVX-512 code (portable build)" test "$zmm_total" = 0

desktop="$APPDIR/sleepvlm-ws.desktop"
desktop_ok() {
  grep -q '^Exec=sleepvlm-ws ' "$desktop" && grep -q '^Icon=sleepvlm-ws$' "$desktop" \
    && grep -q '^Categories=Science;MedicalSoftware;$' "$desktop" && grep -q '^Type=Application$' "$desktop"
}
check ".desktop entry: Type, Exec, Icon, Categories=Science;MedicalSoftware;" desktop_ok
if command -v desktop-file-validate >/dev/null; then
  check ".desktop entry passes desktop-file-validate" desktop-file-validate "$desktop"
fi

# -- start-up ----------------------------------------------------------------------------------
t0=$(now); version=$(ws --version 2>&1); rc=$?; cold=$(since "$t0")
check "--version answers (exit $rc: $version)" test "$rc" = 0 -a "${version%% *}" = sleepvlm-ws
t0=$(now); ws --version >/dev/null 2>&1; warm=$(since "$t0")
figure "start-up, --version (first/second)" "${cold} s / ${warm} s"

frozen_check='
import os, sys
import llama_cpp, numpy, PySide6, sleepvlm_ws
from sleepvlm_ws.paths import bundle_dir, resources_dir
from sleepvlm_ws.cli.common import default_pack
root = os.path.realpath(sys.argv[1])
places = {"sleepvlm_ws": sleepvlm_ws.__file__, "llama_cpp": llama_cpp.__file__,
          "numpy": numpy.__file__, "PySide6": PySide6.__file__, "resources": str(resources_dir()),
          "default pack": str(default_pack()), "python": sys.executable}
outside = {k: v for k, v in places.items() if not os.path.realpath(v).startswith(root + os.sep)}
print("frozen:", getattr(sys, "frozen", False), "default pack:", places["default pack"])
if outside:
    sys.exit("outside the bundle: %r" % outside)
if not getattr(sys, "frozen", False):
    sys.exit("not a frozen program")
'
check "the bundle runs its own Python, Qt, llama.cpp, resources and default pack" \
  ws -c "$frozen_check" "$APPDIR"

t0=$(now); ws open --exit-after 0 >"$T/open.log" 2>&1; rc=$?; window=$(since "$t0")
check "empty workstation window opens and closes (exit $rc)" test "$rc" = 0
[ "$rc" = 0 ] || { tail -5 "$T/open.log"; tail -15 "$T/ws-home/error.log" 2>/dev/null; }
figure "start-up to window shown and closed" "${window} s"

# -- model pack and bad input --------------------------------------------------------------------
check "model verify on the bundled default pack" ws model verify "$PACK"
ws model list >"$T/list.txt" 2>&1
check "model list finds the bundled default pack" grep -q "$PACK" "$T/list.txt"

: >"$T/empty.edf"
ws info "$T/empty.edf" >"$T/bad.out" 2>"$T/bad.err"; rc=$?
check "empty file.edf: exit 2 (got $rc), one line naming the file, no traceback: $(head -c 200 "$T/bad.err")" \
  test "$rc" = 2 -a "$(wc -l <"$T/bad.err")" = 1 -a ! -s "$T/bad.out"
check "  ... the line names empty.edf" grep -q "empty.edf" "$T/bad.err"
check "  ... no traceback" bash -c "! grep -q Traceback '$T/bad.err'"

# -- the demo: generate the night, open it, score in the background --------------------------
shot="$T/demo.png"
t_demo=$(date -u +%s.%N)
ws demo --exit-after 3 --screenshot "$shot" >"$T/demo.log" 2>&1; rc=$?
demo_s=$(since "$t_demo")
check "demo (first start: generates the night, loads the pack, scores) exits 0 (got $rc)" test "$rc" = 0
[ "$rc" = 0 ] || { tail -20 "$T/demo.log"; tail -15 "$T/ws-home/error.log" 2>/dev/null; }
figure "demo first start, run to exit" "${demo_s} s"
check "demo screenshot written (PNG)" bash -c "head -c 8 '$shot' 2>/dev/null | grep -q PNG"

study=$(ls "$T"/ws-home/demo/*.edf.sleepvlm 2>/dev/null | head -1)
study_check='
import json, sqlite3, sys
from datetime import datetime, timezone
study, manifest, started = sys.argv[1], sys.argv[2], float(sys.argv[3])
model_id = json.load(open(manifest))["files"]["lm"]["sha256"]
db = sqlite3.connect("file:%s?mode=ro" % study, uri=True)
n, first = db.execute("SELECT count(*), min(created) FROM suggestions WHERE model_id = ? AND created > ?",
                      (model_id, datetime.fromtimestamp(started, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"))).fetchone()
total = db.execute("SELECT count(*) FROM suggestions WHERE model_id = ?", (model_id,)).fetchone()[0]
first_s = (datetime.strptime(first, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp() - started) if first else -1
print("%d %d %.2f" % (n, total, first_s))
'
if [ -n "$study" ]; then
  read -r n_new n_total first_s < <(ws -c "$study_check" "$study" "$PACK/manifest.json" "$t_demo")
  check "demo study holds >= 3 AI suggestions from the default pack (has ${n_new:-0})" test "${n_new:-0}" -ge 3
  figure "demo first start, to first suggestion" "${first_s} s (includes generating the night)"
  check "audit verify on the demo study" ws audit verify "$study"
  check "info on the demo recording" ws info "${study%.sleepvlm}"
  report_ok() { ws report "$study" --out "$T/report.pdf" >/dev/null && head -c 5 "$T/report.pdf" | grep -q '%PDF-'; }
  check "report: a PDF from the demo study (matplotlib inside the bundle)" report_ok
  check "export: the hypnogram as TSV" ws export "$study" --format tsv --out "$T/hypnogram.tsv"

  t_demo=$(date -u +%s.%N)
  ws demo --exit-after 0 >"$T/demo2.log" 2>&1; rc=$?
  demo2_s=$(since "$t_demo")
  read -r n_new2 n_total2 first2_s < <(ws -c "$study_check" "$study" "$PACK/manifest.json" "$t_demo")
  check "demo second start (night already there) exits 0 with new suggestions (exit $rc, ${n_new2:-0} new)" \
    test "$rc" = 0 -a "${n_new2:-0}" -ge 1
  figure "demo second start, to first suggestion" "${first2_s} s (run to exit ${demo2_s} s)"
else
  bad "demo study file not found under $T/ws-home/demo"
fi

# -- a real X11 window (the xcb platform plugin) where Xvfb is installed ------------------------
if command -v xvfb-run >/dev/null; then
  xvfb-run -a -s "-screen 0 1400x900x24" bash -c 'env -i HOME="$1" PATH=/usr/bin:/bin LANG=C.UTF-8 \
      DISPLAY="$DISPLAY" XAUTHORITY="$XAUTHORITY" QT_QPA_PLATFORM=xcb SLEEPVLM_WS_HOME="$2" \
      "$3" demo --no-score --exit-after 0 --screenshot "$4"' _ "$T/home" "$T/ws-home" "$BIN" "$T/x11.png" \
    >"$T/x11.log" 2>&1; rc=$?
  check "X11 window under Xvfb (xcb platform plugin, exit $rc, screenshot)" \
    bash -c "[ $rc = 0 ] && head -c 8 '$T/x11.png' 2>/dev/null | grep -q PNG"
  [ "$rc" = 0 ] || tail -12 "$T/x11.log"
else
  echo "smoke: (no xvfb-run here: the X11 window check is left out)"
fi

# -- YASA, mne and the scoring command line inside the bundle ----------------------------------
if ws synth "$T/short.edf" --hours 0.5 --fs 100 --seed 11 >/dev/null 2>&1; then
  t0=$(now)
  ws evaluate "$T/short.edf" --reference "$T/short.edf" --json --threads 2 >"$T/eval.json" 2>"$T/eval.err"
  rc=$?; eval_s=$(since "$t0")
  eval_check='
import json, sys
doc = json.load(open(sys.argv[1]))
model, yasa = doc["model_agreement"], doc["yasa_agreement"]
print("epochs %d, model kappa %.2f, YASA kappa %.2f" % (doc["n_epochs"], model["kappa"], yasa["kappa"]))
'
  line=""; [ "$rc" = 0 ] && line=$(ws -c "$eval_check" "$T/eval.json" 2>&1)
  check "evaluate (model + YASA second opinion) on a synthetic half-hour night (exit $rc): $line" \
    test "$rc" = 0 -a -n "$line" -a "${line#epochs}" != "$line"
  [ "$rc" = 0 ] || { tr '\r' '\n' <"$T/eval.err" | grep -v '^scoring' | tail -5; tail -15 "$T/ws-home/error.log" 2>/dev/null; }
  figure "evaluate, 60 epochs with YASA" "${eval_s} s"
else
  bad "synth writes a recording"
fi

# -- installing for the desktop ------------------------------------------------------------------
if env -i HOME="$T/home" PATH=/usr/bin:/bin bash "$APPDIR/install.sh" --prefix "$T/inst" >/dev/null; then
  exec_path=$(sed -n 's/^Exec="\([^"]*\)".*/\1/p' "$T/inst/share/applications/sleepvlm-ws.desktop")
  check "install.sh --prefix: menu entry runs an installed program ($exec_path)" test -x "$exec_path"
  check "  ... bin/sleepvlm-ws --version through the link" bash -c "'$T/inst/bin/sleepvlm-ws' --version >/dev/null"
else
  bad "install.sh --prefix runs"
fi

echo "smoke: $passed passed, $failed failed"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]

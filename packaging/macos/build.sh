#!/usr/bin/env bash
# UNTESTED: written for macOS 12+ but never run (the project has no Mac). Builds
# "SleepVLM Workstation.app" with the same PyInstaller recipe as Linux (packaging/sleepvlm-ws.spec):
#   packaging/macos/build.sh
# Needs: Xcode command line tools, CMake (brew install cmake), Python 3.10-3.12 from python.org
# (a framework build: PyInstaller needs its shared library) as PYTHON or python3.
# Result: packaging/dist/SleepVLM Workstation.app and packaging/dist/SleepVLM-Workstation-macos-ARCH.dmg
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
PKG="$(dirname "$HERE")"
REPO="$(dirname "$PKG")"
cd "$REPO"
BUILD="$PKG/.build/macos"
DIST="$PKG/dist"
VENV="$BUILD/venv"
VPY="$VENV/bin/python"
ARCH="$(uname -m)"
LLAMA_VERSION="0.3.36"
if [ "$ARCH" = arm64 ]; then
  # Apple silicon: Metal for the GPU; GGML_NATIVE=OFF keeps to the baseline ARMv8.2 the M1 has
  LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_METAL=ON"
else
  LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_METAL=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
fi
say() { printf 'build: %s\n' "$*" >&2; }

mkdir -p "$BUILD"
[ -x "$VPY" ] || { "${PYTHON:-python3}" -m venv "$VENV"; "$VPY" -m pip install -q --upgrade pip wheel; }
WHEELS="$BUILD/wheels-$ARCH"
wheel=$(ls "$WHEELS"/llama_cpp_python-"$LLAMA_VERSION"-*.whl 2>/dev/null | head -1 || true)
if [ -z "$wheel" ]; then
  say "compiling llama-cpp-python $LLAMA_VERSION for $ARCH ($LLAMA_CMAKE_ARGS); done once"
  CMAKE_ARGS="$LLAMA_CMAKE_ARGS" "$VPY" -m pip wheel --no-deps --no-binary llama-cpp-python \
    --no-cache-dir -w "$WHEELS" "llama-cpp-python==$LLAMA_VERSION"
  wheel=$(ls "$WHEELS"/llama_cpp_python-"$LLAMA_VERSION"-*.whl | head -1)
fi
"$VPY" -m pip install -q "pyinstaller>=6.10,<7" "$wheel" "$REPO"
"$VPY" -m pip install -q --force-reinstall --no-deps "$REPO"

rm -rf "$DIST/SleepVLM-Workstation" "$DIST/SleepVLM Workstation.app"
"$VENV/bin/pyinstaller" --noconfirm --log-level WARN --distpath "$DIST" --workpath "$BUILD/work" \
  "$PKG/sleepvlm-ws.spec"
APPB="$DIST/SleepVLM Workstation.app"
BIN="$APPB/Contents/MacOS/sleepvlm-ws"
[ -x "$BIN" ] || { say "FAILED: no $BIN"; exit 1; }
cp "$PKG/NOTICE.txt" "$APPB/Contents/Resources/"
"$VPY" "$PKG/collect_licences.py" "$APPB/Contents/Resources/licences"

if [ "$ARCH" = x86_64 ]; then   # portability: no AVX-512 in the llama.cpp libraries
  for lib in "$APPB"/Contents/Frameworks/llama_cpp/lib/lib*.dylib; do
    n=$(otool -tV "$lib" | grep -c zmm || true)
    say "  $(basename "$lib") zmm instructions: $n"
    [ "$n" = 0 ] || { say "FAILED: $lib holds AVX-512 code"; exit 1; }
  done
fi

# Unsigned apps are quarantined by Gatekeeper; an ad-hoc signature at least keeps the bundle
# consistent. Distribution needs a Developer ID signature and notarisation (see docs/PACKAGING.md).
codesign --force --deep --sign - "$APPB"

# Smoke: the demo offscreen, exit 0, a screenshot; the bundled pack verifies
home="$(mktemp -d)"
QT_QPA_PLATFORM=offscreen SLEEPVLM_WS_HOME="$home" "$BIN" demo --exit-after 3 --screenshot "$home/demo.png"
[ -s "$home/demo.png" ] || { say "FAILED: no demo screenshot"; exit 1; }
SLEEPVLM_WS_HOME="$home" "$BIN" model verify "$APPB/Contents/Frameworks/models/default"
rm -rf "$home"

dmg="$DIST/SleepVLM-Workstation-macos-$ARCH.dmg"
rm -f "$dmg"
hdiutil create -volname "SleepVLM Workstation" -srcfolder "$APPB" -ov -format UDZO "$dmg" >/dev/null
say "app: $(du -sh "$APPB" | cut -f1); dmg: $(du -sh "$dmg" | cut -f1)"

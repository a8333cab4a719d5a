#!/usr/bin/env bash
# Build the Linux x86-64 desktop bundle of SleepVLM Workstation (one folder + tar.gz):
#   packaging/linux/build.sh
# Makes its own virtual environment under packaging/.build/ (git-ignored), installs PyInstaller,
# llama-cpp-python compiled for portable x86-64 CPUs (AVX2, no -march=native; the wheel is cached
# so a rebuild does not compile again) and the workstation itself (not editable), checks that the
# llama.cpp libraries hold no AVX-512 code, runs PyInstaller on packaging/sleepvlm-ws.spec and
# adds the desktop entry, icon, licences and a short README. Result:
#   packaging/dist/SleepVLM-Workstation/                 the application folder
#   packaging/dist/SleepVLM-Workstation-linux-x86_64.tar.gz
# Environment: PYTHON (the interpreter to build with, default python3; it must have a shared
# libpython, as pyenv, Debian and python.org builds do), SLEEPVLM_WS_BUILD_JOBS (compiler jobs,
# default: all cores).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
PKG="$(dirname "$HERE")"
REPO="$(dirname "$PKG")"
cd "$REPO"

BUILD="$PKG/.build"
DIST="$PKG/dist"
APP="SleepVLM-Workstation"
TARBALL="$DIST/$APP-linux-x86_64.tar.gz"
PY="${PYTHON:-python3}"
VENV="$BUILD/venv"
VPY="$VENV/bin/python"
PIP=("$VPY" -m pip --disable-pip-version-check)

say() { printf 'build: %s\n' "$*" >&2; }
die() { printf 'build: FAILED: %s\n' "$*" >&2; exit 1; }

[ "$(uname -s)-$(uname -m)" = "Linux-x86_64" ] || die "this recipe builds on Linux x86-64 only"
command -v objdump >/dev/null || die "objdump is needed for the portability check (Debian: binutils)"
command -v cmake >/dev/null && command -v c++ >/dev/null \
  || die "cmake and a C++ compiler are needed to compile llama.cpp (Debian: cmake g++)"
t_start=$(date +%s)

# -- 1. the build environment ---------------------------------------------------------------------
if [ ! -x "$VPY" ]; then
  say "creating the build environment $VENV"
  "$PY" -m venv "$VENV"
  "${PIP[@]}" install -q --upgrade pip wheel 2>&1 | grep -v '^WARNING: Location' >&2 || true
fi
"$VPY" -c 'import sys, sysconfig
assert sys.version_info >= (3, 10), "Python 3.10 or newer is needed"
assert sysconfig.get_config_var("Py_ENABLE_SHARED"), "this Python has no shared libpython (PyInstaller needs one)"' \
  || die "unsuitable build interpreter: $PY"

# -- 2. llama-cpp-python for portable CPUs (compiled once, then cached; ./ws uses the same wheel) --
wheel=$("$HERE/llama_wheel.sh" "$VPY") || die "no portable llama-cpp-python wheel"

# -- 3. PyInstaller, llama-cpp-python and the workstation (not editable) -----------------------
quiet_pip() {   # pip install, its messages on stderr less the noise about absent local indexes
  local rc=0
  "${PIP[@]}" install -q "$@" >"$BUILD/logs/pip.log" 2>&1 || rc=$?
  grep -v '^WARNING: Location' "$BUILD/logs/pip.log" >&2 || true
  return $rc
}
mkdir -p "$BUILD/logs"
say "installing PyInstaller, llama-cpp-python and the workstation into the build environment"
deps_stamp="$BUILD/.deps-$(cat pyproject.toml "$PKG/linux/build.sh" | sha256sum | cut -c1-12)-$(basename "$wheel")"
if [ ! -f "$deps_stamp" ]; then
  quiet_pip "pyinstaller>=6.10,<7" || die "could not install PyInstaller"
  quiet_pip --force-reinstall --no-deps "$wheel" || die "could not install $wheel"
  quiet_pip "$wheel" "$REPO" || die "could not install the workstation's dependencies"
  rm -f "$BUILD"/.deps-*; touch "$deps_stamp"
fi
quiet_pip --force-reinstall --no-deps "$REPO" || die "could not install the workstation"  # this checkout, every time
"$VPY" -c 'import PyInstaller, llama_cpp, sleepvlm_ws, PySide6' \
  || die "the build environment is incomplete (see the pip messages above)"
"$VPY" - "$wheel" <<'EOF' || die "llama-cpp-python in the build environment is not the portable wheel"
import pathlib, sys, zipfile, llama_cpp
lib = pathlib.Path(llama_cpp.__file__).parent / "lib" / "libggml-cpu.so"
with zipfile.ZipFile(sys.argv[1]) as whl:
    packed = whl.read("llama_cpp/lib/libggml-cpu.so")
assert lib.read_bytes() == packed, f"{lib} differs from the cached portable wheel"
EOF

# -- 4. the one-folder application ----------------------------------------------------------------
say "running PyInstaller"
t0=$(date +%s)
rm -rf "${DIST:?}/$APP" "$TARBALL"
"$VENV/bin/pyinstaller" --noconfirm --log-level WARN --distpath "$DIST" --workpath "$BUILD/work" \
  "$PKG/sleepvlm-ws.spec" >"$BUILD/logs/pyinstaller.log" 2>&1 \
  || { tail -30 "$BUILD/logs/pyinstaller.log" >&2; die "PyInstaller failed (log: $BUILD/logs/pyinstaller.log)"; }
say "PyInstaller: $(( $(date +%s) - t0 )) s"
OUTDIR="$DIST/$APP"
[ -x "$OUTDIR/sleepvlm-ws" ] || die "PyInstaller made no $OUTDIR/sleepvlm-ws"

# llama.cpp: the wheel's libX.so.0 are byte copies of libX.so; ship them as links (one copy)
for lib in "$OUTDIR"/_internal/llama_cpp/lib/lib*.so.0; do
  if cmp -s "$lib" "${lib%.0}"; then ln -sfn "$(basename "${lib%.0}")" "$lib"; fi
done

# desktop integration, licences and the bundle's own README
install -m 644 "$HERE/sleepvlm-ws.desktop" "$OUTDIR/sleepvlm-ws.desktop"
install -m 644 "$PKG/icons/sleepvlm-ws.png" "$OUTDIR/sleepvlm-ws.png"
install -m 644 "$PKG/icons/sleepvlm-ws.svg" "$OUTDIR/sleepvlm-ws.svg"
install -m 755 "$HERE/install.sh" "$OUTDIR/install.sh"
install -m 644 "$PKG/NOTICE.txt" "$OUTDIR/NOTICE.txt"
# the newest glibc symbol version anything in the bundle asks for = the oldest glibc it runs on
glibc=$(find "$OUTDIR" -type f \( -name '*.so*' -o -name sleepvlm-ws \) -print0 | xargs -0 objdump -T 2>/dev/null \
  | grep -o 'GLIBC_2\.[0-9]*' | sort -t. -k2,2n -u | tail -1 | sed 's/GLIBC_//')
say "the bundle needs glibc $glibc or newer (this machine's is $(ldd --version | head -1 | awk '{print $NF}'))"
sed -e "s/@VERSION@/$("$VPY" -c 'import sleepvlm_ws; print(sleepvlm_ws.__version__)')/" \
    -e "s/@DATE@/$(date -u +%Y-%m-%d)/" -e "s/@GLIBC@/$glibc/" "$PKG/README-bundle.txt" >"$OUTDIR/README-bundle.txt"
"$VPY" "$PKG/collect_licences.py" "$OUTDIR/licences" >&2

# -- 4b. the X11 window: Qt's xcb plugin finds every library it links in the bundle, except the few
#        every desktop has (docs/PACKAGING.md, "System libraries still needed")
say "X11 check: the libraries Qt's xcb platform plugin links are inside the bundle"
SYSTEM_LIBS=" libc.so.6 libm.so.6 libdl.so.2 libpthread.so.0 librt.so.1 libGL.so.1 libEGL.so.1 libOpenGL.so.0 libGLX.so.0 libxcb.so.1 "
lacking=()
for elf in "$OUTDIR"/_internal/PySide6/Qt/plugins/platforms/libqxcb.so "$OUTDIR"/_internal/PySide6/Qt/lib/libQt6XcbQpa.so.6; do
  [ -f "$elf" ] || die "the bundle has no $(basename "$elf"): Qt's xcb platform was not collected"
  for lib in $(objdump -p "$elf" | awk '$1 == "NEEDED" {print $2}'); do
    case "$SYSTEM_LIBS" in *" $lib "*) continue ;; esac
    [ -n "$(find "$OUTDIR/_internal" -name "$lib" -print -quit)" ] || lacking+=("$lib")
  done
done
if [ ${#lacking[@]} -gt 0 ]; then
  die "the bundle lacks $(printf '%s\n' "${lacking[@]}" | sort -u | tr '\n' ' ')(this build machine does not have them, so PyInstaller could not collect them; Debian: apt-get install $(sed -n 's/^desktop: *//p' "$HERE/debian-qt-libs.txt"))"
fi

# -- 5. portability: no AVX-512 in what ships -----------------------------------------------------
say "portability check (AVX-512 uses zmm registers; a -march=native build on this CPU would use them):"
bad=0
for lib in "$OUTDIR"/_internal/llama_cpp/lib/lib*.so; do
  n=$(objdump -d "$lib" | grep -c zmm || true)
  printf 'build:   %-28s zmm instructions: %s\n' "$(basename "$lib")" "$n" >&2
  [ "$n" = 0 ] || bad=1
done
[ "$bad" = 0 ] || die "the bundled llama.cpp holds AVX-512 code: it would crash on CPUs without it"

# -- 6. the archive -------------------------------------------------------------------------------
say "writing $TARBALL"
tar -C "$DIST" -czf "$TARBALL" "$APP"
say "bundle folder: $(du -sh "$OUTDIR" | cut -f1)  ($OUTDIR)"
say "tar.gz:        $(du -sh "$TARBALL" | cut -f1)  ($TARBALL)"
say "done in $(( $(date +%s) - t_start )) s"

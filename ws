#!/usr/bin/env bash
# SleepVLM Workstation: one entry point for set-up, the demo and the tests.
#   ./ws demo    set up (first run only) and open the workstation on the bundled demo study
#   ./ws test    set up (first run only) and run the test suite
# Anything after the command is passed on (./ws demo --scorer alice, ./ws test -k audit).
set -euo pipefail
cd "$(dirname "$0")"

VENV="${SLEEPVLM_WS_VENV:-.venv}"
PY="${PYTHON:-python3}"

# Debian packages Qt needs: the offscreen platform (tests) and the X11 platform (a real desktop;
# the tests need it too, since they build the desktop bundle, which collects those libraries).
qt_debs() { sed -n "s/^$1: *//p" packaging/linux/debian-qt-libs.txt; }
QT_DEBS_OFFSCREEN="$(qt_debs offscreen)"
QT_DEBS_DESKTOP="$(qt_debs desktop)"

need_debs() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "ws: installing Debian packages: ${missing[*]}" >&2
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "ws: please install these system packages first: ${missing[*]}" >&2
  fi
}

# On Linux x86-64, llama-cpp-python comes from the portable wheel the desktop bundle is built with
# (packaging/linux/llama_wheel.sh: compiled once and cached), so a machine that runs the tests and
# builds the bundle (CI) compiles llama.cpp once, not twice. Elsewhere, or if that build fails,
# pip compiles it for this machine as the package's dependency.
portable_llama() {
  [ "$(uname -s)-$(uname -m)" = "Linux-x86_64" ] || return 0
  "$VENV/bin/python" -c "import llama_cpp" >/dev/null 2>&1 && return 0
  local wheel
  wheel="$(packaging/linux/llama_wheel.sh "$VENV/bin/python")" || return 0
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps "$wheel" 2>&1 \
    | grep -v "^WARNING: Location" >&2 || true
}

setup() {  # $1: pip extras ("" or "test")
  local extras="$1" stamp
  if command -v dpkg >/dev/null; then
    need_debs $QT_DEBS_OFFSCREEN $QT_DEBS_DESKTOP
  fi
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  stamp="$VENV/.ws-installed-$(cat pyproject.toml | sha256sum | cut -c1-16)-${extras:-base}"
  if [ ! -f "$stamp" ]; then
    echo "ws: installing the workstation into $VENV (first run only)" >&2
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null 2>&1 || true
    portable_llama
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".${extras:+[$extras]}" 2>&1 \
      | grep -v "^WARNING: Location" >&2 || true
    "$VENV/bin/python" -c "import sleepvlm_ws" || { echo "ws: installation failed" >&2; exit 1; }
    touch "$stamp"
  fi
}

cmd="${1:-}"; shift || true
case "$cmd" in
  demo)
    setup ""
    if [ -z "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ] && [ -z "${QT_QPA_PLATFORM:-}" ]; then
      echo "ws: no display found: running offscreen, saving a screenshot and closing after load" >&2
      export QT_QPA_PLATFORM=offscreen
      exec "$VENV/bin/sleepvlm-ws" demo --screenshot demo-screenshot.png --exit-after 3 "$@"
    fi
    exec "$VENV/bin/sleepvlm-ws" demo "$@"
    ;;
  test)
    setup "test"
    export QT_QPA_PLATFORM=offscreen
    exec "$VENV/bin/python" -m pytest -q "$@"
    ;;
  *)
    sed -n '2,5p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac

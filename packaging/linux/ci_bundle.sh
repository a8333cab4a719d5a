#!/usr/bin/env bash
# Optional CI step: build the Linux desktop bundle, then smoke-test what was built.
#   packaging/linux/ci_bundle.sh        exit 0 only if both the build and every smoke check pass
# The test suite runs it (tests/test_bundle.py), so CI builds and smoke-tests the bundle on every
# run (docs/PACKAGING.md has the cost: about 7 minutes on 2 cores the first time, most of it
# compiling llama.cpp, under 2 minutes after). As root on Debian/Ubuntu it installs what it lacks:
# the build tools (cmake, g++, binutils) and what the smoke test's X11 and .desktop checks use
# (xvfb, xauth, desktop-file-utils), and Qt's X11 libraries (debian-qt-libs.txt), which the bundle
# carries.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"

missing=()
for tool in cmake:cmake c++:g++ objdump:binutils Xvfb:xvfb xauth:xauth \
            desktop-file-validate:desktop-file-utils; do
  command -v "${tool%%:*}" >/dev/null || missing+=("${tool##*:}")
done
# Qt's xcb platform libraries: PyInstaller collects them from this machine into the bundle, so a
# build machine without them makes a bundle that cannot open a window (the smoke test's X11 check).
if command -v dpkg >/dev/null; then
  for deb in $(sed -n 's/^desktop: *//p' "$HERE/debian-qt-libs.txt"); do
    dpkg -s "$deb" >/dev/null 2>&1 || missing+=("$deb")
  done
fi
if [ ${#missing[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "ci_bundle: installing ${missing[*]}" >&2
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "ci_bundle: FAILED: please install ${missing[*]}" >&2; exit 1
  fi
fi

t0=$(date +%s)
"$HERE/build.sh" || { echo "ci_bundle: FAILED: the build" >&2; exit 1; }
"$HERE/smoke_test.sh" || { echo "ci_bundle: FAILED: the smoke test" >&2; exit 1; }
echo "ci_bundle: bundle built and smoke-tested in $(( $(date +%s) - t0 )) s"

#!/usr/bin/env bash
# Install this SleepVLM Workstation bundle: copy the folder, put `sleepvlm-ws` on the PATH and add
# the menu entry and icon.  ./install.sh [--prefix DIR]
#   root, no --prefix:   /opt/sleepvlm-ws, /usr/local/bin, /usr/share/applications, /usr/share/icons
#   user, no --prefix:   ~/.local/opt/sleepvlm-ws, ~/.local/bin, ~/.local/share/{applications,icons}
#   --prefix DIR:        DIR/opt/sleepvlm-ws, DIR/bin, DIR/share/{applications,icons}
set -euo pipefail
SRC="$(cd "$(dirname "$0")" && pwd)"
if [ "${1:-}" = "--prefix" ] && [ -n "${2:-}" ]; then
  mkdir -p "$2"; P="$(cd "$2" && pwd)"; OPT="$P/opt"; BIN="$P/bin"; SHARE="$P/share"
elif [ $# -gt 0 ]; then
  echo "usage: $0 [--prefix DIR]" >&2; exit 2
elif [ "$(id -u)" = 0 ]; then
  OPT=/opt; BIN=/usr/local/bin; SHARE=/usr/share
else
  OPT="$HOME/.local/opt"; BIN="$HOME/.local/bin"; SHARE="${XDG_DATA_HOME:-$HOME/.local/share}"
fi
[ -x "$SRC/sleepvlm-ws" ] || { echo "install.sh: run it from inside the bundle folder" >&2; exit 2; }
DEST="$OPT/sleepvlm-ws"
mkdir -p "$OPT" "$BIN" "$SHARE/applications" "$SHARE/icons/hicolor/256x256/apps" \
  "$SHARE/icons/hicolor/scalable/apps"
if [ "$SRC" != "$DEST" ]; then
  rm -rf "$DEST.new"; cp -a "$SRC" "$DEST.new"; rm -rf "$DEST"; mv "$DEST.new" "$DEST"
fi
ln -sfn "$DEST/sleepvlm-ws" "$BIN/sleepvlm-ws"
install -m 644 "$DEST/sleepvlm-ws.png" "$SHARE/icons/hicolor/256x256/apps/sleepvlm-ws.png"
install -m 644 "$DEST/sleepvlm-ws.svg" "$SHARE/icons/hicolor/scalable/apps/sleepvlm-ws.svg"
sed -e "s|^Exec=sleepvlm-ws|Exec=\"$DEST/sleepvlm-ws\"|" -e "s|^TryExec=.*|TryExec=$DEST/sleepvlm-ws|" \
  "$DEST/sleepvlm-ws.desktop" >"$SHARE/applications/sleepvlm-ws.desktop"
command -v update-desktop-database >/dev/null && update-desktop-database -q "$SHARE/applications" || true
command -v gtk-update-icon-cache >/dev/null && gtk-update-icon-cache -q -t "$SHARE/icons/hicolor" || true
echo "installed: $DEST (program: $BIN/sleepvlm-ws, menu entry: $SHARE/applications/sleepvlm-ws.desktop)"

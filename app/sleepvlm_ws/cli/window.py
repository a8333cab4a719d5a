"""The window commands: demo and open (Qt loads here only, so the other commands run headless).

Without a display (no ``DISPLAY`` or ``WAYLAND_DISPLAY``, and no ``QT_QPA_PLATFORM`` chosen) Qt
would abort the process; a window command then runs offscreen when it was asked for a
screenshot (as ``./ws demo`` does) and otherwise says so in one line and exits 2.
"""

from __future__ import annotations

import os
import sys

from ..demo import ensure_demo_recording
from .common import EXIT_BAD_INPUT, EXIT_OK, default_pack

NO_DISPLAY = ("no display to open the window on (DISPLAY is not set): run it on a desktop, or "
              "add --screenshot FILE to draw it offscreen")


def _display_ready(args) -> bool:
    """True when the window can be drawn: a display, a platform chosen, or a screenshot asked
    for (then offscreen); else the one-line reason is printed."""
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or os.environ.get("QT_QPA_PLATFORM"):
        return True
    if args.screenshot:
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
        return True
    print(f"sleepvlm-ws {args.command}: {NO_DISPLAY}", file=sys.stderr)
    return False


def cmd_demo(args) -> int:
    if not args.prepare_only and not _display_ready(args):
        return EXIT_BAD_INPUT
    path = ensure_demo_recording(progress=lambda m: print(m, file=sys.stderr))
    if args.prepare_only:
        print(path)
        return EXIT_OK
    from ..ui.app import run_gui  # late: Qt and a display are needed by the window only

    model = _model(args)
    return run_gui(str(path), scorer=args.scorer, screenshot=args.screenshot,
                   exit_after=args.exit_after, model=model, score=model is not None and not args.no_score)


def _model(args) -> str | None:
    """The pack to load: ``--model``, else the default pack unless ``--no-model``."""
    if args.model is not None or args.no_model:
        return args.model
    pack = default_pack()
    return str(pack) if pack else None


def cmd_open(args) -> int:
    if not _display_ready(args):
        return EXIT_BAD_INPUT
    from ..ui.app import run_gui  # late: Qt and a display are needed by the window only

    model = _model(args)     # as demo: the default pack, which resumes what the study lacks
    return run_gui(args.recording, study=args.study, scorer=args.scorer,
                   screenshot=args.screenshot, exit_after=args.exit_after, model=model,
                   score=model is not None and args.recording is not None and not args.no_score)

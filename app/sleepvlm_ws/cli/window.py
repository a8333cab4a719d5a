"""The window commands: demo and open (Qt loads here only, so the other commands run headless)."""

from __future__ import annotations

import sys

from ..demo import ensure_demo_recording
from .common import EXIT_OK, default_pack


def cmd_demo(args) -> int:
    path = ensure_demo_recording(progress=lambda m: print(m, file=sys.stderr))
    if args.prepare_only:
        print(path)
        return EXIT_OK
    from ..ui.app import run_gui  # late: Qt and a display are needed by the window only

    model = args.model
    if model is None and not args.no_model:
        pack = default_pack()
        model = str(pack) if pack else None
    return run_gui(str(path), scorer=args.scorer, screenshot=args.screenshot,
                   exit_after=args.exit_after, model=model, score=model is not None and not args.no_score)


def cmd_open(args) -> int:
    from ..ui.app import run_gui  # late: Qt and a display are needed by the window only

    return run_gui(args.recording, study=args.study, scorer=args.scorer,
                   screenshot=args.screenshot, exit_after=args.exit_after, model=args.model)

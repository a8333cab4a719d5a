"""``sleepvlm-ws``: the workstation's command line.

Exit codes: 0 success, 1 a check that ran and failed (``audit verify``), 2 bad input (one line
on stderr naming the file and the problem), 3 an internal error (one line; details in the log).
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import sys
from pathlib import Path

from . import __version__
from .errors import InputError

log = logging.getLogger("sleepvlm_ws")

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERNAL = 0, 1, 2, 3


def _default_scorer() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in some containers
        return "technologist"


def _study_for(path: str, scorer: str, *, create: bool):
    """Open a study file; a recording path stands for the study next to it (created if asked)."""
    from .core.study import STUDY_SUFFIX, Study, default_study_path

    p = Path(path)
    if p.suffix == STUDY_SUFFIX or (not create and not default_study_path(p).exists()):
        return Study.open(p)
    if default_study_path(p).exists():
        return Study.open(default_study_path(p))
    from .core.session import ScoringSession

    session = ScoringSession.open(p, scorer=scorer)
    session.recording.close()
    return session.study


# -- commands -----------------------------------------------------------------------------
def cmd_demo(args) -> int:
    from .demo import ensure_demo_recording

    path = ensure_demo_recording(progress=lambda m: print(m, file=sys.stderr))
    if args.prepare_only:
        print(path)
        return EXIT_OK
    from .ui.app import run_gui

    return run_gui(str(path), scorer=args.scorer, screenshot=args.screenshot,
                   exit_after=args.exit_after)


def cmd_open(args) -> int:
    from .ui.app import run_gui

    return run_gui(args.recording, study=args.study, scorer=args.scorer,
                   screenshot=args.screenshot, exit_after=args.exit_after)


def cmd_info(args) -> int:
    from .core.montage import auto_montage, montage_summary
    from .core.recording import Recording

    rec = Recording.open(args.recording)
    try:
        info = rec.info_dict()
        montage = auto_montage([c.label for c in rec.channels])
        info["montage"] = {role: (None if d is None else d.name) for role, d in montage.roles.items()}
        info["missing_roles"] = montage.missing
        if args.json:
            print(json.dumps(info, indent=2, ensure_ascii=False))
            return EXIT_OK
        print(f"Recording  {info['path']}")
        print(f"Format     {info['file_type']} (read with {info['backend']})")
        print(f"Start      {info.get('start') or 'unknown'}")
        print(f"Duration   {info['duration_s'] / 3600:.2f} h ({info['duration_s']:.0f} s), "
              f"{info['n_epochs']} epochs of 30 s")
        print(f"Channels   {len(info['channels'])}")
        for ch in info["channels"]:
            print(f"  {ch['label']:<24} {ch['fs']:>7g} Hz  {ch['unit']}")
        print("Montage")
        for line in montage_summary(montage):
            print(f"  {line}")
    finally:
        rec.close()
    return EXIT_OK


def cmd_import(args) -> int:
    from .core.formats import import_hypnogram
    from .core.study import IMPORTED

    study = _study_for(args.study, args.scorer, create=True)
    try:
        hyp = import_hypnogram(args.hypnogram, fmt=args.format, n_epochs=study.n_epochs)
        current = study.stages()
        changes = [(i, s) for i, s in enumerate(hyp.stages[: study.n_epochs]) if s is not current[i]]
        note = "imported hypnogram"  # the file name goes into the audit event, which de-identification strips
        study.score_many(changes, scorer=args.scorer, source=IMPORTED, note=note)
        study.record_event("import", {"file": str(Path(args.hypnogram).resolve()),
                                      "epochs_changed": len(changes),
                                      "warnings": list(getattr(hyp, "warnings", []) or [])},
                           actor=args.scorer)
        for w in getattr(hyp, "warnings", []) or []:
            print(f"warning: {w}", file=sys.stderr)
        print(f"{study.path}: imported {len(changes)} epoch stage(s) from {args.hypnogram}")
    finally:
        study.close()
    return EXIT_OK


def cmd_export(args) -> int:
    from .core.export import export_study

    study = _study_for(args.study, args.scorer, create=False)
    try:
        out = export_study(study, args.format, args.out, scorer=args.scorer,
                           deidentify=args.deidentify)
    finally:
        study.close()
    print(out)
    return EXIT_OK


def cmd_audit_verify(args) -> int:
    from .core.audit import verify

    result = verify(args.study)
    if result.ok:
        print(f"{args.study}: audit trail intact ({result.reason})")
        return EXIT_OK
    print(f"{args.study}: {result.reason}", file=sys.stderr)
    return EXIT_FAILED


def cmd_synth(args) -> int:
    from .core.synth import generate_night, write_night_edf

    night = generate_night(seed=args.seed, hours=args.hours, fs=args.fs)
    write_night_edf(night, args.out, with_hypnogram=not args.no_hypnogram)
    print(args.out)
    return EXIT_OK


# -- parser -------------------------------------------------------------------------------
def _gui_options(s: argparse.ArgumentParser) -> None:
    s.add_argument("--screenshot", help="save a PNG of the window once the study is on screen")
    s.add_argument("--exit-after", type=float, metavar="SECONDS",
                   help="close the window this long after the study is on screen (unattended runs)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sleepvlm-ws", description="SleepVLM Workstation")
    p.add_argument("--version", action="version", version=f"sleepvlm-ws {__version__}")
    p.add_argument("--scorer", default=_default_scorer(), help="scorer name written into decisions")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("demo", help="open the workstation on the bundled demo study")
    s.add_argument("--prepare-only", action="store_true", help="only generate the demo recording; print its path")
    _gui_options(s)
    s.set_defaults(func=cmd_demo)

    s = sub.add_parser("open", help="open the workstation (optionally on a recording)")
    s.add_argument("recording", nargs="?")
    s.add_argument("--study", help="study file (default: next to the recording)")
    _gui_options(s)
    s.set_defaults(func=cmd_open)

    s = sub.add_parser("info", help="channels, rates, duration, montage mapping, epochs")
    s.add_argument("recording")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_info)

    s = sub.add_parser("import", help="import a hypnogram into a study (recorded as 'imported' decisions)")
    s.add_argument("study", help="study file, or a recording (its study is used or created)")
    s.add_argument("hypnogram")
    s.add_argument("--format", choices=["tsv", "csv", "edf", "xml", "json"])
    s.set_defaults(func=cmd_import)

    s = sub.add_parser("export", help="export the scored hypnogram")
    s.add_argument("study")
    s.add_argument("--format", required=True, choices=["tsv", "csv", "edf", "xml", "json"])
    s.add_argument("--out", required=True)
    s.add_argument("--deidentify", action="store_true", help="leave out patient and recording identifiers")
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("audit", help="audit trail tools")
    asub = s.add_subparsers(dest="audit_command", required=True)
    v = asub.add_parser("verify", help="exit 0 if the audit chain is intact, 1 naming the first broken event")
    v.add_argument("study")
    v.set_defaults(func=cmd_audit_verify)

    s = sub.add_parser("synth", help="write a synthetic overnight PSG (EDF+ with its hypnogram)")
    s.add_argument("out")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--hours", type=float, default=8.0)
    s.add_argument("--fs", type=float, default=256.0)
    s.add_argument("--no-hypnogram", action="store_true")
    s.set_defaults(func=cmd_synth)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse already printed a one-line usage error
        return EXIT_BAD_INPUT if e.code not in (0, None) else EXIT_OK
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except InputError as e:
        print(f"sleepvlm-ws: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("sleepvlm-ws: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a defect, not bad input: one line here, the traceback in the log
        from .paths import user_data_dir

        log_path = user_data_dir() / "error.log"
        import traceback

        with open(log_path, "a", encoding="utf-8") as fh:
            traceback.print_exc(file=fh)
        print(f"sleepvlm-ws: internal error: {type(e).__name__}: {e} (details in {log_path})",
              file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())

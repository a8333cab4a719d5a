"""``sleepvlm-ws report STUDY --out report.pdf [--deidentify]``: the PDF study report."""

from __future__ import annotations

import argparse

from ..core.study.study import Study
from ..core.trust.report import write_report
from ..errors import StudyError
from .common import study_path_for


def cmd_report(args) -> int:
    study_path = study_path_for(args.study)     # a recording stands for the study beside it
    if not study_path.is_file():   # Study.open would say so too; this keeps the line short
        raise StudyError(study_path, "no such study file")
    with Study.open(study_path) as study:
        out = write_report(study, args.out, author=args.scorer, deidentify=args.deidentify,
                           lights_off=args.lights_off, lights_on=args.lights_on)
    print(out)
    return 0


def _epoch(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an epoch number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"epochs are counted from 1, not {value}")
    return value - 1   # the core counts from 0


def add_report_command(sub) -> None:
    """Register ``report`` on the CLI's subparsers."""
    s = sub.add_parser("report", help="write the PDF study report (hypnogram, AASM sleep "
                                      "statistics, AI agreement, audit summary)")
    s.add_argument("study", help="study file (.sleepvlm), or a recording (the study beside it)")
    s.add_argument("--out", required=True, help="PDF file to write")
    s.add_argument("--deidentify", action="store_true",
                   help="leave out patient name, birth date, file names and recording ids")
    s.add_argument("--lights-off", type=_epoch, metavar="EPOCH",
                   help="first epoch in bed, counted from 1 (default: the first scored epoch)")
    s.add_argument("--lights-on", type=lambda t: _epoch(t) + 1, metavar="EPOCH",
                   help="last epoch in bed, counted from 1 (default: the last scored epoch)")
    s.set_defaults(func=cmd_report)

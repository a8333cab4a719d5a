"""The study and recording commands: info, import, export, audit verify, synth."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..core.signals.montage import auto_montage, montage_summary
from ..core.signals.recording import Recording
from ..core.study.audit_verify import verify
from ..core.study.export import export_study
from ..core.study.formats import import_hypnogram
from ..core.study.study import IMPORTED
from ..core.synth import generate_night, write_night_edf
from .common import EXIT_FAILED, EXIT_OK, printable, study_for, study_path_for


def cmd_info(args) -> int:
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
        for ch in info["channels"]:   # labels come from the file: control characters escaped
            print(f"  {printable(ch['label']):<24} {ch['fs']:>7g} Hz  {printable(ch['unit'])}")
        print("Montage")
        for line in montage_summary(montage):
            print(f"  {printable(line)}")
    finally:
        rec.close()
    return EXIT_OK


def cmd_import(args) -> int:
    study = study_for(args.study, args.scorer, create=True)
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
    study = study_for(args.study, args.scorer, create=False)
    try:
        out = export_study(study, args.format, args.out, scorer=args.scorer,
                           deidentify=args.deidentify)
    finally:
        study.close()
    print(out)
    return EXIT_OK


def cmd_audit_verify(args) -> int:
    study = study_path_for(args.study)        # a recording stands for the study beside it
    result = verify(study)
    if result.ok:
        print(f"{study}: audit trail intact ({result.reason})")
        return EXIT_OK
    print(f"{study}: {result.reason}", file=sys.stderr)
    return EXIT_FAILED


def cmd_synth(args) -> int:
    night = generate_night(seed=args.seed, hours=args.hours, fs=args.fs)
    write_night_edf(night, args.out, with_hypnogram=not args.no_hypnogram)
    print(args.out)
    return EXIT_OK

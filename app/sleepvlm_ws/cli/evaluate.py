"""``sleepvlm-ws evaluate RECORDING|FOLDER --reference HYPNOGRAM [--model PACK] [--json]``.

RECORDING may be a DREAMS excerpt (``excerptN.txt``, core/signals/dreams.py; ``--rate HZ`` for a file
the rate table does not list) with its ``Hypnogram_excerptN.txt``; a FOLDER pairs them by name.
DREAMS inputs are read and checked before the model is loaded, so bad input fails fast."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..core.base.stages import epoch_count
from ..core.model.model_pack import verify_pack
from ..core.model.settings import ModelSettings, cpu_count, open_runtime
from ..core.pipeline.evaluate import (evaluate_recording, find_scored_studies, is_dreams_recording,
                                      read_reference)
from ..core.pipeline.evaluation_tables import format_pooled, format_result, pooled
from ..core.signals import dreams
from ..errors import InputError
from .common import NO_DEFAULT_PACK, Progress, default_pack, positive_int


def cmd_evaluate(args) -> int:
    target = Path(args.recording)
    if target.is_dir():
        if args.reference:
            raise InputError(target, "a folder is evaluated against the hypnograms inside it; "
                                     "leave out --reference")
        pairs = find_scored_studies(target)
        if not pairs:
            raise InputError(target, "no recording with a hypnogram next to it (Sleep-EDF, MASS, "
                                     "X.edf + X.tsv/.csv/.xml/.json, or DREAMS excerptN.txt + "
                                     "Hypnogram_excerptN.txt naming)")
    else:
        if not args.reference:
            raise InputError(target, "--reference HYPNOGRAM is needed for a single recording")
        if not target.is_file():
            raise InputError(target, "no such recording")
        pairs = [(target, Path(args.reference))]
    # --rate is for the DREAMS text files the rate table does not list (in a folder, the listed
    # ones keep their own rate); they are all read and checked before the model loads
    rates = {rec: args.rate if not target.is_dir() or dreams.known_rate(rec) is None else None
             for rec, _ in pairs}
    for recording, reference in pairs:
        if is_dreams_recording(recording):
            signal = dreams.read_signal(recording, rates[recording])
            read_reference(reference, epoch_count(signal.duration_s))
    pack = Path(args.model) if args.model else default_pack()
    if pack is None:
        raise InputError(None, NO_DEFAULT_PACK)
    verify_pack(pack)
    settings = ModelSettings(threads=args.threads or cpu_count(), gpu_layers=args.gpu_layers).checked()
    runtime = open_runtime(pack, settings)
    results = []
    try:
        for recording, reference in pairs:
            bar = Progress(f"scoring {recording.name}")
            try:
                result = evaluate_recording(recording, reference, runtime,
                                            study_path=args.study if len(pairs) == 1 else None,
                                            with_yasa=not args.no_yasa, progress=bar,
                                            rate=rates[recording])
            finally:
                bar.close()
            results.append(result)
            if not args.json:
                print(format_result(result))
                print()
    finally:
        runtime.close()
    if args.json:
        if len(results) == 1 and not target.is_dir():
            doc = results[0].to_dict()
        else:
            doc = {"recordings": [r.to_dict() for r in results], "pooled": pooled(results)}
        json.dump(doc, sys.stdout, indent=1)
        print()
    elif len(results) > 1:
        print("\n".join(format_pooled(results)))
    return 0


def add_evaluate_command(sub) -> None:
    s = sub.add_parser("evaluate", help="score a recording (or a folder of scored recordings) with a "
                                        "model pack and compare with the reference hypnogram, "
                                        "side by side with YASA")
    s.add_argument("recording", help="EDF/BDF recording or DREAMS excerpt (excerptN.txt), or a folder "
                                     "of recordings with hypnograms")
    s.add_argument("--reference", help="the reference hypnogram (TSV, CSV, XML, JSON, EDF+ annotations, "
                                       "DREAMS Hypnogram_excerptN.txt)")
    s.add_argument("--rate", type=float, metavar="HZ",
                   help="sampling rate of a DREAMS text file its rate table does not list "
                        "(excerpt1-4 are known)")
    s.add_argument("--model", help="model pack folder (default: the installed default pack)")
    s.add_argument("--study", help="study file for the model's answers (default: one per recording "
                                   "in the user data folder, so a rerun resumes)")
    s.add_argument("--json", action="store_true", help="JSON on stdout, with every epoch")
    s.add_argument("--no-yasa", action="store_true", help="leave out YASA's figures")
    s.add_argument("--threads", type=positive_int, default=None)
    s.add_argument("--gpu-layers", type=int, default=0)
    s.set_defaults(func=cmd_evaluate)

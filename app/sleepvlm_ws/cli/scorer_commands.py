"""``sleepvlm-ws scorers``: other scorers of a study (import, compare, adjudicate)."""

from __future__ import annotations

import json
import sys

from ..core.base.stages import Stage, parse_stage
from ..core.study.scorings import import_scoring, scorers
from ..core.study.suggestions import SuggestionStore
from ..core.trust import second_opinion
from ..core.trust.study_consensus import adjudicate, compare_study_scorers, study_consensus
from ..errors import InputError
from .common import EXIT_OK, printable, study_for

DIFFERING_SHOWN = 20          # epochs listed by ``compare`` (all with --json)


def add_scorers_command(sub) -> None:
    s = sub.add_parser("scorers", help="other scorers of a study: import a scoring, compare the "
                                       "scorers, adjudicate the consensus's ties")
    ssub = s.add_subparsers(dest="scorers_command", required=True)
    i = ssub.add_parser("import", help="import another scorer's hypnogram (the study's own "
                                       "scoring is not changed)")
    i.add_argument("study", help="study file, or a recording (the study beside it)")
    i.add_argument("hypnogram")
    i.add_argument("--name", required=True, help="the scorer's name in this study (unique)")
    i.add_argument("--format", choices=["tsv", "csv", "edf", "xml", "json"])
    i.set_defaults(func=cmd_scorers_import)
    c = ssub.add_parser("compare", help="pairwise and Fleiss' kappa, each scorer against the "
                                        "others' consensus, the epochs where they differ")
    c.add_argument("study", help="study file, or a recording (the study beside it)")
    c.add_argument("--with-ai", action="store_true",
                   help="compare the AI's suggestions and the second opinion as further scorers")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_scorers_compare)
    a = ssub.add_parser("adjudicate", help="settle a tied epoch of the consensus")
    a.add_argument("study", help="study file, or a recording (the study beside it)")
    a.add_argument("epoch", type=int, help="the epoch, numbered from 1 as the window shows it")
    a.add_argument("stage", help="one of the tied stages (W, N1, N2, N3, R)")
    a.add_argument("--note", help="why (kept with the adjudication)")
    a.set_defaults(func=cmd_scorers_adjudicate)


def cmd_scorers_import(args) -> int:
    study = study_for(args.study, args.scorer, create=False)
    try:
        scorer, warnings = import_scoring(study, args.hypnogram, args.name, actor=args.scorer,
                                          fmt=args.format)
        for w in warnings:
            print(f"warning: {w}", file=sys.stderr)
        print(f"{study.path}: scorer '{printable(scorer.name)}' imported from {args.hypnogram}")
    finally:
        study.close()
    return EXIT_OK


def _extra(study) -> dict:
    out = {}
    models = SuggestionStore(study).models()
    if models:
        key = models[0][0]
        found = SuggestionStore(study).all_for(key)
        out["ai"] = [found[e].stage if e in found else None for e in range(study.n_epochs)]
    opinions = second_opinion.load(study)
    if opinions:
        out["second opinion"] = [opinions[e].stage if e in opinions else None
                                 for e in range(study.n_epochs)]
    return out


def _k(x) -> str:
    return "—" if x is None else f"{x:.3f}"


def cmd_scorers_compare(args) -> int:
    study = study_for(args.study, args.scorer, create=False)
    try:
        report = compare_study_scorers(study, _extra(study) if args.with_ai else None)
        ties = study_consensus(study)
    except ValueError as e:
        raise InputError(study.path, str(e)) from None
    finally:
        study.close()
    if args.json:
        doc = report.to_dict()
        doc["consensus"] = {"ties": list(ties.consensus.ties),
                            "unsettled": ties.consensus.unsettled,
                            "adjudicated": sorted(ties.applied), "stale": sorted(ties.stale)}
        print(json.dumps(doc, indent=2, ensure_ascii=False))
        return EXIT_OK
    names = [printable(n) for n in report.scorers]
    print(f"{study.path}: {len(names)} scorings of {report.n_epochs} epochs: {', '.join(names)}")
    f = report.fleiss
    if f is not None:
        print(f"Fleiss' kappa {_k(f.kappa)} over {f.n_epochs} epochs every technologist scored "
              f"({f.n_excluded} left out); per stage " +
              ", ".join(f"{s.value} {_k(k)}" for s, k in f.per_stage.items()))
    print("Cohen's kappa (pairs; epochs both scored)")
    for (a, b), ag in report.pairwise.items():
        print(f"  {printable(a) + ' / ' + printable(b):<36} {_k(ag.kappa)}  "
              f"accuracy {ag.accuracy:.3f}  over {ag.n_epochs}")
    if report.versus_others:
        print("Against the consensus of the other technologists (their ties left out)")
        for name, ag in report.versus_others.items():
            print(f"  {printable(name):<36} {_k(ag.kappa)}  accuracy {ag.accuracy:.3f}  "
                  f"({report.ties_of_others[name]} tied)")
    c = ties.consensus
    print(f"Consensus: {len(c.ties)} tied epoch(s), {len(c.unsettled)} waiting for "
          f"adjudication" + (f", {len(ties.stale)} adjudication(s) stale" if ties.stale else ""))
    print(f"They differ on {len(report.differing)} epoch(s)"
          + (":" if report.differing else ""))
    for d in report.differing[:DIFFERING_SHOWN]:
        print(f"  {printable(d.text())}")
    if len(report.differing) > DIFFERING_SHOWN:
        print(f"  ... and {len(report.differing) - DIFFERING_SHOWN} more (--json lists all)")
    return EXIT_OK


def cmd_scorers_adjudicate(args) -> int:
    study = study_for(args.study, args.scorer, create=False)
    try:
        try:
            stage = parse_stage(args.stage)
        except ValueError:
            raise InputError(study.path, f"'{args.stage}' is not a stage (W, N1, N2, N3, R)") from None
        if stage not in (Stage.W, Stage.N1, Stage.N2, Stage.N3, Stage.R):
            raise InputError(study.path, f"a tie is settled with W, N1, N2, N3 or R, not {stage.value}")
        adj = adjudicate(study, args.epoch - 1, stage, scorer=args.scorer, note=args.note)
        print(f"{study.path}: epoch {adj.epoch + 1} adjudicated {adj.stage.value} "
              f"(tied {', '.join(s.value for s in adj.tied)})")
        print(f"other scorers: {', '.join(printable(s.name) for s in scorers(study))}")
    finally:
        study.close()
    return EXIT_OK

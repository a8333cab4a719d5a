"""``sleepvlm-ws score``: the model's suggestion for every epoch, stored in the study."""

from __future__ import annotations

from pathlib import Path

from ..core.model.model_pack import verify_pack
from ..core.model.remote import parse_server_urls
from ..core.model.settings import ModelSettings, cpu_count, open_runtime
from ..core.pipeline.scoring_run import ScoringRun
from ..core.review.session import open_study
from ..core.signals.recording import Recording
from ..core.study.study import default_study_path
from ..errors import InputError
from .common import EXIT_OK, NO_DEFAULT_PACK, Progress, default_pack


def cmd_score(args) -> int:
    urls = None
    if args.server is not None:
        urls = parse_server_urls(args.server)
        if not urls:
            raise InputError(None, "--server needs the server's address, e.g. "
                                   "http://127.0.0.1:8080")
    else:
        for flag, given in (("--no-grammar", args.no_grammar), ("--parallel", args.parallel > 1),
                            ("--server-model", args.server_model is not None)):
            if given:
                raise InputError(None, f"{flag} is for --server: the embedded runtime answers "
                                       f"one request at a time, always under the grammar")
    rec = Recording.open(args.recording)
    try:
        pack = Path(args.model) if args.model else default_pack()
        if pack is None:
            raise InputError(None, NO_DEFAULT_PACK)
        verify_pack(pack)  # a bad pack or a hash mismatch stops here, before any study is made
        study_path = Path(args.study) if args.study else default_study_path(rec.path)
        study = open_study(rec, study_path, scorer=args.scorer)   # the recording and study, once
        try:
            summary = _score(args, rec, study, study_path, pack, urls)
        finally:
            study.close()
    finally:
        rec.close()
    per_epoch = summary.per_epoch_s()
    stored = sum(summary.stored.values())
    already = summary.already_stored.get("fast", 0)
    print(f"{study_path}: {stored} suggestion(s) stored, {already} epoch(s) already scored "
          f"by this model, {summary.skipped_no_signal} skipped (no signal)"
          + (f", {per_epoch:.2f} s per epoch" if per_epoch else ""))
    return EXIT_OK


def _score(args, rec, study, study_path: Path, pack: Path, urls):
    settings = ModelSettings(threads=args.threads or cpu_count(), gpu_layers=args.gpu_layers,
                             server_urls=", ".join(urls or []), server_grammar=not args.no_grammar,
                             server_model=args.server_model or "").checked()
    runtime = open_runtime(pack, settings)
    run = ScoringRun(rec, study.montage, study_path, runtime, rationale=args.rationale,
                     actor=args.scorer, parallel=args.parallel)
    bar = Progress("scoring")
    try:
        return run.run(progress=bar, study=study)
    finally:
        bar.close()

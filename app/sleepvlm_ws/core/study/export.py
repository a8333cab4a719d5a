"""Export a study's confirmed hypnogram, with its decisions and audit trail, and audit the export."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from pathlib import Path

from ..base.hypnogram import Hypnogram
from .formats import export_hypnogram
from .study import Study

# Study metadata that identifies the patient or the recording: left out when de-identifying.
IDENTIFYING_META = ("recording_path", "recording_fingerprint", "recording_start", "start", "patient",
                    "birthdate", "file", "path")


def study_hypnogram(study: Study) -> Hypnogram:
    start = study.meta.get("start")
    return Hypnogram(stages=study.stages(), start=datetime.fromisoformat(start) if start else None)


def export_study(study: Study, fmt: str, out: str | Path, *, scorer: str,
                 deidentify: bool = False) -> Path:
    """Write the technologist's hypnogram (never the AI's suggestions) to ``out`` in ``fmt``."""
    hyp = study_hypnogram(study)
    meta = {k: v for k, v in study.meta.items() if v is not None}
    decisions = [asdict(d) | {"stage": d.stage.value, "previous": d.previous.value}
                 for d in study.decisions()]
    audit = [asdict(e) for e in study.audit_events()]
    if deidentify:
        meta = {k: v for k, v in meta.items() if k not in IDENTIFYING_META}
        hyp.start = None
        for event in audit:  # file paths in audit payloads can carry patient names
            event["payload"] = {k: v for k, v in event["payload"].items() if k not in IDENTIFYING_META}
    path = export_hypnogram(hyp, fmt, out, decisions=decisions, audit=audit, meta=meta)
    study.record_event("export", {"format": fmt, "file": str(Path(path).resolve()),
                                  "deidentified": deidentify}, actor=scorer)
    return Path(path)

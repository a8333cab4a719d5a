"""Export a study's confirmed hypnogram, with its decisions and audit trail, and audit the export."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from pathlib import Path

from ..base.hypnogram import Hypnogram
from .formats import export_hypnogram
from .formats._common import suggestion_origins
from .study import Study

# Study metadata that identifies the patient or the recording: left out when de-identifying.
IDENTIFYING_META = ("recording_path", "recording_fingerprint", "recording_start", "start", "patient",
                    "birthdate", "file", "path")


def study_hypnogram(study: Study) -> Hypnogram:
    start = study.meta.get("start")
    return Hypnogram(stages=study.stages(), start=datetime.fromisoformat(start) if start else None)


def suggested_by(audit) -> dict[int, str]:
    """Decision id -> where the stage it accepted or overrode came from, read from the decisions'
    audit events: the stager's method (``yasa-0.8.1/clf_eeg``) for a suggestion led by a
    real-trained stager (``core.review.suggested_stage``), else ``model:`` and the model id."""
    out = {}
    for event in audit:   # AuditEvent records or their dicts
        payload = (event.get("payload") if isinstance(event, dict)
                   else getattr(event, "payload", None)) or {}
        ref = payload.get("suggestion")
        if not isinstance(ref, dict) or not isinstance(payload.get("decision"), int):
            continue
        source = ref.get("stage_source")
        out[payload["decision"]] = (str(source) if source else f"model:{ref.get('model_id')}")
    return out


def decision_records(study: Study, audit: list | None = None) -> list[dict]:
    """The study's decisions as plain records, each with ``suggested_by`` (see ``suggested_by``)
    and stage values as text: what every export carries. ``audit``: the audit events, when the
    caller has them already."""
    offered = suggested_by(study.audit_events() if audit is None else audit)
    return [asdict(d) | {"stage": d.stage.value, "previous": d.previous.value,
                         "suggested_by": offered.get(d.id)}
            for d in study.decisions()]


def accepted_origins(study: Study) -> dict[str, int]:
    """Origin (``suggested_by``) -> how many epochs' current stage is an accepted suggestion
    from it: the count the exports state (``formats._common.suggestion_origins``)."""
    return suggestion_origins(decision_records(study))


def export_study(study: Study, fmt: str, out: str | Path, *, scorer: str,
                 deidentify: bool = False) -> Path:
    """Write the technologist's hypnogram (never the AI's suggestions) to ``out`` in ``fmt``.
    Each decision carries ``suggested_by`` (see ``suggested_by``; None for a manual one)."""
    hyp = study_hypnogram(study)
    meta = {k: v for k, v in study.meta.items() if v is not None}
    audit = [asdict(e) for e in study.audit_events()]
    decisions = decision_records(study, audit)
    if deidentify:
        meta = {k: v for k, v in meta.items() if k not in IDENTIFYING_META}
        hyp.start = None
        for event in audit:  # file paths in audit payloads can carry patient names
            event["payload"] = {k: v for k, v in event["payload"].items() if k not in IDENTIFYING_META}
    path = export_hypnogram(hyp, fmt, out, decisions=decisions, audit=audit, meta=meta)
    study.record_event("export", {"format": fmt, "file": str(Path(path).resolve()),
                                  "deidentified": deidentify}, actor=scorer)
    return Path(path)

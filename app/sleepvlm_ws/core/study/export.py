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
    """The study's current stages as a ``Hypnogram`` (what exports and reports carry).

    Parameters
    ----------
    study : Study
        The open study.

    Returns
    -------
    Hypnogram
        Every epoch's current stage on the 30-s grid; ``start`` from the study's ``start``
        metadata (None when it has none).
    """
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
    from it: the count the exports state (``formats._common.suggestion_origins``).

    Parameters
    ----------
    study : Study
        The open study.

    Returns
    -------
    dict of str to int
        Keys are the real-trained stager's method (e.g. ``yasa-0.8.1/clf_eeg``) or ``model:`` and
        the model id; an epoch counts when its last decision accepted a suggestion. {} when none
        did (an overridden stage is the scorer's own).
    """
    return suggestion_origins(decision_records(study))


def export_study(study: Study, fmt: str, out: str | Path, *, scorer: str,
                 deidentify: bool = False) -> Path:
    """Write the technologist's hypnogram (never the AI's suggestions) to ``out`` in ``fmt``.

    Each decision carries ``suggested_by`` (see ``suggested_by``; None for a manual one). The file
    is written atomically, then the export is recorded in the study's audit trail.

    Parameters
    ----------
    study : Study
        The open study.
    fmt : str
        One of ``formats.FORMATS`` (``"tsv"``, ``"csv"``, ``"edf"``, ``"xml"``, ``"json"``; None:
        from the suffix of ``out``). The csv carries the decisions, the json the decisions, the
        audit trail and the study's metadata; the others hold stages only.
    out : str or Path
        The file to write.
    scorer : str
        Who exports: the actor of the audit event (required, not blank).
    deidentify : bool
        Leave out the recording's start time and the metadata and audit-payload fields that
        identify the patient or the recording (``IDENTIFYING_META``). Default False.

    Returns
    -------
    Path
        The file written.

    Raises
    ------
    HypnogramFormatError
        One line: an unknown format, a study with no epochs, or a file that cannot be written.
    ValueError
        For a blank ``scorer``, raised only after the file has been written (it is then not
        audited).
    """
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

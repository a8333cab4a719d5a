"""What a study report says, gathered from the study file (no drawing here; see ``report``).

- the header: study, recording, patient fields of the recording's EDF header (left out when
  de-identifying), who scored, the model pack behind the AI suggestions and the provenance
  line of its model card, and where the accepted or overridden suggested stages came from
  (the model, or the real-trained stager that led them: ``core.review.suggested_stage``);
- the confirmed hypnogram and its sleep statistics (``sleep_statistics``);
- the AI suggestions of the most recent model and their agreement with the final stages
  (``agreement``);
- an audit summary: decisions by source, where each epoch's final stage came from, the
  trail's integrity.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Iterable

from ...errors import InputError
from ..base.stages import SLEEP_STAGES, Stage
from ..model.model_pack import list_packs, load_manifest
from ..study.ai_runs import AI_RUN_FINISHED, AI_RUN_STARTED
from ..study.audit import EXPORT, IMPORT
from ..study.export import accepted_origins, study_hypnogram
from ..study.study import AI_ACCEPTED, AI_OVERRIDDEN, IMPORTED, MANUAL, UNDO, Study
from ..study.suggestions import SuggestionKey, SuggestionStore
from .agreement import Agreement, NoCommonEpochsError, agreement
from .sleep_statistics import SleepStatistics, sleep_statistics

DEIDENTIFIED = "(de-identified)"
#: How the sources of decisions are named in the report.
SOURCE_LABELS = {MANUAL: "Manual decisions", AI_ACCEPTED: "Accepted AI suggestions",
                 AI_OVERRIDDEN: "Overridden AI suggestions", IMPORTED: "Imported",
                 UNDO: "Undo"}


@dataclass(frozen=True)
class ModelInfo:
    model_id: str              # the LM file's SHA-256 (see core.model.runtime)
    renderer_version: str
    label: str                 # "name version (quantisation)" or what the run recorded
    provenance: str | None     # the provenance line of the pack's model card
    found_pack: bool           # the pack is installed here (else label comes from the audit)
    real_data: str | None = None   # the card's "Real data:" paragraph: what it scored on real EEG


@dataclass(frozen=True)
class AuditSummary:
    decisions_by_source: dict          # source -> decisions recorded (undone ones included)
    overrides_with_note: int
    undone: int
    final_source: dict                 # source (or "unscored") -> epochs whose stage it set
    ai_runs_started: int
    ai_runs_finished: int
    imports: int
    exports: int
    n_events: int
    chain_ok: bool
    chain_reason: str


@dataclass(frozen=True)
class ReportContent:
    header: list                       # (label, text) pairs, already de-identified
    stages: list                       # the technologist's final stages
    ai_stages: list | None             # the AI's stage per epoch (None: no suggestion)
    start: datetime | None             # recording start (None when de-identified or unknown)
    statistics: SleepStatistics | None  # None when nothing is scored
    model: ModelInfo | None
    agreement: Agreement | None
    agreement_problem: str | None      # why there is no agreement although suggestions exist
    accepted_compared: int             # compared epochs whose final stage was accepted from AI
    audit: AuditSummary
    deidentified: bool


# ------------------------------------------------------------------------ model packs
_PROVENANCE = re.compile(r"^[\s>*_\-]*provenance[*_]*\s*:[*_]*\s*(.+?)\s*$", re.IGNORECASE)


_REAL_DATA = re.compile(r"^[\s>*_\-]*real data[*_]*\s*:[*_]*\s*(.+?)\s*$", re.IGNORECASE)


def _paragraph(lines: list[str], start: int, first: str) -> str:
    """``first`` and the lines that continue its paragraph (up to a blank line or a heading)."""
    parts = [first]
    for line in lines[start + 1:]:
        if not line.strip() or line.lstrip().startswith(("#", "|", "---", "```")):
            break
        parts.append(line.strip())
    return " ".join(parts).strip("*_ ")


def model_card_real_data(text: str) -> str | None:
    """The card's ``Real data: ...`` paragraph (what the model scored on real recordings), or None.

    Parameters
    ----------
    text : str
        The model card (markdown).

    Returns
    -------
    str or None
        The whole paragraph on one line.
    """
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = _REAL_DATA.match(line)
        if m:
            return _paragraph(lines, i, m.group(1))
    return None


def pack_card_summary(pack_dir: str | Path) -> tuple[str | None, str | None]:
    """What a pack's model card says of where the model came from and how it did on real data.

    Parameters
    ----------
    pack_dir : path
        The model pack's folder.

    Returns
    -------
    (str or None, str or None)
        The provenance and the real-data paragraphs; None for what the card does not say or
        when the card (or the manifest) cannot be read.
    """
    try:
        card = load_manifest(pack_dir).model_card_path
        text = card.read_text(encoding="utf-8") if card is not None else ""
    except (OSError, UnicodeDecodeError, ValueError, InputError):
        return None, None
    return model_card_provenance(text), model_card_real_data(text)


def model_card_provenance(text: str) -> str | None:
    """The card's provenance line: the paragraph starting ``Provenance: ...`` (markdown list or
    bold marks allowed), whatever its line breaks; failing that, its first line of prose (not a
    heading). None for an empty card."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = _PROVENANCE.match(line)
        if m:
            return _paragraph(lines, i, m.group(1))
    for line in lines:
        if line.strip() and not line.lstrip().startswith(("#", "---", "```")):
            return line.strip().lstrip("-* ").strip()
    return None


def describe_model(study: Study, model_id: str, renderer_version: str,
                   search_dirs: Iterable[str | Path] | None = None) -> ModelInfo:
    """Name the model that made a study's suggestions.

    Parameters
    ----------
    study : Study
        The open study (its audit trail names the model a run used).
    model_id, renderer_version : str
        The suggestions' model (its LM file's SHA-256) and renderer.
    search_dirs : iterable of path, optional
        Where to look for installed packs (default: the usual pack folders).

    Returns
    -------
    ModelInfo
        The installed pack's label and model card where one has that LM hash, else the label
        the scoring run recorded (``model <hash prefix>`` when none).
    """
    for manifest in list_packs(search_dirs):
        if manifest.files["lm"].sha256 != model_id:
            continue
        provenance = real = None
        card = manifest.model_card_path
        if card is not None:
            try:
                text = card.read_text(encoding="utf-8")
                provenance, real = model_card_provenance(text), model_card_real_data(text)
            except (OSError, UnicodeDecodeError):
                provenance = real = None
        return ModelInfo(model_id, renderer_version, manifest.label, provenance, True, real)
    label = ""
    for event in study.audit_events():
        if event.kind == AI_RUN_STARTED and event.payload.get("model_id") == model_id:
            label = str(event.payload.get("model_label") or label)
    if not label or label == model_id:
        label = f"model {model_id[:12]}"
    return ModelInfo(model_id, renderer_version, label, None, False)


def ai_suggested_stages(study: Study, key: SuggestionKey | None = None
                        ) -> tuple[SuggestionKey, list] | None:
    """The model's own stage per epoch.

    Parameters
    ----------
    study : Study
        The open study.
    key : SuggestionKey, optional
        Whose suggestions (model and renderer); default: the model that made suggestions
        most recently.

    Returns
    -------
    (SuggestionKey, list) or None
        The key found (both passes) and the stage per epoch (None where it has none); None
        when that model made no suggestions here.
    """
    store = SuggestionStore(study)
    for found_key, _n in store.models():
        if key is None or found_key == key.for_pass(None):
            found = store.all_for(found_key)
            return found_key, [found[e].stage if e in found else None
                               for e in range(study.n_epochs)]
    return None


# ------------------------------------------------------------------------------ audit
def audit_summary(study: Study) -> AuditSummary:
    decisions = study.decisions()
    by_source = Counter(d.source for d in decisions)
    undone_ids = {d.undoes for d in decisions if d.source == UNDO}
    standing = _standing_sources(decisions)
    final = Counter()
    for epoch, stage in enumerate(study.stages()):
        if stage is Stage.UNSCORED:
            final["unscored"] += 1
        else:
            final[standing.get(epoch, "unknown")] += 1
    events = study.audit_events()
    kinds = Counter(e.kind for e in events)
    result = study.verify()
    return AuditSummary(
        decisions_by_source={s: by_source.get(s, 0) for s in SOURCE_LABELS},
        overrides_with_note=sum(1 for d in decisions
                                if d.source == AI_OVERRIDDEN and (d.note or "").strip()),
        undone=len(undone_ids), final_source=dict(final),
        ai_runs_started=kinds.get(AI_RUN_STARTED, 0),
        ai_runs_finished=kinds.get(AI_RUN_FINISHED, 0),
        imports=kinds.get(IMPORT, 0), exports=kinds.get(EXPORT, 0),
        n_events=len(events), chain_ok=bool(result.ok), chain_reason=result.reason)


# ----------------------------------------------------------------------------- header
def recording_patient_fields(path: Path) -> list[tuple[str, str]]:
    """Patient and recording identification from an EDF/BDF header (read-only, 168 bytes);
    [] when the file cannot be read. EDF+ subfields are split (code, sex, birth date, name)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(168)
    except OSError:
        return []
    if len(head) < 168:
        return []
    patient = head[8:88].decode("latin-1").strip()
    recording = head[88:168].decode("latin-1").strip()
    fields: list[tuple[str, str]] = []
    parts = patient.split(" ")
    if len(parts) >= 4:   # EDF+: code sex birthdate name, 'X' where unknown
        code, _sex, birth, name = parts[0], parts[1], parts[2], " ".join(parts[3:])
        for label, value in (("Patient", name.replace("_", " ")), ("Birth date", birth),
                             ("Patient code", code)):
            if value and value != "X":
                fields.append((label, value))
    elif patient:
        fields.append(("Patient", patient))
    if recording:
        fields.append(("Recording ID", recording))
    return fields


def _header(study: Study, *, author: str, deidentify: bool, model: ModelInfo | None,
            now: datetime) -> list[tuple[str, str]]:
    meta = study.meta
    scorers = Counter(d.scorer for d in study.decisions() if d.source != UNDO)
    scored, total = study.progress()
    rows: list[tuple[str, str]] = []
    if deidentify:
        rows += [("Study", DEIDENTIFIED), ("Recording", DEIDENTIFIED)]
    else:
        rows += [("Study", f"{study.path.name} (id {str(meta.get('study_id', ''))[:12]})"),
                 ("Recording", Path(str(meta.get("recording_path", ""))).name),
                 ("Recording start", _clock(meta.get("start")) or "unknown")]
        rows += recording_patient_fields(study.recording_path)
    rows += [("Epochs", f"{total} of 30 s, {scored} scored"),
             ("Scored by", ", ".join(name for name, _ in scorers.most_common()) or "nobody yet"),
             ("Report by", author),
             ("Report date", now.strftime("%Y-%m-%d %H:%M"))]
    if model is not None:
        rows.append(("Model pack", f"{model.label} · id {model.model_id[:12]}"
                     + ("" if model.found_pack else " (pack not installed here)")))
        if model.provenance:
            rows.append(("Provenance", model.provenance))
        if model.real_data:
            rows.append(("Real recordings", model.real_data))
    origins = Counter()
    for origin, n in accepted_origins(study).items():
        origins["model" if origin.startswith("model:") else "stager"] += n
    if origins:
        rows.append(("Suggested stages", _origins_text(origins)))
    return rows


def _origins_text(origins: Counter) -> str:
    """Where the accepted suggestions that still stand took their stage from (the count the
    exports state)."""
    parts = []
    if origins.get("stager"):
        parts.append(f"{origins['stager']} from YASA's stager (trained on real nights; it led "
                     f"where it could stage the epoch)")
    if origins.get("model"):
        parts.append(f"{origins['model']} from the model pack")
    return "standing as accepted: " + ", ".join(parts)


def _clock(iso: object) -> str | None:
    if not iso:
        return None
    try:
        return datetime.fromisoformat(str(iso)).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return str(iso)


def night_statistics(study: Study, *, lights_off: int | None = None,
                     lights_on: int | None = None) -> SleepStatistics | None:
    """The study's sleep statistics as the report and the statistics dialog show them.

    Parameters
    ----------
    study : Study
        The open study.
    lights_off, lights_on : int, optional
        Epoch indices (``lights_on`` exclusive); default: the recording's start and end, so a
        partly scored night reports its whole time in bed and marks what its unscored epochs
        would change (``SleepStatistics.provisional``).

    Returns
    -------
    SleepStatistics or None
        None while no epoch is scored (unless both lights are given).

    Raises
    ------
    ValueError
        Lights outside the night.
    """
    stages = study.stages()
    explicit = lights_off is not None and lights_on is not None
    if not stages or not (explicit or any(s.is_scored for s in stages)):
        return None
    return sleep_statistics(stages, lights_off=0 if lights_off is None else lights_off,
                            lights_on=len(stages) if lights_on is None else lights_on,
                            epoch_s=study_hypnogram(study).epoch_s)


# ------------------------------------------------------------------------- everything
def gather(study: Study, *, author: str, deidentify: bool = False,
           lights_off: int | None = None, lights_on: int | None = None,
           pack_dirs: Iterable[str | Path] | None = None,
           now: datetime | None = None) -> ReportContent:
    """Everything the report shows. ``pack_dirs``: where to look for the model pack (default:
    the usual pack folders). ``lights_off`` / ``lights_on``: epoch indices (see
    ``sleep_statistics``; default: the recording's start and end, so a partly scored night
    reports its whole time in bed and marks what its unscored epochs would change). Raises
    ValueError for lights outside the night."""
    stages = study.stages()
    hyp = study_hypnogram(study)
    statistics = night_statistics(study, lights_off=lights_off, lights_on=lights_on)
    model = ai_stages = result = problem = None
    accepted = 0
    ai = ai_suggested_stages(study)
    if ai is not None:
        found_key, ai_stages = ai
        model = describe_model(study, found_key.model_id, found_key.renderer_version, pack_dirs)
        try:
            result = agreement(stages, ai_stages)
        except NoCommonEpochsError as exc:
            problem = exc.problem
        accepted = _accepted_compared(study, stages, ai_stages)
    return ReportContent(
        header=_header(study, author=author, deidentify=deidentify, model=model,
                       now=now or datetime.now()),
        stages=stages, ai_stages=ai_stages, start=None if deidentify else hyp.start,
        statistics=statistics, model=model, agreement=result, agreement_problem=problem,
        accepted_compared=accepted, audit=audit_summary(study), deidentified=deidentify)


def _accepted_compared(study: Study, stages: list, ai_stages: list) -> int:
    """Compared epochs whose final stage stands from an accepted AI suggestion of the model's own
    stage (they agree by construction, so the reader should know how many there are; an
    accepted stage that YASA led and the model read otherwise is a real disagreement)."""
    standing = _standing_sources(study.decisions())
    return sum(1 for e, (s, a) in enumerate(zip(stages, ai_stages))
               if s in SLEEP_STAGES and s is a and standing.get(e) == AI_ACCEPTED)


def _standing_sources(decisions: list) -> dict[int, str]:
    """epoch -> source of the decision its current stage comes from: the epoch's latest
    decision that was not undone (an undo restores the stage before the decision it undid)."""
    undone = {d.undoes for d in decisions if d.source == UNDO}
    latest: dict[int, str] = {}
    for d in decisions:
        if d.source != UNDO and d.id not in undone:
            latest[d.epoch] = d.source
    return latest

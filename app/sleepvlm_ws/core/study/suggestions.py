"""AI suggestions in the study file: what the model said about each epoch, kept apart from the
technologist's decisions.

A suggestion is keyed by (model id, renderer version, epoch, pass). ``fast`` asks for the stage
and rule IDs only; ``rationale`` asks for the written reasoning too. Both may exist for an
epoch: the stage shown is the fast pass's (the one a whole-night run produces first and the
technologist reviews), the reasoning comes from the rationale pass, and a rationale pass that
named another stage is flagged.

Storing a suggestion changes no stage and writes no audit event of its own: a scoring run is
audited once when it starts and once when it ends (``record_run_started`` /
``record_run_finished``). The table is append-only. Only the technologist's act of accepting or
overriding a suggestion is a decision (``accept`` / ``override``), audited with a reference to
the suggestion (model id, pass, suggested stage, and the model's probability for that stage
when it is known).

Each suggestion may carry the model's confidence (schema v4): ``stage_probability``, the
probability of its stage, and ``stage_probabilities``, all five (``core.model.stage_confidence``: read
from the token probabilities under the answer grammar). Both are None when unknown (suggestions
stored before v4, servers that give no token probabilities); none is ever made up.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Iterable

from ..base.answer import Answer
from ..base.probabilities import probabilities_from_json
from ..base.stages import SLEEP_STAGES, Stage, parse_stage
from .audit import utc_now_iso
from .study import AI_ACCEPTED, AI_OVERRIDDEN, Decision, Study

FAST = "fast"
RATIONALE = "rationale"
PASSES = (FAST, RATIONALE)

# Audit event kinds for a scoring run (logged with Study.record_event)
AI_RUN_STARTED = "ai_run_started"
AI_RUN_FINISHED = "ai_run_finished"

# Flag set on a merged suggestion whose rationale pass named a different stage
RATIONALE_DISAGREES = "rationale_pass_disagrees"

_COLUMNS = ("id, model_id, renderer_version, epoch, pass, stage_text, stage, rules, rationale, "
            "flags, repaired, raw, prompt_tokens, completion_tokens, seconds, created, "
            "stage_probability, p_w, p_n1, p_n2, p_n3, p_r")


@dataclass(frozen=True)
class Suggestion:
    """What the model said about one epoch.

    ``stage`` is the parsed stage (None when the answer named no stage: it cannot be
    accepted); ``stage_text`` the stage as the model printed it. ``pass_name`` is the pass
    the stage comes from. A merged suggestion (``SuggestionStore.get``) takes the stage from
    the fast pass and the ``rationale`` from the rationale pass; ``rationale_pass_stage`` is
    then the stage the rationale pass named.

    ``stage_probability`` is the model's probability for ``stage`` and ``stage_probabilities``
    the five (Stage -> probability, sum 1), of the pass the stage comes from; None: unknown.

    A *led* suggestion (``core.review.suggested_stage.lead``) takes its stage from a
    real-trained stager instead: ``stage_source`` names it (e.g. ``yasa-0.8.1/clf_eeg``; None:
    the stage is the model's own), ``stage`` and the probabilities are the stager's, and
    ``model_stage`` / ``model_stage_probability`` keep what the model read. Rules, rationale
    and flags stay the model's: they explain ``model_stage``. Never stored: a led suggestion
    is made when shown, and its ``reference()`` names both."""

    epoch: int
    model_id: str
    renderer_version: str
    pass_name: str
    stage: Stage | None
    stage_text: str
    rules: tuple[str, ...] = ()
    rationale: str | None = None
    flags: tuple[str, ...] = ()
    repaired: Any = None
    raw: str = ""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    seconds: float | None = None
    created: str = ""
    id: int | None = None
    rationale_pass_stage: Stage | None = field(default=None, compare=False)
    stage_probability: float | None = None
    stage_probabilities: dict[Stage, float] | None = field(default=None, hash=False)
    stage_source: str | None = None
    model_stage: Stage | None = None
    model_stage_probability: float | None = None

    @property
    def led(self) -> bool:
        """The stage comes from a real-trained stager, not from the model."""
        return self.stage_source is not None

    @property
    def model_reading(self) -> Stage | None:
        """The stage the model itself named (what its rules and rationale explain)."""
        return self.model_stage if self.led else self.stage

    @property
    def model_probability(self) -> float | None:
        """The model's probability for ``model_reading`` (None: unknown)."""
        return self.model_stage_probability if self.led else self.stage_probability

    def reference(self) -> dict:
        """What a decision's audit event records about this suggestion (the probability only
        when known: a reference to a suggestion without one reads as before schema v4)."""
        ref = {"model_id": self.model_id, "renderer_version": self.renderer_version,
               "pass": self.pass_name,
               "suggested_stage": None if self.stage is None else self.stage.value,
               "stage_text": self.stage_text, "rules": list(self.rules)}
        if self.id is not None:
            ref["suggestion_id"] = self.id
        if self.stage_probability is not None:
            ref["stage_probability"] = round(float(self.stage_probability), 6)
        if self.led:
            ref["stage_source"] = self.stage_source
            ref["model_stage"] = None if self.model_stage is None else self.model_stage.value
            if self.model_stage_probability is not None:
                ref["model_stage_probability"] = round(float(self.model_stage_probability), 6)
        return ref


class SuggestionStore:
    """The suggestions of one open study (uses the study's own connection and thread)."""

    def __init__(self, study: Study):
        self.study = study

    # -- writing -----------------------------------------------------------------------
    def put(self, epoch: int, answer: Answer, *, model_id: str, renderer_version: str,
            pass_name: str, prompt_tokens: int | None = None,
            completion_tokens: int | None = None, seconds: float | None = None,
            stage_probabilities: Any = None) -> bool:
        """Store one answer (``core.base.answer.Answer``: stage, stage_text, rules, rationale,
        flags, repaired, raw), committed when this returns. False (nothing written) when a
        suggestion for this model, renderer, epoch and pass is already stored; anything but an
        Answer is a TypeError.

        ``stage_probabilities``: the model's five stage probabilities (``RuntimeAnswer.
        stage_probabilities``: Stage or stage value -> probability, sum 1), or None when
        unknown; a malformed distribution is a ValueError. Kept only with a stage."""
        if not isinstance(epoch, int) or isinstance(epoch, bool):
            raise TypeError(f"epoch must be a whole number, not {epoch!r}")
        if not 0 <= epoch < self.study.n_epochs:
            raise IndexError(f"epoch {epoch} is outside 0..{self.study.n_epochs - 1}")
        if not isinstance(answer, Answer):
            raise TypeError(f"put() stores an Answer, not {type(answer).__name__}")
        _check_key(model_id, renderer_version, pass_name)
        stage = _sleep_stage(answer.stage)
        probabilities = None
        if stage_probabilities is not None:
            probabilities = probabilities_from_json(stage_probabilities)
            if probabilities is None:
                raise ValueError(f"epoch {epoch}: not five stage probabilities summing to 1: "
                                 f"{stage_probabilities!r}")
            if stage is None:
                probabilities = None
        stage_text = answer.stage_text
        if stage_text is None:
            stage_text = "" if stage is None else stage.value
        row = (model_id, renderer_version, epoch, pass_name, str(stage_text),
               None if stage is None else stage.value,
               _json(list(answer.rules or ())),
               _text_or_none(answer.rationale),
               _json(_plain(answer.flags or [])),
               _json(_plain(answer.repaired)),
               str(answer.raw or ""),
               _int_or_none(prompt_tokens), _int_or_none(completion_tokens),
               _float_or_none(seconds), utc_now_iso(),
               None if probabilities is None else probabilities[stage],
               *((None,) * 5 if probabilities is None else
                 tuple(probabilities[s] for s in SLEEP_STAGES)))
        with self.study.transaction("the AI suggestion") as conn:
            cur = conn.execute(
                "INSERT INTO suggestions(model_id, renderer_version, epoch, pass, stage_text, "
                "stage, rules, rationale, flags, repaired, raw, prompt_tokens, completion_tokens,"
                " seconds, created, stage_probability, p_w, p_n1, p_n2, p_n3, p_r) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(model_id, renderer_version, epoch, pass) DO NOTHING", row)
            return cur.rowcount == 1

    # -- reading -----------------------------------------------------------------------
    def get(self, epoch: int, model_id: str, renderer_version: str) -> Suggestion | None:
        """The best suggestion for ``epoch``: the fast pass's stage with the rationale pass's
        reasoning (either alone when only one pass ran); None if there is none."""
        rows = self.study.query(f"SELECT {_COLUMNS} FROM suggestions WHERE epoch = ? AND "
                                f"model_id = ? AND renderer_version = ?",
                                (epoch, model_id, renderer_version))
        return _best([_from_row(r) for r in rows])

    def get_pass(self, epoch: int, model_id: str, renderer_version: str,
                 pass_name: str) -> Suggestion | None:
        """The stored answer of one pass, as the model gave it."""
        rows = self.study.query(f"SELECT {_COLUMNS} FROM suggestions WHERE epoch = ? AND "
                                f"model_id = ? AND renderer_version = ? AND pass = ?",
                                (epoch, model_id, renderer_version, pass_name))
        return _from_row(rows[0]) if rows else None

    def all_for(self, model_id: str, renderer_version: str) -> dict[int, Suggestion]:
        """epoch -> best suggestion, for every epoch this model has answered (hypnogram layer)."""
        rows = self.study.query(f"SELECT {_COLUMNS} FROM suggestions WHERE model_id = ? AND "
                                f"renderer_version = ? ORDER BY epoch, id",
                                (model_id, renderer_version))
        by_epoch: dict[int, list[Suggestion]] = {}
        for row in rows:
            s = _from_row(row)
            by_epoch.setdefault(s.epoch, []).append(s)
        return {epoch: _best(found) for epoch, found in by_epoch.items()}

    def missing_epochs(self, model_id: str, renderer_version: str, pass_name: str,
                       epochs: Iterable[int] | None = None) -> list[int]:
        """Epochs (of ``epochs``, default all) with no stored answer of this pass: what a
        resumed run still has to do."""
        _check_key(model_id, renderer_version, pass_name)
        wanted = range(self.study.n_epochs) if epochs is None else epochs
        done = {r[0] for r in self.study.query(
            "SELECT epoch FROM suggestions WHERE model_id = ? AND renderer_version = ? AND "
            "pass = ?", (model_id, renderer_version, pass_name))}
        return sorted({e for e in wanted if e not in done})

    def count(self, model_id: str, renderer_version: str, pass_name: str | None = None) -> int:
        sql = "SELECT COUNT(*) FROM suggestions WHERE model_id = ? AND renderer_version = ?"
        args: tuple = (model_id, renderer_version)
        if pass_name is not None:
            sql, args = sql + " AND pass = ?", args + (pass_name,)
        return int(self.study.query(sql, args)[0][0])

    def models(self) -> list[tuple[str, str, int]]:
        """(model id, renderer version, epochs answered) of every model that made suggestions
        here, most recent first (the GUI offers them as hypnogram layers)."""
        rows = self.study.query("SELECT model_id, renderer_version, COUNT(DISTINCT epoch), "
                                "MAX(id) FROM suggestions GROUP BY model_id, renderer_version "
                                "ORDER BY MAX(id) DESC")
        return [(m, r, int(n)) for m, r, n, _last in rows]


# ----------------------------------------------------------------------- runs, audited
def record_run_started(study: Study, *, model_id: str, renderer_version: str,
                       passes: Iterable[str], epochs_to_score: dict[str, int], actor: str,
                       details: dict | None = None) -> None:
    """One audit event when an AI scoring run starts (not one per epoch)."""
    payload = {"model_id": model_id, "renderer_version": renderer_version,
               "passes": list(passes), "epochs_to_score": dict(epochs_to_score)}
    if details:
        payload.update(details)
    study.record_event(AI_RUN_STARTED, payload, actor)


def record_run_finished(study: Study, *, model_id: str, renderer_version: str, outcome: str,
                        counts: dict, actor: str) -> None:
    """One audit event when it ends: ``outcome`` completed / cancelled / failed, and counts
    (stored per pass, skipped for want of signal, seconds)."""
    study.record_event(AI_RUN_FINISHED, {"model_id": model_id,
                                         "renderer_version": renderer_version,
                                         "outcome": outcome, "counts": dict(counts)}, actor)


# ------------------------------------------------------------------- accept / override
def accept(study: Study, epoch: int, suggestion: Suggestion, scorer: str,
           note: str | None = None) -> Decision:
    """The technologist takes the AI's stage for ``epoch``: a decision with source
    ``ai_accepted`` whose audit event names the suggestion."""
    _check_matches(epoch, suggestion)
    if suggestion.stage is None:
        raise ValueError(f"epoch {epoch}: the AI named no stage ({suggestion.stage_text!r}); "
                         f"score it by hand")
    return study.score(epoch, suggestion.stage, scorer=scorer, source=AI_ACCEPTED,
                       note=_clean_note(note), suggestion=suggestion.reference())


def override(study: Study, epoch: int, stage: Stage | str, suggestion: Suggestion, scorer: str,
             note: str) -> Decision:
    """The technologist scores ``epoch`` differently from the AI: a decision with source
    ``ai_overridden``. The note (why) is required."""
    _check_matches(epoch, suggestion)
    stage = parse_stage(stage)
    clean = _clean_note(note)
    if not clean:
        raise ValueError("overriding an AI suggestion needs a note saying why")
    if suggestion.stage is not None and stage is suggestion.stage:
        raise ValueError(f"epoch {epoch}: {stage.value} is the AI's own suggestion; accept it "
                         f"instead of overriding")
    return study.score(epoch, stage, scorer=scorer, source=AI_OVERRIDDEN, note=clean,
                       suggestion=suggestion.reference())


# ----------------------------------------------------------------------------- helpers
def _best(found: list[Suggestion]) -> Suggestion | None:
    by_pass = {s.pass_name: s for s in found}
    fast, slow = by_pass.get(FAST), by_pass.get(RATIONALE)
    if fast is None or slow is None:
        return fast or slow
    flags = list(fast.flags) + [f for f in slow.flags if f not in fast.flags]
    if slow.stage is not fast.stage:
        flags.append(RATIONALE_DISAGREES)
    return Suggestion(
        epoch=fast.epoch, model_id=fast.model_id, renderer_version=fast.renderer_version,
        pass_name=FAST, stage=fast.stage, stage_text=fast.stage_text, rules=fast.rules,
        rationale=slow.rationale, flags=tuple(flags), repaired=fast.repaired, raw=fast.raw,
        prompt_tokens=fast.prompt_tokens, completion_tokens=fast.completion_tokens,
        seconds=fast.seconds, created=fast.created, id=fast.id, rationale_pass_stage=slow.stage,
        stage_probability=fast.stage_probability, stage_probabilities=fast.stage_probabilities)


def _from_row(row: tuple) -> Suggestion:
    (sid, model_id, renderer_version, epoch, pass_name, stage_text, stage, rules, rationale,
     flags, repaired, raw, prompt_tokens, completion_tokens, seconds, created,
     stage_probability, *five) = row
    probabilities = None
    if stage is not None and all(p is not None for p in five):
        probabilities = probabilities_from_json(dict(zip((s.value for s in SLEEP_STAGES), five)))
    if probabilities is None:
        stage_probability = None
    return Suggestion(
        epoch=epoch, model_id=model_id, renderer_version=renderer_version, pass_name=pass_name,
        stage=None if stage is None else Stage(stage), stage_text=stage_text,
        rules=tuple(str(r) for r in _loads(rules, [])), rationale=rationale,
        flags=tuple(str(f) for f in _loads(flags, [])), repaired=_loads(repaired, None),
        raw=raw, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
        seconds=seconds, created=created, id=sid, stage_probability=stage_probability,
        stage_probabilities=probabilities)


def _check_key(model_id: object, renderer_version: object, pass_name: object) -> None:
    if not isinstance(model_id, str) or not model_id:
        raise ValueError("a model id is required")
    if not isinstance(renderer_version, str) or not renderer_version:
        raise ValueError("a renderer version is required")
    if pass_name not in PASSES:
        raise ValueError(f"not a pass: {pass_name!r} (expected {' or '.join(PASSES)})")


def _check_matches(epoch: int, suggestion: Suggestion) -> None:
    if not isinstance(suggestion, Suggestion):
        raise TypeError("suggestion must be a Suggestion from the study's SuggestionStore")
    if suggestion.epoch != epoch:
        raise ValueError(f"the suggestion is for epoch {suggestion.epoch}, not epoch {epoch}")


def _clean_note(note: object) -> str | None:
    if note is None:
        return None
    if not isinstance(note, str):
        raise TypeError("note must be text or None")
    return note.strip() or None


def _sleep_stage(value: object) -> Stage | None:
    if value is None:
        return None
    try:
        stage = parse_stage(value)
    except ValueError:
        return None
    return stage if stage in SLEEP_STAGES else None


def _plain(value: Any) -> Any:
    """JSON-ready copy of flags / repair notes (tuples, sets, enums and objects become text)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Stage):
        return value.value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(_plain(v) for v in value)
    return str(value)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


def _loads(text: str | None, default: Any) -> Any:
    if text is None:
        return default
    try:
        return json.loads(text)
    except ValueError:
        return default


def _text_or_none(value: object) -> str | None:
    return None if value is None else str(value)


def _int_or_none(value: object) -> int | None:
    return None if value is None else int(value)


def _float_or_none(value: object) -> float | None:
    return None if value is None else float(value)

"""AI suggestions in the study file: what the model said about each epoch, kept apart from the
technologist's decisions (the record itself: ``core.study.suggestion.Suggestion``).

A suggestion is keyed by epoch and ``SuggestionKey`` (model id, renderer version, pass:
``core.study.suggestion_key``). ``fast`` asks for the stage
and rule IDs only; ``rationale`` asks for the written reasoning too. Both may exist for an
epoch: the stage shown is the fast pass's (the one a whole-night run produces first and the
technologist reviews), the reasoning comes from the rationale pass, and a rationale pass that
named another stage is flagged.

Storing a suggestion changes no stage and writes no audit event of its own: a scoring run is
audited once when it starts and once when it ends (``core.study.ai_runs``). The table is
append-only. Only the technologist's act of accepting or
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
from typing import Any, Iterable

from ..base.answer import Answer
from ..base.probabilities import probabilities_from_json
from ..base.stages import SLEEP_STAGES, Stage, parse_stage
from .audit import utc_now_iso
from .study import AI_ACCEPTED, AI_OVERRIDDEN, Decision, Study
from .suggestion import RATIONALE_DISAGREES, Suggestion, rationale_only_flags
from .suggestion_key import FAST, PASSES, RATIONALE, SuggestionKey

__all__ = ["Suggestion", "SuggestionKey", "SuggestionStore", "FAST", "RATIONALE", "PASSES",
           "RATIONALE_DISAGREES", "accept", "override", "rationale_only_flags"]


_COLUMNS = ("id, model_id, renderer_version, epoch, pass, stage_text, stage, rules, rationale, "
            "flags, repaired, raw, prompt_tokens, completion_tokens, seconds, created, "
            "stage_probability, p_w, p_n1, p_n2, p_n3, p_r")


class SuggestionStore:
    """The suggestions of one open study (uses the study's own connection and thread)."""

    def __init__(self, study: Study):
        self.study = study

    # -- writing -----------------------------------------------------------------------
    def put(self, epoch: int, answer: Answer, key: SuggestionKey, *,
            prompt_tokens: int | None = None, completion_tokens: int | None = None,
            seconds: float | None = None, stage_probabilities: Any = None) -> bool:
        """Store one answer, committed when this returns.

        Parameters
        ----------
        epoch : int
            The epoch (0-based, inside the study).
        answer : Answer
            ``core.base.answer.Answer`` (stage, stage_text, rules, rationale, flags, repaired,
            raw); anything else is a TypeError.
        key : SuggestionKey
            Whose answer, with its pass (a key without one is a ValueError).
        prompt_tokens, completion_tokens, seconds : optional
            What the answer cost.
        stage_probabilities : mapping, optional
            The model's five stage probabilities (Stage or stage value -> probability, sum 1);
            None when unknown; a malformed distribution is a ValueError. Kept only with a stage.

        Returns
        -------
        bool
            False (nothing written) when an answer for this key and epoch is already stored.
        """
        if not isinstance(epoch, int) or isinstance(epoch, bool):
            raise TypeError(f"epoch must be a whole number, not {epoch!r}")
        if not 0 <= epoch < self.study.n_epochs:
            raise IndexError(f"epoch {epoch} is outside 0..{self.study.n_epochs - 1}")
        if not isinstance(answer, Answer):
            raise TypeError(f"put() stores an Answer, not {type(answer).__name__}")
        pass_name = _checked(key).require_pass()
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
        row = (key.model_id, key.renderer_version, epoch, pass_name, str(stage_text),
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
    def get(self, epoch: int, key: SuggestionKey) -> Suggestion | None:
        """The best suggestion for an epoch: the fast pass's stage with the rationale pass's
        reasoning (either alone when only one pass ran).

        Parameters
        ----------
        epoch : int
            The epoch (0-based).
        key : SuggestionKey
            The model and renderer (its pass is not used: the passes are merged).

        Returns
        -------
        Suggestion or None
            None when that model has no answer for the epoch.
        """
        key = _checked(key)
        rows = self.study.query(f"SELECT {_COLUMNS} FROM suggestions WHERE epoch = ? AND "
                                f"model_id = ? AND renderer_version = ?",
                                (epoch, key.model_id, key.renderer_version))
        return _best([_from_row(r) for r in rows])

    def get_pass(self, epoch: int, key: SuggestionKey) -> Suggestion | None:
        """The stored answer of one pass, as the model gave it.

        Parameters
        ----------
        epoch : int
            The epoch (0-based).
        key : SuggestionKey
            The model, renderer and pass (required).

        Returns
        -------
        Suggestion or None
            None when that pass has no answer for the epoch.
        """
        pass_name = _checked(key).require_pass()
        rows = self.study.query(f"SELECT {_COLUMNS} FROM suggestions WHERE epoch = ? AND "
                                f"model_id = ? AND renderer_version = ? AND pass = ?",
                                (epoch, key.model_id, key.renderer_version, pass_name))
        return _from_row(rows[0]) if rows else None

    def all_for(self, key: SuggestionKey) -> dict[int, Suggestion]:
        """The best suggestion (as ``get``) of every epoch the key's model answered.

        Parameters
        ----------
        key : SuggestionKey
            The model and renderer (passes merged).

        Returns
        -------
        dict
            Epoch -> Suggestion (the hypnogram's suggestion layer).
        """
        key = _checked(key)
        rows = self.study.query(f"SELECT {_COLUMNS} FROM suggestions WHERE model_id = ? AND "
                                f"renderer_version = ? ORDER BY epoch, id",
                                (key.model_id, key.renderer_version))
        by_epoch: dict[int, list[Suggestion]] = {}
        for row in rows:
            s = _from_row(row)
            by_epoch.setdefault(s.epoch, []).append(s)
        return {epoch: _best(found) for epoch, found in by_epoch.items()}

    def missing_epochs(self, key: SuggestionKey,
                       epochs: Iterable[int] | None = None) -> list[int]:
        """What a resumed run still has to do.

        Parameters
        ----------
        key : SuggestionKey
            The model, renderer and pass (required).
        epochs : iterable of int, optional
            The epochs to look at (default: all of the study's).

        Returns
        -------
        list of int
            Those with no stored answer of the key's pass, in order.
        """
        pass_name = _checked(key).require_pass()
        wanted = range(self.study.n_epochs) if epochs is None else epochs
        done = {r[0] for r in self.study.query(
            "SELECT epoch FROM suggestions WHERE model_id = ? AND renderer_version = ? AND "
            "pass = ?", (key.model_id, key.renderer_version, pass_name))}
        return sorted({e for e in wanted if e not in done})

    def count(self, key: SuggestionKey) -> int:
        """How many answers are stored under a key.

        Parameters
        ----------
        key : SuggestionKey
            The model and renderer, and the pass (both when left open).

        Returns
        -------
        int
        """
        key = _checked(key)
        sql = "SELECT COUNT(*) FROM suggestions WHERE model_id = ? AND renderer_version = ?"
        args: tuple = (key.model_id, key.renderer_version)
        if key.pass_name is not None:
            sql, args = sql + " AND pass = ?", args + (key.pass_name,)
        return int(self.study.query(sql, args)[0][0])

    def models(self) -> list[tuple[SuggestionKey, int]]:
        """(key with both passes, epochs answered) of every model and renderer that made
        suggestions here, most recent first (the GUI offers them as hypnogram layers)."""
        rows = self.study.query("SELECT model_id, renderer_version, COUNT(DISTINCT epoch), "
                                "MAX(id) FROM suggestions GROUP BY model_id, renderer_version "
                                "ORDER BY MAX(id) DESC")
        return [(SuggestionKey(m, r), int(n)) for m, r, n, _last in rows if m and r]   # '' is no key


# ------------------------------------------------------------------- accept / override
def accept(study: Study, epoch: int, suggestion: Suggestion, scorer: str,
           note: str | None = None) -> Decision:
    """The technologist takes the suggested stage for ``epoch``.

    Parameters
    ----------
    study : Study
        The open study.
    epoch : int
        The epoch (0-based); must be the suggestion's.
    suggestion : Suggestion
        As offered (a led suggestion records its source and the model's reading too).
    scorer : str
        Who accepted it.
    note : str, optional
        A note kept with the decision.

    Returns
    -------
    Decision
        Source ``ai_accepted``; its audit event carries ``suggestion.reference()``.

    Raises
    ------
    ValueError
        The suggestion is for another epoch, or named no stage (score it by hand).
    """
    _check_matches(epoch, suggestion)
    if suggestion.stage is None:
        raise ValueError(f"epoch {epoch}: the AI named no stage ({suggestion.stage_text!r}); "
                         f"score it by hand")
    return study.score(epoch, suggestion.stage, scorer=scorer, source=AI_ACCEPTED,
                       note=_clean_note(note), suggestion=suggestion.reference())


def override(study: Study, epoch: int, stage: Stage | str, suggestion: Suggestion, scorer: str,
             note: str) -> Decision:
    """The technologist scores ``epoch`` differently from the suggestion.

    Parameters
    ----------
    study : Study
        The open study.
    epoch : int
        The epoch (0-based); must be the suggestion's.
    stage : Stage or str
        The technologist's stage.
    suggestion : Suggestion
        The suggestion overridden, as offered.
    scorer : str
        Who overrode it.
    note : str
        Why (required).

    Returns
    -------
    Decision
        Source ``ai_overridden``; its audit event carries ``suggestion.reference()``.

    Raises
    ------
    ValueError
        No note, the suggested stage itself (accept it instead), or another epoch's suggestion.
    """
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


def _checked(key: object) -> SuggestionKey:
    if not isinstance(key, SuggestionKey):
        raise TypeError(f"a SuggestionKey is required, not {type(key).__name__}")
    return key


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

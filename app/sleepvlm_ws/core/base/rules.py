"""The staging-rule catalogue: the 15 AASM rule IDs SleepVLM cites, with what each one means.

The catalogue lives in ``resources/rules/aasm-rules.json``. A rule either scores a stage
(``stage``), ends one (``ends``, e.g. N2.4 "end of N2") or copies the following epoch's stage
(``as_next``, MBM.2). ``may_accompany`` lists the stages an answer citing the rule may carry;
:func:`rule_fits_stage` is how an answer is checked against it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

from ...errors import InputError
from ...paths import resources_dir
from .stages import SLEEP_STAGES, Stage

RULES_FILE = Path("rules") / "aasm-rules.json"


@dataclass(frozen=True)
class Rule:
    id: str
    stage: Stage | None  # the stage the rule scores; None for "end of ..." and "as next" rules
    ends: Stage | None  # the stage this rule ends (N2.4 -> N2, R.3 -> R)
    as_next: bool  # scored as the following epoch (MBM.2)
    may_accompany: tuple[Stage, ...]  # stages an answer citing this rule may legitimately carry
    title: str
    text: str  # what the rule says, in plain words
    evidence: str  # what must be measured in the signal to check it
    depends_on_neighbours: bool  # checked against the neighbouring epochs' stages (hypnogram)

    def fits(self, stage: Stage | str | None) -> bool:
        """True when an answer of ``stage`` may cite this rule.

        Parameters
        ----------
        stage : Stage, str or None
            The answer's stage: a sleep stage (W, N1, N2, N3, R) or its exact value (``"N2"``).

        Returns
        -------
        bool
            True when the stage is in :attr:`may_accompany`; False for anything else, including
            other spellings (``"REM"``), unscored, artefact and None.
        """
        try:
            stage = _sleep_stage(stage)
        except ValueError:
            return False
        return stage in self.may_accompany


def _sleep_stage(value: object) -> Stage:
    """One of W, N1, N2, N3, R written exactly (a Stage or its value); ValueError otherwise."""
    if isinstance(value, Stage):
        stage = value
    elif isinstance(value, str):
        stage = Stage(value)  # ValueError for anything that is not a stage value
    else:
        raise ValueError(f"not a stage: {value!r}")
    if stage not in SLEEP_STAGES:
        raise ValueError(f"not a sleep stage: {value!r}")
    return stage


def _rule_from_entry(entry: dict, path: Path) -> Rule:
    try:
        stage = None if entry["stage"] is None else _sleep_stage(entry["stage"])
        ends = None if entry.get("ends") is None else _sleep_stage(entry["ends"])
        accompany = tuple(_sleep_stage(s) for s in entry["may_accompany"])
        rule = Rule(
            id=str(entry["id"]),
            stage=stage,
            ends=ends,
            as_next=bool(entry.get("as_next", False)),
            may_accompany=accompany,
            title=str(entry["title"]),
            text=str(entry["text"]),
            evidence=str(entry["evidence"]),
            depends_on_neighbours=bool(entry["depends_on_neighbours"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(path, f"bad rule entry {entry.get('id', '?')}: {exc}") from None
    if not rule.may_accompany:
        raise InputError(path, f"rule {rule.id} may accompany no stage")
    if rule.stage is not None and rule.stage not in rule.may_accompany:
        raise InputError(path, f"rule {rule.id} does not accompany its own stage {rule.stage.value}")
    if rule.ends is not None and rule.ends in rule.may_accompany:
        raise InputError(path, f"rule {rule.id} ends {rule.ends.value} but may accompany it")
    return rule


def read_rules_file(path: Path) -> dict[str, Rule]:
    """Read a rule catalogue file; bad content raises :class:`InputError` naming the file."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(path, f"cannot read rule catalogue: {exc}") from None
    entries = data.get("rules") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        raise InputError(path, "rule catalogue has no 'rules' list")
    rules: dict[str, Rule] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            raise InputError(path, f"bad rule entry {entry!r}")
        rule = _rule_from_entry(entry, path)
        if rule.id in rules:
            raise InputError(path, f"rule {rule.id} is listed twice")
        rules[rule.id] = rule
    return rules


@lru_cache(maxsize=1)
def _bundled_rules() -> Mapping[str, Rule]:
    return MappingProxyType(read_rules_file(resources_dir() / RULES_FILE))


def load_rules() -> dict[str, Rule]:
    """The bundled catalogue, rule ID -> Rule, in catalogue order (read once, then cached)."""
    return dict(_bundled_rules())


def rule_ids() -> list[str]:
    """The bundled rule IDs in catalogue order (W.1 ... MBM.2)."""
    return list(_bundled_rules())


def rule_fits_stage(rule_id: str, stage: Stage | str | None) -> bool:
    """True when an answer of ``stage`` may cite ``rule_id``; False for unknown rules or non-stages."""
    rule = _bundled_rules().get(rule_id) if isinstance(rule_id, str) else None
    return rule is not None and rule.fits(stage)

"""Montage: which recording channels feed the six SleepVLM roles.

The roles, top to bottom in the SleepVLM image: F4-M1, C4-M1, O2-M1, LOC, ROC, chin EMG.
Each role is filled by a *derivation*: one recording channel, or the difference of two
(``positive - negative``, e.g. F4 and M1 -> F4-M1). A role may be left empty (reduced
montage); empty roles are shown as missing everywhere and render as an empty band.

STUB: interface fixed by the skeleton; implementation in progress.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

ROLES: tuple[str, ...] = ("F4-M1", "C4-M1", "O2-M1", "LOC", "ROC", "CHIN")
ROLE_TITLES = {
    "F4-M1": "F4-M1 (frontal EEG)",
    "C4-M1": "C4-M1 (central EEG)",
    "O2-M1": "O2-M1 (occipital EEG)",
    "LOC": "LOC (left EOG)",
    "ROC": "ROC (right EOG)",
    "CHIN": "Chin EMG",
}
EEG_ROLES = ("F4-M1", "C4-M1", "O2-M1")
EOG_ROLES = ("LOC", "ROC")
EMG_ROLES = ("CHIN",)


@dataclass(frozen=True)
class Derivation:
    """``positive - negative`` (negative None: the channel as recorded). Labels as in the file."""

    positive: str
    negative: str | None = None

    @property
    def name(self) -> str:
        return self.positive if self.negative is None else f"{self.positive} - {self.negative}"


@dataclass
class Montage:
    """Role -> Derivation, or None for a missing role. Always holds all six roles."""

    roles: dict[str, Derivation | None] = field(default_factory=lambda: {r: None for r in ROLES})

    @property
    def missing(self) -> list[str]:
        return [r for r in ROLES if self.roles.get(r) is None]

    def to_json(self) -> str:
        return json.dumps(
            {r: (None if d is None else [d.positive, d.negative]) for r, d in self.roles.items()},
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> "Montage":
        raw = json.loads(text)
        roles: dict[str, Derivation | None] = {r: None for r in ROLES}
        for role, value in raw.items():
            if role in roles and value:
                roles[role] = Derivation(value[0], value[1])
        return cls(roles)


def auto_montage(labels: list[str]) -> Montage:
    """Map channel labels to roles with the usual alternates; derive bipolar pairs."""
    raise NotImplementedError

"""Montage: which recording channels feed the six SleepVLM roles.

The roles, top to bottom in the SleepVLM image: F4-M1, C4-M1, O2-M1, LOC, ROC, chin EMG.
Each role is filled by a *derivation*: one recording channel, or the difference of two
(``positive - negative``, e.g. F4 and M1 -> F4-M1). A role may be left empty (reduced
montage); empty roles are shown as missing everywhere and render as an empty band.

``auto_montage`` (rules in ``montage_rules``) proposes one from the channel labels;
``read_role`` reads a derivation's samples; ``montage_summary`` describes a montage.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .derivation import Derivation  # part of the montage API: a role holds a Derivation
from .montage_rules import choose_derivation

if TYPE_CHECKING:  # pragma: no cover
    from .recording import Recording

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
        """Read a montage written by :meth:`to_json`.

        Parameters
        ----------
        text : str
            A JSON object: role -> ``[positive, negative]`` (negative null for a single channel),
            or null for a missing role.

        Returns
        -------
        Montage
            All six roles; roles absent from ``text`` are missing, unknown roles are ignored.
        """
        raw = json.loads(text)
        roles: dict[str, Derivation | None] = {r: None for r in ROLES}
        for role, value in raw.items():
            if role in roles and value:
                roles[role] = Derivation(value[0], value[1])
        return cls(roles)


def auto_montage(labels: list[str]) -> Montage:
    """Map channel labels to roles with the usual alternates; derive bipolar pairs.

    The preference table and the label normalisation are documented in ``montage_rules``.

    Parameters
    ----------
    labels : list of str
        The recording's channel labels (other values are read with ``str``).

    Returns
    -------
    Montage
        All six roles; a role with no matching channel stays None (reduced montage).
    """
    labels = [str(label) for label in labels]
    return Montage({role: choose_derivation(role, labels) for role in ROLES})


def read_role(recording: "Recording", derivation: Derivation, start_s: float,
              stop_s: float) -> tuple[np.ndarray, float]:
    """A derivation's samples (float32 microvolts) and their rate, for ``start_s..stop_s``.

    ``positive - negative``; where the two channels differ in rate the negative one is
    interpolated (linearly) onto the positive one's sample times (past its last sample, at the
    end of the recording, its last value is held). Gaps stay NaN.

    Parameters
    ----------
    recording : Recording
        The open recording.
    derivation : Derivation
        The channel labels: ``positive``, and ``negative`` (None: the positive channel alone).
    start_s, stop_s : float
        The window, in seconds on the recording's timeline.

    Returns
    -------
    samples : numpy.ndarray
        float32 microvolts at the positive channel's rate; NaN where there is no data.
    fs : float
        The positive channel's sampling rate in Hz.

    Raises
    ------
    RecordingError
        When the recording lacks a label (matched exactly, else ignoring case and spaces) or
        cannot be read.
    """
    pos_ch = recording.channel(derivation.positive)
    pos = recording.read(pos_ch.index, start_s, stop_s)
    fs = float(pos_ch.fs)
    if derivation.negative is None:
        return pos, fs
    neg_ch = recording.channel(derivation.negative)
    if neg_ch.fs == pos_ch.fs:
        neg = recording.read(neg_ch.index, start_s, stop_s)
        return (pos - neg).astype(np.float32, copy=False), fs
    if pos.size == 0:
        return pos, fs
    nfs = float(neg_ch.fs)
    # One negative sample beyond each end (within the recording) so interpolation never
    # extrapolates inside the window.
    j0 = max(int(round(start_s * nfs)) - 1, 0)
    j1 = min(int(round(stop_s * nfs)) + 1, int(round(recording.duration_s * nfs)))
    neg = recording.read(neg_ch.index, j0 / nfs, j1 / nfs)
    if neg.size == 0:
        return np.full(pos.shape, np.nan, dtype=np.float32), fs
    t_pos = (int(round(start_s * fs)) + np.arange(pos.size)) / fs
    t_neg = (j0 + np.arange(neg.size)) / nfs
    neg_on_pos = np.interp(t_pos, t_neg, neg.astype(np.float64))
    return (pos - neg_on_pos).astype(np.float32), fs


def montage_summary(montage: Montage) -> list[str]:
    """One line per role for ``sleepvlm-ws info``: what feeds it, or that it is missing.

    Parameters
    ----------
    montage : Montage
        The montage to describe.

    Returns
    -------
    list of str
        Six lines, each a role's title and its channel (a pair marked ``(derived)``) or
        ``missing``; for a reduced montage, one more line counting and naming the missing roles.
    """
    width = max(len(title) for title in ROLE_TITLES.values())
    lines = []
    for role in ROLES:
        d = montage.roles.get(role)
        if d is None:
            what = "missing"
        elif d.negative is None:
            what = d.positive
        else:
            what = f"{d.name}  (derived)"
        lines.append(f"{ROLE_TITLES[role]:<{width}}  {what}")
    missing = montage.missing
    if missing:
        lines.append(f"Reduced montage: {len(missing)} of {len(ROLES)} roles missing "
                     f"({', '.join(missing)})")
    return lines


def unknown_labels(montage: Montage, labels: list[str]) -> list[str]:
    """Labels the montage uses that are not among ``labels`` (e.g. a study's montage applied to
    another recording)."""
    have = set(labels)
    used = []
    for d in montage.roles.values():
        if d is not None:
            used += [d.positive] + ([d.negative] if d.negative else [])
    return sorted({label for label in used if label not in have})

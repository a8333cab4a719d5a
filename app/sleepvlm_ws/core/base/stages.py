"""Stages and epochs: the 30-s grid every scoring lives on."""

from __future__ import annotations

from enum import Enum

EPOCH_SECONDS = 30.0


class Stage(str, Enum):
    """An epoch's stage. ``UNSCORED`` and ``ARTEFACT`` are not sleep stages."""

    W = "W"
    N1 = "N1"
    N2 = "N2"
    N3 = "N3"
    R = "R"
    UNSCORED = "?"
    ARTEFACT = "A"

    @property
    def is_sleep(self) -> bool:
        return self in (Stage.N1, Stage.N2, Stage.N3, Stage.R)

    @property
    def is_scored(self) -> bool:
        return self is not Stage.UNSCORED

    @property
    def label(self) -> str:
        """Human label as shown in the GUI and reports."""
        return _LABELS[self]


SLEEP_STAGES = (Stage.W, Stage.N1, Stage.N2, Stage.N3, Stage.R)

_LABELS = {
    Stage.W: "W",
    Stage.N1: "N1",
    Stage.N2: "N2",
    Stage.N3: "N3",
    Stage.R: "REM",
    Stage.UNSCORED: "Unscored",
    Stage.ARTEFACT: "Artefact",
}

# Every spelling of a stage that labs and file formats use (case-insensitive). R&K stage 4
# is merged into N3 as the AASM manual does; "movement time" is scored as artefact.
_ALIASES = {
    Stage.W: ["w", "wake", "0", "sleep stage w", "stage w", "wake|0", "sleep_stage_w", "wk"],
    Stage.N1: ["n1", "1", "s1", "stage 1", "sleep stage 1", "sleep stage n1", "stage 1 sleep|1",
               "nrem1", "sleep_stage_1", "sleep_stage_n1"],
    Stage.N2: ["n2", "2", "s2", "stage 2", "sleep stage 2", "sleep stage n2", "stage 2 sleep|2",
               "nrem2", "sleep_stage_2", "sleep_stage_n2"],
    Stage.N3: ["n3", "3", "4", "s3", "s4", "stage 3", "stage 4", "sleep stage 3", "sleep stage 4",
               "sleep stage n3", "stage 3 sleep|3", "stage 4 sleep|4", "nrem3", "sws",
               "sleep_stage_3", "sleep_stage_4", "sleep_stage_n3"],
    Stage.R: ["r", "rem", "5", "sleep stage r", "sleep stage rem", "rem sleep|5", "stage r",
              "sleep_stage_r", "sleep_stage_rem"],
    Stage.UNSCORED: ["?", "unscored", "sleep stage ?", "unknown", "-1", "9", "sleep_stage_?",
                     "unscored|9", "nan", ""],
    Stage.ARTEFACT: ["a", "artefact", "artifact", "movement", "movement time", "mt", "6",
                     "movement|6", "sleep stage mt"],
}
_LOOKUP = {alias: stage for stage, names in _ALIASES.items() for alias in names}


def parse_stage(text: object) -> Stage:
    """Read a stage from any common spelling.

    Case, surrounding spaces and repeated inner spaces are ignored. R&K stage 4 reads as N3 and
    movement time as artefact; ``""``, ``"?"``, ``"nan"``, ``"-1"`` and ``"9"`` read as unscored.

    Parameters
    ----------
    text : object
        A Stage (returned as it is), or text or a number whose ``str()`` is one of the spellings
        labs and file formats use (``"W"``, ``"Wake"``, ``"Sleep stage 2"``, ``"REM"``, ``3``, ...).

    Returns
    -------
    Stage

    Raises
    ------
    ValueError
        When ``text`` is no known spelling of a stage (``3.0`` is not: its text is ``"3.0"``).
    """
    if isinstance(text, Stage):
        return text
    key = " ".join(str(text).strip().lower().split())
    try:
        return _LOOKUP[key]
    except KeyError:
        raise ValueError(f"not a sleep stage: {text!r}") from None


def epoch_count(duration_s: float) -> int:
    """Whole 30-s epochs in a recording of ``duration_s`` seconds (a partial tail is dropped).

    Parameters
    ----------
    duration_s : float
        The recording's length in seconds (0 or more).

    Returns
    -------
    int
        ``floor(duration_s / 30)``, e.g. 2 for 89.9 s.
    """
    return int(duration_s // EPOCH_SECONDS + 1e-9)


def epoch_onset(index: int) -> float:
    """Seconds from the recording start to the start of epoch ``index``."""
    return index * EPOCH_SECONDS

"""Hypnogram: the stage of every 30-s epoch of one night, as exported and imported.

A hypnogram is a plain list of stages on the epoch grid (epoch 0 starts at the recording start).
File formats that store *periods* instead (a run of "Sleep stage 2" lasting 900 s) convert
through :meth:`Hypnogram.segments` and :meth:`Hypnogram.from_segments`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Iterable, Sequence

from .stages import EPOCH_SECONDS, Stage, parse_stage

# A scored period: (onset in seconds from the recording start, duration in seconds, stage).
Segment = tuple[float, float, Stage]

# Longest hypnogram we build from a file (about 35 days of 30-s epochs): a corrupt duration
# must not make us allocate millions of epochs.
MAX_EPOCHS = 100_000

# Onsets and durations within this many seconds of the grid count as on the grid.
GRID_TOLERANCE_S = 1e-3


@dataclass
class Hypnogram:
    stages: list[Stage]
    epoch_s: float = EPOCH_SECONDS
    start: datetime | None = None
    # What an import had to adjust (off-grid periods, padding, ...): one sentence each.
    warnings: list[str] = field(default_factory=list, compare=False)

    def __post_init__(self) -> None:
        self.stages = [s if isinstance(s, Stage) else parse_stage(s) for s in self.stages]
        if not (isinstance(self.epoch_s, (int, float)) and math.isfinite(self.epoch_s)
                and self.epoch_s > 0):
            raise ValueError(f"epoch length must be a positive number of seconds, not {self.epoch_s!r}")
        self.epoch_s = float(self.epoch_s)

    # --- the grid ---------------------------------------------------------------------
    @property
    def n_epochs(self) -> int:
        return len(self.stages)

    @property
    def duration_s(self) -> float:
        return self.n_epochs * self.epoch_s

    def onset(self, i: int) -> float:
        """Seconds from the recording start to the start of epoch ``i``.

        Parameters
        ----------
        i : int
            Epoch index (0 is the first epoch; not checked against :attr:`n_epochs`).

        Returns
        -------
        float
            ``i * epoch_s``.
        """
        return i * self.epoch_s

    def clock_time(self, i: int) -> datetime | None:
        """Wall-clock start of epoch ``i``.

        Parameters
        ----------
        i : int
            Epoch index (0 is the first epoch).

        Returns
        -------
        datetime or None
            :attr:`start` plus :meth:`onset` seconds; None when the recording start is unknown.
        """
        return None if self.start is None else self.start + timedelta(seconds=self.onset(i))

    def fitted(self, n_epochs: int) -> "Hypnogram":
        """A copy cut or padded (with unscored epochs) to exactly ``n_epochs`` epochs.

        Parameters
        ----------
        n_epochs : int
            Length of the copy, in epochs.

        Returns
        -------
        Hypnogram
            A new hypnogram with the same epoch length, start and warnings.

        Raises
        ------
        ValueError
            When ``n_epochs`` is negative.
        """
        if n_epochs < 0:
            raise ValueError(f"number of epochs must not be negative, not {n_epochs}")
        stages = self.stages[:n_epochs] + [Stage.UNSCORED] * (n_epochs - self.n_epochs)
        return Hypnogram(stages, self.epoch_s, self.start, list(self.warnings))

    # --- periods (run-length form) ------------------------------------------------------
    def segments(self) -> list[Segment]:
        """Consecutive epochs of one stage merged into ``(onset_s, duration_s, stage)``."""
        out: list[Segment] = []
        i = 0
        n = self.n_epochs
        while i < n:
            j = i
            while j + 1 < n and self.stages[j + 1] is self.stages[i]:
                j += 1
            out.append((self.onset(i), (j - i + 1) * self.epoch_s, self.stages[i]))
            i = j + 1
        return out

    @classmethod
    def from_segments(cls, segments: Iterable[Sequence], *, epoch_s: float = EPOCH_SECONDS,
                      start: datetime | None = None, n_epochs: int | None = None) -> "Hypnogram":
        """Lay scored periods onto the epoch grid.

        Each period fills ``round(duration / epoch)`` epochs (at least one; a missing, zero or
        negative duration means one epoch) from the epoch containing its onset (an onset within
        1 ms of an epoch boundary starts on it). Epochs no period covers are unscored; a later
        period overrides an earlier one; the part of a period before the recording start is
        dropped. Everything adjusted is described in ``warnings``.

        Parameters
        ----------
        segments : iterable of (onset_s, duration_s, stage)
            Scored periods: onset in seconds from the recording start, duration in seconds (or
            None), and a stage in any spelling :func:`parse_stage` reads.
        epoch_s : float, optional
            Epoch length in seconds (default 30).
        start : datetime or None, optional
            Wall-clock recording start, kept on the result.
        n_epochs : int or None, optional
            Cut or pad the result to this many epochs (negative counts as 0); scored epochs cut
            off are counted in a warning. None: end with the last period.

        Returns
        -------
        Hypnogram
            The stages on the grid, with ``warnings`` describing every adjustment.

        Raises
        ------
        ValueError
            For an onset or duration that is not a finite number, a stage no spelling matches,
            or a period running past ``MAX_EPOCHS`` epochs.
        """
        epoch_s = float(epoch_s)
        placed: dict[int, Stage] = {}
        off_grid = odd_length = overlapping = before_start = dropped = 0
        if n_epochs is not None:
            n_epochs = max(int(n_epochs), 0)
        for onset, duration, stage in segments:
            stage = parse_stage(stage)
            onset = float(onset)
            if not math.isfinite(onset):
                raise ValueError(f"period onset is not a number: {onset!r}")
            q = onset / epoch_s
            if abs(q - round(q)) * epoch_s <= GRID_TOLERANCE_S:
                first = int(round(q))
            else:
                first = math.floor(q)
                off_grid += 1
            if duration is None or float(duration) <= 0:
                count = 1
            else:
                duration = float(duration)
                if not math.isfinite(duration):
                    raise ValueError(f"period duration is not a number: {duration!r}")
                m = duration / epoch_s
                count = max(1, int(round(m)))
                if abs(m - round(m)) * epoch_s > GRID_TOLERANCE_S:
                    odd_length += 1
            last = first + count  # exclusive
            if n_epochs is not None:
                if stage is not Stage.UNSCORED:
                    dropped += max(0, last - max(first, n_epochs, 0))
                last = min(last, n_epochs)
            if first < 0:
                before_start += 1
                first = 0
            if last > MAX_EPOCHS:
                raise ValueError(
                    f"a period at {onset:g} s runs past {MAX_EPOCHS} epochs")
            for i in range(first, last):
                previous = placed.get(i)
                if previous is not None and previous is not stage:
                    overlapping += 1
                placed[i] = stage

        length = (max(placed) + 1) if placed else 0
        stages = [placed.get(i, Stage.UNSCORED) for i in range(length)]
        warnings: list[str] = []
        unit = f"{epoch_s:g}-s"
        if off_grid:
            warnings.append(f"{off_grid} scored period(s) did not start on the {unit} epoch grid; "
                            "each was placed from the epoch containing its start")
        if odd_length:
            warnings.append(f"{odd_length} scored period(s) lasted no whole number of {unit} "
                            "epochs; their length was rounded to whole epochs")
        if overlapping:
            warnings.append(f"{overlapping} epoch(s) were scored twice with different stages; "
                            "the later period was kept")
        if before_start:
            warnings.append(f"{before_start} scored period(s) began before the recording start; "
                            "the part before it was dropped")
        if n_epochs is not None:
            if dropped:
                warnings.append(f"{dropped} scored epoch(s) beyond the recording's {n_epochs} "
                                "epochs were dropped")
            if len(stages) < n_epochs:
                warnings.append(f"the file covers {len(stages)} epoch(s) but the recording has "
                                f"{n_epochs}; the rest are left unscored")
            stages = stages + [Stage.UNSCORED] * (n_epochs - len(stages))
        return cls(stages, epoch_s, start, warnings)


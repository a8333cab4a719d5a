"""Sleep statistics of one night, as the AASM manual lists them for a PSG report.

Everything is computed from the hypnogram: one :class:`~.stages.Stage` per 30-s epoch.

Definitions (epochs are counted, then converted to minutes):

- **Lights off / lights on**: the analysed period is the epochs ``lights_off .. lights_on - 1``
  (``lights_on`` is the first epoch *after* the lights came on). By default lights off is the
  first scored epoch and lights on follows the last scored epoch (artefact counts as scored,
  unscored does not).
- **TIB** (time in bed): lights off to lights on, every epoch counted.
- **Sleep onset**: the first epoch of any sleep stage (N1, N2, N3, R). **SOL** (sleep onset
  latency): lights off to sleep onset.
- **Final awakening**: the end of the last sleep epoch. **SPT** (sleep period time): sleep
  onset to final awakening.
- **TST** (total sleep time): N1 + N2 + N3 + R epochs. **Sleep efficiency**: TST / TIB.
- **Latency to N2 / N3 / R**: from sleep onset to the first epoch of that stage (the AASM
  REM latency; YASA's ``Lat_REM`` is measured from lights off instead).
- **WASO** (wake after sleep onset): W epochs within the SPT.
- **Awakenings**: runs of W within the SPT (each run counts once, whatever its length).
- **Stage shifts**: changes of stage between consecutive epochs from lights off to lights on
  (W -> N1 at sleep onset and the final awakening included).

Unscored and artefact epochs inside the analysed period count in TIB (and in SPT when they
fall inside it) but never in TST or WASO, so ``SPT = TST + WASO + artefact + unscored``
within the SPT; their minutes are reported so the gap is visible. For awakenings and stage
shifts they are skipped: ``W A W`` is one awakening and ``N2 ? N2`` is no shift. Before lights
off and after lights on nothing is counted. A statistic that does not exist (no sleep, no R)
is ``None``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Sequence

from ..base.stages import EPOCH_SECONDS, Stage

#: Rows an unscored epoch cannot change: the rest are provisional while any is unscored.
SETTLED_ROWS = ("Lights off", "Lights on", "Time in bed (TIB)", "Artefact epochs (in TIB)",
                "Unscored epochs (in TIB)")

#: The stages TST is made of, in report order.
SLEEP = (Stage.N1, Stage.N2, Stage.N3, Stage.R)
_NOT_STAGES = (Stage.UNSCORED, Stage.ARTEFACT)

Row = tuple[str, "float | int | str | None", str]


@dataclass(frozen=True)
class SleepStatistics:
    """AASM sleep statistics of one night (durations in minutes; None where undefined)."""

    epoch_s: float
    n_epochs: int               # epochs in the whole hypnogram
    lights_off: int             # first epoch analysed
    lights_on: int              # first epoch after the analysed period
    sleep_onset: int | None     # epoch index of the first sleep epoch
    final_awakening: int | None  # epoch index just after the last sleep epoch
    tib_min: float
    tst_min: float
    spt_min: float
    sleep_efficiency_pct: float | None
    sol_min: float | None
    latency_n2_min: float | None
    latency_n3_min: float | None
    latency_r_min: float | None
    waso_min: float | None
    stage_min: dict            # Stage -> minutes within TIB (W, N1, N2, N3, R)
    stage_pct_tst: dict        # Stage -> % of TST (N1, N2, N3, R); None when TST is 0
    artefact_min: float        # artefact epochs within TIB
    unscored_min: float        # unscored epochs within TIB
    awakenings: int
    stage_shifts: int

    @property
    def unscored_epochs(self) -> int:
        """Unscored epochs between lights off and lights on."""
        return int(round(self.unscored_min * 60.0 / self.epoch_s))

    @property
    def provisional(self) -> bool:
        """Some epochs of the analysed period are unscored: every figure but the lights, TIB
        and the artefact / unscored counts may change as they are scored (``PROVISIONAL``)."""
        return self.unscored_epochs > 0

    def rows(self, start: datetime | None = None) -> list[Row]:
        """The statistics as a table's rows.

        Parameters
        ----------
        start : datetime, optional
            The recording's start, to show lights off / on as clock times (else as epoch
            numbers, counted from 1).

        Returns
        -------
        list of (str, value, str)
            ``(label, value, unit)`` in report order.
        """
        def moment(epoch: int) -> tuple[str, str]:
            if start is None:
                return f"epoch {epoch + 1}", ""
            return (start + timedelta(seconds=epoch * self.epoch_s)).strftime("%H:%M:%S"), "clock"

        off, off_unit = moment(self.lights_off)
        on, on_unit = moment(self.lights_on)
        rows: list[Row] = [
            ("Lights off", off, off_unit),
            ("Lights on", on, on_unit),
            ("Time in bed (TIB)", self.tib_min, "min"),
            ("Total sleep time (TST)", self.tst_min, "min"),
            ("Sleep period time (SPT)", self.spt_min, "min"),
            ("Sleep efficiency (TST/TIB)", self.sleep_efficiency_pct, "%"),
            ("Sleep onset latency", self.sol_min, "min"),
            ("N2 latency (from sleep onset)", self.latency_n2_min, "min"),
            ("N3 latency (from sleep onset)", self.latency_n3_min, "min"),
            ("REM latency (from sleep onset)", self.latency_r_min, "min"),
            ("Wake after sleep onset (WASO)", self.waso_min, "min"),
            ("W (lights off to on)", self.stage_min[Stage.W], "min"),
        ]
        for stage in SLEEP:
            rows.append((f"{stage.label}", self.stage_min[stage], "min"))
            rows.append((f"{stage.label} (% of TST)", self.stage_pct_tst[stage], "%"))
        rows += [
            ("Awakenings", self.awakenings, "n"),
            ("Stage shifts", self.stage_shifts, "n"),
            ("Artefact epochs (in TIB)", self.artefact_min, "min"),
            ("Unscored epochs (in TIB)", self.unscored_min, "min"),
        ]
        return rows

    def to_dict(self) -> dict:
        """Plain JSON-ready values (stages by their short names)."""
        out = {k: getattr(self, k) for k in self.__dataclass_fields__
               if k not in ("stage_min", "stage_pct_tst")}
        out["stage_min"] = {s.value: v for s, v in self.stage_min.items()}
        out["stage_pct_tst"] = {s.value: v for s, v in self.stage_pct_tst.items()}
        return out


def format_value(value: object) -> str:
    """How a statistic is printed.

    Parameters
    ----------
    value : float, int, str or None
        A statistic's value.

    Returns
    -------
    str
        Minutes and percentages with one decimal, '—' if undefined.
    """
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def sleep_statistics(stages: Sequence[Stage], *, lights_off: int | None = None,
                     lights_on: int | None = None,
                     epoch_s: float = EPOCH_SECONDS) -> SleepStatistics:
    """The statistics of ``stages`` between ``lights_off`` and ``lights_on`` (epoch indices;
    ``lights_on`` exclusive), as defined in the module's notes.

    Parameters
    ----------
    stages : sequence of Stage
        One stage per epoch (stage values such as ``"N2"`` are accepted).
    lights_off : int, optional
        The first epoch analysed (default: the first scored epoch; artefact counts as scored).
    lights_on : int, optional
        The first epoch after the analysed period (default: the one after the last scored epoch).
    epoch_s : float
        The epoch length in seconds (default 30).

    Returns
    -------
    SleepStatistics
        Durations in minutes; None where a statistic does not exist (no sleep, no R).

    Raises
    ------
    ValueError
        For a hypnogram with no scored epoch (unless both lights are given), lights that are not
        epoch indices or lie outside the hypnogram or out of order, an ``epoch_s`` that is not
        positive, or an entry of ``stages`` that is no stage value.
    """
    stages = [s if isinstance(s, Stage) else Stage(s) for s in stages]
    n = len(stages)
    if not (epoch_s > 0):
        raise ValueError(f"epoch length must be positive, not {epoch_s!r}")
    scored = [i for i, s in enumerate(stages) if s.is_scored]
    if lights_off is None:
        if not scored:
            raise ValueError("no epoch is scored: sleep statistics need a scored hypnogram")
        lights_off = scored[0]
    if lights_on is None:
        if not scored:
            raise ValueError("no epoch is scored: sleep statistics need a scored hypnogram")
        lights_on = scored[-1] + 1
    for name, value in (("lights off", lights_off), ("lights on", lights_on)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"{name} must be an epoch index, not {value!r}")
    if not 0 <= lights_off < lights_on <= n:
        raise ValueError(f"lights off and lights on must lie within the night's {n} epochs, "
                         f"lights off first (got epochs {lights_off + 1} to {lights_on}, "
                         f"counted from 1)")

    per_min = 60.0 / epoch_s
    minutes = lambda epochs: epochs / per_min  # noqa: E731
    night = stages[lights_off:lights_on]
    sleep_at = [lights_off + i for i, s in enumerate(night) if s.is_sleep]
    onset = sleep_at[0] if sleep_at else None
    final = sleep_at[-1] + 1 if sleep_at else None
    spt = stages[onset:final] if sleep_at else []

    tst_epochs = len(sleep_at)
    tib = minutes(len(night))
    stage_min = {st: minutes(sum(1 for s in night if s is st))
                 for st in (Stage.W,) + SLEEP}
    tst = minutes(tst_epochs)
    stage_pct = {st: (100.0 * stage_min[st] / tst if tst_epochs else None) for st in SLEEP}

    def latency(stage: Stage) -> float | None:
        if onset is None:
            return None
        for i in range(onset, lights_on):
            if stages[i] is stage:
                return minutes(i - onset)
        return None

    # Awakenings and stage shifts skip artefact and unscored epochs.
    spt_known = [s for s in spt if s not in _NOT_STAGES]
    awakenings = sum(1 for i, s in enumerate(spt_known)
                     if s is Stage.W and (i == 0 or spt_known[i - 1] is not Stage.W))
    night_known = [s for s in night if s not in _NOT_STAGES]
    shifts = sum(1 for a, b in zip(night_known, night_known[1:]) if a is not b)

    return SleepStatistics(
        epoch_s=float(epoch_s), n_epochs=n, lights_off=lights_off, lights_on=lights_on,
        sleep_onset=onset, final_awakening=final,
        tib_min=tib, tst_min=tst, spt_min=minutes(len(spt)),
        sleep_efficiency_pct=100.0 * tst / tib,
        sol_min=None if onset is None else minutes(onset - lights_off),
        latency_n2_min=latency(Stage.N2), latency_n3_min=latency(Stage.N3),
        latency_r_min=latency(Stage.R),
        waso_min=None if onset is None else minutes(sum(1 for s in spt if s is Stage.W)),
        stage_min=stage_min, stage_pct_tst=stage_pct,
        artefact_min=minutes(sum(1 for s in night if s is Stage.ARTEFACT)),
        unscored_min=minutes(sum(1 for s in night if s is Stage.UNSCORED)),
        awakenings=awakenings, stage_shifts=shifts,
    )

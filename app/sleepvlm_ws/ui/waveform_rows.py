"""One row of the waveform view: a montage role (or an extra raw channel), its gain and filter."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyqtgraph as pg

from ..core.signals.display_filters import DisplayFilter, signal_kind, standard_filter
from ..core.signals.montage import ROLES, Derivation, Montage, read_role
from ..core.signals.recording import Recording
from .plot_items import SecondGrid

#: Sensitivities offered, in uV per row height (the amplitude "+" key moves towards the small end).
GAIN_STEPS_UV: tuple[float, ...] = (5, 10, 20, 25, 50, 75, 100, 150, 200, 300, 500, 750, 1000,
                                    2000, 5000, 10000)
#: Default sensitivity: the SleepVLM image scale (100 uV per band for EEG/EOG, 80 uV for chin).
DEFAULT_GAIN_UV = {"eeg": 100.0, "eog": 100.0, "emg": 80.0, "other": 200.0}
#: Trace colours, as in the SleepVLM image so the technologist sees what the model sees.
ROLE_COLOURS = {"F4-M1": "#FFFF00", "C4-M1": "#00FF00", "O2-M1": "#FF4040", "LOC": "#00FFFF",
                "ROC": "#FF00FF", "CHIN": "#6090FF"}
OTHER_COLOUR = "#C0C0C0"
RAW_KEY_PREFIX = "channel:"

_VOLT_UNITS = {"uv", "µv", "μv", "mv", "v", "nv"}


@dataclass
class Row:
    """State of one displayed row. ``key`` is the role name or ``"channel:<label>"``."""

    key: str
    title: str
    kind: str
    derivation: Derivation | None = None
    channel: str | None = None
    unit: str = "µV"
    gain_uv: float = 100.0
    flt: DisplayFilter = field(default_factory=DisplayFilter)
    autoscale: bool = False            # non-voltage channels: gain taken from the first window
    error: str | None = None
    label: pg.LabelItem | None = None
    plot: pg.PlotItem | None = None
    curve: pg.PlotDataItem | None = None
    grid: SecondGrid | None = None

    @property
    def missing(self) -> bool:
        return self.derivation is None and self.channel is None

    @property
    def source_name(self) -> str:
        if self.derivation is not None:
            return self.derivation.name
        return self.channel or ""

    def fetch(self, recording: Recording, start_s: float, stop_s: float) -> tuple[np.ndarray, float]:
        """The row's unfiltered samples (uV, or the channel's unit) and their sampling rate."""
        if self.derivation is not None:
            samples, fs = read_role(recording, self.derivation, start_s, stop_s)
            return np.asarray(samples, dtype=np.float32), float(fs)
        if self.channel is not None:
            fs = recording.channel(self.channel).fs
            return np.asarray(recording.read(self.channel, start_s, stop_s), np.float32), float(fs)
        return np.zeros(0, np.float32), 1.0

    def label_html(self) -> str:
        if self.missing:
            return (f"<span style='color:#a0a0a0'><b>{self.title}</b><br>"
                    f"<i>{self.title} — missing</i></span>")
        name = self.source_name
        colour = ROLE_COLOURS.get(self.key, OTHER_COLOUR)
        lines = [f"<b style='color:{colour}'>{self.title}</b>"]
        if name and name != self.title:
            lines.append(f"<span style='color:#b0b0b0'>{name}</span>")
        lines.append(f"<span style='color:#909090'>{self.gain_uv:.4g} {self.unit}/row</span>")
        lines.append(f"<span style='color:#909090'>{self.flt.describe()}</span>")
        if self.error:
            lines.append(f"<span style='color:#ff6060'>{self.error}</span>")
        return "<br>".join(lines)


def _is_voltage(unit: str) -> bool:
    return unit.strip().lower() in _VOLT_UNITS


def plan_rows(recording: Recording, montage: Montage, *, show_other_channels: bool,
              notch_hz: float | None, filters_on: bool = True) -> list[Row]:
    """Rows for the montage roles in ROLES order (missing ones included), then other channels."""
    rows: list[Row] = []
    used: set[str] = set()
    for role in ROLES:
        derivation = montage.roles.get(role)
        kind = signal_kind(role)
        flt = standard_filter(kind, notch_hz) if filters_on else DisplayFilter(notch_hz=notch_hz)
        rows.append(Row(key=role, title=role, kind=kind, derivation=derivation,
                        gain_uv=DEFAULT_GAIN_UV[kind], flt=flt))
        if derivation is not None:
            used.add(derivation.positive)
            if derivation.negative:
                used.add(derivation.negative)
    if show_other_channels:
        for channel in recording.channels:
            if channel.label in used:
                continue
            voltage = _is_voltage(channel.unit)
            rows.append(Row(key=RAW_KEY_PREFIX + channel.label, title=channel.label, kind="other",
                            channel=channel.label, unit="µV" if voltage else (channel.unit or "?"),
                            gain_uv=DEFAULT_GAIN_UV["other"], autoscale=not voltage,
                            flt=DisplayFilter(notch_hz=notch_hz) if voltage else DisplayFilter()))
    return rows


def next_gain(gain_uv: float, steps: int) -> float:
    """Move ``steps`` along GAIN_STEPS_UV; positive steps enlarge the waves (fewer uV per row)."""
    values = np.asarray(GAIN_STEPS_UV)
    index = int(np.argmin(np.abs(values - gain_uv)))
    index = max(0, min(len(values) - 1, index - steps))
    return float(values[index])


def autoscale(samples: np.ndarray) -> tuple[float, float]:
    """Row height and centre that fit a non-voltage channel's window (robust range plus margin)."""
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return 1.0, 0.0
    lo, hi = (float(v) for v in np.percentile(finite, [1, 99]))
    span = hi - lo
    return (span * 1.4 if span > 0 else max(abs(hi), 1.0) * 2.0), (lo + hi) / 2.0

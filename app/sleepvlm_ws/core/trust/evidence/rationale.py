"""A technologist-readable rationale for an epoch's stage, written only from measurements.

Every sentence names the channel, the time in the epoch, the waveform, its frequency and
amplitude where they apply, and says why the other stages are excluded.
``rationale_sentences`` keeps, for each sentence, the ``EpochEvidence`` fields it was built
from, so a test (or an auditor) can check that nothing was said without a measurement.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ...base.stages import Stage
from .measures import EpochEvidence
from .rules_check import ALPHA_WAKE, BLINKS_WAKE, CHIN_LOW, SLOW_WAVE_N3_S, chin_level, slow_wave_shortfall


@dataclass(frozen=True)
class Sentence:
    text: str
    keys: tuple[str, ...]   # EpochEvidence fields the sentence states


def _stage(value) -> Stage:
    return value if isinstance(value, Stage) else Stage(value)


def _spindle_text(sp) -> str:
    role, on, dur, freq, amp = sp
    return f"a sleep spindle on {role} at {on:.1f} s ({freq:.1f} Hz, {dur:.1f} s, {amp:.0f} µV peak-to-peak)"


def _kc_text(kc, where: str = "") -> str:
    on, ptp, dur = kc
    return f"a K complex on F4-M1 at {on:.1f} s{where} ({ptp:.0f} µV peak-to-peak, {dur:.1f} s)"


def _findings(stage: Stage, ev: EpochEvidence) -> list[Sentence]:
    out: list[Sentence] = []
    m = ev.is_measurable
    if stage is Stage.W:
        if m("alpha") and ev.alpha_fraction > 0:
            out.append(Sentence(f"Occipital alpha rhythm (8-13 Hz) dominates O2-M1 in {ev.alpha_fraction:.0%} "
                                "of the epoch's 1-s windows.", ("alpha_fraction",)))
        if m("blinks") and ev.blinks:
            out.append(Sentence(f"{ev.blinks} eye blinks on LOC/ROC.", ("blinks",)))
        if m("chin") and ev.chin_relative > CHIN_LOW:
            out.append(Sentence(f"Chin EMG tone {ev.chin_rms:.1f} µV RMS, {chin_level(ev.chin_relative)}.",
                                ("chin_rms", "chin_relative")))
    if stage is Stage.N1 and m("alpha"):
        text = f"Alpha on O2-M1 in only {ev.alpha_fraction:.0%} of the epoch"
        c4 = ev.band_db.get("C4-M1") or ev.band_db.get("O2-M1")
        if c4:
            text += (f"; the background is low-amplitude mixed frequency (theta {c4['theta']:.1f} dB, "
                     f"alpha {c4['alpha']:.1f} dB)")
            out.append(Sentence(text + ".", ("alpha_fraction", "band_db")))
        else:
            out.append(Sentence(text + ".", ("alpha_fraction",)))
        if m("sems") and ev.sems:
            out.append(Sentence(f"{ev.sems} slow eye movements on LOC/ROC.", ("sems",)))
    if stage is Stage.N2:
        if ev.spindles:
            first = max(ev.spindles, key=lambda s: s[4])  # the clearest one
            out.append(Sentence(f"There is {_spindle_text(first)}; {len(ev.spindles)} spindle detection(s) "
                                "across the EEG leads in the epoch.", ("spindles",)))
        if ev.k_complexes:
            out.append(Sentence(f"There is {_kc_text(ev.k_complexes[0])}.", ("k_complexes",)))
        if ev.previous_late_events:
            kind, t = ev.previous_late_events[-1]
            out.append(Sentence(f"The previous epoch has a {kind} at {t:.1f} s, in its second half.",
                                ("previous_late_events",)))
    if stage is Stage.N3 and m("slow_waves"):
        text = (f"Slow waves (0.5-2 Hz, > 75 µV peak-to-peak) on F4-M1 for {ev.slow_wave_seconds:.1f} s, "
                f"{ev.slow_wave_seconds / 30:.0%} of the epoch")
        if ev.slow_waves:
            text += f", the largest {max(w[1] for w in ev.slow_waves):.0f} µV"
        out.append(Sentence(text + ".", ("slow_wave_seconds", "slow_waves")))
    if stage is Stage.R:
        if m("rems") and ev.rems:
            out.append(Sentence(f"{len(ev.rems)} rapid eye movements on LOC/ROC, the first at {ev.rems[0][0]:.1f} s, "
                                f"up to {max(r[1] for r in ev.rems):.0f} µV.", ("rems",)))
        if m("chin"):
            out.append(Sentence(f"Chin EMG {ev.chin_rms:.1f} µV RMS, {chin_level(ev.chin_relative)}.",
                                ("chin_rms", "chin_relative")))
    return out


def _exclusions(stage: Stage, ev: EpochEvidence) -> list[Sentence]:
    out: list[Sentence] = []
    m = ev.is_measurable
    if stage is not Stage.W and m("alpha") and ev.alpha_fraction <= ALPHA_WAKE:
        out.append(Sentence(f"Not W: alpha fills {ev.alpha_fraction:.0%} of the epoch, not more than half.",
                            ("alpha_fraction",)))
    if stage is not Stage.N3 and m("slow_waves") and ev.slow_wave_seconds < SLOW_WAVE_N3_S:
        out.append(Sentence(f"Not N3: {slow_wave_shortfall(ev.slow_wave_seconds)}.", ("slow_wave_seconds",)))
    if stage in (Stage.W, Stage.N1, Stage.R) and m("spindles") and not ev.spindles and not ev.k_complexes:
        out.append(Sentence("Not N2: no sleep spindles or K complexes in the epoch.", ("spindles", "k_complexes")))
    if stage is not Stage.R:
        if m("rems") and not ev.rems:
            out.append(Sentence("Not R: no rapid eye movements on LOC/ROC.", ("rems",)))
        elif m("chin") and ev.chin_relative > CHIN_LOW:
            out.append(Sentence(f"Not R: chin EMG {ev.chin_rms:.1f} µV RMS, {chin_level(ev.chin_relative)}.",
                                ("chin_rms", "chin_relative")))
        elif ev.spindles or ev.k_complexes:
            out.append(Sentence(f"Not R: {len(ev.spindles)} spindles and {len(ev.k_complexes)} K complexes are "
                                "present.", ("spindles", "k_complexes")))
    if stage is Stage.W and m("blinks") and ev.blinks < BLINKS_WAKE and not ev.alpha_fraction:
        out.append(Sentence(f"Only {ev.blinks} eye blinks.", ("blinks",)))
    return out


def _unmeasurable(ev: EpochEvidence) -> list[Sentence]:
    lacking = [item for item, ok in ev.measurable.items() if not ok]
    if not lacking:
        return []
    return [Sentence(f"Not measurable here (channel missing): {', '.join(lacking)}.", ("measurable",))]


def rationale_sentences(stage, evidence: Sequence[EpochEvidence], index: int,
                        stages: Sequence | None = None) -> list[Sentence]:
    """The rationale's sentences, each with the measurement fields it rests on."""
    stage = _stage(stage)
    ev = evidence[index]
    return _findings(stage, ev) + _exclusions(stage, ev) + _unmeasurable(ev)


def write_rationale(stage, evidence: Sequence[EpochEvidence], index: int, stages: Sequence | None = None) -> str:
    """The rationale as one paragraph."""
    return " ".join(s.text for s in rationale_sentences(stage, evidence, index, stages))

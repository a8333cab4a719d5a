"""The AASM rules against the measurements: which rules an epoch's stage should cite
(``derive_rules``, for training targets) and whether a cited rule holds (``check_rule``, for
checking the model). One set of thresholds serves both, so targets and checks never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ...base.stages import Stage
from .measures import EpochEvidence

ALPHA_WAKE = 0.5          # W.1: alpha in more than half of the epoch
BLINKS_WAKE = 4           # W.2: blinks at 0.5-2 Hz through the epoch
REMS_WAKE = 3             # W.3: REMs through the epoch
SLOW_WAVE_N3_S = 6.0      # N3.1: >= 20% of 30 s
ARTEFACT_MBM_S = 15.0     # MBM: artefact over more than half of the epoch
CHIN_LOW = 0.25           # chin_relative at or below: near the night's lowest
CHIN_NOT_LOW = 0.5        # W.3: chin at or above this: normal/high tone

SUPPORTED, CONTRADICTED, NOT_MEASURABLE = "supported", "contradicted", "not_measurable"


@dataclass(frozen=True)
class RuleCheck:
    rule_id: str
    verdict: str   # "supported" | "contradicted" | "not_measurable"
    reason: str


def _stage(stages: Sequence, i: int) -> Stage | None:
    if 0 <= i < len(stages):
        s = stages[i]
        try:
            return s if isinstance(s, Stage) else Stage(s)
        except ValueError:
            return None
    return None


def _n2_start_events(ev: EpochEvidence) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    return ev.spindle_or_k_in(0.0, 15.0), list(ev.previous_late_events)


def _no_spindle_k(ev: EpochEvidence) -> bool:
    return not ev.spindles and not ev.k_complexes


def _need(ev: EpochEvidence, rule: str, *items: str) -> RuleCheck | None:
    lacking = [i for i in items if not ev.is_measurable(i)]
    if lacking:
        return RuleCheck(rule, NOT_MEASURABLE,
                         f"cannot measure {', '.join(lacking)} in this epoch (channel missing or not recorded)")
    return None


def _verdict(rule: str, ok: bool, reason: str) -> RuleCheck:
    return RuleCheck(rule, SUPPORTED if ok else CONTRADICTED, reason)


def chin_level(relative: float) -> str:
    """Where an epoch's chin EMG lies between the night's lowest and highest, in words.

    Parameters
    ----------
    relative : float
        ``EpochEvidence.chin_relative``: 0 at the night's lowest, 1 at its highest.

    Returns
    -------
    str
        ``at the night's lowest level``, ``near the night's highest level``, or ``40% of the
        way from the night's lowest to its highest``.
    """
    if relative <= CHIN_LOW:
        return "at the night's lowest level"
    if relative >= 0.9:
        return "near the night's highest level"
    return f"{relative:.0%} of the way from the night's lowest to its highest"


def slow_wave_shortfall(seconds: float) -> str:
    """Why an epoch falls short of N3's slow waves, in words.

    Parameters
    ----------
    seconds : float
        Seconds of slow waves over 75 µV on F4-M1 in the epoch.

    Returns
    -------
    str
        ``no slow waves over 75 µV on F4-M1`` when there are none, else ``slow waves over 75 µV
        on F4-M1 for only 2.5 s (N3 needs 6 s)``.
    """
    if seconds < 0.05:
        return "no slow waves over 75 µV on F4-M1"
    return f"slow waves over 75 µV on F4-M1 for only {seconds:.1f} s (N3 needs {SLOW_WAVE_N3_S:.0f} s)"


def _slow_wave_text(seconds: float) -> str:
    found = ("no slow waves over 75 µV on F4-M1" if seconds < 0.05
             else f"slow waves over 75 µV on F4-M1 for {seconds:.1f} s")
    return f"{found} (N3 needs {SLOW_WAVE_N3_S:.0f} s)"


def _chin_text(ev: EpochEvidence) -> str:
    return f"chin EMG {ev.chin_rms:.1f} µV RMS, {chin_level(ev.chin_relative)}"


def check_rule(rule_id: str, evidence: Sequence[EpochEvidence], index: int,
               stages: Sequence) -> RuleCheck:
    """Whether ``rule_id`` holds for epoch ``index`` given the measurements and the hypnogram.

    Parameters
    ----------
    rule_id : str
        A SleepVLM rule ID (``"W.1"`` ... ``"MBM.2"``).
    evidence : sequence of EpochEvidence
        Per-epoch measurements; only ``evidence[index]`` is read.
    index : int
        The epoch checked.
    stages : sequence
        The hypnogram (Stages or stage values such as ``"N2"``; anything else counts as no stage).
        The epoch's own stage and its neighbours' decide N2.2, N2.3, N2.4, R.2, R.3, MBM.1 and MBM.2.

    Returns
    -------
    RuleCheck
        ``rule_id``, the ``verdict`` (``"supported"``, ``"contradicted"``, or ``"not_measurable"``
        when a channel the rule needs is missing or the rule is unknown) and a one-line ``reason``
        quoting the measured values and what the rule needs.
    """
    ev = evidence[index]
    prev, nxt, cur = _stage(stages, index - 1), _stage(stages, index + 1), _stage(stages, index)
    r = rule_id
    if r == "W.1":
        return _need(ev, r, "alpha") or _verdict(
            r, ev.alpha_fraction > ALPHA_WAKE,
            f"alpha rhythm dominant on O2-M1 in {ev.alpha_fraction:.0%} of 1-s windows (needs > 50%)")
    if r == "W.2":
        return _need(ev, r, "blinks") or _verdict(
            r, ev.blinks >= BLINKS_WAKE,
            f"{ev.blinks} eye blinks on LOC/ROC (needs >= {BLINKS_WAKE})")
    if r == "W.3":
        miss = _need(ev, r, "rems", "chin")
        if miss:
            return miss
        ok = len(ev.rems) >= REMS_WAKE and ev.chin_relative >= CHIN_NOT_LOW
        return _verdict(r, ok, f"{len(ev.rems)} rapid eye movements on LOC/ROC with {_chin_text(ev)} "
                               f"(needs >= {REMS_WAKE} REMs with chin tone >= {CHIN_NOT_LOW:.2f})")
    if r in ("N1.1", "N1.2"):
        miss = _need(ev, r, "alpha", "slow_waves")
        if miss:
            return miss
        ok = (ev.alpha_fraction < ALPHA_WAKE and ev.slow_wave_seconds < SLOW_WAVE_N3_S
              and not ev.spindle_or_k_in(0.0, 15.0) and not ev.previous_late_events)
        return _verdict(r, ok, f"alpha in {ev.alpha_fraction:.0%} of the epoch (needs < 50%), "
                               f"{ev.slow_wave_seconds:.1f} s of slow waves, "
                               f"{len(ev.spindles)} spindles, {len(ev.k_complexes)} K complexes, {ev.sems} slow eye movements")
    if r == "N2.1":
        miss = _need(ev, r, "spindles", "slow_waves")
        if miss:
            return miss
        here, before = _n2_start_events(ev)
        found = [f"{k} at {t:.1f} s of this epoch" for k, t in here]
        found += [f"{k} at {t:.1f} s of the previous epoch" for k, t in before]
        n3 = ev.slow_wave_seconds >= SLOW_WAVE_N3_S
        reason = ("; ".join(found) if found else "no spindle or K complex in 0-15 s of this epoch "
                  "or 15-30 s of the previous one")
        if n3:
            reason += f"; but N3 is met ({ev.slow_wave_seconds:.1f} s of slow waves)"
        return _verdict(r, bool(found) and not n3, reason)
    if r == "N2.2":
        return _verdict(r, prev is Stage.N2 and cur is not Stage.N3,
                        f"previous epoch scored {prev.value if prev else 'nothing'} (needs N2)")
    if r == "N2.3":
        miss = _need(ev, r, "slow_waves")
        if miss:
            return miss
        ok = prev is Stage.N3 and ev.slow_wave_seconds < SLOW_WAVE_N3_S
        return _verdict(r, ok, f"previous epoch scored {prev.value if prev else 'nothing'} (needs N3) and "
                               f"{ev.slow_wave_seconds:.1f} s of slow waves here (needs < 6 s)")
    if r == "N2.4":
        return _verdict(r, prev is Stage.N2 and cur is not Stage.N2,
                        f"previous epoch scored {prev.value if prev else 'nothing'}, this one "
                        f"{cur.value if cur else 'nothing'} (needs N2 followed by another stage)")
    if r == "N3.1":
        return _need(ev, r, "slow_waves") or _verdict(
            r, ev.slow_wave_seconds >= SLOW_WAVE_N3_S, _slow_wave_text(ev.slow_wave_seconds))
    if r == "R.1":
        miss = _need(ev, r, "rems", "chin", "spindles")
        if miss:
            return miss
        ok = len(ev.rems) > 0 and ev.chin_relative <= CHIN_LOW and _no_spindle_k(ev) \
            and ev.slow_wave_seconds < SLOW_WAVE_N3_S
        return _verdict(r, ok, f"{len(ev.rems)} rapid eye movements, {_chin_text(ev)} (needs <= {CHIN_LOW:.2f}), "
                               f"{len(ev.spindles)} spindles and {len(ev.k_complexes)} K complexes (needs none)")
    if r == "R.2":
        miss = _need(ev, r, "chin", "spindles")
        if miss:
            return miss
        ok = (prev is Stage.R or nxt is Stage.R) and ev.chin_relative <= CHIN_LOW and _no_spindle_k(ev)
        return _verdict(r, ok, f"neighbours scored {prev.value if prev else '-'}/{nxt.value if nxt else '-'} "
                               f"(needs an R), {_chin_text(ev)}, {len(ev.spindles)} spindles and "
                               f"{len(ev.k_complexes)} K complexes (needs none)")
    if r == "R.3":
        return _verdict(r, prev is Stage.R and cur is not Stage.R,
                        f"previous epoch scored {prev.value if prev else 'nothing'}, this one "
                        f"{cur.value if cur else 'nothing'} (needs R followed by another stage)")
    if r == "MBM.1":
        miss = _need(ev, r, "artefact")
        if miss:
            return miss
        ok = ev.artefact_seconds > ARTEFACT_MBM_S and (ev.alpha_fraction > 0 or (prev is Stage.W and nxt is Stage.W))
        return _verdict(r, ok, f"movement artefact over {ev.artefact_seconds:.0f} s of the EEG (needs > 15 s), "
                               f"alpha in {ev.alpha_fraction:.0%} of the epoch")
    if r == "MBM.2":
        miss = _need(ev, r, "artefact")
        if miss:
            return miss
        ok = ev.artefact_seconds > ARTEFACT_MBM_S and nxt is not None and nxt is cur
        return _verdict(r, ok, f"movement artefact over {ev.artefact_seconds:.0f} s of the EEG (needs > 15 s), "
                               f"following epoch scored {nxt.value if nxt else 'nothing'}")
    return RuleCheck(r, NOT_MEASURABLE, f"unknown rule {r}")


def derive_rules(evidence: Sequence[EpochEvidence], index: int, stages: Sequence) -> list[str]:
    """The rule IDs an answer scoring ``stages[index]`` should cite: every rule for that stage
    (or ending the previous one) that the measurements and the hypnogram support, in catalogue
    order. May be empty when nothing the rules name is visible.

    Parameters
    ----------
    evidence : sequence of EpochEvidence
        The whole night's measurements, one per epoch (every wake epoch's alpha decides between
        N1.1 and N1.2).
    index : int
        The epoch.
    stages : sequence
        The hypnogram, one Stage (or stage value) per epoch.

    Returns
    -------
    list of str
        The supported rules. N1.2 replaces N1.1 when no wake epoch has alpha in over half of it;
        N2.1 drops N2.2 and N2.3; R.1 drops R.2; MBM.2 comes last when it holds and MBM.1 does
        not (so an unscored or artefact epoch can get MBM.2 alone).
    """
    cur = _stage(stages, index)
    candidates = {
        Stage.W: ["W.1", "W.2", "W.3", "N2.4", "R.3", "MBM.1"],
        Stage.N1: ["N1.1", "N2.4", "R.3"],
        Stage.N2: ["N2.1", "N2.2", "N2.3", "R.3"],
        Stage.N3: ["N2.4", "N3.1", "R.3"],
        Stage.R: ["N2.4", "R.1", "R.2"],
    }.get(cur, [])
    if cur is Stage.N1 and not _produces_alpha(evidence, stages):
        candidates = ["N1.2" if c == "N1.1" else c for c in candidates]
    out = [r for r in candidates if check_rule(r, evidence, index, stages).verdict == SUPPORTED]
    if cur is Stage.N2 and "N2.1" in out:
        out = [r for r in out if r not in ("N2.2", "N2.3")]  # a new start outranks continuation
    if cur is Stage.R and "R.1" in out:
        out = [r for r in out if r != "R.2"]
    if "MBM.1" not in out and cur is not None and check_rule("MBM.2", evidence, index, stages).verdict == SUPPORTED:
        out.append("MBM.2")
    return out


def _produces_alpha(evidence: Sequence[EpochEvidence], stages: Sequence) -> bool:
    """The subject shows an alpha rhythm in some wake epoch (N1.1 applies, not N1.2)."""
    return any(_stage(stages, i) is Stage.W and ev.alpha_fraction > ALPHA_WAKE
               for i, ev in enumerate(evidence))


def hypnogram_neighbours(scored: Sequence, suggested: Sequence | None, index: int) -> tuple:
    """The stages either side of epoch ``index`` as the hypnogram now has them: the
    technologist's decision where there is one, else the model's suggestion (None: neither).

    Parameters
    ----------
    scored : sequence
        The study's current stages, one per epoch; an unscored epoch falls back to ``suggested``
        (an artefact epoch does not).
    suggested : sequence or None
        The model's suggested stages, one per epoch (None where it named none), or None when
        there are no suggestions.
    index : int
        The epoch.

    Returns
    -------
    tuple of (Stage or None, Stage or None)
        The previous and the next epoch's stage; None past either end of the night or where
        neither has one.
    """
    def at(i: int):
        own = _stage(scored, i)
        if own is not None and own.is_scored:
            return own
        return _stage(suggested, i) if suggested is not None else None
    return at(index - 1), at(index + 1)


def check_suggestion(suggestion, evidence: EpochEvidence, hypnogram_neighbours: tuple) -> list[RuleCheck]:
    """Each rule the suggestion cites, checked against the epoch's measurements, with the rules
    that depend on the neighbours (N2.2, N2.3, N2.4, R.2, R.3, MBM) judged against the current
    hypnogram.

    Parameters
    ----------
    suggestion : Suggestion
        The model's suggestion (its ``rules``). The rules are checked against the stage the model
        named (``model_reading``), which they explain, also when a real-trained stager led it.
    evidence : EpochEvidence
        The epoch's measurements.
    hypnogram_neighbours : tuple
        (previous stage, next stage), as :func:`hypnogram_neighbours` gives them.

    Returns
    -------
    list of RuleCheck
        One per cited rule, in the suggestion's order.
    """
    prev, nxt = hypnogram_neighbours
    # the model's own reading: a suggestion led by a stager keeps the model's rules for it
    stages = [prev, getattr(suggestion, "model_reading", suggestion.stage), nxt]
    window = [evidence, evidence, evidence]   # check_rule reads only the epoch's own evidence
    return [check_rule(rule_id, window, 1, stages) for rule_id in suggestion.rules]

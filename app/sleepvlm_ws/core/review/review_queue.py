"""The review queue: which of the model's suggestions the technologist should look at, and why
(no Qt).

Every epoch with a suggestion from the vision-language model is checked; each finding is a
*reason* with a weight, and an epoch with at least one reason is *flagged*. Its priority is
the sum of its reasons' weights (higher: look first):

=========================  ======  ==========================================================
reason                     weight  when
=========================  ======  ==========================================================
``no_stage``               5       the answer named no sleep stage (unparseable)
``disagrees``              4       the second opinion (``core.trust.second_opinion``) names another
                                   stage
``contradicted``           4       a rule the answer cites is contradicted by the measured
                                   signal (``evidence.check_rule``)
``answer_flagged``         3       the answer carries a flag (``core.model.answer``: repaired
                                   beyond trust, rule not fitting the stage, ...); the
                                   informational ``edge_epoch`` does not count
``low_confidence``         2       the model's own probability for its stage (stored with
                                   the suggestion, ``core.model.stage_confidence``) is below
                                   ``MODEL_LOW_CONFIDENCE`` (0.9, see below), or the second
                                   opinion's highest probability is below ``LOW_CONFIDENCE``
                                   (0.5: it favours no stage over the other four together);
                                   one reason either way, naming which
``n1``                     1       the suggestion is N1 (the stage scorers agree on least)
``transition``             1       the suggested stage differs from a neighbouring epoch's
=========================  ======  ==========================================================

Why 0.9 for the model: its probabilities are overconfident (benchmarks/bench_calibration.py,
docs/measurements/calibration-v1.txt: on two held-out generated nights the default pack was
right in 91 % of the suggestions it gave 0.9 or more, and in about a third of those it gave
0.5-0.9; ECE 0.19). Below 0.9 a suggestion is more often wrong than right, so it is not
accepted in bulk. The threshold was set on generated nights only, never on the dev set.

Suggestions whose stage is led by the real-trained stager (``core.review.suggested_stage``)
are judged on the model's own reading for ``disagrees``, ``low_confidence`` and the confidence
order (the model against the stager, as without the lead); ``n1`` and ``transition`` look at
the stage offered, and ``accept_unflagged`` accepts the stage offered.

The queue is in epoch order (the technologist walks the night); ``next_after`` /
``previous_before`` move between flagged epochs in time (the F / ] keys: "next flagged" always
moves forward). ``least_confident()`` is the same flagged epochs worst first: by the model's
probability for its stage, lowest first (an answer with no stage counts as 0; epochs whose
suggestion has no stored probability come after all that have one, by priority); and
``next_least_confident`` is the first of those not yet reviewed (the L key: a "worst first"
walk that ignores time). ``by_priority()`` orders by the reasons' weights. An epoch counts as
*reviewed* once it has a
technologist's stage (any decision that left it scored; an undo back to unscored un-reviews
it). ``accept_unflagged`` takes the model's stage for every unflagged, unscored epoch with a
suggestion in one transaction: one decision per epoch (source ``ai_accepted``, each audited
with its suggestion) and one ``bulk_accept`` audit event naming the count and the criteria.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from ..base.stages import Stage
from ..study.suggestions import accept
from ..trust.evidence.rules_check import CONTRADICTED as VERDICT_CONTRADICTED
from ..trust.evidence.rules_check import check_rule

LOW_CONFIDENCE = 0.5            # the second opinion's highest probability below this: unsure
MODEL_LOW_CONFIDENCE = 0.9      # the model's probability for its own stage below this: unsure
BULK_ACCEPT = "bulk_accept"        # audit event kind
BULK_NOTE = "accepted in bulk: no review flag"

NO_STAGE, DISAGREES, CONTRADICTED = "no_stage", "disagrees", "contradicted"
ANSWER_FLAGGED, LOW_CONF, N1, TRANSITION = "answer_flagged", "low_confidence", "n1", "transition"
WEIGHTS = {NO_STAGE: 5, DISAGREES: 4, CONTRADICTED: 4, ANSWER_FLAGGED: 3, LOW_CONF: 2, N1: 1,
           TRANSITION: 1}
INFORMATIONAL_FLAGS = ("edge_epoch",)
REASON_WORDS = {NO_STAGE: "no stage", DISAGREES: "disagrees", CONTRADICTED: "contradicted",
                ANSWER_FLAGGED: "answer flagged", LOW_CONF: "unsure", N1: "N1",
                TRANSITION: "stage change"}


@dataclass(frozen=True)
class Reason:
    code: str
    text: str          # in the clinic's words, for the status bar / panel

    @property
    def weight(self) -> int:
        return WEIGHTS[self.code]


@dataclass(frozen=True)
class ReviewItem:
    epoch: int
    reasons: tuple[Reason, ...]

    @property
    def priority(self) -> int:
        return sum(r.weight for r in self.reasons)

    def describe(self) -> str:
        return "; ".join(r.text for r in self.reasons)


@dataclass
class ReviewQueue:
    """Flagged epochs in epoch order; ``suggestions`` are those the queue was built from."""

    n_epochs: int
    items: dict[int, ReviewItem]
    suggestions: Mapping[int, object]
    criteria: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.flagged = sorted(self.items)

    def is_flagged(self, epoch: int) -> bool:
        """True when ``epoch`` has at least one reason to be looked at.

        Parameters
        ----------
        epoch : int
            Epoch index.

        Returns
        -------
        bool
        """
        return epoch in self.items

    def item(self, epoch: int) -> ReviewItem | None:
        """The flagged epoch's reasons.

        Parameters
        ----------
        epoch : int
            Epoch index.

        Returns
        -------
        ReviewItem or None
            None when ``epoch`` is not flagged.
        """
        return self.items.get(epoch)

    def next_after(self, epoch: int) -> int | None:
        """The first flagged epoch after ``epoch``, in time.

        Parameters
        ----------
        epoch : int
            The current epoch (itself never returned).

        Returns
        -------
        int or None
            None when no flagged epoch follows.
        """
        i = bisect.bisect_right(self.flagged, epoch)
        return self.flagged[i] if i < len(self.flagged) else None

    def previous_before(self, epoch: int) -> int | None:
        """The last flagged epoch before ``epoch``, in time.

        Parameters
        ----------
        epoch : int
            The current epoch (itself never returned).

        Returns
        -------
        int or None
            None when no flagged epoch precedes it.
        """
        i = bisect.bisect_left(self.flagged, epoch)
        return self.flagged[i - 1] if i > 0 else None

    def by_priority(self) -> list[ReviewItem]:
        """Flagged epochs, highest priority first (ties in epoch order)."""
        return sorted(self.items.values(), key=lambda it: (-it.priority, it.epoch))

    def confidence(self, epoch: int) -> float | None:
        """The model's probability for the stage it suggested for ``epoch``.

        Where the stager led, this is the model's own reading, not the stage offered.

        Parameters
        ----------
        epoch : int
            Epoch index.

        Returns
        -------
        float or None
            In [0, 1]; 0.0 when the answer named no stage; None when no probability is stored
            or the epoch has no suggestion.
        """
        s = self.suggestions.get(epoch)
        if s is None:
            return None
        read, p = _model_view(s)
        if read is None:
            return 0.0
        return None if p is None else float(p)

    def least_confident(self) -> list[ReviewItem]:
        """Flagged epochs worst first: the model's probability for its stage, lowest first;
        those without a stored probability last, by priority (ties in epoch order)."""
        def key(item: ReviewItem):
            p = self.confidence(item.epoch)
            return (p is None, 0.0 if p is None else p, -item.priority, item.epoch)
        return sorted(self.items.values(), key=key)

    def next_least_confident(self, stages: Sequence[Stage]) -> int | None:
        """The least confident flagged epoch the technologist has not scored yet.

        The order is :meth:`least_confident`'s; epochs at or beyond ``len(stages)`` are skipped.

        Parameters
        ----------
        stages : sequence of Stage
            The study's stages now, one per epoch (scored: reviewed).

        Returns
        -------
        int or None
            None when every flagged epoch is reviewed.
        """
        for item in self.least_confident():
            if item.epoch < len(stages) and not stages[item.epoch].is_scored:
                return item.epoch
        return None

    def next_by_priority(self, stages: Sequence[Stage]) -> int | None:
        """The highest-priority flagged epoch the technologist has not scored yet (the P key).

        Parameters
        ----------
        stages : sequence of Stage
            The study's stages now, one per epoch (scored: reviewed).

        Returns
        -------
        int or None
            Ties in epoch order; None when every flagged epoch is reviewed.
        """
        for item in self.by_priority():
            if item.epoch < len(stages) and not stages[item.epoch].is_scored:
                return item.epoch
        return None

    def reason_counts(self) -> dict[str, int]:
        """How many flagged epochs each reason flags, heaviest reason first.

        Returns
        -------
        dict
            Reason code -> epochs (reasons that flag none are left out).
        """
        counts = {code: 0 for code in sorted(WEIGHTS, key=lambda c: -WEIGHTS[c])}
        for item in self.items.values():
            for code in {r.code for r in item.reasons}:
                counts[code] += 1
        return {code: n for code, n in counts.items() if n}

    def counts(self, stages: Sequence[Stage]) -> tuple[int, int]:
        """How many flagged epochs the technologist has reviewed (scored), of how many.

        Parameters
        ----------
        stages : sequence of Stage
            The study's stages now, one per epoch (scored: reviewed).

        Returns
        -------
        reviewed : int
            Flagged epochs with a technologist's stage.
        flagged : int
            All flagged epochs.
        """
        reviewed = sum(1 for e in self.flagged if e < len(stages) and stages[e].is_scored)
        return reviewed, len(self.flagged)

    def acceptable(self, stages: Sequence[Stage]) -> list[int]:
        """Unflagged epochs with a suggested stage and no technologist stage yet.

        These are what :func:`accept_unflagged` accepts (the stage offered, led or not).

        Parameters
        ----------
        stages : sequence of Stage
            The study's stages now, one per epoch (scored: reviewed).

        Returns
        -------
        list of int
            Epoch indices in ascending order.
        """
        out = []
        for epoch in sorted(self.suggestions):
            s = self.suggestions[epoch]
            if (epoch not in self.items and getattr(s, "stage", None) is not None
                    and 0 <= epoch < len(stages) and not stages[epoch].is_scored):
                out.append(epoch)
        return out


def status_text(queue: ReviewQueue | None, stages: Sequence[Stage]) -> str:
    """The status bar's review count.

    Parameters
    ----------
    queue : ReviewQueue or None
        The open study's queue.
    stages : sequence of Stage
        The study's stages now (a flagged epoch the technologist scored is reviewed).

    Returns
    -------
    str
        ``reviewed 12 of 40 flagged (disagrees 20, N1 8, stage change 30)``: flagged epochs
        per reason (one epoch may have several); empty when there is nothing to review.
    """
    if queue is None or not queue.suggestions:
        return ""
    reviewed, flagged = queue.counts(stages)
    by_reason = ", ".join(f"{REASON_WORDS[code]} {n}" for code, n in queue.reason_counts().items())
    return f"reviewed {reviewed} of {flagged} flagged" + (f" ({by_reason})" if by_reason else "")


def build_queue(n_epochs: int, suggestions: Mapping[int, object], *,
                second_opinions: Mapping[int, object] | None = None,
                evidence: Sequence | None = None,
                low_confidence: float = LOW_CONFIDENCE,
                model_low_confidence: float = MODEL_LOW_CONFIDENCE) -> ReviewQueue:
    """Check every suggestion (``core.study.suggestions.Suggestion``: stage, rules, flags, and the
    model's ``stage_probability`` where stored) against the second opinions
    (``core.trust.second_opinion.SecondOpinion``: stage, confidence) and the measured evidence
    (``evidence.measure_*``), where given."""
    second_opinions = second_opinions or {}
    suggested: list[Stage | None] = [None] * n_epochs
    for epoch, s in suggestions.items():
        if 0 <= epoch < n_epochs:
            suggested[epoch] = s.stage
    use_evidence = evidence is not None and len(evidence) == n_epochs
    items = {}
    for epoch in sorted(suggestions):
        if not 0 <= epoch < n_epochs:
            continue
        s = suggestions[epoch]
        stage = s.stage
        read, p = _model_view(s)
        reasons: list[Reason] = []
        if read is None:          # the model's answer named no stage (led or not)
            reasons.append(Reason(NO_STAGE, f"the answer named no stage ({s.stage_text!r})"
                                  if s.stage_text else "the answer named no stage"))
        other = second_opinions.get(epoch)
        if other is not None and read is not None and other.stage is not read:
            reasons.append(Reason(DISAGREES, f"second opinion: {other.stage.value} "
                                             f"({other.confidence:.0%}), model: {read.value}"))
        if use_evidence and read is not None:
            offered, suggested[epoch] = suggested[epoch], read   # the rules explain the reading
            bad = [r for r in s.rules
                   if check_rule(r, evidence, epoch, suggested).verdict == VERDICT_CONTRADICTED]
            suggested[epoch] = offered
            if bad:
                reasons.append(Reason(CONTRADICTED, f"signal contradicts {', '.join(bad)}"))
        flags = [f for f in s.flags if str(f).partition(":")[0] not in INFORMATIONAL_FLAGS]
        if flags and stage is not None:
            reasons.append(Reason(ANSWER_FLAGGED, f"answer flagged ({len(flags)})"))
        unsure = []
        if read is not None and p is not None and p < model_low_confidence:
            unsure.append(f"model unsure ({p:.0%} {read.value})")
        if other is not None and other.confidence < low_confidence:
            unsure.append(f"second opinion unsure ({other.confidence:.0%})")
        if unsure:
            reasons.append(Reason(LOW_CONF, "; ".join(unsure)))
        if stage is Stage.N1:
            reasons.append(Reason(N1, "N1"))
        if stage is not None:
            around = [suggested[i] for i in (epoch - 1, epoch + 1) if 0 <= i < n_epochs]
            if any(n is not None and n is not stage for n in around):
                reasons.append(Reason(TRANSITION, "stage change"))
        if reasons:
            items[epoch] = ReviewItem(epoch, tuple(reasons))
    criteria = {"reasons": dict(WEIGHTS), "low_confidence_below": low_confidence,
                "model_low_confidence_below": model_low_confidence,
                "informational_flags": list(INFORMATIONAL_FLAGS),
                "second_opinion": _method(second_opinions),
                "evidence_checked": bool(use_evidence)}
    return ReviewQueue(n_epochs, items, dict(suggestions), criteria)


def _model_view(suggestion) -> tuple[Stage | None, float | None]:
    """(the stage the model itself named, its probability): a suggestion led by the stager
    (``core.review.suggested_stage``) keeps the model's reading apart from the stage offered."""
    if getattr(suggestion, "led", False):
        return suggestion.model_stage, suggestion.model_stage_probability
    return getattr(suggestion, "stage", None), getattr(suggestion, "stage_probability", None)


def _method(second_opinions: Mapping[int, object]) -> str | None:
    for opinion in second_opinions.values():
        return getattr(opinion, "method", None)
    return None


def accept_unflagged(study, queue: ReviewQueue, scorer: str) -> list:
    """Accept the stage offered (the queue's suggestions: the model's, or the stager's where it
    led) for every unflagged, unscored epoch with a suggestion: all the
    decisions (each audited with its suggestion) and one ``bulk_accept`` event in one
    transaction. Returns the decisions ([] and nothing written when there are none)."""
    if queue.n_epochs != study.n_epochs:
        raise ValueError(f"the review queue covers {queue.n_epochs} epochs, the study "
                         f"{study.n_epochs}")
    epochs = queue.acceptable(study.stages())
    if not epochs:
        return []
    chosen = [queue.suggestions[e] for e in epochs]
    models = sorted({(s.model_id, s.renderer_version) for s in chosen})
    with study.batch():
        study.record_event(BULK_ACCEPT, {
            "count": len(epochs), "first_epoch": epochs[0], "last_epoch": epochs[-1],
            "models": [list(m) for m in models], "criteria": queue.criteria,
            "rule": "every epoch with a suggested stage, no review flag and no stage yet"},
            scorer)
        return [accept(study, e, s, scorer, note=BULK_NOTE) for e, s in zip(epochs, chosen)]

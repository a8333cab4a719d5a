"""The review queue: which of the model's suggestions the technologist should look at, and why
(no Qt).

Every epoch with a suggestion from the vision-language model is checked; each finding is a
*reason* with a weight, and an epoch with at least one reason is *flagged*. Its priority is
the sum of its reasons' weights (higher: look first):

=========================  ======  ==========================================================
reason                     weight  when
=========================  ======  ==========================================================
``no_stage``               5       the answer named no sleep stage (unparseable)
``disagrees``              4       the second opinion (``core.second_opinion``) names another
                                   stage
``contradicted``           4       a rule the answer cites is contradicted by the measured
                                   signal (``evidence.check_rule``)
``answer_flagged``         3       the answer carries a flag (``core.answer``: repaired
                                   beyond trust, rule not fitting the stage, ...); the
                                   informational ``edge_epoch`` does not count
``low_confidence``         2       the second opinion's highest probability is below
                                   ``LOW_CONFIDENCE`` (0.5: it favours no stage over the
                                   other four together)
``n1``                     1       the suggestion is N1 (the stage scorers agree on least)
``transition``             1       the suggested stage differs from a neighbouring epoch's
=========================  ======  ==========================================================

The queue is in epoch order (the technologist walks the night); ``next_after`` /
``previous_before`` move between flagged epochs. An epoch counts as *reviewed* once it has a
technologist's stage (any decision that left it scored; an undo back to unscored un-reviews
it). ``accept_unflagged`` takes the model's stage for every unflagged, unscored epoch with a
suggestion in one transaction: one decision per epoch (source ``ai_accepted``, each audited
with its suggestion) and one ``bulk_accept`` audit event naming the count and the criteria.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from .stages import Stage

LOW_CONFIDENCE = 0.5
BULK_ACCEPT = "bulk_accept"        # audit event kind
BULK_NOTE = "accepted in bulk: no review flag"

NO_STAGE, DISAGREES, CONTRADICTED = "no_stage", "disagrees", "contradicted"
ANSWER_FLAGGED, LOW_CONF, N1, TRANSITION = "answer_flagged", "low_confidence", "n1", "transition"
WEIGHTS = {NO_STAGE: 5, DISAGREES: 4, CONTRADICTED: 4, ANSWER_FLAGGED: 3, LOW_CONF: 2, N1: 1,
           TRANSITION: 1}
INFORMATIONAL_FLAGS = ("edge_epoch",)


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
        return epoch in self.items

    def item(self, epoch: int) -> ReviewItem | None:
        return self.items.get(epoch)

    def next_after(self, epoch: int) -> int | None:
        """The first flagged epoch after ``epoch`` (None: none left)."""
        i = bisect.bisect_right(self.flagged, epoch)
        return self.flagged[i] if i < len(self.flagged) else None

    def previous_before(self, epoch: int) -> int | None:
        """The last flagged epoch before ``epoch`` (None: none)."""
        i = bisect.bisect_left(self.flagged, epoch)
        return self.flagged[i - 1] if i > 0 else None

    def by_priority(self) -> list[ReviewItem]:
        """Flagged epochs, highest priority first (ties in epoch order)."""
        return sorted(self.items.values(), key=lambda it: (-it.priority, it.epoch))

    def counts(self, stages: Sequence[Stage]) -> tuple[int, int]:
        """(flagged epochs reviewed, flagged epochs): reviewed = scored by the technologist."""
        reviewed = sum(1 for e in self.flagged if e < len(stages) and stages[e].is_scored)
        return reviewed, len(self.flagged)

    def acceptable(self, stages: Sequence[Stage]) -> list[int]:
        """Unflagged epochs with a suggested stage and no technologist stage yet."""
        out = []
        for epoch in sorted(self.suggestions):
            s = self.suggestions[epoch]
            if (epoch not in self.items and getattr(s, "stage", None) is not None
                    and 0 <= epoch < len(stages) and not stages[epoch].is_scored):
                out.append(epoch)
        return out


def status_text(queue: ReviewQueue | None, stages: Sequence[Stage]) -> str:
    """``reviewed 12 of 40 flagged`` (empty when there is nothing to review)."""
    if queue is None or not queue.suggestions:
        return ""
    reviewed, flagged = queue.counts(stages)
    return f"reviewed {reviewed} of {flagged} flagged"


def build_queue(n_epochs: int, suggestions: Mapping[int, object], *,
                second_opinions: Mapping[int, object] | None = None,
                evidence: Sequence | None = None,
                low_confidence: float = LOW_CONFIDENCE) -> ReviewQueue:
    """Check every suggestion (``core.suggestions.Suggestion``: stage, rules, flags) against
    the second opinions (``core.second_opinion.SecondOpinion``: stage, confidence) and the
    measured evidence (``evidence.measure_*``), where given."""
    from .evidence.rules_check import CONTRADICTED as VERDICT_CONTRADICTED, check_rule

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
        reasons: list[Reason] = []
        if stage is None:
            reasons.append(Reason(NO_STAGE, f"the answer named no stage ({s.stage_text!r})"
                                  if s.stage_text else "the answer named no stage"))
        other = second_opinions.get(epoch)
        if other is not None and stage is not None and other.stage is not stage:
            reasons.append(Reason(DISAGREES, f"second opinion: {other.stage.value} "
                                             f"({other.confidence:.0%})"))
        if use_evidence and stage is not None:
            bad = [r for r in s.rules
                   if check_rule(r, evidence, epoch, suggested).verdict == VERDICT_CONTRADICTED]
            if bad:
                reasons.append(Reason(CONTRADICTED, f"signal contradicts {', '.join(bad)}"))
        flags = [f for f in s.flags if str(f).partition(":")[0] not in INFORMATIONAL_FLAGS]
        if flags and stage is not None:
            reasons.append(Reason(ANSWER_FLAGGED, f"answer flagged ({len(flags)})"))
        if other is not None and other.confidence < low_confidence:
            reasons.append(Reason(LOW_CONF, f"second opinion unsure ({other.confidence:.0%})"))
        if stage is Stage.N1:
            reasons.append(Reason(N1, "N1"))
        if stage is not None:
            around = [suggested[i] for i in (epoch - 1, epoch + 1) if 0 <= i < n_epochs]
            if any(n is not None and n is not stage for n in around):
                reasons.append(Reason(TRANSITION, "stage change"))
        if reasons:
            items[epoch] = ReviewItem(epoch, tuple(reasons))
    criteria = {"reasons": dict(WEIGHTS), "low_confidence_below": low_confidence,
                "informational_flags": list(INFORMATIONAL_FLAGS),
                "second_opinion": _method(second_opinions),
                "evidence_checked": bool(use_evidence)}
    return ReviewQueue(n_epochs, items, dict(suggestions), criteria)


def _method(second_opinions: Mapping[int, object]) -> str | None:
    for opinion in second_opinions.values():
        return getattr(opinion, "method", None)
    return None


def accept_unflagged(study, queue: ReviewQueue, scorer: str) -> list:
    """Accept the model's stage for every unflagged, unscored epoch with a suggestion: all the
    decisions (each audited with its suggestion) and one ``bulk_accept`` event in one
    transaction. Returns the decisions ([] and nothing written when there are none)."""
    from .suggestions import accept

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

"""Review: the open study as the technologist works on it. The ReviewSession (recording, study,
where they are, score-and-advance, undo), the SuggestionReview of the model's suggestions (what
is offered, evidence checks, accept / override, evented for the views), the stage as offered
(led by the real-trained stager) and the review queue of flagged suggestions.

May import: ``core.base``, ``core.signals``, ``core.study`` and ``core.trust``. Never
``core.model``.
"""

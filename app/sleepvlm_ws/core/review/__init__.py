"""Review: the open study as the technologist works on it. The ReviewSession (recording, study,
where they are, score-and-advance, undo) and the review queue of flagged suggestions.

May import: ``core.base``, ``core.signals``, ``core.study`` and ``core.trust``. Never
``core.model``.
"""

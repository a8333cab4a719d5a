"""The study: one SQLite file per recording holding the montage, every Decision, the model's
Suggestions and the hash-chained audit trail (writing it, verifying it, replaying it against the
tables), and the exchange formats a study is exported to and imported from.

May import: ``core.base`` and ``core.signals`` (a study names its recording and montage). Never
``core.model``: a study stores what a model said without knowing how it was said.
"""

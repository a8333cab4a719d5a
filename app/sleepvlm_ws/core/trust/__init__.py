"""Trust: what lets a technologist judge a suggestion. Evidence measured from the signals and
rules checked against it, the second opinion (YASA), agreement between scorings, calibration of
the model's probabilities, sleep statistics, and the signed-off report.

May import: ``core.base``, ``core.signals``, ``core.study`` and ``core.model`` (the report names
the model pack).
"""

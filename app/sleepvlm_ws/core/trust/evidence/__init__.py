"""AASM evidence measured from the signals: one implementation for training targets and for
checking the model's answers (no Qt)."""

from .measures import EpochEvidence, measure_night, measure_recording
from .rationale import Sentence, rationale_sentences, write_rationale
from .rules_check import RuleCheck, check_rule, derive_rules

__all__ = ["EpochEvidence", "measure_night", "measure_recording", "RuleCheck", "check_rule",
           "derive_rules", "Sentence", "rationale_sentences", "write_rationale"]

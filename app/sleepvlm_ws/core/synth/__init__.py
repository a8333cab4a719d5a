"""Physiological PSG generator: realistic overnight recordings with a known hypnogram.

Used for the bundled demo study, for tests, and (a later issue) for training the default
model. ``cycles`` draws the hypnogram, ``waveforms`` the stage-specific signal elements,
``night`` assembles a whole night and writes it as EDF+.

May import: ``core.base``, ``core.signals``, ``core.study`` (the EDF+ hypnogram labels) and
``core.trust`` (the sleep statistics a night's architecture is fitted to).
"""

from .cycles import Subject, draw_hypnogram, draw_subject
from .night import SyntheticNight, generate_night, write_night_edf

__all__ = ["Subject", "draw_subject", "draw_hypnogram", "SyntheticNight", "generate_night",
           "write_night_edf"]

"""Signals: reading recordings (EDF/EDF+/BDF headers and sources, DREAMS text excerpts), the
Montage that fills SleepVLM's six roles, conditioning and rasterising a role, the renderer (one
pure function of signals and epoch to the SleepVLM image) and the display filters.

May import: ``core.base``. Never ``core.model``, ``core.study`` or anything above them: a signal
does not know who will read it.
"""

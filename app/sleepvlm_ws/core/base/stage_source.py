"""The names of where a suggested stage may come from (``core.review.suggested_stage`` says why).

Here, in the shared vocabulary, because the workstation's settings (``core.model.settings``)
store the choice and the review package applies it.
"""

from __future__ import annotations

__all__ = ["STAGER", "MODEL", "SOURCES", "DEFAULT_SOURCE", "SOURCE_TEXT", "check_source"]

STAGER = "stager"     # the real-trained stager's stage where it has one, else the model's
MODEL = "model"       # the model's own stage everywhere
SOURCES = (STAGER, MODEL)
DEFAULT_SOURCE = STAGER
SOURCE_TEXT = {STAGER: "the real-trained stager (YASA) where it ran, else the model",
               MODEL: "the model pack"}


def check_source(value: object) -> str:
    """The source named by ``value``.

    Parameters
    ----------
    value : object
        ``"stager"`` or ``"model"``.

    Returns
    -------
    str
        ``value`` when it names a source.

    Raises
    ------
    ValueError
        For anything else.
    """
    if value not in SOURCES:
        raise ValueError(f"suggested stage source must be one of {', '.join(SOURCES)}, "
                         f"not {value!r}")
    return str(value)

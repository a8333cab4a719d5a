"""Derivation: what fills one montage role, a recording channel as recorded or the difference of
two (``positive - negative``), by the labels the file gives them."""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Derivation"]


@dataclass(frozen=True)
class Derivation:
    """``positive - negative`` (negative None: the channel as recorded). Labels as in the file."""

    positive: str
    negative: str | None = None

    @property
    def name(self) -> str:
        return self.positive if self.negative is None else f"{self.positive} - {self.negative}"

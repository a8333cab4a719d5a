"""The chat request for one target epoch, laid out exactly as SleepVLM saw it in training.

One system message (the model pack's prompt file, verbatim), then ONE user message whose
content is, in this order:

    text  "Preceding epoch N\u20111: "     (U+2011 non-breaking hyphen, as in training)
    image epoch N-1
    text  "**Target epoch N**: "
    image epoch N
    text  "Subsequent epoch N+1: "
    image epoch N+1

The labels are literal: the letter N, never the epoch number. Images travel as PNG data URIs
(``data:image/png;base64,...``), never as plain URLs (llama-cpp-python would fetch those over
the network).

Edge policy (the first and last epoch of a recording were never targets in training, and a
neighbour may lie inside a gap of the recording):

- A missing neighbour (``None``: before the first or after the last epoch, or a neighbour
  whose own signal is entirely missing) is replaced by the blank epoch image: an
  ``EpochWindow`` with no signals, i.e. black with the grid, exactly as the renderer draws an
  epoch with no data. A neighbour whose PNG is byte-identical to that blank image counts as
  missing too.
- Such a request is still sent, but ``EpochImages.edge`` is True and the runtime adds the
  flag ``"edge_epoch"`` (``EDGE_FLAG``) to the answer, so the technologist sees that the
  model judged it without the context it was trained with.
- An epoch whose own signal is entirely missing is not sent at all: that is the caller's
  job, with ``epoch_has_signal(window)``.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..base.stages import EPOCH_SECONDS
from ..signals.render import PAD_S, EpochWindow, render_png

PRECEDING_LABEL = "Preceding epoch N\u2011" + "1: "
TARGET_LABEL = "**Target epoch N**: "
SUBSEQUENT_LABEL = "Subsequent epoch N+1: "
EDGE_FLAG = "edge_epoch"

__all__ = ["PRECEDING_LABEL", "TARGET_LABEL", "SUBSEQUENT_LABEL", "EDGE_FLAG", "EpochImages",
           "blank_epoch_png", "build_messages", "epoch_has_signal", "png_data_uri",
           "request_images", "RequestInterrupted"]


class RequestInterrupted(Exception):
    """A request given up half-way because something more urgent asked for the model (the
    epoch on screen preempting the background pass). Nothing was answered; ask again."""


@lru_cache(maxsize=1)
def blank_epoch_png() -> bytes:
    """The image of an epoch with no signal at all: black with the grid."""
    return render_png(EpochWindow(signals={}, pad_s=PAD_S))


@dataclass(frozen=True)
class EpochImages:
    """The three PNG images of one request. ``prev`` / ``next`` None: no neighbour there."""

    prev: bytes | None
    target: bytes
    next: bytes | None

    def __post_init__(self):
        for name in ("prev", "target", "next"):
            value = getattr(self, name)
            if value is None and name != "target":
                continue
            if not isinstance(value, (bytes, bytearray)) or not bytes(value[:8]) == b"\x89PNG\r\n\x1a\n":
                raise ValueError(f"EpochImages.{name}: expected PNG bytes, got {type(value).__name__}")

    @property
    def edge(self) -> bool:
        """True when a neighbour is missing (recording edge or gap) and a blank stands in."""
        blank = blank_epoch_png()
        return any(img is None or bytes(img) == blank for img in (self.prev, self.next))

    def sent(self) -> tuple[bytes, bytes, bytes]:
        """(preceding, target, subsequent) as sent: blanks substituted for missing neighbours."""
        blank = blank_epoch_png()
        return (blank if self.prev is None else bytes(self.prev), bytes(self.target),
                blank if self.next is None else bytes(self.next))


def request_images(prev: bytes | None, target: bytes, next: bytes | None) -> EpochImages:  # noqa: A002
    """The three images of a request (None for a neighbour that is not there)."""
    return EpochImages(prev, target, next)


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _image_part(png: bytes) -> dict:
    return {"type": "image_url", "image_url": {"url": png_data_uri(png)}}


def build_messages(system_prompt: str, images: EpochImages) -> list[dict]:
    """The chat messages of the request for ``images.target`` (see the module docstring)."""
    prev, target, nxt = images.sent()
    return [
        {"role": "system", "content": system_prompt},
        {"role": "user", "content": [
            {"type": "text", "text": PRECEDING_LABEL}, _image_part(prev),
            {"type": "text", "text": TARGET_LABEL}, _image_part(target),
            {"type": "text", "text": SUBSEQUENT_LABEL}, _image_part(nxt),
        ]},
    ]


def epoch_has_signal(window: EpochWindow) -> bool:
    """True when any role has at least one finite sample inside the epoch itself (the context
    padding around it does not count)."""
    for entry in window.signals.values():
        if entry is None:
            continue
        samples, fs = entry
        samples = np.asarray(samples)
        if samples.size == 0:
            continue
        start = max(0, int(round(window.before_s * float(fs))))
        stop = min(samples.size, int(round((window.before_s + EPOCH_SECONDS) * float(fs))))
        if stop > start and np.isfinite(samples[start:stop]).any():
            return True
    return False

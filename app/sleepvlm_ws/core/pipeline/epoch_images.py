"""The images of a scoring run: each epoch's window read from the recording as the model pack's
renderer wants it (its manifest's ``renderer_version``), rendered once and kept for the three
requests it appears in.

No Qt. ``read_epoch_window`` and ``EpochImageCache`` are also imported from
``core.pipeline.scoring_run``, which uses them.
"""

from __future__ import annotations

from collections import OrderedDict

from ..base.stages import EPOCH_SECONDS
from ..model import request as _request
from ..signals.montage import ROLES, Montage, read_role
from ..signals.render import (AUTHORS_RENDERER_VERSION, PAD_S, RENDERER_VERSION, EpochWindow, check_renderer,
                              epoch_window_span, render_png)

__all__ = ["IMAGE_CACHE_SIZE", "EpochImageCache", "read_epoch_window"]

IMAGE_CACHE_SIZE = 6          # the three images of a request plus a little slack


def read_epoch_window(recording, montage: Montage, epoch: int,
                      renderer: str = RENDERER_VERSION) -> EpochWindow:
    """Raw samples of every role around ``epoch`` (the renderer's input).

    Parameters
    ----------
    recording : Recording
        The open recording.
    montage : Montage
        Which derivation fills each role.
    epoch : int
        The epoch (0-based).
    renderer : str
        The pixels the model pack was trained on (its manifest's ``renderer_version``):
        ``svlm-render-1`` takes the 100-Hz samples every 1/100 s from the epoch start;
        ``svlm-render-2`` (the authors' renderer) places the window in its night, as their
        whole-night resampling did (``EpochWindow.epoch_start_s`` / ``recording_s``).

    Returns
    -------
    EpochWindow
    """
    check_renderer(renderer)
    span = epoch_window_span(epoch, recording.duration_s)
    signals = {}
    for role in ROLES:
        derivation = montage.roles.get(role)
        signals[role] = (None if derivation is None
                         else read_role(recording, derivation, span.start_s, span.stop_s))
    placed = renderer == AUTHORS_RENDERER_VERSION
    return EpochWindow(signals, pad_s=PAD_S, pad_before_s=span.pad_before_s,
                       pad_after_s=span.pad_after_s,
                       epoch_start_s=epoch * EPOCH_SECONDS if placed else None,
                       recording_s=float(recording.duration_s) if placed else None)


class EpochImageCache:
    """Epoch -> (PNG bytes, has signal), rendered once, least recently used dropped."""

    def __init__(self, recording, montage: Montage, size: int = IMAGE_CACHE_SIZE,
                 renderer: str = RENDERER_VERSION):
        self.recording, self.montage, self.size = recording, montage, max(3, int(size))
        self.renderer = check_renderer(renderer)
        self._items: OrderedDict[int, tuple[bytes, bool]] = OrderedDict()
        self.renders = 0

    def get(self, epoch: int) -> tuple[bytes, bool]:
        item = self._items.get(epoch)
        if item is not None:
            self._items.move_to_end(epoch)
            return item
        window = read_epoch_window(self.recording, self.montage, epoch, self.renderer)
        item = (render_png(window), bool(_request.epoch_has_signal(window)))
        self.renders += 1
        self._items[epoch] = item
        while len(self._items) > self.size:
            self._items.popitem(last=False)
        return item

    def request_images(self, epoch: int, n_epochs: int) -> "_request.EpochImages":
        """The three images of the request for ``epoch`` (blank beyond the recording)."""
        prev = self.get(epoch - 1)[0] if epoch > 0 else None
        target = self.get(epoch)[0]
        nxt = self.get(epoch + 1)[0] if epoch + 1 < n_epochs else None
        return _request.request_images(prev, target, nxt)

"""What the detectors found, drawn on the waveform view, measured off the GUI thread.

``EvidenceService`` keeps a ``core.trust.evidence.epoch_cache.EvidenceCache`` for the recording on
screen and measures epochs on one worker thread (about 30 ms an epoch, see
``benchmarks/bench_detectors.py``): ``request`` queues epochs, ``epoch_measured`` fires in the
GUI thread once one is kept, ``findings`` answers from the cache only. The AI panel's evidence
checks read the same cache.

``EvidenceOverlays`` draws, for the epochs the 60-s window touches, detected spindles, K
complexes, slow waves, REMs and alpha stretches as translucent bands on the rows they were
measured on; each kind can be switched off (View > Evidence overlays).
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

from PySide6.QtCore import QObject, Signal

from ..core.base.stages import EPOCH_SECONDS
from ..core.trust.evidence.epoch_cache import EVENT_KINDS, EpochFindings, EvidenceCache
from .plot_items import EventRegions

#: Band colours (#AARRGGBB): translucent so the trace stays readable.
KIND_COLOURS = {"spindle": "#5a40e0ff", "k_complex": "#6aff9040", "slow_wave": "#40ffd040",
                "rem": "#6a40ffff", "alpha": "#38ff4060"}


FOCUS_SPAN = 2


class EvidenceService(QObject):
    """Per-epoch evidence of the recording on screen, measured in a worker thread."""

    epoch_measured = Signal(int)
    _done = Signal(int, int)          # (generation, epoch), from the worker thread

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.cache: EvidenceCache | None = None
        self._generation = 0
        self._pending: set[int] = set()
        self._executor: ThreadPoolExecutor | None = None
        #: The epoch on screen: queued epochs further than FOCUS_SPAN from it are skipped when
        #: their turn comes (paging fast does not leave a backlog in front of the new epoch).
        self.focus: int | None = None
        self._done.connect(self._on_done)

    def set_source(self, recording, montage) -> None:
        """Measure ``recording`` through ``montage`` from now on (None: nothing); what was
        kept or queued for the previous source is dropped."""
        self._generation += 1
        self._pending.clear()
        self.cache = None if recording is None or montage is None else EvidenceCache(recording, montage)

    def findings(self, epoch: int) -> EpochFindings | None:
        return None if self.cache is None else self.cache.cached(epoch)

    def request(self, epochs) -> None:
        """Queue the epochs not yet kept (out-of-range ones are ignored)."""
        cache = self.cache
        if cache is None:
            return
        for epoch in epochs:
            epoch = int(epoch)
            if 0 <= epoch < cache.n_epochs and epoch not in self._pending and cache.cached(epoch) is None:
                self._pending.add(epoch)
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="evidence")
                self._executor.submit(self._measure, cache, self._generation, epoch)

    def _measure(self, cache: EvidenceCache, generation: int, epoch: int) -> None:
        if generation != self._generation:
            return                      # the recording changed while this waited
        focus = self.focus
        if focus is not None and abs(epoch - focus) > FOCUS_SPAN:
            self._done.emit(generation, epoch)   # paged away meanwhile: not measured now
            return
        try:
            cache.get(epoch)
        except Exception:               # a read failure leaves the epoch unmeasured, never a crash
            pass
        self._done.emit(generation, epoch)

    def _on_done(self, generation: int, epoch: int) -> None:
        if generation != self._generation:
            return
        self._pending.discard(epoch)
        if self.findings(epoch) is not None:
            self.epoch_measured.emit(epoch)

    def shutdown(self) -> None:
        self.set_source(None, None)
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None


class EvidenceOverlays(QObject):
    """The detected events of the epochs in view, as bands on the waveform view's rows."""

    def __init__(self, view, service: EvidenceService):
        super().__init__(view)
        self.view = view
        self.service = service
        self.visible: dict[str, bool] = {kind: True for kind in EVENT_KINDS}
        self.items: dict[str, EventRegions] = {}
        service.epoch_measured.connect(self._on_measured)

    def rows_rebuilt(self) -> None:
        """The view rebuilt its rows: one band item per row, added behind the trace."""
        self.items = {}
        for row in self.view.rows:
            if row.plot is None or row.missing:
                continue
            item = EventRegions()
            row.plot.addItem(item, ignoreBounds=True)
            self.items[row.key] = item

    def epochs_in_view(self) -> list[int]:
        start, stop = self.view.window_s
        return list(range(max(0, math.floor(start / EPOCH_SECONDS)),
                          math.ceil(stop / EPOCH_SECONDS)))

    def window_changed(self) -> None:
        """The view paged: draw what is kept, ask for the rest."""
        if self.view.epoch is None:
            return
        epochs = self.epochs_in_view()
        self.service.focus = self.view.epoch
        centre = [self.view.epoch] + [e for e in epochs if e != self.view.epoch]
        self.service.request(centre)      # the epoch being scored first
        self.redraw()

    def set_visible(self, kind: str, on: bool) -> None:
        if kind not in self.visible:
            raise KeyError(kind)
        self.visible[kind] = bool(on)
        self.redraw()

    def events(self):
        """The events drawn now (visible kinds, epochs in view, kept evidence only)."""
        if self.view.epoch is None:
            return []
        start, stop = self.view.window_s
        out = []
        for epoch in self.epochs_in_view():
            found = self.service.findings(epoch)
            if found is None:
                continue
            out += [e for e in found.events()
                    if self.visible.get(e.kind) and e.stop_s > start and e.start_s < stop]
        return out

    def redraw(self) -> None:
        per_row: dict[str, list] = {key: [] for key in self.items}
        for event in self.events():
            if event.role in per_row:
                per_row[event.role].append((event.start_s, event.stop_s, KIND_COLOURS[event.kind]))
        for key, item in self.items.items():
            item.set_regions(per_row[key])

    def _on_measured(self, epoch: int) -> None:
        if epoch in self.epochs_in_view():
            self.redraw()

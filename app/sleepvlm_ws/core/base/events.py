"""A tiny Qt-free event emitter, so core models can be observed by the UI (napari style)."""

from __future__ import annotations

from typing import Any, Callable


class EventEmitter:
    """``emitter.connect(callback)``; ``emitter.emit(*args)`` calls every callback in order."""

    def __init__(self) -> None:
        self._callbacks: list[Callable[..., Any]] = []

    def connect(self, callback: Callable[..., Any]) -> None:
        """Add ``callback`` to the callbacks :meth:`emit` calls; connecting it twice adds it once.

        Parameters
        ----------
        callback : callable
            Called with the arguments of every later :meth:`emit`, after those connected before it.
        """
        if callback not in self._callbacks:
            self._callbacks.append(callback)

    def disconnect(self, callback: Callable[..., Any]) -> None:
        """Remove ``callback``; a callback that is not connected is ignored.

        Parameters
        ----------
        callback : callable
            A callback given to :meth:`connect`.
        """
        if callback in self._callbacks:
            self._callbacks.remove(callback)

    def emit(self, *args: Any) -> None:
        for callback in list(self._callbacks):
            callback(*args)

"""SuggestionKey: whose answers a stored suggestion is, as one value (no Qt).

A study keeps the answers of every model it was scored with, side by side. Three things say
which answers are which: the model (its LM file's SHA-256, the pack's ``model_id``), the
renderer version of the images it was shown (a pack trained on ``svlm-render-2`` pixels is
another reader than the same weights shown ``svlm-render-1``) and the pass (``fast``: stage and
rules; ``rationale``: the written reasoning too). ``SuggestionKey`` carries the three together,
so a runtime, a scoring run, the store and the review all name the same answers the same way.

The pass may be left open (``pass_name=None``): the key then names the model's answers in both
passes, as the store's merged reads (``SuggestionStore.get``, ``all_for``) and the review want.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

__all__ = ["SuggestionKey", "FAST", "RATIONALE", "PASSES"]

FAST = "fast"
RATIONALE = "rationale"
PASSES = (FAST, RATIONALE)


@dataclass(frozen=True)
class SuggestionKey:
    """Which model's answers: model, renderer version and (optionally) pass.

    Attributes
    ----------
    model_id : str
        The model pack's ``model_id`` (its LM file's SHA-256).
    renderer_version : str
        The renderer of the images the model was shown (``core.signals.render.RENDERERS``).
    pass_name : str or None
        ``fast`` or ``rationale``; None: both passes.

    Raises
    ------
    ValueError
        An empty model id or renderer version, or a pass that is not one of ``PASSES``.
    """

    model_id: str
    renderer_version: str
    pass_name: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.model_id, str) or not self.model_id:
            raise ValueError("a model id is required")
        if not isinstance(self.renderer_version, str) or not self.renderer_version:
            raise ValueError("a renderer version is required")
        if self.pass_name is not None and self.pass_name not in PASSES:
            raise ValueError(f"not a pass: {self.pass_name!r} (expected {' or '.join(PASSES)})")

    @classmethod
    def of(cls, runtime, pass_name: str | None = None) -> "SuggestionKey":
        """The key of a runtime's answers.

        Parameters
        ----------
        runtime : object
            Anything with ``model_id`` and ``renderer_version`` (``LocalRuntime``,
            ``RemoteRuntime``, ``RemotePool``, a ``RunSummary``).
        pass_name : str, optional
            The pass; default: both.

        Returns
        -------
        SuggestionKey
        """
        return cls(str(runtime.model_id), str(runtime.renderer_version), pass_name)

    def for_pass(self, pass_name: str | None) -> "SuggestionKey":
        """This model's key for ``pass_name`` (None: both passes)."""
        return replace(self, pass_name=pass_name)

    def require_pass(self) -> str:
        """The key's pass; a ValueError when it is left open (a write or a per-pass read needs
        one)."""
        if self.pass_name is None:
            raise ValueError(f"the key of model {self.model_id[:12]} names no pass "
                             f"(expected {' or '.join(PASSES)})")
        return self.pass_name

    def describe(self) -> str:
        """``model 3f2a9c01b7d4 (svlm-render-1, fast)``: for messages and logs."""
        tail = self.renderer_version if self.pass_name is None else \
            f"{self.renderer_version}, {self.pass_name}"
        return f"model {self.model_id[:12]} ({tail})"

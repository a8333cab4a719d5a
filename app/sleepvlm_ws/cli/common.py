"""What the commands share: the exit codes, the default pack, opening a study for a path, progress
on stderr, and argparse types."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..core.model.model_pack import MANIFEST_NAME, default_search_dirs
from ..core.review.session import ReviewSession
from ..core.study.study import STUDY_SUFFIX, Study, default_study_path
from .exit_codes import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERNAL, EXIT_OK  # noqa: F401 (for the commands)

NO_DEFAULT_PACK = "no model pack given and no default pack installed"


def default_pack() -> Path | None:
    """The default model pack: a pack folder named ``default`` in a pack search folder
    (the repository's ``models/``, the user's ``packs/``, $SLEEPVLM_WS_PACKS)."""
    for folder in default_search_dirs():
        pack = folder / "default"
        if (pack / MANIFEST_NAME).is_file():
            return pack
    return None


def study_path_for(path: str | Path) -> Path:
    """The study file a STUDY argument names: the study file itself, or, for a recording, the
    study beside it (``night.edf`` -> ``night.edf.sleepvlm``) where there is one."""
    p = Path(path)
    if p.suffix != STUDY_SUFFIX and default_study_path(p).exists():
        return default_study_path(p)
    return p


def study_for(path: str, scorer: str, *, create: bool):
    """Open a study file; a recording path stands for the study next to it (created if asked)."""
    p = Path(path)
    if p.suffix == STUDY_SUFFIX or default_study_path(p).exists() or not create:
        return Study.open(study_path_for(p))

    session = ReviewSession.open(p, scorer=scorer)
    session.recording.close()
    return session.study


def printable(text: str) -> str:
    """``text`` with control characters shown as escapes (never sent raw to a terminal)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


class Progress:
    """Scoring progress on stderr: tqdm when installed, else one line rewritten with \\r."""
    def __init__(self, label: str):
        self.label, self._bar, self._width = label, None, 0

    def __call__(self, done: int, total: int, eta_s: float | None) -> None:
        eta = "--" if eta_s is None else duration(eta_s)
        try:
            from tqdm import tqdm  # late: optional: a plain progress line without it
        except ImportError:
            line = f"{self.label} {done}/{total} epochs, {eta} left"
            print("\r" + line.ljust(self._width), end="", file=sys.stderr, flush=True)
            self._width = len(line)
            return
        if self._bar is None:
            self._bar = tqdm(total=total, desc=self.label, unit="epoch", file=sys.stderr,
                             bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} "
                                        "epochs [{elapsed}, {postfix}]")
        self._bar.set_postfix_str(f"{eta} left", refresh=False)
        self._bar.update(done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self._width:
            print(file=sys.stderr)


def duration(seconds: float) -> str:
    seconds = int(round(max(0.0, seconds)))
    h, rest = divmod(seconds, 3600)
    return f"{h}h{rest // 60:02d}m" if h else f"{rest // 60}m{rest % 60:02d}s"


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def positive_int_at_most(maximum: int):
    """An argparse type: a whole number from 1 to ``maximum``."""
    def parse(text: str) -> int:
        value = positive_int(text)
        if value > maximum:
            raise argparse.ArgumentTypeError(f"at most {maximum}, not {value}")
        return value
    return parse


def gui_options(s: argparse.ArgumentParser) -> None:
    s.add_argument("--screenshot", help="save a PNG of the window once the study is on screen")
    s.add_argument("--exit-after", type=float, metavar="SECONDS",
                   help="close the window this long after the study is on screen (unattended runs)")
    s.add_argument("--model", metavar="PACK",
                   help="model pack folder to load for AI suggestions (verified first)")

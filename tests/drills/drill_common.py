"""What every failure drill shares: the real ``sleepvlm-ws`` CLI as a subprocess, the checks on
its answer (exit code, one line on stderr naming the file, no traceback), hashes, and the result
records the runner turns into a table.

A drill is a function ``drill(ctx) -> DrillResult``. Each case it runs is a ``Case``: ``ok`` says
whether the workstation did what it must, ``detail`` what was seen (one line), ``lost`` what was
lost if anything (empty: nothing).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TESTS = REPO / "tests"
for _p in (str(TESTS), str(REPO / "app")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

VENV_BIN = Path(sys.executable).parent
CLI = VENV_BIN / "sleepvlm-ws"
if not CLI.exists():  # fall back to the repository's venv
    CLI = REPO / ".venv" / "bin" / "sleepvlm-ws"
PYTHON = sys.executable
SCORER = "drill"


@dataclass
class Case:
    name: str
    ok: bool
    detail: str = ""
    lost: str = ""


@dataclass
class DrillResult:
    name: str
    cases: list[Case] = field(default_factory=list)
    not_run: str = ""          # why the drill could not run on this machine ("" when it ran)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, name: str, ok: bool, detail: str = "", lost: str = "") -> Case:
        case = Case(name, bool(ok), " ".join(str(detail).split()), lost)
        self.cases.append(case)
        return case

    @property
    def ok(self) -> bool:
        return not self.not_run and all(c.ok for c in self.cases)

    @property
    def outcome(self) -> str:
        if self.not_run:
            return "not run here"
        bad = sum(not c.ok for c in self.cases)
        return "pass" if not bad else f"FAIL ({bad} of {len(self.cases)})"

    @property
    def lost(self) -> str:
        if self.not_run:
            return "-"
        losses = [f"{c.name}: {c.lost}" for c in self.cases if c.lost]
        return "; ".join(losses) if losses else "nothing"


@dataclass
class Context:
    """Where a drill may write (``work``), the per-run user data folder (``home``), options."""

    work: Path
    home: Path
    quick: bool
    seed: int
    log: callable = print

    def folder(self, name: str) -> Path:
        p = self.work / name
        p.mkdir(parents=True, exist_ok=True)
        return p


@dataclass
class CliRun:
    args: list[str]
    rc: int | None
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool = False

    def err_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]

    def short(self) -> str:
        text = (self.stderr.strip() or self.stdout.strip()).splitlines()
        return f"exit {self.rc}" + (f": {text[-1][:160]}" if text else "")


def cli_env(home: Path) -> dict:
    env = dict(os.environ, SLEEPVLM_WS_HOME=str(home), PYTHONUNBUFFERED="1",
               QT_QPA_PLATFORM="offscreen")
    env.pop("SLEEPVLM_WS_PACKS", None)
    return env


def cli(ctx: Context, *args, timeout: float = 120, cwd: Path | None = None) -> CliRun:
    """Run ``sleepvlm-ws --scorer drill ARGS`` with the drill's user data folder."""
    argv = [str(CLI), "--scorer", SCORER, *map(str, args)]
    t0 = time.monotonic()
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              env=cli_env(ctx.home), cwd=str(cwd or ctx.work),
                              errors="backslashreplace")
    except subprocess.TimeoutExpired as exc:
        def _text(b):
            return b.decode("utf-8", "backslashreplace") if isinstance(b, bytes) else (b or "")
        return CliRun(argv, None, _text(exc.stdout), _text(exc.stderr), time.monotonic() - t0, True)
    return CliRun(argv, proc.returncode, proc.stdout, proc.stderr, time.monotonic() - t0)


def clean_refusal(run: CliRun, name: str, *, code: int = 2, words: tuple[str, ...] = ()) -> tuple[bool, str]:
    """Exit ``code``, exactly one stderr line naming ``name`` (and ``words``), no traceback."""
    if run.timed_out:
        return False, f"did not finish within {run.seconds:.0f} s"
    lines = run.err_lines()
    problems = []
    if run.rc != code:
        problems.append(f"exit {run.rc}, expected {code}")
    if "Traceback" in run.stderr or "Traceback" in run.stdout:
        problems.append("a traceback was printed")
    if len(lines) != 1:
        problems.append(f"{len(lines)} stderr lines")
    elif name not in lines[0]:
        problems.append(f"the line does not name {name}")
    for w in words:
        if lines and w not in " ".join(lines):
            problems.append(f"no {w!r} in the message")
    said = lines[-1][:200] if lines else "(nothing on stderr)"
    return (not problems), ("; ".join(problems) + " | " if problems else "") + said


def sha256(path: Path) -> str:
    if not path.is_file():
        return f"<{'folder' if path.is_dir() else 'absent'}>"
    return hashlib.sha256(path.read_bytes()).hexdigest()


def suggestion_count(study_path: Path) -> int:
    """Rows in the study's suggestions table (read-only connection; 0 before it exists)."""
    import sqlite3

    if not study_path.exists():
        return 0
    conn = sqlite3.connect(f"file:{study_path}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute("SELECT COUNT(*) FROM suggestions").fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()


def small_recording(path: Path, *, seconds: int = 120, fs: int = 100, file_type: str = "EDF+",
                    labels=("EEG C4-M1", "EOG E1-M2")) -> Path:
    """A small, valid recording (sines) written with pyedflib through tests/edf_factory.py."""
    from edf_factory import sine, write_psg_edf

    signals = {lab: sine(fs, seconds, 1.0 + k, 40.0 + 10 * k) for k, lab in enumerate(labels)}
    return write_psg_edf(path, signals, fs, file_type=file_type)


def synth_recording(path: Path, n_epochs: int, *, seed: int = 3, fs: float = 100.0) -> Path:
    """A synthetic PSG night (core/synth) of ``n_epochs`` epochs with all six SleepVLM roles."""
    from sleepvlm_ws.core.base.stages import Stage
    from sleepvlm_ws.core.synth import generate_night, write_night_edf

    cycle = [Stage.W, Stage.N1, Stage.N2, Stage.N2, Stage.N3, Stage.N3, Stage.N2, Stage.R]
    stages = [cycle[i * len(cycle) // max(n_epochs, 1)] for i in range(n_epochs)]
    return write_night_edf(generate_night(seed=seed, fs=fs, stages=stages), path)

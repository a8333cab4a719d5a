"""Drill: bad recordings through ``sleepvlm-ws info FILE``.

Every file must be refused with exit 2 and exactly one stderr line naming it (no traceback), or,
where the file is a readable recording (EDF+D, labels in another encoding, duplicate labels),
opened with exit 0. Either way within the time limit, and the file's SHA-256 is unchanged.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from drill_common import Context, DrillResult, clean_refusal, cli, sha256, small_recording

REFUSE, OPEN = "refuse", "open"
INFO_TIMEOUT_S = 60


def _truncate(path: Path, keep: int) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:keep])


def _patch(*edits):
    from edf_factory import patch_header

    def spoil(p: Path) -> None:
        for field, value, *signal in edits:
            patch_header(p, field, value, signal=signal[0] if signal else None)
    return spoil


def _discontinuous(p: Path) -> None:
    from edf_factory import sine, write_discontinuous_edf

    p.unlink()
    write_discontinuous_edf(p, {"EEG C4-M1": sine(100, 60, 1.0), "EOG E1-M2": sine(100, 60, 2.0)},
                            100, record_onsets=[float(k) for k in range(30)] +
                            [float(k) for k in range(90, 120)])


def _bdf_base(p: Path) -> None:
    p.unlink()
    small_recording(p, file_type="BDF+")


def _both(*steps):
    def spoil(p: Path) -> None:
        for step in steps:
            step(p)
    return spoil


# name -> (file name, spoil(path), expected)
CASES = {
    "truncated file (data cut short)": ("truncated.edf",
                                        lambda p: _truncate(p, os.path.getsize(p) * 2 // 3), REFUSE),
    "truncated inside the header": ("cut-header.edf", lambda p: _truncate(p, 400), REFUSE),
    "wrong header byte count": ("header-bytes.edf", _patch(("header_bytes", "1280")), REFUSE),
    "non-numeric record count": ("nn-records.edf", _patch(("n_records", "12a")), REFUSE),
    "non-numeric physical minimum": ("nn-physmin.edf", _patch(("phys_min", "low", 1)), REFUSE),
    "non-numeric record duration": ("nn-duration.edf", _patch(("record_duration", "one")), REFUSE),
    "non-numeric samples per record": ("nn-spr.edf", _patch(("spr", "1OO", 0)), REFUSE),
    "zero records": ("zero-records.edf", _patch(("n_records", "0")), REFUSE),
    "physical min == max": ("flat-range.edf", _patch(("phys_min", "100", 0), ("phys_max", "100", 0)),
                            REFUSE),
    "non-ASCII labels (UTF-8, Latin-1)": ("non-ascii.edf",
                                          _patch(("label", "EEG C4–M1".encode("utf-8"), 0),
                                                 ("label", "Kinn-EMG é".encode("latin-1"), 1)), OPEN),
    "control characters in a label": ("ctrl-label.edf", _patch(("label", b"EEG\x00C4\x07\x1b[2J", 0)),
                                      "either"),
    "random bytes": ("random.edf",
                     lambda p: p.write_bytes(np.random.default_rng(7).bytes(20_000)), REFUSE),
    "empty file": ("empty.edf", lambda p: p.write_bytes(b""), REFUSE),
    "directory named x.edf": ("x.edf", lambda p: (p.unlink(), p.mkdir()), REFUSE),
    "header claims far more records": ("more-records.edf", _patch(("n_records", "99999999")), REFUSE),
    "duplicate labels": ("duplicates.edf", _patch(("label", "EOG E1-M2", 0)), OPEN),
    "discontinuous EDF+D": ("discontinuous.edf", _discontinuous, OPEN),
    "BDF+: valid (control)": ("good.bdf", _bdf_base, OPEN),
    "BDF+: truncated": ("truncated.bdf",
                        _both(_bdf_base, lambda p: _truncate(p, os.path.getsize(p) - 500)), REFUSE),
    "BDF+: header claims more records": ("more-records.bdf",
                                         _both(_bdf_base, _patch(("n_records", "9999"))), REFUSE),
}
QUICK = ("truncated file (data cut short)", "random bytes", "empty file", "directory named x.edf",
         "discontinuous EDF+D", "BDF+: truncated", "control characters in a label")


def _plain_text(text: str) -> bool:
    return not any(ord(ch) < 32 and ch not in "\n\t" or ord(ch) == 127 for ch in text)


def run(ctx: Context) -> DrillResult:
    result = DrillResult("Bad recordings (`info FILE`)")
    folder = ctx.folder("recordings")
    for name, (file_name, spoil, expected) in CASES.items():
        if ctx.quick and name not in QUICK:
            continue
        path = folder / file_name
        small_recording(path)
        spoil(path)
        before = sha256(path)
        run_ = cli(ctx, "info", path, timeout=INFO_TIMEOUT_S)
        after = sha256(path)
        lost = "" if before == after else "the recording's bytes changed"
        opened = run_.rc == 0 and not run_.timed_out
        if expected == OPEN or (expected == "either" and opened):
            ok = opened and "Traceback" not in run_.stderr and _plain_text(run_.stdout)
            detail = (f"opened (exit 0, {run_.seconds:.1f} s)" if opened else run_.short())
            if opened and not _plain_text(run_.stdout):
                raw = [repr(line.strip()) for line in run_.stdout.splitlines() if not _plain_text(line)]
                detail += "; raw control characters reach the terminal: " + "; ".join(raw)[:160]
        else:
            ok, detail = clean_refusal(run_, file_name)
            detail = f"{run_.seconds:.1f} s: {detail}"
        result.add(name, ok and not lost, detail, lost)
    return result

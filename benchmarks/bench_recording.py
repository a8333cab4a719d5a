"""Benchmark of opening a whole night and showing its first epoch.

Writes an 8-hour, 20-channel, 256-Hz recording (about 295 MB) three ways into a temporary
folder: EDF+C (read by pyedflib), the same with a start time pyedflib refuses and a ".rec" name
(read by our numpy reader), and EDF+D with a one-hour gap (numpy reader). For each, a fresh
Python process opens it, reads the first 30-s epoch of every channel and then one channel over
the whole night, and prints the times and its peak RSS. Target: first epoch < 2 s, < 1 GB.

Run: .venv/bin/python benchmarks/bench_recording.py [folder]
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from edf_factory import RawSignal, patch_header, tal, write_raw_edf  # noqa: E402

FS, HOURS, N_CHANNELS = 256, 8, 20

PROBE = r"""
import resource, sys, time
t0 = time.perf_counter()
from sleepvlm_ws.core.signals.recording import Recording
rec = Recording.open(sys.argv[1])
first = [rec.read(ch.index, 0, 30) for ch in rec.channels]
t1 = time.perf_counter()
night = rec.read(0, 0, rec.duration_s)
t2 = time.perf_counter()
n_notes = len(rec.annotations)
t3 = time.perf_counter()
try:  # this process's own peak (ru_maxrss would include the parent's, kept across exec)
    rss = int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]) / 1024
except OSError:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"{rec.file_type:6} {rec.backend:9} first epoch {t1 - t0:5.2f} s   whole-night channel "
      f"{t2 - t1:5.2f} s   annotations {t3 - t2:5.2f} s   peak RSS {rss:6.0f} MB")
"""


def write_night(path: Path, gap_s: float = 0.0) -> Path:
    """EDF+C (EDF+D with a gap of ``gap_s`` half-way); random samples, one TAL per record."""
    n_records = HOURS * 3600
    signals = [RawSignal(f"EEG ch{i}", np.zeros((1, FS), np.int64)) for i in range(N_CHANNELS)]
    write_raw_edf(path, signals, record_onsets=[0.0], reserved="EDF+D" if gap_s else "EDF+C")
    header_bytes = 256 * (N_CHANNELS + 2)
    one = path.read_bytes()
    raw = one[:header_bytes]
    tal_bytes = len(one) - header_bytes - N_CHANNELS * FS * 2
    block = np.random.default_rng(0).integers(-2000, 2000, N_CHANNELS * FS).astype("<i2").tobytes()
    with open(path, "wb") as f:
        f.write(raw)
        chunk = bytearray()
        for k in range(n_records):
            chunk += block
            onset = k + (gap_s if k >= n_records // 2 else 0)
            chunk += tal(onset).ljust(tal_bytes, b"\x00")
            if len(chunk) > 32_000_000:
                f.write(chunk)
                chunk = bytearray()
        f.write(chunk)
    patch_header(path, "n_records", str(n_records))
    return path


def main() -> None:
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="bench-rec-"))
    folder.mkdir(parents=True, exist_ok=True)
    plus_c = write_night(folder / "night.edf")
    odd = folder / "night.rec"
    shutil.copyfile(plus_c, odd)
    patch_header(odd, "start_time", "22:30:00")
    plus_d = write_night(folder / "night-gap.edf", gap_s=3600)
    for path in (plus_c, odd, plus_d):
        subprocess.run([sys.executable, "-c", PROBE, str(path)], check=True)


if __name__ == "__main__":
    main()

"""Drill: the study's disk fills up.

A size-limited filesystem (tmpfs when we may mount one, else a loop-mounted ext4 image, else the
drill is reported "not run here") holds the study; a filler file leaves little room. Then:

1. ``sleepvlm-ws import`` (every epoch changed each time) until it fails: exit 2, one line naming
   the study; every decision of the imports that succeeded is in the study, none of the failed one.
2. Key presses through ``ReviewSession`` in a child process until it fails: a one-line
   StudyError naming the study; every decision the child printed as committed is there.
3. ``sleepvlm-ws export`` into the full filesystem: exit 2, one line, no partial file left.
4. While still full: ``audit verify`` exits 0. After freeing space: import and export work again.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from drill_common import PYTHON, REPO, Context, DrillResult, clean_refusal, cli, cli_env, synth_recording
from drill_kills import check_committed, parse_committed, write_child

N_EPOCHS = 120
FS_BYTES = 4 * 2**20
LEAVE_FREE = 256 * 1024


def _mount(mnt: Path, image: Path) -> tuple[str | None, str]:
    """Mount a small filesystem at ``mnt``: (kind, "") or (None, why not)."""
    if os.name != "posix" or os.geteuid() != 0:
        return None, "mounting a size-limited filesystem needs root on Linux"
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={FS_BYTES}", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if proc.returncode == 0:
        return f"tmpfs of {FS_BYTES // 2**20} MiB", ""
    why = proc.stderr.strip()
    with open(image, "wb") as fh:
        fh.truncate(FS_BYTES * 2)
    mk = subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], capture_output=True, text=True)
    lo = subprocess.run(["mount", "-o", "loop", str(image), str(mnt)], capture_output=True, text=True) \
        if mk.returncode == 0 else mk
    if lo.returncode == 0:
        return f"loop-mounted ext4 image of {2 * FS_BYTES // 2**20} MiB", ""
    return None, f"tmpfs refused ({why}); loop image refused ({lo.stderr.strip()})"


def _fill(mnt: Path, leave: int) -> Path:
    filler = mnt / "filler.bin"
    st = os.statvfs(mnt)
    free = st.f_bavail * st.f_frsize
    with open(filler, "ab") as fh:
        fh.write(b"\0" * max(free - leave, 0))
    return filler


def _decisions(study: Path) -> int:
    from sleepvlm_ws.core.study.study import Study

    with Study.open(study) as s:
        return len(s.decisions())


def run(ctx: Context) -> DrillResult:
    result = DrillResult("Full disk (study and export on a full filesystem)")
    folder = ctx.folder("disk")
    mnt = folder / "mnt"
    mnt.mkdir(exist_ok=True)
    try:
        kind, why = _mount(mnt, folder / "fs.img")
    except OSError as exc:   # no mount / mkfs programs
        kind, why = None, f"cannot mount a small filesystem here: {exc}"
    if kind is None:
        result.not_run = why
        return result
    result.notes.append(f"full disk: ran on a {kind}")
    try:
        _drill(ctx, result, folder, mnt)
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)
        if os.path.ismount(mnt):
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
    return result


def _drill(ctx: Context, result: DrillResult, folder: Path, mnt: Path) -> None:
    from sleepvlm_ws.core.base.hypnogram import Hypnogram
    from sleepvlm_ws.core.review.session import ReviewSession
    from sleepvlm_ws.core.study.formats import export_hypnogram

    rec = synth_recording(folder / "night.edf", N_EPOCHS, fs=100.0)
    study = mnt / "night.sleepvlm"
    ReviewSession.open(rec, study_path=study, scorer="setup").close()
    hyps = []
    for name, pair in (("a.tsv", ("W", "N2")), ("b.tsv", ("N3", "R"))):
        hyps.append(export_hypnogram(Hypnogram(stages=[pair[i % 2] for i in range(N_EPOCHS)]),
                                     "tsv", folder / name))
    filler = _fill(mnt, LEAVE_FREE)

    # 1. imports until the disk is full
    expected = _decisions(study)
    failed, n_ok = None, 0
    for k in range(60 if not ctx.quick else 20):
        run_ = cli(ctx, "import", study, hyps[k % 2])
        if run_.rc != 0:
            failed = run_
            break
        n_ok += 1
        expected += int(run_.stdout.split("imported ")[1].split()[0])
    if failed is None:
        result.add("import until full", False, f"{n_ok} imports and the disk never filled")
        return
    ok, said = clean_refusal(failed, study.name)
    have = _decisions(study)
    result.add("import until full", ok and have == expected,
               f"{n_ok} imports stored, then {said}; decisions in the study {have}, expected {expected}",
               "" if have >= expected else f"{expected - have} decisions of successful imports gone")

    # 2. key presses until full (first a little room, so some are saved before it fills)
    with open(filler, "r+b") as fh:
        fh.truncate(max(filler.stat().st_size - 256 * 1024, 0))
    script = write_child(folder)
    proc = subprocess.run([PYTHON, str(script), str(rec), str(study), str(ctx.seed), "1500"],
                          capture_output=True, text=True, timeout=300, env=cli_env(ctx.home),
                          cwd=str(REPO))
    committed = parse_committed(proc.stdout)
    last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    missing = check_committed(study, committed)
    said_ok = (last.startswith("ERROR StudyError") and study.name in last and "Traceback" not in proc.stderr)
    result.add("key presses until full", said_ok and not missing,
               f"{len(committed)} decisions committed, then: {last[:200]}",
               "" if not missing else f"committed decisions {missing[:5]} missing")

    # 3. export into the full filesystem
    for fmt in ("json", "edf"):
        out = mnt / f"out.{fmt}"
        run_ = cli(ctx, "export", study, "--format", fmt, "--out", out)
        left = sorted(p.name for p in mnt.iterdir() if p.name not in ("filler.bin", "lost+found")
                      and not p.name.startswith("night.sleepvlm"))
        ok, said = clean_refusal(run_, out.name) if run_.rc != 0 else (False, "export succeeded?")
        if run_.rc != 0 and not ok:   # naming the study (whose audit event could not be saved) is fine
            ok, said = clean_refusal(run_, study.name)
        result.add(f"export {fmt} into the full disk", ok and not left,
                   said + (f"; left behind: {left}" if left else ""))

    # 4. the study opens and verifies while full, and works again once there is room
    verify = cli(ctx, "audit", "verify", study)
    result.add("audit verify while full", verify.rc == 0, verify.short())
    before = _decisions(study)
    filler.unlink()
    again = cli(ctx, "import", study, hyps[0])
    if again.rc == 0 and "imported 0 " in again.stdout:
        again = cli(ctx, "import", study, hyps[1])
    exp = cli(ctx, "export", study, "--format", "json", "--out", mnt / "after.json")
    verify = cli(ctx, "audit", "verify", study)
    after = _decisions(study)
    result.add("after freeing space", again.rc == 0 and exp.rc == 0 and verify.rc == 0
               and after > before,
               f"import {again.short()}; export exit {exp.rc}; verify exit {verify.rc}; decisions "
               f"{before} -> {after}")

"""Drills: the process is killed with SIGKILL in the middle of the work.

* Manual scoring: a child process scores epochs into a study through ``core.review.session.
  ReviewSession`` (score-and-advance, jumps, undo) and prints every committed decision, flushed,
  before the next key press. Killed at a random moment, N times. After each kill the committed
  decisions must all be in the study with the stage that was printed, and ``sleepvlm-ws audit
  verify`` must exit 0.
* Whole-night model run: ``sleepvlm-ws score REC --model models/default --threads 1`` killed at
  random moments (while loading, while scoring), then run to the end. The stored suggestion
  count never decreases, each restart asks only for the epochs not stored yet, ``audit verify``
  exits 0 after every kill, and the final count is the number of epochs minus those skipped.
"""

from __future__ import annotations

import random
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from drill_common import PYTHON, REPO, Context, DrillResult, cli, cli_env, suggestion_count, synth_recording

SCORING_CHILD = textwrap.dedent("""
    import random, sys
    from sleepvlm_ws.core.review.session import ReviewSession
    from sleepvlm_ws.core.base.stages import SLEEP_STAGES
    session = ReviewSession.open(sys.argv[1], study_path=sys.argv[2], scorer="night shift")
    rnd = random.Random(int(sys.argv[3]))
    note = "x" * int(sys.argv[4]) if len(sys.argv) > 4 else None
    print("ready", flush=True)
    try:
        while True:
            r = rnd.random()
            if r < 0.1:
                d = session.undo()
            else:
                if r < 0.3:
                    session.go_to(rnd.randrange(session.n_epochs))
                d = session.score(rnd.choice(SLEEP_STAGES), note=note)
            if d is not None:
                print(d.id, d.epoch, d.stage.value, flush=True)
    except Exception as exc:  # the full-disk drill reads this line
        print("ERROR", type(exc).__name__, str(exc).replace(chr(10), " | "), flush=True)
        sys.exit(5)
""")


def write_child(folder: Path) -> Path:
    script = folder / "scoring_child.py"
    script.write_text(SCORING_CHILD, encoding="utf-8")
    return script


def parse_committed(text: str) -> dict[int, tuple[int, str]]:
    """decision id -> (epoch, stage) from the child's complete lines."""
    out = {}
    for line in text.splitlines(keepends=True):
        m = re.fullmatch(r"(\d+) (\d+) (\S+)\n", line)
        if m:
            out[int(m[1])] = (int(m[2]), m[3])
    return out


def check_committed(study_path: Path, committed: dict[int, tuple[int, str]]) -> list[int]:
    """Ids printed as committed that are missing from the study or stored differently."""
    from sleepvlm_ws.core.study.study import Study

    with Study.open(study_path) as study:
        stored = {d.id: (d.epoch, d.stage.value) for d in study.decisions()}
    return sorted(i for i, v in committed.items() if stored.get(i) != v)


def manual_scoring(ctx: Context) -> DrillResult:
    from sleepvlm_ws.core.review.session import ReviewSession

    rounds = 2 if ctx.quick else 20
    result = DrillResult(f"kill -9 during manual scoring ({rounds} kills)")
    folder = ctx.folder("kill-manual")
    rec = synth_recording(folder / "night.edf", 40, fs=100.0)
    study_path = folder / "night.edf.sleepvlm"
    ReviewSession.open(rec, study_path=study_path, scorer="setup").close()
    script = write_child(folder)
    rnd = random.Random(ctx.seed)
    all_committed: dict[int, tuple[int, str]] = {}
    for k in range(rounds):
        child = subprocess.Popen([PYTHON, str(script), str(rec), str(study_path), str(rnd.randrange(10**6))],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 env=cli_env(ctx.home), cwd=str(REPO))
        try:
            first = child.stdout.readline()
            if first != "ready\n":
                result.add(f"round {k + 1}", False, "child did not start: " + child.stderr.read()[-200:])
                continue
            delay = rnd.uniform(0.01, 0.6)
            time.sleep(delay)
            child.send_signal(signal.SIGKILL)
            rest = child.stdout.read()
        finally:
            child.kill()
            child.wait()
            child.stdout.close()
            child.stderr.close()
        committed = parse_committed(rest)
        all_committed.update(committed)
        missing = check_committed(study_path, all_committed)
        verify = cli(ctx, "audit", "verify", study_path)
        ok = not missing and verify.rc == 0
        result.add(f"round {k + 1}", ok,
                   f"killed after {delay:.2f} s, {len(committed)} decisions committed; verify "
                   f"exit {verify.rc}", "" if not missing else f"decisions {missing[:5]} missing")
    total = len(all_committed)
    result.notes.append(f"manual scoring: {total} committed decisions over {rounds} kills, "
                        f"all found with the printed epoch and stage" if result.ok else
                        f"manual scoring: {total} committed decisions over {rounds} kills")
    if total == 0:
        result.add("anything committed at all", False, "the child never committed a decision")
    return result


def model_run(ctx: Context, *, n_epochs: int = 240, kills: int = 5) -> DrillResult:
    from sleepvlm_ws.core.study.ai_runs import AI_RUN_FINISHED, AI_RUN_STARTED
    from sleepvlm_ws.core.study.study import Study
    from sleepvlm_ws.core.study.suggestions import FAST

    result = DrillResult(f"kill -9 during a model run over a {n_epochs / 120:g}-hour night ({kills} kills)")
    pack = REPO / "models" / "default"
    if not (pack / "manifest.json").is_file():
        result.not_run = "models/default is not installed"
        return result
    folder = ctx.folder("kill-model")
    rec = synth_recording(folder / "night.edf", n_epochs, fs=100.0)
    study_path = folder / "night.edf.sleepvlm"
    command = [str(Path(sys.executable).parent / "sleepvlm-ws"), "--scorer", "drill", "score", str(rec),
               "--model", str(pack), "--threads", "1"]
    rnd = random.Random(ctx.seed + 1)
    counts = [0]
    for k in range(kills):
        before = suggestion_count(study_path)
        err_file = open(folder / f"kill{k + 1}.stderr", "w+b")
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err_file,
                                env=cli_env(ctx.home), cwd=str(folder))
        t0 = time.monotonic()
        # a random moment: while the model loads (1 in 4), or after a random number of new
        # answers, up to a third of what is left, and a random fraction of a second more
        left = n_epochs - before
        target_new = 0 if rnd.random() < 0.25 else rnd.randint(1, max(1, left // 3))
        extra = rnd.uniform(0.0, 1.0)
        deadline = t0 + 240
        while proc.poll() is None and time.monotonic() < deadline:
            if target_new == 0 and time.monotonic() - t0 > 0.3 + 2 * extra:
                break
            if target_new and suggestion_count(study_path) >= before + target_new:
                time.sleep(extra)
                break
            time.sleep(0.02)
        finished = proc.poll() is not None
        proc.send_signal(signal.SIGKILL)
        proc.kill()
        proc.wait(timeout=60)
        err_file.close()
        after = suggestion_count(study_path)
        counts.append(after)
        verify = cli(ctx, "audit", "verify", study_path) if study_path.exists() else None
        verify_ok = verify is None or verify.rc == 0
        ok = after >= before and verify_ok and not finished
        if finished:
            tail = (folder / f"kill{k + 1}.stderr").read_text(errors="replace").strip()[-160:]
            what = f"ended by itself before the kill (exit {proc.returncode}: {tail})"
        else:
            what = (f"killed {time.monotonic() - t0:.1f} s in"
                    + (" (before its first new answer was stored)" if after == before else ""))
        result.add(f"kill {k + 1}", ok,
                   f"{what}: suggestions {before} -> {after}; verify "
                   f"{'exit ' + str(verify.rc) if verify else 'skipped (no study yet)'}",
                   "" if after >= before else f"{before - after} stored suggestions gone")
    t0 = time.monotonic()
    final = cli(ctx, "score", rec, "--model", pack, "--threads", "1", timeout=600, cwd=folder)
    t_full = time.monotonic() - t0
    end = suggestion_count(study_path)
    m = re.search(r"(\d+) suggestion\(s\) stored, (\d+) epoch\(s\) already scored by this model, "
                  r"(\d+) skipped", final.stdout)
    skipped = int(m[3]) if m else -1
    ok = (final.rc == 0 and m is not None and end == n_epochs - skipped and int(m[2]) == counts[-1]
          and int(m[1]) == n_epochs - skipped - counts[-1])
    result.add("run to the end", ok,
               f"exit {final.rc}, {final.stdout.strip().splitlines()[-1][:240] if final.stdout.strip() else final.short()} "
               f"({t_full:.0f} s); stored {end} of {n_epochs}",
               "" if end >= counts[-1] else "suggestions gone")
    with Study.open(study_path) as study:
        starts = [e.payload for e in study.audit_events() if e.kind == AI_RUN_STARTED]
        ends = [e.payload for e in study.audit_events() if e.kind == AI_RUN_FINISHED]
    asked = [p.get("epochs_to_score", {}).get(FAST) for p in starts]
    calls = [p.get("counts", {}).get("model_calls") for p in ends]
    # each run that got as far as starting asked only for the epochs not stored at its start
    # (counts[i]: stored when run i+1 started; nothing changes between a kill and the next run)
    expect = [n_epochs - c for c in counts]
    redo_ok = (all(a in expect for a in asked) and sorted(asked, reverse=True) == asked
               and calls == [n_epochs - skipped - counts[-1]])
    result.add("no stored epoch asked again", redo_ok,
               f"epochs asked per started run: {asked}; not yet stored at each start: {expect}; "
               f"model calls of the one run that finished: {calls}")
    verify = cli(ctx, "audit", "verify", study_path)
    result.add("audit verify at the end", verify.rc == 0, verify.short())
    result.notes.append(f"model run: suggestion counts after each kill {counts[1:]}, final {end} of "
                        f"{n_epochs}; the last full run took {t_full:.0f} s")
    return result

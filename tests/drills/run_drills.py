"""Failure drills that prove nothing is lost (issue 6): run them all, print a table.

    .venv/bin/python tests/drills/run_drills.py [--quick] [--out docs/DRILLS.md] [--only NAME]

Every drill drives the real ``sleepvlm-ws`` command line (subprocesses) on real files in a
scratch folder, with a scratch user data folder (SLEEPVLM_WS_HOME), and records per case whether
the workstation did what it must and what, if anything, was lost. ``--quick`` runs a small subset
(well under a minute; tests/test_drills_quick.py runs it in CI). ``--out`` writes the Markdown
report. Exit status: 0 when every drill that ran passed, 1 otherwise.

Drills: recordings (bad EDF/BDF files), kill-manual, kill-model (SIGKILL mid-work), disk (full
filesystem), tamper (edited audit trail), packs (corrupt or swapped model files), text (hostile
text in a recording, and privacy of de-identified outputs and the user data folder).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from drill_common import Context, DrillResult  # noqa: E402

DRILLS = ("recordings", "kill-manual", "kill-model", "disk", "tamper", "packs", "text")
QUICK = ("recordings", "kill-manual", "disk", "tamper", "packs", "text")


def _call(name: str, ctx: Context) -> list[DrillResult]:
    import drill_disk
    import drill_kills
    import drill_packs
    import drill_recordings
    import drill_tamper
    import drill_text

    fn = {"recordings": drill_recordings.run, "kill-manual": drill_kills.manual_scoring,
          "kill-model": drill_kills.model_run, "disk": drill_disk.run, "tamper": drill_tamper.run,
          "packs": drill_packs.run, "text": drill_text.run}[name]
    out = fn(ctx)
    return out if isinstance(out, list) else [out]


def run_all(names, ctx: Context) -> list[DrillResult]:
    results = []
    for name in names:
        ctx.log(f"-- drill {name}")
        t0 = time.monotonic()
        try:
            got = _call(name, ctx)
        except Exception as exc:  # a drill that breaks is a failed drill, reported, not hidden
            got = [DrillResult(name)]
            got[0].add("drill ran to its end", False,
                       f"{type(exc).__name__}: {exc} | {traceback.format_exc().splitlines()[-3].strip()}")
        for r in got:
            for c in r.cases:   # scratch paths say nothing to a reader of the table
                c.detail = c.detail.replace(str(ctx.work) + os.sep, "").replace(str(ctx.work), "scratch")
            r.seconds = (time.monotonic() - t0) / len(got)
            for c in r.cases:
                ctx.log(f"   {'ok  ' if c.ok else 'FAIL'} {r.name} / {c.name}: {c.detail[:220]}")
            results.append(r)
    return results


def _cell(text: str) -> str:
    """Table cell text that renders as written (the drills quote hostile HTML and '$')."""
    out = str(text).replace("&", "&amp;").replace("<", "&lt;")
    return out.replace("$", "\\$").replace("|", "\\|").replace("\n", " ")


def table(results: list[DrillResult]) -> str:
    rows = ["| drill | cases | outcome | anything lost | time |", "|---|---|---|---|---|"]
    for r in results:
        outcome = r.outcome + (f": {r.not_run}" if r.not_run else "")
        rows.append(f"| {_cell(r.name)} | {len(r.cases)} | {_cell(outcome)} | {_cell(r.lost)} | "
                    f"{r.seconds:.0f} s |")
    return "\n".join(rows)


def details(results: list[DrillResult]) -> str:
    out = []
    for r in results:
        out.append(f"### {r.name}\n")
        if r.not_run:
            out.append(f"Not run here: {r.not_run}\n")
        out.append("| case | outcome | what happened |\n|---|---|---|")
        for c in r.cases:
            out.append(f"| {_cell(c.name)} | {'pass' if c.ok else '**FAIL**'} | {_cell(c.detail)}"
                       + (f" **Lost:** {_cell(c.lost)}" if c.lost else "") + " |")
        for note in r.notes:
            out.append(f"\n- {note}")
        out.append("")
    return "\n".join(out)


def failed_section(results) -> str:
    bad = [(r, c) for r in results for c in r.cases if not c.ok]
    if not bad:
        return "No case failed.\n"
    lines = ["## Failed cases", ""]
    for r, c in bad:
        lines.append(f"- **{_cell(r.name)} / {_cell(c.name)}**: {_cell(c.detail)}"
                     + (f" Lost: {_cell(c.lost)}" if c.lost else ""))
    return "\n".join(lines) + "\n"


def machine() -> str:
    cpu = ""
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(next(l for l in open("/proc/meminfo") if l.startswith("MemTotal")).split()[1])
        mem = f", {kb / 2**20:.0f} GiB RAM"
    except (OSError, StopIteration, ValueError):
        pass
    return (f"{platform.system()} {platform.release()}, {os.cpu_count()} cores"
            f"{' (' + cpu + ')' if cpu else ''}{mem}, Python {platform.python_version()}, "
            f"{'root' if hasattr(os, 'geteuid') and os.geteuid() == 0 else 'not root'}")


def markdown(results, *, quick: bool, seconds: float) -> str:
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    head = [
        "# Failure drills",
        "",
        "What happens when things go wrong, drilled end to end through the real `sleepvlm-ws` "
        "command line: bad recordings, the process killed mid-work, a full disk, a tampered "
        "study, corrupt or swapped model files, hostile text in a recording, and what the "
        "de-identified outputs and the user data folder give away. Rerun with",
        "",
        "    .venv/bin/python tests/drills/run_drills.py --out docs/DRILLS.md",
        "",
        "(`--quick`: a subset in well under a minute, run by tests/test_drills_quick.py). The code "
        "is in tests/drills/; each module's docstring says what its drill must see.",
        "",
        f"Run {when} on {machine()}{' (quick subset)' if quick else ''}; {seconds:.0f} s in all.",
        "",
        table(results),
        "",
        "A drill passes when the workstation did what it must in every case; *anything lost* "
        "names committed work (decisions, suggestions) or source bytes that did not survive.",
        "",
        "- Bad recordings: `info` exits 2 with exactly one stderr line naming the file and no "
        "traceback, within 60 s; readable oddities (EDF+D, non-ASCII or duplicate labels) open "
        "with exit 0; the file's SHA-256 is unchanged.",
        "- Killed mid-work: every decision the scoring child printed as committed is in the study "
        "with that epoch and stage; `audit verify` exits 0 after every kill; the model run's "
        "stored suggestions never decrease, a restart asks only for the epochs not stored yet, "
        "and the last run ends with one suggestion per epoch with signal.",
        "- Full disk: a one-line error naming the file; what was saved before is all there, the "
        "failed save left nothing half-written; no partial export; the study verifies while "
        "full and works again once there is room.",
        "- Tampered study: `audit verify` exits 1 with one line naming the first bad event.",
        "- Corrupt or swapped model files: `model verify` exits 1 or 2 naming the file; `score` "
        "exits 2 naming it before any study is made or model loaded.",
        "- Hostile text: printed as plain text; only the pack's prompt and the images reach the "
        "model. Privacy: no patient name, birth date, patient code or recording id in "
        "de-identified outputs or anywhere in the user data folder.",
        "",
        failed_section(results),
        "## Cases",
        "",
        details(results),
    ]
    return "\n".join(head)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a fast subset (CI)")
    p.add_argument("--out", help="write the Markdown report here (e.g. docs/DRILLS.md)")
    p.add_argument("--json", help="also write every case as JSON here (for tests)")
    p.add_argument("--only", action="append", choices=DRILLS, help="run only this drill (repeatable)")
    p.add_argument("--seed", type=int, default=int(time.time()) % 100000,
                   help="seed of the random kill moments (printed; default: from the clock)")
    p.add_argument("--keep", action="store_true", help="keep the scratch folder")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    names = args.only or (QUICK if args.quick else DRILLS)
    work = Path(tempfile.mkdtemp(prefix="sleepvlm-drills-"))
    ctx = Context(work=work, home=work / "home", quick=args.quick, seed=args.seed,
                  log=(lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True)))
    ctx.home.mkdir()
    ctx.log(f"drills {', '.join(names)}; seed {args.seed}; scratch {work}")
    t0 = time.monotonic()
    try:
        results = run_all(names, ctx)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    seconds = time.monotonic() - t0
    print()
    print(table(results))
    if args.out:
        out = Path(args.out)
        if not out.is_absolute():
            out = Path.cwd() / out
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(markdown(results, quick=args.quick, seconds=seconds) + "\n", encoding="utf-8")
        print(f"\nwrote {out}")
    if args.json:
        Path(args.json).write_text(json.dumps(
            [{"drill": r.name, "not_run": r.not_run, "outcome": r.outcome, "lost": r.lost,
              "cases": [asdict(c) for c in r.cases]} for r in results], indent=1), encoding="utf-8")
    return 0 if all(r.ok or r.not_run for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())

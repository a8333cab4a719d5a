"""Real transfer: model packs and YASA on the DREAMS dev excerpts (real EEG, expert stages).

A standing measurement of how packs trained on synthetic PSG do on real sleep. For each pack
given (``--pack``, repeatable; default ``models/default``) and for YASA's pretrained stager on
the same epochs, each DREAMS excerpt (``excerptN.txt`` + ``Hypnogram_excerptN.txt``, read by
core/signals/dreams.py through a temporary EDF+) goes through ``core.pipeline.evaluate.evaluate_recording``
(kappa and the rest from core/trust/agreement.py), and a plain-text table gives per excerpt and pooled:
epochs, channel, rate, Cohen's kappa, accuracy, macro-F1 and the recall of W N1 N2 N3 R. A
"fused" row pools the first pack's stage probabilities with YASA's (core/trust/fusion.py: a
fixed log-linear pool with equal weights, never fitted to these excerpts). An "as offered" row is
the stage the workstation suggests by default (core/review/suggested_stage.py: YASA's where it
staged the epoch, else the first pack's), per excerpt and pooled over every excerpt.

YASA needs a central EEG >= 80 Hz: it cannot stage excerpt 3 (50 Hz; the model can, its renderer
resamples to 100 Hz). So the pooled side-by-side rows cover the epochs YASA staged (excerpts 1,
2, 4) and one more row per pack pools all excerpts; every pooled row names its excerpts.

The DREAMS licence (CC BY-NC-ND) allows evaluation only: nothing converted is kept (the EDF+ and
the study files live in a temporary folder deleted at the end). The dev set is small and
looking at it often tunes to it, so EVERY run on it appends one line to
docs/measurements/dreams-dev-evaluations.md (date, commit, ``--note``, packs, epochs) just
before the figures are printed (the dev set is recognised by its folder or by the files'
SHA-256, so a copy elsewhere counts too; other DREAMS-format files are not logged).

Run:  .venv/bin/python benchmarks/bench_real_transfer.py [--pack DIR ...] [--out FILE] [--note TEXT]
Data: ../shared/data/dreams-dev relative to the repository root (``--data`` to override); when
absent it prints one line saying so and exits 0.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

try:  # llama_cpp before scipy: the CUDA build on the GPU image segfaults at load otherwise
    import llama_cpp  # noqa: F401
except ImportError:
    pass

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "app") not in sys.path:
    sys.path.insert(0, str(ROOT / "app"))

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "dreams-dev"
DEFAULT_PACK = ROOT / "models" / "default"
LOG = ROOT / "docs" / "measurements" / "dreams-dev-evaluations.md"
LOG_HEADER = """# DREAMS dev-set evaluations (every look is counted)

`/work/shared/data/dreams-dev` (DREAMS Sleep Spindles excerpts 1-4, CC BY-NC-ND: evaluation only)
is the project's only real scored EEG, and it is small (4 x 60 epochs). Looking at it too often
tunes models and choices to it, so every evaluation on it is logged here, one line each:
`benchmarks/bench_real_transfer.py` appends a line on every run, just before it prints figures;
evaluations made any other way are added by hand. The tests (tests/signals/test_dreams.py) read the
excerpts and run the machinery (YASA's stager on excerpt 1; the default pack on excerpt 3, where
only the epoch counts and YASA's refusal are checked, no figure is asserted or printed): they
are not counted.

| date (UTC) | commit | who / what | packs evaluated | epochs |
|---|---|---|---|---|
"""
STAGES = ("W", "N1", "N2", "N3", "R")
# SHA-256 (first 16 hex digits) of the dev set's signal files: a run on them, wherever they are,
# is a look at the dev set and is logged; a run on other DREAMS-format files is not.
DEV_SET_SHA256 = {"8e93c48c6f4bf322": "excerpt1.txt", "8d541b9754096570": "excerpt2.txt",
                  "b0049afafaabd543": "excerpt3.txt", "843f918cba427b77": "excerpt4.txt"}


# ------------------------------------------------------------------------------ provenance
def _run(cmd: list[str]) -> str | None:
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def git_commit() -> str:
    """``git rev-parse --short HEAD``, plus ``-dirty`` when ``git status --porcelain`` lists
    anything (changed or untracked files)."""
    head = _run(["git", "rev-parse", "--short", "HEAD"])
    if head is None:
        return "unknown (not a git checkout)"
    status = _run(["git", "status", "--porcelain"])
    return head + ("-dirty" if status else "")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def pack_line(pack: Path) -> tuple[str, str]:
    """(short name "NAME VERSION", header line with the manifest's and LM's SHA-256)."""
    from sleepvlm_ws.core.model.model_pack import MANIFEST_NAME, load_manifest

    m = load_manifest(pack)
    name = f"{m.name} {m.version}"
    manifest_sha = sha256(pack / MANIFEST_NAME)[:12]
    lm = m.files.get("lm")
    lm_sha = lm.sha256[:12] if lm is not None else "-"
    try:
        where = pack.resolve().relative_to(ROOT)
    except ValueError:
        where = pack
    return name, f"pack: {name} at {where}; manifest.json sha256 {manifest_sha}; lm sha256 {lm_sha}"


def excerpt_label(names: list[str]) -> str:
    """``excerpt1.txt, excerpt2.txt`` -> ``1,2``; other names as they are."""
    nums = [re.fullmatch(r"excerpt(\d+)\.txt", n, re.I) for n in names]
    if names and all(nums):
        return "excerpts " + ",".join(m.group(1) for m in nums)
    return ", ".join(names)


# ------------------------------------------------------------------------------ figures
def fmt(v, pct: bool = False) -> str:
    if v is None:
        return "-"
    return f"{100 * v:.1f}%" if pct else f"{v:.3f}"


COLUMNS = [("excerpt", 14, "<"), ("channel", 8, "<"), ("rate", 7, ">"), ("scorer", 24, "<"),
           ("epochs", 7, ">"), ("kappa", 7, ">"), ("accuracy", 9, ">"), ("macro-F1", 9, ">")] + \
          [(f"rec {s}", 7, ">") for s in STAGES]


def row(values: list[str]) -> str:
    return "  ".join(f"{v:{align}{width}}" for v, (_, width, align) in zip(values, COLUMNS)).rstrip()


def figure_row(what: str, channel: str, rate: str, scorer: str, agr) -> str:
    from sleepvlm_ws.core.base.stages import Stage

    if agr is None:
        return row([what, channel, rate, scorer, "0"] + ["-"] * 8)
    return row([what, channel, rate, scorer, str(agr.n_epochs), fmt(agr.kappa), fmt(agr.accuracy, True),
                fmt(agr.macro_f1)] + [fmt(agr.recall[Stage(s)], True) for s in STAGES])


def agreement_or_none(reference, compared):
    from sleepvlm_ws.core.trust.agreement import NoCommonEpochsError, agreement

    try:
        return agreement(reference, compared)
    except NoCommonEpochsError:
        return None


def stages_of(result, key: str) -> list:
    from sleepvlm_ws.core.base.stages import Stage

    return [Stage(e[key]) if e[key] else None for e in result.epochs]


def confusion_lines(title: str, agr) -> list[str]:
    if agr is None:
        return []
    lines = [title, " " * 6 + "".join(f"{s.value:>6}" for s in agr.stages)]
    for s, counts in zip(agr.stages, agr.confusion):
        lines.append(f"{s.value:>6}" + "".join(f"{c:>6}" for c in counts))
    return lines


# ------------------------------------------------------------------------------ log
def append_log(commit: str, note: str | None, packs: str, epochs: str, when: datetime) -> None:
    if not LOG.is_file():
        LOG.parent.mkdir(parents=True, exist_ok=True)
        LOG.write_text(LOG_HEADER, encoding="utf-8")
    who = "bench_real_transfer" + (f" ({note})" if note else "")
    cells = [when.strftime("%Y-%m-%d %H:%M"), commit, who, packs, epochs]
    line = "| " + " | ".join(c.replace("|", "/").replace("\n", " ") for c in cells) + " |\n"
    text = LOG.read_text(encoding="utf-8")
    with open(LOG, "a", encoding="utf-8") as fh:
        if text and not text.endswith("\n"):
            fh.write("\n")
        fh.write(line)


# ------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pack", type=Path, action="append",
                        help="model pack folder (repeatable; default models/default)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="the DREAMS dev folder (default: ../shared/data/dreams-dev from the repo root)")
    parser.add_argument("--out", type=Path, help="also save the table here (docs/measurements/...)")
    parser.add_argument("--note", help="who / why, for the dev-set evaluation log")
    parser.add_argument("--threads", type=int, default=None, help="llama.cpp threads (default: its own)")
    parser.add_argument("--gpu-layers", type=int, default=0)
    args = parser.parse_args(argv)

    from sleepvlm_ws.core.pipeline.evaluate import find_scored_studies, is_dreams_recording

    data = args.data
    pairs = ([(r, h) for r, h in find_scored_studies(data) if is_dreams_recording(r)]
             if data.is_dir() else [])
    if not pairs:
        why = "not there" if not data.is_dir() else "no excerptN.txt + Hypnogram_excerptN.txt in it"
        print(f"bench_real_transfer: skipped: no DREAMS dev set at {data} ({why})")
        return 0

    from sleepvlm_ws.cli.common import Progress as _Progress
    from sleepvlm_ws.core.model.model_pack import verify_pack
    from sleepvlm_ws.core.model.runtime import LocalRuntime
    from sleepvlm_ws.core.pipeline.evaluate import evaluate_recording
    from sleepvlm_ws.core.trust.fusion import FUSION_RULE

    packs = [p.resolve() for p in (args.pack or [DEFAULT_PACK])]
    described = []
    for pack in packs:
        verify_pack(pack)
        described.append(pack_line(pack))
    when = datetime.now(timezone.utc)
    commit = git_commit()
    import yasa

    header = ["Real transfer: model packs and YASA on the DREAMS dev excerpts (real EEG, expert R&K "
              "stages mapped to AASM; evaluation only)",
              f"date: {when.strftime('%Y-%m-%d %H:%M:%S')} UTC",
              f"machine: {_run(['uname', '-a']) or ' '.join(platform.uname())}",
              f"cpu count: {os.cpu_count()}; llama.cpp threads: {args.threads or 'default'}; "
              f"gpu layers: {args.gpu_layers}",
              f"commit: {commit}",
              f"data: {data}"]
    digests = {rec: sha256(rec) for rec, _ in pairs}
    dev_set = data.resolve() == DEFAULT_DATA.resolve() or any(d[:16] in DEV_SET_SHA256 for d in digests.values())
    header[-1] += (f" (the DREAMS dev set: this run is logged in {LOG.relative_to(ROOT)})" if dev_set
                   else " (not the DREAMS dev set: not logged)")
    for rec, hyp in pairs:
        header.append(f"  {rec.name} sha256 {digests[rec][:12]}, {hyp.name} sha256 {sha256(hyp)[:12]}")
    header += [line for _, line in described]
    header.append(f"YASA: {yasa.__version__} (pretrained EEG-only stager via core/trust/second_opinion.py; "
                  "needs a central EEG >= 80 Hz)")

    t_start = time.perf_counter()
    results: dict[int, list] = {}   # pack index -> EvaluationResult per excerpt
    model_seconds: dict[int, float] = {}
    yasa_seconds = 0.0
    with tempfile.TemporaryDirectory(prefix="bench-real-transfer-") as tmp:
        for i, pack in enumerate(packs):
            runtime = LocalRuntime(pack, n_threads=args.threads, n_gpu_layers=args.gpu_layers)
            try:
                results[i] = []
                for rec, hyp in pairs:
                    bar = _Progress(f"{described[i][0]}: {rec.name}")
                    try:
                        r = evaluate_recording(rec, hyp, runtime, study_path=Path(tmp) / f"{i}-{rec.stem}.svlm",
                                               with_yasa=(i == 0), with_rules=False, progress=bar,
                                               scorer="bench_real_transfer")
                    finally:
                        bar.close()
                    results[i].append(r)
                    model_seconds[i] = model_seconds.get(i, 0.0) + r.seconds["scoring"]
                    if i == 0:
                        yasa_seconds += r.seconds["yasa"]
            finally:
                runtime.close()
    total_s = time.perf_counter() - t_start
    # the dev set's figures exist now: count this look before showing them
    first = results[0]
    yasa_names = [Path(r.recording).name for r in first if r.yasa_agreement is not None]
    all_names = [Path(r.recording).name for r in first]
    n_all = sum(r.n_epochs for r in first)
    reference = {k: stages_of(r, "reference") for k, r in enumerate(first)}
    yasa_st = {k: stages_of(r, "yasa") for k, r in enumerate(first)}
    n_yasa = sum(1 for k in yasa_st for y in yasa_st[k] if y is not None)
    if dev_set:
        append_log(commit, args.note,
                   ", ".join([d[0] + f" (manifest {d[1].split('manifest.json sha256 ')[1][:12]})"
                              for d in described] + [f"YASA {yasa.__version__}"]),
                   f"model {n_all} ({excerpt_label(all_names)}); YASA {n_yasa} ({excerpt_label(yasa_names)})",
                   when)

    fused_name = f"{described[0][0].replace('sleepvlm-ws-', '')} + YASA fused"
    offered_name = "as offered (YASA-led)"
    header.append(f"fused: {fused_name} = {FUSION_RULE} (core/trust/fusion.py; a fixed rule, "
                  f"not fitted), first pack only, on the epochs both staged")
    lines = header + [""]
    lines.append(row([c[0] for c in COLUMNS]))
    lines.append(row(["-" * c[1] for c in COLUMNS]))
    notes = []
    for k, r in enumerate(first):
        name = Path(r.recording).name
        ch, rate = r.source.get("channel", "?"), f"{r.source.get('rate_hz', 0):g} Hz"
        for i in results:
            lines.append(figure_row(name, ch, rate, described[i][0], results[i][k].model_agreement))
        if r.yasa_agreement is not None:
            lines.append(figure_row(name, ch, rate, f"YASA {yasa.__version__}", r.yasa_agreement))
            if r.fused_agreement is not None:
                lines.append(figure_row(name, ch, rate, fused_name, r.fused_agreement))
            lines.append(figure_row(name, ch, rate, offered_name, r.offered_agreement))
        else:
            lines.append(row([name, ch, rate, f"YASA {yasa.__version__}", "-", "unavailable (see below)"]))
            lines.append(figure_row(name, ch, rate, offered_name, r.offered_agreement))
            notes.append(f"{name}: YASA {r.yasa_unavailable}")
    # pooled: side by side on the epochs YASA staged, then each pack over every excerpt
    staged = [(k, e) for k in yasa_st for e, y in enumerate(yasa_st[k]) if y is not None]
    sbs_label = "pooled " + excerpt_label(yasa_names).replace("excerpts ", "")
    all_label = "pooled " + excerpt_label(all_names).replace("excerpts ", "")
    ref_sbs = [reference[k][e] for k, e in staged]
    pooled_sbs = {}
    lines.append(row(["-" * c[1] for c in COLUMNS]))
    if staged:
        for i in results:
            pred = {k: stages_of(r, "predicted") for k, r in enumerate(results[i])}
            pooled_sbs[i] = agreement_or_none(ref_sbs, [pred[k][e] for k, e in staged])
            lines.append(figure_row(sbs_label, "", "", described[i][0], pooled_sbs[i]))
        yasa_pooled = agreement_or_none(ref_sbs, [yasa_st[k][e] for k, e in staged])
        lines.append(figure_row(sbs_label, "", "", f"YASA {yasa.__version__}", yasa_pooled))
        fused_st = {k: stages_of(r, "fused") for k, r in enumerate(first)}
        fused_pooled = agreement_or_none(ref_sbs, [fused_st[k][e] for k, e in staged])
        if fused_pooled is not None:
            lines.append(figure_row(sbs_label, "", "", fused_name, fused_pooled))
    else:
        yasa_pooled = fused_pooled = None
    pooled_all = {}
    if len(yasa_names) != len(all_names) or not staged:
        for i in results:
            ref_all = [s for k in reference for s in reference[k]]
            pred_all = [s for r in results[i] for s in stages_of(r, "predicted")]
            pooled_all[i] = agreement_or_none(ref_all, pred_all)
            lines.append(figure_row(all_label, "", "", described[i][0], pooled_all[i]))
        lines.append(row([all_label, "", "", f"YASA {yasa.__version__}", "-",
                          f"not staged for {', '.join(n for n in all_names if n not in yasa_names)}"]))
    ref_every = [s for k in reference for s in reference[k]]
    offered_every = [s for r in first for s in stages_of(r, "offered")]
    offered_pooled = agreement_or_none(ref_every, offered_every)
    lines.append(figure_row(all_label, "", "", offered_name, offered_pooled))
    lines.append("")
    lines.append(f"pooled rows: '{sbs_label}' = model(s) and YASA on the same {len(staged)} epochs, "
                 f"those YASA staged ({', '.join(yasa_names) or 'none'})"
                 + (f"; '{all_label}' = each pack on all {n_all} epochs ({', '.join(all_names)})"
                    if pooled_all else ""))
    lines.append(f"'{offered_name}': the stage the workstation offers by default "
                 f"(core/review/suggested_stage.py): YASA's where it staged the epoch, else "
                 f"{described[0][0]}'s")
    lines += notes
    lines.append("recall columns: share of the reference's epochs of each stage the scorer gave that stage")
    for i in results:
        lines.append("")
        lines += confusion_lines(f"confusion, {described[i][0]}, {sbs_label} (rows reference, columns scorer):",
                                 pooled_sbs.get(i))
        if i in pooled_all:
            lines += confusion_lines(f"confusion, {described[i][0]}, {all_label}:", pooled_all[i])
    if yasa_pooled is not None:
        lines.append("")
        lines += confusion_lines(f"confusion, YASA {yasa.__version__}, {sbs_label}:", yasa_pooled)
    if fused_pooled is not None:
        lines.append("")
        lines += confusion_lines(f"confusion, {fused_name}, {sbs_label}:", fused_pooled)
    if offered_pooled is not None:
        lines.append("")
        lines += confusion_lines(f"confusion, {offered_name}, {all_label}:", offered_pooled)
    lines.append("")
    for i in results:
        n = sum(r.n_epochs for r in results[i])
        lines.append(f"time: {described[i][0]} scored {n} epochs in {model_seconds[i]:.0f} s "
                     f"({n / model_seconds[i]:.2f} epochs/s, rendering included)" if model_seconds[i] else
                     f"time: {described[i][0]}: answers reused")
    lines.append(f"time: YASA {yasa_seconds:.0f} s; whole run {total_s:.0f} s (reading, conversion, "
                 "loading included)")
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
        print(f"saved to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

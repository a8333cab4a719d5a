"""Train the workstation's default model pack: one entry point, seeded, resumable.

    python models/training/train_default.py all --work WORK [--nights 40] [--seed 2026]
                                                [--real-data DIR] [--sizes default]
                                                [--phase1-seconds 150] [--phase2-seconds 660]
                                                [--stop-after SECONDS]

Steps (each skipped when its output exists, so an interrupted run is simply run again):
  data     generate synthetic nights (or read a directory of scored EDF studies), render every
           epoch with the workstation's renderer, measure the evidence, write the targets;
           train the compact tokenizer on the prompt and the answers
  train    phase 1 (vision: per-second band powers and amplitude) then phase 2 (three-image
           request -> JSON answer), each resumable (``--stop-after`` pauses and saves)
  export   the Hugging Face checkpoint (bf16 safetensors in shards under 16 MiB) in WORK/hf
  pack     convert WORK/hf to a Q4_K_M pack (+ an f16 one for the 4-bit comparison) with the
           workstation's converter; needs llama-cpp-python (run it where the workstation runs)
Logs: WORK/log.jsonl (one JSON object per line: losses, schedule, validation).
Optional dependencies: torch, transformers>=5, tokenizers (pip install -e .[convert]).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(ROOT / "app"), str(HERE)]

from recipe.data import build_all, randomised_specs, real_pairs, synthetic_specs  # noqa: E402
from recipe.sizes import SIZES  # noqa: E402

PROMPT_FILE = HERE / "default-system-prompt.txt"
VAL_FRACTION = 0.1


def _config(args) -> dict:
    return {"seed": args.seed, "nights": args.nights, "night_hours": args.night_hours, "sizes": args.sizes,
            "recipe": args.recipe,
            "real_data": str(args.real_data) if args.real_data else None,
            "vocab_size": SIZES[args.sizes].vocab_size}


def step_data(args, work: Path) -> dict:
    from recipe.tokenizer import train_tokenizer

    cfg_path = work / "config.json"
    cfg = _config(args)
    if cfg_path.is_file():
        old = json.loads(cfg_path.read_text(encoding="utf-8"))
        if old != cfg:
            raise SystemExit(f"{cfg_path}: this work folder was made with other settings {old}; "
                             "use a new --work folder")
    else:
        work.mkdir(parents=True, exist_ok=True)
        cfg_path.write_text(json.dumps(cfg, indent=1), encoding="utf-8")
    if args.real_data:
        specs = real_pairs(args.real_data)
    elif args.recipe == "v1":
        specs = synthetic_specs(args.nights, args.seed, hours=args.night_hours)
    else:
        specs = randomised_specs(args.nights, args.seed, hours=args.night_hours)
    if not specs:
        raise SystemExit(f"{args.real_data}: no EDF + hypnogram pairs found")
    t0 = time.time()
    build_all(specs, work / "data", workers=args.workers)
    n_val = max(1, int(round(len(specs) * VAL_FRACTION)))
    split = {"train": [s.name for s in specs[:-n_val]], "val": [s.name for s in specs[-n_val:]]}
    (work / "split.json").write_text(json.dumps(split, indent=1), encoding="utf-8")
    if not (work / "tokenizer" / "tokenizer.json").is_file():
        from sleepvlm_ws.core.model.request import PRECEDING_LABEL, SUBSEQUENT_LABEL, TARGET_LABEL

        corpus = [PROMPT_FILE.read_text(encoding="utf-8"), PRECEDING_LABEL, TARGET_LABEL, SUBSEQUENT_LABEL]
        for name in split["train"]:
            meta = json.loads((work / "data" / f"{name}.json").read_text(encoding="utf-8"))
            corpus += [a["fine"] for a in meta["answers"] if a]
        train_tokenizer(corpus, work / "tokenizer", vocab_size=SIZES[args.sizes].vocab_size)
    print(f"data ready: {len(specs)} nights in {time.time() - t0:.0f} s", flush=True)
    return split


def _load(args, work: Path, split_name: str):
    from recipe.dataset import NightSet
    from recipe.layout import RequestLayout
    from recipe.tokenizer import load_tokenizer

    tok = load_tokenizer(work / "tokenizer")
    layout = RequestLayout(tok, PROMPT_FILE.read_text(encoding="utf-8"))
    split = json.loads((work / "split.json").read_text(encoding="utf-8"))
    return tok, NightSet(work / "data", split[split_name], layout, args.device)


def step_train(args, work: Path) -> bool:
    import torch

    from recipe.model import new_model
    from recipe.train import Log, quick_validation, run_phase1, run_phase2

    t0 = time.time()
    torch.backends.cuda.matmul.allow_tf32 = True
    tok, data = _load(args, work, "train")
    print(f"loaded {data.n} epochs ({len(data.scored)} scored) in {time.time() - t0:.0f} s", flush=True)
    sizes = SIZES[args.sizes]
    model = new_model(sizes, tok, args.seed).to(args.device)
    log = Log(work / "log.jsonl")
    left = lambda: args.stop_after - (time.time() - t0)  # noqa: E731
    if not run_phase1(model, sizes, data, work, seconds=args.phase1_seconds, stop_after=left(),
                      seed=args.seed, batch=args.phase1_batch, log=log):
        return False
    if not run_phase2(model, data, work, seconds=args.phase2_seconds, stop_after=left(),
                      seed=args.seed, batch=args.phase2_batch, log=log):
        return False
    if not (work / "validation.json").is_file():
        del data
        _, val = _load(args, work, "val")
        try:
            result = quick_validation(model, val, args.validation_epochs, args.seed, log)
        except Exception as exc:  # a sanity figure only: never lose a finished training to it
            result = {"error": f"{type(exc).__name__}: {exc}"}
        (work / "validation.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    return True


def step_export(args, work: Path) -> Path:
    import torch

    from recipe.model import new_model, save_checkpoint
    from recipe.tokenizer import load_tokenizer

    out = work / "hf"
    if (out / "config.json").is_file():
        return out
    tok = load_tokenizer(work / "tokenizer")
    model = new_model(SIZES[args.sizes], tok, args.seed)
    st = torch.load(work / "phase2.pt", map_location="cpu", weights_only=False)
    if not st.get("done"):
        raise SystemExit("phase 2 is not finished: run `train` again")
    model.load_state_dict(st["model"])
    save_checkpoint(model, tok, out)
    return out


def step_pack(args, work: Path) -> None:
    from sleepvlm_ws.core.model.convert import convert_checkpoint
    from sleepvlm_ws.core.signals.render import AUTHORS_RENDERER_VERSION, RENDERER_VERSION

    # v2 renders the authors' pixels (recipe/data.py places every window in its night)
    recipe = json.loads((work / "config.json").read_text(encoding="utf-8")).get("recipe", "v1")
    renderer = AUTHORS_RENDERER_VERSION if recipe == "v2" else RENDERER_VERSION

    for quant, out in (("Q4_K_M", args.pack_out), ("F16", work / "pack-f16")):
        if (Path(out) / "manifest.json").is_file():
            continue
        convert_checkpoint(work / "hf", out, name=args.pack_name, version=args.pack_version,
                           quant=quant, prompt_file=PROMPT_FILE, context_size=2048,
                           licence="Apache-2.0 (trained by the SleepVLM Workstation project on synthetic data)",
                           progress=print, renderer_version=renderer)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step", choices=("data", "train", "export", "pack", "all"))
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--nights", type=int, default=40)
    ap.add_argument("--night-hours", type=float, default=None,
                    help="length of every synthetic night (default: 6.5-8.5 h, drawn per subject)")
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--recipe", choices=("v1", "v2"), default="v2",
                    help="v1: the generator's own hardware, 12%% one-EEG nights (the shipped v1 pack); "
                         "v2: every night through a random recording chain, 35%% one-EEG (default)")
    ap.add_argument("--sizes", default="default", choices=sorted(SIZES))
    ap.add_argument("--real-data", type=Path, help="directory of scored EDF studies instead of synthetic nights")
    ap.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    ap.add_argument("--device", default=None)
    ap.add_argument("--phase1-seconds", type=float, default=150)
    ap.add_argument("--phase2-seconds", type=float, default=660)
    ap.add_argument("--validation-epochs", type=int, default=512,
                    help="held-out epochs answered by transformers after training (a sanity figure)")
    ap.add_argument("--phase1-batch", type=int, default=96, help="images per phase-1 step")
    ap.add_argument("--phase2-batch", type=int, default=32, help="requests per phase-2 step")
    ap.add_argument("--stop-after", type=float, default=float("inf"),
                    help="pause training after this many seconds (state saved; run again to resume)")
    ap.add_argument("--pack-out", type=Path, default=ROOT / "models" / "default")
    ap.add_argument("--pack-name", default="sleepvlm-ws-default")
    ap.add_argument("--pack-version", default="1")
    args = ap.parse_args()
    if args.device is None:
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    work = args.work
    if args.step in ("data", "all"):
        step_data(args, work)
    if args.step in ("train", "all"):
        if not step_train(args, work):
            print("training paused; run the same command again to resume", flush=True)
            return 3
    if args.step in ("export", "all"):
        step_export(args, work)
    if args.step in ("pack", "all"):
        step_pack(args, work)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

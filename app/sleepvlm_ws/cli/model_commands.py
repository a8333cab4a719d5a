"""The model pack commands: model list, verify, convert."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..core.model.convert import convert_checkpoint, pack_folder_name
from ..core.model.model_pack import default_search_dirs, list_packs, verify_pack
from ..paths import user_data_dir
from .common import EXIT_OK


def cmd_model_list(args) -> int:
    dirs = [Path(d) for d in args.dir] if args.dir else default_search_dirs()
    problems: list = []
    packs = list_packs(dirs, problems=problems)
    for problem in problems:
        print(f"warning: {problem}", file=sys.stderr)
    if args.json:
        print(json.dumps([dict(m.to_dict(), pack_dir=str(m.pack_dir)) for m in packs],
                         indent=2, ensure_ascii=False))
        return EXIT_OK
    if not packs:
        print("no model packs found in: " + ", ".join(str(d) for d in dirs))
        return EXIT_OK
    for m in packs:
        size_mb = sum(f.bytes for f in m.files.values()) / 2**20
        print(f"{m.name}  {m.version}  {m.quantisation}  {size_mb:.0f} MiB  {m.pack_dir}")
    return EXIT_OK


def cmd_model_verify(args) -> int:
    m = verify_pack(args.pack, cache=not args.no_cache)
    print(f"{m.pack_dir}: model pack OK: {m.label}, {len(m.all_files())} files match the manifest")
    return EXIT_OK


def cmd_model_convert(args) -> int:
    out = Path(args.out) if args.out else user_data_dir() / "packs" / pack_folder_name(args.name)
    path = convert_checkpoint(args.hf_dir, out, name=args.name, quant=args.quant,
                              prompt_file=args.prompt, licence=args.licence, version=args.pack_version,
                              progress=lambda msg: print(msg, file=sys.stderr, flush=True))
    print(path)
    return EXIT_OK

"""Model packs: a SleepVLM-compatible model as one folder the workstation can check before use.

A pack is a folder holding

- the language model as GGUF (usually Q4_K_M),
- the vision projector ("mmproj") as GGUF (f16),
- the system prompt file the model was trained with (the workstation never hard-codes one),
- a model card, and
- ``manifest.json``, which names every file with its SHA-256 and size and says what the model
  expects: the renderer (``svlm-render-1``, the workstation's own pixels, or ``svlm-render-2``,
  the authors' renderer; the scoring run renders each pack's epochs as it declares), the request layout (``sleepvlm-3-epoch-v1``), the
  answer schema (``sleepvlm-answer-v1``), the rule vocabulary and the context size.

:func:`verify_pack` checks every file's size and hash *before anything is loaded*; a missing,
truncated or changed file is a :class:`~sleepvlm_ws.errors.ModelPackError` naming the file.
Hashes of unchanged files are remembered (see :mod:`.pack_hashes`) so a 2 GB model is not rehashed
at every start.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterable

from ...errors import ModelPackError
from ...paths import bundle_dir, repo_root, user_data_dir
from .pack_hashes import HashCache, sha256_of

MANIFEST_NAME = "manifest.json"
PACK_FORMAT = "sleepvlm-pack"
PACK_FORMAT_VERSION = 1
RENDERER_VERSION = "svlm-render-1"        # what a new pack declares unless told otherwise
RENDERERS = ("svlm-render-1", "svlm-render-2")   # = core.signals.render.RENDERERS (a test checks)
REQUEST_LAYOUT = "sleepvlm-3-epoch-v1"
ANSWER_SCHEMA = "sleepvlm-answer-v1"
# The 15 rule IDs SleepVLM cites (spec: sleepvlm-compat.md).
SLEEPVLM_RULE_IDS = ("W.1", "W.2", "W.3", "N1.1", "N1.2", "N2.1", "N2.2", "N2.3", "N2.4",
                     "N3.1", "R.1", "R.2", "R.3", "MBM.1", "MBM.2")
PACKS_ENV = "SLEEPVLM_WS_PACKS"
FILE_ROLES = ("lm", "mmproj")


@dataclass(frozen=True)
class PackFile:
    """One file of a pack: its path relative to the pack folder, SHA-256 and size in bytes."""

    path: str
    sha256: str
    bytes: int

    def to_dict(self) -> dict:
        return {"path": self.path, "sha256": self.sha256, "bytes": self.bytes}


@dataclass(frozen=True)
class PackManifest:
    """What ``manifest.json`` says. ``pack_dir`` is where it was read from (not serialised)."""

    name: str
    version: str
    files: dict[str, PackFile]  # "lm", "mmproj"
    quantisation: str
    prompt_file: PackFile
    context_size: int
    licence: str
    created_by: str
    model_card: str | None = None
    renderer_version: str = RENDERER_VERSION
    request_layout: str = REQUEST_LAYOUT
    answer_schema: str = ANSWER_SCHEMA
    rule_vocabulary: tuple[str, ...] = SLEEPVLM_RULE_IDS
    format: str = PACK_FORMAT
    format_version: int = PACK_FORMAT_VERSION
    pack_dir: Path | None = field(default=None, compare=False)

    # -- where the files are ---------------------------------------------------------------
    def _resolve(self, rel: str) -> Path:
        if self.pack_dir is None:
            raise ModelPackError(None, f"model pack {self.name!r} was not read from a folder")
        return self.pack_dir / rel

    @property
    def lm_path(self) -> Path:
        return self._resolve(self.files["lm"].path)

    @property
    def mmproj_path(self) -> Path:
        return self._resolve(self.files["mmproj"].path)

    @property
    def prompt_path(self) -> Path:
        return self._resolve(self.prompt_file.path)

    @property
    def model_card_path(self) -> Path | None:
        return None if self.model_card is None else self._resolve(self.model_card)

    @property
    def label(self) -> str:
        """How the pack is named to the user: ``name version (quantisation)``."""
        return f"{self.name} {self.version} ({self.quantisation})"

    def system_prompt(self) -> str:
        """The pack's system prompt, verbatim (read each time; verify the pack first)."""
        try:
            return self.prompt_path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ModelPackError(self.prompt_path, f"cannot read the pack's prompt file: {exc}") from None

    def all_files(self) -> list[tuple[str, PackFile]]:
        """(role, file) for every hashed file: lm, mmproj, prompt."""
        return [(role, self.files[role]) for role in FILE_ROLES] + [("prompt", self.prompt_file)]

    # -- serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "format": self.format,
            "format_version": self.format_version,
            "name": self.name,
            "version": self.version,
            "files": {role: self.files[role].to_dict() for role in FILE_ROLES},
            "quantisation": self.quantisation,
            "prompt_file": self.prompt_file.to_dict(),
            "renderer_version": self.renderer_version,
            "request_layout": self.request_layout,
            "answer_schema": self.answer_schema,
            "rule_vocabulary": list(self.rule_vocabulary),
            "context_size": self.context_size,
            "licence": self.licence,
            "model_card": self.model_card,
            "created_by": self.created_by,
        }

    @classmethod
    def from_dict(cls, data: object, *, source: Path | None = None,
                  pack_dir: Path | None = None) -> "PackManifest":
        """Validate and read a manifest; anything wrong raises ModelPackError naming ``source``."""
        def bad(problem: str) -> ModelPackError:
            return ModelPackError(source, f"not a valid model pack manifest: {problem}")

        if not isinstance(data, dict):
            raise bad("the top level is not a JSON object")
        if data.get("format") != PACK_FORMAT:
            raise bad(f"'format' is {data.get('format')!r}, expected {PACK_FORMAT!r}")
        fv = data.get("format_version")
        if not isinstance(fv, int) or isinstance(fv, bool):
            raise bad("'format_version' is missing")
        if fv > PACK_FORMAT_VERSION:
            raise ModelPackError(source, f"model pack format version {fv} is newer than this "
                                         f"workstation reads ({PACK_FORMAT_VERSION}); update sleepvlm-ws")
        if fv < 1:
            raise bad(f"'format_version' {fv} is not supported")

        def text(key: str, *, optional: bool = False) -> str | None:
            value = data.get(key)
            if value is None and optional:
                return None
            if not isinstance(value, str) or not value.strip():
                raise bad(f"'{key}' is missing or not text")
            return value

        def pack_file(value: object, what: str) -> PackFile:
            if not isinstance(value, dict):
                raise bad(f"'{what}' is missing")
            path, digest, size = value.get("path"), value.get("sha256"), value.get("bytes")
            if not isinstance(path, str) or not path:
                raise bad(f"'{what}.path' is missing")
            _check_relative(path, what, bad)
            if (not isinstance(digest, str) or len(digest) != 64
                    or any(c not in "0123456789abcdef" for c in digest)):
                raise bad(f"'{what}.sha256' is not a lower-case SHA-256 hex digest")
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise bad(f"'{what}.bytes' is not a file size")
            return PackFile(path=path, sha256=digest, bytes=size)

        files_in = data.get("files")
        if not isinstance(files_in, dict):
            raise bad("'files' is missing")
        files = {role: pack_file(files_in.get(role), f"files.{role}") for role in FILE_ROLES}
        prompt = pack_file(data.get("prompt_file"), "prompt_file")
        rules = data.get("rule_vocabulary")
        if not isinstance(rules, list) or not rules or not all(isinstance(r, str) and r for r in rules):
            raise bad("'rule_vocabulary' is not a list of rule IDs")
        ctx = data.get("context_size")
        if not isinstance(ctx, int) or isinstance(ctx, bool) or ctx < 512:
            raise bad("'context_size' is not a token count of at least 512")
        card = text("model_card", optional=True)
        if card is not None:
            _check_relative(card, "model_card", bad)
        return cls(
            name=text("name"), version=text("version"), files=files,
            quantisation=text("quantisation"), prompt_file=prompt, context_size=ctx,
            licence=text("licence"), created_by=text("created_by"), model_card=card,
            renderer_version=text("renderer_version"), request_layout=text("request_layout"),
            answer_schema=text("answer_schema"), rule_vocabulary=tuple(rules),
            format=PACK_FORMAT, format_version=fv, pack_dir=pack_dir,
        )


def _check_relative(path: str, what: str, bad) -> None:
    """Pack paths stay inside the pack: relative, forward slashes, no '..'."""
    p = PurePosixPath(path)
    if p.is_absolute() or "\\" in path or ":" in path or any(part in ("..", "") for part in p.parts) \
            or path.startswith("/"):
        raise bad(f"'{what}' must be a path inside the pack, got {path!r}")


def write_manifest(manifest: PackManifest, pack_dir: Path) -> Path:
    """Write ``manifest.json`` (UTF-8, indented, stable key order) into ``pack_dir``."""
    path = Path(pack_dir) / MANIFEST_NAME
    tmp = path.with_name(MANIFEST_NAME + ".tmp")
    tmp.write_text(json.dumps(manifest.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def load_manifest(pack_dir: str | Path) -> PackManifest:
    """Read and validate ``manifest.json`` of a pack folder (or the manifest file itself).

    Only the manifest is read; the pack's files are not checked (see :func:`verify_pack`).

    Parameters
    ----------
    pack_dir : str or Path
        The pack folder, or its ``manifest.json``.

    Returns
    -------
    PackManifest
        What the manifest says, with ``pack_dir`` set to the resolved pack folder.

    Raises
    ------
    ModelPackError
        One line, when the folder or its manifest is missing or unreadable, the manifest is not
        UTF-8 JSON or not a valid manifest, or its format version is newer than this workstation reads.
    """
    pack_dir = Path(pack_dir)
    if pack_dir.name == MANIFEST_NAME and pack_dir.is_file():
        pack_dir = pack_dir.parent
    path = pack_dir / MANIFEST_NAME
    if not pack_dir.is_dir():
        raise ModelPackError(pack_dir, "model pack folder not found")
    if not path.is_file():
        raise ModelPackError(pack_dir, f"not a model pack: no {MANIFEST_NAME} in the folder")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ModelPackError(path, "not a valid model pack manifest: not UTF-8 text") from None
    except ValueError as exc:
        raise ModelPackError(path, f"not a valid model pack manifest: bad JSON ({exc})") from None
    except OSError as exc:
        raise ModelPackError(path, f"cannot read: {exc.strerror or exc}") from None
    return PackManifest.from_dict(data, source=path, pack_dir=pack_dir.resolve())


def verify_pack(pack_dir: str | Path, *, cache: HashCache | None | bool = True,
                progress=None) -> PackManifest:
    """Check every file of a pack against its manifest; return the manifest when all match.

    Runs before anything is loaded. Sizes are checked first (nothing is hashed if a file is
    missing), then SHA-256 hashes.

    Parameters
    ----------
    pack_dir : str or Path
        The pack folder (or its ``manifest.json``).
    cache : HashCache, bool or None
        True (default) for the per-user hash cache, so unchanged files are not rehashed; False or
        None to hash everything; or a HashCache to use. The cache is saved even when a check fails.
    progress : callable, optional
        ``progress(done_bytes, total_bytes)``, called while files are hashed (hashes taken from
        the cache report no bytes).

    Returns
    -------
    PackManifest
        The pack's manifest, as :func:`load_manifest` reads it.

    Raises
    ------
    ModelPackError
        One line naming the file: a manifest that cannot be read (see :func:`load_manifest`), one
        that expects a renderer, request layout or answer schema this workstation does not
        provide, or a listed file that is missing, not a file, of another size (truncated or
        replaced) or of another SHA-256 (changed or corrupt).
    """
    manifest = load_manifest(pack_dir)
    if manifest.renderer_version not in RENDERERS or manifest.request_layout != REQUEST_LAYOUT \
            or manifest.answer_schema != ANSWER_SCHEMA:
        raise ModelPackError(Path(pack_dir) / MANIFEST_NAME,
                             "model pack expects a renderer/request/answer format this workstation "
                             f"does not provide ({manifest.renderer_version}, {manifest.request_layout}, "
                             f"{manifest.answer_schema})")
    checks = [(manifest._resolve(f.path), f) for _, f in manifest.all_files()]
    for path, entry in checks:  # cheap checks first: nothing is hashed if a file is missing
        try:
            st = path.stat()
        except FileNotFoundError:
            raise ModelPackError(path, "file listed in the model pack manifest is missing") from None
        except OSError as exc:
            raise ModelPackError(path, f"cannot read: {exc.strerror or exc}") from None
        if not path.is_file():
            raise ModelPackError(path, "is not a file")
        if st.st_size != entry.bytes:
            what = "truncated" if st.st_size < entry.bytes else "larger than expected"
            raise ModelPackError(path, f"size {st.st_size} bytes does not match the manifest "
                                       f"({entry.bytes} bytes): file {what} or replaced")
    hc = HashCache.default() if cache is True else (cache or HashCache(None))
    total = sum(entry.bytes for _, entry in checks)
    done = [0]

    def on_bytes(n: int) -> None:
        done[0] += n
        if progress is not None:
            progress(done[0], total)

    try:
        for path, entry in checks:
            try:
                digest = hc.sha256(path, on_bytes=on_bytes)
            except OSError as exc:
                raise ModelPackError(path, f"cannot read: {exc.strerror or exc}") from None
            if digest != entry.sha256:
                raise ModelPackError(path, "sha256 does not match the manifest (file changed or corrupt)")
    finally:
        hc.save()
    return manifest


def describe_file(pack_dir: Path, rel: str) -> PackFile:
    """Hash a file inside ``pack_dir`` into a manifest entry (used when a pack is made)."""
    path = Path(pack_dir) / rel
    return PackFile(path=rel, sha256=sha256_of(path), bytes=path.stat().st_size)


def default_search_dirs() -> list[Path]:
    """Where packs are looked for: the repository's models/ (a desktop bundle's own models/ when
    frozen), the user's packs/, $SLEEPVLM_WS_PACKS."""
    dirs: list[Path] = []
    root = repo_root()
    if root is not None:
        dirs.append(root / "models")
    bundled = bundle_dir()
    if bundled is not None:
        dirs.append(bundled / "models")
    dirs.append(user_data_dir() / "packs")
    for part in os.environ.get(PACKS_ENV, "").split(os.pathsep):
        if part.strip():
            dirs.append(Path(part.strip()).expanduser())
    return dirs


def list_packs(search_dirs: Iterable[str | Path] | None = None, *,
               problems: list[ModelPackError] | None = None) -> list[PackManifest]:
    """Every pack found in ``search_dirs`` (a folder that is a pack, or holds packs one level down).

    Manifests are read, not verified (that hashes gigabytes): call :func:`verify_pack` before
    loading one. A pack reachable through two search folders is listed once.

    Parameters
    ----------
    search_dirs : iterable of str or Path, optional
        The folders to look in; those that do not exist are skipped. Default:
        ``default_search_dirs()`` (the repository's or the bundle's ``models/``, the user's
        ``packs/``, ``$SLEEPVLM_WS_PACKS``).
    problems : list of ModelPackError, optional
        Receives the error of each folder whose manifest is broken (such folders are skipped
        either way).

    Returns
    -------
    list of PackManifest
        Sorted by name (ignoring case), then version.
    """
    seen: set[Path] = set()
    found: list[PackManifest] = []
    for base in (default_search_dirs() if search_dirs is None else search_dirs):
        base = Path(base)
        if not base.is_dir():
            continue
        candidates = [base] if (base / MANIFEST_NAME).is_file() else \
            sorted(p for p in base.iterdir() if p.is_dir() and (p / MANIFEST_NAME).is_file())
        for pack_dir in candidates:
            key = pack_dir.resolve()
            if key in seen:
                continue
            seen.add(key)
            try:
                found.append(load_manifest(pack_dir))
            except ModelPackError as exc:
                if problems is not None:
                    problems.append(exc)
    found.sort(key=lambda m: (m.name.lower(), m.version, str(m.pack_dir)))
    return found

"""Other scorers of a study: hypnograms held beside the study's own scoring (schema v5).

A sleep center compares scorers: a second technologist scores the night blind, or a scoring
made elsewhere is imported. Each is a named ``Scorer`` with its stage per epoch; the study's
own scoring (its decisions) is never touched by one. Scorings are append-only: a name is used
once per study, so what was compared stays what it was; an import writes one audit event
(``scoring_imported``, with the file's SHA-256) in the same transaction as its rows.

Where the scorers' consensus is tied, a person adjudicates (``core.trust.study_consensus``
checks the tie); the choice is stored here, append-only (the latest per epoch stands), each
with an audit event (``consensus_adjudicated``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ...errors import InputError
from ..base.stages import SLEEP_STAGES, Stage
from .audit import utc_now_iso
from .formats import import_hypnogram

SCORING_IMPORTED = "scoring_imported"          # audit event kinds
CONSENSUS_ADJUDICATED = "consensus_adjudicated"
KINDS = ("imported", "blind")
# Names the comparison uses for what is not another scorer's hypnogram.
RESERVED_NAMES = ("study", "consensus", "ai", "second opinion")
MAX_NAME = 60


class ScorerError(InputError):
    """A scorer that cannot be added (bad or taken name, wrong length); one line."""


@dataclass(frozen=True)
class Scorer:
    """One other scorer's scoring of the study."""

    name: str
    kind: str            # "imported" or "blind"
    source: str          # the file's name for an import; who scored for a blind scoring
    sha256: str | None   # of the imported file
    actor: str           # who added it
    created: str         # ISO UTC


@dataclass(frozen=True)
class Adjudication:
    """The stage a person chose for a tied epoch of the consensus."""

    epoch: int
    stage: Stage
    tied: tuple[Stage, ...]
    scorer: str
    time: str
    note: str | None


def check_name(name: object, study) -> str:
    """The scorer name, stripped, or ScorerError naming the problem.

    Parameters
    ----------
    name : object
        The name asked for.
    study : Study
        Where it must not be taken yet.

    Returns
    -------
    str
    """
    text = name.strip() if isinstance(name, str) else ""
    if not text or len(text) > MAX_NAME or not text.isprintable():
        raise ScorerError(study.path, f"a scorer's name is 1 to {MAX_NAME} printable characters, "
                                      f"not {name!r}")
    if text.casefold() in RESERVED_NAMES:
        raise ScorerError(study.path, f"'{text}' is reserved for the comparison; choose another "
                                      f"scorer name")
    if text.casefold() in {n.casefold() for n in scorer_names(study)}:
        raise ScorerError(study.path, f"scorer '{text}' already has a scoring in this study "
                                      f"(scorings are never replaced); choose another name")
    return text


def add_scoring(study, name: str, stages: Sequence[Stage], *, kind: str, source: str, actor: str,
                sha256: str | None = None, audit_extra: dict | None = None) -> Scorer:
    """Store another scorer's hypnogram (one transaction with its audit event).

    Parameters
    ----------
    study : Study
    name : str
        The scorer's name, unique in the study.
    stages : sequence of Stage
        One per epoch of the study.
    kind : {"imported", "blind"}
    source : str
        The file it came from (its name), or who scored for a blind scoring.
    actor : str
        Who adds it (the audit event's actor).
    sha256 : str, optional
        Of the imported file.
    audit_extra : dict, optional
        More plain-JSON facts for the audit event (an import's warnings).

    Returns
    -------
    Scorer

    Raises
    ------
    ScorerError
        A bad or taken name, or a scoring of another length than the study.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    name = check_name(name, study)
    stages = [Stage(s) for s in stages]
    if len(stages) != study.n_epochs:
        raise ScorerError(study.path, f"scorer '{name}' covers {len(stages)} epochs, the study "
                                      f"{study.n_epochs}")
    created = utc_now_iso()
    counts = {s.value: stages.count(s) for s in SLEEP_STAGES if s in stages}
    with study.batch():
        with study.transaction(f"scorer '{name}'") as conn:
            conn.execute("INSERT INTO scorers(name, kind, source, sha256, actor, created) "
                         "VALUES (?, ?, ?, ?, ?, ?)", (name, kind, source, sha256, actor, created))
            conn.executemany("INSERT INTO scorer_stages(scorer, epoch, stage) VALUES (?, ?, ?)",
                             [(name, e, s.value) for e, s in enumerate(stages)])
        study.record_event(SCORING_IMPORTED, {
            "scorer": name, "kind": kind, "source": source, "sha256": sha256,
            "epochs_scored": sum(counts.values()), "stages": counts, **(audit_extra or {})}, actor)
    return Scorer(name, kind, source, sha256, actor, created)


def import_scoring(study, path: str | Path, name: str, *, actor: str, fmt: str | None = None
                   ) -> tuple[Scorer, list[str]]:
    """Import another scorer's hypnogram from a file (any format ``import`` reads).

    Parameters
    ----------
    study : Study
    path : str or Path
        The hypnogram file.
    name : str
        The scorer's name in this study.
    actor : str
        Who imports it.
    fmt : str, optional
        The file's format (default: by its suffix or content).

    Returns
    -------
    (Scorer, list of str)
        The scorer stored and what the import had to adjust (one sentence each).

    Raises
    ------
    HypnogramFormatError, ScorerError
        One line naming the file or the study.
    """
    path = Path(path)
    check_name(name, study)                   # before reading: a taken name is said first
    hyp = import_hypnogram(path, fmt=fmt, n_epochs=study.n_epochs)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    warnings = list(hyp.warnings)
    scorer = add_scoring(study, name, hyp.stages, kind="imported", source=path.name, actor=actor,
                         sha256=digest, audit_extra={"warnings": warnings})
    return scorer, warnings


def scorer_names(study) -> list[str]:
    """The other scorers, in the order they were added."""
    return [n for (n,) in study.query("SELECT name FROM scorers ORDER BY rowid")]


def scorers(study) -> list[Scorer]:
    """Every other scorer's record, in the order they were added.

    Parameters
    ----------
    study : Study

    Returns
    -------
    list of Scorer
    """
    return [Scorer(*row) for row in study.query(
        "SELECT name, kind, source, sha256, actor, created FROM scorers ORDER BY rowid")]


def load_scorings(study) -> dict[str, list[Stage]]:
    """Every other scorer's stages, by name, in the order they were added.

    Parameters
    ----------
    study : Study

    Returns
    -------
    dict of str to list of Stage
        One stage per epoch of the study.
    """
    out: dict[str, list[Stage]] = {n: [Stage.UNSCORED] * study.n_epochs for n in scorer_names(study)}
    for scorer, epoch, stage in study.query("SELECT scorer, epoch, stage FROM scorer_stages"):
        out[scorer][epoch] = Stage(stage)
    return out


def record_adjudication(study, epoch: int, stage: Stage, tied: Sequence[Stage], *, scorer: str,
                        note: str | None = None) -> Adjudication:
    """Store a person's choice for a tied epoch (the caller checked the tie), audited.

    Parameters
    ----------
    study : Study
    epoch : int
        0-based.
    stage : Stage
        The stage chosen, one of ``tied``.
    tied : sequence of Stage
        The stages that were tied.
    scorer : str
        Who chose.
    note : str, optional

    Returns
    -------
    Adjudication
    """
    stage = Stage(stage)
    tied = tuple(Stage(s) for s in tied)
    time = utc_now_iso()
    tied_text = ",".join(s.value for s in tied)
    with study.batch():
        with study.transaction(f"the adjudication of epoch {epoch + 1}") as conn:
            conn.execute("INSERT INTO adjudications(epoch, stage, tied, scorer, time, note) "
                         "VALUES (?, ?, ?, ?, ?, ?)", (epoch, stage.value, tied_text, scorer, time, note))
        study.record_event(CONSENSUS_ADJUDICATED, {"epoch": epoch, "stage": stage.value,
                                                   "tied": [s.value for s in tied], "note": note},
                           scorer)
    return Adjudication(epoch, stage, tied, scorer, time, note)


def adjudications(study) -> dict[int, Adjudication]:
    """The standing adjudication of each epoch (the latest one).

    Parameters
    ----------
    study : Study

    Returns
    -------
    dict of int to Adjudication
        Epoch (0-based) -> its latest adjudication.
    """
    out = {}
    for epoch, stage, tied, scorer, time, note in study.query(
            "SELECT epoch, stage, tied, scorer, time, note FROM adjudications ORDER BY id"):
        out[epoch] = Adjudication(epoch, Stage(stage), tuple(Stage(s) for s in tied.split(",")),
                                  scorer, time, note)
    return out

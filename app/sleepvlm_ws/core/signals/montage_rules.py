"""How ``auto_montage`` reads channel labels: normalisation and the preference table.

Label normalisation (applied to file labels and to the table alike):

* Unicode NFKC, upper case; brackets dropped;
* separators ``-`` ``–`` ``—`` ``−`` ``:`` ``/`` ``_`` (and spaces around them) become "-";
  other spaces are dropped ("EEG F4 - M1" -> "EEG F4-M1", "EOG L" -> "EOGL");
* a modality prefix "EEG", "EOG" or "EMG" may be present or not: "EEG Fpz-Cz" also answers
  to "FPZ-CZ", "EMG chin" to "CHIN", "EOG-L" to "EOGL" (the table writes "EOG L", so a bare
  "L" never counts as an EOG).

A *referential* channel of electrode X is labelled "X" or "X-Ref" (also "-REF", "-AVG", "-AV",
"-CMS", "-COM"): every such channel shares one reference, so ``X - Y`` of two of them is the
bipolar derivation X-Y.

Preference per role, first match wins (``pair X Y``: a channel labelled "X-Y", else "X" and
"Y" recorded as referential channels and derived; ``label``: a channel with that label as
recorded; ``alone X``: a referential "X" used as recorded, reference unknown):

========  =======================================================================================
F4-M1     pair F4 M1, pair F4 A1, F4 linked-ear (F4-LER/CLE/LE/A1A2/M1M2/A1+A2/M1+M2),
          pair F3 M2, pair F3 A2, F3 linked-ear, label Fz-Cz, label Fpz-Cz (Sleep-EDF),
          pair Fp2 M1, pair Fp2 A1, pair Fp1 M2, pair Fp1 A2, pair Fz M1, pair Fz A1,
          alone F4, alone F3, alone Fz
C4-M1     pair C4 M1, pair C4 A1, C4 linked-ear, pair C3 M2, pair C3 A2, C3 linked-ear,
          pair Cz M1, pair Cz A1, pair Cz M2, pair Cz A2, pair C4 M2, pair C4 A2, pair C3 M1,
          pair C3 A1, alone C4, alone C3, alone Cz
O2-M1     pair O2 M1, pair O2 A1, O2 linked-ear, pair O1 M2, pair O1 A2, O1 linked-ear,
          label Pz-Oz (Sleep-EDF), label Oz-Cz, pair Oz M1, pair Oz A1, pair O2 M2, pair O2 A2,
          pair O1 M1, pair O1 A1, alone O2, alone O1, alone Oz
LOC       pair E1 M2, pair E1 A2, pair LOC M2, pair LOC A2, pair E1 M1, pair E1 A1,
          pair LOC M1, pair LOC A1, labels LOC, EOG L, EOG Left, EOG Left Horiz, L-EOG, LEOG,
          EOG LOC, EOG1, EOG horizontal (Sleep-EDF's single EOG), HEOG, alone E1, label EOG
ROC       pair E2 M1, pair E2 A1, pair ROC M1, pair ROC A1, pair E2 M2, pair E2 A2,
          pair ROC M2, pair ROC A2, labels ROC, EOG R, EOG Right, EOG Right Horiz, R-EOG,
          REOG, EOG ROC, EOG2, alone E2
CHIN      pair Chin1 Chin2, pair Chin2 Chin1, pair Chin1 Chin3, pair Chin2 Chin3,
          pair Chin3 Chin1, labels Chin, EMG Chin, Chin EMG, ChinEMG, Chin-Ref, EMG submental
          (Sleep-EDF), Submental, EMG1-EMG2, Chin1, Chin2, EMG
========  =======================================================================================

A1/A2 (earlobes) stand in for M1/M2 (mastoids), ranked after them; the contralateral
hemisphere (F3-M2 for F4-M1) before midline or ipsilateral leads.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from .derivation import Derivation

_SEPARATOR = re.compile(r"\s*[-\u2010-\u2015\u2212:/_\\]\s*")
_BRACKETS = re.compile(r"[()\[\]{}]")
_MODALITY = re.compile(r"^(EEG|EOG|EMG)(?:\s+|-)(.+)$")
_REF_SUFFIXES = ("", "-REF", "-AVG", "-AV", "-CMS", "-COM", "-REFERENCE")
_LINKED = ("LER", "CLE", "LE", "A1A2", "M1M2", "A1+A2", "M1+M2", "A1.A2", "LINKED")


def normalise(label: str) -> tuple[str, ...]:
    """Every key a label answers to: as written, and without its modality prefix."""
    text = unicodedata.normalize("NFKC", label).upper()
    text = _BRACKETS.sub(" ", text)
    text = _SEPARATOR.sub("-", text).strip(" -")
    full = "".join(text.split())
    found = _MODALITY.match(text)
    if not found:
        return (full,)
    rest = "".join(found.group(2).split()).strip("-")
    if not rest:
        return (full,)
    return (found.group(1) + rest, rest, full)


def canonical(label: str) -> str:
    """The table's key for a label: the first of ``normalise``."""
    return normalise(label)[0]


@dataclass(frozen=True)
class BipolarPair:
    positive: str
    negative: str


@dataclass(frozen=True)
class ExactLabel:
    text: str


@dataclass(frozen=True)
class SingleElectrode:
    electrode: str


def _linked(electrode: str) -> list[ExactLabel]:
    return [ExactLabel(f"{electrode}-{ref}") for ref in _LINKED]


def _pairs(*items: str) -> list[BipolarPair]:
    return [BipolarPair(*item.split()) for item in items]


TABLE: dict[str, list] = {
    "F4-M1": [*_pairs("F4 M1", "F4 A1"), *_linked("F4"), *_pairs("F3 M2", "F3 A2"),
              *_linked("F3"), ExactLabel("Fz-Cz"), ExactLabel("Fpz-Cz"),
              *_pairs("Fp2 M1", "Fp2 A1", "Fp1 M2", "Fp1 A2", "Fz M1", "Fz A1"),
              SingleElectrode("F4"), SingleElectrode("F3"), SingleElectrode("Fz")],
    "C4-M1": [*_pairs("C4 M1", "C4 A1"), *_linked("C4"), *_pairs("C3 M2", "C3 A2"),
              *_linked("C3"),
              *_pairs("Cz M1", "Cz A1", "Cz M2", "Cz A2", "C4 M2", "C4 A2", "C3 M1", "C3 A1"),
              SingleElectrode("C4"), SingleElectrode("C3"), SingleElectrode("Cz")],
    "O2-M1": [*_pairs("O2 M1", "O2 A1"), *_linked("O2"), *_pairs("O1 M2", "O1 A2"),
              *_linked("O1"), ExactLabel("Pz-Oz"), ExactLabel("Oz-Cz"),
              *_pairs("Oz M1", "Oz A1", "O2 M2", "O2 A2", "O1 M1", "O1 A1"),
              SingleElectrode("O2"), SingleElectrode("O1"), SingleElectrode("Oz")],
    "LOC": [*_pairs("E1 M2", "E1 A2", "LOC M2", "LOC A2", "E1 M1", "E1 A1", "LOC M1", "LOC A1"),
            *(ExactLabel(t) for t in ("LOC", "EOG L", "EOG Left", "EOG Left Horiz", "L-EOG", "LEOG",
                                 "EOG LOC", "EOG1", "EOG horizontal", "HEOG")),
            SingleElectrode("E1"), ExactLabel("EOG")],
    "ROC": [*_pairs("E2 M1", "E2 A1", "ROC M1", "ROC A1", "E2 M2", "E2 A2", "ROC M2", "ROC A2"),
            *(ExactLabel(t) for t in ("ROC", "EOG R", "EOG Right", "EOG Right Horiz", "R-EOG", "REOG",
                                 "EOG ROC", "EOG2")),
            SingleElectrode("E2")],
    "CHIN": [*_pairs("Chin1 Chin2", "Chin2 Chin1", "Chin1 Chin3", "Chin2 Chin3", "Chin3 Chin1"),
             *(ExactLabel(t) for t in ("Chin", "EMG Chin", "Chin EMG", "ChinEMG", "Chin-Ref",
                                  "EMG submental", "Submental", "EMG1-EMG2", "Chin1", "Chin2",
                                  "EMG"))],
}


class _Index:
    """The recording's labels, looked up by normalised key (first label wins)."""

    def __init__(self, labels: list[str]):
        self.by_key: dict[str, str] = {}
        self.referential: dict[str, str] = {}
        for label in labels:
            keys = normalise(label)
            for key in keys:
                self.by_key.setdefault(key, label)
            # referential: the key without modality ("EEG F4-Ref" -> "F4-REF") minus a suffix
            bare = keys[1] if len(keys) > 1 else keys[0]
            for suffix in _REF_SUFFIXES:
                if suffix and bare.endswith(suffix):
                    self.referential.setdefault(bare[: -len(suffix)], label)
                elif not suffix and "-" not in bare:
                    self.referential.setdefault(bare, label)

    def label(self, text: str) -> str | None:
        return self.by_key.get(canonical(text))

    def electrode(self, name: str) -> str | None:
        return self.referential.get(canonical(name))


def choose_derivation(role: str, labels: list[str]) -> Derivation | None:
    """The first entry of ``TABLE[role]`` that ``labels`` can feed, or None."""
    index = _Index(labels)
    for entry in TABLE[role]:
        if isinstance(entry, BipolarPair):
            bipolar = index.label(f"{entry.positive}-{entry.negative}")
            if bipolar is not None:
                return Derivation(bipolar)
            pos, neg = index.electrode(entry.positive), index.electrode(entry.negative)
            if pos is not None and neg is not None and pos != neg:
                return Derivation(pos, neg)
        elif isinstance(entry, ExactLabel):
            found = index.label(entry.text)
            if found is not None:
                return Derivation(found)
        else:
            found = index.electrode(entry.electrode)
            if found is not None:
                return Derivation(found)
    return None

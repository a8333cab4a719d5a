"""NSRR / Compumedics Profusion XML: ``<PSGAnnotation>`` with stage ``<ScoredEvents>`` (one per
scored period) and a Compumedics ``<SleepStages>`` list (one code per epoch). We write both, as
NSRR files carry both; on import ``SleepStages`` wins when present. When the study's decisions
are given, a comment after ``EpochLength`` says how many stages are accepted suggestions and
where those suggestions' stages came from (``_common.origins_text``).

Files declaring a DTD or entities are refused (billion-laughs and external-entity attacks).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from ....errors import HypnogramFormatError
from ...base.hypnogram import Hypnogram
from ...base.stages import EPOCH_SECONDS, Stage
from ._common import (FileScoring, number_of, origins_text, read_bytes, seconds_text, stage_of,
                      suggestion_origins, write_bytes_atomically)

NAME = "xml"
SUFFIXES = (".xml",)
DESCRIPTION = "NSRR / Compumedics XML"

STAGE_EVENT_TYPE = "Stages|Stages"
CONCEPTS = {
    Stage.W: "Wake|0",
    Stage.N1: "Stage 1 sleep|1",
    Stage.N2: "Stage 2 sleep|2",
    Stage.N3: "Stage 3 sleep|3",
    Stage.R: "REM sleep|5",
    Stage.UNSCORED: "Unscored|9",
    Stage.ARTEFACT: "Movement|6",
}
CODES = {Stage.W: 0, Stage.N1: 1, Stage.N2: 2, Stage.N3: 3, Stage.R: 5, Stage.UNSCORED: 9,
         Stage.ARTEFACT: 6}
STAGE_OF_CODE = {0: Stage.W, 1: Stage.N1, 2: Stage.N2, 3: Stage.N3, 4: Stage.N3, 5: Stage.R,
                 6: Stage.ARTEFACT, 9: Stage.UNSCORED}


def write(hyp: Hypnogram, path: Path, *, decisions=None, audit=None, meta=None) -> None:
    root = ET.Element("PSGAnnotation")
    ET.SubElement(root, "SoftwareVersion").text = "SleepVLM Workstation"
    ET.SubElement(root, "EpochLength").text = _number(hyp.epoch_s)
    origins = suggestion_origins(decisions or [])
    if origins:   # a comment: NSRR / Compumedics readers skip it, a person reading the file sees it
        root.append(ET.Comment(" " + origins_text(origins).replace("--", "- -") + " "))
    events = ET.SubElement(root, "ScoredEvents")
    if hyp.start is not None:
        _event(events, "", "Recording Start Time", 0.0, hyp.duration_s,
               clock=hyp.start.strftime("00.00.00 %H.%M.%S"))
    for onset, duration, stage in hyp.segments():
        _event(events, STAGE_EVENT_TYPE, CONCEPTS[stage], onset, duration)
    stages = ET.SubElement(root, "SleepStages")
    for stage in hyp.stages:
        ET.SubElement(stages, "SleepStage").text = str(CODES[stage])
    ET.indent(root, space=" ")
    text = '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
    write_bytes_atomically(path, text.encode("utf-8"))


def _event(parent, event_type: str, concept: str, start: float, duration: float,
           clock: str | None = None) -> None:
    event = ET.SubElement(parent, "ScoredEvent")
    ET.SubElement(event, "EventType").text = event_type
    ET.SubElement(event, "EventConcept").text = concept
    ET.SubElement(event, "Start").text = seconds_text(start)
    ET.SubElement(event, "Duration").text = seconds_text(duration)
    if clock is not None:
        ET.SubElement(event, "ClockTime").text = clock


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else seconds_text(x)


def read(path: Path) -> FileScoring:
    data = read_bytes(path)
    flat = data.replace(b"\x00", b"").lower()
    if b"<!doctype" in flat or b"<!entity" in flat:
        raise HypnogramFormatError(path, "XML declares a DTD or entities; refused for safety")
    try:
        root = ET.fromstring(data)
    except ET.ParseError as e:
        line, column = getattr(e, "position", (0, 0))
        raise HypnogramFormatError(path, f"line {line}, column {column}: not valid XML") from None
    for element in root.iter():
        if isinstance(element.tag, str) and "}" in element.tag:  # drop namespaces
            element.tag = element.tag.rsplit("}", 1)[1]

    epoch_s = EPOCH_SECONDS
    epoch_length = root.find(".//EpochLength")
    if epoch_length is not None and (epoch_length.text or "").strip():
        epoch_s = number_of(path, epoch_length.text, "EpochLength", "epoch length")
        if epoch_s <= 0:
            raise HypnogramFormatError(path, f"EpochLength {epoch_s:g} is not a positive number")

    sleep_stages = root.find(".//SleepStages")
    if sleep_stages is not None and sleep_stages.find("SleepStage") is not None:
        periods = []
        for i, element in enumerate(sleep_stages.iter("SleepStage")):
            code = (element.text or "").strip()
            stage = STAGE_OF_CODE.get(int(code)) if code.isdigit() else None
            if stage is None:
                raise HypnogramFormatError(path, f"SleepStage {i + 1}: unknown stage code {code[:20]!r}")
            periods.append((i * epoch_s, epoch_s, stage))
        return FileScoring(periods)

    periods = []
    for i, event in enumerate(root.iter("ScoredEvent")):
        event_type = (event.findtext("EventType") or "").strip().lower()
        if "stage" not in event_type:
            continue
        where = f"ScoredEvent {i + 1}"
        concept = (event.findtext("EventConcept") or "").strip()
        if not concept:
            raise HypnogramFormatError(path, f"{where}: stage event without an EventConcept")
        stage = stage_of(path, concept, where)
        start = number_of(path, event.findtext("Start") or "", where, "Start")
        duration_text = (event.findtext("Duration") or "").strip()
        duration = number_of(path, duration_text, where, "Duration") if duration_text else None
        if duration is not None and duration < 0:
            raise HypnogramFormatError(path, f"{where}: negative Duration {duration:g}")
        periods.append((start, duration, stage))
    if not periods:
        raise HypnogramFormatError(path, "no sleep stages (neither SleepStages nor stage ScoredEvents)")
    return FileScoring(periods)


def sniff(head: bytes) -> bool:
    return head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<")

"""Hypnogram import and export: every format round-trips, real third-party files import, bad
files give one-line errors naming the file, and exports are written atomically."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from datetime import datetime
from pathlib import Path

import mne
import numpy as np
import pyedflib
import pytest
from edf_factory import patch_header, write_psg_edf, write_raw_edf

from sleepvlm_ws.core.base.hypnogram import Hypnogram
from sleepvlm_ws.core.base.stages import Stage
from sleepvlm_ws.core.study.formats import FORMATS, export_hypnogram, guess_format, import_hypnogram
from sleepvlm_ws.errors import HypnogramFormatError

W, N1, N2, N3, R, U, A = (Stage.W, Stage.N1, Stage.N2, Stage.N3, Stage.R, Stage.UNSCORED,
                          Stage.ARTEFACT)
START = datetime(2024, 3, 1, 22, 30, 0)
SUFFIX = {"tsv": ".tsv", "csv": ".csv", "edf": ".edf", "xml": ".xml", "json": ".json"}


def long_night() -> list[Stage]:
    """960 epochs (8 h): cycles of every stage, unscored and artefact epochs inside and at both
    ends, single-epoch runs and long runs."""
    rng = np.random.default_rng(7)
    stages = [U, U, W, W, W, A, W, N1]
    cycle = [N1, N2, N2, N2, N3, N3, N3, N2, A, N2, R, R, R, W, N1, U, N2]
    while len(stages) < 940:
        for stage in cycle:
            stages.extend([stage] * int(rng.integers(1, 12)))
    return stages[:940] + [W] * 10 + [A] + [U] * 9


def short_night() -> list[Stage]:
    return [W, W, N1, N2, N2, N3, N3, R, A, W, U, N2]


def assert_one_line_naming(error: pytest.ExceptionInfo, path: Path) -> str:
    message = str(error.value)
    assert str(path) in message
    assert "\n" not in message
    return message


# --- the Hypnogram itself ----------------------------------------------------------------------
def test_segments_merge_consecutive_equal_stages_and_come_back():
    hyp = Hypnogram([W, W, N1, N1, N1, U, A, A], start=START)
    assert hyp.n_epochs == 8 and hyp.onset(3) == 90.0
    assert hyp.clock_time(2) == datetime(2024, 3, 1, 22, 31, 0)
    assert hyp.segments() == [(0.0, 60.0, W), (60.0, 90.0, N1), (150.0, 30.0, U), (180.0, 60.0, A)]
    back = Hypnogram.from_segments(hyp.segments())
    assert back.stages == hyp.stages and back.warnings == []


def test_from_segments_places_off_grid_periods_in_the_epoch_containing_their_start():
    hyp = Hypnogram.from_segments([(3.5, 30.0, W), (33.5, 30.0, N1), (63.5, 90.0, N2)])
    assert hyp.stages == [W, N1, N2, N2, N2]
    assert any("grid" in w for w in hyp.warnings)


def test_from_segments_fits_the_study_length():
    segments = [(0.0, 60.0, W), (60.0, 120.0, N2)]  # 6 epochs
    cut = Hypnogram.from_segments(segments, n_epochs=4)
    assert cut.stages == [W, W, N2, N2]
    assert any("dropped" in w for w in cut.warnings)
    padded = Hypnogram.from_segments(segments, n_epochs=8)
    assert padded.stages == [W, W, N2, N2, N2, N2, U, U]
    assert any("unscored" in w for w in padded.warnings)
    assert Hypnogram.from_segments(segments, n_epochs=6).warnings == []


# --- round trips ------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("night", [long_night, short_night], ids=["960 epochs", "12 epochs"])
def test_every_format_round_trips_exactly(tmp_path, fmt, night):
    hyp = Hypnogram(night(), start=START)
    path = export_hypnogram(hyp, fmt, tmp_path / f"night{SUFFIX[fmt]}")
    assert path == tmp_path / f"night{SUFFIX[fmt]}" and path.is_file()
    back = import_hypnogram(path)
    assert back.stages == hyp.stages
    assert back.warnings == []
    assert import_hypnogram(path, fmt=fmt, n_epochs=hyp.n_epochs).stages == hyp.stages
    if fmt in ("edf", "json"):  # the formats that hold a date
        assert back.start == START
    assert list(tmp_path.iterdir()) == [path]  # no temporary files left behind


@pytest.mark.parametrize("fmt", FORMATS)
def test_format_is_recognised_from_content_when_the_name_does_not_say(tmp_path, fmt):
    hyp = Hypnogram(short_night())
    path = export_hypnogram(hyp, fmt, tmp_path / "scoring.txt")
    assert guess_format(path, path.read_bytes()[:512]) == fmt
    assert import_hypnogram(path).stages == hyp.stages


def test_unknown_start_survives_edf_and_json(tmp_path):
    hyp = Hypnogram(short_night(), start=None)
    for fmt in ("edf", "json"):
        assert import_hypnogram(export_hypnogram(hyp, fmt, tmp_path / f"n{SUFFIX[fmt]}")).start is None


def test_tsv_is_a_bids_events_table_one_row_per_epoch(tmp_path):
    path = export_hypnogram(Hypnogram([W, W, N2]), "tsv", tmp_path / "sub-01_events.tsv")
    assert path.read_text().splitlines() == [
        "onset\tduration\tstage", "0.0\t30.0\tW", "30.0\t30.0\tW", "60.0\t30.0\tN2"]


def test_csv_carries_clock_time_and_the_last_decision_of_each_epoch(tmp_path):
    decisions = [
        {"id": 1, "epoch": 0, "stage": "N1", "source": "ai_accepted", "scorer": "AI"},
        {"id": 2, "epoch": 0, "stage": "W", "source": "manual", "scorer": "jd"},
        {"id": 3, "epoch": 2, "stage": "N2", "source": "manual", "scorer": "kl"},
        {"id": 4, "epoch": 3, "stage": "N2", "source": "ai_accepted", "scorer": "kl",
         "suggested_by": "yasa-0.8.1/clf_eeg"},
    ]
    path = export_hypnogram(Hypnogram([W, N1, N2, N2], start=START), "csv", tmp_path / "h.csv",
                            decisions=decisions)
    rows = path.read_text().splitlines()
    assert rows == [
        "epoch,onset_s,clock_time,stage,source,scorer,suggested_by",
        "1,0.0,22:30:00,W,manual,jd,",
        "2,30.0,22:30:30,N1,,,",
        "3,60.0,22:31:00,N2,manual,kl,",
        "4,90.0,22:31:30,N2,ai_accepted,kl,yasa-0.8.1/clf_eeg",
    ]
    plain = export_hypnogram(Hypnogram([W, N1]), "csv", tmp_path / "plain.csv")
    assert plain.read_text().splitlines() == [
        "epoch,onset_s,clock_time,stage", "1,0.0,,W", "2,30.0,,N1"]


def test_json_carries_decisions_audit_and_meta(tmp_path):
    decisions = [{"id": 1, "epoch": 1, "stage": Stage.N1, "source": "manual", "scorer": "jd",
                  "time": "2024-03-02T01:00:00+00:00"}]
    audit = [{"seq": 1, "event": "open", "payload": {"when": datetime(2024, 3, 2, 1, 0)}}]
    path = export_hypnogram(Hypnogram([W, N1], start=START), "json", tmp_path / "h.json",
                            decisions=decisions, audit=audit, meta={"scorer": "jd"})
    doc = json.loads(path.read_text())
    assert doc["format"] == "sleepvlm-ws hypnogram" and doc["version"] == 1
    assert doc["epoch_s"] == 30.0 and doc["start"] == "2024-03-01T22:30:00"
    assert doc["stages"] == ["W", "N1"]
    assert doc["decisions"][0]["stage"] == "N1" and doc["decisions"][0]["scorer"] == "jd"
    assert doc["audit"][0]["payload"]["when"] == "2024-03-02T01:00:00"
    assert doc["meta"] == {"scorer": "jd"}


def test_xml_holds_both_scored_events_and_sleep_stages(tmp_path):
    import xml.etree.ElementTree as ET

    path = export_hypnogram(Hypnogram([W, W, W, N1, U, A], start=START), "xml", tmp_path / "h.xml")
    root = ET.parse(path).getroot()
    assert root.tag == "PSGAnnotation" and root.findtext("EpochLength") == "30"
    events = [(e.findtext("EventType"), e.findtext("EventConcept"), e.findtext("Start"),
               e.findtext("Duration")) for e in root.iter("ScoredEvent")]
    assert events[1:] == [
        ("Stages|Stages", "Wake|0", "0.0", "90.0"),
        ("Stages|Stages", "Stage 1 sleep|1", "90.0", "30.0"),
        ("Stages|Stages", "Unscored|9", "120.0", "30.0"),
        ("Stages|Stages", "Movement|6", "150.0", "30.0"),
    ]
    assert events[0][1] == "Recording Start Time"
    assert [e.text for e in root.find("SleepStages")] == ["0", "0", "0", "1", "9", "6"]


# --- EDF+ -------------------------------------------------------------------------------------
def test_edf_export_is_read_by_pyedflib_and_mne(tmp_path):
    hyp = Hypnogram(short_night(), start=START)
    path = export_hypnogram(hyp, "edf", tmp_path / "night-Hypnogram.edf")
    expected_text = ["Sleep stage W", "Sleep stage 1", "Sleep stage 2", "Sleep stage 3",
                     "Sleep stage R", "Movement time", "Sleep stage W", "Sleep stage ?",
                     "Sleep stage 2"]
    expected_onsets = [s[0] for s in hyp.segments()]
    expected_durations = [s[1] for s in hyp.segments()]

    reader = pyedflib.EdfReader(str(path))
    try:
        assert reader.signals_in_file == 0
        assert reader.getStartdatetime() == START
        onsets, durations, texts = reader.readAnnotations()
    finally:
        reader.close()
    assert list(texts) == expected_text
    assert np.allclose(onsets, expected_onsets) and np.allclose(durations, expected_durations)

    annotations = mne.read_annotations(path)
    assert list(annotations.description) == expected_text
    assert np.allclose(annotations.onset, expected_onsets)
    assert np.allclose(annotations.duration, expected_durations)


SLEEP_EDF_PERIODS = [  # (onset, duration, text) as in Sleep-EDF's *-Hypnogram.edf
    (0.0, 90.0, "Sleep stage W"),
    (90.0, 60.0, "Sleep stage 1"),
    (150.0, 150.0, "Sleep stage 2"),
    (300.0, 30.0, "Sleep stage 3"),
    (330.0, 60.0, "Sleep stage 4"),
    (390.0, 90.0, "Sleep stage R"),
    (480.0, 30.0, "Movement time"),
    (510.0, 30.0, "Sleep stage W"),
    (540.0, 120.0, "Sleep stage ?"),
]
SLEEP_EDF_STAGES = [W] * 3 + [N1] * 2 + [N2] * 5 + [N3] + [N3] * 2 + [R] * 3 + [A] + [W] + [U] * 4


def test_sleep_edf_style_hypnogram_written_by_pyedflib_imports(tmp_path):
    # pyedflib needs a signal beside the annotations for some readers: a 1-Hz dummy one.
    path = write_psg_edf(tmp_path / "SC4001EC-Hypnogram.edf", {"dummy": np.zeros(660)}, fs=1.0,
                         annotations=SLEEP_EDF_PERIODS, start=START)
    hyp = import_hypnogram(path)
    assert hyp.stages == SLEEP_EDF_STAGES
    assert hyp.start == START and hyp.warnings == []
    # onto a study of 20 epochs: the 2 unscored epochs past its end are dropped without a word
    fitted = import_hypnogram(path, n_epochs=20)
    assert fitted.stages == SLEEP_EDF_STAGES[:20] and fitted.warnings == []
    longer = import_hypnogram(path, n_epochs=25)
    assert longer.stages == SLEEP_EDF_STAGES + [U] * 3
    assert any("unscored" in w for w in longer.warnings)
    shorter = import_hypnogram(path, n_epochs=10)
    assert shorter.stages == SLEEP_EDF_STAGES[:10]
    assert any("dropped" in w for w in shorter.warnings)


def test_annotation_only_edf_with_zero_record_duration_imports(tmp_path):
    # Sleep-EDF's hypnogram files declare one data record lasting 0 s and no signal but the
    # annotations; pyedflib refuses such files, so the importer reads the TALs itself.
    path = write_raw_edf(tmp_path / "ST7011JP-Hypnogram.edf", [], record_duration=0.0,
                         annotations=SLEEP_EDF_PERIODS, start=START)
    assert path.read_bytes()[244:252].strip() == b"0"
    hyp = import_hypnogram(path)
    assert hyp.stages == SLEEP_EDF_STAGES and hyp.start == START


def test_mass_style_per_epoch_annotations_off_the_grid_import_with_a_warning(tmp_path):
    # MASS annotation files: one 30-s "Sleep stage" annotation per epoch, starting a few
    # seconds into the recording, among other events.
    labels = ["Sleep stage W", "Sleep stage 1", "Sleep stage 2", "Sleep stage 2", "Sleep stage 3",
              "Sleep stage R", "Sleep stage ?"]
    annotations = [(4.25 + 30 * i, 30.0, text) for i, text in enumerate(labels)]
    annotations.insert(3, (70.0, 0.5, "Arousal"))
    path = write_psg_edf(tmp_path / "01-01-0001 Base.edf", {"dummy": np.zeros(240)}, fs=1.0,
                         annotations=annotations, start=START)
    hyp = import_hypnogram(path, n_epochs=8)
    assert hyp.stages == [W, N1, N2, N2, N3, R, U, U]
    assert any("grid" in w for w in hyp.warnings)
    assert any("Arousal" in w for w in hyp.warnings)


def test_edf_with_an_unknown_sleep_stage_names_the_annotation(tmp_path):
    path = write_psg_edf(tmp_path / "odd.edf", {"dummy": np.zeros(60)}, fs=1.0,
                         annotations=[(0.0, 30.0, "Sleep stage W"), (30.0, 30.0, "Sleep stage X")])
    with pytest.raises(HypnogramFormatError) as error:
        import_hypnogram(path)
    message = assert_one_line_naming(error, path)
    assert "annotation 2" in message and "Sleep stage X" in message


def test_plain_edf_recording_has_no_stages(tmp_path):
    path = write_psg_edf(tmp_path / "psg.edf", {"EEG": np.zeros(300)}, fs=10.0, file_type="EDF")
    with pytest.raises(HypnogramFormatError) as error:
        import_hypnogram(path)
    assert "annotation" in assert_one_line_naming(error, path)


def test_edf_with_a_broken_header_is_refused(tmp_path):
    path = export_hypnogram(Hypnogram(short_night()), "edf", tmp_path / "h.edf")
    patch_header(path, "ns", "x")
    with pytest.raises(HypnogramFormatError) as error:
        import_hypnogram(path)
    assert "header" in assert_one_line_naming(error, path)


# --- XML --------------------------------------------------------------------------------------
NSRR_EVENTS_ONLY = """<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<PSGAnnotation>
<SoftwareVersion>Compumedics</SoftwareVersion>
<EpochLength>30</EpochLength>
<ScoredEvents>
<ScoredEvent><EventType/><EventConcept>Recording Start Time</EventConcept><Start>0</Start>
<Duration>330.0</Duration><ClockTime>00.00.00 22.30.00</ClockTime></ScoredEvent>
<ScoredEvent><EventType>Stages|Stages</EventType><EventConcept>Wake|0</EventConcept>
<Start>0.0</Start><Duration>60.0</Duration></ScoredEvent>
<ScoredEvent><EventType>Arousals|Arousals</EventType><EventConcept>Arousal|Arousal ()</EventConcept>
<Start>45.2</Start><Duration>5.1</Duration></ScoredEvent>
<ScoredEvent><EventType>Stages|Stages</EventType><EventConcept>Stage 1 sleep|1</EventConcept>
<Start>60.0</Start><Duration>30.0</Duration></ScoredEvent>
<ScoredEvent><EventType>Stages|Stages</EventType><EventConcept>Stage 2 sleep|2</EventConcept>
<Start>90.0</Start><Duration>60.0</Duration></ScoredEvent>
<ScoredEvent><EventType>Stages|Stages</EventType><EventConcept>Stage 3 sleep|3</EventConcept>
<Start>150.0</Start><Duration>30.0</Duration></ScoredEvent>
<ScoredEvent><EventType>Stages|Stages</EventType><EventConcept>Stage 4 sleep|4</EventConcept>
<Start>180.0</Start><Duration>30.0</Duration></ScoredEvent>
<ScoredEvent><EventType>Stages|Stages</EventType><EventConcept>REM sleep|5</EventConcept>
<Start>210.0</Start><Duration>60.0</Duration></ScoredEvent>
<ScoredEvent><EventType>Stages|Stages</EventType><EventConcept>Movement|6</EventConcept>
<Start>270.0</Start><Duration>30.0</Duration></ScoredEvent>
<ScoredEvent><EventType>Stages|Stages</EventType><EventConcept>Unscored|9</EventConcept>
<Start>300.0</Start><Duration>30.0</Duration></ScoredEvent>
</ScoredEvents>
</PSGAnnotation>
"""
NSRR_STAGES = [W, W, N1, N2, N2, N3, N3, R, R, A, U]


def test_xml_with_only_scored_events_imports(tmp_path):
    path = tmp_path / "shhs1-200001-nsrr.xml"
    path.write_text(NSRR_EVENTS_ONLY)
    hyp = import_hypnogram(path)
    assert hyp.stages == NSRR_STAGES and hyp.warnings == []


def test_xml_with_only_sleep_stages_imports(tmp_path):
    path = tmp_path / "shhs1-200001-profusion.xml"
    codes = [0, 0, 1, 2, 2, 3, 4, 5, 5, 6, 9]
    path.write_text('<?xml version="1.0"?>\n<CMPStudyConfig><EpochLength>30</EpochLength>'
                    "<SleepStages>" + "".join(f"<SleepStage>{c}</SleepStage>" for c in codes)
                    + "</SleepStages></CMPStudyConfig>")
    assert import_hypnogram(path).stages == NSRR_STAGES


def test_xml_sleep_stages_win_over_scored_events(tmp_path):
    path = tmp_path / "both.xml"
    path.write_text(NSRR_EVENTS_ONLY.replace(
        "</PSGAnnotation>", "<SleepStages>" + "<SleepStage>2</SleepStage>" * 11
        + "</SleepStages></PSGAnnotation>"))
    assert import_hypnogram(path).stages == [N2] * 11


@pytest.mark.parametrize("prolog", [
    '<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;">]>',
    '<!DOCTYPE PSGAnnotation SYSTEM "file:///etc/passwd">',
], ids=["billion laughs", "external DTD"])
def test_xml_declaring_a_dtd_is_refused(tmp_path, prolog):
    path = tmp_path / "evil.xml"
    path.write_text('<?xml version="1.0"?>\n' + prolog + "\n" + NSRR_EVENTS_ONLY.split("\n", 1)[1])
    with pytest.raises(HypnogramFormatError) as error:
        import_hypnogram(path)
    assert "DTD" in assert_one_line_naming(error, path)


def test_xml_with_an_unknown_stage_code_names_the_epoch(tmp_path):
    path = tmp_path / "bad.xml"
    path.write_text("<CMPStudyConfig><SleepStages><SleepStage>0</SleepStage>"
                    "<SleepStage>7</SleepStage></SleepStages></CMPStudyConfig>")
    with pytest.raises(HypnogramFormatError) as error:
        import_hypnogram(path)
    assert "SleepStage 2" in assert_one_line_naming(error, path)


# --- tables -----------------------------------------------------------------------------------
def test_tsv_with_one_row_per_period_imports(tmp_path):
    path = tmp_path / "runs_events.tsv"
    path.write_text("onset\tduration\tstage\n0\t90\tW\n90\t60\tN1\n150\t30\tn/a\n180\t120\tR\n")
    assert import_hypnogram(path).stages == [W, W, W, N1, N1, U, R, R, R, R]


def test_tsv_rows_off_the_grid_land_in_the_epoch_of_their_start_and_warn(tmp_path):
    path = tmp_path / "shifted.tsv"
    path.write_text("onset\tduration\tstage\n12.5\t30\tW\n42.5\t30\tN1\n72.5\t30\tN2\n")
    hyp = import_hypnogram(path)
    assert hyp.stages == [W, N1, N2]
    assert len(hyp.warnings) == 1 and "grid" in hyp.warnings[0]


def test_csv_from_a_spreadsheet_with_semicolons_and_epoch_numbers(tmp_path):
    path = tmp_path / "export.csv"
    path.write_text("Epoch;Stage\n1;Wake\n2;Stage 1\n3;REM\n5;N2\n")
    assert import_hypnogram(path).stages == [W, N1, R, U, N2]


def test_unknown_stage_in_a_table_names_the_line(tmp_path):
    path = tmp_path / "bad.tsv"
    path.write_text("onset\tduration\tstage\n0\t30\tW\n30\t30\tdeep sleep\n")
    with pytest.raises(HypnogramFormatError) as error:
        import_hypnogram(path)
    message = assert_one_line_naming(error, path)
    assert "line 3" in message and "deep sleep" in message


# --- bad input --------------------------------------------------------------------------------
GARBAGE = {
    "binary": bytes(range(256)) * 4,
    "prose": b"Dear doctor,\nplease find the scoring attached.\n",
    "blank": b"\n\n   \n",
    "empty": b"",
}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("kind", GARBAGE)
def test_garbage_gives_one_line_error_naming_the_file(tmp_path, fmt, kind):
    path = tmp_path / f"garbage{SUFFIX[fmt]}"
    path.write_bytes(GARBAGE[kind])
    with pytest.raises(HypnogramFormatError) as error:
        import_hypnogram(path)
    assert_one_line_naming(error, path)


@pytest.mark.parametrize("name, content, words", [
    ("h.json", '{"format": "sleepvlm-ws hypnogram", "version": 1, "stages": ["W", ', "line 1"),
    ("h.json", '{"format": "something else", "stages": []}', "not a sleepvlm-ws hypnogram"),
    ("h.json", '{"format": "sleepvlm-ws hypnogram", "version": 9, "stages": []}', "newer"),
    ("h.json", '{"format": "sleepvlm-ws hypnogram", "version": 1, "stages": ["W", "Q"]}',
     "stages[1]"),
    ("h.xml", "<PSGAnnotation><ScoredEvents>", "not valid XML"),
    ("h.xml", "<PSGAnnotation><EpochLength>30</EpochLength></PSGAnnotation>", "no sleep stages"),
    ("h.csv", "epoch,onset_s,stage\n1,0,W\n2,abc,W\n", "line 3"),
    ("h.tsv", "onset\tduration\n0\t30\n", "stage column"),
    ("h.edf", "0       short", "too short"),
    ("h.txt", "nothing recognisable here", "cannot tell"),
])
def test_broken_files_say_what_is_wrong(tmp_path, name, content, words):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(HypnogramFormatError) as error:
        import_hypnogram(path)
    assert words in assert_one_line_naming(error, path)


def test_missing_file_and_unknown_format_are_one_line_errors(tmp_path):
    missing = tmp_path / "nowhere.xml"
    with pytest.raises(HypnogramFormatError) as error:
        import_hypnogram(missing)
    assert "not found" in assert_one_line_naming(error, missing)
    path = export_hypnogram(Hypnogram([W]), "json", tmp_path / "h.json")
    with pytest.raises(HypnogramFormatError) as error:
        import_hypnogram(path, fmt="docx")
    assert "docx" in assert_one_line_naming(error, path)
    with pytest.raises(HypnogramFormatError):
        export_hypnogram(Hypnogram([W]), "docx", tmp_path / "h.docx")


def test_absurd_durations_are_refused_not_allocated(tmp_path):
    path = tmp_path / "huge.tsv"
    path.write_text("onset\tduration\tstage\n0\t1e12\tW\n")
    with pytest.raises(HypnogramFormatError) as error:
        import_hypnogram(path)
    assert_one_line_naming(error, path)
    assert import_hypnogram(path, n_epochs=3).stages == [W, W, W]  # on a grid, it just fills it


# --- atomic export ----------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", FORMATS)
def test_export_into_a_missing_folder_fails_cleanly(tmp_path, fmt):
    target = tmp_path / "no" / "such" / f"night{SUFFIX[fmt]}"
    with pytest.raises(HypnogramFormatError) as error:
        export_hypnogram(Hypnogram(short_night()), fmt, target)
    assert "does not exist" in assert_one_line_naming(error, target)
    assert list(tmp_path.iterdir()) == []


def test_export_under_a_file_instead_of_a_folder_fails_cleanly(tmp_path):
    blocker = tmp_path / "report.pdf"
    blocker.write_bytes(b"%PDF")
    target = blocker / "night.json"
    with pytest.raises(HypnogramFormatError) as error:
        export_hypnogram(Hypnogram([W]), "json", target)
    assert_one_line_naming(error, target)
    assert blocker.read_bytes() == b"%PDF"


@pytest.mark.skipif(os.name != "posix", reason="needs POSIX folder permissions")
@pytest.mark.parametrize("fmt", FORMATS)
def test_export_into_a_read_only_folder_fails_cleanly(tmp_path, fmt):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    target = folder / f"night{SUFFIX[fmt]}"
    try:
        try:
            (folder / "probe").touch()
        except PermissionError:
            pass
        else:  # root with CAP_DAC_OVERRIDE writes anywhere
            pytest.skip("this user is not bound by folder permissions")
        with pytest.raises(HypnogramFormatError) as error:
            export_hypnogram(Hypnogram(short_night()), fmt, target)
        assert_one_line_naming(error, target)
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o755)


FULL_DISK_SCRIPT = textwrap.dedent("""
    import resource, signal, sys
    from pathlib import Path
    from sleepvlm_ws.core.study.formats import export_hypnogram
    from sleepvlm_ws.core.base.hypnogram import Hypnogram
    from sleepvlm_ws.errors import HypnogramFormatError

    fmt, target = sys.argv[1], Path(sys.argv[2])
    hyp = Hypnogram(["W", "N1", "N2", "N3", "R", "?", "A"] * 200)
    audit = [{"seq": i, "payload": "x" * 200} for i in range(200)]
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))
    try:
        export_hypnogram(hyp, fmt, target, audit=audit)
    except HypnogramFormatError as e:
        print("ERROR", e)
    else:
        print("WROTE")
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses RLIMIT_FSIZE as a full disk")
@pytest.mark.parametrize("fmt", ["json", "edf"])
def test_a_write_that_fails_halfway_keeps_the_old_export_and_leaves_no_part_file(tmp_path, fmt):
    target = tmp_path / f"night{SUFFIX[fmt]}"
    target.write_bytes(b"previous export")
    done = subprocess.run([sys.executable, "-c", FULL_DISK_SCRIPT, fmt, str(target)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ERROR") and str(target) in done.stdout
    assert target.read_bytes() == b"previous export"
    assert list(tmp_path.iterdir()) == [target]

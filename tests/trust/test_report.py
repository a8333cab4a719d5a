"""The PDF study report: a real EDF, a real study with decisions and AI suggestions, the PDF
rendered back with pypdfium2 (pages as pictures, text extracted); the CLI; the GUI actions."""

from __future__ import annotations

import hashlib
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from edf_factory import DEFAULT_START, patch_header, sine, write_psg_edf
from sklearn.metrics import cohen_kappa_score

from sleepvlm_ws.core.base.stages import Stage
from sleepvlm_ws.core.model.answer import format_answer, parse_answer
from sleepvlm_ws.core.model.model_pack import PackManifest, describe_file, write_manifest
from sleepvlm_ws.core.signals.montage import Derivation, Montage
from sleepvlm_ws.core.signals.render import RENDERER_VERSION
from sleepvlm_ws.core.study.study import (AI_ACCEPTED, AI_OVERRIDDEN, IMPORTED, MANUAL, UNDO, Study,
                                          default_study_path)
from sleepvlm_ws.core.study.suggestions import SuggestionKey, SuggestionStore, accept, override
from sleepvlm_ws.core.trust.report import (AI_TRACK_BOX, HYPNOGRAM_BOX, HYPNOGRAM_BOX_ALONE, REPORT_EVENT,
                                           ReportError, write_report)
from sleepvlm_ws.core.trust.report_content import audit_summary, gather, model_card_provenance

pdfium = pytest.importorskip("pypdfium2")

W, N1, N2, N3, R, A, U = (Stage.W, Stage.N1, Stage.N2, Stage.N3, Stage.R, Stage.ARTEFACT,
                          Stage.UNSCORED)
# 120 epochs (one hour): 10 W, 5 N1, 30 N2, 20 N3, 15 R, 3 W, 25 N2, 8 R, 4 W
NIGHT = [W] * 10 + [N1] * 5 + [N2] * 30 + [N3] * 20 + [R] * 15 + [W] * 3 + [N2] * 25 \
    + [R] * 8 + [W] * 4
TST_MIN = (5 + 30 + 20 + 15 + 25 + 8) / 2          # 51.5 min, counted by hand
SE_PCT = 100 * TST_MIN / 60                          # lights off/on: the whole hour
PATIENT = "MCH-0234567 F 02-MAY-1951 Jane_Doe"
RECORDING_ID = "Startdate 01-MAR-2024 PSG-98765 NN Tele03"


def _recording(folder: Path) -> Path:
    rec = write_psg_edf(folder / "jane-night.edf", {"C4": sine(16, 3600, 1.0),
                                                    "M1": sine(16, 3600, 2.0)}, 16)
    patch_header(rec, "patient", PATIENT)
    patch_header(rec, "recording", RECORDING_ID)
    return rec


def _pack(folder: Path, provenance: str) -> tuple[Path, str]:
    """A model pack folder (manifest, card, files; not a runnable model) and its model id."""
    pack = folder / "pack"
    pack.mkdir()
    for name, data in (("lm.gguf", b"lm weights " * 50), ("mmproj.gguf", b"projector"),
                       ("prompt.txt", b"You score sleep.")):
        (pack / name).write_bytes(data)
    (pack / "MODEL_CARD.md").write_text(f"# SleepVLM-test 7\n\nA test pack.\n\n- **Provenance:** "
                                        f"{provenance}\n", encoding="utf-8")
    manifest = PackManifest(name="SleepVLM-test", version="7",
                            files={"lm": describe_file(pack, "lm.gguf"),
                                   "mmproj": describe_file(pack, "mmproj.gguf")},
                            quantisation="Q4_K_M", prompt_file=describe_file(pack, "prompt.txt"),
                            context_size=4096, licence="test", created_by="test",
                            model_card="MODEL_CARD.md")
    write_manifest(manifest, pack)
    return pack, hashlib.sha256((pack / "lm.gguf").read_bytes()).hexdigest()


def _study(folder: Path, *, suggestions: str | None = None, seed: int = 3) -> Study:
    rec = _recording(folder)
    montage = Montage()
    montage.roles["C4-M1"] = Derivation("C4", "M1")
    study = Study.create(default_study_path(rec), recording_path=rec, n_epochs=120,
                         montage=montage, scorer="amy", start_iso=DEFAULT_START.isoformat())
    study.score_many(list(enumerate(NIGHT))[5:], scorer="amy", source=IMPORTED)
    study.record_event("import", {"file": str(folder / "jane.csv")}, actor="amy")
    for e in range(5):
        study.score(e, W, scorer="bob")                 # manual
    study.score(7, N1, scorer="bob")
    study.undo(scorer="bob")                            # epoch 7 back to W (imported)
    if suggestions:
        rng = random.Random(seed)
        store = SuggestionStore(study)
        for e, s in enumerate(NIGHT):
            ai = s if rng.random() < 0.75 else rng.choice([W, N1, N2, N3, R])
            if e == 50:
                ai = N3 if s is not N3 else N2
            store.put(e, parse_answer(format_answer(ai.value, ["N2.1"], None)),
                      SuggestionKey(suggestions, RENDERER_VERSION, "fast"))
        for e in (60, 61):
            sug = store.get(e, SuggestionKey(suggestions, RENDERER_VERSION))
            if sug.stage is NIGHT[e]:                   # accepting keeps the night as drawn
                accept(study, e, sug, "amy")
        sug = store.get(50, SuggestionKey(suggestions, RENDERER_VERSION))
        override(study, 50, NIGHT[50], sug, "amy", note="no delta waves")
    return study


def _pages(path: Path) -> tuple[int, list[str], list[np.ndarray]]:
    pdf = pdfium.PdfDocument(str(path))
    try:
        texts, images = [], []
        for page in pdf:
            texts.append(page.get_textpage().get_text_range())
            images.append(np.asarray(page.render(scale=2.0).to_pil().convert("RGB")))
        return len(pdf), texts, images
    finally:
        pdf.close()


def _trace_at(image: np.ndarray, box, epoch: int, level: int, colour) -> bool:
    """Whether the hypnogram track in ``box`` has ``colour`` ink (a test on RGB pixels) where
    ``epoch`` (of 120, one hour) meets ``level`` (W 4, REM 3, N1 2, N2 1, N3 0): the axes run
    0..1 h across and -0.6..4.6 up."""
    h, w = image.shape[:2]
    left, bottom, width, height = box
    x = int(w * (left + width * (epoch + 0.5) / 120))
    y = int(h * (1 - bottom - height * (level + 0.6) / 5.2))
    patch = image[y - 3:y + 4, x - 2:x + 3].astype(int)
    return bool(colour(patch).any())


def _dark(p):
    return p.sum(axis=2) < 250


def _red(p):
    return (p[..., 0] > 150) & (p[..., 1] < 100) & (p[..., 2] < 100)


def _blue(p):
    return (p[..., 2] > 150) & (p[..., 0] < 120)


def _ai_reference(study: Study, model_id: str) -> list:
    found = SuggestionStore(study).all_for(SuggestionKey(model_id, RENDERER_VERSION))
    return [found[e].stage.value for e in range(120)]


@pytest.fixture
def packed(tmp_path):
    pack, model_id = _pack(tmp_path, "trained on the SleepVLM MASS-SS1 split, converted 2026-01")
    return pack, model_id


def test_report_with_ai_suggestions_shows_statistics_agreement_and_audit(tmp_path, packed):
    pack, model_id = packed
    study = _study(tmp_path, suggestions=model_id)
    out = write_report(study, tmp_path / "report.pdf", author="carol", pack_dirs=[pack])
    n, texts, images = _pages(out)
    assert n == 3
    page1 = texts[0]
    assert f"{TST_MIN:.1f}" in page1 and "Total sleep time (TST)" in page1
    assert f"{SE_PCT:.1f}" in page1
    for identifying in ("Jane Doe", "02-MAY-1951", "MCH-0234567", "PSG-98765", "jane-night.edf"):
        assert identifying in page1
    assert "SleepVLM-test 7 (Q4_K_M)" in page1
    assert "trained on the SleepVLM MASS-SS1 split" in page1    # the card's provenance line
    assert "amy, bob" in page1 and "carol" in page1             # scored by / report by
    # the hypnogram tracks are drawn where the stages are: N3 in the middle of epochs 45-64,
    # a red REM bar over 65-79, nothing at W there; the AI's blue trace at N2 for epoch 50
    page = images[0]
    assert _trace_at(page, HYPNOGRAM_BOX, 55, 0, _dark)
    assert not _trace_at(page, HYPNOGRAM_BOX, 55, 4, _dark)
    assert _trace_at(page, HYPNOGRAM_BOX, 72, 3, _red)
    assert not _trace_at(page, HYPNOGRAM_BOX, 72, 1, _dark)
    assert _trace_at(page, AI_TRACK_BOX, 50, 1, _blue)
    assert not _trace_at(page, AI_TRACK_BOX, 50, 4, _blue)
    # agreement: kappa as sklearn computes it over all 120 epochs
    final_stages = [s.value for s in study.stages()]
    kappa = cohen_kappa_score(final_stages, _ai_reference(study, model_id))
    assert f"Cohen's kappa: {kappa:.3f}" in texts[1]
    assert "Epochs compared: 120" in texts[1]
    # audit page: counts read from the decisions
    audit = texts[2]
    assert "Manual decisions 6" in audit and "Decisions undone 1" in audit
    assert "Overridden AI suggestions 1" in audit and "of which with a note 1" in audit
    assert "Hypnogram imports 1" in audit and "intact" in audit
    events = [e for e in study.audit_events() if e.kind == REPORT_EVENT]
    assert len(events) == 1 and events[0].payload["pages"] == 3 and events[0].actor == "carol"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")] == []
    study.close()


def test_deidentified_report_leaves_out_patient_and_recording(tmp_path, packed):
    pack, model_id = packed
    study = _study(tmp_path, suggestions=model_id)
    out = write_report(study, tmp_path / "anon.pdf", author="carol", deidentify=True,
                       pack_dirs=[pack])
    _n, texts, _images = _pages(out)
    everything = "\n".join(texts)
    for identifying in ("Jane", "Doe", "1951", "MCH-0234567", "PSG-98765", "jane-night",
                        study.meta["study_id"][:12], "2024", "22:30"):
        assert identifying not in everything, identifying
    assert "de-identified" in everything and f"{TST_MIN:.1f}" in everything
    assert "hours from the recording start" in texts[0]
    study.close()


def test_report_without_suggestions_or_scores(tmp_path):
    study = _study(tmp_path)
    out = write_report(study, tmp_path / "plain.pdf", author="amy")
    n, texts, images = _pages(out)
    assert n == 2 and "kappa" not in "\n".join(texts) and f"{TST_MIN:.1f}" in texts[0]
    assert _trace_at(images[0], HYPNOGRAM_BOX_ALONE, 30, 1, _dark)       # N2
    assert _trace_at(images[0], HYPNOGRAM_BOX_ALONE, 110, 3, _red)       # REM
    assert not _trace_at(images[0], HYPNOGRAM_BOX_ALONE, 30, 4, _dark)
    study.close()
    montage = Montage()
    empty = Study.create(tmp_path / "empty.sleepvlm", recording_path=tmp_path / "gone.edf",
                         n_epochs=20, montage=montage, scorer="amy")
    n, texts, _ = _pages(write_report(empty, tmp_path / "empty.pdf", author="amy"))
    assert n == 2 and "No epoch is scored yet" in texts[0]
    empty.close()


def test_a_partly_scored_night_reports_its_whole_time_in_bed_and_marks_what_would_change(tmp_path):
    """6 of 120 epochs scored: lights off/on are the recording's, TIB the whole hour, and every
    figure unscored epochs would change is marked provisional (the lights and TIB are not)."""
    rec = _recording(tmp_path)
    montage = Montage()
    montage.roles["C4-M1"] = Derivation("C4", "M1")
    study = Study.create(tmp_path / "part.sleepvlm", recording_path=rec, n_epochs=120,
                         montage=montage, scorer="amy")
    for epoch, stage in zip(range(40, 46), (Stage.W, Stage.N1, Stage.N2, Stage.N2, Stage.N2, Stage.N2)):
        study.score(epoch, stage, scorer="amy")
    content = gather(study, author="amy")
    stats = content.statistics
    assert (stats.lights_off, stats.lights_on, stats.tib_min) == (0, 120, 60.0)
    assert stats.provisional and stats.unscored_epochs == 114
    text = _pages(write_report(study, tmp_path / "part.pdf", author="amy"))[1][0]
    assert "* provisional: 114 of 120 epochs from lights off to on are unscored" in text
    assert "Total sleep time (TST) *" in text and "Sleep efficiency (TST/TIB) *" in text
    assert "Time in bed (TIB) *" not in text and "Time in bed (TIB)" in text
    assert "the recording's start and end unless given" in text
    study.close()


def test_lights_and_bad_targets_are_one_line_errors(tmp_path):
    study = _study(tmp_path)
    out = write_report(study, tmp_path / "lights.pdf", author="amy", lights_off=10,
                       lights_on=100)
    text = _pages(out)[1][0]
    assert "22:35:00" in text and "45.0" in text        # TIB: 90 epochs
    with pytest.raises(ReportError, match="lights off"):
        write_report(study, tmp_path / "x.pdf", author="amy", lights_on=500)
    with pytest.raises(ReportError, match="does not exist"):
        write_report(study, tmp_path / "nowhere" / "x.pdf", author="amy")
    with pytest.raises(ReportError, match=r"\.pdf"):
        write_report(study, tmp_path / "x.txt", author="amy")
    study.close()


def test_a_failed_write_leaves_the_previous_report_whole(tmp_path, monkeypatch):
    from sleepvlm_ws.core.trust import report

    study = _study(tmp_path)
    out = write_report(study, tmp_path / "r.pdf", author="amy")
    before = out.read_bytes()

    def disk_full(content, path):        # fault injection: half a file, then the disk is full
        Path(path).write_bytes(b"%PDF-1.4 half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(report, "render_pdf", disk_full)
    with pytest.raises(ReportError, match="No space left"):
        write_report(study, out, author="amy")
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix in (".pdf", ".part")) == ["r.pdf"]
    study.close()


def test_audit_summary_counts_and_final_sources(tmp_path):
    study = _study(tmp_path, suggestions="c" * 64, seed=5)
    s = audit_summary(study)
    decisions = study.decisions()
    assert s.decisions_by_source[MANUAL] == 6 and s.decisions_by_source[UNDO] == 1
    assert s.decisions_by_source[IMPORTED] == 115 and s.undone == 1
    assert s.decisions_by_source[AI_OVERRIDDEN] == 1 == s.overrides_with_note
    accepted = sum(1 for d in decisions if d.source == AI_ACCEPTED)
    assert s.decisions_by_source[AI_ACCEPTED] == accepted
    # epochs 0-4 manual, 50 overridden, accepted ones; the undone epoch 7 is imported again
    assert s.final_source == {MANUAL: 5, AI_OVERRIDDEN: 1, AI_ACCEPTED: accepted,
                              IMPORTED: 120 - 6 - accepted}
    assert s.chain_ok and s.imports == 1
    study.close()


def test_model_card_provenance_line():
    assert model_card_provenance("# X\n\n- **Provenance:** from A, converted B\n") == \
        "from A, converted B"
    assert model_card_provenance("# X\nprovenance: here\n") == "here"
    assert model_card_provenance("# X 1\n\nA stub card.\n\n## Licence\nMIT\n") == "A stub card."
    assert model_card_provenance("# only a title\n") is None


# ---------------------------------------------------------------------------------- CLI
def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sleepvlm_ws.cli", *args],
                          capture_output=True, text=True, timeout=120)


def test_cli_report(tmp_path):
    study = _study(tmp_path)
    path = study.path
    study.close()
    proc = _cli("report", str(path), "--out", str(tmp_path / "cli.pdf"), "--deidentify",
                "--lights-off", "3", "--lights-on", "110")
    assert proc.returncode == 0, proc.stderr
    n, texts, _ = _pages(tmp_path / "cli.pdf")
    assert n == 2 and "Jane" not in texts[0] and "epoch 3" in texts[0] and "epoch 111" in texts[0]
    for args in (("report", str(tmp_path / "missing.sleepvlm"), "--out", str(tmp_path / "m.pdf")),
                 ("report", str(tmp_path / "missing.edf"), "--out", str(tmp_path / "m.pdf"))):
        proc = _cli(*args)
        assert proc.returncode == 2
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and Path(args[1]).name in lines[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "m.pdf").exists()
    proc = _cli("report", str(tmp_path / "jane-night.edf"), "--out", str(tmp_path / "r.pdf"))
    assert proc.returncode == 0, proc.stderr          # the recording stands for its study


# ---------------------------------------------------------------------------------- GUI
@pytest.fixture
def user_home(tmp_path, monkeypatch):
    monkeypatch.setenv("SLEEPVLM_WS_HOME", str(tmp_path / "home"))


def test_gui_agreement_dialog_and_report_actions(qtbot, tmp_path, user_home, errors, monkeypatch):
    from gui import open_window
    from PySide6.QtWidgets import QFileDialog

    from sleepvlm_ws.ui.agreement_dialog import NO_SUGGESTIONS

    study = _study(tmp_path)
    study.close()
    window = open_window(qtbot, tmp_path / "jane-night.edf")
    assert window.session.study.path == default_study_path(tmp_path / "jane-night.edf")
    window.menu_actions["agreement"].trigger()
    assert errors == [NO_SUGGESTIONS]

    store = SuggestionStore(window.session.study)
    ai = [R if s is N2 and e % 4 == 0 else s for e, s in enumerate(NIGHT)]
    for e, s in enumerate(ai):
        store.put(e, parse_answer(format_answer(s.value, ["R.1"], None)),
                  SuggestionKey("d" * 64, RENDERER_VERSION, "fast"))
    window.menu_actions["agreement"].trigger()
    dialog = window.agreement_dialog
    assert dialog.isVisible()
    finals = [s.value for s in window.session.study.stages()]
    kappa = cohen_kappa_score(finals, [s.value for s in ai])
    assert f"Cohen's kappa: {kappa:.3f}" in dialog.summary.text()
    confusion = [[int(dialog.confusion.item(i, j).text()) for j in range(5)] for i in range(5)]
    assert confusion[2][4] == sum(1 for f, a in zip(finals, ai) if f == "N2" and a is R) > 0
    assert confusion[4][4] == 23
    assert dialog.per_stage.item(4, 0).text() == "100.0%"           # REM recall
    qtbot.waitExposed(dialog)
    assert dialog.confusion.horizontalScrollBar().maximum() == 0     # the whole matrix in view
    dialog.close()

    # Study > Sleep statistics: the report's figures in a dialog
    window.menu_actions["statistics"].trigger()
    stats = window.statistics_dialog
    assert stats.isVisible() and not stats.warning.isVisible()       # every epoch is scored
    text = stats.text()
    assert f"Total sleep time (TST): {TST_MIN:.1f} min" in text and "Time in bed (TIB): 60.0 min" in text
    stats.close()

    target = tmp_path / "gui-report"
    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        staticmethod(lambda *a, **k: (str(target), REPORT_FILTER_USED)))
    window.menu_actions["report"].trigger()
    n, texts, _ = _pages(target.with_suffix(".pdf"))
    assert n == 3 and "Jane Doe" in texts[0] and f"{kappa:.3f}" in texts[1]
    window.menu_actions["report_deid"].trigger()                     # same name: replaced
    n, texts, _ = _pages(target.with_suffix(".pdf"))
    assert n == 3 and "Jane" not in texts[0]
    assert errors == [NO_SUGGESTIONS]
    window.close()


REPORT_FILTER_USED = "PDF report (*.pdf)"


def test_core_report_modules_draw_without_qt(tmp_path):
    """Rendering the report (matplotlib figures, no pyplot) pulls in no Qt binding."""
    study = _study(tmp_path)
    path = study.path
    study.close()
    code = ("import sys; from sleepvlm_ws.core.study.study import Study; "
            "from sleepvlm_ws.core.trust import agreement, sleep_statistics; "
            "from sleepvlm_ws.core.trust.report import write_report; "
            f"s = Study.open({str(path)!r}); "
            f"write_report(s, {str(tmp_path / 'noqt.pdf')!r}, author='amy'); s.close(); "
            "bad = [m for m in sys.modules if m.startswith(('PySide6', 'pyqtgraph', 'PyQt'))]; "
            "assert not bad, bad; "
            "assert 'matplotlib.pyplot' not in sys.modules")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "noqt.pdf").stat().st_size > 1000

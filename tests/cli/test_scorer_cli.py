"""``sleepvlm-ws scorers``, run as a user runs it: import other scorers' hypnograms into a study,
compare them, adjudicate a tie; bad input is one line and exit 2, the study unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_cli import STAGES, one_line_error, run

from sleepvlm_ws.core.base.hypnogram import Hypnogram
from sleepvlm_ws.core.base.stages import Stage
from sleepvlm_ws.core.study import audit_verify
from sleepvlm_ws.core.study.formats import export_hypnogram
from sleepvlm_ws.core.study.scorings import SCORING_IMPORTED
from sleepvlm_ws.core.study.study import Study, default_study_path
from sleepvlm_ws.core.synth import generate_night, write_night_edf


@pytest.fixture()
def study(tmp_path) -> Path:
    rec = tmp_path / "night.edf"
    write_night_edf(generate_night(seed=11, fs=128.0, stages=STAGES), rec)
    assert run("--scorer", "amy", "import", str(rec), str(rec)).returncode == 0   # amy's own scoring
    return default_study_path(rec)


def _file(tmp_path: Path, name: str, changes: dict[int, Stage], fmt: str = "csv") -> Path:
    stages = list(STAGES)
    for epoch, stage in changes.items():
        stages[epoch] = stage
    return export_hypnogram(Hypnogram(stages), fmt, tmp_path / f"{name}.{fmt}")


def test_import_compare_and_adjudicate(study, tmp_path):
    bob = _file(tmp_path, "bob", {3: Stage.N2, 10: Stage.N2})          # STAGES[3] is N1, [10] N3
    cho = _file(tmp_path, "cho", {3: Stage.N2, 10: Stage.R}, fmt="xml")
    for name, path in (("bob", bob), ("cho", cho)):
        proc = run("--scorer", "amy", "scorers", "import", str(study), str(path), "--name", name)
        assert proc.returncode == 0 and f"scorer '{name}' imported" in proc.stdout, proc.stderr
    proc = run("scorers", "compare", str(study))
    assert proc.returncode == 0, proc.stderr
    assert "3 scorings of 20 epochs: study, bob, cho" in proc.stdout
    assert "Fleiss' kappa" in proc.stdout and "study / bob" in proc.stdout
    assert "epoch 4: N1 (study), N2 (bob, cho)" in proc.stdout
    assert "epoch 11: N3 (study), N2 (bob), R (cho)" in proc.stdout
    assert "Consensus: 1 tied epoch(s), 1 waiting for adjudication" in proc.stdout
    doc = json.loads(run("scorers", "compare", str(study), "--json").stdout)
    assert doc["differing_epochs"] == [3, 10] and doc["consensus"]["unsettled"] == [10]

    proc = run("--scorer", "dan", "scorers", "adjudicate", str(study), "11", "N3", "--note", "delta > 20 %")
    assert proc.returncode == 0 and "epoch 11 adjudicated N3 (tied N2, N3, R)" in proc.stdout, proc.stderr
    doc = json.loads(run("scorers", "compare", str(study), "--json").stdout)
    assert doc["consensus"]["unsettled"] == [] and doc["consensus"]["adjudicated"] == [10]
    assert audit_verify.verify(study).ok
    with Study.open(study) as s:
        imports = [e for e in s.audit_events() if e.kind == SCORING_IMPORTED]
        assert [e.payload["source"] for e in imports] == ["bob.csv", "cho.xml"]
        assert s.stages() == STAGES                       # amy's own scoring untouched


def test_bad_scorer_input_is_one_line_and_changes_nothing(study, tmp_path):
    bob = _file(tmp_path, "bob", {3: Stage.N2})
    assert run("scorers", "import", str(study), str(bob), "--name", "bob").returncode == 0
    with Study.open(study) as s:
        before = s.audit_events()
    junk = tmp_path / "junk.csv"
    junk.write_text("not,a\nhypnogram,at all\n")
    one_line_error(run("scorers", "import", str(study), str(junk), "--name", "eve"), "junk.csv")
    one_line_error(run("scorers", "import", str(study), str(bob), "--name", "bob"), "already has a scoring")
    one_line_error(run("scorers", "import", str(study), str(tmp_path / "none.csv"), "--name", "x"), "none.csv")
    one_line_error(run("scorers", "adjudicate", str(study), "5", "N2"), "not tied")
    one_line_error(run("scorers", "adjudicate", str(study), "99", "N2"), "outside the study")
    one_line_error(run("scorers", "adjudicate", str(study), "4", "deep"), "not a stage")
    one_line_error(run("scorers", "compare", str(tmp_path / "none.sleepvlm")), "none.sleepvlm")
    with Study.open(study) as s:
        assert s.audit_events() == before

"""The rule catalogue (resources/rules/aasm-rules.json) against the spec's rule table."""

from __future__ import annotations

import json

import pytest

from sleepvlm_ws.core.base import rules as rules_module
from sleepvlm_ws.core.base.rules import Rule, load_rules, read_rules_file, rule_fits_stage, rule_ids
from sleepvlm_ws.core.base.stages import SLEEP_STAGES, Stage
from sleepvlm_ws.errors import InputError
from sleepvlm_ws.paths import resources_dir

SPEC_IDS = "W.1 W.2 W.3 N1.1 N1.2 N2.1 N2.2 N2.3 N2.4 N3.1 R.1 R.2 R.3 MBM.1 MBM.2".split()
ALL = set(SLEEP_STAGES)
W, N1, N2, N3, R = SLEEP_STAGES

# (scored stage, stages it may accompany) straight from the spec table
SPEC_TABLE = {
    "W.1": (W, {W}), "W.2": (W, {W}), "W.3": (W, {W}),
    "N1.1": (N1, {N1}), "N1.2": (N1, {N1}),
    "N2.1": (N2, {N2}), "N2.2": (N2, {N2}), "N2.3": (N2, {N2}), "N2.4": (None, {W, N1, N3, R}),
    "N3.1": (N3, {N3}),
    "R.1": (R, {R}), "R.2": (R, {R}), "R.3": (None, {W, N1, N2, N3}),
    "MBM.1": (W, {W}), "MBM.2": (None, ALL),
}


def test_catalogue_file_is_in_resources():
    path = resources_dir() / "rules" / "aasm-rules.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    assert [entry["id"] for entry in data["rules"]] == SPEC_IDS


def test_the_fifteen_ids_in_spec_order():
    assert list(load_rules()) == SPEC_IDS
    assert rule_ids() == SPEC_IDS


@pytest.mark.parametrize("rule_id", SPEC_IDS)
def test_rule_matches_spec_table(rule_id):
    rule = load_rules()[rule_id]
    stage, accompany = SPEC_TABLE[rule_id]
    assert rule.id == rule_id
    assert rule.stage is stage
    assert set(rule.may_accompany) == accompany
    assert rule.title.strip() and rule.text.strip() and rule.evidence.strip()
    for other in SLEEP_STAGES:
        assert rule_fits_stage(rule_id, other) == (other in accompany)
        assert rule_fits_stage(rule_id, other.value) == (other in accompany)


def test_end_and_as_next_rules():
    rules = load_rules()
    assert (rules["N2.4"].stage, rules["N2.4"].ends, rules["N2.4"].as_next) == (None, Stage.N2, False)
    assert (rules["R.3"].stage, rules["R.3"].ends, rules["R.3"].as_next) == (None, Stage.R, False)
    assert (rules["MBM.2"].stage, rules["MBM.2"].ends, rules["MBM.2"].as_next) == (None, None, True)
    assert [r.id for r in rules.values() if r.ends is not None or r.as_next] == ["N2.4", "R.3", "MBM.2"]


def test_neighbour_dependent_rules():
    neighbour_rules = {r.id for r in load_rules().values() if r.depends_on_neighbours}
    assert neighbour_rules == {"N2.2", "N2.3", "R.2", "MBM.2"}


def test_evidence_carries_the_measurable_thresholds():
    rules = load_rules()
    assert "8-13 Hz" in rules["W.1"].evidence and "0.5" in rules["W.1"].evidence
    assert "0-15 s" in rules["N2.1"].evidence and "15-30 s" in rules["N2.1"].evidence
    assert "75 uV" in rules["N3.1"].evidence and "6" in rules["N3.1"].evidence
    assert "15 s" in rules["MBM.1"].evidence and "15 s" in rules["MBM.2"].evidence


@pytest.mark.parametrize("rule_id, stage", [
    ("N2.4", "N2"), ("R.3", Stage.R), ("W.1", Stage.UNSCORED), ("W.1", Stage.ARTEFACT), ("W.1", "?"),
    ("W.1", "w"), ("W.1", "Wake"), ("W.1", None), ("W.1", 0), ("X.9", "W"), ("w.1", "W"), (None, "W"),
])
def test_rule_fits_stage_refuses(rule_id, stage):
    assert rule_fits_stage(rule_id, stage) is False


def test_load_rules_is_cached_and_a_fresh_dict_each_time():
    first = load_rules()
    first.pop("W.1")
    second = load_rules()
    assert "W.1" in second and second["W.1"] is load_rules()["W.1"]
    assert rules_module._bundled_rules.cache_info().currsize == 1
    with pytest.raises(Exception):
        second["W.1"].stage = Stage.R  # rules are frozen


def _write(tmp_path, payload) -> str:
    path = tmp_path / "rules.json"
    path.write_text(payload if isinstance(payload, str) else json.dumps(payload), encoding="utf-8")
    return path


def _entry(**changes):
    entry = {"id": "Q.1", "stage": "N2", "ends": None, "as_next": False, "may_accompany": ["N2"],
             "title": "t", "text": "x", "evidence": "e", "depends_on_neighbours": False}
    entry.update(changes)
    return entry


def test_read_rules_file_reads_a_pack_catalogue(tmp_path):
    rules = read_rules_file(_write(tmp_path, {"rules": [_entry(), _entry(id="Q.2", stage=None, ends="N2",
                                                                         may_accompany=["W", "N1"])]}))
    assert list(rules) == ["Q.1", "Q.2"]
    assert isinstance(rules["Q.2"], Rule) and rules["Q.2"].ends is Stage.N2
    assert rules["Q.2"].fits("N1") and not rules["Q.2"].fits("N2")


@pytest.mark.parametrize("payload, problem", [
    ("{not json", "cannot read rule catalogue"),
    ({"rules": []}, "no 'rules' list"),
    ([1, 2], "no 'rules' list"),
    ({"rules": [_entry(), _entry()]}, "listed twice"),
    ({"rules": [_entry(stage="N4")]}, "bad rule entry"),
    ({"rules": [_entry(may_accompany=["N2", "?"])]}, "bad rule entry"),
    ({"rules": [_entry(may_accompany=["W"])]}, "does not accompany its own stage"),
    ({"rules": [_entry(may_accompany=[])]}, "may accompany no stage"),
    ({"rules": [_entry(stage=None, ends="N2", may_accompany=["N2"])]}, "ends N2 but may accompany it"),
    ({"rules": [{"id": "Q.1"}]}, "bad rule entry"),
    ({"rules": ["W.1"]}, "bad rule entry"),
])
def test_bad_catalogue_is_one_line_naming_the_file(tmp_path, payload, problem):
    path = _write(tmp_path, payload)
    with pytest.raises(InputError) as info:
        read_rules_file(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message and problem in message


def test_missing_catalogue_file(tmp_path):
    with pytest.raises(InputError, match="cannot read rule catalogue"):
        read_rules_file(tmp_path / "absent.json")

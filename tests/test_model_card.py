"""What the workstation reads from a model card: the whole provenance sentence and the real-data
figures, whatever the line breaks (shown in the AI panel and the PDF report)."""

from __future__ import annotations

import shutil
from pathlib import Path

from sleepvlm_ws.core.trust.report_content import (model_card_provenance, model_card_real_data,
                                                   pack_card_summary)

ROOT = Path(__file__).resolve().parents[1]
CARD = """# some model 1

Provenance: trained by us on generated PSG made by
the workstation itself; not validated on
real patients.

Real data: kappa 0.49 on three real excerpts,
below YASA's 0.66.

## Training
Provenance: a later line that is not the card's provenance.
"""


def test_provenance_and_real_data_span_their_line_breaks():
    assert model_card_provenance(CARD) == ("trained by us on generated PSG made by the workstation "
                                           "itself; not validated on real patients.")
    assert model_card_real_data(CARD) == "kappa 0.49 on three real excerpts, below YASA's 0.66."
    assert model_card_real_data("# x\n\nProvenance: a\n") is None


def test_the_default_pack_card_states_its_real_figures(tmp_path):
    provenance, real = pack_card_summary(ROOT / "models" / "default")
    assert provenance.endswith("not validated on real patients.")
    assert "DREAMS" in real and "YASA" in real
    copy = tmp_path / "pack"
    shutil.copytree(ROOT / "models" / "default", copy)
    (copy / "MODEL_CARD.md").unlink()
    assert pack_card_summary(copy) == (None, None)
    assert pack_card_summary(tmp_path / "missing") == (None, None)

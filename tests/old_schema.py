"""Writing a study as an older workstation did: ``Study.create`` writes schema ``version`` and
opening it leaves it there, so the upgrade tests start from a real file of that version."""

from __future__ import annotations

from contextlib import contextmanager

from sleepvlm_ws.core.study import study, study_rows, study_schema


@contextmanager
def schema_version(monkeypatch, version: int):
    """Within the block, new studies are written (and opened) at schema ``version``."""
    with monkeypatch.context() as m:
        m.setattr(study, "SCHEMA_VERSION", version)             # opening does not upgrade it
        m.setattr(study_rows, "SCHEMA_VERSION", version)        # writing says that version
        m.setattr(study_rows, "create_schema", lambda conn: study_schema.create_schema(conn, version))
        yield

"""Shadow scores through PostgreSQL's COPY path of ``write_results`` (the bulk path SQLite never takes)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from common.db import Database
from common.schemas import ResultMessage

pytestmark = pytest.mark.postgres

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_shadow_scores_and_their_absence_survive_the_copy_path(pg_url: str) -> None:
    db = Database.from_url(pg_url)
    try:
        db.upgrade()
        base = dict(store_id="s", camera_id="cam", captured_at=T0, start_at=T0, source_start_s=0, source_end_s=4,
                    probability=0.2, threshold=0.5, model_version="act-1", inferred_at=T0)
        written = db.write_results([
            ResultMessage(clip_id="with", shadow_probability=0.8, shadow_model_version="cand\t2", **base),
            ResultMessage(clip_id="without", **base),
        ])
        assert written == 2
        rows = {r.clip_id: r for r in db.results()}
        assert (rows["with"].shadow_probability, rows["with"].shadow_model_version) == (0.8, "cand\t2")
        assert (rows["without"].shadow_probability, rows["without"].shadow_model_version) == (None, None)
    finally:
        db.close()

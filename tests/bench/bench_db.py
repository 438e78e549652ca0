"""Database write benchmark: result rows per second through ``Database.write_results``.

Writes N synthetic clip results (50 000; quick: 5 000) in batches of ``database.write_batch_size`` (500)
into a fresh schema (``Database.upgrade``), once on PostgreSQL (a throw-away server from
``tests/integration/servers.py``) and once on SQLite (a file in a temporary directory), and reports
rows/s including building the rows, the insert-ignore statement and the commit (what the inference
worker pays per batch).  The target is 10 000 rows/s on PostgreSQL.

On PostgreSQL ``write_results`` uses ``COPY`` into a session-local staging table, then one ``INSERT ...
SELECT ... ON CONFLICT DO NOTHING RETURNING`` per batch.  For reference it also times, interleaved chunk by
chunk (so both see the same load on a shared machine), the generic multi-row ``INSERT ... VALUES``
path (``values_insert_baseline``).  Also: a re-write of already-stored rows (the
redelivery case: every row conflicts) and batches of ``inference.max_batch_size`` (32), what one
inference worker writes per model batch.

Note: the harness's PostgreSQL runs with ``fsync=off`` and ``synchronous_commit=off``, so these numbers
are an upper bound for a server with durable commits; batching is what keeps commit cost per row small.

``run(quick=False) -> dict``; ``python3 -m tests.bench.bench_db [--quick]`` prints it as JSON.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from common.db import Database  # noqa: E402
from common.schemas import ResultMessage  # noqa: E402
from common.settings import DatabaseSettings, InferenceSettings  # noqa: E402
from tests.integration.servers import PostgresServer  # noqa: E402

TARGET_ROWS_PER_S = 10_000
STORE_ID = "bench-store"
CAMERAS = 16


def make_results(n: int, offset: int = 0) -> list[ResultMessage]:
    """``n`` distinct, valid result messages spread over ``CAMERAS`` cameras, one clip per second each."""
    base = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)
    out = []
    for i in range(offset, offset + n):
        camera = f"cam-{i % CAMERAS:02d}"
        captured = base + timedelta(seconds=i // CAMERAS)
        out.append(
            ResultMessage(
                clip_id=f"bench-{i:09d}",
                store_id=STORE_ID,
                camera_id=camera,
                captured_at=captured,
                start_at=captured - timedelta(seconds=4),
                source_start_s=float(i // CAMERAS),
                source_end_s=float(i // CAMERAS) + 4.0,
                probability=(i % 100) / 100.0,
                threshold=0.7,
                model_version="bench",
                snapshot_path=f"/evidence/{camera}/{i}.jpg",
                inferred_at=captured + timedelta(milliseconds=300),
            )
        )
    return out


def _batches(items: list[ResultMessage], size: int) -> list[list[ResultMessage]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def time_write_results(db: Database, results: list[ResultMessage], batch_size: int) -> tuple[float, int]:
    """Seconds to write every batch through ``Database.write_results``, and how many rows were new."""
    written = 0
    started = time.perf_counter()
    for batch in _batches(results, batch_size):
        written += db.write_results(batch)
    return time.perf_counter() - started, written


def time_values_insert(db: Database, results: list[ResultMessage], batch_size: int) -> tuple[float, int]:
    """Seconds (and new rows) for the same batches through the generic multi-row ``INSERT ... VALUES ...
    ON CONFLICT DO NOTHING`` path, which ``write_results`` used on PostgreSQL before it moved to COPY."""
    from common.models import ClipResult

    written = 0
    started = time.perf_counter()
    for batch in _batches(results, batch_size):
        written += db._insert_ignore(ClipResult.__table__, Database.result_rows(batch), "clip_id")
    return time.perf_counter() - started, written


def _prepare(db: Database) -> None:
    from sqlalchemy import text

    db.upgrade()
    empty = "TRUNCATE clip_results" if db.dialect == "postgresql" else "DELETE FROM clip_results"
    with db.engine.begin() as connection:  # no dead tuples left behind (the harness runs without autovacuum)
        connection.execute(text(empty))


CHUNKS = 5  # rows are written in this many chunks, alternating the paths compared (fair under shared load)


def _rate(rows: int, seconds: float) -> int:
    return round(rows / seconds) if seconds > 0 else 0


def _backend(db: Database, results: list[ResultMessage], batch_size: int, with_baseline: bool = False) -> dict:
    """Write ``results`` through ``write_results`` (and, with ``with_baseline``, the generic VALUES path on other ids)."""
    _prepare(db)
    db.write_results(make_results(batch_size, offset=10_000_000))  # warm-up: connection, statement caches
    if with_baseline:
        time_values_insert(db, make_results(batch_size, offset=11_000_000), batch_size)
    base_results = make_results(len(results), offset=30_000_000) if with_baseline else []
    chunk = -(-len(results) // CHUNKS)
    seconds = base_seconds = 0.0
    written = base_written = 0
    chunk_rates, base_chunk_rates = [], []
    for start in range(0, len(results), chunk):
        part = results[start : start + chunk]
        s, w = time_write_results(db, part, batch_size)
        seconds, written = seconds + s, written + w
        chunk_rates.append(_rate(len(part), s))
        if with_baseline:
            s, w = time_values_insert(db, base_results[start : start + chunk], batch_size)
            base_seconds, base_written = base_seconds + s, base_written + w
            base_chunk_rates.append(_rate(len(part), s))
    rewrite_n = min(len(results), 5 * batch_size)
    rewrite_s, rewritten = time_write_results(db, results[:rewrite_n], batch_size)
    # What one inference worker writes per model batch (inference.max_batch_size rows at most).
    small = make_results(min(len(results), 10_000), offset=20_000_000)
    small_batch = InferenceSettings().max_batch_size
    small_s, _ = time_write_results(db, small, small_batch)
    section = {
        "rows": len(results),
        "rows_written": written,
        "seconds": round(seconds, 3),
        "rows_per_s": _rate(len(results), seconds),
        "best_chunk_rows_per_s": max(chunk_rates),
        "ms_per_batch": round(seconds / -(-len(results) // batch_size) * 1e3, 2),
        "redelivered_rows_per_s": _rate(rewrite_n, rewrite_s),
        "redelivered_rows_new": rewritten,
        f"rows_per_s_batches_of_{small_batch}": _rate(len(small), small_s),
    }
    if with_baseline:
        rebase_s, rebased = time_values_insert(db, base_results[: 5 * batch_size], batch_size)
        section["values_insert_baseline"] = {
            "rows_per_s": _rate(len(base_results), base_seconds),
            "best_chunk_rows_per_s": max(base_chunk_rates),
            "rows_written": base_written,
            "ms_per_batch": round(base_seconds / -(-len(results) // batch_size) * 1e3, 2),
            "redelivered_rows_per_s": _rate(5 * batch_size, rebase_s),
            "redelivered_rows_new": rebased,
            "write_results_speedup": round(base_seconds / seconds, 2),
        }
    return section


def _insert_mode(db: Database) -> str:
    dialect = db.engine.dialect
    use = getattr(dialect, "use_insertmanyvalues", False)
    page = getattr(dialect, "insertmanyvalues_page_size", None)
    return f"insertmanyvalues (page size {page})" if use else "executemany"


def run(quick: bool = False) -> dict:
    """Rows/s through ``Database.write_results`` on PostgreSQL and SQLite, batches of write_batch_size."""
    n_rows = 5_000 if quick else 50_000
    batch_size = DatabaseSettings().write_batch_size
    results = make_results(n_rows)

    report: dict = {"rows": n_rows, "batch_size": batch_size, "target_rows_per_s": TARGET_ROWS_PER_S}

    with tempfile.TemporaryDirectory(prefix="aislewatch-bench-db-") as tmp:
        sqlite_db = Database.from_url(f"sqlite:///{Path(tmp) / 'bench.db'}")
        try:
            report["sqlite"] = _backend(sqlite_db, results, batch_size)
            report["sqlite"]["insert_mode"] = _insert_mode(sqlite_db)
        finally:
            sqlite_db.close()

    server = PostgresServer()
    try:
        server.start()
        url = server.new_database(prefix="bench")
        pg = Database.from_url(url)
        try:
            section = _backend(pg, results, batch_size, with_baseline=True)
            section["insert_mode"] = _insert_mode(pg)
            section["server_version"] = ".".join(map(str, pg.engine.dialect.server_version_info or ()))
            section["server_settings"] = "fsync=off, synchronous_commit=off (test harness)"
            report["postgres"] = section
        finally:
            pg.close()
            server.drop_database(url)
    finally:
        server.close()

    report["rows_per_s"] = report["postgres"]["rows_per_s"]
    report["sqlite_rows_per_s"] = report["sqlite"]["rows_per_s"]
    report["target_met"] = report["rows_per_s"] >= TARGET_ROWS_PER_S
    report["values_insert_rows_per_s"] = report["postgres"]["values_insert_baseline"]["rows_per_s"]
    report["load_average"] = [round(x, 2) for x in os.getloadavg()]
    report["cpu_count"] = os.cpu_count()
    return report


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv[1:]), indent=2, default=str))

"""A ``database.url`` mistake (a file that is not a database, a dialect whose driver is missing) is one line
naming the key and the reason, exit 2, for every command that opens the database; an outage is still waited
for (review s5, I3)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from sqlalchemy.exc import OperationalError

from common.app.cli import main
from common.app.runtime import open_database
from common.db import Database
from common.settings import load_settings

REPO = Path(__file__).resolve().parents[3]


def _config(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "aislewatch.yaml"
    path.write_text(yaml.safe_dump({
        "database": {"url": url},
        "reporting": {"output_dir": str(tmp_path / "reports")},
        "service": {"evidence_dir": str(tmp_path / "evidence")},
        "stores": [{"id": "s1", "name": "S1", "cameras": [{"id": "c1", "source": "a.mp4"}]}],
    }))
    return path


def _not_a_database(tmp_path: Path) -> str:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a SQLite database, just some text\n" * 20)
    return f"sqlite:///{garbage}"


def test_report_on_a_file_that_is_not_a_database_is_one_line(tmp_path: Path) -> None:
    config = _config(tmp_path, _not_a_database(tmp_path))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "common.app.cli", "report", "-c", str(config)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300, check=False)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and len(lines) == 1, done.stderr
    assert lines[0].startswith(f"aislewatch: {config}: database.url (sqlite:///") and "not a database" in lines[0]


@pytest.mark.parametrize("command", [["report"], ["db", "upgrade"], ["users", "list"], ["feedback", "export", "x"]])
def test_an_unknown_driver_names_database_url_with_the_password_masked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    config = _config(tmp_path, "mysql+nosuchdriver://aw:hunter22secret@db.example/aw")
    assert main([*command, "-c", str(config)]) == 2
    err = capsys.readouterr().err
    assert "database.url (mysql+nosuchdriver://***@db.example/aw)" in err and "hunter22secret" not in err, err
    assert "Traceback" not in err


def test_a_dialect_whose_driver_is_not_installed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("sqlalchemy.dialects.mysql")
    try:
        import MySQLdb  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("MySQLdb is installed here")
    assert main(["report", "-c", str(_config(tmp_path, "mysql://aw:pw@db.example/aw"))]) == 2
    err = capsys.readouterr().err
    assert "database.url (mysql://***@db.example/aw)" in err and "driver is not installed" in err, err
    assert "MySQLdb" in err


def test_an_outage_at_start_up_is_still_waited_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The server away at first (a disconnect): open_database backs off and retries, it does not exit."""
    settings = load_settings(_config(tmp_path, f"sqlite:///{tmp_path}/aw.db"))
    real_upgrade = Database.upgrade
    calls = []

    def flaky(self: Database, revision: str = "head") -> None:
        calls.append(revision)
        if len(calls) < 3:
            raise OperationalError("SELECT 1", {}, Exception("server closed the connection"),
                                   connection_invalidated=True)
        real_upgrade(self, revision)

    monkeypatch.setattr(Database, "upgrade", flaky)
    db = open_database(settings)
    try:
        assert len(calls) == 3 and db.results() == []
    finally:
        db.close()

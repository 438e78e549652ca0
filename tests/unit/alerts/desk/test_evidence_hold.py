"""Holds on an alert's evidence and the evidence bundle, over HTTP: who may, the version check, the audit rows,
what the page shows, and a bundle whose SHA-256 manifest verifies every file in it."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import zipfile
from datetime import timedelta
from pathlib import Path

import pytest

from alerts.desk.audit import AuditAction
from alerts.desk.web_auth import CSRF_HEADER
from common.schemas import ResultMessage, utc_now
from tests.unit.alerts.desk.webapp import Web

# -- hold and release ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["ms", "admin"])
def test_a_manager_or_admin_holds_and_releases(web: Web, who: str) -> None:
    alert_id = web.raise_alert("south")
    headers = {CSRF_HEADER: web.sign_in_as(who)}
    held = web.client.post(f"/api/alerts/{alert_id}/hold", json={"version": 1}, headers=headers)
    assert held.status_code == 200, held.text
    body = held.json()["alert"]
    assert (body["evidence_hold"], body["hold_by"], body["version"]) == (True, who, 2)
    row = web.stored(alert_id)
    assert (row.evidence_hold, row.hold_by, row.status) == (True, who, "open")  # a hold changes no status

    released = web.client.post(f"/api/alerts/{alert_id}/release", json={"version": 2}, headers=headers)
    assert released.status_code == 200 and released.json()["alert"]["evidence_hold"] is False
    row = web.stored(alert_id)
    assert (row.evidence_hold, row.hold_by, row.hold_at, row.version) == (False, None, None, 3)

    audit = [(r.action, r.username, r.store_id, r.target) for r in web.audit_rows()
             if r.action in (AuditAction.EVIDENCE_HELD, AuditAction.EVIDENCE_RELEASED)]
    assert audit == [("evidence_held", who, "south", alert_id), ("evidence_released", who, "south", alert_id)]
    (release_row,) = web.audit_rows(AuditAction.EVIDENCE_RELEASED)
    assert release_row.detail.startswith(f"held by {who} since ")
    assert [e for _, _, e, _ in web.events(alert_id)] == ["raised", "evidence_held", "evidence_released"]


def test_a_guard_may_not_hold_or_release(web: Web) -> None:
    alert_id = web.raise_alert("south")
    csrf = web.sign_in_as("gs")
    for action in ("hold", "release"):
        api = web.client.post(f"/api/alerts/{alert_id}/{action}", json={"version": 1}, headers={CSRF_HEADER: csrf})
        assert api.status_code == 403, action
        page = web.client.post(f"/alerts/{alert_id}/{action}", data={"version": 1, "csrf_token": csrf})
        assert page.status_code == 403, action
    assert web.stored(alert_id).evidence_hold is False and web.stored(alert_id).version == 1
    assert web.audit_rows(AuditAction.EVIDENCE_HELD) == []
    page = web.client.get(f"/alerts/{alert_id}").text
    assert 'id="hold"' not in page and 'id="download-bundle"' not in page


def test_another_stores_manager_gets_404(web: Web) -> None:
    alert_id = web.raise_alert("south")
    csrf = web.sign_in_as("mn")
    assert web.client.post(f"/api/alerts/{alert_id}/hold", json={"version": 1},
                           headers={CSRF_HEADER: csrf}).status_code == 404
    assert web.client.get(f"/alerts/{alert_id}/bundle.zip").status_code == 404
    assert web.stored(alert_id).evidence_hold is False


def test_a_stale_version_is_409_and_a_second_hold_403(web: Web) -> None:
    alert_id = web.raise_alert("south")
    headers = {CSRF_HEADER: web.sign_in_as("ms")}
    assert web.client.post(f"/api/alerts/{alert_id}/hold", json={"version": 1}, headers=headers).status_code == 200
    stale = web.client.post(f"/api/alerts/{alert_id}/release", json={"version": 1}, headers=headers)
    assert stale.status_code == 409 and stale.json()["alert"]["evidence_hold"] is True
    again = web.client.post(f"/api/alerts/{alert_id}/hold", json={"version": 2}, headers=headers)
    assert again.status_code == 403 and "already on hold" in again.json()["detail"]
    assert len(web.audit_rows(AuditAction.EVIDENCE_HELD)) == 1


def test_the_page_holds_shows_the_hold_and_offers_the_release(web: Web) -> None:
    alert_id = web.raise_alert("south")
    csrf = web.sign_in_as("ms")
    page = web.client.get(f"/alerts/{alert_id}").text
    assert 'id="hold"' in page and 'id="release"' not in page
    assert f'href="/alerts/{alert_id}/bundle.zip"' in page
    assert web.client.post(f"/alerts/{alert_id}/hold", data={"version": 1, "csrf_token": csrf}).status_code == 303
    page = web.client.get(f"/alerts/{alert_id}").text
    assert 'id="evidence-hold"' in page and "Held by ms" in page
    assert 'id="release"' in page and 'id="hold"' not in page


def test_evidence_deleted_by_retention_is_shown_and_cannot_be_held(web: Web) -> None:
    alert_id = web.raise_alert("south", video=True)
    web.set_alert(alert_id, evidence_deleted_at=utc_now() - timedelta(hours=1), verdict="false_alarm",
                  status="acknowledged", acknowledged_by="gs", acknowledged_at=utc_now() - timedelta(days=8))
    csrf = web.sign_in_as("ms")
    page = web.client.get(f"/alerts/{alert_id}").text
    assert 'id="evidence-deleted"' in page and "deleted by the retention policy" in page
    assert 'id="evidence-video"' not in page and 'id="evidence-snapshot"' not in page
    assert 'id="hold"' not in page
    refused = web.client.post(f"/api/alerts/{alert_id}/hold", json={"version": 1}, headers={CSRF_HEADER: csrf})
    assert refused.status_code == 403 and "already deleted" in refused.json()["detail"]
    assert web.client.get(f"/api/alerts/{alert_id}").json()["alert"]["evidence_deleted_at"] is not None


# -- the bundle ------------------------------------------------------------------------------------------------

def _with_clips(web: Web, alert_id: str) -> list[Path]:
    """Clip rows (with snapshots) for the alert's clip; returns the snapshot files."""
    now = utc_now()
    snapshot = web.evidence_dir / "south-cam" / f"{alert_id}-clip.jpg"
    snapshot.parent.mkdir(parents=True, exist_ok=True)
    snapshot.write_bytes(b"\xff\xd8\xff\xe0 clip snapshot")
    web.db.write_results([ResultMessage(
        clip_id=f"{alert_id}-clip", store_id="south", camera_id="south-cam", captured_at=now,
        start_at=now - timedelta(seconds=4), source_start_s=0.0, source_end_s=4.0, probability=0.91,
        threshold=0.5, model_version="test", snapshot_path=str(snapshot), inferred_at=now)])
    return [snapshot]


def _unzip(content: bytes, into: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        assert archive.testzip() is None
        archive.extractall(into)
        return {name: archive.read(name) for name in archive.namelist()}


def _manifest(members: dict[str, bytes]) -> dict[str, str]:
    lines = members["manifest.sha256"].decode().splitlines()
    entries = {}
    for line in lines:
        digest, sep, name = line.partition("  ")  # sha256sum's text-mode separator: two spaces
        assert sep and len(digest) == 64, line
        entries[name] = digest
    return entries


def test_the_bundle_holds_the_evidence_and_a_manifest_that_verifies(web: Web, tmp_path: Path) -> None:
    alert_id = web.raise_alert("south", video=True)
    clip_snapshots = _with_clips(web, alert_id)
    web.sign_in_as("gs")
    web.client.get(f"/alerts/{alert_id}/snapshot")  # an audit entry for the bundle to carry
    web.sign_in_as("ms")
    answer = web.client.get(f"/alerts/{alert_id}/bundle.zip")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/zip"
    assert answer.headers["content-disposition"] == f'attachment; filename="{alert_id}-evidence.zip"'
    assert answer.headers["cache-control"] == "private, no-store"

    out = tmp_path / "unzipped"
    members = _unzip(answer.content, out)
    assert set(members) == {"video.mp4", f"snapshots/{alert_id}.jpg", f"snapshots/{alert_id}-clip.jpg",
                            "alert.json", "clips.json", "audit.json", "manifest.sha256"}
    assert members["video.mp4"] == b"fake mp4"
    assert members[f"snapshots/{alert_id}-clip.jpg"] == clip_snapshots[0].read_bytes()

    manifest = _manifest(members)
    assert set(manifest) == set(members) - {"manifest.sha256"}  # every other file, nothing else
    for name, digest in manifest.items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest, name

    alert = json.loads(members["alert.json"])
    assert alert["alert_id"] == alert_id and alert["store_id"] == "south" and alert["evidence_hold"] is False
    clips = json.loads(members["clips.json"])
    assert [(c["clip_id"], c["probability"]) for c in clips] == [(f"{alert_id}-clip", 0.91)]
    audit = json.loads(members["audit.json"])
    assert [(a["action"], a["username"], a["target"]) for a in audit] == [("evidence_viewed", "gs", alert_id)]

    (downloaded,) = web.audit_rows(AuditAction.EVIDENCE_DOWNLOADED)
    assert (downloaded.username, downloaded.store_id, downloaded.target, downloaded.detail) == (
        "ms", "south", alert_id, "bundle")


@pytest.mark.skipif(shutil.which("sha256sum") is None, reason="coreutils sha256sum is not installed")
def test_the_manifest_passes_sha256sum_check_and_a_changed_file_fails_it(web: Web, tmp_path: Path) -> None:
    alert_id = web.raise_alert("south", video=True)
    _with_clips(web, alert_id)
    web.sign_in_as("admin")
    out = tmp_path / "unzipped"
    _unzip(web.client.get(f"/alerts/{alert_id}/bundle.zip").content, out)
    check = subprocess.run(["sha256sum", "--check", "--strict", "manifest.sha256"], cwd=out, capture_output=True,
                           text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.count(": OK") == 6
    (out / "video.mp4").write_bytes(b"tampered")
    tampered = subprocess.run(["sha256sum", "--check", "manifest.sha256"], cwd=out, capture_output=True,
                              text=True, check=False)
    assert tampered.returncode != 0 and "video.mp4: FAILED" in tampered.stdout


def test_a_bundle_of_deleted_evidence_still_carries_the_record(web: Web, tmp_path: Path) -> None:
    alert_id = web.raise_alert("south", video=True)
    for path in web.evidence_dir.rglob("*"):
        if path.is_file():
            path.unlink()
    web.set_alert(alert_id, evidence_deleted_at=utc_now())
    web.sign_in_as("ms")
    members = _unzip(web.client.get(f"/alerts/{alert_id}/bundle.zip").content, tmp_path / "u")
    assert set(members) == {"alert.json", "clips.json", "audit.json", "manifest.sha256"}
    assert set(_manifest(members)) == {"alert.json", "clips.json", "audit.json"}
    assert json.loads(members["alert.json"])["evidence_deleted_at"] is not None


def test_a_guard_may_not_download_the_bundle(web: Web) -> None:
    alert_id = web.raise_alert("south", video=True)
    web.sign_in_as("gs")
    assert web.client.get(f"/alerts/{alert_id}/bundle.zip").status_code == 403
    assert web.audit_rows(AuditAction.EVIDENCE_DOWNLOADED) == []


def test_the_bundle_never_reads_outside_the_evidence_directory(web: Web, tmp_path: Path) -> None:
    secret = tmp_path / "secret.jpg"
    secret.write_bytes(b"not evidence")
    alert_id = web.raise_alert("south", evidence_path=str(secret))
    web.sign_in_as("ms")
    members = _unzip(web.client.get(f"/alerts/{alert_id}/bundle.zip").content, tmp_path / "u")
    assert not any(name.startswith("snapshots/") for name in members)
    assert b"not evidence" not in b"".join(members.values())


def test_no_temporary_bundle_is_left_behind(web: Web, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spool = tmp_path / "tmp"
    spool.mkdir()
    monkeypatch.setenv("TMPDIR", str(spool))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # read TMPDIR again
    alert_id = web.raise_alert("south", video=True)
    web.sign_in_as("ms")
    assert web.client.get(f"/alerts/{alert_id}/bundle.zip").status_code == 200
    assert list(spool.iterdir()) == []

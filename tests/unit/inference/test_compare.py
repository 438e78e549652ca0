"""``aislewatch model compare``: on a tiny synthetic reviewed-alert export (videos rendered by inference.synth,
labels.csv written here) and on shadow scores stored in a real SQLite database."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from common.app.cli import main
from common.app.model_compare import compare_shadow
from common.db import Database
from common.models import Alert
from common.schemas import AlertKind, AlertMessage, ResultMessage, Verdict
from common.settings import load_settings
from inference.compare import ExportError, read_export
from inference.labels import COLUMNS
from inference.metadata import ModelMetadata
from inference.synth import render_episode_window
from inference.synth.video import write_video
from tests.tiny_models import save_tiny_model

FPS = 15.0
SECONDS = 8.0


def write_export(folder: Path, *, test: bool = True) -> dict[str, int]:
    """Three shoplifting and two normal test videos (one camera each), plus a training row to be left out;
    ``test=False``: every row on the training side.  labels.csv has the columns ``feedback export`` writes."""
    rows = []
    plan = [("shoplifting", "a1", "cam-1", "test"), ("shoplifting", "a2", "cam-2", "test"),
            ("shoplifting", "a3", "cam-3", "test"), ("normal", "a4", "cam-4", "test"),
            ("normal", "a5", "cam-5", "test"), ("normal", "a6", "cam-6", "train")]
    for seed, (label, alert_id, camera, split) in enumerate(plan):
        frames = render_episode_window(label, seed, width=320, height=180, fps=FPS, duration_s=SECONDS)  # type: ignore[arg-type]
        (folder / label).mkdir(parents=True, exist_ok=True)
        write_video(folder / label / f"{camera}__{alert_id}.mp4", frames, FPS, 320, 180)
        rows.append({"id": alert_id, "source": "alert", "path": f"{label}/{camera}__{alert_id}.mp4", "label": label,
                     "store": "s1", "camera": camera, "start": "2026-03-01T12:00:00+00:00",
                     "end": "2026-03-01T12:00:08+00:00", "model_version": "old", "score": "0.9",
                     "verdict": Verdict.THEFT_CONFIRMED.value if label == "shoplifting" else Verdict.FALSE_ALARM.value,
                     "who": "ana", "when": "2026-03-01T12:05:00+00:00", "split": split if test else "train"})
    with (folder / "labels.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(COLUMNS))
        writer.writeheader()
        writer.writerows(rows)
    return {"shoplifting": 3, "normal": 2}


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("export")
    write_export(folder)
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("models")
    return {
        "always": save_tiny_model(folder / "always.keras", weight=0.0, bias=30.0, version="always-1"),
        "never": save_tiny_model(folder / "never.keras", weight=0.0, bias=-30.0, version="never-0"),
    }


def test_the_held_out_test_rows_are_used_when_the_export_has_them(export: Path) -> None:
    selection = read_export(export)
    assert [e.id for e in selection.examples] == ["a1", "a2", "a3", "a4", "a5"]
    assert "held-out test split (5 of 6 rows" in selection.rows


def test_an_export_without_its_videos_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"no labels\.csv"):
        read_export(tmp_path)
    (tmp_path / "labels.csv").write_text("alert_id,camera,split\nzz,cam-1,test\n")
    with pytest.raises(ExportError, match=r"missing column\(s\) id, path"):
        read_export(tmp_path)
    (tmp_path / "labels.csv").write_text("id,path,camera,split\nzz,normal/cam-1__zz.mp4,cam-1,test\n")
    with pytest.raises(ExportError, match=r"line 2: no video for 'zz' at 'normal/cam-1__zz\.mp4'"):
        read_export(tmp_path)


def test_an_export_without_held_out_rows_is_refused_unless_all_rows_are_asked_for(
    tmp_path: Path, models: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    write_export(tmp_path, test=False)
    with pytest.raises(ExportError, match="no row is in the held-out test split"):
        read_export(tmp_path)
    assert main(["model", "compare", str(models["always"]), str(models["never"]), str(tmp_path)]) == 2
    assert "pass --all-rows" in capsys.readouterr().err
    selection = read_export(tmp_path, all_rows=True)
    assert len(selection.examples) == 6 and "--all-rows" in selection.rows
    assert main(["model", "compare", str(models["always"]), str(models["never"]), str(tmp_path), "--all-rows",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["videos"] == 6


def test_compare_reports_each_model_at_the_alert_rule(
    export: Path, models: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["model", "compare", str(models["always"]), str(models["never"]), str(export), "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["videos"] == 5 and report["videos_without_clips"] == 0
    assert report["normal_video_hours"] == pytest.approx(2 * SECONDS / 3600, rel=0.05)
    assert "normal/ video is an alert raised by the active model" in report["selection_bias"]
    new, old = report["models"]
    assert (new["role"], new["version"], old["role"], old["version"]) == ("new", "always-1", "old", "never-0")
    # a model that always says 1.0 catches every theft; its precision is the share of positives
    assert new["recall"] == 1.0 and new["precision"] == pytest.approx(3 / 5, abs=1e-4)
    # one alert per normal video: each is shorter than the rule's 60 s cooldown
    assert new["false_alarms"] == 2
    # no rate per camera-hour: the export's seconds around each alert are not the hours a camera filmed
    assert not any("per_camera_hour" in key for key in new)
    assert all(v["clips"] >= 4 and v["alerts"] == 1 for v in new["videos"])
    # one that always says 0.0 raises nothing
    assert old["recall"] == 0.0 and old["precision"] is None and old["false_alarms"] == 0


def test_compare_prints_a_table_and_applies_the_configured_rule(
    export: Path, models: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "aw.yaml"
    config.write_text("alerts:\n  n_of_m: [10, 10]\n  cooldown_s: 1\n")
    assert main(["model", "compare", "-c", str(config), str(models["always"]), str(models["never"]), str(export)]) == 0
    out = capsys.readouterr().out
    assert "held-out test split" in out and "10 of the last 10 clips" in out
    assert "selection bias" in out and "per cam-h" not in out
    new_line = next(line for line in out.splitlines() if line.startswith("new "))
    assert "always-1" in new_line
    # 8 s videos cut at most 5 clips on the 1 s grid: never 10 in a row, so even always-1 raises nothing
    assert new_line.split()[3:6] == ["-", "0.000", "0"]


def write_shadow_db(url: str) -> Database:
    db = Database.from_url(url)
    db.upgrade()
    t0 = datetime.now(UTC) - timedelta(hours=2)
    results = []
    # camera A: both models high at 0-5 s (an alert judged theft); the active one alone high at 100-105 s
    # (judged false alarm); the candidate alone high at 200-205 s (no review).  An hour of clips in all.
    for i in range(0, 3601, 5):
        at = t0 + timedelta(seconds=i)
        active_p = 0.9 if i < 10 or 100 <= i < 110 else 0.1
        shadow_p = 0.9 if i < 10 or 200 <= i < 210 else 0.1
        results.append(ResultMessage(clip_id=f"A{i}", store_id="s1", camera_id="A", captured_at=at + timedelta(seconds=4),
                                     start_at=at, source_start_s=i, source_end_s=i + 4, probability=active_p,
                                     threshold=0.5, model_version="act-1", inferred_at=at, shadow_probability=shadow_p,
                                     shadow_model_version="cand-2"))
    db.write_results(results)
    alerts = [
        AlertMessage(alert_id="theft", alert_kind=AlertKind.SUSPICIOUS_ACTIVITY, store_id="s1", camera_id="A",
                     raised_at=t0 + timedelta(seconds=9), probability=0.9, clip_ids=("A0", "A5")),
        AlertMessage(alert_id="fa", alert_kind=AlertKind.SUSPICIOUS_ACTIVITY, store_id="s1", camera_id="A",
                     raised_at=t0 + timedelta(seconds=109), probability=0.9, clip_ids=("A100", "A105")),
    ]
    db.write_alerts(alerts)
    with db.session() as session:
        session.execute(update(Alert).where(Alert.alert_id == "theft").values(verdict="theft_confirmed"))
        session.execute(update(Alert).where(Alert.alert_id == "fa").values(verdict="false_alarm"))
    return db


def test_from_shadow_replays_both_models_through_the_rule_and_meets_the_verdicts(tmp_path: Path) -> None:
    db = write_shadow_db(f"sqlite:///{tmp_path / 'aw.db'}")
    candidate = tmp_path / "cand.keras"
    candidate.write_bytes(b"not loaded: compare reads only the sidecar")
    ModelMetadata.sidecar_path(candidate).write_text(ModelMetadata(version="cand-2", threshold=0.5).to_json())
    settings = load_settings(None, overrides={"model": {"shadow_path": str(candidate)},
                                              "alerts": {"cooldown_s": 30}})
    try:
        report = compare_shadow(settings, db, days=1)
    finally:
        db.close()
    assert report["clips"] == 721 and report["camera_hours"] == pytest.approx(1.0, abs=0.01)
    assert (report["reviewed_thefts"], report["reviewed_false_alarms"]) == (1, 1)
    active, cand = report["models"]
    assert (active["alerts"], active["thefts_kept"], active["false_alarms_kept"], active["unjudged_alerts"]) == (2, 1, 1, 0)
    assert (cand["alerts"], cand["thefts_kept"], cand["false_alarms_kept"], cand["unjudged_alerts"]) == (2, 1, 0, 1)
    assert cand["version"] == "cand-2" and cand["alerts_per_camera_hour"] == pytest.approx(2.0, abs=0.05)

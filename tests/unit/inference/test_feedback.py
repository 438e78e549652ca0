"""``aislewatch feedback export`` over a real database and real H.264 evidence, then ``aislewatch train
--init-from`` on what it wrote: verdicts become a dataset train reads as it is, split by camera."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import av
import pytest
import yaml

from alerts.desk.missed import mark_missed_theft
from alerts.desk.queries import DeskQueries
from alerts.desk.roles import Principal, Role
from common.app.cli import main
from common.db import Database
from common.models import Camera
from common.schemas import AlertKind, AlertMessage, Verdict
from common.settings import load_settings
from inference.artefacts import artefact_paths
from inference.dataset import discover_videos, read_split
from inference.feedback import COLUMNS, export_feedback
from tests.feedback_footage import MODEL_VERSION, film, raise_alert, store_clip
from tests.tiny_models import save_tiny_model

T0 = datetime(2026, 12, 1, 10, 0, 0, tzinfo=UTC)
CAMERAS = {"cam-a": "s1", "cam-b": "s1", "cam-c": "s2", "cam-d": "s2"}
GUARD = Principal(1, "ana", Role.GUARD, frozenset({"s1", "s2"}))
MANAGER = Principal(2, "mia", Role.MANAGER, frozenset({"s1", "s2"}))
# per camera: (alert suffix, what it shows, the verdict given, whether the alert has its evidence video)
PLAN: tuple[tuple[str, str, Verdict | None, bool], ...] = (
    ("confirmed", "shoplifting", Verdict.THEFT_CONFIRMED, True),
    ("prevented", "shoplifting", Verdict.THEFT_PREVENTED, False),  # no video: cut from the segments
    ("false1", "normal", Verdict.FALSE_ALARM, True),
    ("false2", "normal", Verdict.FALSE_ALARM, True),
    ("unsure", "normal", Verdict.UNSURE, True),
    ("open", "shoplifting", None, True),
)


@dataclass
class Chain:
    config: Path
    db: Database
    evidence: Path
    tmp: Path


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[Chain]:
    evidence = tmp_path / "evidence"
    config = tmp_path / "aislewatch.yaml"
    config.write_text(yaml.safe_dump({
        "stores": [{"id": store, "name": store.upper(), "cameras": [
            {"id": cam, "name": cam, "source": f"{cam}.mp4"} for cam, s in CAMERAS.items() if s == store]}
            for store in ("s1", "s2")],
        "database": {"url": f"sqlite:///{tmp_path / 'db.sqlite'}"},
        "service": {"evidence_dir": str(evidence)},
    }))
    settings = load_settings(config)
    db = Database.from_settings(settings)
    db.upgrade()
    db.sync_stores(settings)
    queries = DeskQueries(db)
    seed = 0
    for c, (camera, store) in enumerate(CAMERAS.items()):
        for k, (suffix, shows, verdict, with_video) in enumerate(PLAN):
            seed += 1
            segment = film(evidence, camera, T0 + timedelta(minutes=c, seconds=10 * k), shows, seed)
            alert_id = f"{camera}-{suffix}"
            raise_alert(db, evidence, store, segment, alert_id, with_video=with_video)
            if verdict is not None:
                queries.acknowledge(GUARD, alert_id, verdict, version=1, note="seen on the monitor")
        # motion that raised nothing, which a manager then marks as a theft the model missed
        if camera == "cam-a":
            quiet = film(evidence, camera, T0 + timedelta(minutes=c, seconds=10 * len(PLAN)), "shoplifting", 999)
            store_clip(db, store, quiet, 0.2, "cam-a-quiet-clip")
            mark_missed_theft(db, MANAGER, "cam-a", quiet.start, quiet.end, evidence_dir=evidence,
                              note="concealed a bottle", now=T0 + timedelta(hours=1))
    # reviewed, but its evidence is gone (deleted, no segments left): skipped and counted
    db.write_alerts([AlertMessage(alert_id="cam-b-gone", alert_kind=AlertKind.SUSPICIOUS_ACTIVITY, store_id="s1",
                                  camera_id="cam-b", raised_at=T0 + timedelta(hours=2), probability=0.8)])
    queries.acknowledge(GUARD, "cam-b-gone", Verdict.FALSE_ALARM, version=1)
    # another kind of alert is never training data
    db.write_alerts([AlertMessage(alert_id="cam-c-offline", alert_kind=AlertKind.CAMERA_OFFLINE, store_id="s2",
                                  camera_id="cam-c", raised_at=T0)])
    yield Chain(config, db, evidence, tmp_path)
    db.close()


def _labels(out: Path) -> list[dict[str, str]]:
    with (out / "labels.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def _files(out: Path) -> list[str]:
    return sorted(p.relative_to(out).as_posix() for p in out.rglob("*.mp4"))


def test_export_writes_class_folders_and_labels_split_by_camera(chain: Chain, capsys: pytest.CaptureFixture[str]) -> None:
    out = chain.tmp / "feedback"
    assert main(["feedback", "export", str(out), "-c", str(chain.config)]) == 0
    printed = capsys.readouterr().out
    assert "1 skipped (evidence gone)" in printed and "cam-b-gone" in printed
    assert "8 left out (unsure or unreviewed)" in printed

    rows = _labels(out)
    assert tuple(rows[0]) == COLUMNS
    by_id = {r["id"]: r for r in rows}
    positives = {f"{c}-{s}" for c in CAMERAS for s in ("confirmed", "prevented")} | {"missed-1"}
    negatives = {f"{c}-{s}" for c in CAMERAS for s in ("false1", "false2")}
    assert set(by_id) == positives | negatives  # unsure, unreviewed, gone and offline alerts are not there
    assert {i for i, r in by_id.items() if r["label"] == "shoplifting"} == positives
    assert _files(out) == sorted(r["path"] for r in rows)
    assert all(Path(r["path"]).name.startswith(f"{r['camera']}__") for r in rows)

    confirmed = by_id["cam-a-confirmed"]
    assert (confirmed["source"], confirmed["store"], confirmed["verdict"], confirmed["who"]) == (
        "alert", "s1", "theft_confirmed", "ana")
    assert confirmed["model_version"] == MODEL_VERSION and float(confirmed["score"]) == pytest.approx(0.9)
    assert datetime.fromisoformat(confirmed["start"]) == T0 and datetime.fromisoformat(confirmed["when"]) > T0
    assert datetime.fromisoformat(confirmed["end"]) - datetime.fromisoformat(confirmed["start"]) < timedelta(seconds=3)
    missed = by_id["missed-1"]
    assert (missed["source"], missed["label"], missed["verdict"], missed["who"], missed["camera"]) == (
        "missed", "shoplifting", "missed_theft", "mia", "cam-a")
    assert float(missed["score"]) == pytest.approx(0.2)  # how sure the model was that nothing happened

    # every exported video is H.264 and long enough for a training clip, whether copied or cut from segments
    for row in rows:
        with av.open(str(out / row["path"])) as container:
            assert container.streams.video[0].codec_context.name == "h264"
            assert sum(1 for _ in container.decode(video=0)) >= 20, row["id"]

    # split by camera: one split per camera, all three splits used, every split sees both classes here
    splits: dict[str, set[str]] = {}
    for row in rows:
        splits.setdefault(row["camera"], set()).add(row["split"])
    assert all(len(s) == 1 for s in splits.values())
    assert {s for (s,) in splits.values()} == {"train", "val", "test"}


def test_export_again_changes_nothing_and_follows_changed_verdicts(chain: Chain) -> None:
    out = chain.tmp / "feedback"
    settings = load_settings(chain.config)
    first = export_feedback(chain.db, settings.service.evidence_dir, out, progress=False)
    assert first.exported == 17 and len(first.skipped) == 1
    labels_before = (out / "labels.csv").read_text()
    files_before = _files(out)

    again = export_feedback(chain.db, settings.service.evidence_dir, out, progress=False)
    assert (again.exported, again.kept) == (0, 17)
    assert (out / "labels.csv").read_text() == labels_before and _files(out) == files_before

    # a manager reopens a confirmed theft (it leaves) and turns a false alarm into a prevented theft (it moves)
    queries = DeskQueries(chain.db)
    queries.reopen(MANAGER, "cam-c-confirmed", version=2)
    queries.reopen(MANAGER, "cam-d-false1", version=2)
    queries.acknowledge(MANAGER, "cam-d-false1", Verdict.THEFT_PREVENTED, version=3)
    # and every evidence file is deleted: what was exported stays exported
    for path in sorted(chain.evidence.rglob("*.mp4"), reverse=True):
        path.unlink()
    changed = export_feedback(chain.db, settings.service.evidence_dir, out, progress=False)
    assert (changed.removed, changed.relabelled, changed.exported, changed.kept) == (1, 1, 0, 15)
    assert "shoplifting/cam-d__cam-d-false1.mp4" in _files(out)
    assert not any("cam-c-confirmed" in f for f in _files(out)) and not any("normal/cam-d__cam-d-false1" in f
                                                                           for f in _files(out))
    rows = {r["id"]: r for r in _labels(out)}
    assert rows["cam-d-false1"]["verdict"] == "theft_prevented" and "cam-c-confirmed" not in rows


def test_export_scope_by_store_and_date(chain: Chain) -> None:
    out = chain.tmp / "feedback"
    settings = load_settings(chain.config)
    s2 = export_feedback(chain.db, settings.service.evidence_dir, out, stores=["s2"], progress=False)
    assert s2.exported == 8 and {r["store"] for r in _labels(out)} == {"s2"}
    late = export_feedback(chain.db, settings.service.evidence_dir, out, since=T0 + timedelta(seconds=61),
                           stores=["s1"], progress=False)
    # cam-b's 4 (raised from 62 s on), not cam-a's nor its missed theft (began at 60 s); the gone one is skipped
    assert late.exported == 4 and [i for i, _ in late.skipped] == ["cam-b-gone"]
    assert {r["camera"] for r in _labels(out)} == {"cam-b", "cam-c", "cam-d"}  # the s2 rows were kept


def test_feedback_export_refuses_a_folder_with_a_foreign_labels_csv(chain: Chain,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = chain.tmp / "feedback"
    out.mkdir()
    (out / "labels.csv").write_text("file,class\na.mp4,normal\n")
    assert main(["feedback", "export", str(out), "-c", str(chain.config)]) == 2
    assert "not a feedback export" in capsys.readouterr().err


@pytest.mark.slow
def test_train_init_from_on_the_exported_folder_splits_by_camera(chain: Chain) -> None:
    out = chain.tmp / "feedback"
    assert main(["feedback", "export", str(out), "-c", str(chain.config)]) == 0
    assert len(discover_videos(out)) == 17
    model = chain.tmp / "model" / "convlstm.keras"
    assert main(["train", str(out), "--out", str(model), "--epochs", "1", "--batch-size", "4",
                 "--init-from", "inference/bundled/convlstm.keras", "--split-by", "camera"]) == 0
    paths = artefact_paths(model)
    assert model.is_file() and model.stat().st_size > 0 and paths.sidecar.is_file()
    meta = json.loads(paths.sidecar.read_text())
    assert meta["trained_on"]["synthetic"] is False and meta["trained_on"]["videos"] == 17
    assert meta["trained_on"]["split_by"] == "camera"
    assert meta["trained_on"]["fine_tuned_from"]["version"].startswith("aw-convlstm")
    assert json.loads(paths.skipped.read_text())["count"] == 0

    # train used the export's split: each camera's videos are on exactly the side labels.csv says
    split = read_split(paths.split)
    side = {rel: name for name, rels in split.items() for rel in rels}
    rows = _labels(out)
    assert {r["path"]: r["split"] for r in rows} == side
    cameras_per_side = {name: {r["camera"] for r in rows if r["split"] == name} for name in split}
    assert not (cameras_per_side["train"] & (cameras_per_side["val"] | cameras_per_side["test"]))

    # and evaluate measures on the held-out camera
    assert main(["evaluate", str(model), str(out), "--out", str(chain.tmp / "eval"), "--split-by", "camera"]) == 0
    metrics = json.loads((chain.tmp / "eval" / "metrics.json").read_text())
    assert {p["path"] for p in metrics["per_video"]} == {r["path"] for r in rows if r["split"] == "test"}


def _splits(out: Path) -> dict[str, str]:
    return {r["camera"]: r["split"] for r in _labels(out)}


def _add_camera(chain: Chain, camera: str, store: str, minute: int) -> None:
    """A camera new to the chain, with two confirmed thefts and two false alarms reviewed."""
    with chain.db.session() as session:
        session.add(Camera(id=camera, store_id=store, name=camera))
    queries = DeskQueries(chain.db)
    for k, (shows, verdict) in enumerate((("shoplifting", Verdict.THEFT_CONFIRMED), ("shoplifting", Verdict.THEFT_CONFIRMED),
                                          ("normal", Verdict.FALSE_ALARM), ("normal", Verdict.FALSE_ALARM))):
        segment = film(chain.evidence, camera, T0 + timedelta(minutes=minute, seconds=10 * k), shows, 500 + k)
        raise_alert(chain.db, chain.evidence, store, segment, f"{camera}-{k}")
        queries.acknowledge(GUARD, f"{camera}-{k}", verdict, version=1)


def test_a_camera_keeps_its_split_when_later_exports_add_cameras(chain: Chain) -> None:
    out = chain.tmp / "feedback"
    evidence = load_settings(chain.config).service.evidence_dir
    export_feedback(chain.db, evidence, out, progress=False)
    first = _splits(out)
    assert set(first) == set(CAMERAS) and set(first.values()) == {"train", "val", "test"}

    _add_camera(chain, "cam-e", "s2", minute=30)
    again = export_feedback(chain.db, evidence, out, progress=False)
    second = _splits(out)
    assert again.new_cameras == ["cam-e"] and again.exported == 4
    # a model fine-tuned on the first export's train side never saw a camera the second one holds out
    assert {c: second[c] for c in first} == first and second["cam-e"] in ("train", "val", "test")
    with (out / "camera_splits.csv").open(newline="") as handle:
        assert {r["camera"]: r["split"] for r in csv.DictReader(handle)} == second

    # a camera whose every row leaves the dataset still keeps its split for when it comes back
    queries = DeskQueries(chain.db)
    for k in range(4):
        queries.reopen(MANAGER, f"cam-e-{k}", version=2)
    export_feedback(chain.db, evidence, out, progress=False)
    assert "cam-e" not in _splits(out)
    for k in range(4):
        queries.acknowledge(MANAGER, f"cam-e-{k}", Verdict.FALSE_ALARM, version=3)
    export_feedback(chain.db, evidence, out, progress=False)
    assert _splits(out) == second


def test_exports_of_a_store_subset_never_reshuffle_the_split(chain: Chain) -> None:
    out = chain.tmp / "feedback"
    evidence = load_settings(chain.config).service.evidence_dir
    export_feedback(chain.db, evidence, out, stores=["s2"], progress=False)
    s2 = _splits(out)
    assert set(s2) == {"cam-c", "cam-d"} and set(s2.values()) == {"test", "train"}
    export_feedback(chain.db, evidence, out, stores=["s1"], progress=False)
    both = _splits(out)
    assert {c: both[c] for c in s2} == s2 and set(both) == set(CAMERAS)
    export_feedback(chain.db, evidence, out, progress=False)
    assert _splits(out) == both


def test_a_false_alarm_under_a_marked_missed_theft_is_left_out_as_conflicting(chain: Chain) -> None:
    out = chain.tmp / "feedback"
    evidence = load_settings(chain.config).service.evidence_dir
    export_feedback(chain.db, evidence, out, progress=False)
    assert "normal/cam-a__cam-a-false1.mp4" in _files(out)
    # cam-a-false1 is cam-a's motion from T0+20 s to T0+22 s; a manager marks 19-21 s as a theft missed
    mark_missed_theft(chain.db, MANAGER, "cam-a", T0 + timedelta(seconds=19), T0 + timedelta(seconds=21),
                      evidence_dir=evidence, now=T0 + timedelta(hours=1))
    summary = export_feedback(chain.db, evidence, out, progress=False)
    assert summary.conflicting == ["cam-a-false1"] and "1 conflicting" in str(summary)
    rows = {r["id"]: r for r in _labels(out)}
    assert "cam-a-false1" not in rows and "normal/cam-a__cam-a-false1.mp4" not in _files(out)
    assert rows["missed-2"]["label"] == "shoplifting" and "shoplifting/cam-a__missed-2.mp4" in _files(out)
    assert rows["cam-a-false2"]["label"] == "normal"  # a false alarm elsewhere on the camera stays
    # into a fresh folder it is never written at all
    fresh = export_feedback(chain.db, evidence, chain.tmp / "fresh", progress=False)
    assert fresh.conflicting == ["cam-a-false1"] and "cam-a-false1" not in {r["id"] for r in _labels(chain.tmp / "fresh")}


def test_model_compare_reads_the_export_as_written(chain: Chain, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = chain.tmp / "feedback"
    export_feedback(chain.db, load_settings(chain.config).service.evidence_dir, out, progress=False)
    test_rows = [r for r in _labels(out) if r["split"] == "test"]
    assert test_rows
    always = save_tiny_model(tmp_path / "always.keras", weight=0.0, bias=30.0, version="always-1")
    never = save_tiny_model(tmp_path / "never.keras", weight=0.0, bias=-30.0, version="never-0")
    capsys.readouterr()
    assert main(["model", "compare", str(always), str(never), str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["videos"] == len(test_rows)
    assert {v["id"] for v in report["models"][0]["videos"]} == {r["id"] for r in test_rows}
    assert report["shoplifting_videos"] == sum(1 for r in test_rows if r["label"] == "shoplifting")
    assert "raised by the active model" in report["selection_bias"]

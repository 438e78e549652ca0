"""``config check`` refuses what would fail later (time zones, cron, model, addresses, folders), relative paths
in a file are read from the file's folder, and every command fails a bad configuration with one line per
problem (file, key, reason) and exit 2, before anything starts."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest

from common.app.cli import main
from common.app.preflight import keras_input_shape, unwritable_reason
from common.settings import DEFAULT_MODEL_PATH, ConfigError, load_settings

CAMERA = "stores:\n  - id: s1\n    cameras: [{id: c1, source: rtsp://10.0.0.5/s}]\n"


def write(folder: Path, text: str, name: str = "aislewatch.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def check(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["config", "check", str(path)])
    captured = capsys.readouterr()
    return code, captured.err


@pytest.mark.parametrize(
    ("snippet", "key", "reason"),
    [
        ("stores:\n  - id: s1\n    timezone: Europe/Londn\n", "stores[0].timezone", "unknown time zone 'Europe/Londn'"),
        ('reporting:\n  schedule_cron: "every monday"\n', "reporting.schedule_cron", "is not a cron expression"),
        ('reporting:\n  schedule_cron: "61 6 * * 1"\n', "reporting.schedule_cron", "is not a cron expression"),
        ("notifications:\n  webhook: {url: 'htps://hooks.example.com/x'}\n", "notifications.webhook.url",
         "is not an http:// or https:// URL"),
        ("notifications:\n  webhook: {url: 'https://hooks.example.com:99999/x'}\n", "notifications.webhook.url",
         "not a valid URL"),
        ("notifications:\n  webhook: {url: 'https:///x'}\n", "notifications.webhook.url", "names no host"),
        ("notifications:\n  email: {recipients: [desk.example.com]}\n", "notifications.email.recipients[0]",
         "is not an e-mail address"),
        ("notifications:\n  email: {sender: 'Guard Desk <desk@example.com>'}\n", "notifications.email.sender",
         "is not an e-mail address"),
        ("notifications:\n  email: {host: 'smtp://mail.example.com'}\n", "notifications.email.host", "is a URL"),
        ("notifications:\n  email: {host: 'mail example com'}\n", "notifications.email.host", "not a host name"),
        ("notifications:\n  email: {port: 70000}\n", "notifications.email.port", "less than or equal to 65535"),
        ("stores:\n  - id: s1\n    manager_emails: ['ana@']\n", "stores[0].manager_emails[0]", "not an e-mail address"),
        ("reporting:\n  chain_recipients: [ops]\n", "reporting.chain_recipients[0]", "not an e-mail address"),
        ("desk:\n  public_url: desk.example.com\n", "desk.public_url", "is not an http:// or https:// URL"),
    ],
)
def test_config_check_refuses_values_that_would_fail_later(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], snippet: str, key: str, reason: str
) -> None:
    path = write(tmp_path, snippet)
    code, err = check(path, capsys)
    assert code == 2
    (line,) = err.splitlines()  # one line: the file, the key and the reason
    assert line.startswith(f"aislewatch: {path}: line ")
    assert key in line and reason in line
    assert "Traceback" not in err and "Value error," not in err


def test_well_formed_values_pass(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = CAMERA + (
        "    timezone: America/Argentina/Buenos_Aires\n    manager_emails: [o'neil+reports@shop-1.example.co.uk]\n"
        "reporting: {schedule_cron: '30 5 * * mon-fri', chain_recipients: [ops@localhost]}\n"
        "notifications:\n  webhook: {url: 'https://[2001:db8::1]:8443/hooks?x=1'}\n"
        "  email: {host: 10.0.0.25, port: 587, sender: aislewatch@localhost, recipients: [desk@example.com]}\n"
        "desk: {public_url: 'http://localhost:8080'}\n"
    )
    code, err = check(write(tmp_path, text.replace("stores:\n  - id: s1\n    cameras", "stores:\n  - id: s1\n    cameras")),
                      capsys)
    assert (code, err) == (0, "")


def test_a_missing_model_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, CAMERA + "model: {path: models/convlstm.keras}\n")
    code, err = check(path, capsys)
    assert code == 2
    (line,) = err.splitlines()
    assert f"model.path ({tmp_path / 'models' / 'convlstm.keras'}): no such model file" in line


def test_a_model_whose_input_does_not_fit_the_clip_settings_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, CAMERA.replace("s}]", "s, clip: {frames: 16, size: 96}}]"))
    code, err = check(path, capsys)
    assert code == 2
    assert "camera c1 (store s1) cuts clips of shape (16, 96, 96, 3)" in err
    assert "stores[0].cameras[0].clip.frames to 20" in err and "stores[0].cameras[0].clip.size to 64" in err


def fake_keras(path: Path, batch_shape: list[int | None]) -> Path:
    """A ``.keras`` archive whose config.json declares ``batch_shape`` (no weights: never loaded here)."""
    config = {"class_name": "Functional", "config": {"layers": [
        {"class_name": "InputLayer", "config": {"batch_shape": batch_shape, "name": "clip"}}]}}
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", json.dumps(config))
        archive.writestr("metadata.json", "{}")
    return path


def test_without_a_sidecar_the_archive_says_what_the_model_takes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = fake_keras(tmp_path / "other.keras", [None, 16, 64, 64, 3])
    assert keras_input_shape(model) == (16, 64, 64, 3)
    assert keras_input_shape(DEFAULT_MODEL_PATH) == (20, 64, 64, 3)  # the bundled model, read without TensorFlow
    code, err = check(write(tmp_path, CAMERA + "model: {path: other.keras}\n"), capsys)
    assert code == 2
    assert "takes (16, 64, 64, 3): set stores[0].cameras[0].clip.frames to 16 (is 20)" in err


def test_a_sidecar_that_disagrees_with_its_model_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fake_keras(tmp_path / "m.keras", [None, 16, 64, 64, 3])
    shutil.copy(DEFAULT_MODEL_PATH.with_suffix(".json"), tmp_path / "m.json")  # says (20, 64, 64, 3)
    code, err = check(write(tmp_path, CAMERA + "model: {path: m.keras}\n"), capsys)
    assert code == 2
    assert "the model takes clips of shape (16, 64, 64, 3) but its sidecar m.json says (20, 64, 64, 3)" in err


def test_a_file_that_is_not_a_keras_archive_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "m.keras").write_bytes(b"not a zip")
    code, err = check(write(tmp_path, CAMERA + "model: {path: m.keras}\n"), capsys)
    assert code == 2 and "not a readable .keras model archive" in err


@pytest.mark.parametrize(
    "key", ["service.evidence_dir", "ingest.spool_dir", "reporting.output_dir", "database.url"]
)
def test_a_path_that_cannot_be_written_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str], key: str) -> None:
    (tmp_path / "a-file").write_text("")
    section, name = key.split(".")
    value = "sqlite:///a-file/inside/aislewatch.db" if key == "database.url" else "a-file/inside"
    code, err = check(write(tmp_path, f"{section}:\n  {name}: {value}\n"), capsys)
    assert code == 2
    (line,) = err.splitlines()
    assert key in line and f"{tmp_path / 'a-file'} is a file, so the folder cannot be created" in line


def test_a_folder_that_takes_no_files_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # /proc refuses new files even from root (tests here run as root, so a chmod 0o555 folder would not do)
    code, err = check(write(tmp_path / "cfg", "service:\n  evidence_dir: /proc/self/aislewatch/evidence\n"), capsys)
    assert code == 2 and "service.evidence_dir" in err and "cannot write" in err


def test_unwritable_reason() -> None:
    assert unwritable_reason(Path("/proc/self/aislewatch")) is not None  # /proc takes no files, even from root
    assert unwritable_reason(Path(__file__)) == "exists and is not a folder"


def test_relative_paths_in_a_file_are_read_from_the_files_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config_dir = tmp_path / "etc"
    (config_dir / "models").mkdir(parents=True)
    shutil.copy(DEFAULT_MODEL_PATH, config_dir / "models" / "convlstm.keras")
    shutil.copy(DEFAULT_MODEL_PATH.with_suffix(".json"), config_dir / "models" / "convlstm.json")
    (config_dir / "videos").mkdir()
    (config_dir / "videos" / "aisle.mp4").write_bytes(b"")
    path = write(config_dir, CAMERA.replace("rtsp://10.0.0.5/s", "videos/aisle.mp4") + (
        "model: {path: models/convlstm.keras}\n"
        "database: {url: 'sqlite:///state/aislewatch.db'}\n"
        "ingest: {spool_dir: state/spool}\nreporting: {output_dir: state/reports}\n"
        "service: {evidence_dir: state/evidence}\n"
    ))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    assert check(Path("../etc/aislewatch.yaml"), capsys) == (0, "")
    settings = load_settings("../etc/aislewatch.yaml")
    assert settings.model.path == config_dir / "models" / "convlstm.keras"
    assert settings.database.url == f"sqlite:///{config_dir}/state/aislewatch.db"
    assert settings.ingest.spool_dir == config_dir / "state" / "spool"
    assert settings.reporting.output_dir == config_dir / "state" / "reports"
    assert settings.service.evidence_dir == config_dir / "state" / "evidence"
    assert settings.stores[0].cameras[0].source == str(config_dir / "videos" / "aisle.mp4")
    # the settings of another start, from the environment, are relative to the working directory
    monkeypatch.setenv("AISLEWATCH__SERVICE__EVIDENCE_DIR", "from-env")
    assert load_settings(path).service.evidence_dir == Path("from-env")
    # and so are the defaults
    assert load_settings(write(tmp_path, "{}\n", "empty.yaml")).ingest.spool_dir == Path("build/spool")


def test_urls_and_placeholders_are_not_taken_for_relative_paths(tmp_path: Path) -> None:
    text = ("stores:\n  - id: s1\n    cameras:\n      - {id: a, source: 'rtsp://${U}:${P}@10.0.0.5/s'}\n"
            "      - {id: b, source: 'file:///srv/v.mp4'}\n      - {id: c, source: '${CAMERA_FILE}'}\n"
            "database: {url: 'postgresql+psycopg2://aw@db:5432/aw'}\n")
    settings = load_settings(write(tmp_path, text))
    assert [c.source for _, c in settings.cameras()] == ["rtsp://${U}:${P}@10.0.0.5/s", "file:///srv/v.mp4",
                                                          "${CAMERA_FILE}"]
    assert settings.database.url == "postgresql+psycopg2://aw@db:5432/aw"


COMMANDS = [["run"], ["ingest"], ["infer"], ["alerts"], ["desk"], ["report"], ["report", "--send"],
            ["db", "upgrade"], ["users", "list"], ["feedback", "export", "out"]]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_fails_a_bad_configuration_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    path = write(tmp_path, "stores:\n  - id: s1\n    timezone: Europe/Londn\n")
    assert main([*command, "-c", str(path)]) == 2
    err = capsys.readouterr().err
    assert err == (f"aislewatch: {path}: line 3: stores[0].timezone (value: 'Europe/Londn'): unknown time zone "
                   "'Europe/Londn': use an IANA name such as Europe/London or UTC\n")


@pytest.mark.parametrize("command", [["run"], ["infer"], ["alerts"]], ids=" ".join)
def test_roles_that_need_the_model_refuse_a_missing_one_before_starting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    path = write(tmp_path, "model: {path: gone.keras}\ndatabase: {url: 'sqlite:///db/aw.db'}\n")
    assert main([*command, "-c", str(path)]) == 2
    assert capsys.readouterr().err == (f"aislewatch: {path}: model.path ({tmp_path / 'gone.keras'}): no such model "
                                       "file (a relative path in a config file is read from the file's folder)\n")
    assert not (tmp_path / "db").exists()  # refused before the database was opened


def test_report_refuses_an_output_folder_it_cannot_write(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a-file").write_text("")
    path = write(tmp_path, "reporting: {output_dir: a-file/reports}\ndatabase: {url: 'sqlite:///aw.db'}\n")
    assert main(["report", "-c", str(path)]) == 2
    assert "reporting.output_dir" in capsys.readouterr().err


def test_load_settings_still_raises_config_error_for_library_callers(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown time zone"):
        load_settings(write(tmp_path, "stores:\n  - id: s1\n    timezone: Mars/Olympus\n"))


def test_a_missing_video_file_camera_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "here.mp4").write_bytes(b"")
    text = ("stores:\n  - id: s1\n    cameras:\n      - {id: a, source: videos/here.mp4}\n"
            "      - {id: b, source: videos/gone.mp4}\n      - {id: c, source: videos/off.mp4, enabled: false}\n")
    code, err = check(write(tmp_path, text), capsys)
    assert code == 2
    (line,) = err.splitlines()
    assert f"stores[0].cameras[1].source ({tmp_path / 'videos' / 'gone.mp4'}): camera b: no such video file" in line

"""Configuration: defaults, YAML + environment, and errors that name the file, key, value and reason."""

from __future__ import annotations

import base64
from datetime import timedelta
from pathlib import Path

import pytest

from common.app.cli import main
from common.settings import BusKind, ConfigError, load_settings

GOOD = """
stores:
  - id: store-1
    name: High Street
    cameras:
      - id: cam-1
        source: rtsp://192.0.2.10/stream1
        fps: 15
        motion:
          min_area: 0.01
          masks: [[[0, 0], [0.2, 0], [0.2, 0.2]]]
alerts:
  n_of_m: [2, 3]
  cooldown_s: 30
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "aislewatch.yaml"
    path.write_text(text)
    return path


def test_defaults_are_embedded_mode() -> None:
    settings = load_settings(None)
    assert settings.bus.kind == BusKind.INPROCESS
    assert settings.database.url.startswith("sqlite:///")
    assert settings.inference.max_batch_size >= 1


def test_yaml_is_read(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, GOOD))
    store, camera = settings.camera("cam-1")
    assert store.name == "High Street"
    assert camera.motion.min_area == 0.01
    assert camera.name == "cam-1"  # defaults to the id
    assert settings.alerts.n_of_m == (2, 3)


def test_environment_overrides_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AISLEWATCH__ALERTS__COOLDOWN_S", "99")
    monkeypatch.setenv("AISLEWATCH__BUS__KIND", "kafka")
    settings = load_settings(write(tmp_path, GOOD))
    assert settings.alerts.cooldown_s == 99
    assert settings.bus.kind == BusKind.KAFKA


def test_password_from_environment_is_merged_but_not_in_yaml(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AISLEWATCH__DATABASE__URL", "postgresql+psycopg2://aw@db.internal/aislewatch")
    monkeypatch.setenv("AISLEWATCH__DATABASE__PASSWORD", "s3cret")
    settings = load_settings(None)
    assert "s3cret" in settings.database_url()
    assert "s3cret" not in repr(settings.database)


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        ("alerts:\n  n_of_m: [4, 3]\n", ["line 2", "alerts.n_of_m", "N=4, M=3"]),
        ("alerts:\n  cooldwn_s: 3\n", ["line 2", "alerts.cooldwn_s", "unknown key"]),
        ("inference:\n  max_batch_size: 0\n", ["inference.max_batch_size", "value: 0", "greater than or equal to 1"]),
        (
            "stores:\n  - id: s\n    cameras:\n      - id: c\n        source: x\n        fps: -1\n",
            ["line 6", "stores[0].cameras[0].fps", "value: -1", "greater than 0"],
        ),
        (
            "stores:\n  - id: s\n    cameras:\n      - {id: c, source: x, motion: {masks: [[[0, 0], [2, 0], [0, 1]]]}}\n",
            ["stores[0].cameras[0].motion.masks", "outside the frame"],
        ),
        ("stores:\n  - id: s\n    cameras:\n      - {id: c}\n", ["stores[0].cameras[0].source", "Field required"]),
        ("bus:\n  kind: rabbitmq\n", ["bus.kind", "rabbitmq"]),
        ("alerts: 5\n", ["line 1: alerts (value: 5): must be a section of keys, not a single value"]),
        ("- just\n- a list\n", ["top level must be a mapping"]),
        ("alerts: [unclosed\n", ["not valid YAML"]),
        ("notifications:\n  give_up_after: 30\n", ["notifications.give_up_after", "greater than or equal to 1 minute"]),
        ("notifications:\n  give_up_after: P60D\n", ["notifications.give_up_after", "less than or equal to 30 days"]),
        ("notifications:\n  retry_initial_s: 90\n  retry_max_s: 60\n", ["notifications", "must not exceed"]),
        ("notifications:\n  webhook_url: http://x\n", ["notifications.webhook_url", "unknown key"]),
        ("notifications:\n  webhook: {url: http://x, secret: 'whsec_not*base64'}\n",
         ["notifications.webhook.secret", "base64"]),
    ],
)
def test_broken_config_names_field_and_reason(tmp_path: Path, snippet: str, expected: list[str]) -> None:
    path = write(tmp_path, snippet)
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    message = str(info.value)
    assert str(path) in message
    for fragment in expected:
        assert fragment in message


def test_duplicate_camera_ids_are_refused(tmp_path: Path) -> None:
    text = "stores:\n  - id: a\n    cameras: [{id: c, source: x}]\n  - id: b\n    cameras: [{id: c, source: y}]\n"
    with pytest.raises(ConfigError, match="camera id 'c' is used twice"):
        load_settings(write(tmp_path, text))


def test_credentials_are_not_echoed_in_config_errors(tmp_path: Path) -> None:
    text = "stores:\n  - id: a\n    cameras:\n      - {id: c, source: 'rtsp://admin:hunter2@10.0.0.5/s', fps: 0}\n"
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text))
    assert "hunter2" not in str(info.value)


def test_config_check_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "check", str(write(tmp_path, GOOD))]) == 0
    out = capsys.readouterr().out
    assert "1 camera" in out and "no cameras" not in out
    assert main(["config", "check", str(write(tmp_path, "{}\n"))]) == 0  # valid: the defaults
    assert "note: no cameras: nothing will be watched" in capsys.readouterr().out
    assert main(["config", "check", str(write(tmp_path, "alerts:\n  cooldown_s: -5\n"))]) == 2
    err = capsys.readouterr().err
    assert "alerts.cooldown_s" in err and "-5" in err


def test_camera_credentials_come_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = "stores:\n  - id: a\n    cameras:\n      - {id: c, source: 'rtsp://${CAM_USER}:${CAM_PASS}@10.0.0.5/s'}\n"
    monkeypatch.delenv("CAM_USER", raising=False)
    monkeypatch.delenv("CAM_PASS", raising=False)
    # only a process that opens the camera needs them: infer, alerts and db upgrade start without
    _, unresolved = load_settings(write(tmp_path, text)).camera("c")
    with pytest.raises(ValueError, match=r"camera c: .*CAM_USER, CAM_PASS"):
        unresolved.resolved_source()
    with pytest.raises(ConfigError, match=r"line 4: stores\[0\].cameras\[0\].source: .*CAM_USER, CAM_PASS"):
        load_settings(write(tmp_path, text), camera_credentials=True)
    monkeypatch.setenv("CAM_USER", "admin")
    monkeypatch.setenv("CAM_PASS", "hunter2")
    _, camera = load_settings(write(tmp_path, text), camera_credentials=True).camera("c")
    assert "hunter2" not in camera.source
    assert camera.resolved_source() == "rtsp://admin:hunter2@10.0.0.5/s"


@pytest.mark.parametrize("password", ["pa@ss-SECRET2", "pa/ss-SECRET3", "pa ss-SECRET4", "p%40ss:SECRET5"])
def test_a_resolved_camera_password_never_shows_whatever_it_holds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, password: str
) -> None:
    from common.redaction import redact

    monkeypatch.setenv("CAM_PASS", password)
    text = "stores:\n  - id: a\n    cameras:\n      - {id: c, source: 'rtsp://admin:${CAM_PASS}@127.0.0.1/s'}\n"
    _, camera = load_settings(write(tmp_path, text), camera_credentials=True).camera("c")
    url = camera.resolved_source()
    for shown in (redact(url), redact(f"cannot open {url}: timed out"), redact(f"[{url}]")):
        assert "SECRET" not in shown and "127.0.0.1/s" in shown


def test_config_check_names_camera_variables_this_shell_lacks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("CAM_PASS_UNSET", raising=False)
    text = "stores:\n  - id: a\n    cameras:\n      - {id: c, source: 'rtsp://u:${CAM_PASS_UNSET}@10.0.0.5/s'}\n"
    assert main(["config", "check", str(write(tmp_path, text))]) == 0
    assert "camera c needs CAM_PASS_UNSET" in capsys.readouterr().out


def test_secrets_are_read_from_secret_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "aislewatch__database__password").write_text("from-a-file")
    monkeypatch.setenv("AISLEWATCH_SECRETS_DIR", str(secrets))
    monkeypatch.setenv("AISLEWATCH__DATABASE__URL", "postgresql+psycopg2://aw@db/aislewatch")
    assert load_settings(None).database_url() == "postgresql+psycopg2://aw:from-a-file@db/aislewatch"


def test_webhook_secret_from_the_environment_or_a_secret_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = b"\x00\x10 signing key \xfe"
    whsec = "whsec_" + base64.b64encode(raw).decode()
    monkeypatch.setenv("AISLEWATCH__NOTIFICATIONS__WEBHOOK__SECRET", whsec)
    webhook = load_settings(write(tmp_path, "notifications:\n  webhook: {url: 'https://desk.test/hook'}\n"))
    assert webhook.notifications.webhook.signing_key() == raw  # the whsec_ form is decoded
    assert whsec not in repr(webhook.notifications) and whsec not in str(webhook.model_dump())
    monkeypatch.delenv("AISLEWATCH__NOTIFICATIONS__WEBHOOK__SECRET")

    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "aislewatch__notifications__webhook__secret").write_text("plain-text-key")
    monkeypatch.setenv("AISLEWATCH_SECRETS_DIR", str(secrets))
    assert load_settings(None).notifications.webhook.signing_key() == b"plain-text-key"  # other text as is


def test_give_up_after_accepts_durations() -> None:
    assert load_settings(None).notifications.give_up_after == timedelta(hours=24)
    for value, expected in [("PT6H", timedelta(hours=6)), (7200, timedelta(hours=2)), ("00:30:00", timedelta(minutes=30))]:
        settings = load_settings(overrides={"notifications": {"give_up_after": value}})
        assert settings.notifications.give_up_after == expected


def test_redaction_is_one_rule_for_logs_and_config_errors() -> None:
    from common.redaction import redact

    for url in ("rtsp://admin:s3cret@10.0.0.5/stream1", "rtsp://:s3cret@cam/1", "postgresql://aw:p@ss@db/aw"):
        assert "s3cret" not in redact(url) and "p@ss" not in redact(url) and "***@" in redact(url)
    assert redact("http://host/path?token=abc&x=1") == "http://host/path?token=***&x=1"
    assert redact("rtsp://10.0.0.5/stream1") == "rtsp://10.0.0.5/stream1"  # nothing to hide, nothing changed
    with pytest.raises(ConfigError) as info:
        load_settings(None, overrides={"stores": [{"id": "sasl://u:s3cret@h"}]})  # not a valid store id
    assert "s3cret" not in str(info.value) and "***@" in str(info.value)


def test_the_alert_threshold_is_resolved_in_one_place() -> None:
    calibrated = 0.37
    assert load_settings(None).alert_threshold(calibrated) == 0.37
    assert load_settings(None, overrides={"model": {"threshold": 0.6}}).alert_threshold(calibrated) == 0.6
    both = load_settings(None, overrides={"model": {"threshold": 0.6}, "alerts": {"threshold": 0.0}})
    assert both.alert_threshold(calibrated) == 0.0


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("AISLEWATCH__ALERTS__COOLDOWN_S", "abc", "environment variable AISLEWATCH__ALERTS__COOLDOWN_S: alerts.cooldown_s"),
        ("AISLEWATCH__ALERTS__COOLDOWNS", "5", "environment variable AISLEWATCH__ALERTS__COOLDOWNS: alerts.cooldowns"),
    ],
)
def test_a_bad_environment_override_is_blamed_on_its_variable_not_a_line_of_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("stores:\n  - id: s1\nalerts:\n  threshold: 0.5\n")
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as info:
        load_settings(config)
    problem = next(p for p in info.value.problems if "alerts.cooldown" in p)
    assert problem.startswith(expected), problem
    assert "line " not in problem


def test_a_bad_value_in_the_file_is_still_blamed_on_its_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("stores:\n  - id: s1\nalerts:\n  cooldown_s: abc\n")
    monkeypatch.setenv("AISLEWATCH__ALERTS__THRESHOLD", "0.5")  # another section's override changes nothing
    with pytest.raises(ConfigError) as info:
        load_settings(config)
    assert any(p.startswith("line 4: alerts.cooldown_s") for p in info.value.problems), info.value.problems

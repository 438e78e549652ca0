"""The deploy files run as written: their aislewatch commands and AISLEWATCH__ variables exist in the program
(introspected from the CLI parser and the settings model, on every compose and Kubernetes file there is),
each role gets only the secrets it uses, the configs they carry pass ``config check`` in the image's
working directory, the documented reload uses what the image has, and the build context leaves out the
virtual environment, build outputs, caches and secrets."""

from __future__ import annotations

import fnmatch
import re
import shlex
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from common.app.cli import main
from tests.unit.deploy.deploy_check import (
    DEPLOY,
    ROOT,
    cli_problem,
    container_commands,
    documented_commands,
    env_names,
    is_compose,
    problems,
    setting_problem,
    yaml_documents,
)


def test_every_command_and_variable_in_the_deploy_files_exists_in_the_program() -> None:
    commands = container_commands(DEPLOY)
    roles = {argv[0] for _, argv, _ in commands}
    assert {"ingest", "infer", "alerts", "report", "desk", "db"} <= roles  # compose and Kubernetes both found
    assert any(w.startswith("compose") for w, _, _ in commands) and any(w.startswith("k8s/") for w, _, _ in commands)
    assert len(documented_commands(DEPLOY)) >= 5
    assert len({name for _, name in env_names(DEPLOY)}) >= 15
    assert problems(DEPLOY) == []


def doctored_copy(tmp_path: Path, edits: dict[str, list[tuple[str, str]]]) -> Path:
    copy = tmp_path / "deploy"
    shutil.copytree(DEPLOY, copy, ignore=shutil.ignore_patterns("lib", "secrets"))
    for name, replacements in edits.items():
        path = copy / name
        text = path.read_text(encoding="utf-8")
        for old, new in replacements:
            assert old in text, (name, old)  # the doctoring must really change the file
            text = text.replace(old, new, 1)
        path.write_text(text, encoding="utf-8")
    return copy


def test_a_typo_in_a_deploy_file_is_caught(tmp_path: Path) -> None:
    copy = doctored_copy(tmp_path, {
        "k8s/30-infer.yaml": [('args: ["infer"]', 'args: ["infre"]')],
        "compose.yaml": [('command: ["report", "--schedule"]', 'command: ["report", "--schedul"]'),
                         ("AISLEWATCH__DESK__TRUST_FORWARDED", "AISLEWATCH__DESK__TRUST_FORWARD")],
        "k8s/10-config.yaml": [("AISLEWATCH__BUS__KIND:", "AISLEWATCH__BUS__KINDS:"),
                               ("AISLEWATCH_CONFIG:", "AISLEWATCH_CONFIGS:")],
        "Dockerfile": [("AISLEWATCH__SERVICE__EVIDENCE_DIR=", "AISLEWATCH__SERVICES__EVIDENCE_DIR=")],
        "README.md": [("-- aislewatch users add admin --role admin", "-- aislewatch users add admin --rol admin")],
    })
    found = "\n".join(problems(copy))
    assert "k8s/30-infer.yaml container infer: aislewatch infre: " in found and "invalid choice: 'infre'" in found
    assert "compose.yaml service report: aislewatch report --schedul: " in found
    assert "AISLEWATCH__DESK__TRUST_FORWARD: no setting desk.trust_forward" in found
    assert "AISLEWATCH__BUS__KINDS: no setting bus.kinds" in found
    assert "AISLEWATCH_CONFIGS is read neither by AisleWatch nor by a compose file" in found
    assert "Dockerfile:" in found and "AISLEWATCH__SERVICES__EVIDENCE_DIR: no setting services" in found
    assert "README.md:" in found and "users add admin --rol admin" in found
    assert len(problems(copy)) == 7


def test_a_new_file_is_covered_too(tmp_path: Path) -> None:
    copy = doctored_copy(tmp_path, {})
    (copy / "k8s" / "99-extra.yaml").write_text(yaml.safe_dump({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "x"},
        "spec": {"template": {"spec": {"containers": [{
            "name": "x", "image": "registry.example.com/aislewatch-gpu:0.1.0",
            "command": ["/usr/bin/tini", "--", "aislewatch"], "args": ["infer", "--wrokers", "2"],
            "env": [{"name": "AISLEWATCH__MODEL__DEVISE", "value": "gpu"}]}]}}}}))
    found = problems(copy)
    assert any("k8s/99-extra.yaml container x: aislewatch infer --wrokers 2" in p for p in found), found
    assert any("AISLEWATCH__MODEL__DEVISE: no setting model.devise" in p for p in found), found


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("AISLEWATCH__BUS__BOOTSTRAP_SERVERS", None),
        ("AISLEWATCH__NOTIFICATIONS__WEBHOOK__SECRET", None),
        ("AISLEWATCH__STORES", None),
        ("AISLEWATCH__DATABASE__PASSWORDS", "no setting database.passwords"),
        ("AISLEWATCH__DATABASE__URL__HOST", "database.url is a value, it has no 'host'"),
        ("AISLEWATCH__STORES__ID", "stores is a value"),
    ],
)
def test_setting_names_are_walked_in_the_settings_model(name: str, expected: str | None) -> None:
    reason = setting_problem(name)
    assert reason == expected if expected is None else (reason is not None and expected in reason)


@pytest.mark.parametrize(
    ("argv", "ok"),
    [(["db", "upgrade"], True), (["users", "add", "x", "--role", "admin"], True), (["--help"], True),
     (["db", "upgrad"], False), (["infer", "--workers", "two"], False), (["desk", "--port", "1"], False)],
)
def test_command_lines_are_checked_by_the_clis_own_parser(argv: list[str], ok: bool) -> None:
    assert (cli_problem(argv) is None) == ok


# -- secrets: each role reads only the ones it uses ---------------------------------------------------------

# role -> the kinds of secret it may read: the database password, notification credentials (SMTP password,
# webhook signing secret), camera credentials.  Camera ${VAR} placeholders are resolved by ingest alone.
ALLOWED = {
    "ingest": {"cameras"},
    "infer": {"database"},
    "alerts": {"database", "notifications"},
    "report": {"database", "notifications"},
    "desk": {"database"},
    "db": {"database"},
}


def secret_kind(name: str) -> str:
    if "camera" in name or re.search(r"store-[\w-]+\.env$", name):
        return "cameras"
    if "notification" in name:
        return "notifications"
    if name.endswith("aislewatch.env") or name.endswith("-db"):
        return "database"
    raise AssertionError(f"a secret of unknown kind: {name}")


def secrets_read(where: str, unit: dict[str, Any]) -> set[str]:
    """The secret files (compose) or Secrets (Kubernetes) a service or container reads into its environment."""
    names: set[str] = set()
    if where.startswith("compose"):
        for entry in unit.get("env_file") or []:
            names.add(entry["path"] if isinstance(entry, dict) else entry)
        return names
    for source in unit.get("envFrom") or []:
        if "secretRef" in source:
            names.add(source["secretRef"]["name"])
    for variable in unit.get("env") or []:
        ref = (variable.get("valueFrom") or {}).get("secretKeyRef")
        if ref:
            names.add(ref["name"])
    return names


def test_each_role_reads_only_the_secrets_it_uses() -> None:
    seen = set()
    for where, argv, unit in container_commands(DEPLOY):
        role = argv[0]
        kinds = {secret_kind(name) for name in secrets_read(where, unit)}
        assert kinds <= ALLOWED[role], f"{where} ({role}) reads {kinds - ALLOWED[role]} secrets it does not use"
        seen |= {(role, kind) for kind in kinds}
    # and those that need them get them: cameras for ingest, notifications for alerts and the scheduled report
    for needed in [("ingest", "cameras"), ("alerts", "notifications"), ("report", "notifications"),
                   ("infer", "database"), ("desk", "database")]:
        assert needed in seen, needed


def test_camera_placeholders_are_resolved_by_ingest_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "chain.yaml"
    path.write_text("stores:\n  - id: s\n    cameras: [{id: c, source: 'rtsp://${CAM_USER}:${CAM_PASSWORD}@10.0.0.5/s'}]\n"
                    f"database: {{url: 'sqlite:///{tmp_path}/aw.db'}}\n")
    monkeypatch.delenv("CAM_USER", raising=False)
    monkeypatch.delenv("CAM_PASSWORD", raising=False)
    assert main(["db", "upgrade", "-c", str(path)]) == 0  # the other roles start without camera credentials
    capsys.readouterr()
    assert main(["ingest", "-c", str(path)]) == 2
    err = capsys.readouterr().err
    assert "CAM_USER, CAM_PASSWORD used in the source are not set (this process opens the camera)" in err


# -- the configs the deploy files carry work in the image --------------------------------------------------


def dockerfile_environment() -> tuple[dict[str, str], str]:
    """The AISLEWATCH variables the image sets (ENV lines, every stage) and its working directory."""
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    env: dict[str, str] = {}
    workdir = "/"
    for line in text.splitlines():
        words = line.strip().split(None, 1)
        if len(words) == 2 and words[0] == "ENV":
            for pair in shlex.split(words[1]):
                key, _, value = pair.partition("=")
                if key.startswith("AISLEWATCH"):
                    env[key] = value
        elif len(words) == 2 and words[0] == "WORKDIR":
            workdir = words[1]
    return env, workdir


def deployed_configs() -> list[tuple[str, str]]:
    """(where, YAML text) of the example config and of every config embedded in a compose or ConfigMap file."""
    configs = [("config/aislewatch.example.yaml", (DEPLOY / "config" / "aislewatch.example.yaml").read_text())]
    for path, doc in yaml_documents(DEPLOY):
        if is_compose(doc):
            for name, config in (doc.get("configs") or {}).items():
                if "content" in config:
                    configs.append((f"{path.name} configs.{name}", config["content"]))
        elif doc.get("kind") == "ConfigMap":
            for key, value in (doc.get("data") or {}).items():
                if key.endswith((".yaml", ".yml")):
                    configs.append((f"{path.name} {doc['metadata']['name']}/{key}", value))
    return configs


@pytest.mark.parametrize(("where", "text"), deployed_configs(), ids=[w for w, _ in deployed_configs()])
def test_the_deployed_configs_pass_config_check_in_the_images_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], where: str, text: str
) -> None:
    env, workdir = dockerfile_environment()
    assert workdir == "/var/lib/aislewatch" and env["AISLEWATCH_CONFIG"] == "/etc/aislewatch/aislewatch.yaml"
    image = tmp_path / "image"
    config = image / env["AISLEWATCH_CONFIG"].lstrip("/")  # mounted read-only there
    config.parent.mkdir(parents=True)
    config.write_text(text, encoding="utf-8")
    home = image / workdir.lstrip("/")
    home.mkdir(parents=True)
    for key, value in env.items():
        monkeypatch.setenv(key, str(image / value.lstrip("/")) if value.startswith("/var/lib/aislewatch") else value)
    monkeypatch.chdir(home)
    assert main(["config", "check", str(config)]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "OK" in out and "model input (20, 64, 64, 3)" in out


# -- the documented reload, the build context -----------------------------------------------------------

# What the image has besides aislewatch: Debian's essential packages (sh is dash, with kill as a builtin),
# Python and tini.  A binary of another package must be installed by the Dockerfile.
IMAGE_BINARIES = {"aislewatch", "sh", "python", "python3", "tini", "/usr/bin/tini"}
PACKAGE_OF = {"kill": "procps", "ps": "procps", "pkill": "procps", "curl": "curl", "wget": "wget"}


def exec_commands() -> list[tuple[str, str]]:
    """(where, executable) of every ``kubectl exec … -- CMD`` and ``docker compose exec SERVICE CMD``."""
    found = []
    for path in [*DEPLOY.rglob("*.yaml"), DEPLOY / "README.md", ROOT / "README.md"]:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for match in re.finditer(r"kubectl\b.*?\bexec\b.*?\s--\s+(\S+)", line):
                found.append((f"{path.relative_to(ROOT)}:{number}", match.group(1)))
            for match in re.finditer(r"docker compose\b.*?\sexec\s+(?:-\S+\s+)*\S+\s+(\S+)", line):
                found.append((f"{path.relative_to(ROOT)}:{number}", match.group(1)))
    return found


def test_documented_exec_commands_use_what_the_image_has() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    commands = exec_commands()  # the deploy files and both READMEs
    assert any(c == "sh" for _, c in commands)  # the ingest reload
    assert any(w.startswith("README.md:") for w, _ in commands)  # the root README's reload recipe is checked too
    for where, command in commands:
        package = PACKAGE_OF.get(command)
        assert command in IMAGE_BINARIES or (package and re.search(rf"install[^\n]*\b{package}\b", dockerfile)), (
            f"{where}: {command} is not in the image"
        )


def dockerignore_patterns() -> list[str]:
    path = ROOT / ".dockerignore"
    assert path.is_file(), "the build context (the repository root) needs a .dockerignore"
    return [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


def ignored(relative: str, patterns: list[str]) -> bool:
    """Docker's rule, near enough: a pattern matches the path or a folder above it (``**`` any depth)."""
    parts = relative.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        plain = pattern.replace("**/", "")
        if any(fnmatch.fnmatch(p, pattern) or fnmatch.fnmatch(p.rsplit("/", 1)[-1], plain) for p in prefixes):
            return True
    return False


@pytest.mark.parametrize(
    "path", [".venv/lib/python3.11/site-packages/x.py", "build/demo/summary.json", ".git/HEAD",
             "common/__pycache__/settings.cpython-311.pyc", "deploy/secrets/aislewatch.env", ".mypy_cache/x",
             "deploy/kafka/lib/kafka.jar", "aislewatch.egg-info/PKG-INFO"],
)
def test_the_build_context_leaves_out_local_state(path: str) -> None:
    assert ignored(path, dockerignore_patterns())


def test_the_build_context_keeps_what_the_image_copies() -> None:
    patterns = dockerignore_patterns()
    sources = []
    for line in (DEPLOY / "Dockerfile").read_text().splitlines():
        words = line.split()
        if words and words[0] == "COPY" and not any(w.startswith("--from") for w in words):
            sources += [w for w in words[1:-1] if not w.startswith("--")]
    assert "pyproject.toml" in sources and "common" in sources
    for source in sources:
        assert (ROOT / source).exists() and not ignored(source, patterns), source
    assert not ignored("inference/bundled/convlstm.keras", patterns)  # the default model travels with the package

"""What the deploy files ask of AisleWatch, checked against the program itself: every ``aislewatch`` command
line (container commands, and those written in comments and docs) against the CLI's own argparse parser,
and every ``AISLEWATCH__…`` variable against the settings model.  A function per check, over any folder,
so a test can run them on a doctored copy and see them fail."""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from common.app.cli import build_parser
from common.settings import Settings

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"
PACKAGES = ("common", "ingest", "inference", "alerts", "reporting")
TEXT_SUFFIXES = {".yaml", ".yml", ".md", ".conf", ".env", ".txt", ""}
SKIP_DIRS = {"lib", "secrets"}  # the Kafka jars of the tests; local secrets


def text_files(deploy: Path) -> list[Path]:
    """Every text file under ``deploy`` (compose, Kubernetes, Dockerfile, docs, config), the Kafka jars excepted."""
    files = []
    for path in sorted(deploy.rglob("*")):
        if path.is_file() and not SKIP_DIRS & set(path.relative_to(deploy).parts[:-1]) and (
            path.suffix in TEXT_SUFFIXES or path.name.startswith("Dockerfile")
        ):
            files.append(path)
    return files


def yaml_documents(deploy: Path) -> Iterator[tuple[Path, Any]]:
    for path in text_files(deploy):
        if path.suffix in (".yaml", ".yml"):
            for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
                if doc:
                    yield path, doc


def is_compose(doc: Any) -> bool:
    return isinstance(doc, dict) and isinstance(doc.get("services"), dict)


def _is_aislewatch_image(image: Any) -> bool:
    return isinstance(image, str) and re.search(r"(^|[/:{-])aislewatch(:|$|[-_]\w*:)", image) is not None


def _argv(command: Any) -> list[str]:
    if command is None:
        return []
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def _after_entrypoint(command: list[str]) -> list[str] | None:
    """The aislewatch arguments of an explicit command (``aislewatch …``, ``tini -- aislewatch …``), or None."""
    for i, part in enumerate(command):
        if Path(part).name == "aislewatch":
            return command[i + 1 :]
    return None


def _containers(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                yield from (c for c in value if isinstance(c, dict))
            else:
                yield from _containers(value)
    elif isinstance(node, list):
        for item in node:
            yield from _containers(item)


def container_commands(deploy: Path) -> list[tuple[str, list[str], dict[str, Any]]]:
    """(where, aislewatch argv, the service or container) of every compose service and Kubernetes container
    that runs the AisleWatch image."""
    found = []
    for path, doc in yaml_documents(deploy):
        rel = path.relative_to(deploy)
        if is_compose(doc):
            for name, service in doc["services"].items():
                if not (_is_aislewatch_image(service.get("image")) or "build" in service):
                    continue
                entry = _argv(service.get("entrypoint"))
                argv = _argv(service.get("command"))
                if entry:
                    after = _after_entrypoint(entry)
                    if after is None:
                        continue
                    argv = after + argv
                if argv:
                    found.append((f"{rel} service {name}", argv, service))
        else:
            for container in _containers(doc):
                if not _is_aislewatch_image(container.get("image")):
                    continue
                args = _argv(container.get("args"))
                if "command" in container:
                    after = _after_entrypoint(_argv(container["command"]))
                    if after is None:
                        continue
                    args = after + args
                if args:
                    found.append((f"{rel} container {container.get('name')}", args, container))
    return found


# Where a command line for the image is written in prose, comments and shell examples.
_DOCUMENTED = [
    re.compile(r"`aislewatch\s+([^`]+)`"),  # `aislewatch report --schedule`
    re.compile(r"(?:^|\s)--\s+aislewatch\s+(.+)$"),  # kubectl exec … -- aislewatch users add …
    re.compile(r"(?:^#|:)\s+aislewatch\s+([a-z].*)$"),  # # aislewatch config check FILE
    re.compile(r"docker\s+run\s.*?\s(?:[\w.-]+/)*aislewatch:\S+\s+(.+)$"),  # docker run … aislewatch:0.1.0 config check …
]
_COMPOSE_RUN = re.compile(r"docker\s+compose\s.*?\s(?:run|exec)\s+(?:--?[\w-]+\s+)*([\w.-]+)\s+(.+)$")
_SHELL_END = {"|", "||", "&&", ";", ">", ">>", "2>&1", "\\"}


def _shell_words(text: str) -> list[str]:
    text = text.split("`", 1)[0]
    try:
        words = shlex.split(text, comments=True)
    except ValueError:
        words = text.split()
    argv = []
    for word in words:
        if word in _SHELL_END or word.startswith(("(", "#")):
            break
        argv.append(word)
    return argv


def documented_commands(deploy: Path) -> list[tuple[str, list[str]]]:
    """(where, argv) of every aislewatch command line written in the deploy files' comments and docs,
    including ``docker compose run/exec SERVICE ARGS`` of a service whose entrypoint is aislewatch."""
    compose_services = {name for path, doc in yaml_documents(deploy) if is_compose(doc)
                        for name, service in doc["services"].items()
                        if _is_aislewatch_image(service.get("image")) or "build" in service}
    found = []
    for path in text_files(deploy):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            where = f"{path.relative_to(deploy)}:{number}"
            for pattern in _DOCUMENTED:
                for match in pattern.finditer(line):
                    argv = _shell_words(match.group(1))
                    if argv:
                        found.append((where, argv))
            run = _COMPOSE_RUN.search(line)
            if run and run.group(1) in compose_services:
                argv = _shell_words(run.group(2))
                if argv and argv[0] != "aislewatch":  # `exec SERVICE aislewatch …` is caught above
                    found.append((where, argv))
    return found


def _strict(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The parser and every subcommand's without abbreviated options: a deploy file writes ``--schedule`` in
    full, so that a later option sharing its prefix cannot change what it means."""
    parser.allow_abbrev = False
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _strict(sub)
    return parser


def cli_problem(argv: list[str]) -> str | None:
    """Why the aislewatch CLI refuses ``argv`` (unknown command, option or argument), or None."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            _strict(build_parser()).parse_args(argv)
    except SystemExit as exc:
        if exc.code not in (0, None):
            return err.getvalue().strip().splitlines()[-1]
    return None


ENV_SETTING = re.compile(r"\bAISLEWATCH__[A-Za-z0-9_]+")
ENV_OTHER = re.compile(r"\bAISLEWATCH_[A-Z][A-Z0-9_]*")


def env_names(deploy: Path) -> list[tuple[str, str]]:
    """(where, name) of every ``AISLEWATCH__…`` and ``AISLEWATCH_…`` name in the deploy files."""
    found = []
    for path in text_files(deploy):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for match in ENV_SETTING.finditer(line):
                found.append((f"{path.relative_to(deploy)}:{number}", match.group(0)))
            for match in ENV_OTHER.finditer(line):
                found.append((f"{path.relative_to(deploy)}:{number}", match.group(0)))
    return found


def _models(annotation: Any) -> list[type[BaseModel]]:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _models(typing.get_args(annotation)[0])
    if origin is not None and origin is not list:
        return [m for arg in typing.get_args(annotation) for m in _models(arg)]
    return [annotation] if isinstance(annotation, type) and issubclass(annotation, BaseModel) else []


def setting_problem(name: str) -> str | None:
    """Why ``AISLEWATCH__SECTION__FIELD`` names no setting (walking the settings model), or None."""
    parts = name.removeprefix("AISLEWATCH__").lower().split("__")
    model: type[BaseModel] = Settings
    for i, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            known = ", ".join(sorted(model.model_fields))
            return f"{name}: no setting {'.'.join(parts[: i + 1])} (known here: {known})"
        if i < len(parts) - 1:
            models = _models(field.annotation)
            if not models:
                return f"{name}: {'.'.join(parts[: i + 1])} is a value, it has no {parts[i + 1]!r}"
            model = models[0]
    return None


def program_variables() -> set[str]:
    """The ``AISLEWATCH_…`` (single underscore) variables the program itself reads: named in its source."""
    names: set[str] = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            names.update(ENV_OTHER.findall(path.read_text(encoding="utf-8")))
    return names


def compose_interpolations(deploy: Path) -> set[str]:
    """Variables compose files fill in themselves (``${NAME:-default}``)."""
    names: set[str] = set()
    for path in text_files(deploy):
        names.update(re.findall(r"\$\{(AISLEWATCH_[A-Z0-9_]+)", path.read_text(encoding="utf-8")))
    return names


def problems(deploy: Path) -> list[str]:
    """Every mismatch between the deploy files under ``deploy`` and the program."""
    found = []
    for where, argv, _ in container_commands(deploy):
        reason = cli_problem(argv)
        if reason:
            found.append(f"{where}: aislewatch {shlex.join(argv)}: {reason}")
    for where, argv in documented_commands(deploy):
        reason = cli_problem(argv)
        if reason:
            found.append(f"{where}: aislewatch {shlex.join(argv)}: {reason}")
    known = program_variables() | compose_interpolations(deploy)
    for where, name in env_names(deploy):
        if name.startswith("AISLEWATCH__"):
            reason = setting_problem(name)
            if reason:
                found.append(f"{where}: {reason}")
        elif name not in known:
            found.append(f"{where}: {name} is read neither by AisleWatch nor by a compose file")
    return found

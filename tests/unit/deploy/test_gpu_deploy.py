"""Every file under deploy/ that names the GPU image or a GPU resource agrees with the Dockerfile's gpu target.

The GPU image is the Dockerfile's ``gpu`` target (``.[gpu]``: TensorFlow's CUDA build), tagged
``aislewatch:<version>-gpu``; the default target stays the CPU one.  A container of the GPU image must get a
GPU (``nvidia.com/gpu`` on Kubernetes, a device reservation in compose) and a GPU must only be given to the
GPU image, or the worker either fails at start (model.device gpu) or leaves the GPU idle.  Its AISLEWATCH__
variables must be real settings with valid values.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from common.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
GPU_TAG = f"{VERSION}-gpu"
IMAGE_REF = re.compile(r"(?<![\w.])aislewatch:(\d[\w.\-]*)")
GPU_RESOURCE = re.compile(r"nvidia\.com/gpu\b|capabilities:\s*\[\s*gpu\s*\]|driver:\s*nvidia")


def deploy_files() -> list[Path]:
    skip = {"lib"}  # deploy/kafka/lib: downloaded jars
    return sorted(p for p in DEPLOY.rglob("*") if p.is_file() and not skip & set(p.relative_to(DEPLOY).parts)
                  and p.suffix not in (".jar", ".pyc"))


def stages() -> list[tuple[str, str, str]]:
    """(name, base, body) of each Dockerfile stage, in order."""
    text = (DEPLOY / "Dockerfile").read_text()
    found = list(re.finditer(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?\s*$", text, re.M | re.I))
    return [(m.group(2) or "", m.group(1), text[m.end(): found[i + 1].start() if i + 1 < len(found) else len(text)])
            for i, m in enumerate(found)]


def stage(name: str) -> tuple[str, str]:
    (found,) = [(base, body) for n, base, body in stages() if n == name]
    return found


def python_env_of(name: str) -> str:
    """The extra installed into the venv that stage ``name`` copies in."""
    _, body = stage(name)
    (source,) = re.findall(r"COPY --from=(\S+) /opt/aislewatch /opt/aislewatch", body)
    (extra,) = re.findall(r"pip install '\.\[(\w+)\]'", stage(source)[1])
    return extra


def setting_field(name: str) -> Any:
    """The settings field an AISLEWATCH__SECTION__KEY variable sets (AssertionError when there is none)."""
    assert name.startswith("AISLEWATCH__"), name
    model: type[BaseModel] = Settings
    parts = name.removeprefix("AISLEWATCH__").lower().split("__")
    for depth, part in enumerate(parts):
        fields = model.model_fields
        assert part in fields, f"{name}: {'.'.join(parts[:depth + 1])} is no setting"
        annotation = fields[part].annotation
        if depth < len(parts) - 1:
            assert isinstance(annotation, type) and issubclass(annotation, BaseModel), f"{name}: not a section"
            model = annotation
    return fields[part]


def check_env(env: dict[str, str], monkeypatch: pytest.MonkeyPatch, where: str) -> Settings:
    """The AISLEWATCH__ variables are real settings and load; returns the settings they give."""
    with monkeypatch.context() as patch:
        for key, value in env.items():
            if key.startswith("AISLEWATCH__"):
                setting_field(key)
                patch.setenv(key, str(value))
        patch.delenv("AISLEWATCH_CONFIG", raising=False)
        return load_settings(None)


def test_the_dockerfile_has_a_gpu_target_and_the_cpu_one_stays_the_small_default() -> None:
    names = [name for name, _, _ in stages()]
    assert names[-1] == "cpu", "the last stage is what a plain `docker build` makes: it must be the CPU image"
    assert "gpu" in names
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert python_env_of("cpu") == "cpu" and python_env_of("gpu") == "gpu"
    assert any(r.startswith("tensorflow[and-cuda]") for r in extras["gpu"])
    assert all("and-cuda" not in r and "torch" not in r for r in extras["cpu"])
    assert stage("gpu")[0] == stage("cpu")[0] == "runtime"  # the same runtime image under both
    assert "AISLEWATCH__MODEL__DEVICE=gpu" in stage("gpu")[1] and "DEVICE" not in stage("cpu")[1]
    setting_field("AISLEWATCH__MODEL__DEVICE")
    header = (DEPLOY / "Dockerfile").read_text().split("\nFROM", 1)[0]
    assert f"--target gpu -t aislewatch:{GPU_TAG} ." in header and f"-t aislewatch:{VERSION} ." in header


def test_every_deploy_file_naming_the_gpu_image_uses_its_tag() -> None:
    named = 0
    for path in deploy_files():
        for tag in IMAGE_REF.findall(path.read_text(errors="replace")):
            if "gpu" in tag:
                named += 1
                assert tag == GPU_TAG, f"{path.relative_to(ROOT)}: aislewatch:{tag}, the gpu target is tagged {GPU_TAG}"
            else:
                assert tag == VERSION, f"{path.relative_to(ROOT)}: aislewatch:{tag}"
    assert named >= 3  # the Dockerfile's build line, compose, Kubernetes


def k8s_containers() -> list[tuple[Path, dict[str, Any], dict[str, Any]]]:
    out = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc["kind"] in ("Deployment", "StatefulSet", "Job", "CronJob"):
                spec = doc["spec"]["template"]["spec"] if doc["kind"] != "CronJob" else \
                    doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
                out.extend((path, spec, c) for c in spec["containers"])
    return out


def test_kubernetes_gives_gpus_to_the_gpu_image_only(monkeypatch: pytest.MonkeyPatch) -> None:
    gpu_pods = 0
    for path, pod, container in k8s_containers():
        where = f"{path.name}: container {container['name']}"
        gpu_image = container["image"].endswith(f":{GPU_TAG}")
        limits = container.get("resources", {}).get("limits", {})
        assert gpu_image == ("nvidia.com/gpu" in limits), f"{where}: the GPU image and a GPU go together"
        if not gpu_image:
            continue
        gpu_pods += 1
        assert int(limits["nvidia.com/gpu"]) >= 1
        requests = container["resources"].get("requests", {})
        assert requests.get("nvidia.com/gpu", limits["nvidia.com/gpu"]) == limits["nvidia.com/gpu"]
        assert pod["nodeSelector"] and any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
        assert container["args"] == ["infer"]
        env = {e["name"]: e["value"] for e in container["env"]}
        settings = check_env(env, monkeypatch, where)
        assert settings.model.device == "gpu"
        for key in ("GPU_MAX_BATCH_SIZE", "GPU_MAX_WAIT_MS"):
            assert f"AISLEWATCH__INFERENCE__{key}" in env, f"{where}: sets the GPU's {key.lower()}"
        batching = settings.inference.batching("gpu")
        assert batching.max_batch_size == int(env["AISLEWATCH__INFERENCE__GPU_MAX_BATCH_SIZE"]) > 32
        partitions = 12
        assert batching.consumers <= partitions
    assert gpu_pods == 1


def test_compose_reserves_a_gpu_for_the_gpu_image_only(monkeypatch: pytest.MonkeyPatch) -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    gpu_services = 0
    for name, service in compose["services"].items():
        image = str(service.get("image", ""))
        devices = service.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])
        wants_gpu = any("gpu" in d.get("capabilities", []) for d in devices)
        gpu_image = image.endswith(f":{GPU_TAG}}}") or image.endswith(f":{GPU_TAG}")
        assert gpu_image == wants_gpu, f"compose service {name}: the GPU image and a GPU reservation go together"
        if not gpu_image:
            assert service.get("build", {}).get("target") in (None, "cpu"), name
            continue
        gpu_services += 1
        assert service["build"]["target"] == "gpu" and service["build"]["dockerfile"] == "deploy/Dockerfile"
        assert service["profiles"] == ["gpu"]  # a host without a GPU starts the rest as before
        assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
        settings = check_env(service["environment"], monkeypatch, f"compose service {name}")
        assert settings.model.device == "gpu" and settings.bus.kind == "kafka"
        assert settings.inference.batching("gpu").max_batch_size > 32
    assert gpu_services == 1


def test_no_other_deploy_file_asks_for_a_gpu() -> None:
    """GPU resources appear only where the tests above check them (and in prose)."""
    checked = {DEPLOY / "compose.yaml", *(DEPLOY / "k8s").glob("*.yaml")}
    for path in deploy_files():
        if path in checked or path.suffix == ".md":
            continue
        assert not GPU_RESOURCE.search(path.read_text(errors="replace")), f"{path.relative_to(ROOT)} asks for a GPU"

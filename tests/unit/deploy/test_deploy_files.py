"""The deployment files parse, and the security desk is deployed as its docs say (no Docker or cluster needed)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"
K8S = sorted((DEPLOY / "k8s").glob("*.yaml"))


def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def k8s_objects() -> list[dict[str, Any]]:
    return [doc for path in K8S for doc in yaml.safe_load_all(path.read_text()) if doc]


def k8s_object(kind: str, name: str) -> dict[str, Any]:
    (found,) = [o for o in k8s_objects() if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


@pytest.mark.parametrize("path", [DEPLOY / "compose.yaml", *K8S], ids=lambda p: p.name)
def test_yaml_parses(path: Path) -> None:
    assert [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def test_compose_runs_two_desk_replicas_behind_the_proxy() -> None:
    services = compose()["services"]
    desk, proxy = services["desk"], services["desk-proxy"]

    assert desk["command"] == ["desk"]
    assert desk["environment"]["AISLEWATCH_CONFIG"] == "/etc/aislewatch/aislewatch.yaml"
    assert desk["deploy"]["replicas"] == 2
    assert desk["environment"]["AISLEWATCH__DESK__HOST"] == "0.0.0.0"
    assert desk["environment"]["AISLEWATCH__DESK__TRUST_FORWARDED"] == "true"
    assert "ports" not in desk  # only the proxy reaches it: that is what makes trusting its headers safe
    assert "8080/healthz" in " ".join(desk["healthcheck"]["test"])
    assert "kafka" not in desk["depends_on"] and "db-upgrade" in desk["depends_on"]

    assert proxy["image"].startswith("nginx:")
    assert any(str(p).endswith(":8080") for p in proxy["ports"])
    source = proxy["volumes"][0].split(":")[0]
    assert (DEPLOY / source).is_file()


def test_proxy_streams_server_sent_events_unbuffered() -> None:
    conf = (DEPLOY / "nginx" / "desk.conf").read_text()
    code = "\n".join(line.split("#", 1)[0] for line in conf.splitlines())
    stream = re.search(r"location ~ \^/\(api/\)\?stream\(/\|\$\) \{(.*?)\}", code, re.S)
    assert stream is not None
    assert "proxy_buffering off;" in stream.group(1)
    assert re.search(r"proxy_read_timeout (\d+)s;", stream.group(1)).group(1) == "3600"  # type: ignore[union-attr]
    for header in ("X-Forwarded-For", "X-Forwarded-Proto"):
        assert f"proxy_set_header {header} " in code
    assert "server desk:8080" in code


def test_k8s_desk_deployment_service_and_ingress() -> None:
    deployment = k8s_object("Deployment", "aislewatch-desk")
    spec = deployment["spec"]
    (container,) = spec["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}

    assert spec["replicas"] == 2
    assert container["args"] == ["desk"]
    assert container["ports"] == [{"name": "http", "containerPort": 8080}]
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert env["AISLEWATCH__DESK__HOST"] == "0.0.0.0" and env["AISLEWATCH__DESK__TRUST_FORWARDED"] == "true"

    service = k8s_object("Service", "aislewatch-desk")
    assert service["spec"]["selector"] == spec["template"]["metadata"]["labels"]
    assert service["spec"].get("sessionAffinity", "None") == "None"

    ingress = k8s_object("Ingress", "aislewatch-desk")
    notes = ingress["metadata"]["annotations"]
    assert notes["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    assert notes["nginx.ingress.kubernetes.io/proxy-read-timeout"] == "3600"
    assert not any("affinity" in key for key in notes)
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "aislewatch-desk", "port": {"name": "http"}}


def test_image_exposes_the_desk_port() -> None:
    exposed = [line.split()[1:] for line in (DEPLOY / "Dockerfile").read_text().splitlines()
               if line.startswith("EXPOSE")]
    assert ["9108", "8080"] in exposed

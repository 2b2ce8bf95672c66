"""One real kube-apiserver (+ etcd) per test run (package scope: stopped once this directory's tests are done),
with `kagiya serve` as its authentication, authorization and admission webhooks, an OIDC issuer stand-in and a real
slapd behind kagiya's providers, moto_server as AWS STS.

Start-up order (what an operator does on a fresh cluster): certificates and webhook configs from the kagiya CLI;
etcd; the apiserver; kagiya's namespace, ServiceAccount and exactly the RBAC rendered from `deploy/`; a token for
that ServiceAccount; `kagiya serve` watching the apiserver with nothing but that token; the
MutatingWebhookConfiguration pointing at kagiya with kagiya's CA.
"""

from __future__ import annotations

import base64
import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e_apiserver.cluster import ROOT, Apiserver, Cluster, Etcd, Kagiya, missing_parts
from tests.standins.oidc_issuer import OidcIssuer
from tests.support.moto import MotoServer
from tests.support.slapd import BASE_DN, GROUPS_DN, SERVICE_DN, SERVICE_PASSWORD, start_slapd

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: Static users (kagiya's token file): ops is a kagiya admin (policy API), dana a developer.
STATIC_USERS = {"ops": ("ops-token-e2e", "kagiya:admins"), "dana": ("dana-token-e2e", "dev")}
OIDC_AUDIENCE = "kubernetes"


def _stale_bound_supported() -> bool:
    """Whether this kagiya knows `kube.watch_stale_after_seconds` (the iam work adds it)."""
    from kagiya.config import load_settings
    from kagiya.errors import ConfigError

    try:
        load_settings(overrides={"kube": {"watch_stale_after_seconds": 10}}, env={})
    except ConfigError:
        return False
    return True


#: The stale-watch bound kagiya runs with in this suite (0: this kagiya has no such setting).
STALE_AFTER = 10 if _stale_bound_supported() else 0
#: kagiya's `kube.watch_seconds` here: the default (300). kagiya itself caps each watch request at half of
#: STALE_AFTER (5 s), so all through the suite its watches end and resume from their last resourceVersion (a bookmark,
#: when the kind changed); the real apiserver sends no bookmark on a watch whose kind does not change (none in 150 s
#: measured), and test_pod_index shows a quiet cluster never trips the bound with these defaults.
WATCH_SECONDS = 300
POLICY = """\
rules:
  - name: contractors-no-configmaps
    effect: deny
    groups: ["oidc:contractors"]
    verbs: ["*"]
    resources: ["configmaps"]
  - name: devs-read-configmaps
    effect: allow
    groups: ["dev", "oidc:dev", "developers"]
    namespaces: ["dev"]
    verbs: ["get", "list", "watch"]
    apiGroups: [""]
    resources: ["configmaps"]
"""


def render_overlay(overlay: str, kubectl: str) -> list[dict[str, Any]]:
    out = subprocess.run([kubectl, "kustomize", str(ROOT / "deploy/overlays" / overlay)], capture_output=True,
                         text=True, check=True, timeout=60).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def server_rbac(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """kagiya's server identity exactly as deploy/ ships it: its Namespace, ServiceAccount, ClusterRole(Binding)."""
    binding = next(d for d in docs if d["kind"] == "ClusterRoleBinding" and d["metadata"]["name"] == "kagiya")
    subject = binding["subjects"][0]
    role = next(d for d in docs if d["kind"] == "ClusterRole" and d["metadata"]["name"] == binding["roleRef"]["name"])
    account = next(d for d in docs if d["kind"] == "ServiceAccount" and d["metadata"]["name"] == subject["name"]
                   and d["metadata"]["namespace"] == subject["namespace"])
    namespace = next(d for d in docs if d["kind"] == "Namespace" and d["metadata"]["name"] == subject["namespace"])
    return [namespace, account, role, binding]


def admission_files(work: Path, kagiya: Kagiya) -> Path:
    """The AdmissionConfiguration that gives the apiserver kagiya's client certificate when it calls the webhook.

    The kubeconfig is `kagiya authn webhook-config`'s, its user renamed to `*` (the apiserver picks the user by the
    webhook's host:port, `*` matching every host) — docs/deploy.md shows the same step.
    """
    kubeconfig = yaml.safe_load(kagiya.webhook_config("/iam/mutate"))
    kubeconfig["users"][0]["name"] = "*"
    kubeconfig["contexts"][0]["context"]["user"] = "*"
    (work / "admission-webhook.kubeconfig").write_text(yaml.safe_dump(kubeconfig))
    path = work / "admission.yaml"
    path.write_text(yaml.safe_dump({
        "apiVersion": "apiserver.config.k8s.io/v1", "kind": "AdmissionConfiguration",
        "plugins": [{"name": "MutatingAdmissionWebhook", "configuration": {
            "apiVersion": "apiserver.config.k8s.io/v1", "kind": "WebhookAdmissionConfiguration",
            "kubeConfigFile": str(work / "admission-webhook.kubeconfig")}}],
    }))
    return path


def webhook_configuration(kagiya: Kagiya, failure_policy: str = "Ignore") -> dict[str, Any]:
    """deploy/'s MutatingWebhookConfiguration with a URL instead of the in-cluster Service (no cluster network)."""
    doc = yaml.safe_load((ROOT / "deploy/base/server/mutatingwebhook.yaml").read_text())
    doc["metadata"]["name"] = "kagiya-pod-identity-e2e"
    hook = doc["webhooks"][0]
    hook["failurePolicy"] = failure_policy
    hook["clientConfig"] = {"url": kagiya.url + "/iam/mutate",
                            "caBundle": base64.b64encode(kagiya.ca_file.read_bytes()).decode()}
    return doc


def kagiya_settings(work: Path, apiserver: Apiserver, issuer: OidcIssuer, ldap_url: str,
                    sts_url: str) -> dict[str, Any]:
    users = work / "users.csv"
    users.write_text("".join(f'{token},{name},uid-{name},"{groups}"\n' for name, (token, groups) in
                             STATIC_USERS.items()))
    (work / "policy.yaml").write_text(POLICY)
    return {
        "data_dir": str(work / "kagiya-data"),
        "log_level": "INFO",
        "admin_groups": ["kagiya:admins"],
        "authn": {
            "token_file": str(users),
            "providers": [
                {"type": "oidc", "name": "corp", "issuer": issuer.url, "audiences": [OIDC_AUDIENCE],
                 "username_prefix": "oidc:", "groups_prefix": "oidc:"},
                {"type": "ldap", "name": "corp", "urls": [ldap_url], "bind_dn": SERVICE_DN,
                 "bind_password": SERVICE_PASSWORD, "user_search_base": BASE_DN, "group_search_base": GROUPS_DN,
                 "timeout": 3},
            ],
        },
        "authz": {"policy_file": str(work / "policy.yaml")},
        "iam": {"irsa_annotation": True},
        "credentials": {"sts_endpoint": sts_url},
        "kube": {"mode": "url", "host": apiserver.url, "token_file": str(work / "kagiya-sa.token"),
                 "ca_file": str(apiserver.ca_file), "watch_seconds": WATCH_SECONDS, "retry_seconds": 0.2,
                 "max_retry_seconds": 1.0, **({"watch_stale_after_seconds": STALE_AFTER} if STALE_AFTER else {})},
    }


@pytest.fixture(scope="package")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    missing = missing_parts()
    if missing:
        pytest.skip(f"real-apiserver suite needs: {missing}")
    work = tmp_path_factory.mktemp("e2e-apiserver")
    kagiya = Kagiya(work)
    kagiya.make_pki()
    (work / "authn-webhook.yaml").write_text(kagiya.webhook_config("/authn/tokenreviews"))
    (work / "authz-webhook.yaml").write_text(kagiya.webhook_config("/authz/subjectaccessreviews"))
    etcd = Etcd(work)
    apiserver = Apiserver(work, etcd, authn_config=work / "authn-webhook.yaml",
                          authz_config=work / "authz-webhook.yaml", admission_config=admission_files(work, kagiya))
    apiserver.make_pki()
    with contextlib.ExitStack() as stack:
        issuer = stack.enter_context(OidcIssuer())
        slapd = stack.enter_context(start_slapd(work / "slapd"))
        moto = stack.enter_context(MotoServer(work))
        etcd.start()
        stack.callback(etcd.stop)
        apiserver.start()
        stack.callback(apiserver.stop)
        cluster = Cluster(work, etcd, apiserver, kagiya, issuer=issuer, slapd=slapd, moto=moto)
        docs = render_overlay("production", cluster.kubectl_path)
        cluster.apply(server_rbac(docs))
        (work / "kagiya-sa.token").write_text(
            cluster.admin("create", "token", "kagiya", "-n", "kagiya-system", "--duration", "2h").strip())
        kagiya.config.write_text(yaml.safe_dump(kagiya_settings(work, apiserver, issuer, slapd.url, moto.url)))
        kagiya.start()
        stack.callback(kagiya.stop)
        kagiya.wait_ready()
        cluster.apply(webhook_configuration(kagiya))
        yield cluster

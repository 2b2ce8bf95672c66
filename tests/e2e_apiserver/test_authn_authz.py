"""The real kube-apiserver asks kagiya who a bearer token is (TokenReview) and whether a request may proceed
(SubjectAccessReview, `--authorization-mode=Node,Webhook,RBAC`); the real kubectl shows what a user sees.

Shows: static-token, OIDC and LDAP users with `kubectl auth whoami`; a bad token is Unauthorized; the policy allows
(without any RBAC), denies (even what RBAC allows, with kagiya's rule in the message) and has no opinion (RBAC
decides); the apiserver's own caches (`--authentication-token-webhook-cache-ttl`, under a fixed 10 s cache of
successful authentications) keep known users in while kagiya is down, then lock them out; with kagiya down a new
token is Unauthorized and a ServiceAccount gets what RBAC allows and a 500 `InternalError` naming kagiya's URL for
the rest (docs/authz.md); once kagiya is back everything works again.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator

import pytest

from tests.e2e_apiserver.cluster import WEBHOOK_CACHE_TTL, Cluster
from tests.e2e_apiserver.conftest import OIDC_AUDIENCE, STATIC_USERS

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: kube-apiserver caches successful token authentications for 10 s on top of every authenticator's own cache.
APISERVER_TOKEN_CACHE = 10
UNAUTHORIZED = "error: You must be logged in to the server (Unauthorized)"


def whoami(cluster: Cluster, token: str) -> dict[str, object]:
    proc = cluster.kubectl("auth", "whoami", "-o", "json", token=token)
    assert proc.returncode == 0, proc.stderr + cluster.diagnose()
    return json.loads(proc.stdout)["status"]["userInfo"]  # type: ignore[no-any-return]


def ldap_token(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture(scope="module")
def dev_namespace(cluster: Cluster) -> Iterator[str]:
    cluster.admin("create", "namespace", "dev")
    cluster.admin("create", "configmap", "settings", "-n", "dev", "--from-literal=colour=blue")
    # explicit Roles: the aggregated `view`/`edit` ClusterRoles stay empty without a controller-manager
    cluster.admin("create", "role", "read-all", "-n", "dev", "--verb=get,list,watch",
                  "--resource=configmaps,secrets,pods")
    yield "dev"


def test_static_oidc_and_ldap_users_with_kubectl_whoami(cluster: Cluster) -> None:
    dana = whoami(cluster, STATIC_USERS["dana"][0])
    assert dana["username"] == "dana" and dana["uid"] == "uid-dana"
    assert dana["groups"] == ["dev", "system:authenticated"]

    oidc = cluster.issuer.mint(aud=OIDC_AUDIENCE, sub="erin", groups=["dev", "qa"])  # type: ignore[attr-defined]
    erin = whoami(cluster, oidc)
    assert erin["username"] == "oidc:erin"
    assert erin["groups"] == ["oidc:dev", "oidc:qa", "system:authenticated"]

    alice = whoami(cluster, ldap_token("alice", "alice-pw"))
    assert alice["username"] == "alice"
    assert {"developers", "ops", "system:authenticated"} <= set(alice["groups"])  # type: ignore[arg-type]


@pytest.mark.parametrize("token", ["not-a-known-token", ldap_token("alice", "wrong-pw"), "eyJhbGciOiJub25lIn0.e30."])
def test_a_token_no_provider_accepts_is_unauthorized(cluster: Cluster, token: str) -> None:
    proc = cluster.kubectl("auth", "whoami", token=token)
    assert proc.returncode == 1
    assert UNAUTHORIZED in proc.stderr


def test_an_oidc_token_for_another_audience_is_unauthorized(cluster: Cluster) -> None:
    token = cluster.issuer.mint(aud="some-other-client", sub="erin")  # type: ignore[attr-defined]
    proc = cluster.kubectl("auth", "whoami", token=token)
    assert proc.returncode == 1 and UNAUTHORIZED in proc.stderr


def test_policy_allows_without_any_rbac(cluster: Cluster, dev_namespace: str) -> None:
    proc = cluster.kubectl("get", "configmap", "settings", "-n", dev_namespace, "-o", "name",
                           token=STATIC_USERS["dana"][0])
    assert proc.returncode == 0, proc.stderr + cluster.diagnose()
    assert proc.stdout.strip() == "configmap/settings"
    # the rule is scoped: dana may read, not change, and only in dev
    proc = cluster.kubectl("delete", "configmap", "settings", "-n", dev_namespace, token=STATIC_USERS["dana"][0])
    assert proc.returncode == 1 and "Error from server (Forbidden)" in proc.stderr
    assert cluster.kubectl("auth", "can-i", "list", "configmaps", "-n", "default",
                           token=STATIC_USERS["dana"][0]).stdout.strip() == "no"
    assert cluster.kubectl("auth", "can-i", "list", "configmaps", "-n", dev_namespace,
                           token=STATIC_USERS["dana"][0]).stdout.strip() == "yes"


def test_policy_denies_even_what_rbac_allows_and_says_why(cluster: Cluster, dev_namespace: str) -> None:
    cluster.admin("create", "rolebinding", "mallory-edit", "-n", dev_namespace, "--role", "read-all",
                  "--user", "oidc:mallory")
    token = cluster.issuer.mint(aud=OIDC_AUDIENCE, sub="mallory", groups=["dev", "contractors"])  # type: ignore[attr-defined]
    proc = cluster.kubectl("get", "configmaps", "-n", dev_namespace, token=token)
    assert proc.returncode == 1
    assert ('Error from server (Forbidden): configmaps is forbidden: User "oidc:mallory" cannot list resource '
            '"configmaps" in API group "" in the namespace "dev": kagiya: denied by rule '
            "'contractors-no-configmaps'") in proc.stderr
    # what the policy has no opinion on, RBAC (its Role) still grants
    proc = cluster.kubectl("get", "secrets", "-n", dev_namespace, token=token)
    assert proc.returncode == 0, proc.stderr


def test_no_opinion_leaves_the_decision_to_rbac(cluster: Cluster, dev_namespace: str) -> None:
    token = cluster.issuer.mint(aud=OIDC_AUDIENCE, sub="olga", groups=["ops"])  # type: ignore[attr-defined]
    proc = cluster.kubectl("get", "configmaps", "-n", dev_namespace, token=token)
    assert proc.returncode == 1 and "Error from server (Forbidden)" in proc.stderr
    assert proc.stderr.rstrip().endswith('in the namespace "dev"'), proc.stderr  # no kagiya reason: no opinion
    cluster.admin("create", "rolebinding", "olga-view", "-n", dev_namespace, "--role", "read-all",
                  "--user", "oidc:olga")
    deadline = time.monotonic() + WEBHOOK_CACHE_TTL + 5  # the apiserver cached the "no" for its unauthorized TTL
    while True:
        proc = cluster.kubectl("get", "configmaps", "-n", dev_namespace, "-o", "name", token=token)
        if proc.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert proc.returncode == 0 and "configmap/settings" in proc.stdout, proc.stderr


def test_kagiya_down_then_back(cluster: Cluster, dev_namespace: str) -> None:
    """What users and operators see while kagiya is unreachable, and that it all comes back."""
    dana = STATIC_USERS["dana"][0]
    # a ServiceAccount is authenticated by the apiserver itself; RBAC lets it read configmaps in dev, nothing else
    cluster.admin("create", "serviceaccount", "reader", "-n", dev_namespace)
    cluster.admin("create", "rolebinding", "reader-view", "-n", dev_namespace, "--role", "read-all",
                  "--serviceaccount", f"{dev_namespace}:reader")
    sa_token = cluster.admin("create", "token", "reader", "-n", dev_namespace, "--duration", "10m").strip()
    new_user = cluster.issuer.mint(aud=OIDC_AUDIENCE, sub="newcomer", groups=["dev"])  # type: ignore[attr-defined]
    assert whoami(cluster, dana)["username"] == "dana"  # now in the apiserver's authn cache
    stopped = time.monotonic()
    cluster.kagiya.kill()
    try:
        # within --authentication-token-webhook-cache-ttl the apiserver still knows dana without asking kagiya
        assert whoami(cluster, dana)["username"] == "dana"
        assert time.monotonic() - stopped < WEBHOOK_CACHE_TTL, "machine too slow for the cache TTL"
        # a token it has never seen cannot be checked: Unauthorized (the apiserver fails closed)
        proc = cluster.kubectl("auth", "whoami", token=new_user)
        assert proc.returncode == 1 and UNAUTHORIZED in proc.stderr
        # authorization: RBAC-allowed requests pass, everything else is a 500 naming kagiya's URL
        proc = cluster.kubectl("get", "configmaps", "-n", dev_namespace, "-o", "name", token=sa_token)
        assert proc.returncode == 0 and "configmap/settings" in proc.stdout, proc.stderr
        proc = cluster.kubectl("get", "pods", "-n", "kube-system", token=sa_token)
        assert proc.returncode == 1
        assert "Error from server (InternalError)" in proc.stderr, proc.stderr
        assert f"{cluster.kagiya.url}/authz/subjectaccessreviews" in proc.stderr, proc.stderr
        # past the caches, dana too is locked out: the webhook cache (--authentication-token-webhook-cache-ttl) sits
        # under the apiserver's own 10 s cache of successful token authentications, so the window is max(ttl, 10 s)
        deadline = stopped + max(WEBHOOK_CACHE_TTL, APISERVER_TOKEN_CACHE) + 6
        while (proc := cluster.kubectl("auth", "whoami", token=dana)).returncode == 0 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert proc.returncode == 1 and UNAUTHORIZED in proc.stderr
        assert time.monotonic() - stopped > WEBHOOK_CACHE_TTL
    finally:
        cluster.kagiya.start()
        cluster.kagiya.wait_ready()
    assert whoami(cluster, new_user)["username"] == "oidc:newcomer"
    assert whoami(cluster, dana)["username"] == "dana"
    proc = cluster.kubectl("get", "pods", "-n", "kube-system", token=sa_token)
    assert proc.returncode == 1 and "Error from server (Forbidden)" in proc.stderr, proc.stderr

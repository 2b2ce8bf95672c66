"""`kagiya agent`: the node-local metadata agent (kiam's agent/server split). Docs: deploy/agent.md.

Runs on every node (a DaemonSet with hostNetwork), receives the pods' metadata requests (an iptables DNAT rule sends
169.254.169.254:80 and 169.254.170.23:80 to it) and forwards the evidence (the pod's source IP, the method, path,
query and the few headers the metadata rules read, including any service-account token) to the central kagiya
service at `POST /iam/agent/forward`, over mutual TLS and authenticated as a member of `credentials.agent_groups`.
The agent holds no cloud credentials and makes no decisions: identity, policy and minting stay central.
A failed forward is a fast 503 (botocore allows IMDS one attempt of 1 s), never a guess.

To add little to a pod's request the agent keeps its connections to the central service alive (a pool sized for
bursts, so no TLS handshake per request), answers IMDSv2 `PUT /latest/api/token` itself, and reuses a relayed
credential reply until near its expiry for the pod that holds the same session token (kagiya/iam/agent_cache.py).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click

from kagiya.config import is_loopback
from kagiya.errors import UsageError
from kagiya.iam.agent_cache import MAX_TTL, LocalSessions, ReplyCache

log = logging.getLogger("kagiya.agent")
PATH_PREFIXES = ("/latest/", "/computeMetadata/", "/v1/credentials")
FORWARDED_HEADERS = ("X-aws-ec2-metadata-token", "X-aws-ec2-metadata-token-ttl-seconds", "Metadata-Flavor",
                     "Authorization", "X-Forwarded-For", "User-Agent")
TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN_HEADER = "X-aws-ec2-metadata-token"  # noqa: S105 - a header name
#: Connections kept alive to the central service: enough for a node's burst of pods asking at once.
POOL_SIZE = 256


class Agent:
    """The agent as a WSGI app: relay one metadata request to the central service."""

    def __init__(self, server: str, token: str, *, cert: tuple[str, str] | None = None, ca: str = "",
                 timeout: float = 0.9, token_file: str = "", local_sessions: bool = True,
                 cache_margin: float = 300.0) -> None:
        import urllib3

        self.sessions = LocalSessions() if local_sessions else None
        self.cache = ReplyCache(cache_margin)
        self.token_file = token_file
        self._token_mtime = Path(token_file).stat().st_mtime_ns if token_file else 0
        self.forward_url = server.rstrip("/") + "/iam/agent/forward"
        self.timeout = timeout
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        # Keep-alive connections, as many as a burst needs: a connection beyond the pool would be closed after one
        # request, and the next one would pay a new TCP + TLS handshake. urllib3 directly (not requests): less CPU per
        # relayed request, and no environment proxy is ever consulted for pod evidence.
        tls: dict[str, Any] = {}
        if server.startswith("https://"):
            tls = {"cert_reqs": "CERT_REQUIRED", "ca_certs": ca or None}
            if cert:
                tls.update(cert_file=cert[0], key_file=cert[1])
        self.pool = urllib3.PoolManager(num_pools=2, maxsize=POOL_SIZE, block=False, retries=False,
                                        timeout=urllib3.Timeout(total=timeout), **tls)
        self._wanted = {h.lower() for h in FORWARDED_HEADERS}

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """WSGI entry (tests, embedding); `kagiya agent` serves `handle` through its own lean HTTP server."""
        from http import HTTPStatus

        headers = {k[5:].replace("_", "-").title(): str(v) for k, v in environ.items() if k.startswith("HTTP_")}
        status, extra, body = self.handle(environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO", "/"),
                                          environ.get("QUERY_STRING", ""), headers, environ.get("REMOTE_ADDR", ""))
        data = body.encode("utf-8")
        reason = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Unknown"
        start_response(f"{status} {reason}", [*extra.items(), ("Content-Length", str(len(data)))])
        return [data]

    def handle(self, method: str, path: str, query: str, headers: dict[str, str],
               source: str) -> tuple[int, dict[str, str], str]:
        """One pod request -> (status, headers, body): answered here (ping, IMDSv2 token, cached credentials) or
        relayed to the central service."""
        lower = {k.lower(): v for k, v in headers.items()}
        text = {"Content-Type": "text/plain; charset=utf-8"}
        if method == "GET" and path == "/":
            # google-auth's discovery ping (google.auth.default()): 200 + Metadata-Flavor means "on GCE".
            return 200, {"Content-Type": "application/text", "Metadata-Flavor": "Google"}, "computeMetadata/\n"
        if method not in ("GET", "PUT") or not path.startswith(PATH_PREFIXES):
            return 404, text, "not found\n"
        envelope: dict[str, Any] = {
            "sourceIp": source, "method": method, "path": path, "query": query,
            "headers": {k: v for k, v in headers.items() if k.lower() in self._wanted},
        }
        secret = lower.get("authorization", "")
        if self.sessions is not None and path.startswith("/latest/"):
            local = self._imds_session(method, path, lower, source, envelope)
            if isinstance(local, tuple):
                body, status, extra = local
                return status, {**text, **extra}, body
            secret = local or secret
        elif path.startswith("/latest/"):
            secret = lower.get(TOKEN_HEADER.lower(), "") or secret  # the central service's pod-bound session token
        # A request through a proxy (X-Forwarded-For) is never answered from the cache: the central service refuses
        # it (403), as IMDS and the container-credentials endpoint do, however often the pod itself asked before.
        cacheable = method == "GET" and "x-forwarded-for" not in lower
        key = self.cache.key(source, path, query, secret) if cacheable else None
        reply = self.cache.get(key)
        if reply is None:
            reply = self.forward(envelope)
            if reply is not None:
                self.cache.put(key, reply)
        if reply is None:
            flavor = {"Metadata-Flavor": "Google"} if path.startswith("/computeMetadata/") else {}
            return 503, {**text, **flavor}, "kagiya agent: the credential service is unavailable; retry\n"
        return int(reply["status"]), dict(reply.get("headers") or {}), str(reply["body"])

    def _imds_session(self, method: str, path: str, lower: dict[str, str], source: str,
                      envelope: dict[str, Any]) -> tuple[str, int, dict[str, str]] | str:
        """IMDSv2 on the node: answer a token PUT here (same rules as the central service), check a GET's token.

        Returns a local reply (body, status, headers), or the verified session token ("" when the GET carries none,
        which is relayed as is and refused centrally unless IMDSv1 is on).
        """
        if "x-forwarded-for" in lower:
            return "requests carrying X-Forwarded-For are refused\n", 403, {}
        if method == "PUT" and path == "/latest/api/token":
            value = (lower.get(TTL_HEADER.lower()) or "").strip()
            if not (value.isascii() and value.isdigit()) or len(value) > 6 or not 1 <= int(value) <= MAX_TTL:
                return f"{TTL_HEADER} must be a whole number from 1 to {MAX_TTL}\n", 400, {}
            assert self.sessions is not None
            return self.sessions.issue(source, int(value)), 200, {TTL_HEADER: value}
        token = lower.get(TOKEN_HEADER.lower(), "")
        if not token or self.sessions is None:
            return ""
        if not self.sessions.valid(token, source):
            return "invalid or expired IMDS session token\n", 401, {}
        envelope["headers"] = {k: v for k, v in envelope["headers"].items() if k.lower() != TOKEN_HEADER.lower()}
        envelope["imdsSession"] = "agent"
        return token

    def forward(self, envelope: dict[str, Any]) -> dict[str, Any] | None:
        """The central service's answer, or None when it cannot be had (logged, without tokens)."""
        import json

        import urllib3

        self._reload_token()
        data = json.dumps(envelope).encode()
        try:
            try:
                r = self.pool.request("POST", self.forward_url, body=data, headers=self.headers)
            except urllib3.exceptions.ProtocolError:
                # The pooled keep-alive connection was closed by the server (restart, idle timeout racing this
                # request) before any answer: send it again once, on another connection. Timeouts are not retried.
                r = self.pool.request("POST", self.forward_url, body=data, headers=self.headers)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            log.warning("forward to the credential service failed: %s", type(exc).__name__)
            return None
        if r.status != 200:
            log.warning("the credential service refused the agent: HTTP %s", r.status)
            return None
        try:
            body = json.loads(r.data)
            if isinstance(body, dict) and isinstance(body.get("status"), int) and isinstance(body.get("body"), str):
                return body
        except ValueError:
            pass
        log.warning("the credential service sent a malformed relay reply")
        return None


    def _reload_token(self) -> None:
        """Re-read the token file when it changed: a projected service-account token is rotated by the kubelet."""
        if not self.token_file:
            return
        try:
            mtime = Path(self.token_file).stat().st_mtime_ns
            if mtime == self._token_mtime:
                return
            token = Path(self.token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            log.warning("cannot re-read the agent token file: %s", exc.strerror)
            return
        if token:
            self.headers = {**self.headers, "Authorization": f"Bearer {token}"}
            self._token_mtime = mtime


#: Largest request body the agent reads (metadata requests carry none; a PUT may carry a few bytes).
MAX_BODY = 64 * 1024


def AgentServer(host: str, port: int, agent: Agent) -> Any:  # noqa: N802 - builds a server instance
    """The agent's HTTP server: the standard library's threaded server with a handler calling `agent.handle`
    directly (no WSGI layer: less CPU per pod request), HTTP/1.1 keep-alive, no per-request access log, and a listen
    backlog deep enough for a whole node's pods connecting at once (with 128, a burst overflows the SYN queue and the
    kernel's 1 s SYN retry eats botocore's budget)."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import urlsplit

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body are two writes: never wait for a delayed ACK between
        timeout = 60  # an idle or stuck pod connection frees its thread after a minute
        server_version = "kagiya-agent"
        sys_version = ""

        def _serve(self) -> None:
            length = (self.headers.get("Content-Length", "0") or "0").strip()
            digits = length.isascii() and length.isdigit()  # "²" (latin-1 0xB2) is a digit to isdigit, not to int
            if not digits or int(length) > MAX_BODY:
                self.send_error(413 if digits else 400)
                return
            if int(length):
                self.rfile.read(int(length))
            parts = urlsplit(self.path)
            status, headers, body = agent.handle(self.command, parts.path, parts.query, dict(self.headers.items()),
                                                 self.client_address[0])
            data = body.encode("utf-8")
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = _serve  # noqa: N815 - http.server's naming

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib signature
            """No access-log line per pod request (the agent logs forwarding failures itself)."""

    class Server(ThreadingHTTPServer):
        request_queue_size = 4096
        daemon_threads = True

    return Server((host, port), Handler)


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--listen {value!r}: expected HOST:PORT")
    host = host.strip("[]") or "127.0.0.1"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise UsageError(f"--listen {value!r}: HOST must be an IP address") from None
    return host, int(port)


def check_server(url: str, cert: str, key: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise UsageError(f"--server {url!r}: expected an https:// URL")
    if parts.scheme == "http" and not is_loopback(parts.hostname or ""):
        raise UsageError("--server must be https:// (mutual TLS) unless it is on loopback")
    if bool(cert) != bool(key):
        raise UsageError("--cert and --key go together")
    if parts.scheme == "https" and not cert:
        raise UsageError("--cert and --key are required: the agent authenticates to kagiya with mutual TLS")


@click.command(name="agent")
@click.option("--listen", default=None, help="HOST:PORT the pods' requests reach [credentials.agent_listen, "
              "KAGIYA_AGENT_LISTEN; default 127.0.0.1:8181].")
@click.option("--server", default=None, help="Central kagiya URL, https:// [KAGIYA_AGENT_SERVER].")
@click.option("--token-file", default=None, type=click.Path(dir_okay=False),
              help="Bearer token of an identity in credentials.agent_groups [KAGIYA_AGENT_TOKEN_FILE].")
@click.option("--cert", default=None, type=click.Path(dir_okay=False),
              help="Client certificate (PEM) for mutual TLS [KAGIYA_AGENT_CERT].")
@click.option("--key", default=None, type=click.Path(dir_okay=False), help="Client key (PEM) [KAGIYA_AGENT_KEY].")
@click.option("--ca", default=None, type=click.Path(dir_okay=False),
              help="CA bundle that signed the server certificate [KAGIYA_AGENT_CA].")
@click.option("--timeout", default=None, type=click.FloatRange(0.05, 30),
              help="Seconds to wait for the central service [KAGIYA_AGENT_TIMEOUT_SECONDS; default 0.9].")
def command(listen: str | None, server: str | None, token_file: str | None, cert: str | None, key: str | None,
            ca: str | None, timeout: float | None) -> None:
    """Node-local metadata agent that forwards pod evidence to kagiya."""
    from kagiya import logs
    from kagiya.cli import get_settings

    cfg = get_settings().section("credentials")
    listen = listen or cfg.agent_listen
    server = server or cfg.agent_server
    token_file = token_file or cfg.agent_token_file
    cert = cert if cert is not None else cfg.agent_cert
    key = key if key is not None else cfg.agent_key
    ca = ca if ca is not None else cfg.agent_ca
    timeout = timeout or cfg.agent_timeout_seconds
    if not server:
        raise UsageError("--server (or KAGIYA_AGENT_SERVER) is required: the central kagiya URL")
    if not token_file:
        raise UsageError("--token-file (or KAGIYA_AGENT_TOKEN_FILE) is required")
    host, port = parse_listen(listen)
    check_server(server, cert, key)
    try:
        token = Path(token_file).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise UsageError(f"cannot read --token-file {token_file}: {exc.strerror}") from None
    if not token:
        raise UsageError(f"--token-file {token_file} is empty")
    logs.configure("INFO")
    agent = Agent(server, token, cert=(cert, key) if cert else None, ca=ca, timeout=timeout, token_file=token_file)
    httpd = AgentServer(host, port, agent)
    log.info("kagiya agent listening on %s:%d, forwarding to %s", host, port, server)
    try:
        httpd.serve_forever()
    finally:
        httpd.server_close()

"""`kagiya login`: a kubectl exec credential plugin (client.authentication.k8s.io/v1; specs/kubernetes-webhooks.md
"ExecCredential"), plus `kagiya login setup` (writes the kubeconfig entry) and `kagiya login clear`.

kubectl runs the plugin before its API calls with `KUBERNETES_EXEC_INFO` set; the plugin prints one ExecCredential
JSON document on stdout (`status.token`, `status.expirationTimestamp`) and nothing else there: every prompt and
message goes to stderr (and the browser is started with its stdout pointed at stderr, so a chatty browser cannot
corrupt the answer). Modes:
- OIDC (`--issuer`, `--client-id`): cached ID token while valid; else silent refresh with the refresh token; else
  (no refresh token, or a refresh refused or answered unusably; not when the issuer is unreachable) a new
  sign-in, auth-code + PKCE on a loopback redirect (opens the browser) or the device grant (RFC 8628) when no
  browser can be started (`--grant` picks one explicitly);
- `--static`: prompts once for a bearer token (the webhook's token file or a forge token);
- `--ldap`: prompts for user name and password and sends base64("user:password"), the token format the LDAP
  provider (like Guard's) expects; stored for `--remember` seconds only.
This runs on every kubectl call, so it imports nothing heavy (no Flask, no HTTP library: urllib, lazily).
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from kagiya.errors import BadRequest, KagiyaError, UpstreamUnavailable, UsageError

EXEC_VERSIONS = ("client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1")
LOGIN_PARAMS = ("issuer", "client_id", "client_secret", "scopes", "grant", "listen_port", "no_browser", "ca_file",
                "static", "ldap", "profile", "remember", "expiry_margin", "login_timeout", "cache_dir")
DEFAULT_SCOPES = ("openid", "profile", "email", "offline_access")
#: 9999-12-31T23:59:59Z: the last instant an ExecCredential's expirationTimestamp can name.
MAX_EXPIRY = 253402300799


def login_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--issuer", default="", help="OIDC issuer URL (OIDC mode)."),
        click.option("--client-id", default="", help="OAuth client id registered at the issuer."),
        click.option("--client-secret", default="", help="Client secret, for issuers that require one."),
        click.option("--scope", "scopes", multiple=True, help="Scope to request (repeatable; default: "
                     + " ".join(DEFAULT_SCOPES) + ")."),
        click.option("--grant", type=click.Choice(["auto", "auth-code", "device-code"]), default="auto",
                     help="auth-code (browser, PKCE, loopback redirect), device-code (headless), or auto."),
        click.option("--listen-port", type=click.IntRange(0, 65535), default=0,
                     help="Loopback port for the sign-in redirect (0: any free port)."),
        click.option("--no-browser", is_flag=True, help="Print the sign-in address instead of opening a browser."),
        click.option("--ca-file", default="", help="CA bundle for the issuer's TLS certificate."),
        click.option("--static", is_flag=True, help="Prompt for a static bearer token instead of OIDC."),
        click.option("--ldap", is_flag=True, help="Prompt for an LDAP user name and password instead of OIDC."),
        click.option("--profile", default="", help="Cache name for --static/--ldap (default: the cluster)."),
        click.option("--remember", type=click.IntRange(0), default=8 * 3600,
                     help="Seconds to keep --ldap credentials in the cache (0: never store them)."),
        click.option("--expiry-margin", type=click.IntRange(0), default=30,
                     help="Treat a cached ID token as expired this many seconds early."),
        click.option("--login-timeout", type=click.IntRange(1), default=180,
                     help="Seconds to wait for a sign-in (browser or device code)."),
        click.option("--cache-dir", default="",
                     help="Token cache directory (default ${XDG_CACHE_HOME:-~/.cache}/kagiya)."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


@click.group(name="login", invoke_without_command=True)
@login_options
@click.pass_context
def command(ctx: click.Context, **opts: Any) -> None:
    """kubectl credential plugin: print an ExecCredential (run by kubectl; see `kagiya login setup`)."""
    if ctx.invoked_subcommand is not None:
        return
    version, interactive, cluster = read_exec_info()
    token, expiry = obtain_token(opts, interactive=interactive, cluster=cluster)
    status: dict[str, Any] = {"token": token}
    if expiry:
        status["expirationTimestamp"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expiry))
    sys.stdout.write(json.dumps({"apiVersion": version, "kind": "ExecCredential", "status": status}) + "\n")
    sys.stdout.flush()


def read_exec_info() -> tuple[str, bool, dict[str, Any]]:
    """(apiVersion to answer in, may we prompt, spec.cluster) from KUBERNETES_EXEC_INFO (absent: run by hand)."""
    raw = os.environ.get("KUBERNETES_EXEC_INFO", "")
    if not raw:
        return EXEC_VERSIONS[0], sys.stdin.isatty(), {}
    try:
        info = json.loads(raw)
    except ValueError:
        raise BadRequest("KUBERNETES_EXEC_INFO is not JSON") from None
    if not isinstance(info, dict) or info.get("apiVersion") not in EXEC_VERSIONS:
        got = info.get("apiVersion") if isinstance(info, dict) else None
        raise BadRequest(f"KUBERNETES_EXEC_INFO apiVersion {got!r} is not one of {', '.join(EXEC_VERSIONS)}")
    spec: dict[str, Any] = info["spec"] if isinstance(info.get("spec"), dict) else {}
    cluster: dict[str, Any] = spec["cluster"] if isinstance(spec.get("cluster"), dict) else {}
    return str(info["apiVersion"]), bool(spec.get("interactive", False)), cluster


def obtain_token(opts: dict[str, Any], *, interactive: bool, cluster: dict[str, Any]) -> tuple[str, int]:
    """(token, expiry as epoch seconds or 0 for none), from the cache or a new login."""
    from kagiya.login.cache import TokenCache, cache_key, default_cache_dir

    cache_dir = Path(opts["cache_dir"]) if opts["cache_dir"] else default_cache_dir()
    if opts["static"] and opts["ldap"]:
        raise UsageError("choose one of --static and --ldap")
    if opts["static"] or opts["ldap"]:
        mode = "static" if opts["static"] else "ldap"
        profile = opts["profile"] or str(cluster.get("server") or "default")
        cache = TokenCache(cache_dir, cache_key(mode, profile))
        return _prompted_token(cache, mode, opts, interactive)
    if not opts["issuer"] or not opts["client_id"]:
        raise UsageError("kagiya login needs --issuer and --client-id (OIDC), or --static, or --ldap")
    scopes = tuple(opts["scopes"]) or DEFAULT_SCOPES
    cache = TokenCache(cache_dir, cache_key("oidc", opts["issuer"], opts["client_id"], " ".join(sorted(scopes))))
    return _oidc_token(cache, opts, scopes)


def _oidc_token(cache: Any, opts: dict[str, Any], scopes: tuple[str, ...]) -> tuple[str, int]:
    from kagiya.login.oidc import Client, GrantRejected, stderr_say

    client = Client(issuer=opts["issuer"], client_id=opts["client_id"], client_secret=opts["client_secret"],
                    scopes=scopes, ca_file=opts["ca_file"])
    with cache.locked() as entry:
        now = time.time()
        expiry = cached_expiry(entry)
        if expiry is None:
            entry = {}  # a damaged entry counts as no cache (its refresh token included)
        elif entry.get("id_token") and expiry - opts["expiry_margin"] > now:
            return str(entry["id_token"]), expiry
        fresh: dict[str, Any] | None = None
        if entry.get("refresh_token"):
            try:
                fresh = client.refresh(str(entry["refresh_token"]), str(entry.get("sub", "")))
            except UpstreamUnavailable:
                raise  # the issuer is down: a sign-in would fail too; kubectl shows the one-line error
            except KagiyaError as exc:
                # Refused, or an answer we cannot use (no id_token, wrong issuer...): like kubelogin, sign in
                # again rather than fail until `kagiya login clear`.
                reason = exc.message if isinstance(exc, GrantRejected) else f"refresh failed: {exc.message}"
                stderr_say(f"kagiya login: {reason}; signing in again")
        if fresh is None:
            fresh = _interactive_login(client, opts)
        cache.save(fresh)
        return str(fresh["id_token"]), int(fresh["expiry"])


def cached_expiry(entry: dict[str, Any]) -> int | None:
    """The entry's `expiry` as epoch seconds (0 when absent); None when it is there but not a finite number,
    i.e. the cache file was damaged or hand-edited: the caller then treats the entry as no cache."""
    value = entry.get("expiry", 0)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    if not 0 <= value <= MAX_EXPIRY:  # also keeps time.gmtime() from overflowing on the ExecCredential
        return None
    return int(value)


def _interactive_login(client: Any, opts: dict[str, Any]) -> dict[str, Any]:
    from kagiya.login.oidc import stderr_say

    grant = opts["grant"]
    if grant == "auto":
        has_device = bool(client.discovery().get("device_authorization_endpoint"))
        grant = "auth-code" if _browser_available() or not has_device else "device-code"
    if grant == "device-code":
        return client.device_login(say=stderr_say, timeout=opts["login_timeout"])
    opener = (lambda url: False) if opts["no_browser"] else _open_browser
    return client.auth_code_login(opener, port=opts["listen_port"],
                                  timeout=opts["login_timeout"], say=stderr_say)


def _browser_available() -> bool:
    """A graphical browser is plausible: $BROWSER is set, a display is, or the OS always has one. (Text browsers
    that `webbrowser` would find on a headless server would fight kubectl for the terminal: use the device grant.)"""
    import webbrowser

    if not (os.environ.get("BROWSER") or os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
            or sys.platform in ("darwin", "win32")):
        return False
    try:
        webbrowser.get()
    except webbrowser.Error:
        return False
    return True


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Point fd 1 at stderr while a browser starts: stdout carries only the ExecCredential."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _open_browser(url: str) -> bool:
    import webbrowser

    try:
        with _stdout_to_stderr():
            return bool(webbrowser.open(url, new=1))
    except (webbrowser.Error, OSError):
        return False


def _prompted_token(cache: Any, mode: str, opts: dict[str, Any], interactive: bool) -> tuple[str, int]:
    with cache.locked() as entry:
        now = time.time()
        cached = cached_expiry(entry)
        if entry.get("token") and cached is not None and (cached == 0 or cached > now):
            return str(entry["token"]), cached
        if not interactive:
            raise UsageError(f"kagiya login --{mode} must prompt, but kubectl gave it no terminal: run the same "
                             f"kubectl command in a terminal (interactiveMode IfAvailable), or `kagiya login --{mode}` "
                             "once by hand")
        if mode == "static":
            token = _prompt("Token: ", secret=True)
            if not token:
                raise UsageError("no token entered")
            cache.save({"token": token, "expiry": 0})
            return token, 0
        user = _prompt("LDAP user name: ", secret=False)
        password = _prompt("Password: ", secret=True)
        if not user or not password:
            raise UsageError("LDAP user name and password must not be empty")
        if ":" in user:
            raise UsageError("an LDAP user name cannot contain ':'")
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        expiry = int(now) + opts["remember"] if opts["remember"] else int(now) + 3600
        if opts["remember"]:
            cache.save({"token": token, "expiry": expiry})
        return token, expiry


def _prompt(text: str, *, secret: bool) -> str:
    """Prompt on stderr; read the answer from the terminal (hidden for secrets) or, without one, from stdin."""
    if sys.stdin.isatty() and secret:
        import getpass

        return getpass.getpass(text, stream=sys.stderr).strip()
    sys.stderr.write(text)
    sys.stderr.flush()
    return sys.stdin.readline().strip()


@command.command()
@login_options
@click.option("--kubeconfig", default="",
              help="kubeconfig to edit (default: first of $KUBECONFIG, else ~/.kube/config).")
@click.option("--name", "user_name", default="kagiya", show_default=True, help="Name of the users[] entry.")
@click.option("--context", default="", help="Also make this context use the entry.")
@click.option("--command", "exe", default="", help="Plugin command (default: this kagiya's absolute path).")
@click.pass_context
def setup(ctx: click.Context, kubeconfig: str, user_name: str, context: str, exe: str, **opts: Any) -> None:
    """Write the kubeconfig users[].exec entry that runs `kagiya login` with these options."""
    from kagiya.login.kubeconfig import default_kubeconfig, exec_user, write_exec_user

    if not (opts["static"] or opts["ldap"]) and not (opts["issuer"] and opts["client_id"]):
        raise UsageError("kagiya login setup needs --issuer and --client-id, or --static, or --ldap")
    command_path, prefix = (exe, []) if exe else running_executable()
    args = [*prefix, "login", *_option_args(ctx, opts)]
    path = Path(kubeconfig) if kubeconfig else default_kubeconfig()
    user = exec_user(user_name, command_path, args, provide_cluster_info=bool(opts["static"] or opts["ldap"]))
    write_exec_user(path, user, context)
    click.echo(f"wrote user {user_name!r} to {path}: {command_path} {' '.join(args)}")
    if not context:
        click.echo(f"use it with: kubectl config set-context --current --user={user_name}")


def running_executable() -> tuple[str, list[str]]:
    """(command, leading args) that start this kagiya by absolute path, so kubectl finds it without PATH (a venv,
    pipx, ~/.local/bin).

    `sys.argv[0]` is the console script as it was invoked (relative or absolute; a bare name was found on PATH).
    When it names no file (started from Python, e.g. `python -m kagiya.cli`), this interpreter runs the CLI module.
    """
    import shutil

    invoked = sys.argv[0] if sys.argv else ""
    if invoked and os.path.basename(invoked).startswith("kagiya"):
        path = invoked if os.sep in invoked else shutil.which(invoked)
        if path and os.path.isfile(path):
            return os.path.abspath(path), []
    return os.path.abspath(sys.executable), ["-m", "kagiya.cli"]


def _option_args(ctx: click.Context, opts: dict[str, Any]) -> list[str]:
    """The command-line flags for every login option given to `setup`, in a stable order."""
    from click.core import ParameterSource

    out: list[str] = []
    params = {p.name: p for p in ctx.command.params if isinstance(p, click.Option)}
    for name in LOGIN_PARAMS:
        param, value = params[name], opts[name]
        if ctx.get_parameter_source(name) in (ParameterSource.DEFAULT, None) or value is None or value is False:
            continue
        flag = max(param.opts, key=len)
        if param.is_flag:
            out.append(flag)
        elif param.multiple:  # an empty tuple adds nothing
            for item in value:
                out += [flag, str(item)]
        else:
            out += [flag, str(value)]
    return out


@command.command()
@click.option("--cache-dir", default="", help="Token cache directory (default ${XDG_CACHE_HOME:-~/.cache}/kagiya).")
def clear(cache_dir: str) -> None:
    """Forget every cached token (the next kubectl call signs in again)."""
    from kagiya.login.cache import default_cache_dir

    directory = Path(cache_dir) if cache_dir else default_cache_dir()
    removed = 0
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        path.unlink()
        removed += 1
    click.echo(f"removed {removed} cached token file(s) from {directory}")

"""`pgp:FINGERPRINT` recipient keys: the data key signed and encrypted with GnuPG, exactly as kubesec does it.

Spec: `docs/format.md`, "Trailer": wrapping is `gpg --sign --armor --encrypt -r FPR` of the raw 32-byte
DEK, and the armoured text is what the trailer base64-encodes once more. kubesec refuses a DEK whose signature
does not verify (gpg `VALIDSIG`), and so do we (also one made by a revoked key): an attacker who can write to the
repository can encrypt a DEK of their choosing to anyone's public key, but cannot sign it with a key the reader
holds.

We call the `gpg` binary directly (one process per wrap/unwrap, a few milliseconds) rather than python-gnupg, so
the CLI pays no import cost, and we read gpg's machine-readable status lines from a private pipe (`--status-fd`),
never from its human-readable stderr, which echoes user IDs and other data from the message.

The keyring's own trust model applies, as with kubesec: a recipient key gpg does not consider valid is refused
with a message saying how to fix it, rather than silently trusted.
"""

from __future__ import annotations

import os
import re

from kagiya.errors import CryptoError
from kagiya.secrets.keys.base import DEK_BYTES, BadKeyName, KeyUnavailable, KeyUpstreamUnavailable
from kagiya.secrets.record import Record

TYPE_CHECKING = False  # no dataclasses/settings import on the CLI path (start-up time)
if TYPE_CHECKING:
    from collections.abc import Callable

    from kagiya.secrets.settings import SecretsSettings

#: v4 fingerprints are 40 hex digits, v5 ones 64.
_FINGERPRINT = re.compile(r"^(?:[0-9A-F]{40}|[0-9A-F]{64})$")
#: A bound on what we hand to gpg for unwrapping: a signed+encrypted 32-byte DEK is about 1-2 KB armoured.
MAX_BLOB_BYTES = 64 * 1024


class GpgResult(Record):
    __slots__ = ("returncode", "stdout", "status", "last_message")

    def __init__(self, returncode: int, stdout: bytes, status: list[tuple[str, list[str]]], last_message: str) -> None:
        self.returncode = returncode
        self.stdout = stdout
        #: Status keywords in order, each with its arguments (`("VALIDSIG", ["FPR", ...])`).
        self.status = status
        #: The last human-readable `gpg:` line, for error messages (never contains key material).
        self.last_message = last_message

    def has(self, keyword: str) -> bool:
        return any(k == keyword for k, _ in self.status)

    def args(self, keyword: str) -> list[list[str]]:
        return [a for k, a in self.status if k == keyword]


def run_gpg(settings: SecretsSettings, args: list[str], data: bytes) -> GpgResult:
    """Run gpg in batch mode with `data` on stdin; status lines come back through a private pipe.

    Raises KeyUnavailable when gpg is missing or does not finish within `kms_timeout_seconds`.
    """
    return start_gpg(settings, args, data)()


def start_gpg(settings: SecretsSettings, args: list[str], data: bytes) -> Callable[[], GpgResult]:
    """Start gpg now, `data` already in its stdin; the returned function waits for it (within
    `kms_timeout_seconds` of that call) and gives its result. Raises KeyUnavailable at once when gpg is missing.

    os.posix_spawnp and select.poll rather than subprocess, whose import alone (threading, selectors, ...)
    costs ~5 ms of every pgp command (issue 13). gpg gets its own session, so a timeout also ends anything it
    started in the foreground (gpg-agent daemonises into a session of its own and survives, as it should).
    """
    argv = [settings.gpg_binary or "gpg", "--batch", "--no-greeting"]
    if settings.gnupg_home:
        argv += ["--homedir", settings.gnupg_home]
    fds: list[int] = []
    try:
        stdin_r, stdin_w = os.pipe()
        fds += (stdin_r, stdin_w)
        os.set_blocking(stdin_w, False)
        try:  # usually all of it fits in the pipe, and gpg reads it whenever it starts
            rest = data[os.write(stdin_w, data):] if data else b""
        except BlockingIOError:
            rest = data
        if not rest:
            os.close(stdin_w)
            fds.remove(stdin_w)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        status_r, status_w = os.pipe()
        fds += (out_r, out_w, err_r, err_w, status_r, status_w)
        os.set_inheritable(status_w, True)  # the only descriptor gpg inherits besides 0, 1, 2
        actions = [(os.POSIX_SPAWN_DUP2, stdin_r, 0), (os.POSIX_SPAWN_DUP2, out_w, 1), (os.POSIX_SPAWN_DUP2, err_w, 2)]
        try:
            pid = os.posix_spawnp(argv[0], [*argv, "--status-fd", str(status_w), *args], os.environ,
                                  file_actions=actions, setsid=True)
        except FileNotFoundError:
            raise KeyUnavailable(f"gpg binary {argv[0]!r} not found (set secrets.gpg_binary)") from None
        except PermissionError:
            raise KeyUnavailable(f"gpg binary {argv[0]!r} is not executable") from None
        for fd in (stdin_r, out_w, err_w, status_w):
            os.close(fd)
            fds.remove(fd)
        feed = (stdin_w, rest) if rest else None
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise

    def finish() -> GpgResult:
        try:
            streams = _collect(pid, (out_r, err_r), feed, settings.kms_timeout_seconds)
            # gpg has exited, so its status lines are all in the pipe; read without blocking in case a helper
            # it spawned still holds the write end.
            os.set_blocking(status_r, False)
            chunks = []
            try:
                while chunk := os.read(status_r, 65536):
                    chunks.append(chunk)
            except BlockingIOError:
                pass
        finally:
            for fd in (out_r, err_r, status_r):
                os.close(fd)
        stdout, stderr, returncode = streams
        status: list[tuple[str, list[str]]] = []
        for line in b"".join(chunks).decode("utf-8", "replace").splitlines():
            if line.startswith("[GNUPG:] "):
                keyword, *rest = line[9:].split(" ")
                status.append((keyword, rest))
        messages = [
            line[5:].strip() for line in stderr.decode("utf-8", "replace").splitlines() if line.startswith("gpg: ")
        ]
        return GpgResult(returncode, stdout, status, messages[-1] if messages else "")

    return finish


def _collect(pid: int, fds: tuple[int, int], feed: tuple[int, bytes] | None,
             timeout: float) -> tuple[bytes, bytes, int]:
    """(stdout, stderr, exit status) of gpg, read until both pipes close and gpg exits, writing what is left of
    its input (`feed`: stdin's descriptor and the bytes the pipe did not take at once) as it reads. On timeout
    or any interruption, gpg's process group is killed and reaped first."""
    import select
    import time

    deadline = time.monotonic() + timeout
    out: dict[int, list[bytes]] = {fd: [] for fd in fds}
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    stdin_fd, rest = feed if feed else (-1, b"")
    if feed:
        poller.register(stdin_fd, select.POLLOUT)
    open_fds = set(fds)
    try:
        while open_fds:
            left = deadline - time.monotonic()
            if left <= 0:
                raise KeyUpstreamUnavailable(f"gpg did not finish within {timeout:g}s")
            for fd, _ in poller.poll(left * 1000):
                if fd == stdin_fd:
                    try:
                        rest = rest[os.write(fd, rest):]
                    except BlockingIOError:
                        pass
                    except BrokenPipeError:
                        rest = b""
                    if not rest:  # all written, or gpg closed its stdin
                        poller.unregister(fd)
                        os.close(fd)
                        stdin_fd = -1
                    continue
                chunk = os.read(fd, 65536)
                if chunk:
                    out[fd].append(chunk)
                else:
                    poller.unregister(fd)
                    open_fds.discard(fd)
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() >= deadline:
                raise KeyUpstreamUnavailable(f"gpg did not finish within {timeout:g}s")
            time.sleep(0.001)
    except BaseException:
        _kill(pid)
        raise
    finally:
        if stdin_fd >= 0:
            os.close(stdin_fd)
    return b"".join(out[fds[0]]), b"".join(out[fds[1]]), os.waitstatus_to_exitcode(status)


def _kill(pid: int) -> None:
    import signal

    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


class PgpKey(Record):
    """One GnuPG key named by its primary key's fingerprint (upper-case hex, as kubesec writes it)."""

    __slots__ = ("id", "settings", "scheme", "_holds_secret")

    def __init__(self, id: str, settings: SecretsSettings) -> None:  # noqa: A002 - the recipient id
        self.id = id
        self.settings = settings
        self.scheme = "pgp"
        self._holds_secret: bool | None = None  # False once gpg said it holds no secret key for it

    @property
    def uri(self) -> str:
        return f"pgp:{self.id}"

    def _key_ids(self) -> set[str]:
        """Long key IDs of this key and its subkeys (what gpg's `ENC_TO` names), from the public keyring."""
        result = run_gpg(self.settings, ["--with-colons", "--list-keys", "--", self.id], b"")
        lines = result.stdout.decode("ascii", "replace").splitlines() if result.returncode == 0 else []
        return {line.split(":")[9][-16:] for line in lines if line.startswith("fpr:") and len(line.split(":")) > 9}

    def wrap(self, dek: bytes) -> bytes:
        """The ASCII-armoured message holding `dek`, signed by this key if held, else by gpg's default key.

        Raises KeyUnavailable when the public key is missing, not valid in this keyring, or nothing can sign.
        """
        return self.start_wrap(dek)()

    def start_wrap(self, dek: bytes) -> Callable[[], bytes]:
        """`wrap`, with gpg started now and awaited by the returned function (envelope.seal encrypts the values
        meanwhile)."""
        if len(dek) != DEK_BYTES:
            raise ValueError("a data key is 32 bytes")
        tail = ["--sign", "--armor", "--encrypt", "--recipient", self.id, "--output", "-"]
        if self._holds_secret is False:
            pending = start_gpg(self.settings, tail, dek)
        else:
            # One gpg process in the usual case (the key is our own): sign with it, and only when gpg answers
            # `INV_SGNR 9` (no secret key for it) run again, signed by gpg's default key.
            pending = start_gpg(self.settings, ["--local-user", self.id, *tail], dek)

        def finish() -> bytes:
            result = pending()
            if any(args[:1] == ["9"] for args in result.args("INV_SGNR")) and not result.has("SIG_CREATED"):
                self._holds_secret = False
                result = run_gpg(self.settings, tail, dek)
            if result.returncode == 0 and result.has("END_ENCRYPTION") and result.has("SIG_CREATED"):
                return result.stdout
            raise KeyUnavailable(self._wrap_failure(result))

        return finish

    def _wrap_failure(self, result: GpgResult) -> str:
        for args in result.args("INV_RECP"):
            reason = args[0] if args else ""
            if reason == "1":
                return f"pgp key {self.id} is not in the GnuPG keyring (import its public key)"
            if reason == "10":
                return (
                    f"GnuPG does not consider pgp key {self.id} valid: certify it (gpg --lsign-key {self.id}) "
                    "or set its owner trust"
                )
            if reason in ("4", "5", "6"):
                return f"pgp key {self.id} is revoked or expired"
            return f"pgp key {self.id} cannot be used for encryption (gpg reason {reason})"
        if result.has("INV_SGNR") or result.has("NO_SGNR"):
            return f"no usable GnuPG secret key to sign the data key for pgp:{self.id}"
        if result.has("PINENTRY_LAUNCHED") or (result.has("BEGIN_SIGNING") and not result.has("SIG_CREATED")):
            return (
                f"GnuPG could not sign the data key for pgp:{self.id} (a passphrase-protected key needs a running "
                "gpg-agent with the passphrase cached, or GPG_TTY set for its pinentry)"
            )
        detail = f": {result.last_message}" if result.last_message else ""
        return f"gpg could not encrypt to pgp:{self.id}{detail}"

    def unwrap(self, blob: bytes) -> bytes:
        """The DEK from an armoured message, only if it was encrypted to this key and carries a valid signature.

        Raises KeyUnavailable when the secret key is not held; CryptoError when the message is damaged, was made
        for another key, is unsigned, or its signature does not verify against a key in the keyring.
        """
        return self.start_unwrap(blob)()

    def start_unwrap(self, blob: bytes) -> Callable[[], bytes]:
        """`unwrap`, with gpg started now and awaited by the returned function (envelope.open_manifest parses
        the values meanwhile)."""
        if len(blob) > MAX_BLOB_BYTES:
            raise CryptoError(f"wrapped data key for pgp:{self.id} is too large to be one")
        pending = start_gpg(self.settings, ["--decrypt", "--output", "-"], blob)
        return lambda: self._unwrapped(pending())

    def _unwrapped(self, result: GpgResult) -> bytes:
        if not result.has("DECRYPTION_OKAY"):
            if result.has("NO_SECKEY"):
                # Only when we know this key's subkeys and the message names none of them is it another key's.
                recipients = {args[0] for args in result.args("ENC_TO") if args}
                own = self._key_ids()
                if own and recipients and not recipients & own:
                    raise CryptoError(f"wrapped data key for pgp:{self.id} was encrypted to another key")
                raise KeyUnavailable(f"the GnuPG keyring holds no secret key for pgp:{self.id}")
            if any(args and args[0] == "pkdecrypt_failed" for args in result.args("ERROR")):
                raise KeyUnavailable(
                    f"GnuPG could not use the secret key for pgp:{self.id} (a passphrase-protected key needs a "
                    "running gpg-agent with the passphrase cached, or GPG_TTY set for its pinentry)"
                )
            raise CryptoError(f"wrapped data key for pgp:{self.id} is damaged or not a GnuPG message")
        used = [args[1] for args in result.args("DECRYPTION_KEY") if len(args) > 1]
        if used and self.id not in used:
            raise CryptoError(f"wrapped data key for pgp:{self.id} was encrypted to another key ({used[0]})")
        if any(result.has(bad) for bad in ("BADSIG", "ERRSIG", "REVKEYSIG")) or not result.has("VALIDSIG"):
            raise CryptoError(self._signature_failure(result))
        if result.returncode != 0:
            raise CryptoError(f"gpg reported an error unwrapping the data key for pgp:{self.id}: {result.last_message}")
        if len(result.stdout) != DEK_BYTES:
            raise CryptoError(f"wrapped data key for pgp:{self.id} does not hold a 32-byte data key")
        return result.stdout

    def _signature_failure(self, result: GpgResult) -> str:
        if result.has("BADSIG"):
            return f"wrapped data key for pgp:{self.id} has a BAD signature"
        for args in result.args("REVKEYSIG"):
            return f"wrapped data key for pgp:{self.id} is signed by {args[0] if args else 'a key'}, which is revoked"
        for args in result.args("ERRSIG"):
            if len(args) > 5 and args[5] == "9":
                return (
                    f"wrapped data key for pgp:{self.id} is signed by {args[0]}, "
                    "whose public key is not in the keyring"
                )
            return f"the signature on the wrapped data key for pgp:{self.id} cannot be checked"
        return f"wrapped data key for pgp:{self.id} is not signed; kubesec and kagiya refuse unsigned data keys"


def open_key(key_id: str, settings: SecretsSettings) -> PgpKey:
    """`pgp:FINGERPRINT`: the full primary-key fingerprint, upper-cased (short IDs and e-mail addresses are refused:
    they can match more than one key)."""
    fingerprint = key_id.strip().upper()
    if not _FINGERPRINT.match(fingerprint):
        raise BadKeyName(f"pgp key {key_id!r} must be a full 40-hex-digit fingerprint (gpg --fingerprint)")
    return PgpKey(fingerprint, settings)

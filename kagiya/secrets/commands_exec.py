"""`kagiya secrets exec-env FILE -- CMD…` and `exec-file FILE -- CMD… {}`: hand decrypted values to a child process
without writing them to disk.

exec-env: each Secret's `data` (base64-decoded) and `stringData` keys become environment variables of the child
(for a non-Secret sops file, its top-level scalar keys, as `sops exec-env` does). Keys that are not valid variable
names, and binary values, are skipped with a note naming the key. Nothing is written anywhere.

exec-file: the decrypted file is served through a FIFO in a private 0700 directory (default): the child reads it
once from the pipe, nothing lands on a disk. With `--no-fifo` (for programs that seek or read twice) it is an
already-unlinked 0600 temp file handed to the child as `/dev/fd/N`: it has no name in any directory. `{}` in the
command is replaced by the path. The child's exit status is ours.
"""

from __future__ import annotations

import os
import re
from typing import Any

import click

from kagiya.errors import UsageError

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _settings() -> object:
    from kagiya.secrets.cli_common import secrets_settings

    return secrets_settings()


def _open(file: str) -> Any:
    from kagiya.secrets import formats, ops

    settings = _settings()
    src = ops.read_source(file, settings)
    return formats.decrypt(src.text, settings, path=src.path)


def env_values(plaintext: str) -> tuple[dict[str, str], list[str]]:
    """(variables, notes) from a decrypted manifest or sops file."""
    import base64
    import binascii

    out: dict[str, str] = {}
    notes: list[str] = []
    for doc in _documents(plaintext):
        if not isinstance(doc, dict):
            continue
        if doc.get("kind") == "Secret":
            items: list[tuple[str, Any, bool]] = [(k, v, True) for k, v in (doc.get("data") or {}).items()]
            items += [(k, v, False) for k, v in (doc.get("stringData") or {}).items()]
        else:
            items = [(k, v, False) for k, v in doc.items() if not isinstance(v, dict | list)]
        for key, value, encoded in items:
            key = str(key)
            if not ENV_NAME.match(key):
                notes.append(f"{key}: not a valid environment variable name, skipped")
                continue
            text = "" if value is None else ("true" if value else "false") if isinstance(value, bool) else str(value)
            if encoded:
                try:
                    text = base64.b64decode(text, validate=False).decode("utf-8")
                except (binascii.Error, ValueError, UnicodeDecodeError):
                    notes.append(f"{key}: binary data, skipped")
                    continue
            if "\0" in text:
                notes.append(f"{key}: contains a NUL byte, skipped")
                continue
            out[key] = text
    return out, notes


def _documents(plaintext: str) -> list[Any]:
    """The decrypted file's documents: a sops JSON file is JSON (its tab indentation is not YAML)."""
    import json

    import yaml

    try:
        if plaintext.lstrip().startswith("{"):
            return [json.loads(plaintext)]
        return list(yaml.safe_load_all(plaintext))
    except (ValueError, yaml.YAMLError, RecursionError):
        raise UsageError("the decrypted file is neither YAML nor JSON") from None


def _run(argv: list[str], env: dict[str, str] | None = None, pass_fds: tuple[int, ...] = ()) -> int:
    """Run the child in the foreground; our exit status is its status (128+N for a signal, as shells report).

    SIGTERM and SIGHUP sent to kagiya (a CI runner cancelling, a closed terminal) are passed on to the child and
    kagiya waits for it: dying at once would leave the child running and skip exec-file's FIFO clean-up."""
    import signal
    import subprocess

    try:
        proc = subprocess.Popen(argv, env=env, pass_fds=pass_fds)
    except FileNotFoundError:
        raise UsageError(f"command not found: {argv[0]}") from None
    except PermissionError:
        raise UsageError(f"command not executable: {argv[0]}") from None
    previous = {}
    for signum in (signal.SIGTERM, signal.SIGHUP):
        try:
            previous[signum] = signal.signal(signum, lambda number, _frame: proc.send_signal(number))
        except ValueError:  # not the main thread (an embedding caller): keep the default handling
            pass
    try:
        while True:
            try:
                code = proc.wait()
                break
            except KeyboardInterrupt:  # Ctrl-C reached the child too (same process group): wait for it
                continue
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 128 - code if code < 0 else code


@click.command(name="exec-env", context_settings={"ignore_unknown_options": True})
@click.argument("file")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option("--pristine", is_flag=True, help="Give the child only the decrypted variables (and PATH).")
def exec_env(file: str, command: tuple[str, ...], pristine: bool) -> None:
    """Run COMMAND with FILE's decrypted values as environment variables (never written to disk)."""
    values, notes = env_values(_open(file).text)
    for note in notes:
        click.echo(f"kagiya: {file}: {note}", err=True)
    env = {"PATH": os.environ.get("PATH", "")} if pristine else dict(os.environ)
    env.update(values)
    raise click.exceptions.Exit(_run(list(command), env))


@click.command(name="exec-file", context_settings={"ignore_unknown_options": True})
@click.argument("file")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option("--no-fifo", is_flag=True, help="Use an unlinked 0600 temp file (/dev/fd/N) instead of a FIFO.")
def exec_file(file: str, command: tuple[str, ...], no_fifo: bool) -> None:
    """Run COMMAND with {} replaced by a path from which FILE's plaintext can be read (FIFO by default)."""
    data = _open(file).text.encode("utf-8")
    argv = list(command)
    if not any("{}" in a for a in argv):
        raise UsageError("the command must contain {} where the decrypted file's path goes")
    if no_fifo:
        raise click.exceptions.Exit(_run_with_unlinked_file(argv, data))
    raise click.exceptions.Exit(_run_with_fifo(argv, data))


def _run_with_unlinked_file(argv: list[str], data: bytes) -> int:
    import tempfile

    fd, path = tempfile.mkstemp(prefix="kagiya-")  # 0600, O_EXCL
    try:
        os.unlink(path)  # gone from the directory before any plaintext is written
        os.write(fd, data)
        os.lseek(fd, 0, os.SEEK_SET)
        child_path = f"/dev/fd/{fd}"
        return _run([a.replace("{}", child_path) for a in argv], pass_fds=(fd,))
    finally:
        os.close(fd)


def _run_with_fifo(argv: list[str], data: bytes) -> int:
    import sys
    import tempfile
    import threading

    directory = tempfile.mkdtemp(prefix="kagiya-")  # 0700
    fifo = os.path.join(directory, "secret")
    os.mkfifo(fifo, 0o600)
    done = threading.Event()

    def feed() -> None:
        try:
            with open(fifo, "wb") as pipe:  # blocks until the child opens it for reading
                if not done.is_set():
                    pipe.write(data)
        except (BrokenPipeError, OSError):
            pass  # the child stopped reading early: its business

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    try:
        return _run([a.replace("{}", fifo) for a in argv])
    finally:
        done.set()
        if writer.is_alive():  # the child never opened the FIFO: open it ourselves so the writer can finish
            try:
                os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
            except OSError:
                pass
            writer.join(timeout=5)
        os.unlink(fifo)
        os.rmdir(directory)
        sys.stdout.flush()

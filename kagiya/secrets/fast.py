"""`kagiya secrets decrypt | encrypt | check` without click: the verbs a developer and the pre-commit hook run
dozens of times a day, where start-up is most of the time.

Only plain arguments take this path: the options listed in `FLAGS` / `VALUED`, files, and `-` for stdin. Anything
else (`--help`, `--for-diff`, `--template`, an unknown or misspelt option, a `--` separator) returns None and the
click command in commands_crypt.py / commands_check.py handles it, with click's usage errors and help. Both paths
call the same ops / checker functions and report errors the same way (one line, the error's exit status).
"""

from __future__ import annotations

import os
import sys

FLAGS = {
    "decrypt": {"-i": "in_place", "--in-place": "in_place", "--cleartext": "cleartext",
                "--allow-unauthenticated": "allow_unauthenticated"},
    "encrypt": {"-i": "in_place", "--in-place": "in_place", "--cleartext": "cleartext", "--rotate": "rotate",
                "--allow-unauthenticated": "allow_unauthenticated"},
    "check": {"--fix": "fix"},
}
VALUED = {
    "decrypt": {"-o": "output", "--output": "output"},
    "encrypt": {"-o": "output", "--output": "output", "-k": "keys", "--key": "keys"},
    "check": {},
}


def parse(verb: str, args: list[str]) -> tuple[dict[str, object], list[str]] | None:
    """(options, positional arguments), or None when click should handle these arguments."""
    flags, valued = FLAGS[verb], VALUED[verb]
    opts: dict[str, object] = {"keys": []}
    files: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        name, eq, inline = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        if arg == "-" or not arg.startswith("-"):
            files.append(arg)
        elif name in flags and not eq:
            opts[flags[name]] = True
        elif name in valued:
            if eq:
                value = inline
            elif i + 1 < len(args):
                i += 1
                value = args[i]
            else:
                return None
            if valued[name] == "keys":
                opts["keys"].append(value)  # type: ignore[attr-defined]
            elif valued[name] in opts:
                return None  # given twice: let click decide
            else:
                opts[valued[name]] = value
        else:
            return None
        i += 1
    if verb != "check" and len(files) > 1:
        return None
    return opts, files


class DefaultSettings:
    """The `secrets:` section's defaults (settings.SecretsSettings, checked equal by tests/secrets) without
    importing `dataclasses`, for a process with no configuration but, at most, KAGIYA_KEYRING."""

    gnupg_home = ""
    gpg_binary = "gpg"
    gcp_kms_endpoint = ""
    aws_kms_endpoint = ""
    kms_timeout_seconds = 10.0
    max_file_bytes = 16 * 1024 * 1024
    default_recipients: tuple[str, ...] = ()
    decrypt_groups: tuple[str, ...] = ()
    age_key_file = ""

    def __init__(self, keyring: str = "") -> None:
        self.keyring = keyring


def settings() -> object:
    """The `secrets:` section: the defaults plus KAGIYA_KEYRING when that is the only kagiya variable set (the
    usual case), else through config.load_section, which validates every KAGIYA_SECRETS_* variable."""
    names = [k for k in os.environ if k.startswith("KAGIYA_")]
    if not names or names == ["KAGIYA_KEYRING"]:
        return DefaultSettings(os.environ.get("KAGIYA_KEYRING", ""))
    from kagiya.config import load_section

    return load_section("secrets")


def run(args: list[str]) -> int | None:
    """Run `kagiya secrets ARGS` here and return the exit status, or None to hand over to click."""
    if not args or args[0] not in FLAGS or "KAGIYA_CONFIG" in os.environ:
        return None
    verb = args[0]
    parsed = parse(verb, args[1:])
    if parsed is None:
        return None
    opts, files = parsed
    import gc

    gc.disable()  # a short-lived process building many small objects; reference counting frees them
    try:
        return _dispatch(verb, opts, files)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - the same one-line report as kagiya.cli_app.main
        from kagiya.errors import ExitCode, KagiyaError

        if isinstance(exc, KagiyaError):
            sys.stderr.write(f"kagiya: error: {exc.message}\n")
            return int(exc.exit_code)
        sys.stderr.write(f"kagiya: internal error: {type(exc).__name__}: {exc} (run with --traceback for details)\n")
        return int(ExitCode.ERROR)
    finally:
        gc.enable()


def _dispatch(verb: str, opts: dict[str, object], files: list[str]) -> int:
    if verb == "check":
        from kagiya.secrets import checker

        def note(line: str) -> None:
            sys.stderr.write(line + "\n")

        findings = checker.run(files, bool(opts.get("fix")), settings, note)
        for line in findings:
            sys.stderr.write(line + "\n")
        return 1 if findings else 0
    from kagiya.secrets import ops

    file = files[0] if files else "-"
    in_place, output = bool(opts.get("in_place")), opts.get("output")
    if in_place and output:
        from kagiya.errors import UsageError

        raise UsageError("use either -i or -o, not both")
    sset = settings()
    with ops.file_lock(file if in_place and verb == "encrypt" else None):
        src = ops.read_source(file, sset)
        if verb == "decrypt":
            if "sops" in src.text:
                from kagiya.secrets.commands_sops import decrypt_other_format

                if decrypt_other_format(src, sset, in_place, output if isinstance(output, str) else None):
                    return 0
            text, _ = ops.decrypt(src, sset, cleartext=bool(opts.get("cleartext")),
                                  allow_unauthenticated=bool(opts.get("allow_unauthenticated")))
        else:
            text = ops.encrypt(src, sset, list(opts["keys"]), rotate=bool(opts.get("rotate")),  # type: ignore[call-overload]
                               cleartext=bool(opts.get("cleartext")),
                               allow_unauthenticated=bool(opts.get("allow_unauthenticated")))
        ops.write_result(text, src, in_place, output if isinstance(output, str) else None)
    return 0

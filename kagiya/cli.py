"""The `kagiya` command's entry point. Tiny on purpose: `kagiya --help` and the hot `kagiya secrets` verbs must
start fast, so this module imports nothing but `sys`.

`kagiya secrets decrypt | encrypt | check` with plain arguments run through kagiya/secrets/fast.py without click;
`kagiya --help` is printed from the tables below. Everything else (other verbs, `--help` of a verb, any option the
fast path does not know, shell completion) goes to the click application in kagiya/cli_app.py, which gives the
same results for those commands. Known errors print one line on stderr and exit with their `ExitCode`.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # typing itself costs start-up time; mypy treats this name as typing.TYPE_CHECKING
if TYPE_CHECKING:
    from typing import Any

    from kagiya.cli_app import LazyGroup, cli, get_settings  # noqa: F401 - re-exported through __getattr__

#: name -> ("module:attribute", one-line help shown by `kagiya --help` without importing the module).
LAZY_GROUPS: dict[str, tuple[str, str]] = {
    "secrets": ("kagiya.secrets.commands:group", "Encrypt, decrypt and check Kubernetes Secret manifests."),
    "authn": ("kagiya.authn.commands:group", "Webhook certificates, configs and provider checks."),
    "iam": ("kagiya.iam.commands:group", "Pod-to-cloud-identity bindings, requests and policy."),
    "authz": ("kagiya.authz.commands:group", "Check and explain the SubjectAccessReview policy."),
    "login": ("kagiya.login.commands:command", "kubectl credential plugin: print an ExecCredential."),
    "agent": ("kagiya.iam.agent:command", "Node-local metadata agent that forwards pod evidence to kagiya."),
}
#: Commands defined in cli_app itself, with their one-line help (kept equal to click's by tests/secrets).
BUILTIN_COMMANDS: dict[str, str] = {
    "serve": "Serve the HTTP API and webhooks.",
    "version": "Print the kagiya version.",
}
ROOT_OPTIONS = (
    ("--config FILE", "YAML settings file (also KAGIYA_CONFIG)."),
    ("--traceback", "Show the full traceback of unexpected errors."),
    ("-h, --help", "Show this message and exit."),
)
DESCRIPTION = "kagiya (鍵屋): keeps a Kubernetes platform's keys."


def help_text() -> str:
    """`kagiya --help` without click, in click's layout (tests compare the two)."""
    def rows(pairs: list[tuple[str, str]]) -> list[str]:
        width = max(len(a) for a, _ in pairs)
        return [f"  {a.ljust(width)}  {b}" for a, b in pairs]

    commands = sorted([(n, h) for n, (_, h) in LAZY_GROUPS.items()] + list(BUILTIN_COMMANDS.items()))
    lines = ["Usage: kagiya [OPTIONS] COMMAND [ARGS]...", "", f"  {DESCRIPTION}", "", "Options:"]
    lines += rows(list(ROOT_OPTIONS)) + ["", "Commands:"] + rows(commands)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Console entry point: run the command and turn errors into one line and an exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) > 1 and args[0] == "secrets":
        from kagiya.secrets import fast

        rv = fast.run(args[1:])
        if rv is not None:
            if argv is None:  # the real process, not a caller in Python (tests, the HTTP app)
                _exit_now(rv)
            return rv
    elif args in (["--help"], ["-h"]):
        sys.stdout.write(help_text())
        return 0
    from kagiya import cli_app

    return cli_app.main(args)


def _exit_now(rv: int) -> None:
    """End the process without the interpreter's teardown, which frees every module and object one by one:
    ~5 ms of a one-key `kagiya secrets decrypt` (issue 13). The fast path has closed and renamed every file it
    wrote and reaped every gpg it started, so only the standard streams need flushing; if that fails (a closed
    pipe), return and let the normal exit report it."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        return
    import os

    os._exit(rv)


def __getattr__(name: str) -> Any:
    """`kagiya.cli.get_settings`, `.cli`, `.LazyGroup`…: the click side, imported on first use."""
    if name.startswith("__"):
        raise AttributeError(name)
    from kagiya import cli_app

    return getattr(cli_app, name)


if __name__ == "__main__":
    sys.exit(main())

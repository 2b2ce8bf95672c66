"""The click side of the `kagiya` command: the root group, lazily imported capability groups, `serve`.

kagiya/cli.py is the entry point and reaches this module only when a command needs click (the hot secrets verbs
and `kagiya --help` do not). Capability groups are imported only when invoked (`LAZY_GROUPS`), and nothing heavy
(Flask, boto3, google.cloud, kubernetes) is imported at module level anywhere on the CLI path. Known errors print
one line on stderr and exit with their `ExitCode`; `--traceback` shows the full trace for anything else.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

from kagiya import __version__
from kagiya.cli import LAZY_GROUPS
from kagiya.errors import ExitCode, KagiyaError


class LazyGroup(click.Group):
    """A click group whose subcommands live in a table `name -> ("module:attribute", one-line help)` and are
    imported only when invoked; `--help` lists them from the table without importing anything."""

    def __init__(self, *args: Any, lazy: dict[str, tuple[str, str]] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = LAZY_GROUPS if lazy is None else lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy and cmd_name not in self.commands:
            module, _, attr = self.lazy[cmd_name][0].partition(":")
            command = getattr(importlib.import_module(module), attr)
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            if name in self.lazy and name not in self.commands:
                rows.append((name, self.lazy[name][1]))
                continue
            cmd = super().get_command(ctx, name)
            if cmd is not None and not cmd.hidden:
                rows.append((name, cmd.get_short_help_str(limit=formatter.width - 6 - len(name))))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--config", "config_file", type=click.Path(dir_okay=False), envvar="KAGIYA_CONFIG",
              help="YAML settings file (also KAGIYA_CONFIG).")
@click.option("--traceback", is_flag=True, help="Show the full traceback of unexpected errors.")
@click.pass_context
def cli(ctx: click.Context, config_file: str | None, traceback: bool) -> None:
    """kagiya (鍵屋): keeps a Kubernetes platform's keys."""
    ctx.ensure_object(dict)
    ctx.obj["config_file"] = config_file
    ctx.obj["traceback"] = traceback


def get_settings(ctx: click.Context | None = None, **overrides: Any) -> Any:
    """Settings for a command, built once per invocation from --config, the environment and `overrides`."""
    from kagiya.config import load_settings

    ctx = ctx or click.get_current_context()
    root = ctx.find_root()
    root.ensure_object(dict)
    if "settings" not in root.obj:
        root.obj["settings"] = load_settings(root.obj.get("config_file"), overrides=overrides or None)
    return root.obj["settings"]


@cli.command()
def version() -> None:
    """Print the kagiya version."""
    click.echo(f"kagiya {__version__}")


@cli.command()
@click.option("--host", default=None, help="Address to bind (default 127.0.0.1). Non-loopback requires TLS.")
@click.option("--port", type=int, default=None, help="Port (default 8080).")
@click.option("--workers", type=click.IntRange(1, 64), default=None, help="Ignored: one process per replica.")
@click.option("--dev", is_flag=True, help="Run Flask's development server instead of the serving front.")
@click.option("--tls-cert", default=None, type=click.Path(dir_okay=False), help="Server certificate (PEM).")
@click.option("--tls-key", default=None, type=click.Path(dir_okay=False), help="Server private key (PEM).")
@click.option("--client-ca", default=None, type=click.Path(dir_okay=False),
              help="CA bundle to verify client certificates (mutual TLS): a presented certificate must verify; "
                   "one is required only on the webhook paths (setting client_cert_paths; default /authn/, "
                   "/tokenreviews, /authz/, /subjectaccessreviews, /iam/agent/).")
def serve(host: str | None, port: int | None, workers: int | None, dev: bool,
          tls_cert: str | None, tls_key: str | None, client_ca: str | None) -> None:
    """Serve the HTTP API and webhooks."""
    base = get_settings()
    settings = base.replace(
        host=host if host is not None else base.host,
        port=port if port is not None else base.port,
        workers=workers if workers is not None else base.workers,
        tls_cert=tls_cert if tls_cert is not None else base.tls_cert,
        tls_key=tls_key if tls_key is not None else base.tls_key,
        client_ca=client_ca if client_ca is not None else base.client_ca,
    )
    from kagiya import serving

    serving.check_listen(settings)
    serving.run(settings, dev=dev)


def main(args: list[str]) -> int:
    """Run the click CLI on `args` and turn errors into one line and an exit status."""
    show_trace = "--traceback" in args
    try:
        rv = cli.main(args=args, prog_name="kagiya", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        return int(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("kagiya: aborted", err=True)
        return ExitCode.ERROR
    except KagiyaError as exc:
        if show_trace:
            raise
        click.echo(f"kagiya: error: {exc.message}", err=True)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - the one place unexpected errors become one line
        if show_trace:
            raise
        click.echo(f"kagiya: internal error: {type(exc).__name__}: {exc} (run with --traceback for details)", err=True)
        return ExitCode.ERROR
    return int(rv) if isinstance(rv, int) else 0


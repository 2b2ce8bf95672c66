"""Run the real `kagiya.cli.main` in-process with captured stdio (faster than a subprocess per call)."""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str


class CliRunner:
    def __call__(self, args: Sequence[str], *, input: str | None = None, env: dict[str, str] | None = None) -> Result:
        from kagiya.cli import main

        out, err = io.StringIO(), io.StringIO()
        old_env = dict(os.environ)
        old_stdin = sys.stdin
        try:
            if env:
                os.environ.update(env)
            sys.stdin = io.TextIOWrapper(io.BytesIO((input or "").encode()), encoding="utf-8")
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = main(list(args))
        finally:
            sys.stdin = old_stdin
            os.environ.clear()
            os.environ.update(old_env)
        return Result(code, out.getvalue(), err.getvalue())

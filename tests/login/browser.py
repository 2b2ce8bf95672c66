"""A stand-in web browser for the auth-code sign-in: `python tests/login/browser.py URL`.

Python's `webbrowser` (which `kagiya login` uses) runs `$BROWSER` with the sign-in URL. This script fetches it
and follows the issuer's redirect to kagiya's loopback listener, as a browser with a signed-in user does (the
stand-in issuer approves automatically). It logs each visit to `$KAGIYA_TEST_BROWSER_LOG` and never writes to
stdout (stdout belongs to the ExecCredential). Standard library only, so it starts fast.
"""

from __future__ import annotations

import os
import shlex
import sys
import urllib.request
from pathlib import Path


def command() -> str:
    """The `BROWSER` value that runs this script with the current interpreter."""
    return f"{shlex.quote(sys.executable)} {shlex.quote(str(Path(__file__).resolve()))} %s"


def browse(url: str) -> int:
    log = os.environ.get("KAGIYA_TEST_BROWSER_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(url.split("?")[0] + "\n")
    with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - loopback test URLs
        resp.read()
        return int(resp.status)


if __name__ == "__main__":
    try:
        status = browse(sys.argv[1])
    except OSError as exc:
        print(f"stand-in browser: {exc}", file=sys.stderr)
        sys.exit(1)
    sys.exit(0 if status == 200 else 1)

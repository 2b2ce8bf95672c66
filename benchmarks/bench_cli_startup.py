"""CLI start-up: `kagiya --help` as a whole process, against the bare interpreter and `import click` baselines.

The secrets CLI runs in pre-commit hooks on every commit, so start-up is a feature. Goal: under 150 ms.
Uses the venv's interpreter directly (the pyenv `python3` shim adds ~120 ms per start).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent
RUNS = 15


def median_ms(argv: list[str]) -> float:
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> int:
    bare = median_ms([sys.executable, "-c", "pass"])
    click_only = median_ms([sys.executable, "-c", "import click"])
    help_ms = median_ms([str(BIN / "kagiya"), "--help"])
    version_ms = median_ms([str(BIN / "kagiya"), "version"])
    print(f"{'command':<28}{'median ms':>10}{'vs bare':>10}")
    for name, ms in [("python -c pass", bare), ("python -c 'import click'", click_only),
                     ("kagiya --help", help_ms), ("kagiya version", version_ms)]:
        print(f"{name:<28}{ms:>10.1f}{ms / bare:>9.2f}x")
    verdict = "OK" if help_ms < 150 else "OVER BUDGET"
    print(f"kagiya --help: {help_ms:.1f} ms (goal < 150 ms): {verdict}; {help_ms / click_only:.2f}x of import click")
    return 0 if help_ms < 150 else 1


if __name__ == "__main__":
    sys.exit(main())

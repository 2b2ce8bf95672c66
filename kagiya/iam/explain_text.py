"""The text form of an explanation (`GET /v1/iam/explain`), shared by `kagiya iam explain` and the console.

Kept free of Flask and the store so the CLI can import it cheaply.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def explain_lines(result: Mapping[str, Any]) -> list[str]:
    """Every source considered for each cloud, one line each, as `kagiya iam explain` prints it."""
    who = (f"pod {result['namespace']}/{result['pod']}" if result.get("pod")
           else f"service account {result['namespace']}/{result['serviceAccount']}")
    lines = [f"{who} (service account {result['serviceAccount']})"]
    for r in result["results"]:
        if r["allowed"]:
            lines.append(f"  {r['cloud']}: {r['identity']['identity']} from {r['source']}, allowed by {r['rule']}")
        else:
            lines.append(f"  {r['cloud']}: none ({r['reason']})")
        for c in r["considered"]:
            verdict = "allowed" if c["allowed"] else "refused"
            lines.append(f"    considered {c['source']} {c['identity']}: {verdict} ({c['rule']})")
    return lines

"""The approver and operator web console under `/ui/` (docs/console.md).

Server-rendered pages over the same functions the JSON API calls: the signed-in person becomes the request's caller
(`flask.g.kagiya_caller`), so `kagiya.callers.require_admin`, `kagiya.iam.bindings.decide` / `revoke` and
`kagiya.audit.parse_query` decide and audit exactly as they do for `/v1/...`; there is no second set of rules here.
This module stays light: `init_app` imports Flask-side code only when the service is assembled.
"""

from __future__ import annotations

from typing import Any


def init_app(app: Any, settings: Any) -> None:
    """Subscribe webhook notifications (`notify:`) and, unless `console.enabled` is false, serve `/ui/`."""
    from kagiya import notify

    notify.init_app(app, settings)
    if not settings.section("console").enabled:
        return
    from kagiya.console import encrypt, pages, signin  # noqa: F401 - their routes join the blueprint
    from kagiya.console.blueprint import bp, install

    install(app, settings)
    app.register_blueprint(bp)

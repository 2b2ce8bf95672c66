"""Login-side additions to the OIDC issuer stand-in (`tests/standins/oidc_issuer.py`, not edited here).

- `LoginIssuer`: the same issuer, plus counters per grant (`grants["authorization_code"]`, `grants["refresh_token"]`,
  `grants["urn:ietf:params:oauth:grant-type:device_code"]`) and per sign-in page visit (`grants["authorize"]`), so
  tests can tell a cached token from a silent refresh from a new sign-in; `slow_down_polls = N` answers the first
  N device-grant polls with RFC 8628's `slow_down`; `deny_devices = True` answers them with `access_denied`.
The stand-in browser that drives the auth-code redirect lives in `tests/login/browser.py`.
"""

from __future__ import annotations

from collections import Counter

from flask import Response, jsonify, request

from tests.standins.oidc_issuer import OidcIssuer

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


class LoginIssuer(OidcIssuer):
    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.grants: Counter[str] = Counter()
        self.slow_down_polls = 0
        self.deny_devices = False

        @self.app.before_request
        def _count_grants() -> tuple[Response, int] | None:
            if request.path.endswith("/authorize"):
                self.grants["authorize"] += 1
            elif request.path.endswith("/token") and request.method == "POST":
                grant = request.form.get("grant_type", "")
                self.grants[grant] += 1
                if grant == DEVICE_GRANT and self.deny_devices:
                    return jsonify(error="access_denied", error_description="the user said no"), 400
                if grant == DEVICE_GRANT and self.slow_down_polls > 0:
                    self.slow_down_polls -= 1
                    return jsonify(error="slow_down", error_description="poll less often"), 400
            return None

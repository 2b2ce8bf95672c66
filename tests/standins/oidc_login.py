"""Login-side additions to the OIDC issuer stand-in (`tests/standins/oidc_issuer.py`, not edited here).

- `LoginIssuer`: the same issuer, plus counters per grant (`grants["authorization_code"]`, `grants["refresh_token"]`,
  `grants["urn:ietf:params:oauth:grant-type:device_code"]`) and per sign-in page visit (`grants["authorize"]`), so
  tests can tell a cached token from a silent refresh from a new sign-in.
The stand-in browser that drives the auth-code redirect lives in `tests/login/browser.py`.
"""

from __future__ import annotations

from collections import Counter

from flask import request

from tests.standins.oidc_issuer import OidcIssuer


class LoginIssuer(OidcIssuer):
    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.grants: Counter[str] = Counter()

        @self.app.before_request
        def _count_grants() -> None:
            if request.path.endswith("/authorize"):
                self.grants["authorize"] += 1
            elif request.path.endswith("/token") and request.method == "POST":
                self.grants[request.form.get("grant_type", "")] += 1

"""A GitHub REST API v3 stand-in: the three calls kagiya's GitHub provider makes, with GitHub's real shapes.

- `GET /user` → `{"login","id","type",...}`; `401 {"message":"Bad credentials"}` for an unknown token.
- `GET /user/memberships/orgs/{org}` → `{"state":"active"|"pending","role","organization":{"login"}}`,
  `404 {"message":"Not Found"}` when not a member, `403` when the token lacks `read:org`.
- `GET /user/teams?per_page=&page=` → teams across all orgs, `Link: <…>; rel="next", <…>; rel="last"` paging
  (default 30 per page, at most 100, as GitHub does).
- Every reply carries `X-RateLimit-Limit/Remaining/Reset/Used/Resource`. Knobs: `rate_limited` (primary limit:
  403 with `Remaining: 0`), `secondary_limited` (429 + `Retry-After`), `sso_required` (orgs whose SAML SSO the token
  has not authorised: 403 + `X-GitHub-SSO: required; url=…`), `fail_status`, `delay`.
- `prefix="/api/v3"` serves GitHub Enterprise Server's path layout.
Tokens are sent as `Authorization: token X` or `Authorization: Bearer X`, as GitHub accepts both.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from flask import Flask, Response, jsonify, request

from tests.support.threaded import Serving, ThreadedServer

READ_ORG = ("read:org", "read:user")


@dataclass
class GitHubUser:
    login: str
    id: int
    token: str
    scopes: tuple[str, ...] = READ_ORG


@dataclass
class GitHubState:
    users: dict[str, GitHubUser] = field(default_factory=dict)  # token -> user
    #: (login, org) -> "active" | "pending"
    memberships: dict[tuple[str, str], str] = field(default_factory=dict)
    #: (org, slug) -> member logins
    teams: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    #: tokens -> orgs whose SAML SSO they are not authorised for
    sso_required: dict[str, set[str]] = field(default_factory=dict)


class GitHubStandIn(Serving):
    """`with GitHubStandIn() as gh:` then `gh.add_user(...)`, `gh.base_url` for the provider's `base_url`."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
        self.state = GitHubState()
        self.rate_limited = False
        self.secondary_limited = False
        self.fail_status = 0
        self.delay = 0.0
        #: When set, paging links point at this origin instead (a hostile or misconfigured proxy).
        self.link_origin = ""
        self.hits: Counter[str] = Counter()
        #: Every Authorization header value seen (tests check tokens only travel to this host).
        self.seen_auth: list[str] = []
        self.app = self._make_app()
        self._server = ThreadedServer(self.app, "github-standin")

    # ---- lifecycle: start(port)/stop()/with, port and url come from Serving ----------------------------------
    @property
    def base_url(self) -> str:
        return self.url + self.prefix

    # ---- fixtures --------------------------------------------------------------------------------------------
    def add_user(self, login: str, uid: int, token: str, *, scopes: tuple[str, ...] = (READ_ORG)) -> None:
        self.state.users[token] = GitHubUser(login, uid, token, scopes)

    def add_member(self, login: str, org: str, state: str = "active") -> None:
        self.state.memberships[(login, org.lower())] = state

    def add_team(self, org: str, slug: str, *members: str) -> None:
        self.state.teams.setdefault((org, slug), set()).update(members)

    # ---- the API ---------------------------------------------------------------------------------------------
    def _make_app(self) -> Flask:
        app = Flask("github-standin")
        p = self.prefix

        def rate_headers(resp: Response, remaining: int) -> Response:
            resp.headers["X-RateLimit-Limit"] = "5000"
            resp.headers["X-RateLimit-Remaining"] = str(remaining)
            resp.headers["X-RateLimit-Reset"] = "1893456000"
            resp.headers["X-RateLimit-Used"] = str(5000 - remaining)
            resp.headers["X-RateLimit-Resource"] = "core"
            resp.headers["X-GitHub-Media-Type"] = "github.v3; format=json"
            return resp

        def error(status: int, message: str, remaining: int = 4999) -> Response:
            resp = jsonify({"message": message, "documentation_url": "https://docs.github.com/rest"})
            resp.status_code = status
            return rate_headers(resp, remaining)

        def caller() -> GitHubUser | Response:
            header = request.headers.get("Authorization", "")
            self.seen_auth.append(header)
            scheme, _, token = header.partition(" ")
            if not header:
                return error(401, "Requires authentication")
            if scheme.lower() not in ("token", "bearer") or token not in self.state.users:
                return error(401, "Bad credentials")
            return self.state.users[token]

        @app.before_request
        def _faults() -> Response | None:
            self.hits[request.path] += 1
            if self.delay:
                self._server.release.wait(self.delay)
            if self.fail_status:
                return error(self.fail_status, "Server Error")
            if self.rate_limited:
                return error(403, "API rate limit exceeded for user ID 1.", remaining=0)
            if self.secondary_limited:
                resp = error(429, "You have exceeded a secondary rate limit.")
                resp.headers["Retry-After"] = "60"
                return resp
            return None

        def sso_check(user: GitHubUser, org: str) -> Response | None:
            if org.lower() in {o.lower() for o in self.state.sso_required.get(user.token, set())}:
                resp = error(403, "Resource protected by organization SAML enforcement. You must grant your "
                                  "Personal Access token access to this organization.")
                resp.headers["X-GitHub-SSO"] = f"required; url=https://github.com/orgs/{org}/sso?authorization_request=x"
                return resp
            return None

        @app.get(p + "/user")
        def user() -> Response:
            who = caller()
            if isinstance(who, Response):
                return who
            resp = jsonify({"login": who.login, "id": who.id, "node_id": f"U_{who.id}", "type": "User",
                            "site_admin": False, "name": who.login.title()})
            resp.headers["X-OAuth-Scopes"] = ", ".join(who.scopes)
            return rate_headers(resp, 4999)

        @app.get(p + "/user/memberships/orgs/<org>")
        def membership(org: str) -> Response:
            who = caller()
            if isinstance(who, Response):
                return who
            if "read:org" not in who.scopes:
                return error(403, "You need at least read:org scope or user scope to list your org memberships.")
            blocked = sso_check(who, org)
            if blocked is not None:
                return blocked
            state = self.state.memberships.get((who.login, org.lower()))
            if state is None:
                return error(404, "Not Found")
            return rate_headers(jsonify({
                "url": f"{request.host_url}user/memberships/orgs/{org}",
                "state": state,
                "role": "member",
                "organization": {"login": org, "id": 1000 + len(org)},
                "user": {"login": who.login, "id": who.id},
            }), 4999)

        @app.get(p + "/user/teams")
        def teams() -> Response:
            who = caller()
            if isinstance(who, Response):
                return who
            if "read:org" not in who.scopes:
                return error(403, "Resource not accessible by personal access token")
            try:
                per_page = min(max(int(request.args.get("per_page", 30)), 1), 100)
                page = max(int(request.args.get("page", 1)), 1)
            except ValueError:
                return error(422, "Invalid request.")
            sso_orgs = {o.lower() for o in self.state.sso_required.get(who.token, set())}
            mine = sorted(
                (org, slug) for (org, slug), members in self.state.teams.items()
                if who.login in members and org.lower() not in sso_orgs
            )
            items = [
                {"id": 5000 + i, "slug": slug, "name": slug.replace("-", " ").title(), "privacy": "closed",
                 "organization": {"login": org, "id": 1000 + len(org)}}
                for i, (org, slug) in enumerate(mine)
            ]
            chunk = items[(page - 1) * per_page : page * per_page]
            resp = rate_headers(jsonify(chunk), 4999)
            last = max(1, -(-len(items) // per_page))
            origin = self.link_origin or request.host_url.rstrip("/")
            base = f"{origin}{p}/user/teams?per_page={per_page}&page="
            links = []
            if page < last:
                links += [f'<{base}{page + 1}>; rel="next"', f'<{base}{last}>; rel="last"']
            if page > 1:
                links += [f'<{base}{page - 1}>; rel="prev"', f'<{base}1>; rel="first"']
            if links:
                resp.headers["Link"] = ", ".join(links)
            if sso_orgs:
                resp.headers["X-GitHub-SSO"] = "partial-results; organizations=" + ",".join(sorted(sso_orgs))
            return resp

        return app

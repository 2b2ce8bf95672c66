"""A GitLab REST API v4 stand-in: `GET /api/v4/user` and `GET /api/v4/groups`, with GitLab's real shapes.

- Tokens arrive as `PRIVATE-TOKEN: X` or `Authorization: Bearer X` (GitLab accepts both for personal access tokens);
  unknown → `401 {"message":"401 Unauthorized"}`; a token without `read_api` gets `403 {"error":"insufficient_scope"}`
  on `/groups`; a blocked user gets `403` everywhere.
- `/groups?min_access_level=N` lists groups where the user's access (direct, or inherited from an ancestor group,
  as in GitLab) is at least N, ordered by name; `full_path` includes subgroups (`acme/platform/sre`).
- Offset pagination as GitLab sends it: `X-Page`, `X-Per-Page` (default 20, max 100), `X-Next-Page` (empty on the
  last page), `X-Prev-Page`, `X-Total`, `X-Total-Pages`, and `Link` (rel next/prev/first/last). `links=False`
  drops `Link` so clients must use `X-Next-Page`.
- Knobs: `rate_limited` (429 with `RateLimit-*` and `Retry-After`), `fail_status`, `delay`; `prefix` for a
  self-hosted instance under a path (`https://host/gitlab`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, Response, jsonify, request

from tests.support.threaded import Serving, ThreadedServer


@dataclass
class GitLabUser:
    username: str
    id: int
    token: str
    scopes: tuple[str, ...] = ("read_api", "read_user")
    state: str = "active"


@dataclass
class GitLabGroup:
    id: int
    full_path: str
    members: dict[str, int] = field(default_factory=dict)  # username -> access level (10 guest … 50 owner)


class GitLabStandIn(Serving):
    def __init__(self, prefix: str = "") -> None:
        self.prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
        self.users: dict[str, GitLabUser] = {}
        self.groups: dict[str, GitLabGroup] = {}
        self.rate_limited = False
        self.fail_status = 0
        self.delay = 0.0
        self.links = True
        self.hits: Counter[str] = Counter()
        self.seen_auth: list[tuple[str, str]] = []
        self.app = self._make_app()
        self._server = ThreadedServer(self.app, "gitlab-standin")

    @property
    def base_url(self) -> str:
        return self.url + self.prefix

    def add_user(self, username: str, uid: int, token: str, **kw: Any) -> None:
        self.users[token] = GitLabUser(username, uid, token, **kw)

    def add_group(self, full_path: str, **members: int) -> None:
        group = self.groups.setdefault(full_path, GitLabGroup(9000 + len(self.groups), full_path))
        group.members.update(members)

    def access(self, username: str, full_path: str) -> int:
        """Direct or inherited access: the highest level held on the group or any ancestor."""
        parts = full_path.split("/")
        levels = [
            self.groups[p].members.get(username, 0)
            for p in ("/".join(parts[:i]) for i in range(1, len(parts) + 1))
            if p in self.groups
        ]
        return max(levels, default=0)

    def _make_app(self) -> Flask:
        app = Flask("gitlab-standin")
        p = self.prefix + "/api/v4"

        def error(status: int, body: dict[str, Any]) -> Response:
            resp = jsonify(body)
            resp.status_code = status
            return resp

        def caller() -> GitLabUser | Response:
            private = request.headers.get("PRIVATE-TOKEN", "")
            scheme, _, bearer = request.headers.get("Authorization", "").partition(" ")
            self.seen_auth.append(("PRIVATE-TOKEN", private) if private else ("Authorization", bearer))
            token = private or (bearer if scheme.lower() == "bearer" else "")
            user = self.users.get(token)
            if user is None:
                return error(401, {"message": "401 Unauthorized"})
            if user.state != "active":
                return error(403, {"message": "403 Forbidden - Your account has been blocked."})
            return user

        @app.before_request
        def _faults() -> Response | None:
            self.hits[request.path] += 1
            if self.delay:
                self._server.release.wait(self.delay)
            if self.fail_status:
                return error(self.fail_status, {"message": f"{self.fail_status} Internal Server Error"})
            if self.rate_limited:
                resp = error(429, {"message": "Retry later"})
                resp.headers.update({"RateLimit-Limit": "2000", "RateLimit-Remaining": "0",
                                     "RateLimit-Reset": "1893456000", "Retry-After": "60"})
                return resp
            return None

        @app.get(p + "/user")
        def user() -> Response:
            who = caller()
            if isinstance(who, Response):
                return who
            return jsonify({"id": who.id, "username": who.username, "name": who.username.title(),
                            "state": who.state, "bot": False, "web_url": f"{request.host_url}{who.username}"})

        @app.get(p + "/groups")
        def groups() -> Response:
            who = caller()
            if isinstance(who, Response):
                return who
            if "read_api" not in who.scopes:
                return error(403, {"error": "insufficient_scope",
                                   "error_description": "The request requires higher privileges than provided.",
                                   "scope": "api read_api"})
            try:
                min_level = int(request.args.get("min_access_level", 0))
                per_page = min(max(int(request.args.get("per_page", 20)), 1), 100)
                page = max(int(request.args.get("page", 1)), 1)
            except ValueError:
                return error(400, {"error": "per_page is invalid"})
            visible = sorted(
                (g for g in self.groups.values() if self.access(who.username, g.full_path) >= max(min_level, 1)),
                key=lambda g: g.full_path,
            )
            chunk = visible[(page - 1) * per_page : page * per_page]
            resp = jsonify([
                {"id": g.id, "name": g.full_path.rsplit("/", 1)[-1], "path": g.full_path.rsplit("/", 1)[-1],
                 "full_name": g.full_path.replace("/", " / "), "full_path": g.full_path,
                 "parent_id": self.groups[g.full_path.rsplit("/", 1)[0]].id if "/" in g.full_path else None,
                 "visibility": "private"}
                for g in chunk
            ])
            total_pages = max(1, -(-len(visible) // per_page))
            resp.headers.update({
                "X-Page": str(page), "X-Per-Page": str(per_page), "X-Total": str(len(visible)),
                "X-Total-Pages": str(total_pages), "X-Next-Page": str(page + 1) if page < total_pages else "",
                "X-Prev-Page": str(page - 1) if page > 1 else "",
            })
            if self.links:
                base = (f"{request.host_url.rstrip('/')}{p}/groups?min_access_level={min_level}"
                        f"&per_page={per_page}&page=")
                links = [f'<{base}1>; rel="first"', f'<{base}{total_pages}>; rel="last"']
                if page < total_pages:
                    links.insert(0, f'<{base}{page + 1}>; rel="next"')
                if page > 1:
                    links.insert(0, f'<{base}{page - 1}>; rel="prev"')
                resp.headers["Link"] = ", ".join(links)
            return resp

        return app

"""Provider `gitlab`: a GitLab personal, group or OAuth access token, on gitlab.com or a self-hosted instance.

Guard compatibility: username is the GitLab `username`, uid the numeric user `id`, groups the `full_path` of every
group the user can access (subgroups included, as `parent/child`). Fixed against Guard: every page of groups is
read (`Link` or `X-Next-Page`), blocked accounts are refused, an optional `required_group` restricts the provider
to one group's members, and GitLab's words never reach the TokenReview reply.

REST calls (docs.gitlab.com/api): `GET /api/v4/user`, `GET /api/v4/groups?min_access_level=10` (needs `read_api`).
The token goes in `Authorization: Bearer` (default; works for personal and OAuth tokens) or `PRIVATE-TOKEN`.
Errors: 401 → rejected; 403 → rejected (blocked account or missing scope); 429, 5xx, timeout → UpstreamUnavailable.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from kagiya.authn.providers._http import (
    Deadline,
    Response,
    RestClient,
    UnexpectedStatus,
    check_base_url,
    plausible_token,
)
from kagiya.authn.providers.base import Rejected, User
from kagiya.authn.shapes import TokenShape
from kagiya.config import from_mapping
from kagiya.errors import ConfigError, UpstreamUnavailable

log = logging.getLogger("kagiya.authn.providers.gitlab")

SERVICE = "GitLab"
LEGACY_TOKEN = re.compile(r"[0-9A-Za-z_-]{20}|[0-9a-f]{64}")


@dataclass(frozen=True)
class GitLabOptions:
    """`authn.providers[]` entry with `type: gitlab`; `name` labels the instance (Guard's client-cert `CN=`)."""

    #: Instance root (not the API root): https://gitlab.com or https://gitlab.example.com[/path].
    base_url: str = "https://gitlab.com"
    #: Seconds for the whole review (user and every page of groups).
    timeout: float = 5.0
    #: PEM bundle to verify a self-hosted instance's certificate; empty: system CAs.
    ca_file: str = ""
    #: How the token is sent: `bearer` (Authorization: Bearer, personal and OAuth tokens) or `private-token`.
    token_header: Literal["bearer", "private-token"] = "bearer"  # noqa: S105 - a header style, not a secret
    #: Lowest access level that makes a group a Kubernetes group (10 guest, 20 reporter, 30 developer...).
    min_access_level: int = 10
    #: When set, only members of this group (full path, or any subgroup of it) are accepted.
    required_group: str = ""
    #: Groups are read 100 per page; more pages than this is an error rather than a partial list.
    max_pages: int = 20
    pool_size: int = 10
    #: Token prefixes this instance issues; add the instance's custom prefix when one is set
    #: (Admin area > Settings > General > Account and limit > personal access token / instance token prefix).
    token_prefixes: tuple[str, ...] = ("glpat-", "gloas-")
    #: Also accept prefix-less legacy tokens (20-character personal tokens from before GitLab 14.5, 64-hex OAuth
    #: tokens). Off by default: such a token has no shape of its own, so the router could not tell it apart.
    legacy_tokens: bool = False

    def __post_init__(self) -> None:
        if not 0 < self.timeout <= 60:
            raise ValueError("timeout must be between 0 and 60 seconds")
        if self.min_access_level not in (5, 10, 15, 20, 30, 40, 50):
            raise ValueError("min_access_level must be a GitLab access level (5, 10, 15, 20, 30, 40, 50)")
        if self.max_pages < 1 or self.pool_size < 1:
            raise ValueError("max_pages and pool_size must be at least 1")
        if not self.token_prefixes or any(len(p) < 3 for p in self.token_prefixes):
            raise ValueError("token_prefixes must list prefixes of at least 3 characters")


class GitLabProvider:
    """Built once per instance; its HTTP session and connection pool are reused by every review."""

    #: The token itself goes to the GitLab instance's API.
    third_party = True

    def __init__(self, name: str, options: GitLabOptions, *, base_url: str) -> None:
        self.name = name
        self.options = options
        self.client = RestClient(base_url, service=SERVICE, ca_file=options.ca_file, pool_size=options.pool_size)

    def close(self) -> None:
        """Close pooled connections (the service builds a provider once and closes it at exit)."""
        self.client.close()

    @property
    def upstream(self) -> str:
        """The service the token is sent to (routing never asks two services for one token)."""
        return self.client.base_url

    def claims(self, shape: TokenShape) -> bool:
        """`token_prefixes`; prefix-less legacy tokens only with `legacy_tokens`."""
        if not plausible_token(shape.token):
            return False
        return shape.has_prefix(self.options.token_prefixes) or (
            self.options.legacy_tokens and shape.matches(LEGACY_TOKEN))

    def authenticate(self, token: str, audiences: Sequence[str] = ()) -> User | Rejected:
        """Raises UpstreamUnavailable when GitLab is down, slow or rate-limiting."""
        del audiences  # GitLab tokens carry no audience; the apiserver applies its own (implicit) audiences.
        if not plausible_token(token):
            return Rejected("invalid GitLab token")
        if self.options.token_header == "bearer":  # noqa: S105 - a header style
            headers = {"Authorization": f"Bearer {token}"}
        else:
            headers = {"PRIVATE-TOKEN": token}
        deadline = Deadline(self.options.timeout, SERVICE)

        resp = self.client.get("api/v4/user", headers=headers, deadline=deadline)
        if resp.status != 200:
            return self._refusal(resp, "user")
        profile = resp.json(SERVICE)
        username, uid = (profile.get("username"), profile.get("id")) if isinstance(profile, dict) else (None, None)
        if not isinstance(username, str) or not username or not isinstance(uid, int):
            raise UpstreamUnavailable("GitLab sent an unexpected reply")
        if profile.get("state", "active") != "active":
            return Rejected("the GitLab account is not active")

        try:
            groups = self._groups(headers, deadline)
        except UnexpectedStatus as exc:
            return self._refusal(exc.resp, "groups")
        required = self.options.required_group.strip("/")
        if required and not any(g == required or g.startswith(required + "/") for g in groups):
            log.info("gitlab: %s is not in %s", username, required, extra={"provider": "gitlab"})
            return Rejected(f"not a member of the GitLab group {required}")
        return User(username=username, uid=str(uid), groups=tuple(groups))

    def _groups(self, headers: Mapping[str, str], deadline: Deadline) -> list[str]:
        paths: set[str] = set()
        params = {"min_access_level": self.options.min_access_level, "per_page": 100}
        for page in self.client.pages(
            "api/v4/groups", headers=headers, deadline=deadline, params=params, max_pages=self.options.max_pages,
            next_page=self._next_page,
        ):
            for group in page:
                path = group.get("full_path") if isinstance(group, dict) else None
                if isinstance(path, str) and path:
                    paths.add(path)
        return sorted(paths)

    def _next_page(self, resp: Response) -> str | None:
        """GitLab pages by `Link: rel="next"`; older instances and some proxies leave only `X-Next-Page`."""
        link = resp.links.get("next", {}).get("url")
        if link:
            return str(link)
        page = resp.headers.get("X-Next-Page", "").strip()
        if not page:
            return None
        if not page.isdigit():
            raise UpstreamUnavailable("GitLab sent an unexpected reply")
        return (
            f"api/v4/groups?min_access_level={self.options.min_access_level}&per_page=100&page={int(page)}"
        )

    def _refusal(self, resp: Response, call: str) -> Rejected:
        """Map a non-200 reply: a definitive "no" is returned, a transient one raised. Never echoes GitLab's text."""
        status = resp.status
        extra = {"provider": "gitlab", "status": status}
        if status == 429:
            log.warning("gitlab: rate limited on %s", call, extra=extra)
            raise UpstreamUnavailable("GitLab rate limit reached; retry later")
        if status >= 500 or status < 400:
            log.warning("gitlab: %s answered %d", call, status, extra=extra)
            raise UpstreamUnavailable("GitLab is unavailable")
        log.info("gitlab: %s answered %d", call, status, extra=extra)
        if status == 401:
            return Rejected("invalid or expired GitLab token")
        if status == 403 and call == "groups":
            return Rejected("the GitLab token lacks the read_api scope")
        if status == 403:
            return Rejected("GitLab refused the token (blocked account or missing scope)")
        return Rejected("GitLab refused the token")


def from_config(name: str, options: Mapping[str, Any]) -> GitLabProvider:
    """Build the provider for instance `name`; raises ConfigError naming the bad key."""
    prefix = f"authn.providers.gitlab/{name}"
    if not name or "/" in name:
        raise ConfigError(f"config {prefix}: 'name' must name the GitLab instance (no '/')")
    opts = from_mapping(GitLabOptions, {k: v for k, v in options.items() if k not in ("type", "name")}, prefix)
    base_url = check_base_url(opts.base_url, f"{prefix}.base_url")
    return GitLabProvider(name, opts, base_url=base_url)

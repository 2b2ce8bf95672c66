"""Provider `github`: a user's GitHub token, accepted only for active members of one organization.

Guard compatibility: the provider's name is the GitHub organization (Guard's client-certificate `CN=`), the
username is the GitHub `login` and the uid its numeric `id`; teams become groups. Guard's faults fixed here:
a pending invitation is refused (membership `state` must be `active`), team slugs are qualified as
`<org>:<team-slug>` so two organizations' `admins` teams cannot collide, teams are read past the first page,
and GitHub's words never reach the TokenReview reply.

REST calls (docs.github.com/rest): `GET /user`, `GET /user/memberships/orgs/{org}`, `GET /user/teams` (paged by
`Link`). Error mapping (specs/kubernetes-webhooks.md: 503 is not cached, a 200 rejection is):
401 → rejected; 403 with `X-GitHub-SSO: required` → rejected ("authorize the token for SAML SSO");
403/429 with `X-RateLimit-Remaining: 0` or `Retry-After` → UpstreamUnavailable;
5xx, timeout, connection refused → UpstreamUnavailable.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

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

log = logging.getLogger("kagiya.authn.providers.github")

SERVICE = "GitHub"
#: GitHub's token prefixes (docs "About authentication to GitHub", token formats): personal access token
#: (classic), OAuth access token, user-to-server, server-to-server (app installation), fine-grained PAT.
TOKEN_PREFIXES = ("ghp_", "gho_", "ghu_", "ghs_", "github_pat_")
LEGACY_TOKEN = re.compile(r"[0-9a-f]{40}")


@dataclass(frozen=True)
class GitHubOptions:
    """`authn.providers[]` entry with `type: github`; `name` is the organization."""

    #: REST API root: https://api.github.com, or `https://HOST/api/v3` for GitHub Enterprise Server.
    base_url: str = "https://api.github.com"
    #: Seconds for the whole review (user, membership and every page of teams).
    timeout: float = 5.0
    #: PEM bundle to verify the API's certificate (GitHub Enterprise with a private CA); empty: system CAs.
    ca_file: str = ""
    #: Turn the user's teams in the organization into `<org>:<team-slug>` groups.
    teams: bool = True
    #: Teams are read 100 per page; more pages than this is an error rather than a silently partial list.
    max_pages: int = 20
    #: Concurrent connections kept open to the API.
    pool_size: int = 10
    #: Also accept prefix-less 40-hex tokens (classic tokens from before 2021, old GitHub Enterprise Server).
    #: Off by default: such a token has no shape of its own, so the router could not tell it from other secrets.
    legacy_tokens: bool = False

    def __post_init__(self) -> None:
        if not 0 < self.timeout <= 60:
            raise ValueError("timeout must be between 0 and 60 seconds")
        if self.max_pages < 1 or self.pool_size < 1:
            raise ValueError("max_pages and pool_size must be at least 1")


class GitHubProvider:
    """Built once per organization; its HTTP session and connection pool are reused by every review."""

    #: The token itself goes to GitHub's API.
    third_party = True

    def __init__(self, org: str, options: GitHubOptions, *, base_url: str) -> None:
        self.name = org
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
        """GitHub's prefixed token formats; 40-hex legacy tokens only with `legacy_tokens`."""
        if not plausible_token(shape.token):
            return False
        return shape.has_prefix(TOKEN_PREFIXES) or (self.options.legacy_tokens and shape.matches(LEGACY_TOKEN))

    def authenticate(self, token: str, audiences: Sequence[str] = ()) -> User | Rejected:
        """Raises UpstreamUnavailable when GitHub is down, slow or rate-limiting."""
        del audiences  # GitHub tokens carry no audience; the apiserver applies its own (implicit) audiences.
        if not plausible_token(token):
            return Rejected("invalid GitHub token")
        headers = {"Authorization": f"Bearer {token}", "X-GitHub-Api-Version": "2022-11-28"}
        deadline = Deadline(self.options.timeout, SERVICE)

        resp = self.client.get("user", headers=headers, deadline=deadline)
        if resp.status != 200:
            return self._refusal(resp, "user")
        profile = resp.json(SERVICE)
        login, uid = (profile.get("login"), profile.get("id")) if isinstance(profile, dict) else (None, None)
        if not isinstance(login, str) or not login or not isinstance(uid, int):
            raise UpstreamUnavailable("GitHub sent an unexpected reply")

        resp = self.client.get(f"user/memberships/orgs/{quote(self.name, safe='')}", headers=headers, deadline=deadline)
        if resp.status == 404:
            log.info("github: %s is not a member of %s", login, self.name, extra={"provider": "github"})
            return Rejected(f"not a member of the GitHub organization {self.name}")
        if resp.status != 200:
            return self._refusal(resp, "membership")
        membership = resp.json(SERVICE)
        state = membership.get("state") if isinstance(membership, dict) else None
        if state != "active":
            log.info("github: %s membership of %s is %s", login, self.name, state, extra={"provider": "github"})
            return Rejected(f"membership of the GitHub organization {self.name} is not active")

        groups: list[str] = []
        if self.options.teams:
            try:
                groups = self._teams(headers, deadline)
            except UnexpectedStatus as exc:
                return self._refusal(exc.resp, "teams")
        return User(username=login, uid=str(uid), groups=tuple(groups))

    def _teams(self, headers: Mapping[str, str], deadline: Deadline) -> list[str]:
        org = self.name.lower()
        slugs: set[str] = set()
        for page in self.client.pages(
            "user/teams", headers=headers, deadline=deadline, params={"per_page": 100},
            max_pages=self.options.max_pages,
        ):
            for team in page:
                team_org = (team.get("organization") or {}).get("login") if isinstance(team, dict) else None
                slug = team.get("slug") if isinstance(team, dict) else None
                if isinstance(team_org, str) and team_org.lower() == org and isinstance(slug, str) and slug:
                    slugs.add(slug)
        return [f"{self.name}:{slug}" for slug in sorted(slugs)]

    def _refusal(self, resp: Response, call: str) -> Rejected:
        """Map a non-200 reply: a definitive "no" is returned, a transient one raised. Never echoes GitHub's text."""
        status, headers = resp.status, resp.headers
        rate_limited = headers.get("X-RateLimit-Remaining") == "0" or "Retry-After" in headers
        extra = {"provider": "github", "status": status}
        if status == 429 or (status == 403 and rate_limited):
            log.warning("github: rate limited on %s", call, extra=extra)
            raise UpstreamUnavailable("GitHub rate limit reached; retry later")
        if status >= 500 or status < 400:
            log.warning("github: %s answered %d", call, status, extra=extra)
            raise UpstreamUnavailable("GitHub is unavailable")
        log.info("github: %s answered %d", call, status, extra=extra)
        if status == 401:
            return Rejected("invalid or expired GitHub token")
        if status == 403 and headers.get("X-GitHub-SSO", "").startswith("required"):
            return Rejected(f"authorize the token for SAML SSO of the GitHub organization {self.name}")
        if status == 403:
            return Rejected("the GitHub token lacks the read:org scope")
        return Rejected("GitHub refused the token")


def from_config(name: str, options: Mapping[str, Any]) -> GitHubProvider:
    """Build the provider for organization `name`; raises ConfigError naming the bad key."""
    prefix = f"authn.providers.github/{name}"
    if not name or "/" in name:
        raise ConfigError(f"config {prefix}: 'name' must be the GitHub organization")
    opts = from_mapping(GitHubOptions, {k: v for k, v in options.items() if k not in ("type", "name")}, prefix)
    base_url = check_base_url(opts.base_url, f"{prefix}.base_url")
    return GitHubProvider(name, opts, base_url=base_url)

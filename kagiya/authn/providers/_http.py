"""HTTP plumbing shared by the REST identity providers (GitHub, GitLab): one pooled session per provider,
one time budget per review, bounded bodies, and safe pagination.

Why a helper: both forges need the same care, and getting it wrong once leaks a token or hangs a review.
- A `Deadline` bounds the whole review (user + membership + every page), not each request, so an upstream that
  answers slowly page after page still yields `UpstreamUnavailable` within the configured timeout. (The LDAP
  provider uses the same `Deadline` for its searches and binds.)
- Pagination links (`Link: <…>; rel="next"`) come from the upstream; a link to another scheme/host/port would send
  the user's token elsewhere, so such a link is refused. Redirects are not followed for the same reason
  (requests strips `Authorization` on a cross-host redirect, but not `PRIVATE-TOKEN`).
- Connection failures, timeouts, 5xx and oversized or non-JSON bodies become `UpstreamUnavailable`
  with a short message; bodies are never logged (they are the upstream's words, not ours).
See docs/authn-providers.md and specs/kubernetes-webhooks.md (503 is not cached by the apiserver).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urljoin, urlsplit

from kagiya.errors import ConfigError, UpstreamUnavailable

log = logging.getLogger("kagiya.authn.providers")

#: Largest JSON body accepted from an upstream (a page of 100 teams is ~60 KiB).
MAX_BODY_BYTES = 4 * 1024 * 1024
#: Longest token accepted before any upstream call (GitHub and GitLab tokens are < 300 characters).
MAX_TOKEN_CHARS = 4096


class Deadline:
    """The time left for one review; `remaining()` raises UpstreamUnavailable once it is spent."""

    def __init__(self, seconds: float, service: str, clock: Any = time.monotonic) -> None:
        self._clock = clock
        self._end = clock() + seconds
        self.service = service

    def remaining(self) -> float:
        left = self._end - self._clock()
        if left <= 0:
            raise UpstreamUnavailable(f"{self.service} did not answer in time")
        return left


def plausible_token(token: str) -> bool:
    """A token we are willing to put in a header: printable ASCII, no spaces, bounded length."""
    return 0 < len(token) <= MAX_TOKEN_CHARS and token.isascii() and token.isprintable() and " " not in token


def check_base_url(url: str, key: str) -> str:
    """Validate a configured API base URL (http or https, a host, no query); returns it with one trailing slash."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ConfigError(f"config key {key}: expected an http(s) URL like https://api.github.com, got {url!r}")
    return url.rstrip("/") + "/"


class RestClient:
    """A pooled `requests.Session` bound to one upstream base URL. Thread-safe for concurrent GETs."""

    def __init__(
        self, base_url: str, *, service: str, ca_file: str = "", pool_size: int = 10, user_agent: str = "kagiya"
    ) -> None:
        import requests
        from requests.adapters import HTTPAdapter

        self.base_url = base_url
        self.service = service
        self._origin = _origin(base_url)
        self._session = requests.Session()
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size, max_retries=0)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._session.headers["User-Agent"] = user_agent
        self._session.headers["Accept"] = "application/json"
        if ca_file:
            self._session.verify = ca_file

    def close(self) -> None:
        self._session.close()

    def get(
        self,
        path_or_url: str,
        *,
        headers: Mapping[str, str],
        deadline: Deadline,
        params: Mapping[str, Any] | None = None,
    ) -> Response:
        """GET a path under the base URL (or a same-origin absolute URL). Raises UpstreamUnavailable."""
        import requests
        from urllib3.exceptions import HTTPError as Urllib3Error
        from urllib3.exceptions import ReadTimeoutError

        url = urljoin(self.base_url, path_or_url.lstrip("/")) if "://" not in path_or_url else path_or_url
        if _origin(url) != self._origin:
            log.warning("%s sent a link to another origin; refused", self.service, extra={"provider": self.service})
            raise UpstreamUnavailable(f"{self.service} answered with an unexpected link")
        left = deadline.remaining()
        try:
            with self._session.get(
                url, headers=dict(headers), params=params, timeout=(min(left, 10.0), left),
                allow_redirects=False, stream=True,
            ) as raw:
                # The body is read here, outside requests' own error translation: urllib3 errors surface as is.
                body = raw.raw.read(MAX_BODY_BYTES + 1, decode_content=True)
                resp = Response(raw.status_code, raw.headers, body, raw.links)
        except (requests.Timeout, ReadTimeoutError, TimeoutError):
            log.warning("%s timed out", self.service, extra={"provider": self.service})
            raise UpstreamUnavailable(f"{self.service} did not answer in time") from None
        except (requests.RequestException, Urllib3Error, OSError) as exc:
            # The exception text may carry the URL (never the token: tokens travel in headers only).
            log.warning("%s unreachable: %s", self.service, type(exc).__name__, extra={"provider": self.service})
            raise UpstreamUnavailable(f"{self.service} is unreachable") from None
        if len(body) > MAX_BODY_BYTES:
            raise UpstreamUnavailable(f"{self.service} sent an oversized reply")
        deadline.remaining()
        return resp

    def pages(
        self, path: str, *, headers: Mapping[str, str], deadline: Deadline, params: Mapping[str, Any], max_pages: int,
        next_page: Any = None,
    ) -> Iterator[list[Any]]:
        """Yield each page (a JSON list) following `Link: rel="next"` (or `next_page(resp)` when given).

        More than `max_pages` pages is an UpstreamUnavailable rather than a silently truncated group list.
        """
        target: str | None = path
        query: Mapping[str, Any] | None = params
        for _ in range(max_pages):
            assert target is not None
            resp = self.get(target, headers=headers, deadline=deadline, params=query)
            if resp.status != 200:
                raise UnexpectedStatus(resp)
            page = resp.json(self.service)
            if not isinstance(page, list):
                raise UpstreamUnavailable(f"{self.service} sent an unexpected reply")
            yield page
            target = next_page(resp) if next_page else resp.links.get("next", {}).get("url")
            if not target:
                return
            query = None  # a next link carries the whole query itself
        log.warning("%s: more than %d pages; refusing a partial list", self.service, max_pages)
        raise UpstreamUnavailable(f"{self.service} listed more than {max_pages} pages")


class Response:
    """A fully read, size-bounded reply."""

    def __init__(self, status: int, headers: Mapping[str, str], body: bytes, links: Mapping[str, Any]) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.links = links

    def json(self, service: str) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            raise UpstreamUnavailable(f"{service} sent a reply that is not JSON") from None


class UnexpectedStatus(Exception):
    """A page request answered something other than 200; the provider maps it (401, 403, 429, 5xx...)."""

    def __init__(self, resp: Response) -> None:
        super().__init__(resp.status)
        self.resp = resp


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), port

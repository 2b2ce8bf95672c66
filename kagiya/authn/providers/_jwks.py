"""An issuer's signing keys: OpenID Connect discovery then the JWKS (RFC 7517), cached once per replica.

Why this shape (issue 11.2): one failed fetch used to mean ~30 s of 503s, and a key rotated in seconds ago was
denied as a cacheable `authenticated: false`. The rules now:
- keys are refetched when `jwks_ttl_seconds` has passed, or for an unknown `kid`, at most once per
  `jwks_min_refresh_seconds` (default 5) per issuer, so forged random-`kid` tokens cannot hammer the issuer;
- a failed fetch is retried after a short capped exponential backoff (0.25 s, 0.5 s, 1 s, then every 2 s),
  not after the refresh interval; one thread fetches at a time (single flight) and the others reuse its result;
- a known key keeps verifying while the issuer is down (stale keys); a refresh in progress never blocks another
  review whose key is known (only the review that starts a TTL refresh waits for it), and a key the refreshed set
  no longer publishes is refused;
- an unknown `kid` is a definitive "unknown key" only when keys were fetched after the token was issued (or just
  now); while a refetch is impossible (rate limited, failing) the answer is `UpstreamUnavailable` (503: the
  apiserver does not cache it), never a cacheable denial.
Both clocks are injectable: `clock` (monotonic, for intervals) and `wall` (epoch seconds, compared with `iat`).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kagiya.errors import UpstreamUnavailable

if TYPE_CHECKING:
    from kagiya.authn.providers.oidc import OidcOptions

log = logging.getLogger("kagiya.authn.oidc")
MAX_DOC_BYTES = 512 * 1024
#: Backoff after the first failed fetch; doubles per consecutive failure up to RETRY_MAX.
RETRY_FIRST = 0.25
RETRY_MAX = 2.0
#: A token without a `kid` is tried against at most this many of the issuer's keys for its algorithm.
MAX_KIDLESS_CANDIDATES = 8


def retry_delay(failures: int) -> float:
    """Seconds to wait before the next fetch after `failures` consecutive failures (capped exponential)."""
    return min(RETRY_MAX, RETRY_FIRST * 2 ** max(0, failures - 1))


class KeyStore:
    """Discovery + JWKS for one issuer. Thread-safe; built once per provider."""

    def __init__(self, opts: OidcOptions, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        import requests

        self.opts = opts
        self.clock = clock
        self.wall = wall
        self.session = requests.Session()
        self.session.verify = opts.ca_file or True
        #: Held by the one thread fetching (single flight).
        self._fetch_lock = threading.Lock()
        self._keys: dict[str, Any] = {}
        self._fetched_at = -1e18  # monotonic time of the last successful fetch
        self._fetched_wall = -1e18  # the same instant in epoch seconds (compared with a token's iat)
        self._last_attempt = -1e18
        self._next_allowed = -1e18  # no fetch before this (refresh interval after success, backoff after failure)
        self._failures = 0
        self._last_error = ""
        self._jwks_uri = opts.jwks_uri
        #: The discovery document, once fetched (Azure reads its token_endpoint).
        self.discovery: dict[str, Any] = {}

    @property
    def failures(self) -> int:
        """Consecutive failed fetches (0 after a success)."""
        return self._failures

    def key_for(self, kid: str | None, alg: str, issued_at: float | None = None) -> Any | None:
        """The one key `keys_for` would try first, or None (for callers that verify with one key)."""
        keys = self.keys_for(kid, alg, issued_at)
        return keys[0] if keys else None

    def keys_for(self, kid: str | None, alg: str, issued_at: float | None = None) -> list[Any]:
        """The keys that may have signed the token: the key for `kid`, or, for a token without a kid, every key
        for `alg` (at most MAX_KIDLESS_CANDIDATES; kube-apiserver, like go-oidc, tries them all, and an issuer
        that omits kids publishes two keys while it rotates). Empty when the issuer certainly does not publish
        it; `issued_at` is the token's (unverified) `iat`.

        Raises UpstreamUnavailable when the answer depends on keys that cannot be fetched right now.
        """
        found = self._find(kid, alg)
        if found:
            if self.clock() - self._fetched_at >= self.opts.jwks_ttl_seconds:
                # Stale: refresh unless another thread is. Keys that just arrived are the truth (a key the issuer
                # no longer publishes is revoked); when no fetch happened, the known keys keep serving.
                if self._refresh_if_allowed(wait=False):
                    return self._find(kid, alg)
                return self._find(kid, alg) or found
            return found
        fetched_now = self._refresh_if_allowed(wait=True)
        found = self._find(kid, alg)
        if found or fetched_now:
            return found
        if self._last_error:
            raise UpstreamUnavailable(self._last_error)
        newer = isinstance(issued_at, (int, float)) and self._fetched_wall >= issued_at + self.opts.leeway_seconds
        if newer:
            return []  # keys fetched after the token was made do not include its key
        raise UpstreamUnavailable("token signed by a key not fetched yet; refetch rate-limited, retry shortly")

    def _find(self, kid: str | None, alg: str) -> list[Any]:
        keys = self._keys
        if kid:
            key = keys.get(kid)
            return [key] if key is not None else []
        return [k for k in keys.values() if (k.alg or alg) == alg][:MAX_KIDLESS_CANDIDATES]

    def _refresh_if_allowed(self, *, wait: bool) -> bool:
        """Fetch unless rate limited or backing off; True when fresh keys arrived during this call (fetched by
        this thread or by the one it waited for)."""
        started = self.clock()
        if not self._fetch_lock.acquire(blocking=wait, timeout=self.opts.timeout * 2 + 1 if wait else -1):
            return False
        try:
            if self._fetched_at >= started:
                return True  # another thread fetched while this one waited
            if self._last_attempt >= started:
                return False  # another thread just tried and failed: do not repeat its call
            now = self.clock()
            if now < self._next_allowed:
                return False
            self._last_attempt = now
            try:
                self._refresh()
            except UpstreamUnavailable as exc:
                self._failures += 1
                self._last_error = exc.message
                self._next_allowed = self.clock() + retry_delay(self._failures)
                log.warning("JWKS fetch failed (%d in a row): %s", self._failures, exc.message,
                            extra={"provider": self.opts.issuer})
                return False
            self._failures = 0
            self._last_error = ""
            self._next_allowed = self.clock() + self.opts.jwks_min_refresh_seconds
            return True
        finally:
            self._fetch_lock.release()

    def _get_json(self, url: str) -> dict[str, Any]:
        import requests

        try:
            with self.session.get(url, timeout=self.opts.timeout, allow_redirects=False, stream=True) as resp:
                if resp.status_code != 200:
                    raise UpstreamUnavailable(f"issuer answered HTTP {resp.status_code} for {url}")
                content = b""
                for chunk in resp.iter_content(65536):  # read at most MAX_DOC_BYTES + 1, whatever it claims
                    content += chunk
                    if len(content) > MAX_DOC_BYTES:
                        raise UpstreamUnavailable(f"issuer document at {url} is too large")
        except requests.RequestException as exc:
            raise UpstreamUnavailable(f"issuer unreachable ({type(exc).__name__})") from None
        try:
            data = json.loads(content)
        except ValueError:
            raise UpstreamUnavailable(f"issuer document at {url} is not JSON") from None
        if not isinstance(data, dict):
            raise UpstreamUnavailable(f"issuer document at {url} is not a JSON object")
        return data

    def _refresh(self) -> None:
        from joserfc.jwk import KeySet

        if not self._jwks_uri:
            url = self.opts.discovery_url or self.opts.issuer.rstrip("/") + "/.well-known/openid-configuration"
            doc = self._get_json(url)
            if doc.get("issuer") != self.opts.issuer:
                raise UpstreamUnavailable("discovery document names a different issuer")
            jwks_uri = doc.get("jwks_uri")
            if not isinstance(jwks_uri, str) or not jwks_uri:
                raise UpstreamUnavailable("discovery document has no jwks_uri")
            self._jwks_uri = jwks_uri
            self.discovery = doc
        wall_before = self.wall()
        data = self._get_json(self._jwks_uri)
        usable = [k for k in data.get("keys", []) if isinstance(k, dict) and k.get("use", "sig") == "sig"
                  and k.get("kty") in ("RSA", "EC", "OKP")]
        try:
            keyset = KeySet.import_key_set({"keys": usable})
        except Exception as exc:  # noqa: BLE001 - joserfc raises several types for malformed keys
            raise UpstreamUnavailable(f"issuer JWKS is malformed ({type(exc).__name__})") from None
        self._keys = {k.kid or f"#{i}": k for i, k in enumerate(keyset.keys)}
        self._fetched_wall = wall_before
        self._fetched_at = self.clock()

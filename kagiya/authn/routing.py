"""Which providers answer a TokenReview, and the review itself (cache, single flight, deadline, failure limit).

Spec: ../shared/specs/kubernetes-webhooks.md ("Guard's routing convention"). Providers are built ONCE from
the `authn:` settings when the app is created (Guard builds them, and fetches OIDC discovery, per request)
and shared by the webhook and by `kagiya.callers`. A route is an ordered tuple of providers:
- client certificate: `O=` names the provider type, `CN=` its name (GitHub org, Google domain, Azure tenant...);
- URL path `/authn/<type>/<name>/tokenreviews` (deployments behind a TLS terminator);
- otherwise the default chain (`authn.default_chain`, or every configured provider in config order).
The static token file, when configured, is always tried first, as Guard does.
Within a route only the providers that claim the token's shape see it (`claimants`, `kagiya.authn.shapes`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

from kagiya.authn import shapes
from kagiya.authn.cache import ReviewCache, cache_key
from kagiya.authn.providers import REGISTRY, build_provider
from kagiya.authn.providers.base import Provider, Rejected, User
from kagiya.authn.settings import AuthnSettings
from kagiya.authn.shapes import TokenShape
from kagiya.errors import ConfigError, NotFound, TooManyRequests, UpstreamUnavailable
from kagiya.tls.mtls import AGENT_ORGANIZATION

log = logging.getLogger("kagiya.authn")
EXTENSION = "kagiya.authn"
TOKEN_FILE = "token-auth"  # noqa: S105 - a provider type name, not a secret
#: Keys of a provider mapping that routing consumes; the rest go to the provider's own `from_config`.
ROUTING_KEYS = ("type", "name", "allow_system_names")
RESERVED_PREFIX = "system:"


@dataclass(frozen=True)
class ProviderEntry:
    type: str
    name: str
    provider: Provider
    #: False only for the static token file, whose `system:` entries an operator wrote on purpose.
    external: bool = True
    allow_system_names: bool = False

    @property
    def key(self) -> str:
        return f"{self.type}/{self.name}"


@dataclass(frozen=True)
class Route:
    key: str
    entries: tuple[ProviderEntry, ...]
    #: Metric/audit label: the provider named by the cert or path, or "default".
    label: str = "default"
    #: When set, a token no provider accepted is rejected with this reason (e.g. cert names no provider).
    unknown_reason: str = ""
    #: Every configured provider that is not third-party, in or out of this route: when one of them claims a token,
    #: no third-party provider of the route is sent it (a path naming github/acme must not receive an LDAP password).
    first_party: tuple[ProviderEntry, ...] = ()


@dataclass(frozen=True)
class Decision:
    result: User | Rejected
    #: "type/name" of the provider that decided (the route label when none did).
    provider: str


@dataclass(frozen=True)
class Outcome:
    decision: Decision
    cached: bool


class ProviderSet:
    """Every configured provider, built once, and the routes over them."""

    def __init__(self, entries: Sequence[ProviderEntry], token_file: ProviderEntry | None,
                 default_chain: Sequence[str] = ()) -> None:
        self.token_file = token_file
        self.entries: dict[str, ProviderEntry] = {}
        for entry in entries:
            if entry.key in self.entries:
                raise ConfigError(f"authn.providers: {entry.key} is configured twice")
            self.entries[entry.key] = entry
        chain = list(default_chain) or list(self.entries)
        missing = [k for k in chain if k not in self.entries]
        if missing:
            raise ConfigError(f"authn.default_chain: {missing[0]} is not a configured provider "
                              f"(configured: {', '.join(self.entries) or 'none'})")
        self._default = tuple(self.entries[k] for k in chain)
        everyone = ([token_file] if token_file is not None else []) + list(self.entries.values())
        self._first_party = tuple(e for e in everyone if not e.provider.third_party)

    @classmethod
    def from_settings(cls, settings: AuthnSettings) -> ProviderSet:
        """Build every provider; raises ConfigError naming the bad provider key."""
        token_file = None
        if settings.token_file:
            from kagiya.authn.providers.tokenfile import TokenFileProvider

            token_file = ProviderEntry(TOKEN_FILE, "default", TokenFileProvider(settings.token_file), external=False)
        entries = []
        for i, spec in enumerate(settings.providers):
            where = f"authn.providers[{i}]"
            ptype, name = spec.get("type"), spec.get("name")
            if not isinstance(ptype, str) or ptype not in REGISTRY:
                raise ConfigError(f"{where}.type must be one of {', '.join(REGISTRY)}")
            if not isinstance(name, str) or not name or "/" in name:
                raise ConfigError(f"{where}.name must be a non-empty string without '/'")
            allow_system = spec.get("allow_system_names", False)
            if not isinstance(allow_system, bool):
                raise ConfigError(f"{where}.allow_system_names must be true or false")
            options = {k: v for k, v in spec.items() if k not in ROUTING_KEYS}
            provider = build_provider(ptype, name, options)
            entries.append(ProviderEntry(ptype, name, provider, ptype != TOKEN_FILE, allow_system))
        return cls(entries, token_file, settings.default_chain)

    def _with_token_file(self, entries: Sequence[ProviderEntry]) -> tuple[ProviderEntry, ...]:
        first = (self.token_file,) if self.token_file is not None else ()
        return first + tuple(e for e in entries if e is not self.token_file)

    def default_route(self, *, include_token_file: bool = True) -> Route:
        if include_token_file:
            return Route("default", self._with_token_file(self._default), first_party=self._first_party)
        return Route("default-external", self._default, first_party=self._first_party)

    def path_route(self, ptype: str, name: str) -> Route:
        """The route named by the URL path; raises NotFound when no such provider is configured."""
        entry = self.entries.get(f"{ptype}/{name}")
        if entry is None:
            if ptype == TOKEN_FILE and self.token_file is not None:
                return Route("path:token-auth", (self.token_file,), label=TOKEN_FILE)
            raise NotFound(f"no authn provider {ptype}/{name} is configured")
        return Route(f"path:{entry.key}", self._with_token_file([entry]), label=entry.key,
                     first_party=self._first_party)

    def cert_route(self, organizations: Sequence[str], common_name: str) -> Route | None:
        """Guard's rule: `O=` provider type, `CN=` its name. None when no `O=` names a provider type."""
        for org in organizations:
            if org == AGENT_ORGANIZATION:
                return Route("cert:agent", (), label=AGENT_ORGANIZATION,
                             unknown_reason="a node agent certificate may not ask for token reviews")
            if org == TOKEN_FILE:
                entries = (self.token_file,) if self.token_file is not None else ()
                return Route("cert:token-auth", entries, label=TOKEN_FILE,
                             unknown_reason="" if entries else "no token file is configured")
            if org in REGISTRY:
                entry = self.entries.get(f"{org}/{common_name}")
                if entry is None:
                    return Route(f"cert:{org}/{common_name}", self._with_token_file([]), label=f"{org}/{common_name}",
                                 unknown_reason=f"no {org} provider is configured for {common_name!r}")
                return Route(f"cert:{entry.key}", self._with_token_file([entry]), label=entry.key,
                             first_party=self._first_party)
        return None


def path_matches_cert(cert_route: Route, ptype: str, name: str) -> bool:
    """Whether the URL path `/authn/<ptype>/<name>/` names the provider the client certificate names.

    A verified certificate is the stronger credential: a cert for `O=github,CN=acme` must not reach
    `oidc/corp` (or another org) by picking a path."""
    if cert_route.label == TOKEN_FILE:
        return ptype == TOKEN_FILE
    return f"{ptype}/{name}" == cert_route.label


class FailureLimiter:
    """Failed reviews per source in fixed one-minute windows; bounded memory."""

    MAX_SOURCES = 10000

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self._windows: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def over(self, source: str) -> bool:
        if self.per_minute <= 0:
            return False
        with self._lock:
            start, count = self._windows.get(source, (0.0, 0))
            return self.clock() - start < 60.0 and count >= self.per_minute

    def record_failure(self, source: str) -> None:
        if self.per_minute <= 0:
            return
        now = self.clock()
        with self._lock:
            start, count = self._windows.get(source, (now, 0))
            if now - start >= 60.0:
                start, count = now, 0
            if len(self._windows) >= self.MAX_SOURCES and source not in self._windows:
                self._windows = {s: w for s, w in self._windows.items() if now - w[0] < 60.0}
                if len(self._windows) >= self.MAX_SOURCES:
                    self._windows.pop(next(iter(self._windows)))
            self._windows[source] = (start, count + 1)


class Authenticator:
    """Runs a review over a route: cache, one upstream call per token, deadline, failure limit."""

    def __init__(self, providers: ProviderSet, settings: AuthnSettings,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.providers = providers
        self.timeout = settings.review_timeout_seconds
        self.cache: ReviewCache[Decision] = ReviewCache(
            lambda d: isinstance(d.result, User),
            ttl=settings.cache_ttl_seconds,
            negative_ttl=settings.cache_negative_ttl_seconds,
            max_entries=settings.cache_max_entries,
            clock=clock,
        )
        self.limiter = FailureLimiter(settings.failed_reviews_per_minute, clock)
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def review(self, route: Route, token: str, audiences: Sequence[str] = (), source: str | None = None,
               timeout: float | None = None) -> Outcome:
        """Raises UpstreamUnavailable (retry later) or TooManyRequests (source over its failure budget).

        `source` names the caller whose failed reviews are limited (HTTP API bearer tokens: `api:<address>`).
        None means no limit: the TokenReview webhook's only caller is the apiserver, which speaks for every
        user of the cluster, so limiting it per source would let a few garbage tokens lock everyone out.
        `timeout` (the apiserver's `?timeout=`) shortens the configured review deadline, never lengthens it.
        """
        key = cache_key(route.key, token, audiences)  # hashed once: a miss uses it again below
        cached = self.cache.get(key)
        if cached is not None:
            return Outcome(cached, True)
        if source is not None and self.limiter.over(source):
            raise TooManyRequests("too many failed token reviews from this client; retry in a minute")
        deadline = min(self.timeout, timeout) if timeout else self.timeout
        decision, from_cache = self.cache.get_or_compute(
            key, lambda: self._run_with_deadline(route, token, audiences, deadline), wait=deadline + 1.0)
        if source is not None and isinstance(decision.result, Rejected) and not from_cache:
            self.limiter.record_failure(source)
        return Outcome(decision, from_cache)

    def cached(self, route: Route, token: str, audiences: Sequence[str] = ()) -> Decision | None:
        """The decision still cached for this token on this route, or None; never calls a provider."""
        return self.cache.get(cache_key(route.key, token, audiences))

    def close(self, wait: bool = True) -> None:
        """Stop the review threads (waiting for reviews still talking to a slow provider when `wait`)."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=wait, cancel_futures=True)

    def _executor(self) -> ThreadPoolExecutor:
        # Made on first use, so building the app (tests, CLI commands that never review) starts no threads.
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="authn-review")
            return self._pool

    def _run_with_deadline(self, route: Route, token: str, audiences: Sequence[str], deadline: float) -> Decision:
        future = self._executor().submit(run_chain, route, token, tuple(audiences))
        try:
            return future.result(timeout=deadline)
        except FutureTimeout:
            log.warning("authn review timed out", extra={"provider": route.label})
            raise UpstreamUnavailable(f"identity provider did not answer within {deadline:g}s") from None


def run_chain(route: Route, token: str, audiences: Sequence[str]) -> Decision:
    """Ask the providers of the route that claim the token (`candidates`), in order; the first User wins.

    Any candidate down and none accepting means UpstreamUnavailable (a denial must not be cached by the
    apiserver when the IdP could not answer). A rejection names the provider that judged the token: the first
    candidate that rejected it, or, when no provider claims the token, the route's only provider (a certificate
    or path route) or the route itself."""
    shape = shapes.inspect(token)
    candidates = claimants(route, shape)
    unavailable = False
    rejection: Decision | None = None
    for entry in candidates:
        try:
            result = entry.provider.authenticate(token, audiences)
        except UpstreamUnavailable as exc:
            log.warning("authn provider unavailable: %s", exc.message, extra={"provider": entry.key})
            unavailable = True
            continue
        except Exception as exc:  # noqa: BLE001 - a provider bug must fail closed as 503, never a traceback reply
            log.error("authn provider failed: %s", type(exc).__name__, extra={"provider": entry.key})
            unavailable = True
            continue
        if isinstance(result, User):
            return Decision(check_reserved(entry, result), entry.key)
        rejection = rejection or Decision(result, entry.key)
    if unavailable:
        raise UpstreamUnavailable("identity provider unavailable")
    if rejection is not None:
        return rejection
    if route.unknown_reason:
        return Decision(Rejected(route.unknown_reason), route.label)
    if len(upstreams(claimed_by_third_parties(route, shape))) > 1:
        return Decision(Rejected(AMBIGUOUS_REASON), route.label)
    return unclaimed(route)


#: The rejection of a token that third-party providers at different services claim alike (nothing was sent).
AMBIGUOUS_REASON = ("tokens of this kind are issued by more than one configured service; "
                    "name the provider by URL path or client certificate")


def claimants(route: Route, shape: TokenShape) -> list[ProviderEntry]:
    """The route's providers that may see this token: those that claim its shape, and no third-party provider
    (one that sends the token to an outside service) when a configured provider that is not third-party, in the
    route or not, claims it too, nor when third-party providers of the route at different services (github.com
    and a GitHub Enterprise Server: both issue `ghp_` tokens) claim it alike: asking each in turn would hand one
    service's token to the other."""
    claimed = [e for e in route.entries if e.provider.claims(shape)]
    if not any(e.provider.third_party for e in claimed):
        return claimed
    local = [e for e in claimed if not e.provider.third_party]
    if local or any(e.provider.claims(shape) for e in route.first_party if e not in route.entries):
        return local
    if len(upstreams(e for e in claimed if e.provider.third_party)) > 1:
        return []
    return claimed


def claimed_by_third_parties(route: Route, shape: TokenShape) -> list[ProviderEntry]:
    return [e for e in route.entries if e.provider.third_party and e.provider.claims(shape)]


def upstreams(entries: Iterable[ProviderEntry]) -> set[str]:
    """The outside services these providers send tokens to (a provider that does not say counts as its own)."""
    return {getattr(e.provider, "upstream", None) or e.key for e in entries}


def unclaimed(route: Route) -> Decision:
    """The answer for a token no provider of the route claims (nothing was sent anywhere)."""
    external = [e for e in route.entries if e.external]
    if len(external) == 1 and route.label != "default":
        entry = external[0]
        return Decision(Rejected(f"not a token a {entry.type} provider accepts"), entry.key)
    if route.entries and not external:
        return Decision(Rejected("invalid token"), route.entries[0].key)
    if not route.entries:
        return Decision(Rejected("no identity provider is configured"), route.label)
    return Decision(Rejected("no configured identity provider accepts tokens of this kind"), route.label)


def check_reserved(entry: ProviderEntry, user: User) -> User | Rejected:
    """External providers may not mint `system:` users or groups (cluster-admin by another name)."""
    if not entry.external or entry.allow_system_names:
        return user
    if user.username.startswith(RESERVED_PREFIX) or any(g.startswith(RESERVED_PREFIX) for g in user.groups):
        return Rejected("identity provider returned a reserved system: name")
    return user


def install(app: Any, settings: Any) -> Authenticator:
    """The app's Authenticator, built on first call (callers.init_app or authn.api.init_app) and shared."""
    existing = app.extensions.get(EXTENSION)
    if existing is None:
        authn: AuthnSettings = settings.section("authn")
        existing = Authenticator(ProviderSet.from_settings(authn), authn)
        app.extensions[EXTENSION] = existing
    return existing


def authenticator_of(app: Any) -> Authenticator:
    return app.extensions[EXTENSION]


def subject_fields(subject: Mapping[str, Sequence[str]]) -> tuple[list[str], str]:
    """(organizations, common name) from a parsed certificate subject."""
    cns = list(subject.get("CN", ()))
    return list(subject.get("O", ())), cns[0] if cns else ""

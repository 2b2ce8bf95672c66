"""The identity-provider seam: `claims(shape) -> bool`, then `authenticate(token, audiences) -> User | Rejected`.

`claims` is decided locally from the token's shape (`kagiya.authn.shapes`) before any upstream call: the router
never hands a token to a provider that does not claim it, and never to a `third_party` provider (one that sends
the token to an outside service: GitHub, GitLab) when a provider that is not third-party claims it too.
A provider raises only `kagiya.errors.UpstreamUnavailable` (transient: IdP down, slow, rate-limited); every
definitive "no" is a `Rejected` value with a short reason that is safe to show the apiserver.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from kagiya.authn.shapes import TokenShape


@dataclass(frozen=True)
class User:
    """An authenticated identity, shaped like TokenReview's `status.user`."""

    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: Audiences the token is valid for (the intersection with the requested ones), when any were asked.
    audiences: tuple[str, ...] = ()

    def in_any(self, groups: Sequence[str]) -> bool:
        return any(g in self.groups for g in groups)


@dataclass(frozen=True)
class Rejected:
    """A definitive rejection; `reason` is short and safe to return to the caller."""

    reason: str


class Provider(Protocol):
    name: str
    #: True when `authenticate` sends the token itself to a service outside the cluster admin's control.
    third_party: bool

    def claims(self, shape: TokenShape) -> bool:
        """Whether this provider can have issued a token of this shape (no I/O)."""
        ...

    def authenticate(self, token: str, audiences: Sequence[str] = ()) -> User | Rejected: ...

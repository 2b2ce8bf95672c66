"""The identity-provider seam: `authenticate(token, audiences) -> User | Rejected`.

A provider raises only `kagiya.errors.UpstreamUnavailable` (transient: IdP down, slow, rate-limited); every
definitive "no" is a `Rejected` value with a short reason that is safe to show the apiserver.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol


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

    def authenticate(self, token: str, audiences: Sequence[str] = ()) -> User | Rejected: ...

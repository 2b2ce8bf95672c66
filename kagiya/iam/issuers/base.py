"""The credential-issuer seam: `issue(grant, caller) -> Credentials(expiry, fields)`.

A `Grant` is what resolution decided for one workload (which cloud identity, under which limits); a `Caller` is
the pod that asked (kagiya/iam/identity.py). An issuer turns both into short-lived credentials and raises only
`UpstreamUnavailable` (the cloud is down, slow or refuses for a reason that is not the pod's fault) or
`Forbidden` (the cloud refused this identity). Spec: ../shared/specs/cloud-identity.md.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from kagiya.iam.identity import Caller


@dataclass(frozen=True)
class Grant:
    """A resolved cloud identity for one workload: the issuers' input and half of the cache key."""

    cloud: str  # "aws" | "gcp"
    identity: str  # role ARN or service-account email
    binding: str = ""  # where it came from (binding id or annotation source), for audit and revocation
    external_id: str = ""
    session_name: str = ""  # requested STS session name (pod annotation); default derived from the pod
    max_session_seconds: int | None = None  # the namespace policy's cap

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.cloud, self.identity, self.binding, self.external_id)

    @property
    def role_name(self) -> str:
        """Last path part of a role ARN (what IMDS lists), or the email for Google."""
        return self.identity.rsplit("/", 1)[-1] if self.cloud == "aws" else self.identity


@dataclass(frozen=True)
class Credentials:
    """Short-lived credentials. `fields` hold the secret parts and must never be logged or audited."""

    expiry: dt.datetime
    fields: Mapping[str, str] = field(repr=False)
    issued_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    #: Non-secret facts safe to audit (assumed-role ARN, access key id fingerprint, ...).
    public: Mapping[str, str] = field(default_factory=dict)

    @property
    def lifetime(self) -> float:
        return (self.expiry - self.issued_at).total_seconds()


class Issuer(Protocol):
    """One cloud's credential minting. Every call has a timeout; errors are KagiyaErrors."""

    cloud: str

    def issue(
        self, grant: Grant, caller: Caller, *, duration_seconds: int, scopes: tuple[str, ...] = ()
    ) -> Credentials:
        ...


SESSION_NAME_RE = re.compile(r"[^\w+=,.@-]", re.ASCII)


def session_name(namespace: str, pod: str, requested: str = "") -> str:
    """An STS RoleSessionName: `requested` or `namespace.pod`, cleaned to `[\\w+=,.@-]`, 2..64 characters.

    Long names keep the start of the namespace and the end of the pod name (the random suffix that tells pods
    apart), so two pods of one Deployment still get different session names.
    """
    name = SESSION_NAME_RE.sub("-", requested or f"{namespace}.{pod}")
    if len(name) > 64:
        name = name[:31] + "." + name[-32:]
    if len(name) < 2:
        name = (name + "--")[:2]
    return name

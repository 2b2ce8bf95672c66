"""Settings section `iam:`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class IamSettings:
    #: Base ARN prefix for bare pod role names (kube2iam/kiam `--base-role-arn`).
    base_role_arn: str = ""

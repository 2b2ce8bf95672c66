"""Settings section `iam:` (bindings, policy and the annotation sources; ../shared/specs/cloud-identity.md).

Every annotation source is off by default: an annotation a user can write on their own pod or service account
only grants anything once a platform admin switches the source on, and then only where the namespace policy
allows that identity.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class IamSettings:
    #: Base ARN prefix for bare pod role names (kube2iam/kiam `--base-role-arn`), e.g. `arn:aws:iam::123:role/`.
    base_role_arn: str = ""
    #: Pod annotation `iam.amazonaws.com/role` (+ `external-id`, `session-name`), as kube2iam and kiam read it.
    pod_role_annotation: bool = False
    #: Service-account annotation `eks.amazonaws.com/role-arn` (IRSA).
    irsa_annotation: bool = False
    #: Service-account annotation `iam.gke.io/gcp-service-account` (GKE Workload Identity).
    gke_annotation: bool = False
    #: Service-account annotations `azure.workload.identity/client-id` and `.../tenant-id`.
    azure_annotation: bool = False
    #: Default Azure tenant for client ids given without one.
    azure_tenant_id: str = ""
    #: Longest lifetime a time-limited binding may ask for (seconds); 0 means no limit.
    max_binding_ttl_seconds: int = 90 * 24 * 3600

"""Settings section `credentials:` (minting and serving pod credentials: issuers, cache, metadata endpoints).

See docs/credentials.md for what each key changes; every key can also be set as `KAGIYA_CREDENTIALS_<FIELD>`.
Spec: ../shared/specs/cloud-identity.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class CredentialSettings:
    # --- issuers -----------------------------------------------------------------------------------------------
    #: AWS STS endpoint URL (moto_server in tests); empty means the regional default.
    sts_endpoint: str = ""
    sts_region: str = "us-east-1"
    #: Connect + read timeout of one STS or IAM Credentials call, in seconds.
    issuer_timeout_seconds: float = 5.0
    #: Google IAM Credentials endpoint (`http://127.0.0.1:PORT` for a stand-in); empty means the Google default.
    iam_credentials_endpoint: str = ""
    #: Send STS session tags (kubernetes-namespace, -service-account, -pod) with every AssumeRole. Off by default:
    #: tags need `sts:TagSession` in each role's trust policy, which kube2iam/kiam roles lack (docs/credentials.md).
    aws_session_tags: bool = False
    #: Requested session lifetime; the binding's policy maximum caps it (STS allows 900..43200).
    session_seconds: int = 3600
    #: OAuth scopes a GCE-endpoint token gets when the SDK asks for none.
    gcp_scopes: tuple[str, ...] = ("https://www.googleapis.com/auth/cloud-platform",)
    #: Distinct `?scopes=` sets one pod may hold cached tokens for; beyond it new sets get 429 (0: no cap).
    gcp_max_scope_sets_per_pod: int = 8
    #: Answer of `/computeMetadata/v1/project/project-id` (empty: derived from the service account email).
    gcp_project_id: str = ""
    # --- non-credential metadata, answered from configuration ----------------------------------------------------
    #: IMDS `placement/region` and the instance-identity document's region (empty: `sts_region`).
    aws_region: str = ""
    #: IMDS `placement/availability-zone` (empty: `<region>a`).
    aws_availability_zone: str = ""
    #: Account id in the instance-identity document (empty: the account of the pod's bound role).
    aws_account_id: str = ""
    #: GCE `instance/zone` is `projects/<gcp_project_number>/zones/<gcp_zone>`.
    gcp_zone: str = ""
    #: GCE `project/numeric-project-id`.
    gcp_project_number: str = ""
    #: GCE `instance/attributes/cluster-name` (what GKE tools read).
    cluster_name: str = ""
    # --- cache -------------------------------------------------------------------------------------------------
    #: Credentials with less than this left are never handed out; when a refresh fails past it, 503.
    min_remaining_seconds: int = 120
    #: Refresh at the earlier of 2/3 of the lifetime or this many seconds before expiry.
    refresh_before_seconds: int = 300
    #: How often the background refresher looks for due entries.
    refresh_interval_seconds: float = 1.0
    #: Mint credentials as soon as a pod with a binding appears in the pod watch.
    prefetch: bool = True
    #: How often each replica looks in the store for bindings and policies changed on another replica (then
    #: prefetches for the running pods they grant). 0 turns the poll off.
    grant_poll_seconds: float = 5.0
    # --- caller identity ---------------------------------------------------------------------------------------
    #: Audiences a projected service-account token must carry (TokenReview `spec.audiences`).
    token_audiences: tuple[str, ...] = ("kagiya",)
    #: How long a positive TokenReview answer is reused (bounded by the pod still being in the index).
    token_review_cache_seconds: float = 60.0
    #: File of IMDSv2 session-token keys (a mounted Secret), one per line: the first signs, all verify (rotation).
    #: Empty: a random key kept in the store, shared by every replica and worker.
    session_key_file: str = ""
    #: Identify callers by source IP when they present no token (kube2iam/kiam style); off = token only.
    allow_source_ip: bool = True
    # --- AWS IMDS ----------------------------------------------------------------------------------------------
    #: Accept IMDSv1 (no session token) GETs. Off by default: boto3 and the AWS CLI speak IMDSv2.
    imds_v1: bool = False
    #: Extra IMDS paths answered (with an empty 200) instead of 404, e.g. `/latest/meta-data/instance-id`.
    imds_allowed_paths: tuple[str, ...] = ()
    # --- admission webhook -------------------------------------------------------------------------------------
    container_credentials_uri: str = "http://169.254.170.23/v1/credentials"
    gce_metadata_host: str = "169.254.169.254"
    token_volume_name: str = "kagiya-token"  # noqa: S105 - a volume name, not a secret
    token_mount_path: str = "/var/run/secrets/kagiya.io/serviceaccount"  # noqa: S105 - a path
    token_expiration_seconds: int = 3600
    #: Web-identity (IRSA) mode: inject `AWS_STS_REGIONAL_ENDPOINTS=regional` (a service account's
    #: `eks.amazonaws.com/sts-regional-endpoints` annotation overrides it), as EKS does since 1.22.
    aws_sts_regional_endpoints: bool = True
    # --- agent -------------------------------------------------------------------------------------------------
    #: Groups whose members may forward pod evidence (`kagiya agent` authenticates as one of them).
    agent_groups: tuple[str, ...] = ("kagiya:agents",)
    #: An agent's username is `<prefix><node name>` (or its identity carries the `authentication.kubernetes.io/
    #: node-name` extra): it may only relay source-IP requests of pods on that node.
    agent_username_prefix: str = "system:kagiya-agent:"
    #: Service accounts whose pod-bound projected tokens (TokenReview, audience `agent_token_audience`) identify an
    #: agent, e.g. `system:serviceaccount:kagiya-system:kagiya-agent`; the node comes from the token's node-name.
    agent_service_accounts: tuple[str, ...] = ()
    agent_token_audience: str = "kagiya-agent"  # noqa: S105 - an audience name, not a secret
    #: `kagiya agent` side (also `KAGIYA_AGENT_<NAME>`): where it listens, the central URL, its credentials.
    agent_listen: str = field(default="127.0.0.1:8181", metadata={"env": "KAGIYA_AGENT_LISTEN"})
    agent_server: str = field(default="", metadata={"env": "KAGIYA_AGENT_SERVER"})
    agent_token_file: str = field(default="", metadata={"env": "KAGIYA_AGENT_TOKEN_FILE"})
    agent_cert: str = field(default="", metadata={"env": "KAGIYA_AGENT_CERT"})
    agent_key: str = field(default="", metadata={"env": "KAGIYA_AGENT_KEY"})
    agent_ca: str = field(default="", metadata={"env": "KAGIYA_AGENT_CA"})
    #: How long the agent waits for the central service (botocore gives IMDS one attempt of 1 s).
    agent_timeout_seconds: float = field(default=0.9, metadata={"env": "KAGIYA_AGENT_TIMEOUT_SECONDS"})

    def __post_init__(self) -> None:
        if not 900 <= self.session_seconds <= 43200:
            raise ValueError("credentials.session_seconds must be from 900 to 43200")
        if self.min_remaining_seconds < 0 or self.refresh_before_seconds < self.min_remaining_seconds:
            raise ValueError("credentials.refresh_before_seconds must be at least min_remaining_seconds (>= 0)")
        if self.issuer_timeout_seconds <= 0 or self.refresh_interval_seconds <= 0:
            raise ValueError("credentials timeouts and intervals must be positive")
        if not self.token_audiences:
            raise ValueError("credentials.token_audiences must name at least one audience")
        for path in self.imds_allowed_paths:
            if not path.startswith("/latest/"):
                raise ValueError(f"credentials.imds_allowed_paths: {path!r} must start with /latest/")

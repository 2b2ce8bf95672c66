"""Store tables of the iam capability: binding requests, bindings and stored namespace policies.

Portable SQL only (SQLite now, PostgreSQL later): state changes are conditional UPDATEs (`... WHERE state =
'pending'`) whose row count decides which of two concurrent replicas won.
"""

from __future__ import annotations

import sqlalchemy as sa

from kagiya.store import Schema, create_tables, metadata

_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")
_TIME = sa.DateTime(timezone=True)

binding_requests = sa.Table(
    "iam_binding_requests",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("namespace", sa.String(253), nullable=False),
    sa.Column("service_account", sa.String(253), nullable=False),
    sa.Column("pod_selector", sa.Text, nullable=False, default="{}"),
    sa.Column("cloud", sa.String(16), nullable=False),
    sa.Column("identity", sa.String(512), nullable=False),
    sa.Column("tenant", sa.String(128), nullable=False, default=""),
    sa.Column("external_id", sa.String(1224), nullable=False, default=""),
    sa.Column("ttl_seconds", sa.Integer, nullable=True),
    sa.Column("reason", sa.Text, nullable=False, default=""),
    sa.Column("requester", sa.String(256), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("rule", sa.Text, nullable=False, default=""),
    sa.Column("decided_by", sa.String(256), nullable=False, default=""),
    sa.Column("decision_reason", sa.Text, nullable=False, default=""),
    sa.Column("decided_at", _TIME, nullable=True),
    sa.Column("binding_id", sa.BigInteger, nullable=True),
    sa.Column("created_at", _TIME, nullable=False),
    sa.Index("ix_iam_requests_ns_state", "namespace", "state"),
)

bindings = sa.Table(
    "iam_bindings",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("namespace", sa.String(253), nullable=False),
    sa.Column("service_account", sa.String(253), nullable=False),
    sa.Column("pod_selector", sa.Text, nullable=False, default="{}"),
    sa.Column("cloud", sa.String(16), nullable=False),
    sa.Column("identity", sa.String(512), nullable=False),
    sa.Column("tenant", sa.String(128), nullable=False, default=""),
    sa.Column("external_id", sa.String(1224), nullable=False, default=""),
    sa.Column("source", sa.String(64), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("created_by", sa.String(256), nullable=False),
    sa.Column("approved_by", sa.String(256), nullable=False, default=""),
    sa.Column("reason", sa.Text, nullable=False, default=""),
    sa.Column("created_at", _TIME, nullable=False),
    sa.Column("expires_at", _TIME, nullable=True),
    sa.Column("revoked_by", sa.String(256), nullable=False, default=""),
    sa.Column("revoked_at", _TIME, nullable=True),
    sa.Index("ix_iam_bindings_workload", "namespace", "service_account", "state"),
)

policies = sa.Table(
    "iam_policies",
    metadata,
    sa.Column("namespace", sa.String(253), primary_key=True),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("updated_by", sa.String(256), nullable=False),
    sa.Column("updated_at", _TIME, nullable=False),
)

SCHEMA = Schema("iam", [create_tables(binding_requests, bindings, policies)])

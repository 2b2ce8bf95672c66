"""Fixtures for the SubjectAccessReview policy and webhook tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.apps import kagiya_app

POLICY = """\
apiVersion: kagiya.io/v1
kind: AuthorizationPolicy
rules:
  - name: no-secrets-for-contractors
    effect: deny
    groups: ["contractors"]
    verbs: ["*"]
    resources: ["secrets"]
  - name: devs-read-pods
    effect: allow
    groups: ["oidc:dev-*"]
    namespaces: ["dev", "team-*"]
    verbs: ["get", "list", "watch"]
    apiGroups: [""]
    resources: ["pods", "pods/log"]
  - name: devs-read-secrets
    effect: allow
    groups: ["oidc:dev-*"]
    namespaces: ["dev"]
    verbs: ["get"]
    resources: ["secrets"]
  - name: no-exec-anywhere
    effect: deny
    users: ["*"]
    verbs: ["create"]
    resources: ["pods/exec"]
  - name: health-for-all
    effect: allow
    groups: ["system:authenticated"]
    verbs: ["get"]
    nonResourceURLs: ["/healthz", "/version"]
  - name: no-debug
    effect: deny
    groups: ["system:authenticated"]
    verbs: ["*"]
    nonResourceURLs: ["/debug/*"]
  - name: ops-one-configmap
    effect: allow
    users: ["ops-bot"]
    namespaces: ["kube-system"]
    verbs: ["get", "update"]
    resources: ["configmaps"]
    resourceNames: ["cluster-info"]
  - name: ops-nodes
    effect: allow
    users: ["ops-bot"]
    namespaces: [""]
    verbs: ["get"]
    resources: ["nodes"]
"""


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    return path


@pytest.fixture
def authz_app(make_settings: Any, policy_file: Path) -> Iterator[Any]:
    settings = make_settings({"authz": {"policy_file": str(policy_file), "reload_interval_seconds": 0}})
    with kagiya_app(settings) as application:
        yield application


@pytest.fixture
def authz_client(authz_app: Any) -> Any:
    return authz_app.test_client()

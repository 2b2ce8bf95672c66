"""Policy evaluation: allow, explicit deny (deny wins), and no opinion, for resource and non-resource requests."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from kagiya.authz.policy import Attributes, Policy, Rule, evaluate, pattern_matches
from kagiya.authz.policy_file import parse_policy
from tests.authz.conftest import POLICY

policy = parse_policy(POLICY, "policy.yaml")
DEV = ("oidc:dev-web", "system:authenticated")


def res(user: str = "dave", groups: tuple[str, ...] = DEV, **kw: str) -> Attributes:
    return Attributes(user=user, groups=groups, resource_request=True, **kw)


def nonres(path: str, verb: str = "get", groups: tuple[str, ...] = DEV) -> Attributes:
    return Attributes(user="dave", groups=groups, resource_request=False, verb=path and verb, path=path)


def test_group_prefix_allows_listing_pods_in_listed_namespaces() -> None:
    for ns in ("dev", "team-a", "team-b"):
        d = policy.evaluate(res(verb="list", resource="pods", namespace=ns))
        assert d.outcome == "allowed" and d.rule is not None and d.rule.name == "devs-read-pods"
        assert d.reason == "kagiya: allowed by rule 'devs-read-pods'"


def test_no_rule_matching_is_no_opinion_not_deny() -> None:
    cases = [
        res(verb="list", resource="pods", namespace="prod"),  # namespace not listed
        res(verb="delete", resource="pods", namespace="dev"),  # verb not listed
        res(verb="list", resource="pods", namespace="dev", api_group="apps"),  # API group not listed
        res(verb="list", resource="deployments", namespace="dev"),  # resource not listed
        res(groups=("oidc:ops",), verb="list", resource="pods", namespace="dev"),  # group prefix does not match
        res(verb="list", resource="pods"),  # cluster scope is not a namespace
    ]
    for attrs in cases:
        d = policy.evaluate(attrs)
        assert d.outcome == "no_opinion" and not d.allowed and not d.denied, attrs
        assert d.reason == ""


def test_subresources_match_only_when_listed() -> None:
    assert policy.evaluate(res(verb="get", resource="pods", subresource="log", namespace="dev")).allowed
    d = policy.evaluate(res(verb="get", resource="pods", subresource="status", namespace="dev"))
    assert d.outcome == "no_opinion"


def test_deny_wins_over_an_allow_that_also_matches() -> None:
    contractor = ("oidc:dev-web", "contractors")
    d = policy.evaluate(res(groups=contractor, verb="get", resource="secrets", namespace="dev"))
    assert d.denied and d.rule is not None and d.rule.name == "no-secrets-for-contractors"
    assert [r.name for r in d.also_matched] == ["devs-read-secrets"]
    # the same request from a non-contractor developer is allowed by the allow rule
    assert policy.evaluate(res(verb="get", resource="secrets", namespace="dev")).allowed


def test_deny_for_a_subresource_with_wildcard_user() -> None:
    d = policy.evaluate(res(user="anyone", groups=(), verb="create", resource="pods", subresource="exec",
                            namespace="dev"))
    assert d.denied and d.rule is not None and d.rule.name == "no-exec-anywhere"


def test_resource_names_restrict_the_rule() -> None:
    ok = res(user="ops-bot", groups=(), verb="update", resource="configmaps", name="cluster-info",
             namespace="kube-system")
    assert policy.evaluate(ok).allowed
    other = res(user="ops-bot", groups=(), verb="update", resource="configmaps", name="other", namespace="kube-system")
    assert policy.evaluate(other).outcome == "no_opinion"


def test_empty_namespace_pattern_means_cluster_scope_only() -> None:
    assert policy.evaluate(res(user="ops-bot", groups=(), verb="get", resource="nodes")).allowed
    d = policy.evaluate(res(user="ops-bot", groups=(), verb="get", resource="nodes", namespace="dev"))
    assert d.outcome == "no_opinion"


def test_non_resource_allow_deny_and_no_opinion() -> None:
    assert policy.evaluate(nonres("/healthz")).allowed
    d = policy.evaluate(nonres("/debug/pprof/heap"))
    assert d.denied and d.rule is not None and d.rule.name == "no-debug"
    assert policy.evaluate(nonres("/metrics")).outcome == "no_opinion"
    assert policy.evaluate(nonres("/healthz", verb="post")).outcome == "no_opinion"
    # a non-resource rule never matches a resource request and vice versa
    assert policy.evaluate(res(verb="get", resource="healthz", namespace="dev")).outcome == "no_opinion"
    assert policy.evaluate(nonres("/api/v1/namespaces/dev/pods")).outcome == "no_opinion"


def test_no_policy_is_no_opinion() -> None:
    assert evaluate(None, res(verb="get", resource="pods", namespace="dev")).outcome == "no_opinion"
    assert evaluate(Policy(()), nonres("/healthz")).outcome == "no_opinion"


def test_pattern_matching() -> None:
    assert pattern_matches(["*"], "")
    assert pattern_matches(["oidc:*"], "oidc:alice")
    assert not pattern_matches(["oidc:*"], "github:alice")
    assert not pattern_matches(["alice"], "alice2")


names = st.text(alphabet="abcdefgh:-", max_size=8)


@given(user=names, groups=st.lists(names, max_size=3), verb=names, resource=names, namespace=names)
def test_a_deny_everything_rule_denies_whatever_else_allows(
    user: str, groups: list[str], verb: str, resource: str, namespace: str
) -> None:
    rules = (
        Rule(name="allow-all", effect="allow", users=("*",), verbs=("*",), resources=("*",)),
        Rule(name="deny-all", effect="deny", users=("*",), verbs=("*",), resources=("*",)),
    )
    attrs = res(user=user, groups=tuple(groups), verb=verb, resource=resource, namespace=namespace)
    for order in (rules, rules[::-1]):
        d = Policy(order).evaluate(attrs)
        assert d.denied and d.rule is not None and d.rule.name == "deny-all"


@given(user=names, verb=names, path=names)
def test_outcome_is_never_both_allowed_and_denied(user: str, verb: str, path: str) -> None:
    d = policy.evaluate(Attributes(user=user, groups=DEV, resource_request=False, verb=verb, path="/" + path))
    assert not (d.allowed and d.denied)

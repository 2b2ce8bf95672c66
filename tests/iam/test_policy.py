"""Policy matching: anchoring (property tests), globs vs regexes, kube2iam/kiam annotations, default deny."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kagiya.errors import Invalid
from kagiya.iam.policy import NamespacePolicy, Rule, effective_policy, parse_policy_body, parse_rule
from tests.iam.conftest import BASE_ARN, arn

ROLE_CHARS = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+=,.@_-", min_size=1,
                     max_size=40)
SUFFIX = st.text(min_size=1, max_size=20).filter(lambda s: "\n" not in s)


def allows(rule: dict[str, str], identity: str, base: str = "") -> bool:
    return parse_rule(rule, "r").matches(rule["cloud"], identity, base)


@settings(max_examples=200, deadline=None)
@given(name=ROLE_CHARS, suffix=SUFFIX)
def test_literal_glob_is_anchored(name: str, suffix: str) -> None:
    role = arn(name)
    assert allows({"cloud": "aws", "glob": role}, role)
    assert not allows({"cloud": "aws", "glob": role}, role + suffix)
    assert not allows({"cloud": "aws", "glob": role}, suffix + role)


@settings(max_examples=200, deadline=None)
@given(name=ROLE_CHARS, suffix=SUFFIX)
def test_escaped_regex_is_anchored_even_without_caret_and_dollar(name: str, suffix: str) -> None:
    role = arn(name)
    assert allows({"cloud": "aws", "regex": re.escape(role)}, role)
    assert not allows({"cloud": "aws", "regex": re.escape(role)}, role + suffix)
    assert not allows({"cloud": "aws", "regex": re.escape(role)}, suffix + role)


@settings(max_examples=100, deadline=None)
@given(name=ROLE_CHARS, suffix=SUFFIX)
def test_bare_name_rules_are_anchored_and_stay_in_the_base_account(name: str, suffix: str) -> None:
    rule = {"cloud": "aws", "glob": name}
    assert allows(rule, arn(name), BASE_ARN)
    assert not allows(rule, arn(name + suffix), BASE_ARN)
    assert not allows(rule, f"arn:aws:iam::999999999999:role/{name}", BASE_ARN)
    assert not allows(rule, arn(name), "")  # no base ARN configured: bare names match nothing


@settings(max_examples=100, deadline=None)
@given(name=ROLE_CHARS, account=st.from_regex(r"[0-9]{12}", fullmatch=True))
def test_bare_name_regexes_match_only_role_names_under_the_base_arn(name: str, account: str) -> None:
    """A kiam-style bare regex (`.*-reader`, `.*`) never matches a whole ARN in another account."""
    other = f"arn:aws:iam::{account}:role/{name}-reader"
    for regex in (".*-reader", "^.*-reader$", ".*", "(.*)", "[^/]*-reader|.*", ".+"):
        rule = {"cloud": "aws", "regex": regex}
        if not other.startswith(BASE_ARN):
            assert not allows(rule, other, BASE_ARN), regex
        assert not allows(rule, other, "")  # no base ARN configured: bare names match nothing
    assert allows({"cloud": "aws", "regex": ".*-reader"}, arn(f"{name}-reader"), BASE_ARN)
    assert not allows({"cloud": "aws", "regex": ".*-reader"}, arn(f"{name}-writer"), BASE_ARN)


@settings(max_examples=100, deadline=None)
@given(name=ROLE_CHARS)
def test_arn_regexes_still_match_whole_identities(name: str) -> None:
    for regex in (re.escape(arn(name)), "^" + re.escape(arn(name)) + "$", "(" + re.escape(arn(name)) + ")"):
        assert allows({"cloud": "aws", "regex": regex}, arn(name), BASE_ARN)
        assert allows({"cloud": "aws", "regex": regex}, arn(name), "")


def test_the_review_example_evil_reader() -> None:
    assert not allows({"cloud": "aws", "regex": ".*-reader"}, "arn:aws:iam::999999999999:role/evil-reader", BASE_ARN)
    assert not kiam(".*-reader").check("aws", "arn:aws:iam::999999999999:role/evil-reader", BASE_ARN).allowed
    assert kiam(".*-reader").check("aws", arn("app-reader"), BASE_ARN).allowed


@settings(max_examples=100, deadline=None)
@given(segment=ROLE_CHARS.filter(lambda s: "/" not in s), rest=ROLE_CHARS)
def test_glob_star_stays_within_a_path_segment(segment: str, rest: str) -> None:
    assert allows({"cloud": "aws", "glob": arn("team/*")}, arn(f"team/{segment}"))
    assert not allows({"cloud": "aws", "glob": arn("team/*")}, arn(f"team/{segment}/{rest}"))
    assert allows({"cloud": "aws", "glob": arn("team/**")}, arn(f"team/{segment}/{rest}"))


def test_the_issue_example() -> None:
    assert allows({"cloud": "aws", "glob": "arn:aws:iam::1:role/app"}, "arn:aws:iam::1:role/app")
    assert not allows({"cloud": "aws", "glob": "arn:aws:iam::1:role/app"}, "arn:aws:iam::1:role/app-admin")
    assert not allows({"cloud": "aws", "regex": "arn:aws:iam::1:role/app"}, "arn:aws:iam::1:role/app-admin")
    # A regex with a trailing $ still refuses a trailing newline (fullmatch, not search).
    assert not allows({"cloud": "aws", "regex": "^arn:aws:iam::1:role/app$"}, "arn:aws:iam::1:role/app\n")


def test_glob_metacharacters_are_literal_where_not_wildcards() -> None:
    assert allows({"cloud": "gcp", "glob": "a.b@p.iam.gserviceaccount.com"}, "a.b@p.iam.gserviceaccount.com")
    assert not allows({"cloud": "gcp", "glob": "a.b@p.iam.gserviceaccount.com"}, "aXb@p.iam.gserviceaccount.com")
    assert not allows({"cloud": "aws", "glob": arn("app-[x]")}, arn("app-x"))


def test_a_rule_only_covers_its_cloud() -> None:
    assert not parse_rule({"cloud": "aws", "glob": "**"}, "r").matches("gcp", "x@p.iam.gserviceaccount.com")


def kiam(regex: str) -> NamespacePolicy:
    return effective_policy("ns", None, {"iam.amazonaws.com/permitted": regex})


def kube2iam(items: list[str]) -> NamespacePolicy:
    return effective_policy("ns", None, {"iam.amazonaws.com/allowed-roles": json.dumps(items)})


@pytest.mark.parametrize("policy", [kiam("^app-.*$"), kube2iam(["app-*"]), kube2iam(["^app-.*$"]),
                                    kube2iam([arn("app-*")])])
def test_kiam_and_kube2iam_annotations(policy: NamespacePolicy) -> None:
    allowed = policy.check("aws", arn("app-reader"), BASE_ARN)
    assert allowed.allowed and "iam.amazonaws.com/" in allowed.rule
    refused = policy.check("aws", arn("admin"), BASE_ARN)
    assert not refused.allowed and "matches none of namespace annotation iam.amazonaws.com/" in refused.rule
    assert not policy.check("gcp", "app@p.iam.gserviceaccount.com").allowed


def test_no_policy_and_broken_annotations_deny() -> None:
    assert effective_policy("ns", None, None).check("aws", arn("app"), BASE_ARN).rule == (
        "no policy for namespace 'ns': default deny")
    broken = effective_policy("ns", None, {"iam.amazonaws.com/permitted": "(", "iam.amazonaws.com/allowed-roles": "x"})
    assert not broken.check("aws", arn("app"), BASE_ARN).allowed
    assert len(broken.problems) == 2


def test_policy_body_validation() -> None:
    body = parse_policy_body("ns", {"allow": [{"cloud": "aws", "glob": arn("a")}], "approverGroups": ["g"]})
    assert body["maxSessionSeconds"] == 3600 and body["trustAnnotations"] is True
    with pytest.raises(Invalid, match="maxSessionSeconds"):
        parse_policy_body("ns", {"maxSessionSeconds": 10})
    with pytest.raises(Invalid, match="unknown policy field 'allowed'"):
        parse_policy_body("ns", {"allowed": []})
    with pytest.raises(Invalid, match=r"autoApprove\[0\].cloud"):
        parse_policy_body("ns", {"autoApprove": [{"cloud": "ibm", "glob": "x"}]})


def test_rule_description_names_kind_and_pattern() -> None:
    rule = Rule("aws", "glob", arn("app-*"), "allow[0]")
    assert rule.describe() == f"allow[0] (aws glob '{arn('app-*')}')"

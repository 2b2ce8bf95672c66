"""Policy files are validated on load, and every refusal names the line that is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kagiya.authz.policy_file import PolicyError, load_policy_file, parse_policy

GOOD_HEAD = "rules:\n  - name: r\n    effect: allow\n    groups: [g]\n"


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("rules:\n  - name: r\n    effect: permit\n    groups: [g]\n    verbs: [get]\n    resources: [pods]\n",
         3, "effect must be allow or deny, got 'permit'"),
        (GOOD_HEAD + "    verbs: [get]\n    namspaces: [dev]\n    resources: [pods]\n", 6,
         "unknown key rules[0].namspaces"),
        (GOOD_HEAD + "    verbs: get\n    resources: [pods]\n", 5, "rules[0].verbs must be a list of strings"),
        (GOOD_HEAD + "    verbs: [yes]\n    resources: [pods]\n", 5, "rules[0].verbs[0] must be a string"),
        (GOOD_HEAD + "    verbs: [get]\n", 2, "needs `resources` or `nonResourceURLs`"),
        (GOOD_HEAD + "    verbs: [get]\n    resources: [pods]\n    nonResourceURLs: [/x]\n", 6, "mixes"),
        (GOOD_HEAD + "    verbs: [get]\n    nonResourceURLs: [healthz]\n", 6, "must start with '/'"),
        (GOOD_HEAD + "    verbs: [get]\n    groups: [h]\n    resources: [pods]\n", 6, "duplicate key 'groups'"),
        ("rules:\n  - name: r\n    effect: allow\n    verbs: [get]\n    resources: [pods]\n", 2, "needs `users` or"),
        ("rules:\n  - name: r\n    effect: allow\n    groups: [g\n    verbs: [get]\n", 5, "not valid YAML"),
        ("apiVersion: kagiya.io/v2\nrules: []\n", 1, "apiVersion must be kagiya.io/v1"),
        ("rules: []\nextra: 1\n", 2, "unknown key extra"),
        (GOOD_HEAD + "    verbs: [get]\n    resources: [pods]\n" + GOOD_HEAD[7:] + "    verbs: [get]\n"
         "    resources: [pods]\n", 7, "rule name 'r' is already used on line 2"),
        (GOOD_HEAD + "    verbs: []\n    resources: [pods]\n", 5, "must not be empty"),
        (GOOD_HEAD + "    verbs: [g*t]\n    resources: [pods]\n", 5, "'*' is only allowed at the end"),
    ],
)
def test_bad_policies_are_refused_with_the_line(text: str, line: int, words: str) -> None:
    with pytest.raises(PolicyError) as info:
        parse_policy(text, "p.yaml")
    assert info.value.message.startswith(f"p.yaml line {line}: "), info.value.message
    assert words in info.value.message


def test_empty_file_is_refused() -> None:
    with pytest.raises(PolicyError, match="empty"):
        parse_policy("", "p.yaml")


def test_zero_rules_is_a_valid_policy() -> None:
    assert parse_policy("rules: []\n").rules == ()


def test_unnamed_rules_get_their_index_and_line(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("# comment\nrules:\n  - effect: deny\n    users: [eve]\n    verbs: ['*']\n    resources: ['*']\n")
    rule = load_policy_file(path).rules[0]
    assert (rule.name, rule.line, rule.effect) == ("rules[0]", 3, "deny")
    assert rule.namespaces is None and rule.api_groups is None and rule.resource_names is None


def test_unreadable_and_oversized_files(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy_file(tmp_path / "missing.yaml")
    big = tmp_path / "big.yaml"
    big.write_text("rules: []\n" + "#" * (1024 * 1024 + 1))
    with pytest.raises(PolicyError, match="larger than"):
        load_policy_file(big)


safe = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-:.", min_size=1, max_size=12)
rule_strategy = st.fixed_dictionaries(
    {"effect": st.sampled_from(["allow", "deny"]), "groups": st.lists(safe, min_size=1, max_size=3),
     "verbs": st.lists(st.sampled_from(["get", "list", "*"]), min_size=1, max_size=3)},
    optional={"users": st.lists(safe, min_size=1, max_size=2), "namespaces": st.lists(safe, min_size=1, max_size=2),
              "resources": st.lists(safe, min_size=1, max_size=2), "resourceNames": st.lists(safe, min_size=1)},
)


@given(st.lists(rule_strategy, max_size=6))
def test_what_is_written_is_what_is_read(rules: list[dict[str, object]]) -> None:
    import yaml

    for rule in rules:
        rule.setdefault("resources", ["pods"])
    policy = parse_policy(yaml.safe_dump({"rules": rules}), "p.yaml")
    assert len(policy.rules) == len(rules)
    for parsed, raw in zip(policy.rules, rules, strict=True):
        assert parsed.effect == raw["effect"]
        assert list(parsed.groups) == raw["groups"] and list(parsed.verbs) == raw["verbs"]
        assert parsed.namespaces == (tuple(raw["namespaces"]) if "namespaces" in raw else None)  # type: ignore[arg-type]
        assert list(parsed.resources) == raw["resources"]


@pytest.mark.parametrize("name", ["*", "prod-*", "*-db", "a*b"])
def test_a_wildcard_in_resource_names_is_refused_with_the_line(name: str) -> None:
    """Resource names match exactly: a deny with `resourceNames: [prod-*]` would silently deny nothing."""
    text = (GOOD_HEAD + "    verbs: [delete]\n    resources: [secrets]\n"
            f"    resourceNames: [cluster-info, '{name}']\n")
    with pytest.raises(PolicyError) as info:
        parse_policy(text, "policy.yaml")
    assert info.value.message == (f"policy.yaml line 7: rules[0].resourceNames[1]: {name!r} has a '*', but "
                                  "resource names are matched exactly (omit resourceNames to match any name)")


@pytest.mark.parametrize(("text", "line"), [
    ("rules: " + "[" * 5000 + "]" * 5000 + "\n", 1),
    ("rules: " + "[" * 200_000 + "\n", 1),  # unbalanced as well
    ("rules: " + "{a: " * 3000 + "1" + "}" * 3000 + "\n", 1),
    ("rules:\n" + "".join("  " * i + "-\n" for i in range(2000)), 33),
])
def test_deeply_nested_yaml_is_a_policy_error_not_a_recursion_error(text: str, line: int) -> None:
    with pytest.raises(PolicyError) as info:
        parse_policy(text, "policy.yaml")
    assert info.value.message.startswith(f"policy.yaml line {line}: nested more than 32 levels deep")


@given(st.text(alphabet=st.sampled_from(list("[]{}-:,'\"!&*| \n\tab#%?>@`\\\x00\x85\ufeff")), max_size=300))
def test_any_text_is_a_policy_or_a_policy_error(text: str) -> None:
    """Nothing a user can save as the policy file gets past parse_policy as anything but a PolicyError."""
    try:
        parse_policy(text, "p.yaml")
    except PolicyError as exc:
        assert exc.message.startswith("p.yaml")

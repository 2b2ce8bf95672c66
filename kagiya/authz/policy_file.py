"""Loading the SubjectAccessReview policy YAML with line-numbered validation errors.

The file is composed into YAML nodes (not plain Python values) so every error can name the line it is on:
`policy.yaml line 7: rules[1].effect must be allow or deny, got 'permit'`. Values must be real strings (an
unquoted `yes` or `1.0` is refused rather than silently coerced), duplicate keys are refused (YAML would keep
the last one silently), and unknown keys are refused so a typo such as `namspaces:` cannot widen a rule.

    apiVersion: kagiya.io/v1          # optional
    kind: AuthorizationPolicy         # optional
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
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kagiya.authz.policy import Policy, Rule
from kagiya.errors import ConfigError

MAX_POLICY_BYTES = 1024 * 1024
#: Deepest nesting of lists and mappings accepted (a policy uses 4: top level, rules list, rule, value list).
MAX_DEPTH = 32
API_VERSION = "kagiya.io/v1"
KIND = "AuthorizationPolicy"
STR_TAG = "tag:yaml.org,2002:str"
LIST_KEYS = {
    "users": "users",
    "groups": "groups",
    "verbs": "verbs",
    "namespaces": "namespaces",
    "apiGroups": "api_groups",
    "resources": "resources",
    "resourceNames": "resource_names",
    "nonResourceURLs": "non_resource_urls",
}
RULE_KEYS = {"name", "effect", *LIST_KEYS}


class PolicyError(ConfigError):
    """A policy file that cannot be used; the message names the file and the line."""


def load_policy_file(path: str | Path) -> Policy:
    """Read and validate `path`; raises PolicyError naming the line of the first problem."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_POLICY_BYTES:
            raise PolicyError(f"policy file {p}: larger than {MAX_POLICY_BYTES} bytes")
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise PolicyError(f"policy file {p}: not UTF-8 text") from None
    except OSError as exc:
        raise PolicyError(f"policy file {p}: cannot read: {exc.strerror}") from None
    return parse_policy(text, str(p))


def parse_policy(text: str, source: str = "policy") -> Policy:
    """Validate policy YAML text; raises PolicyError with `source line N: what is wrong`."""
    import yaml

    try:
        _check_depth(text, source)
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" line {mark.line + 1}" if mark else ""
        raise PolicyError(f"{source}{where}: not valid YAML: {exc.problem or 'syntax error'}") from None
    except yaml.YAMLError:
        raise PolicyError(f"{source}: not valid YAML") from None
    except RecursionError:  # PyYAML composes recursively; _check_depth should have stopped this first
        raise PolicyError(f"{source}: not valid YAML: nested too deeply") from None
    if root is None:
        raise PolicyError(f"{source}: the policy file is empty (write `rules: []` for a policy with no rules)")
    return _Parser(source).policy(root)


def _check_depth(text: str, source: str) -> None:
    """Refuse nesting deeper than MAX_DEPTH before composing: PyYAML's composer recurses once per level, so a
    file of a few thousand `[` would raise RecursionError (a 500 and a traceback) instead of a PolicyError.
    The event parser walks the file iteratively, so this check itself cannot recurse."""
    import yaml

    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                line = f" line {event.start_mark.line + 1}" if event.start_mark is not None else ""
                raise PolicyError(f"{source}{line}: nested more than {MAX_DEPTH} levels deep "
                                  "(a policy needs 4 at most)")
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, node: Any, message: str) -> PolicyError:
        return PolicyError(f"{self.source} line {node.start_mark.line + 1}: {message}")

    def mapping(self, node: Any, where: str, allowed: set[str]) -> dict[str, tuple[Any, Any]]:
        """{key: (key_node, value_node)} with duplicate and unknown keys refused."""
        import yaml

        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, f"{where} must be a mapping")
        out: dict[str, tuple[Any, Any]] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != STR_TAG:
                raise self.fail(key_node, f"{where}: keys must be strings")
            key = key_node.value
            if key in out:
                raise self.fail(key_node, f"{where}: duplicate key {key!r}")
            if key not in allowed:
                prefix = f"{where}." if where != "the top level" else ""
                raise self.fail(key_node, f"unknown key {prefix}{key} (known: {', '.join(sorted(allowed))})")
            out[key] = (key_node, value_node)
        return out

    def string(self, node: Any, where: str) -> str:
        import yaml

        if not isinstance(node, yaml.ScalarNode) or node.tag != STR_TAG:
            raise self.fail(node, f"{where} must be a string (quote values such as 'yes' or '1')")
        return str(node.value)

    def strings(self, node: Any, where: str) -> tuple[str, ...]:
        import yaml

        if not isinstance(node, yaml.SequenceNode):
            raise self.fail(node, f"{where} must be a list of strings")
        return tuple(self.string(item, f"{where}[{i}]") for i, item in enumerate(node.value))

    def policy(self, root: Any) -> Policy:
        import yaml

        top = self.mapping(root, "the top level", {"apiVersion", "kind", "rules"})
        if "apiVersion" in top:
            version = self.string(top["apiVersion"][1], "apiVersion")
            if version != API_VERSION:
                raise self.fail(top["apiVersion"][1], f"apiVersion must be {API_VERSION}, got {version!r}")
        if "kind" in top:
            kind = self.string(top["kind"][1], "kind")
            if kind != KIND:
                raise self.fail(top["kind"][1], f"kind must be {KIND}, got {kind!r}")
        if "rules" not in top:
            raise self.fail(root, "the policy needs a `rules:` list")
        rules_node = top["rules"][1]
        if not isinstance(rules_node, yaml.SequenceNode):
            raise self.fail(rules_node, "rules must be a list")
        rules = [self.rule(node, i) for i, node in enumerate(rules_node.value)]
        names: dict[str, int] = {}
        for rule in rules:
            if rule.name in names:
                raise PolicyError(
                    f"{self.source} line {rule.line}: rule name {rule.name!r} is already used "
                    f"on line {names[rule.name]}"
                )
            names[rule.name] = rule.line
        return Policy(tuple(rules), self.source)

    def rule(self, node: Any, index: int) -> Rule:
        where = f"rules[{index}]"
        fields = self.mapping(node, where, RULE_KEYS)
        line = node.start_mark.line + 1
        values: dict[str, Any] = {}
        for key, attr in LIST_KEYS.items():
            if key in fields:
                values[attr] = self.strings(fields[key][1], f"{where}.{key}")
                if not values[attr]:
                    raise self.fail(fields[key][1], f"{where}.{key} must not be empty (omit it, or use ['*'])")
        name = self.string(fields["name"][1], f"{where}.name") if "name" in fields else f"rules[{index}]"
        if not name.strip():
            raise self.fail(fields["name"][1], f"{where}.name must not be blank")
        if "effect" not in fields:
            raise self.fail(node, f"{where} needs `effect: allow` or `effect: deny`")
        effect = self.string(fields["effect"][1], f"{where}.effect")
        if effect not in ("allow", "deny"):
            raise self.fail(fields["effect"][1], f"{where}.effect must be allow or deny, got {effect!r}")
        if not values.get("users") and not values.get("groups"):
            raise self.fail(node, f"{where} needs `users` or `groups` (use groups: ['*'] for everyone)")
        if "verbs" not in values:
            raise self.fail(node, f"{where} needs `verbs` (use ['*'] for every verb)")
        resource_keys = [k for k in ("namespaces", "apiGroups", "resources", "resourceNames") if k in fields]
        if "nonResourceURLs" in fields and resource_keys:
            raise self.fail(
                fields[resource_keys[0]][0],
                f"{where} mixes nonResourceURLs with {resource_keys[0]}: write two rules",
            )
        if "nonResourceURLs" not in fields and "resources" not in fields:
            raise self.fail(node, f"{where} needs `resources` or `nonResourceURLs`")
        for i, url in enumerate(values.get("non_resource_urls", ())):
            if url != "*" and not url.startswith("/"):
                raise self.fail(fields["nonResourceURLs"][1], f"{where}.nonResourceURLs[{i}] must start with '/'")
            if "*" in url[:-1]:
                raise self.fail(fields["nonResourceURLs"][1],
                                f"{where}.nonResourceURLs[{i}]: '*' is only allowed at the end")
        for i, value in enumerate(values.get("resource_names", ())):
            if "*" in value:
                # Names are matched exactly (as in RBAC): a '*' here would never match, and a deny rule with it
                # would silently deny nothing. Omit resourceNames for "any name".
                raise self.fail(fields["resourceNames"][1],
                                f"{where}.resourceNames[{i}]: {value!r} has a '*', but resource names are matched "
                                "exactly (omit resourceNames to match any name)")
        for key in ("users", "groups", "verbs", "namespaces", "apiGroups", "resources"):
            for i, value in enumerate(values.get(LIST_KEYS[key], ())):
                if "*" in value[:-1] and not (key == "resources" and value.startswith("*/")):
                    raise self.fail(fields[key][1], f"{where}.{key}[{i}]: '*' is only allowed at the end")
        return Rule(name=name, effect=effect, line=line, **values)  # type: ignore[arg-type]

"""`kagiya secrets decrypt --template`: the part of Go's text/template that kubesec users put in `--template`.

Supported: text, `{{ .a.b }}` field paths, `{{ index .data "key-with-dash" }}`, `{{ range $k, $v := .data }}` …
`{{ end }}` (keys in sorted order, as Go ranges over a map), `$k` / `$v` / `$v.field`, and `{{-` / `-}}` trimming.
A missing key is an error, as with kubesec (`missingkey=error`). Anything else is refused with one line naming
the action, rather than printing something different from what kubesec would print.
"""

from __future__ import annotations

import re
import shlex
from typing import Any

from kagiya.errors import UsageError

_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.S)
_RANGE = re.compile(r"^range\s+(?:(\$\w+)\s*,\s*)?(\$\w+)\s*:=\s*(\S+)$")


def _tokens(template: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    for m in _ACTION.finditer(template):
        text = template[pos:m.start()]
        if m.group(1):
            text = text.rstrip()
        if out and out[-1][0] == "trim":
            out.pop()
            text = text.lstrip()
        out.append(("text", text))
        out.append(("action", m.group(2).strip()))
        if m.group(3):
            out.append(("trim", ""))
        pos = m.end()
    text = template[pos:]
    if out and out[-1][0] == "trim":
        out.pop()
        text = text.lstrip()
    out.append(("text", text))
    return out


def _lookup(expr: str, dot: Any, env: dict[str, Any]) -> Any:
    if expr == ".":
        return dot
    if expr.startswith("$"):
        name, _, path = expr.partition(".")
        if name not in env:
            raise UsageError(f"--template: undefined variable {name}")
        value, parts = env[name], [p for p in path.split(".") if p]
    elif expr.startswith("."):
        value, parts = dot, expr[1:].split(".")
    else:
        raise UsageError(f"--template: unsupported expression {expr!r}")
    for part in parts:
        value = _get(value, part)
    return value


def _get(value: Any, key: str) -> Any:
    if not isinstance(value, dict) or key not in value:
        raise UsageError(f"--template: map has no entry for key {key!r}")
    return value[key]


def _evaluate(action: str, dot: Any, env: dict[str, Any]) -> Any:
    words = shlex.split(action) if action.startswith("index ") else action.split()
    if words and words[0] == "index":
        if len(words) < 3:
            raise UsageError("--template: index needs a map and a key")
        value = _lookup(words[1], dot, env)
        for key in words[2:]:
            value = _get(value, key)
        return value
    if len(words) != 1:
        raise UsageError(f"--template: unsupported action {{{{ {action} }}}}")
    return _lookup(words[0], dot, env)


def _show(value: Any) -> str:
    if value is None:
        return "<no value>"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{_show(v)}" for k, v in sorted(value.items())) + "]"
    return str(value)


def _run(tokens: list[tuple[str, str]], i: int, dot: Any, env: dict[str, Any], out: list[str]) -> int:
    while i < len(tokens):
        kind, value = tokens[i]
        if kind == "text":
            out.append(value)
            i += 1
            continue
        if value == "end":
            return i + 1
        match = _RANGE.match(value)
        if match:
            key_var, value_var, source = match.groups()
            items = _lookup(source, dot, env)
            body_end = _skip(tokens, i + 1)
            for k, v in sorted(items.items()) if isinstance(items, dict) else []:
                scope = dict(env)
                if key_var:
                    scope[key_var] = k
                scope[value_var] = v
                _run(tokens, i + 1, dot, scope, out)
            i = body_end
            continue
        if value.startswith(("if ", "with ", "else", "define ", "template ", "block ")):
            raise UsageError(f"--template: unsupported action {{{{ {value} }}}}")
        out.append(_show(_evaluate(value, dot, env)))
        i += 1
    return i


def _skip(tokens: list[tuple[str, str]], i: int) -> int:
    """Index after the `end` that closes the block starting at `i`."""
    depth = 1
    while i < len(tokens):
        kind, value = tokens[i]
        if kind == "action" and (value.startswith("range ") or value.startswith(("if ", "with "))):
            depth += 1
        elif kind == "action" and value == "end":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise UsageError("--template: a range has no matching {{ end }}")


def render(template: str, document: dict[str, Any]) -> str:
    """`template` executed against one decrypted Secret (as a mapping); raises UsageError for what it cannot do."""
    tokens = _tokens(template)
    out: list[str] = []
    end = _run(tokens, 0, document, {}, out)
    if end < len(tokens):
        raise UsageError("--template: an {{ end }} without a range")
    return "".join(out)

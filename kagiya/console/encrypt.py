"""The console's encrypt page: paste values, get an encrypted Secret manifest for the chosen recipients.

For teams without KMS rights, like `POST /v1/secrets/encrypt` and through the same function
(`kagiya.secrets.api.encrypt_for`: recipient checks, encryption, the audit event as the signed-in person).
The plaintext lives only in this request's memory: it is never stored, logged, echoed back into the form, or
quoted in an error message (errors name the line number only).
"""

from __future__ import annotations

import base64
import re
from typing import Any

from flask import current_app, request

from kagiya.console.blueprint import bp, page, signed_in
from kagiya.errors import BadRequest
from kagiya.iam.bindings import DNS_LABEL, DNS_SUBDOMAIN
from kagiya.secrets.api import encrypt_for
from kagiya.web import settings_of

DATA_KEY = re.compile(r"^[-._a-zA-Z0-9]{1,253}$")
MAX_VALUES = 200


def _recipients_offered() -> list[str]:
    return list(settings_of(current_app).section("secrets").default_recipients)


def parse_values(text: str) -> dict[str, str]:
    """`KEY=value` lines (blank lines skipped) into a mapping; raises BadRequest naming the line, never its text."""
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not DATA_KEY.match(key):
            raise BadRequest(f"line {number} is not KEY=value (keys: letters, digits, '-', '_', '.')")
        if key in values:
            raise BadRequest(f"line {number} repeats a key")
        values[key] = value
    if not values:
        raise BadRequest("give at least one KEY=value line")
    if len(values) > MAX_VALUES:
        raise BadRequest(f"at most {MAX_VALUES} values")
    return values


def secret_manifest(name: str, namespace: str, values: dict[str, str]) -> str:
    import yaml

    data = {k: base64.b64encode(v.encode()).decode() for k, v in values.items()}
    doc = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace},
           "type": "Opaque", "data": data}
    return yaml.safe_dump(doc, sort_keys=False)


@bp.get("/encrypt")
def encrypt_page() -> Any:
    signed_in()
    offered = _recipients_offered()
    return page("encrypt.html", title="Encrypt", offered=offered, chosen=offered, form={}, result="")


@bp.post("/encrypt")
def encrypt_post() -> Any:
    session = signed_in()
    form = {k: request.form.get(k, "").strip() for k in ("name", "namespace", "extra")}
    offered = _recipients_offered()
    chosen = [r for r in request.form.getlist("recipient") if r in offered]
    extra = [r.strip() for r in form["extra"].split(",") if r.strip()]
    if not DNS_SUBDOMAIN.match(form["name"]) or not DNS_LABEL.match(form["namespace"]):
        raise BadRequest("give a valid Secret name and namespace")
    if not chosen and not extra:
        raise BadRequest("choose at least one recipient")
    text = secret_manifest(form["name"], form["namespace"], parse_values(request.form.get("values", "")))
    result = encrypt_for(session.user, text, chosen + extra, text.encode())
    return page("encrypt.html", title="Encrypt", offered=offered, chosen=chosen, form=form, result=result)

"""HTTP surface of the secrets capability: `POST /v1/secrets/encrypt` and `POST /v1/secrets/decrypt`.

Encrypt is for CI systems that hold no KMS rights: any bearer-authenticated caller sends a plaintext manifest and
gets it back encrypted for the request's recipients or the service's `secrets.default_recipients`. It refuses an
already-encrypted manifest, since re-encrypting one means unwrapping its data key (that is a decrypt).
Decrypt answers only callers in `secrets.decrypt_groups` (empty: nobody) and writes an audit event for every
attempt, naming the caller, the Secrets, the sha256 of the input, the key ids and the names of the values revealed
(`details.keys`), never a value. A recipient whose upstream is down or slow answers 503 (retryable); a key that is
not held or not permitted answers 400.

A body is either the manifest itself (YAML or JSON; recipients as repeated `?recipient=URI`) and the reply is the
manifest, or a JSON object `{"manifest": "...", "recipients": [...]}` and the reply is `{"manifest": "..."}`.
Bad manifests answer 400 with the reason, bodies past the size limit 413 (docs/format.md).
"""

from __future__ import annotations

import hashlib
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, jsonify, request

from kagiya import audit
from kagiya.callers import caller_from_request
from kagiya.config import Settings
from kagiya.errors import BadRequest, Forbidden, KagiyaError
from kagiya.httpjson import NotJson, parse_json, raw_body
from kagiya.openapi import describe
from kagiya.web import settings_of, store_of

bp = Blueprint("secrets", __name__, url_prefix="/v1/secrets")

BODY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Either this JSON wrapper, or the manifest itself as the body (YAML or JSON).",
    "properties": {
        "manifest": {"type": "string", "description": "The Secret manifest text (multi-document YAML, List, JSON)."},
        "recipients": {"type": "array", "items": {"type": "string"}, "description": "Key URIs (encrypt only)."},
    },
    "required": ["manifest"],
}
REPLY_SCHEMA: dict[str, Any] = {"type": "object", "properties": {"manifest": {"type": "string"}}}


def init_app(app: Flask, settings: Settings) -> None:
    del settings
    app.register_blueprint(bp)


def _secrets_settings() -> Any:
    return settings_of(current_app).section("secrets")


def _read() -> tuple[str, list[str], bool, bytes]:
    """(manifest text, recipients, wrapped-in-JSON, raw body)."""
    from kagiya.secrets import ops

    sset = _secrets_settings()
    limit = min(int(sset.max_file_bytes) + 64 * 1024, int(current_app.config["MAX_CONTENT_LENGTH"]))
    data = raw_body(limit)
    if not data.strip():
        raise BadRequest("request body is empty; send a Secret manifest")
    recipients = [r for r in request.args.getlist("recipient") if r]
    if data.lstrip()[:1] == b"{":
        try:
            parsed = parse_json(data)  # too deep, surrogates or NUL: 400
        except NotJson:
            parsed = None  # flow-style YAML such as `{kind: Secret, ...}`
        if isinstance(parsed, dict) and "manifest" in parsed:
            manifest = parsed["manifest"]
            wanted = parsed.get("recipients", [])
            if not isinstance(manifest, str):
                raise BadRequest("manifest must be a string holding the manifest text")
            if not isinstance(wanted, list) or not all(isinstance(r, str) for r in wanted):
                raise BadRequest("recipients must be a list of key URIs")
            text = ops.decode(manifest.encode("utf-8"), "manifest", int(sset.max_file_bytes))
            return text, recipients + wanted, True, data
    text = ops.decode(data, "request body", int(sset.max_file_bytes))
    return text, recipients, False, data


def _reply(text: str, wrapped: bool) -> Response:
    if wrapped:
        return jsonify({"manifest": text})
    return Response(text, content_type=request.content_type or "application/yaml")


def _identities(text: str) -> list[str]:
    from kagiya.secrets import manifest

    try:
        return [d.identity for d in manifest.parse(text).secrets]
    except KagiyaError:
        return []


@bp.post("/encrypt")
@describe("Encrypt a Secret manifest for the given recipients (or the service's default recipients).",
          tags=["secrets"], request_schema=BODY_SCHEMA, response_schema=REPLY_SCHEMA,
          responses={"400": "bad manifest or recipients", "401": "no bearer token", "413": "manifest too large",
                     "503": "a recipient's KMS or gpg timed out or is unreachable (retryable)"})
def encrypt() -> Response:
    caller = caller_from_request()
    text, recipients, wrapped, raw = _read()
    return _reply(encrypt_for(caller, text, recipients, raw), wrapped)


def encrypt_for(caller: Any, text: str, recipients: list[str], raw: bytes) -> str:
    """Encrypt `text` for `recipients` (or the default recipients) and audit it as `caller`: the one encrypt path
    of `POST /v1/secrets/encrypt` and the web console. Raises BadRequest and the key backends' errors."""
    from kagiya.secrets import kubesec, ops

    if kubesec.find_trailer(text) >= 0:
        raise BadRequest("the manifest is already encrypted; re-encrypt it where its keys are held")
    sset = _secrets_settings()
    recipients = recipients or list(sset.default_recipients)
    if not recipients:
        raise BadRequest("no recipients: pass recipients, or configure secrets.default_recipients")
    result = ops.encrypt(ops.Source(text, None), sset, [r.lstrip("+") for r in recipients])
    audit.record(store_of(current_app), actor=caller.username, action="secrets.encrypt",
                 target=", ".join(_identities(text)) or "-", outcome="success", request_id=g.get("request_id", ""),
                 # the input is plaintext: a keyed fingerprint, never a bare hash a log reader could test guesses on
                 details={"input_fingerprint": audit.fingerprint(raw), "key_ids": recipients})
    return result


@bp.post("/decrypt")
@describe("Decrypt a Secret manifest (callers in secrets.decrypt_groups only; audited).",
          tags=["secrets"], request_schema=BODY_SCHEMA, response_schema=REPLY_SCHEMA,
          responses={"400": "bad manifest, tampered or not decryptable", "401": "no bearer token",
                     "403": "not in secrets.decrypt_groups", "413": "manifest too large",
                     "503": "a recipient's KMS or gpg timed out or is unreachable (retryable)"})
def decrypt() -> Response:
    from kagiya.secrets import ops

    caller = caller_from_request()
    sset = _secrets_settings()
    store = store_of(current_app)
    request_id = g.get("request_id", "")
    if not caller.in_any(sset.decrypt_groups):
        audit.record(store, actor=caller.username, action="secrets.decrypt", target="-", outcome="denied",
                     request_id=request_id, details={})
        reason = "is not in secrets.decrypt_groups" if sset.decrypt_groups else "cannot: HTTP decrypt is disabled"
        raise Forbidden(f"user {caller.username!r} {reason}")
    text, _, wrapped, raw = _read()
    details: dict[str, Any] = {"input_sha256": hashlib.sha256(raw).hexdigest()}
    target = ", ".join(_identities(text)) or "-"
    try:
        plain, opened = ops.decrypt(ops.Source(text, None), sset)
    except KagiyaError as exc:
        details["error"] = exc.code
        audit.record(store, actor=caller.username, action="secrets.decrypt", target=target, outcome="failure",
                     request_id=request_id, details=details)
        raise
    # which values were revealed, by name only (never a value): "namespace/name:section.key"
    revealed = [f"{opened.manifest.secrets[s.secret].identity}:{s.label}" for s in opened.manifest.slots]
    details.update(key_ids=opened.recipients, used_key=opened.used, value_count=len(opened.plaintexts),
                   keys=revealed)
    audit.record(store, actor=caller.username, action="secrets.decrypt", target=target, outcome="success",
                 request_id=request_id, details=details)
    return _reply(plain, wrapped)

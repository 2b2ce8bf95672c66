"""The service's common HTTP behaviour: Status bodies, size limits, health, metrics, OpenAPI, request ids."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import bearer


def assert_status(resp: Any, code: int, reason: str) -> dict[str, Any]:
    assert resp.status_code == code
    assert resp.headers["Content-Type"].startswith("application/json")
    body = resp.get_json()
    assert body["kind"] == "Status" and body["status"] == "Failure"
    assert body["code"] == code and body["reason"] == reason
    assert "Traceback" not in resp.get_data(as_text=True)
    return body


def test_healthz_and_readyz(client: Any) -> None:
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json()["checks"]["store"] == "ok"


def test_readyz_reports_failing_capability_check(app: Any, client: Any) -> None:
    from kagiya.core_api import add_readiness_check
    from kagiya.errors import UpstreamUnavailable

    def not_synced() -> None:
        raise UpstreamUnavailable("pod index not synced yet")

    add_readiness_check(app, "kube", not_synced)
    body = assert_status(client.get("/readyz"), 503, "ServiceUnavailable")
    assert body["details"]["checks"]["kube"] == "pod index not synced yet"


def test_unknown_path_is_a_404_status(client: Any) -> None:
    body = assert_status(client.get("/nope"), 404, "NotFound")
    assert "/nope" in body["message"]


def test_wrong_method_is_a_405_status(client: Any) -> None:
    assert_status(client.delete("/healthz"), 405, "MethodNotAllowed")


def test_every_post_route_refuses_a_2mb_body_with_413(app: Any, client: Any) -> None:
    from kagiya.httpjson import json_body

    @app.post("/test/reads-json")
    def reads_json() -> Any:
        return json_body()

    big = b"{" + b" " * (2 * 1024 * 1024) + b"}"
    post_rules = [r.rule for r in app.url_map.iter_rules() if "POST" in (r.methods or ())]
    assert post_rules, "expected POST routes"
    for rule in post_rules:
        path = rule.replace("<", "").replace(">", "").replace("int:", "")
        resp = client.post(path, data=big, content_type="application/json")
        if path.startswith("/ui/"):  # the web console answers people with an HTML page
            assert resp.status_code == 413
            continue
        assert_status(resp, 413, "RequestEntityTooLarge")


def test_malformed_json_gets_a_400_status(app: Any, client: Any) -> None:
    from flask import jsonify

    from kagiya.httpjson import json_body

    @app.post("/test/echo")
    def echo() -> Any:
        return jsonify(json_body())

    body = assert_status(client.post("/test/echo", data=b'{"a": ', content_type="application/json"), 400, "BadRequest")
    assert "not valid JSON" in body["message"]
    assert_status(client.post("/test/echo", data=b"[1, 2]"), 400, "BadRequest")
    assert_status(client.post("/test/echo", data=b""), 400, "BadRequest")
    assert client.post("/test/echo", data=b'{"a": 1}').get_json() == {"a": 1}


def test_unexpected_exception_gives_500_status_without_traceback(app: Any, client: Any) -> None:
    @app.get("/test/boom")
    def boom() -> Any:
        raise RuntimeError("secret detail that must not leak")

    body = assert_status(client.get("/test/boom"), 500, "InternalError")
    assert "secret detail" not in body["message"]
    assert "request id" in body["message"]


def test_request_id_is_echoed_or_generated(client: Any) -> None:
    assert client.get("/healthz", headers={"X-Request-Id": "abc-123"}).headers["X-Request-Id"] == "abc-123"
    generated = client.get("/healthz", headers={"X-Request-Id": "bad id; drop table"}).headers["X-Request-Id"]
    assert len(generated) == 32 and generated.isalnum()


def test_metrics_count_requests_per_route(client: Any) -> None:
    client.get("/healthz")
    client.get("/healthz")
    client.get("/nope")
    text = client.get("/metrics").get_data(as_text=True)
    assert 'kagiya_http_requests_total{method="GET",route="/healthz",status="200"} 2.0' in text
    assert 'kagiya_http_requests_total{method="GET",route="<unmatched>",status="404"} 1.0' in text
    assert 'kagiya_http_request_duration_seconds_count{method="GET",route="/healthz"} 2.0' in text


def test_openapi_validates_and_lists_every_route(app: Any, client: Any) -> None:
    from openapi_spec_validator import validate

    spec = client.get("/openapi.json").get_json()
    validate(spec)
    rules = {r.rule for r in app.url_map.iter_rules() if r.endpoint != "static"
             and not r.endpoint.startswith("console.")}  # the web console's HTML pages are not API
    documented = set(spec["paths"])
    for rule in rules:
        path = rule
        for conv in ("int:", "path:", "string:"):
            path = path.replace("<" + conv, "<")
        path = path.replace("<", "{").replace(">", "}")
        assert path in documented, rule


def test_audit_requires_admin(client: Any) -> None:
    assert_status(client.get("/v1/audit"), 401, "Unauthorized")
    assert_status(client.get("/v1/audit", headers=bearer("wrong-token")), 401, "Unauthorized")
    assert_status(client.get("/v1/audit", headers=bearer("dev-token-0002")), 403, "Forbidden")
    assert client.get("/v1/audit", headers=bearer("admin-token-0001")).status_code == 200


@pytest.mark.parametrize("query", ["limit=0", "limit=abc", "since=yesterday", "bogus=1", "continue=-1"])
def test_audit_rejects_bad_query(client: Any, query: str) -> None:
    assert_status(client.get(f"/v1/audit?{query}", headers=bearer("admin-token-0001")), 400, "BadRequest")


@pytest.mark.parametrize(("mode", "logged"), [("all", {200, 404}), ("errors", {404}), ("off", set())])
def test_access_log_lines_are_json_with_the_request_id(make_settings: Any, capsys: Any, mode: str,
                                                       logged: set[int]) -> None:
    from kagiya.web import create_app

    app = create_app(make_settings({"access_log": mode, "log_level": "INFO"}))
    client = app.test_client()
    client.get("/healthz", headers={"X-Request-Id": "req-ok"})
    client.get("/nope", headers={"X-Request-Id": "req-missing"})
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if '"kagiya.access"' in line]
    assert {line["status"] for line in lines} == logged
    for line in lines:
        expected = {200: ("req-ok", "/healthz"), 404: ("req-missing", "<unmatched>")}[line["status"]]
        assert (line["requestId"], line["route"]) == expected
    app.extensions["kagiya.store"].dispose()


def test_openapi_describes_parameters_security_patterns_and_201(client: Any) -> None:
    """Issue 16.7: enough detail for clients and fuzzers to build valid requests."""
    spec = client.get("/openapi.json").get_json()
    paths = spec["paths"]
    audit_params = {p["name"]: p for p in paths["/v1/audit"]["get"]["parameters"]}
    assert {"since", "until", "limit", "continue", "actor", "outcome"} <= set(audit_params)
    assert audit_params["limit"]["schema"]["maximum"] == 500
    assert audit_params["since"]["schema"]["format"] == "date-time"
    assert {p["name"] for p in paths["/v1/iam/binding-requests"]["get"]["parameters"]} >= {"namespace", "state",
                                                                                          "limit", "continue"}
    assert paths["/v1/iam/binding-requests"]["get"]["security"] == [{"bearer": []}]
    assert paths["/healthz"]["get"]["security"] == []
    assert paths["/latest/meta-data/iam/info"]["get"]["security"] == [{"imdsToken": []}]
    assert "mutual TLS" in paths["/authn/tokenreviews"]["post"]["description"]
    assert set(spec["components"]["securitySchemes"]) >= {"bearer", "imdsToken", "gceMetadata", "containerToken"}
    create = paths["/v1/iam/binding-requests"]["post"]
    assert "201" in create["responses"] and "200" not in create["responses"]
    body = create["requestBody"]["content"]["application/json"]["schema"]
    assert body["properties"]["namespace"]["pattern"].startswith("^[a-z0-9]")
    assert any("arn:aws" in branch["properties"]["identity"]["pattern"] for branch in body["anyOf"])
    rid = paths["/v1/iam/binding-requests/{rid}"]["get"]["parameters"][0]
    assert rid["schema"]["pattern"] == "^[0-9]{1,18}$"
    assert paths["/v1/iam/policies/{namespace}"]["put"]["parameters"][0]["schema"]["maxLength"] == 63

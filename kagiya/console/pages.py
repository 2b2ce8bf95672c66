"""Console pages: the pending-request queue, bindings, explain and the audit log.

Each view is thin and calls what the JSON API calls (`kagiya.iam.bindings`, `kagiya.iam.api.explanation`,
`kagiya.audit`, `kagiya.callers.require_admin`) with the signed-in person as the caller, so who may see and do what
is decided, and audited, in one place. Actions answer with a redirect (POST/redirect/GET); a refusal is shown as a
page carrying the API's own message and status.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Response, current_app, g, redirect, request, url_for
from werkzeug.wrappers import Response as ResponseBase

from kagiya import audit
from kagiya.callers import require_admin
from kagiya.console.blueprint import bp, console, page, signed_in
from kagiya.errors import BadRequest, KagiyaError, NotFound
from kagiya.iam import bindings
from kagiya.iam.api import explanation
from kagiya.iam.context import IamContext, iam_context
from kagiya.iam.explain_text import explain_lines
from kagiya.iam.policy import approver_groups, policy_for

MAX_COMMENT = 2000
#: Pending requests shown (oldest first); each costs a policy check and an explain on every refresh.
MAX_SHOWN = 100
NOTICES = {
    "approved": "Request {id} approved.",
    "denied": "Request {id} denied.",
    "revoked": "Binding {id} revoked.",
}


def _ctx() -> IamContext:
    return iam_context(current_app)


def _id(value: str) -> int:
    if not value.isdigit() or len(value) > 18:
        raise NotFound(f"{value!r} is not an id")
    return int(value)


def _notice() -> str:
    template = NOTICES.get(request.args.get("done", ""))
    rid = request.args.get("id", "")
    return template.format(id=int(rid)) if template and rid.isdigit() and len(rid) < 19 else ""


def _comment(field: str, required: bool = False) -> str:
    text = request.form.get(field, "").strip()
    if len(text) > MAX_COMMENT:
        raise BadRequest(f"the {field} must be at most {MAX_COMMENT} characters")
    if required and not text:
        raise BadRequest(f"give a {field}")
    return text


def _verdict(ctx: IamContext, item: Mapping[str, Any]) -> dict[str, Any]:
    """The namespace policy's answer for this request today, and the explain lines for its workload."""
    policy = policy_for(ctx, item["namespace"])
    decision = policy.check(item["cloud"], item["identity"], ctx.iam.base_role_arn)
    try:
        lines = explain_lines(explanation(ctx, item["namespace"], "", item["serviceAccount"], item["cloud"]))
    except KagiyaError as exc:
        lines = [f"explain unavailable: {exc.message}"]
    return {"allowed": decision.allowed, "rule": decision.rule, "lines": lines,
            "approvers": ", ".join(approver_groups(policy, ctx.settings.admin_groups))}


def _pending(ctx: IamContext) -> tuple[list[dict[str, Any]], bool]:
    """The oldest pending requests (at most MAX_SHOWN), each with its verdict; and whether more are waiting."""
    items, next_id = bindings.list_requests(ctx, {"state": "pending"}, 0, MAX_SHOWN)
    return [{**item, "verdict": _verdict(ctx, item)} for item in items], next_id is not None


# ---- requests ----------------------------------------------------------------------------------------------------


@bp.get("/requests")
def requests_page() -> Any:
    session = signed_in()
    ctx = _ctx()
    pending, more = _pending(ctx)
    recent, _ = bindings.list_requests(ctx, {"requester": session.user.username}, 0, bindings.MAX_PAGE)
    return page("requests.html", title="Pending requests", pending=pending, more=more, mine=recent[-10:][::-1],
                notice=_notice(), poll_ms=int(console().section.poll_seconds * 1000))


@bp.get("/requests/pending.frag")
def pending_fragment() -> Any:
    """The queue's list alone, for the page's polling script (no reload, no inline code)."""
    signed_in()
    pending, more = _pending(_ctx())
    body, status = page("pending.html", pending=pending, more=more)
    response = Response(body, status=status, content_type="text/html; charset=utf-8")
    response.headers["X-Pending-Count"] = str(len(pending))
    return response


def _decide(rid: str, verdict: str) -> ResponseBase:
    session = signed_in()
    comment = _comment("comment", required=verdict == "denied")
    bindings.decide(_ctx(), session.user, _id(rid), verdict, comment, g.request_id)
    return redirect(url_for("console.requests_page", done=verdict, id=_id(rid)))


@bp.post("/requests/<rid>/approve")
def approve(rid: str) -> ResponseBase:
    return _decide(rid, "approved")


@bp.post("/requests/<rid>/deny")
def deny(rid: str) -> ResponseBase:
    return _decide(rid, "denied")


# ---- bindings ----------------------------------------------------------------------------------------------------

BINDING_FILTERS = ("namespace", "serviceAccount", "cloud", "identity", "state")


@bp.get("/bindings")
def bindings_page() -> Any:
    signed_in()
    filters = {k: request.args.get(k, "").strip() for k in BINDING_FILTERS}
    if filters["state"] and filters["state"] not in bindings.BINDING_STATES:
        raise BadRequest(f"state must be one of {', '.join(bindings.BINDING_STATES)}")
    after = request.args.get("continue", "0")
    items, next_id = bindings.list_bindings(_ctx(), {k: v for k, v in filters.items() if v},
                                            int(after) if after.isdigit() and len(after) < 19 else 0, 50)
    return page("bindings.html", title="Bindings", items=items, filters=filters, next_id=next_id,
                states=bindings.BINDING_STATES, notice=_notice())


@bp.post("/bindings/<bid>/revoke")
def revoke(bid: str) -> ResponseBase:
    session = signed_in()
    reason = _comment("reason", required=True)
    bindings.revoke(_ctx(), session.user, _id(bid), reason, g.request_id)
    return redirect(url_for("console.bindings_page", done="revoked", id=_id(bid)))


# ---- explain -----------------------------------------------------------------------------------------------------


@bp.get("/explain")
def explain_page() -> Any:
    signed_in()
    form = {k: request.args.get(k, "").strip() for k in ("namespace", "pod", "serviceAccount")}
    lines: list[str] = []
    error = ""
    if form["namespace"]:
        try:
            lines = explain_lines(explanation(_ctx(), form["namespace"], form["pod"], form["serviceAccount"]))
        except KagiyaError as exc:
            error = exc.message
    return page("explain.html", title="Explain", form=form, lines=lines, error=error)


# ---- audit -------------------------------------------------------------------------------------------------------

AUDIT_FILTERS = ("actor", "action", "target", "outcome", "since", "until")


@bp.get("/audit")
def audit_page() -> Any:
    signed_in()
    require_admin("read the audit log")
    args = {k: v.strip() for k, v in request.args.items() if k in (*AUDIT_FILTERS, "continue") and v.strip()}
    query = audit.parse_query({**args, "limit": "50"})
    items, next_id = audit.query(current_app.extensions["kagiya.store"], query)
    filters = {k: request.args.get(k, "") for k in AUDIT_FILTERS}
    return page("audit.html", title="Audit log", items=items, filters=filters, next_id=next_id,
                outcomes=sorted(audit.OUTCOMES))


@bp.get("/audit/<eid>")
def audit_event(eid: str) -> Any:
    signed_in()
    require_admin("read the audit log")
    wanted = _id(eid)
    items, _ = audit.query(current_app.extensions["kagiya.store"], audit.AuditQuery(after_id=wanted - 1, limit=1))
    if not items or items[0]["id"] != wanted:
        raise NotFound(f"audit event {wanted} not found")
    return page("event.html", title=f"Audit event {wanted}", event=items[0])

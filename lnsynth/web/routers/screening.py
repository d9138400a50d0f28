"""Two-person screening of imported records (issue 22, item 2): API and page.

Reads are open (like the rest of the app); every decision needs a curator (role ``curator`` or
above): a bearer token for the JSON API, a session login and the session's CSRF token for the forms.
The rules live in :mod:`lnsynth.web.store.screening_review` (two independent reviewers per stage, each
decides once; a conflict is resolved by a third curator who made neither decision; an exclusion names
one of the protocol's reasons).

API
---
``GET /api/screening``                  every queued record with its state per stage, the counts, the reasons
``GET /api/screening/queue``            (bearer) the caller's queue and the conflicts she may resolve
``GET /api/screening/prisma``           the computed PRISMA flow plus the ``update`` block
``GET /api/screening/{id}``             one record's state
``POST /api/screening/{id}/decision``   ``{"decision": "include"|"exclude", "reason": ID, "note": "...",
                                        "stage": "title_abstract"|"full_text"}`` (stage: default the open one)
``POST /api/screening/{id}/resolve``    the same body, by a third curator, for a stage in conflict
"""

from __future__ import annotations

from typing import Any, Callable, Optional
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse

from lnsynth.analyses.screening import prisma_update, prisma_with_update

from ..auth import Auth, AuthError, Principal
from ..store import Forbidden, NotFound, Store
from ..store.screening_review import CONFLICT, STAGE_LABEL, ScreeningInputError, exclusion_reasons
from ..validation import BODY_NOT_OBJECT, err


def make_router(store: Store, auth: Auth, page: Callable, api_error: Callable[..., Exception],
                json_body: Callable) -> APIRouter:
    """The screening router (same arguments as :func:`lnsynth.web.routers.curation.make_router`)."""
    router = APIRouter()

    def client(request: Request) -> str:
        return request.client.host if request.client else "unknown"

    def api_user(request: Request) -> Principal:
        try:
            p = auth.bearer(request)
        except AuthError as e:
            raise api_error(e.status, e.message, headers=e.headers) from None
        if not p.has("curator"):
            raise api_error(403, f"user {p.name!r} has role {p.role!r}; screening needs 'curator' or above")
        return p

    def actor(p: Principal, request: Request) -> str:
        kind = {"bearer": "api:bearer", "session": "form:session"}.get(p.via, "form:token")
        return f"{kind}:{p.name}@{client(request)}"

    def rid_of(raw: str) -> int:
        if not (raw.isascii() and raw.isdigit()) or len(raw) > 12:
            raise api_error(404, f"no screening record {raw[:40]!r}")
        return int(raw)

    def resolvable(user: str) -> list[dict]:
        return [r for r in store.screening_conflicts()
                if user not in [d["reviewer"] for d in r["stages"][r["open_stage"]]["decisions"]]]

    # ================================================================ API
    @router.get("/api/screening")
    def api_screening():
        return {"reasons": exclusion_reasons(), "counts": store.screening_counts(),
                "records": store.screening_overview()}

    @router.get("/api/screening/queue")
    def api_screening_queue(request: Request):
        p = api_user(request)
        return {"user": p.name, "queue": store.screening_queue(p.name), "conflicts": resolvable(p.name)}

    @router.get("/api/screening/prisma")
    def api_screening_prisma():
        return prisma_with_update(store)

    @router.get("/api/screening/{rid}")
    def api_screening_record(rid: str):
        try:
            return store.screening_status(rid_of(rid))
        except NotFound as e:
            raise api_error(404, str(e)) from None

    async def api_write(rid: str, request: Request, resolve: bool) -> dict:
        p = api_user(request)
        oid = rid_of(rid)
        body = await json_body(request)
        if not isinstance(body, dict):
            raise api_error(422, [dict(BODY_NOT_OBJECT)])
        try:
            stage = body.get("stage") or (await run_in_threadpool(store.screening_status, oid))["open_stage"]
        except NotFound as e:
            raise api_error(404, str(e)) from None
        if stage is None:
            raise api_error(403, f"screening of record {oid} is finished")
        method = store.resolve_conflict if resolve else store.record_decision
        try:
            return await run_in_threadpool(method, oid, stage, p.name, body.get("decision"), body.get("reason"),
                                           body.get("note"), actor(p, request))
        except ScreeningInputError as e:
            raise api_error(422, [err(e.field, e.message, "value_error")]) from None
        except NotFound as e:
            raise api_error(404, str(e)) from None
        except Forbidden as e:
            raise api_error(403, str(e)) from None

    @router.post("/api/screening/{rid}/decision")
    async def api_screening_decide(rid: str, request: Request):
        return await api_write(rid, request, resolve=False)

    @router.post("/api/screening/{rid}/resolve")
    async def api_screening_resolve(rid: str, request: Request):
        return await api_write(rid, request, resolve=True)

    # ================================================================ page
    def page_context(p: Optional[Principal]) -> dict[str, Any]:
        overview = store.screening_overview()
        counts = store.screening_counts()
        return {
            "title": "Screening", "reasons": exclusion_reasons(), "stage_label": STAGE_LABEL,
            "records": overview, "update": prisma_update(counts),
            "queue": store.screening_queue(p.name) if p is not None and p.has("curator") else [],
            "conflicts": [r for r in overview if r["open_stage"] and r["stages"][r["open_stage"]]["state"] == CONFLICT],
        }

    def render(request: Request, errors: Optional[dict] = None, status: int = 200) -> HTMLResponse:
        ctx = page_context(auth.user(request))
        return page(request, "screening.html", {**ctx, "errors": errors or {},
                                                "done": request.query_params.get("done")}, status=status)

    @router.get("/screening", response_class=HTMLResponse, include_in_schema=False)
    def screening_page(request: Request):
        return render(request)

    async def form_write(request: Request, rid: str, resolve: bool):
        oid = rid_of(rid)
        try:
            form = await request.form()
            data = {k: v for k, v in form.items() if isinstance(v, str)}
        except (ValueError, KeyError, UnicodeDecodeError, AssertionError):
            return page(request, "error.html", {"status": 400, "message": "could not read the form"}, status=400)
        if not auth.csrf_ok(request, data.get("csrf_token", "")):
            return page(request, "error.html", {"status": 403, "message": "CSRF check failed: reload the page and "
                                                "submit the form again"}, status=403)
        p = auth.user(request)
        if p is None:
            return page(request, "error.html", {"status": 403, "message": "log in first"}, status=403)
        if not p.has("curator"):
            return page(request, "error.html", {"status": 403, "message": f"your role {p.role!r} cannot screen "
                                                "(needs 'curator')"}, status=403)
        method = store.resolve_conflict if resolve else store.record_decision
        try:
            await run_in_threadpool(method, oid, data.get("stage", ""), p.name, data.get("decision", ""),
                                    data.get("reason") or None, data.get("note") or None, actor(p, request))
        except ScreeningInputError as e:
            return render(request, {oid: {e.field: e.message}}, status=400)
        except NotFound as e:
            return page(request, "error.html", {"status": 404, "message": str(e)}, status=404)
        except Forbidden as e:
            return page(request, "error.html", {"status": 403, "message": str(e)}, status=403)
        return RedirectResponse("/screening?" + urlencode({"done": str(oid)}), status_code=303)

    @router.post("/screening/{rid}/decision", response_class=HTMLResponse, include_in_schema=False)
    async def screening_decide_form(request: Request, rid: str):
        return await form_write(request, rid, resolve=False)

    @router.post("/screening/{rid}/resolve", response_class=HTMLResponse, include_in_schema=False)
    async def screening_resolve_form(request: Request, rid: str):
        return await form_write(request, rid, resolve=True)

    return router

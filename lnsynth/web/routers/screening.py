"""Two-person screening of imported records (issue 22, item 2): API and page.

A module-level router on the shared dependencies of :mod:`lnsynth.web.deps`.
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

from typing import Any, Optional
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse

from lnsynth.analyses.screening import prisma_update, prisma_with_update

from ..auth import Principal
from ..deps import ApiError, actor, form_user, get_store, json_body, page, record_id, refuse, require_curator
from ..store import Forbidden, NotFound, Store
from ..store.screening_review import CONFLICT, STAGE_LABEL, ScreeningInputError, exclusion_reasons
from ..validation import BODY_NOT_OBJECT, err

router = APIRouter()


def _rid(raw: str) -> int:
    return record_id(raw, "screening record")


def _resolvable(store: Store, user: str) -> list[dict]:
    return [r for r in store.screening_conflicts()
            if user not in [d["reviewer"] for d in r["stages"][r["open_stage"]]["decisions"]]]


# ==================================================================== API
@router.get("/api/screening")
def api_screening(store: Store = Depends(get_store)):
    return {"reasons": exclusion_reasons(), "counts": store.screening_counts(), "records": store.screening_overview()}


@router.get("/api/screening/queue")
def api_screening_queue(p: Principal = Depends(require_curator), store: Store = Depends(get_store)):
    return {"user": p.name, "queue": store.screening_queue(p.name), "conflicts": _resolvable(store, p.name)}


@router.get("/api/screening/prisma")
def api_screening_prisma(store: Store = Depends(get_store)):
    return prisma_with_update(store)


@router.get("/api/screening/{rid}")
def api_screening_record(rid: str, store: Store = Depends(get_store)):
    try:
        return store.screening_status(_rid(rid))
    except NotFound as e:
        raise ApiError(404, str(e)) from None


async def _api_write(rid: str, request: Request, p: Principal, store: Store, resolve: bool) -> dict:
    oid = _rid(rid)
    body = await json_body(request)
    if not isinstance(body, dict):
        raise ApiError(422, [dict(BODY_NOT_OBJECT)])
    try:
        stage = body.get("stage") or (await run_in_threadpool(store.screening_status, oid))["open_stage"]
    except NotFound as e:
        raise ApiError(404, str(e)) from None
    if stage is None:
        raise ApiError(403, f"screening of record {oid} is finished")
    method = store.resolve_conflict if resolve else store.record_decision
    try:
        return await run_in_threadpool(method, oid, stage, p.name, body.get("decision"), body.get("reason"),
                                       body.get("note"), actor(p, request))
    except ScreeningInputError as e:
        raise ApiError(422, [err(e.field, e.message, "value_error")]) from None
    except NotFound as e:
        raise ApiError(404, str(e)) from None
    except Forbidden as e:
        raise ApiError(403, str(e)) from None


@router.post("/api/screening/{rid}/decision")
async def api_screening_decide(rid: str, request: Request, p: Principal = Depends(require_curator),
                               store: Store = Depends(get_store)):
    return await _api_write(rid, request, p, store, resolve=False)


@router.post("/api/screening/{rid}/resolve")
async def api_screening_resolve(rid: str, request: Request, p: Principal = Depends(require_curator),
                                store: Store = Depends(get_store)):
    return await _api_write(rid, request, p, store, resolve=True)


# ==================================================================== page
def _render(request: Request, store: Store, errors: Optional[dict] = None, status: int = 200) -> HTMLResponse:
    p = request.app.state.auth.user(request)
    overview = store.screening_overview()
    ctx: dict[str, Any] = {
        "title": "Screening", "reasons": exclusion_reasons(), "stage_label": STAGE_LABEL,
        "records": overview, "update": prisma_update(store.screening_counts()),
        "queue": store.screening_queue(p.name) if p is not None and p.has("curator") else [],
        "conflicts": [r for r in overview if r["open_stage"] and r["stages"][r["open_stage"]]["state"] == CONFLICT],
        "errors": errors or {}, "done": request.query_params.get("done"),
    }
    return page(request, "screening.html", ctx, status=status)


@router.get("/screening", response_class=HTMLResponse, include_in_schema=False)
def screening_page(request: Request, store: Store = Depends(get_store)):
    return _render(request, store)


async def _form_write(request: Request, rid: str, store: Store, resolve: bool):
    oid = _rid(rid)
    data, p, refused = await form_user(request, "curator")
    if refused is not None:
        return refused
    method = store.resolve_conflict if resolve else store.record_decision
    try:
        await run_in_threadpool(method, oid, data.get("stage", ""), p.name, data.get("decision", ""),
                                data.get("reason") or None, data.get("note") or None, actor(p, request))
    except ScreeningInputError as e:
        return _render(request, store, {oid: {e.field: e.message}}, status=400)
    except NotFound as e:
        return refuse(request, 404, str(e))
    except Forbidden as e:
        return refuse(request, 403, str(e))
    return RedirectResponse("/screening?" + urlencode({"done": str(oid)}), status_code=303)


@router.post("/screening/{rid}/decision", response_class=HTMLResponse, include_in_schema=False)
async def screening_decide_form(request: Request, rid: str, store: Store = Depends(get_store)):
    return await _form_write(request, rid, store, resolve=False)


@router.post("/screening/{rid}/resolve", response_class=HTMLResponse, include_in_schema=False)
async def screening_resolve_form(request: Request, rid: str, store: Store = Depends(get_store)):
    return await _form_write(request, rid, store, resolve=True)

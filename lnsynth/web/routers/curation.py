"""Curation: the two-person rule's review queue, trials, and the record edit pages (API and pages).

Every write names its user (audit ``user``); every form checks the CSRF token bound to the
server-side session and validates on the server, naming the field.  A value entered or changed
here is ``pending`` until a second curator verifies it against its quote (or disputes it with
their own reading, which sends it to the review queue); see :mod:`lnsynth.web.curation`.
"""

from __future__ import annotations

from typing import Any, Optional
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from lnsynth.evidence.schema import ENDPOINTS, REGIMENS

from ..curation import counts_sentence, validate_adverse_event, validate_trial
from ..deps import ApiError, actor, api_user, conflict, form_user, get_store, json_body, page, refuse, trial_arms
from ..store import AE_FIELDS, KINDS, VIEW_FIELDS, Conflict, Forbidden, NotFound, Store
from ..validation import BODY_NOT_OBJECT, err, form_to_typed, validate_outcome, version_of
from .records import delete_answer  # noqa: F401  (re-exported: the record API's DELETE answer)

KIND_PATH = {"outcomes": "outcome", "adverse-events": "adverse_event"}
PATH_OF = {v: k for k, v in KIND_PATH.items()}
LABEL = {"outcome": "outcome", "adverse_event": "adverse event"}

router = APIRouter()


def rid_of(raw: str) -> int:
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 12:
        raise StarletteHTTPException(404, f"no record {raw[:40]!r}")
    return int(raw)


def kind_of(path_kind: str) -> str:
    k = KIND_PATH.get(path_kind)
    if k is None:
        raise StarletteHTTPException(404, f"unknown record kind {path_kind[:40]!r}")
    return k


def validate(kind: str, data: Any, arms: list[str]) -> tuple[dict, list[dict]]:
    return validate_outcome(data, arms) if kind == "outcome" else validate_adverse_event(data, arms)


def shell_or_404(store: Store, trial_id: str):
    try:
        return store.study_shell(trial_id)
    except NotFound:
        raise StarletteHTTPException(404, f"unknown trial {trial_id[:80]!r}") from None


# ================================================================ API: two-person rule and trials
# ================================================================ API: two-person rule
@router.get("/api/verification")
def api_verification(store: Store = Depends(get_store)):
    c = store.verification_counts()
    return {**c, "summary": counts_sentence(c)}


@router.get("/api/review")
def api_review(store: Store = Depends(get_store)):
    return store.review_queue()


@router.post("/api/trials/{trial_id}/{path_kind}/{rid}/verify")
async def api_verify(trial_id: str, path_kind: str, rid: str, request: Request, store: Store = Depends(get_store)):
    """Body ``{"version": N}`` verifies; ``{"version": N, "reading": {...}, "note": "..."}`` gives the
    second curator's own reading (the same fields): equal -> verified, different -> disputed."""
    kind = kind_of(path_kind)
    p = api_user(request, "curator")
    body = await json_body(request)
    arms = await run_in_threadpool(trial_arms, store, trial_id)
    oid = rid_of(rid)
    if not isinstance(body, dict):
        raise ApiError(422, [dict(BODY_NOT_OBJECT)])
    errors: list[dict] = []
    version = version_of(body["version"], errors) if "version" in body else None
    if "version" not in body:
        errors.append(err("version", "version is required (the version you checked)", "missing"))
    try:
        current = await run_in_threadpool(store.record_of, kind, trial_id, oid)
    except NotFound as e:
        raise ApiError(404, str(e)) from None
    reading = None
    if body.get("reading") is not None:
        fields = VIEW_FIELDS if kind == "outcome" else AE_FIELDS
        merged = {f: current[f] for f in fields}
        if isinstance(body["reading"], dict):
            merged.update({k: v for k, v in body["reading"].items() if k in fields})
        reading, verrs = validate(kind, merged, arms)
        errors += [{**e, "field": f"reading.{e['field']}"} for e in verrs]
    note = body.get("note")
    if note is not None and (not isinstance(note, str) or len(note) > 2000):
        errors.append(err("note", "note must be text of at most 2000 characters", "string_type"))
    if errors:
        raise ApiError(422, errors)
    if body.get("decision") == "keep":  # withdraw a proposed deletion (restores the approved value)
        call = lambda: store.keep_record(kind, trial_id, oid, version, p.name, actor(p, request))  # noqa
    elif "decision" in body and body.get("decision") == "adopt":
        if not p.has("reviewer"):
            raise ApiError(403, "resolving a dispute needs role 'reviewer'")
        rv = body.get("review_id")
        if isinstance(rv, bool) or not isinstance(rv, int):
            raise ApiError(422, [err("review_id", "review_id must be a whole number", "int_type")])
        call = lambda: store.adopt_review(kind, trial_id, oid, version, rv, p.name, actor(p, request))  # noqa
    else:
        call = lambda: store.verify_record(
            kind,
            trial_id,
            oid,
            version,
            p.name,
            actor(p, request),  # noqa
            reading,
            note,
        )
    try:
        return await run_in_threadpool(call)
    except NotFound as e:
        raise ApiError(404, str(e)) from None
    except Forbidden as e:
        raise ApiError(403, str(e)) from None
    except Conflict as c:
        raise conflict(version, c) from None


@router.post("/api/trials", status_code=201)
async def api_trial_create(request: Request, store: Store = Depends(get_store)):
    """A new trial (form-like JSON: id, label, year, design, source, location, quote, arm_id_1 ...)."""
    p = api_user(request, "curator")
    body = await json_body(request)
    if not isinstance(body, dict):
        raise ApiError(422, [dict(BODY_NOT_OBJECT)])
    doc, errors = validate_trial(body, store.trial_ids(), REGIMENS)
    if errors:
        raise ApiError(422, errors)
    try:
        rec = await run_in_threadpool(store.create_trial, doc, actor(p, request), p.name)
    except Conflict:
        raise ApiError(409, f"a trial {doc['id']!r} already exists") from None
    return JSONResponse(rec, status_code=201)


@router.post("/api/trials/{trial_id}/verify")
async def api_trial_verify(trial_id: str, request: Request, store: Store = Depends(get_store)):
    p = api_user(request, "curator")
    try:
        return await run_in_threadpool(store.verify_trial, trial_id, p.name, actor(p, request))
    except NotFound as e:
        raise ApiError(404, str(e)) from None
    except Forbidden as e:
        raise ApiError(403, str(e)) from None


# ================================================================ pages
def typed_fields(kind: str, data: dict[str, str]) -> tuple[dict, list[dict]]:
    if kind == "outcome":
        return form_to_typed(data)
    return {k: data.get(k, "") for k in AE_FIELDS}, []


# ---------------------------------------------------------------- review queue
def queue_context(store) -> dict:
    items = []
    for it in store.review_queue():
        rec = it["record"]
        if it["kind"] == "trial":
            items.append({**it, "fields": [], "label": rec["doc"].get("label", rec["id"])})
            continue
        fields = [
            f
            for f in (VIEW_FIELDS if it["kind"] == "outcome" else AE_FIELDS)
            if f not in ("source", "location", "quote")
        ]
        try:
            label = store.study_shell(rec["trial_id"]).label
        except NotFound:  # pragma: no cover - the row's trial always exists
            label = rec["trial_id"]
        items.append({**it, "fields": fields, "label": label, "path": PATH_OF[it["kind"]]})
    return {"items": items, "counts": store.verification_counts()}


@router.get("/review", response_class=HTMLResponse, include_in_schema=False)
def review_page(request: Request, store: Store = Depends(get_store)):
    ctx = queue_context(store)
    return page(
        request,
        "review.html",
        {
            **ctx,
            "summary": counts_sentence(ctx["counts"]),
            "errors": {},
            "done": request.query_params.get("done"),
            "title": "Review queue",
        },
    )


@router.post("/review/{path_kind}/{trial_id}/{rid}", response_class=HTMLResponse, include_in_schema=False)
async def review_form(request: Request, path_kind: str, trial_id: str, rid: str, store: Store = Depends(get_store)):
    kind = kind_of(path_kind)
    oid = rid_of(rid)
    data, p, bad = await form_user(request, "curator")
    if bad is not None:
        return bad
    errors: list[dict] = []
    version = version_of(data.get("version", ""), errors)
    decision = data.get("decision", "")
    reading, note = None, (data.get("note") or "").strip()[:2000] or None
    arms = [a.id for a in shell_or_404(store, trial_id).arms]
    try:
        current = store.record_of(kind, trial_id, oid)
    except NotFound as e:
        return refuse(request, 404, str(e))
    if decision == "dispute":
        typed, conv = typed_fields(kind, data)
        fields = VIEW_FIELDS if kind == "outcome" else AE_FIELDS
        merged = {f: current[f] for f in fields}
        merged.update({k: v for k, v in typed.items() if k in fields and v not in ("", None)})
        reading, verrs = validate(kind, merged, arms)
        errors += conv + verrs
    elif decision not in ("verify", "adopt", "keep"):
        errors.append(err("decision", "choose verify, dispute, adopt or keep", "value_error"))
    if errors:
        ctx = queue_context(store)
        return page(
            request,
            "review.html",
            {
                **ctx,
                "summary": counts_sentence(ctx["counts"]),
                "done": None,
                "errors": {f"{kind}-{oid}": {e["field"]: e["msg"] for e in errors}},
                "title": "Review queue",
            },
            status=400,
        )
    try:
        if decision == "adopt":
            if not p.has("reviewer"):
                return refuse(request, 403, "resolving a dispute needs role 'reviewer'")
            rv = data.get("review_id", "")
            if not (rv.isascii() and rv.isdigit() and len(rv) <= 12):
                return refuse(request, 400, "review_id: expected a whole number")
            store.adopt_review(kind, trial_id, oid, version, int(rv), p.name, actor(p, request))
        elif decision == "keep":
            store.keep_record(kind, trial_id, oid, version, p.name, actor(p, request))
        else:
            store.verify_record(kind, trial_id, oid, version, p.name, actor(p, request), reading, note)
    except Forbidden as e:
        return refuse(request, 403, str(e))
    except Conflict:
        return refuse(request, 409, "the value changed since you opened the queue: reload and check it again")
    except NotFound as e:
        return refuse(request, 404, str(e))
    return RedirectResponse("/review?" + urlencode({"done": f"{kind}-{oid}"}), status_code=303)


# ---------------------------------------------------------------- trials
def trial_form_page(request: Request, values: dict, errors: dict, status: int = 200):
    return page(
        request,
        "trial_new.html",
        {"values": values, "errors": errors, "regimens": REGIMENS, "n_arms": 6, "title": "Add a trial"},
        status=status,
    )


@router.get("/trials/new", response_class=HTMLResponse, include_in_schema=False)
def trial_new_page(request: Request):
    return trial_form_page(request, {}, {})


@router.post("/trials/new", response_class=HTMLResponse, include_in_schema=False)
async def trial_new(request: Request, store: Store = Depends(get_store)):
    data, p, bad = await form_user(request, "curator")
    if bad is not None:
        return bad
    doc, errors = validate_trial(data, store.trial_ids(), REGIMENS)
    if errors:
        return trial_form_page(request, data, {e["field"]: e["msg"] for e in errors}, status=400)
    try:
        await run_in_threadpool(store.create_trial, doc, actor(p, request), p.name)
    except Conflict:
        return trial_form_page(request, data, {"id": f"a trial {doc['id']!r} already exists"}, status=400)
    return RedirectResponse(f"/trials/{doc['id']}", status_code=303)


@router.post("/trials/{trial_id}/verify", include_in_schema=False)
async def trial_verify(request: Request, trial_id: str, store: Store = Depends(get_store)):
    data, p, bad = await form_user(request, "curator")
    if bad is not None:
        return bad
    try:
        store.verify_trial(trial_id, p.name, actor(p, request))
    except Forbidden as e:
        return refuse(request, 403, str(e))
    except NotFound as e:
        return refuse(request, 404, str(e))
    return RedirectResponse(f"/trials/{trial_id}", status_code=303)


# ---------------------------------------------------------------- outcomes and adverse events
def edit_page(
    request: Request, kind: str, trial_id: str, rec: Optional[dict], values: dict, errors: dict, status: int = 200
):
    st = shell_or_404(get_store(request), trial_id)
    return page(
        request,
        "record_edit.html",
        {
            "kind": kind,
            "what": LABEL[kind],
            "path_kind": PATH_OF[kind],
            "study": st,
            "rec": rec,
            "values": values,
            "errors": errors,
            "endpoints": sorted(ENDPOINTS),
            "action": (
                f"/trials/{trial_id}/{PATH_OF[kind]}/{rec['id']}/edit" if rec else f"/trials/{trial_id}/{PATH_OF[kind]}"
            ),
            "title": f"{'Edit' if rec else 'Add'} {LABEL[kind]} · {st.label}",
        },
        status=status,
    )


@router.get("/trials/{trial_id}/{path_kind}/{rid}/edit", response_class=HTMLResponse, include_in_schema=False)
def edit_form(request: Request, trial_id: str, path_kind: str, rid: str, store: Store = Depends(get_store)):
    kind = kind_of(path_kind)
    try:
        rec = store.record_of(kind, trial_id, rid_of(rid))
    except NotFound as e:
        raise StarletteHTTPException(404, str(e)) from None
    vals = {k: ("" if v is None else ("yes" if v is True else "no" if v is False else str(v))) for k, v in rec.items()}
    return edit_page(request, kind, trial_id, rec, vals, {})


async def save(request: Request, trial_id: str, kind: str, rid: Optional[str]):
    store = get_store(request)
    data, p, bad = await form_user(request, "curator")
    if bad is not None:
        return bad
    st = shell_or_404(store, trial_id)
    arms = [a.id for a in st.arms]
    rec = None
    errors: list[dict] = []
    version = None
    if rid is not None:
        try:
            rec = store.record_of(kind, trial_id, rid_of(rid))
        except NotFound as e:
            return refuse(request, 404, str(e))
        version = version_of(data.get("version", ""), errors)
    typed, conv = typed_fields(kind, data)
    values, verrs = validate(kind, typed, arms)
    errors += conv + verrs
    if errors:
        return edit_page(request, kind, trial_id, rec, data, {e["field"]: e["msg"] for e in errors}, status=400)
    try:
        if rec is None:
            new = await run_in_threadpool(
                store.create_record, kind, trial_id, values, actor(p, request), "form", p.name
            )
        else:
            new = await run_in_threadpool(
                store.update_record, kind, trial_id, rec["id"], version, values, actor(p, request), p.name
            )
    except Conflict as c:
        return edit_page(
            request,
            kind,
            trial_id,
            c.current,
            data,
            {
                "version": f"the record changed (now version {c.current['version']}): check the "
                "values below and save again"
            },
            status=409,
        )
    anchor = "outcome" if kind == "outcome" else "ae"
    return RedirectResponse(
        f"/trials/{trial_id}?{urlencode({'saved': new['id']})}#{anchor}-{new['id']}", status_code=303
    )


@router.post("/trials/{trial_id}/{path_kind}/{rid}/edit", response_class=HTMLResponse, include_in_schema=False)
async def edit_save(request: Request, trial_id: str, path_kind: str, rid: str):
    return await save(request, trial_id, kind_of(path_kind), rid)


@router.get("/trials/{trial_id}/adverse-events/new", response_class=HTMLResponse, include_in_schema=False)
def ae_new_page(request: Request, trial_id: str):
    return edit_page(request, "adverse_event", trial_id, None, {}, {})


@router.post("/trials/{trial_id}/adverse-events", response_class=HTMLResponse, include_in_schema=False)
async def ae_add(request: Request, trial_id: str):
    return await save(request, trial_id, "adverse_event", None)


@router.post("/trials/{trial_id}/{path_kind}/{rid}/delete", include_in_schema=False)
async def delete(request: Request, trial_id: str, path_kind: str, rid: str, store: Store = Depends(get_store)):
    kind = kind_of(path_kind)
    data, p, bad = await form_user(request, "curator")
    if bad is not None:
        return bad
    errors: list[dict] = []
    version = version_of(data.get("version", ""), errors)
    if errors:
        return refuse(request, 400, "version: " + errors[0]["msg"])
    try:
        rec = store.delete_record(kind, trial_id, rid_of(rid), version, actor(p, request), p.name)
    except NotFound as e:
        return refuse(request, 404, str(e))
    except Forbidden as e:
        return refuse(request, 403, str(e))
    except Conflict:
        return refuse(request, 409, "the record changed since you opened the page: reload and try again")
    if rec.get("delete") == "pending deletion":  # a value in the analyses: a second person must confirm
        anchor = "outcome" if kind == "outcome" else "ae"
        return RedirectResponse(
            f"/trials/{trial_id}?{urlencode({'deletion_proposed': rid})}#{anchor}-{rid}", status_code=303
        )
    return RedirectResponse(f"/trials/{trial_id}?{urlencode({'deleted': rid})}", status_code=303)


__all__ = ["router", "KINDS", "delete_answer"]

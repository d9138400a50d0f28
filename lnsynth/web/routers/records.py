"""The JSON API of a trial's records, one router per record kind: outcomes and adverse events.

``record_router(kind)`` answers, under ``/api/trials/{trial_id}/{outcomes|adverse-events}``:

* ``GET`` (list), ``POST`` (201 + ``Location``), ``GET /{id}``, ``PUT /{id}`` (``version`` in the body)
* ``DELETE /{id}`` with ``?version=N`` or a JSON body ``{"version": N}``: **200** ``{"deleted": id, "status":
  "deleted", "version", "record"}`` when the row goes, or **202** ``{"deleted": null, "status": "pending
  deletion", "version", "record", "note"}`` when the value is in the analyses (repository or verified) and a
  second person must confirm the deletion (403 when the proposer tries; 409 on a stale version; 422 when
  the version is missing or not a whole number).

Writes need a curator's bearer token; the two-person rule lives in the store.
"""

from __future__ import annotations

from typing import Any, Callable

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from ..auth import Principal
from ..curation import validate_adverse_event
from ..deps import ApiError, actor, conflict, get_store, json_body, record_id, require_curator, trial_arms
from ..store import AE_FIELDS, Conflict, Forbidden, NotFound, Store
from ..validation import FIELDS, err, update_values, validate_outcome, version_of

#: record kind -> (URL segment, label, the fields a PUT may change, validator)
KINDS_API: dict[str, tuple[str, str, tuple[str, ...], Callable]] = {
    "outcome": ("outcomes", "outcome", FIELDS, validate_outcome),
    "adverse_event": ("adverse-events", "adverse event", AE_FIELDS, validate_adverse_event),
}


def delete_answer(rec: dict):
    """200 with the deleted record, or 202 when the deletion awaits a second person."""
    state = rec.pop("delete", "deleted")
    if state == "pending deletion":
        return JSONResponse(
            {
                "deleted": None,
                "status": state,
                "version": rec["version"],
                "record": rec,
                "note": "the value stays in the analyses until a second person confirms the "
                "deletion (DELETE again with this version, or verify it)",
            },
            status_code=202,
        )
    return {"deleted": rec["id"], "status": "deleted", "version": rec["version"], "record": rec}


def record_router(kind: str) -> APIRouter:
    """The API router of one record ``kind`` (``"outcome"`` or ``"adverse_event"``)."""
    segment, label, fields, validate = KINDS_API[kind]
    base = f"/api/trials/{{trial_id}}/{segment}"
    lister = "outcomes" if kind == "outcome" else "adverse_events"  # the store's list of live records
    router = APIRouter()

    def arms_of(store: Store, trial_id: str) -> list[str]:
        return trial_arms(store, trial_id)

    @router.get(base, name=f"list_{kind}s")
    def api_list(trial_id: str, store: Store = Depends(get_store)):
        try:
            return getattr(store, lister)(trial_id)
        except NotFound:
            raise ApiError(404, f"unknown trial {trial_id[:80]!r}") from None

    @router.post(base, status_code=201, name=f"create_{kind}")
    async def api_create(
        trial_id: str, request: Request, store: Store = Depends(get_store), p: Principal = Depends(require_curator)
    ):
        body = await json_body(request)
        arms = await run_in_threadpool(arms_of, store, trial_id)
        values, errors = validate(body, arms)
        if errors:
            raise ApiError(422, errors)
        try:
            rec = await run_in_threadpool(store.create_record, kind, trial_id, values, actor(p, request), "api", p.name)
        except NotFound:
            raise ApiError(404, f"unknown trial {trial_id[:80]!r}") from None
        return JSONResponse(rec, status_code=201, headers={"Location": f"/api/trials/{trial_id}/{segment}/{rec['id']}"})

    @router.get(base + "/{rid}", name=f"get_{kind}")
    def api_get(trial_id: str, rid: str, store: Store = Depends(get_store)):
        arms_of(store, trial_id)
        try:
            return store.record_of(kind, trial_id, record_id(rid, label))
        except NotFound as e:
            raise ApiError(404, str(e)) from None

    @router.put(base + "/{rid}", name=f"update_{kind}")
    async def api_update(
        trial_id: str,
        rid: str,
        request: Request,
        store: Store = Depends(get_store),
        p: Principal = Depends(require_curator),
    ):
        body = await json_body(request)
        arms = await run_in_threadpool(arms_of, store, trial_id)
        oid = record_id(rid, label)
        try:
            current = await run_in_threadpool(store.record_of, kind, trial_id, oid)
        except NotFound as e:
            raise ApiError(404, str(e)) from None
        version, values, errors = update_values(current, body, fields, validate, arms)
        if errors:
            raise ApiError(422, errors)
        try:
            return await run_in_threadpool(
                store.update_record, kind, trial_id, oid, version, values, actor(p, request), p.name
            )
        except NotFound as e:
            raise ApiError(404, str(e)) from None
        except Conflict as c:
            raise conflict(version, c) from None

    @router.delete(base + "/{rid}", name=f"delete_{kind}")
    async def api_delete(
        trial_id: str,
        rid: str,
        request: Request,
        store: Store = Depends(get_store),
        p: Principal = Depends(require_curator),
    ):
        qv = request.query_params.get("version")
        body: Any = await json_body(request, allow_empty=True)
        errors: list[dict] = []
        if qv is not None:
            version = version_of(qv, errors)
        elif isinstance(body, dict) and "version" in body:
            version = version_of(body["version"], errors)
        else:
            version = None
            errors.append(err("version", "version is required (query parameter ?version= or JSON body)", "missing"))
        await run_in_threadpool(arms_of, store, trial_id)
        oid = record_id(rid, label)
        if errors:
            raise ApiError(422, errors)
        try:
            rec = await run_in_threadpool(store.delete_record, kind, trial_id, oid, version, actor(p, request), p.name)
        except NotFound as e:
            raise ApiError(404, str(e)) from None
        except Forbidden as e:  # the two-person rule: the proposer of a deletion cannot confirm it
            raise ApiError(403, str(e)) from None
        except Conflict as c:
            raise conflict(version, c) from None
        return delete_answer(rec)  # 200 deleted, or 202 pending deletion (a value in the analyses)

    return router


outcomes_router = record_router("outcome")
adverse_events_router = record_router("adverse_event")

__all__ = ["record_router", "outcomes_router", "adverse_events_router", "delete_answer", "KINDS_API"]

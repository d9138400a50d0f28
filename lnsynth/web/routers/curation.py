"""Curation: named users, the two-person rule's review queue, trials and adverse events (API and pages).

Every write names its user (audit ``user``); every form checks the CSRF token bound to the
server-side session and validates on the server, naming the field.  A value entered or changed
here is ``pending`` until a second curator verifies it against its quote (or disputes it with
their own reading, which sends it to the review queue); see :mod:`lnsynth.web.curation`.
"""

from __future__ import annotations

from typing import Any, Callable, Optional
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from lnsynth.evidence.schema import ENDPOINTS, REGIMENS

from ..auth import (
    BOOTSTRAP_USER,
    Auth,
    AuthError,
    Principal,
    digest,
    hash_password,
    new_api_token,
    password_problem,
    username_problem,
)
from ..curation import counts_sentence, validate_adverse_event, validate_trial
from ..store import AE_FIELDS, KINDS, ROLES, VIEW_FIELDS, Conflict, Forbidden, NotFound, Store
from ..validation import BODY_NOT_OBJECT, err, form_to_typed, update_values, validate_outcome, version_of

KIND_PATH = {"outcomes": "outcome", "adverse-events": "adverse_event"}
PATH_OF = {v: k for k, v in KIND_PATH.items()}
LABEL = {"outcome": "outcome", "adverse_event": "adverse event"}


def delete_answer(rec: dict):
    """200 with the deleted record, or 202 when the deletion awaits a second person."""
    state = rec.pop("delete", "deleted")
    if state == "pending deletion":
        return JSONResponse({"deleted": None, "status": state, "version": rec["version"], "record": rec,
                             "note": "the value stays in the analyses until a second person confirms the "
                                     "deletion (DELETE again with this version, or verify it)"}, status_code=202)
    return {"deleted": rec["id"], "status": "deleted", "version": rec["version"], "record": rec}


def make_router(store: Store, auth: Auth, page: Callable, api_error: Callable[..., Exception],
                json_body: Callable) -> APIRouter:
    """The curation router. ``page(request, template, ctx, status)`` renders HTML; ``api_error(status, detail,
    headers=None, extra=None)`` builds the app's JSON error; ``json_body(request)`` reads a bounded JSON body."""
    router = APIRouter()

    def client(request: Request) -> str:
        return request.client.host if request.client else "unknown"

    def api_user(request: Request, role: str) -> Principal:
        try:
            p = auth.bearer(request)
        except AuthError as e:
            raise api_error(e.status, e.message, headers=e.headers) from None
        if not p.has(role):
            raise api_error(403, f"user {p.name!r} has role {p.role!r}; this needs {role!r} or above")
        return p

    def actor(p: Principal, request: Request) -> str:
        kind = {"bearer": "api:bearer", "session": "form:session"}.get(p.via, "form:token")
        return f"{kind}:{p.name}@{client(request)}"

    def arms_of(trial_id: str) -> list[str]:
        try:
            return [a["id"] for a in store.study_doc(trial_id)["arms"]]
        except NotFound:
            raise api_error(404, f"unknown trial {trial_id[:80]!r}") from None

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

    def conflict(version, c: Conflict):
        return api_error(409, f"version conflict: you sent version {version}, the record is at version "
                         f"{c.current['version']}; re-read it and retry", extra={"current": c.current})

    # ================================================================ API: users and tokens
    @router.get("/api/me")
    def api_me(request: Request):
        p = api_user(request, "viewer")
        return {"name": p.name, "role": p.role}

    @router.get("/api/users")
    def api_users(request: Request):
        api_user(request, "admin")
        return store.users()

    def new_user_checked(body: Any) -> tuple[str, str, Optional[str]]:
        if not isinstance(body, dict):
            raise api_error(422, [dict(BODY_NOT_OBJECT)])
        errors = []
        name, role, pw = body.get("name"), body.get("role"), body.get("password")
        if username_problem(name):
            errors.append(err("name", username_problem(name), "value_error"))
        if role not in ROLES:
            errors.append(err("role", f"role must be one of {', '.join(ROLES)}", "value_error"))
        if pw is not None and password_problem(pw):
            errors.append(err("password", password_problem(pw), "value_error"))
        if errors:
            raise api_error(422, errors)
        return name, role, pw

    @router.post("/api/users", status_code=201)
    async def api_add_user(request: Request):
        p = api_user(request, "admin")
        name, role, pw = new_user_checked(await json_body(request))
        h = await run_in_threadpool(hash_password, pw) if pw is not None else None
        try:
            u = await run_in_threadpool(store.add_user, name, role, h, p.name)
        except Conflict:
            raise api_error(409, f"user {name!r} exists") from None
        return JSONResponse(u, status_code=201)

    @router.patch("/api/users/{name}")
    async def api_update_user(name: str, request: Request):
        p = api_user(request, "admin")
        body = await json_body(request)
        if not isinstance(body, dict):
            raise api_error(422, [dict(BODY_NOT_OBJECT)])
        errors = []
        role, pw, active = body.get("role"), body.get("password"), body.get("active")
        if role is not None and role not in ROLES:
            errors.append(err("role", f"role must be one of {', '.join(ROLES)}", "value_error"))
        if pw is not None and password_problem(pw):
            errors.append(err("password", password_problem(pw), "value_error"))
        if active is not None and not isinstance(active, bool):
            errors.append(err("active", "active must be true or false", "bool_type"))
        if errors:
            raise api_error(422, errors)
        h = await run_in_threadpool(hash_password, pw) if pw is not None else None
        try:
            return await run_in_threadpool(lambda: store.update_user(name, p.name, role=role, password_hash=h,
                                                                     active=active))
        except NotFound as e:
            raise api_error(404, str(e)) from None

    @router.post("/api/users/{name}/tokens", status_code=201)
    async def api_new_token(name: str, request: Request):
        p = api_user(request, "viewer")
        if p.name != name and not p.has("admin"):
            raise api_error(403, "only an admin can make tokens for another user")
        if name == BOOTSTRAP_USER:
            raise api_error(422, [err("name", "the bootstrap user has the server's token", "value_error")])
        body = await json_body(request, allow_empty=True)
        label = str(body.get("label", ""))[:80] if isinstance(body, dict) else ""
        tok = new_api_token()
        try:
            await run_in_threadpool(store.add_api_token, name, digest(tok), label, p.name)
        except NotFound as e:
            raise api_error(404, str(e)) from None
        return JSONResponse({"user": name, "token": tok, "label": label, "id": digest(tok)[:16],
                             "note": "shown once; only its SHA-256 is stored"}, status_code=201)

    def token_owner(request: Request, name: str) -> Principal:
        p = api_user(request, "viewer")
        if p.name != name and not p.has("admin"):
            raise api_error(403, "only an admin can see or revoke another user's tokens")
        if store.user(name) is None:
            raise api_error(404, f"unknown user {name[:40]!r}")
        return p

    @router.get("/api/users/{name}/tokens")
    def api_tokens(name: str, request: Request):
        """The user's API tokens: id, label, created_at, last_used (never the token itself)."""
        token_owner(request, name)
        return store.api_tokens_of(name)

    @router.delete("/api/users/{name}/tokens/{token_id}")
    async def api_revoke_token(name: str, token_id: str, request: Request):
        p = token_owner(request, name)
        try:
            return {"revoked": await run_in_threadpool(store.revoke_api_token, name, token_id, p.name)}
        except NotFound as e:
            raise api_error(404, str(e)) from None

    @router.post("/api/me/password")
    async def api_change_password(request: Request):
        """Body ``{"current": "...", "new": "..."}``: change your own password; your other sessions and
        API tokens end (the token of this request is kept)."""
        p = api_user(request, "viewer")
        body = await json_body(request)
        if not isinstance(body, dict):
            raise api_error(422, [dict(BODY_NOT_OBJECT)])
        cur, new = body.get("current"), body.get("new")
        errors = [] if isinstance(cur, str) and cur else [err("current", "current password is required", "missing")]
        if password_problem(new):
            errors.append(err("new", password_problem(new), "value_error"))
        if errors:
            raise api_error(422, errors)
        h = digest(request.headers.get("authorization", "").strip().partition(" ")[2].strip())  # kept
        try:
            await run_in_threadpool(auth.change_password, p, client(request), cur, new, None, h)
        except AuthError as e:
            raise api_error(e.status, e.message, headers=e.headers) from None
        except ValueError as e:
            raise api_error(422, [err("new", str(e), "value_error")]) from None
        return {"name": p.name, "password_changed": True, "other_sessions_and_tokens": "ended"}

    # ================================================================ API: two-person rule
    @router.get("/api/verification")
    def api_verification():
        c = store.verification_counts()
        return {**c, "summary": counts_sentence(c)}

    @router.get("/api/review")
    def api_review():
        return store.review_queue()

    @router.post("/api/trials/{trial_id}/{path_kind}/{rid}/verify")
    async def api_verify(trial_id: str, path_kind: str, rid: str, request: Request):
        """Body ``{"version": N}`` verifies; ``{"version": N, "reading": {...}, "note": "..."}`` gives the
        second curator's own reading (the same fields): equal -> verified, different -> disputed."""
        kind = kind_of(path_kind)
        p = api_user(request, "curator")
        body = await json_body(request)
        arms = await run_in_threadpool(arms_of, trial_id)
        oid = rid_of(rid)
        if not isinstance(body, dict):
            raise api_error(422, [dict(BODY_NOT_OBJECT)])
        errors: list[dict] = []
        version = version_of(body["version"], errors) if "version" in body else None
        if "version" not in body:
            errors.append(err("version", "version is required (the version you checked)", "missing"))
        try:
            current = await run_in_threadpool(store.record_of, kind, trial_id, oid)
        except NotFound as e:
            raise api_error(404, str(e)) from None
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
            raise api_error(422, errors)
        if body.get("decision") == "keep":  # withdraw a proposed deletion (restores the approved value)
            call = lambda: store.keep_record(kind, trial_id, oid, version, p.name, actor(p, request))  # noqa
        elif "decision" in body and body.get("decision") == "adopt":
            if not p.has("reviewer"):
                raise api_error(403, "resolving a dispute needs role 'reviewer'")
            rv = body.get("review_id")
            if isinstance(rv, bool) or not isinstance(rv, int):
                raise api_error(422, [err("review_id", "review_id must be a whole number", "int_type")])
            call = lambda: store.adopt_review(kind, trial_id, oid, version, rv, p.name, actor(p, request))  # noqa
        else:
            call = lambda: store.verify_record(kind, trial_id, oid, version, p.name, actor(p, request),  # noqa
                                               reading, note)
        try:
            return await run_in_threadpool(call)
        except NotFound as e:
            raise api_error(404, str(e)) from None
        except Forbidden as e:
            raise api_error(403, str(e)) from None
        except Conflict as c:
            raise conflict(version, c) from None

    # ================================================================ API: adverse events and trials
    @router.get("/api/trials/{trial_id}/adverse-events")
    def api_aes(trial_id: str):
        try:
            return store.adverse_events(trial_id)
        except NotFound:
            raise api_error(404, f"unknown trial {trial_id[:80]!r}") from None

    @router.post("/api/trials/{trial_id}/adverse-events", status_code=201)
    async def api_ae_create(trial_id: str, request: Request):
        p = api_user(request, "curator")
        body = await json_body(request)
        arms = await run_in_threadpool(arms_of, trial_id)
        values, errors = validate_adverse_event(body, arms)
        if errors:
            raise api_error(422, errors)
        rec = await run_in_threadpool(store.create_record, "adverse_event", trial_id, values, actor(p, request),
                                      "api", p.name)
        return JSONResponse(rec, status_code=201,
                            headers={"Location": f"/api/trials/{trial_id}/adverse-events/{rec['id']}"})

    @router.get("/api/trials/{trial_id}/adverse-events/{rid}")
    def api_ae(trial_id: str, rid: str):
        arms_of(trial_id)
        try:
            return store.adverse_event(trial_id, rid_of(rid))
        except NotFound as e:
            raise api_error(404, str(e)) from None

    @router.put("/api/trials/{trial_id}/adverse-events/{rid}")
    async def api_ae_update(trial_id: str, rid: str, request: Request):
        p = api_user(request, "curator")
        body = await json_body(request)
        arms = await run_in_threadpool(arms_of, trial_id)
        oid = rid_of(rid)
        try:
            current = await run_in_threadpool(store.adverse_event, trial_id, oid)
        except NotFound as e:
            raise api_error(404, str(e)) from None
        version, values, errors = update_values(current, body, AE_FIELDS, validate_adverse_event, arms)
        if errors:
            raise api_error(422, errors)
        try:
            return await run_in_threadpool(store.update_record, "adverse_event", trial_id, oid, version, values,
                                           actor(p, request), p.name)
        except NotFound as e:
            raise api_error(404, str(e)) from None
        except Conflict as c:
            raise conflict(version, c) from None

    @router.delete("/api/trials/{trial_id}/adverse-events/{rid}")
    async def api_ae_delete(trial_id: str, rid: str, request: Request):
        p = api_user(request, "curator")
        errors: list[dict] = []
        qv = request.query_params.get("version")
        version = version_of(qv, errors) if qv is not None else None
        if qv is None:
            errors.append(err("version", "version is required (query parameter ?version=)", "missing"))
        await run_in_threadpool(arms_of, trial_id)
        oid = rid_of(rid)
        if errors:
            raise api_error(422, errors)
        try:
            rec = await run_in_threadpool(store.delete_record, "adverse_event", trial_id, oid, version,
                                          actor(p, request), p.name)
        except NotFound as e:
            raise api_error(404, str(e)) from None
        except Forbidden as e:
            raise api_error(403, str(e)) from None
        except Conflict as c:
            raise conflict(version, c) from None
        return delete_answer(rec)

    @router.post("/api/trials", status_code=201)
    async def api_trial_create(request: Request):
        """A new trial (form-like JSON: id, label, year, design, source, location, quote, arm_id_1 ...)."""
        p = api_user(request, "curator")
        body = await json_body(request)
        if not isinstance(body, dict):
            raise api_error(422, [dict(BODY_NOT_OBJECT)])
        doc, errors = validate_trial(body, store.trial_ids(), REGIMENS)
        if errors:
            raise api_error(422, errors)
        try:
            rec = await run_in_threadpool(store.create_trial, doc, actor(p, request), p.name)
        except Conflict:
            raise api_error(409, f"a trial {doc['id']!r} already exists") from None
        return JSONResponse(rec, status_code=201)

    @router.post("/api/trials/{trial_id}/verify")
    async def api_trial_verify(trial_id: str, request: Request):
        p = api_user(request, "curator")
        try:
            return await run_in_threadpool(store.verify_trial, trial_id, p.name, actor(p, request))
        except NotFound as e:
            raise api_error(404, str(e)) from None
        except Forbidden as e:
            raise api_error(403, str(e)) from None

    # ================================================================ pages
    async def read_form(request: Request) -> Optional[dict[str, str]]:
        try:
            form = await request.form()
        except (ValueError, KeyError, UnicodeDecodeError, AssertionError):
            return None
        return {k: v for k, v in form.items() if isinstance(v, str)}

    def refuse(request: Request, status: int, message: str):
        return page(request, "error.html", {"status": status, "message": message}, status=status)

    async def form_user(request: Request, role: str):
        """(form data, user, error response): CSRF bound to the session, then the role."""
        data = await read_form(request)
        if data is None:
            return None, None, refuse(request, 400, "could not read the form")
        if not auth.csrf_ok(request, data.get("csrf_token", "")):
            return None, None, refuse(request, 403, "CSRF check failed: reload the page and submit the form again")
        p = auth.user(request)
        if p is None:
            return None, None, refuse(request, 403, "log in first")
        if not p.has(role):
            return None, None, refuse(request, 403, f"your role {p.role!r} cannot do this (needs {role!r})")
        return data, p, None

    def shell_or_404(trial_id: str):
        try:
            return store.study_shell(trial_id)
        except NotFound:
            raise StarletteHTTPException(404, f"unknown trial {trial_id[:80]!r}") from None

    def typed_fields(kind: str, data: dict[str, str]) -> tuple[dict, list[dict]]:
        if kind == "outcome":
            return form_to_typed(data)
        return {k: data.get(k, "") for k in AE_FIELDS}, []

    # ---------------------------------------------------------------- review queue
    def queue_context() -> dict:
        items = []
        for it in store.review_queue():
            rec = it["record"]
            if it["kind"] == "trial":
                items.append({**it, "fields": [], "label": rec["doc"].get("label", rec["id"])})
                continue
            fields = [f for f in (VIEW_FIELDS if it["kind"] == "outcome" else AE_FIELDS)
                      if f not in ("source", "location", "quote")]
            try:
                label = store.study_shell(rec["trial_id"]).label
            except NotFound:  # pragma: no cover - the row's trial always exists
                label = rec["trial_id"]
            items.append({**it, "fields": fields, "label": label, "path": PATH_OF[it["kind"]]})
        return {"items": items, "counts": store.verification_counts()}

    @router.get("/review", response_class=HTMLResponse, include_in_schema=False)
    def review_page(request: Request):
        ctx = queue_context()
        return page(request, "review.html", {**ctx, "summary": counts_sentence(ctx["counts"]), "errors": {},
                                             "done": request.query_params.get("done"), "title": "Review queue"})

    @router.post("/review/{path_kind}/{trial_id}/{rid}", response_class=HTMLResponse, include_in_schema=False)
    async def review_form(request: Request, path_kind: str, trial_id: str, rid: str):
        kind = kind_of(path_kind)
        oid = rid_of(rid)
        data, p, bad = await form_user(request, "curator")
        if bad is not None:
            return bad
        errors: list[dict] = []
        version = version_of(data.get("version", ""), errors)
        decision = data.get("decision", "")
        reading, note = None, (data.get("note") or "").strip()[:2000] or None
        arms = [a.id for a in shell_or_404(trial_id).arms]
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
            ctx = queue_context()
            return page(request, "review.html", {**ctx, "summary": counts_sentence(ctx["counts"]), "done": None,
                                                 "errors": {f"{kind}-{oid}": {e["field"]: e["msg"] for e in errors}},
                                                 "title": "Review queue"}, status=400)
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
        return page(request, "trial_new.html", {"values": values, "errors": errors, "regimens": REGIMENS,
                                                "n_arms": 6, "title": "Add a trial"}, status=status)

    @router.get("/trials/new", response_class=HTMLResponse, include_in_schema=False)
    def trial_new_page(request: Request):
        return trial_form_page(request, {}, {})

    @router.post("/trials/new", response_class=HTMLResponse, include_in_schema=False)
    async def trial_new(request: Request):
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
    async def trial_verify(request: Request, trial_id: str):
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
    def edit_page(request: Request, kind: str, trial_id: str, rec: Optional[dict], values: dict, errors: dict,
                  status: int = 200):
        st = shell_or_404(trial_id)
        return page(request, "record_edit.html", {
            "kind": kind, "what": LABEL[kind], "path_kind": PATH_OF[kind], "study": st, "rec": rec,
            "values": values, "errors": errors, "endpoints": sorted(ENDPOINTS),
            "action": (f"/trials/{trial_id}/{PATH_OF[kind]}/{rec['id']}/edit" if rec else
                       f"/trials/{trial_id}/{PATH_OF[kind]}"),
            "title": f"{'Edit' if rec else 'Add'} {LABEL[kind]} · {st.label}"}, status=status)

    @router.get("/trials/{trial_id}/{path_kind}/{rid}/edit", response_class=HTMLResponse, include_in_schema=False)
    def edit_form(request: Request, trial_id: str, path_kind: str, rid: str):
        kind = kind_of(path_kind)
        try:
            rec = store.record_of(kind, trial_id, rid_of(rid))
        except NotFound as e:
            raise StarletteHTTPException(404, str(e)) from None
        vals = {k: ("" if v is None else ("yes" if v is True else "no" if v is False else str(v)))
                for k, v in rec.items()}
        return edit_page(request, kind, trial_id, rec, vals, {})

    async def save(request: Request, trial_id: str, kind: str, rid: Optional[str]):
        data, p, bad = await form_user(request, "curator")
        if bad is not None:
            return bad
        st = shell_or_404(trial_id)
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
                new = await run_in_threadpool(store.create_record, kind, trial_id, values, actor(p, request), "form",
                                              p.name)
            else:
                new = await run_in_threadpool(store.update_record, kind, trial_id, rec["id"], version, values,
                                              actor(p, request), p.name)
        except Conflict as c:
            return edit_page(request, kind, trial_id, c.current, data,
                             {"version": f"the record changed (now version {c.current['version']}): check the "
                                         "values below and save again"}, status=409)
        anchor = "outcome" if kind == "outcome" else "ae"
        return RedirectResponse(f"/trials/{trial_id}?{urlencode({'saved': new['id']})}#{anchor}-{new['id']}",
                                status_code=303)

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
    async def delete(request: Request, trial_id: str, path_kind: str, rid: str):
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
            return RedirectResponse(f"/trials/{trial_id}?{urlencode({'deletion_proposed': rid})}#{anchor}-{rid}",
                                    status_code=303)
        return RedirectResponse(f"/trials/{trial_id}?{urlencode({'deleted': rid})}", status_code=303)

    # ---------------------------------------------------------------- account and users
    def account_page_ctx(request: Request, **extra) -> dict:
        p = auth.user(request)
        return {"users": store.users() if p is not None and p.has("admin") else None, "roles": ROLES,
                "tokens": store.api_tokens_of(p.name) if p is not None else [], "done": None,
                "new_token": None, "errors": {}, "values": {}, "title": "Account", **extra}

    @router.post("/account/tokens/{token_id}/revoke", response_class=HTMLResponse, include_in_schema=False)
    async def account_revoke_token(request: Request, token_id: str):
        data, p, bad = await form_user(request, "viewer")
        if bad is not None:
            return bad
        try:
            store.revoke_api_token(p.name, token_id, p.name)
        except NotFound as e:
            return refuse(request, 404, str(e))
        return page(request, "account.html", account_page_ctx(request, done=f"token {token_id} revoked"))

    @router.post("/account/password", response_class=HTMLResponse, include_in_schema=False)
    async def account_password(request: Request):
        data, p, bad = await form_user(request, "viewer")
        if bad is not None:
            return bad
        sid = request.cookies.get("lnsynth_session", "")
        try:
            await run_in_threadpool(auth.change_password, p, client(request), data.get("current", ""),
                                    data.get("new", ""), digest(sid), None)
        except AuthError as e:
            resp = page(request, "account.html", account_page_ctx(request, errors={"current": e.message}),
                        status=e.status)
            if e.headers:
                resp.headers.update(e.headers)
            return resp
        except ValueError as e:
            return page(request, "account.html", account_page_ctx(request, errors={"new": str(e)}), status=400)
        return page(request, "account.html", account_page_ctx(
            request, done="password changed; your other sessions and all your API tokens were ended"))

    @router.get("/account", response_class=HTMLResponse, include_in_schema=False)
    def account(request: Request):
        if auth.user(request) is None:
            return RedirectResponse("/login?next=/account", status_code=303)
        return page(request, "account.html", account_page_ctx(request))

    @router.post("/account/token", response_class=HTMLResponse, include_in_schema=False)
    async def account_token(request: Request):
        data, p, bad = await form_user(request, "viewer")
        if bad is not None:
            return bad
        if p.name == BOOTSTRAP_USER:
            return refuse(request, 400, "the bootstrap user has the server's token")
        tok = new_api_token()
        store.add_api_token(p.name, digest(tok), (data.get("label") or "")[:80], p.name)
        return page(request, "account.html", account_page_ctx(request, new_token=tok))

    @router.post("/account/users", response_class=HTMLResponse, include_in_schema=False)
    async def account_add_user(request: Request):
        data, p, bad = await form_user(request, "admin")
        if bad is not None:
            return bad
        errors = {}
        name, role, pw = data.get("name", "").strip(), data.get("role", ""), data.get("password", "")
        if username_problem(name):
            errors["name"] = username_problem(name)
        if role not in ROLES:
            errors["role"] = f"role must be one of {', '.join(ROLES)}"
        if password_problem(pw):
            errors["password"] = password_problem(pw)
        if not errors:
            try:
                store.add_user(name, role, await run_in_threadpool(hash_password, pw), p.name)
            except Conflict:
                errors["name"] = f"user {name!r} exists"
        if errors:
            return page(request, "account.html", account_page_ctx(request, errors=errors,
                                                                  values={"name": name, "role": role}), status=400)
        return RedirectResponse("/account", status_code=303)

    return router


__all__ = ["make_router", "KINDS", "delete_answer"]

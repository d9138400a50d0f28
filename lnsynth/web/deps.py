"""Shared request helpers of the web routers: FastAPI dependencies, the JSON error, page rendering.

The routers are module-level :class:`fastapi.APIRouter` objects; their handlers reach the app's
store, auth and templates through ``request.app.state`` (set by :func:`lnsynth.web.app.create_app`),
either as dependencies (``store: Store = Depends(get_store)``) or through the helpers below.
"""

from __future__ import annotations

import json
from typing import Any, Optional

from fastapi import Request
from fastapi.responses import HTMLResponse

from .auth import Auth, AuthError, Principal
from .store import NotFound, Store
from .validation import ascii_int, json_errors, json_int

MAX_BODY = 64 * 1024


class ApiError(Exception):
    """A JSON error answer: ``{"detail", "error", ...extra}`` with ``status`` (and ``headers``)."""

    def __init__(self, status: int, detail: Any, headers: Optional[dict] = None, extra: Optional[dict] = None):
        super().__init__(str(detail))
        self.status, self.detail, self.headers, self.extra = status, detail, headers, extra or {}


def api_error_body(e: ApiError) -> dict:
    """The JSON body of ``e``: ``detail``, ``error`` (one line) and, for field errors, ``fields``."""
    body: dict[str, Any] = {"detail": e.detail}
    if isinstance(e.detail, list):
        body["fields"] = [d.get("field") for d in e.detail]
        body["error"] = "; ".join(f"{d.get('field')}: {d.get('msg')}" for d in e.detail)
    else:
        body["error"] = str(e.detail)
    body.update(e.extra)
    return body


# ------------------------------------------------------------------ dependencies
def get_store(request: Request) -> Store:
    """The app's store (dependency)."""
    return request.app.state.store


def get_auth(request: Request) -> Auth:
    """The app's :class:`~lnsynth.web.auth.Auth` (dependency)."""
    return request.app.state.auth


def client(request: Request) -> str:
    """The peer's address, as written in the audit log."""
    return request.client.host if request.client else "unknown"


def page(request: Request, name: str, ctx: dict, status: int = 200) -> HTMLResponse:
    """Render template ``name`` with the session's user and CSRF token (no-store when logged in)."""
    auth: Auth = request.app.state.auth
    user = auth.user(request)
    ctx = {
        "request": request,
        "csrf": auth.csrf(request),
        "logged_in": user is not None,
        "user": user,
        "path": request.url.path,
        **ctx,
    }
    resp = HTMLResponse(request.app.state.env.get_template(name).render(**ctx), status_code=status)
    auth.finish(request, resp)
    if user is not None:
        resp.headers["Cache-Control"] = "no-store"
    return resp


def refuse(request: Request, status: int, message: str) -> HTMLResponse:
    """The error page with ``status``."""
    return page(request, "error.html", {"status": status, "message": message}, status=status)


# ------------------------------------------------------------------ who is asking
def api_user(request: Request, role: str = "curator") -> Principal:
    """The bearer token's user, with at least ``role`` (401/403 :class:`ApiError` otherwise)."""
    try:
        p = request.app.state.auth.bearer(request)
    except AuthError as e:
        raise ApiError(e.status, e.message, headers=e.headers) from None
    if not p.has(role):
        raise ApiError(403, f"user {p.name!r} has role {p.role!r}; this needs {role!r} or above")
    request.state.principal = p
    return p


def actor(p: Principal, request: Request) -> str:
    """The audit ``actor`` of a write: channel, user and address."""
    kind = {"bearer": "api:bearer", "session": "form:session"}.get(p.via, "form:token")
    return f"{kind}:{p.name}@{client(request)}"


def require_viewer(request: Request) -> Principal:
    """Dependency: a bearer token of any role."""
    return api_user(request, "viewer")


def require_curator(request: Request) -> Principal:
    """Dependency: a bearer token of a curator or above."""
    return api_user(request, "curator")


def require_admin(request: Request) -> Principal:
    """Dependency: a bearer token of an admin."""
    return api_user(request, "admin")


async def read_form(request: Request) -> Optional[dict[str, str]]:
    """The form's text fields, or None when the body is not a readable form."""
    try:
        form = await request.form()
    except (ValueError, KeyError, UnicodeDecodeError, AssertionError):  # malformed multipart/urlencoded body
        return None
    return {k: v for k, v in form.items() if isinstance(v, str)}


async def form_user(request: Request, role: str):
    """(form data, user, error response): CSRF bound to the session, then the role."""
    auth: Auth = request.app.state.auth
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


# ------------------------------------------------------------------ input
async def json_body(request: Request, allow_empty: bool = False) -> Any:
    """The request's JSON body, read bounded (413 over :data:`MAX_BODY`); 400/422 naming the field."""
    chunks, size = [], 0
    async for chunk in request.stream():  # bounded even without a Content-Length header
        size += len(chunk)
        if size > MAX_BODY:
            raise ApiError(413, f"request body too large (at most {MAX_BODY} bytes)")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        if allow_empty:
            return None
        raise ApiError(
            400,
            [{"loc": ["body"], "field": "body", "msg": "empty body: expected a JSON object", "type": "json_invalid"}],
        )

    def _bad_const(c: str):
        raise ValueError(f"{c} is not valid JSON")

    try:
        data = json.loads(raw, parse_constant=_bad_const, parse_int=json_int)
    except (ValueError, RecursionError) as exc:
        msg = str(exc) if not isinstance(exc, RecursionError) else "nested too deeply"
        raise ApiError(
            400, [{"loc": ["body"], "field": "body", "msg": f"malformed JSON: {msg[:200]}", "type": "json_invalid"}]
        ) from None
    bad = json_errors(data)  # lone surrogates (SQLite stores UTF-8) and 5,000-digit numbers, by field
    if bad:
        raise ApiError(422, bad)
    return data


def record_id(raw: str, what: str = "record") -> int:
    """A record id of ASCII digits ("²".isdigit() is True), else 404 naming ``what``."""
    rid = ascii_int(raw, 1, 10**12)
    if rid is None:
        raise ApiError(404, f"no {what} {raw[:40]!r}")
    return rid


def trial_arms(store: Store, trial_id: str) -> list[str]:
    """The trial's arm ids (404 for an unknown trial)."""
    try:
        return [a["id"] for a in store.study_doc(trial_id)["arms"]]
    except NotFound:
        raise ApiError(404, f"unknown trial {trial_id[:80]!r}") from None


def conflict(version: Any, c: Exception) -> ApiError:
    """The 409 of a stale ``version`` (the current record in ``current``)."""
    cur = c.current  # type: ignore[attr-defined]
    return ApiError(
        409,
        f"version conflict: you sent version {version}, the record is at version "
        f"{cur['version']}; re-read it and retry",
        extra={"current": cur},
    )

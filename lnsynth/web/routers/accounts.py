"""Accounts: login and logout, named users, API tokens and passwords (API and pages).

Admins add users and set roles; every user makes and revokes her own API tokens (shown once, stored as
SHA-256) and changes her password (her other sessions and tokens end).  Forms check the CSRF token bound
to the session (or, before login, to a pre-session cookie).
"""

from __future__ import annotations

from typing import Any, Optional

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

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
from ..deps import ApiError, api_user, client, form_user, get_auth, get_store, json_body, page, refuse
from ..store import ROLES, Conflict, NotFound, Store
from ..validation import BODY_NOT_OBJECT, err

router = APIRouter()


# ================================================================ API: users and tokens
@router.get("/api/me")
def api_me(request: Request):
    p = api_user(request, "viewer")
    return {"name": p.name, "role": p.role}


@router.get("/api/users")
def api_users(request: Request, store: Store = Depends(get_store)):
    api_user(request, "admin")
    return store.users()


def new_user_checked(body: Any) -> tuple[str, str, Optional[str]]:
    if not isinstance(body, dict):
        raise ApiError(422, [dict(BODY_NOT_OBJECT)])
    errors = []
    name, role, pw = body.get("name"), body.get("role"), body.get("password")
    if username_problem(name):
        errors.append(err("name", username_problem(name), "value_error"))
    if role not in ROLES:
        errors.append(err("role", f"role must be one of {', '.join(ROLES)}", "value_error"))
    if pw is not None and password_problem(pw):
        errors.append(err("password", password_problem(pw), "value_error"))
    if errors:
        raise ApiError(422, errors)
    return name, role, pw


@router.post("/api/users", status_code=201)
async def api_add_user(request: Request, store: Store = Depends(get_store)):
    p = api_user(request, "admin")
    name, role, pw = new_user_checked(await json_body(request))
    h = await run_in_threadpool(hash_password, pw) if pw is not None else None
    try:
        u = await run_in_threadpool(store.add_user, name, role, h, p.name)
    except Conflict:
        raise ApiError(409, f"user {name!r} exists") from None
    return JSONResponse(u, status_code=201)


@router.patch("/api/users/{name}")
async def api_update_user(name: str, request: Request, store: Store = Depends(get_store)):
    p = api_user(request, "admin")
    body = await json_body(request)
    if not isinstance(body, dict):
        raise ApiError(422, [dict(BODY_NOT_OBJECT)])
    errors = []
    role, pw, active = body.get("role"), body.get("password"), body.get("active")
    if role is not None and role not in ROLES:
        errors.append(err("role", f"role must be one of {', '.join(ROLES)}", "value_error"))
    if pw is not None and password_problem(pw):
        errors.append(err("password", password_problem(pw), "value_error"))
    if active is not None and not isinstance(active, bool):
        errors.append(err("active", "active must be true or false", "bool_type"))
    if errors:
        raise ApiError(422, errors)
    h = await run_in_threadpool(hash_password, pw) if pw is not None else None
    try:
        return await run_in_threadpool(
            lambda: store.update_user(name, p.name, role=role, password_hash=h, active=active)
        )
    except NotFound as e:
        raise ApiError(404, str(e)) from None


@router.post("/api/users/{name}/tokens", status_code=201)
async def api_new_token(name: str, request: Request, store: Store = Depends(get_store)):
    p = api_user(request, "viewer")
    if p.name != name and not p.has("admin"):
        raise ApiError(403, "only an admin can make tokens for another user")
    if name == BOOTSTRAP_USER:
        raise ApiError(422, [err("name", "the bootstrap user has the server's token", "value_error")])
    body = await json_body(request, allow_empty=True)
    label = str(body.get("label", ""))[:80] if isinstance(body, dict) else ""
    tok = new_api_token()
    try:
        await run_in_threadpool(store.add_api_token, name, digest(tok), label, p.name)
    except NotFound as e:
        raise ApiError(404, str(e)) from None
    return JSONResponse(
        {
            "user": name,
            "token": tok,
            "label": label,
            "id": digest(tok)[:16],
            "note": "shown once; only its SHA-256 is stored",
        },
        status_code=201,
    )


def token_owner(request: Request, name: str) -> Principal:
    store = get_store(request)
    p = api_user(request, "viewer")
    if p.name != name and not p.has("admin"):
        raise ApiError(403, "only an admin can see or revoke another user's tokens")
    if store.user(name) is None:
        raise ApiError(404, f"unknown user {name[:40]!r}")
    return p


@router.get("/api/users/{name}/tokens")
def api_tokens(name: str, request: Request, store: Store = Depends(get_store)):
    """The user's API tokens: id, label, created_at, last_used (never the token itself)."""
    token_owner(request, name)
    return store.api_tokens_of(name)


@router.delete("/api/users/{name}/tokens/{token_id}")
async def api_revoke_token(name: str, token_id: str, request: Request, store: Store = Depends(get_store)):
    p = token_owner(request, name)
    try:
        return {"revoked": await run_in_threadpool(store.revoke_api_token, name, token_id, p.name)}
    except NotFound as e:
        raise ApiError(404, str(e)) from None


@router.post("/api/me/password")
async def api_change_password(request: Request, auth: Auth = Depends(get_auth)):
    """Body ``{"current": "...", "new": "..."}``: change your own password; your other sessions and
    API tokens end (the token of this request is kept)."""
    p = api_user(request, "viewer")
    body = await json_body(request)
    if not isinstance(body, dict):
        raise ApiError(422, [dict(BODY_NOT_OBJECT)])
    cur, new = body.get("current"), body.get("new")
    errors = [] if isinstance(cur, str) and cur else [err("current", "current password is required", "missing")]
    if password_problem(new):
        errors.append(err("new", password_problem(new), "value_error"))
    if errors:
        raise ApiError(422, errors)
    h = digest(request.headers.get("authorization", "").strip().partition(" ")[2].strip())  # kept
    try:
        await run_in_threadpool(auth.change_password, p, client(request), cur, new, None, h)
    except AuthError as e:
        raise ApiError(e.status, e.message, headers=e.headers) from None
    except ValueError as e:
        raise ApiError(422, [err("new", str(e), "value_error")]) from None
    return {"name": p.name, "password_changed": True, "other_sessions_and_tokens": "ended"}


# ================================================================ pages: account and users
# ---------------------------------------------------------------- account and users
def account_page_ctx(request: Request, **extra) -> dict:
    store, auth = get_store(request), get_auth(request)
    p = auth.user(request)
    return {
        "users": store.users() if p is not None and p.has("admin") else None,
        "roles": ROLES,
        "tokens": store.api_tokens_of(p.name) if p is not None else [],
        "done": None,
        "new_token": None,
        "errors": {},
        "values": {},
        "title": "Account",
        **extra,
    }


@router.post("/account/tokens/{token_id}/revoke", response_class=HTMLResponse, include_in_schema=False)
async def account_revoke_token(request: Request, token_id: str, store: Store = Depends(get_store)):
    data, p, bad = await form_user(request, "viewer")
    if bad is not None:
        return bad
    try:
        store.revoke_api_token(p.name, token_id, p.name)
    except NotFound as e:
        return refuse(request, 404, str(e))
    return page(request, "account.html", account_page_ctx(request, done=f"token {token_id} revoked"))


@router.post("/account/password", response_class=HTMLResponse, include_in_schema=False)
async def account_password(request: Request, auth: Auth = Depends(get_auth)):
    data, p, bad = await form_user(request, "viewer")
    if bad is not None:
        return bad
    sid = request.cookies.get("lnsynth_session", "")
    try:
        await run_in_threadpool(
            auth.change_password, p, client(request), data.get("current", ""), data.get("new", ""), digest(sid), None
        )
    except AuthError as e:
        resp = page(request, "account.html", account_page_ctx(request, errors={"current": e.message}), status=e.status)
        if e.headers:
            resp.headers.update(e.headers)
        return resp
    except ValueError as e:
        return page(request, "account.html", account_page_ctx(request, errors={"new": str(e)}), status=400)
    return page(
        request,
        "account.html",
        account_page_ctx(request, done="password changed; your other sessions and all your API tokens were ended"),
    )


@router.get("/account", response_class=HTMLResponse, include_in_schema=False)
def account(request: Request, auth: Auth = Depends(get_auth)):
    if auth.user(request) is None:
        return RedirectResponse("/login?next=/account", status_code=303)
    return page(request, "account.html", account_page_ctx(request))


@router.post("/account/token", response_class=HTMLResponse, include_in_schema=False)
async def account_token(request: Request, store: Store = Depends(get_store)):
    data, p, bad = await form_user(request, "viewer")
    if bad is not None:
        return bad
    if p.name == BOOTSTRAP_USER:
        return refuse(request, 400, "the bootstrap user has the server's token")
    tok = new_api_token()
    store.add_api_token(p.name, digest(tok), (data.get("label") or "")[:80], p.name)
    return page(request, "account.html", account_page_ctx(request, new_token=tok))


@router.post("/account/users", response_class=HTMLResponse, include_in_schema=False)
async def account_add_user(request: Request, store: Store = Depends(get_store)):
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
        return page(
            request,
            "account.html",
            account_page_ctx(request, errors=errors, values={"name": name, "role": role}),
            status=400,
        )
    return RedirectResponse("/account", status_code=303)


# ================================================================ pages: login and logout
@router.get("/login", response_class=HTMLResponse, include_in_schema=False)
def login_page(request: Request):
    return page(
        request, "login.html", {"error": None, "next": _safe_next(request.query_params.get("next")), "title": "Log in"}
    )


@router.post("/login", response_class=HTMLResponse, include_in_schema=False)
async def login(request: Request, auth: Auth = Depends(get_auth)):
    try:
        form = await request.form()
    except (ValueError, KeyError, UnicodeDecodeError, AssertionError):  # malformed multipart/urlencoded body
        return page(request, "error.html", {"status": 400, "message": "could not read the form"}, status=400)
    nxt = _safe_next(str(form.get("next", "")))
    if not auth.csrf_ok(request, form.get("csrf_token", "")):
        return page(request, "error.html", {"status": 403, "message": "CSRF check failed"}, status=403)
    username = str(form.get("username", ""))
    try:
        who = await run_in_threadpool(
            auth.login, client(request), username, str(form.get("password", "")), str(form.get("token", ""))
        )
    except AuthError as e:
        resp = page(
            request,
            "login.html",
            {"error": e.message, "next": nxt, "username": username[:64], "title": "Log in"},
            status=e.status,
        )
        if e.status == 429 and e.headers:
            resp.headers.update(e.headers)
        return resp
    old = request.cookies.get("lnsynth_session")
    resp = RedirectResponse(nxt or "/trials", status_code=303)
    if old:  # a fresh session id at every login (no session fixation)
        auth.end_session(request, resp)
    auth.start_session(resp, who, client(request))
    return resp


@router.post("/logout", include_in_schema=False)
async def logout(request: Request, auth: Auth = Depends(get_auth)):
    try:
        form = await request.form()
    except (ValueError, KeyError, UnicodeDecodeError, AssertionError):
        return page(request, "error.html", {"status": 400, "message": "could not read the form"}, status=400)
    if not auth.csrf_ok(request, form.get("csrf_token", "")):
        return page(request, "error.html", {"status": 403, "message": "CSRF check failed"}, status=403)
    resp = RedirectResponse("/trials", status_code=303)
    # the session row is deleted: a replayed cookie is refused; everywhere=1 ends all the user's sessions
    auth.end_session(
        request, resp, everywhere=str(form.get("everywhere", "")) in ("1", "on", "true"), ip=client(request)
    )
    return resp


def _safe_next(n: Optional[str]) -> str:
    n = (n or "").strip()
    return n if n.startswith("/") and not n.startswith("//") and "\\" not in n else ""

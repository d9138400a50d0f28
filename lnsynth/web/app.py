"""FastAPI application: JSON API (the contract) and server-rendered pages.

Security model (local app, named curators; see :mod:`lnsynth.web.auth`):

* Reads are open.  Writes and the audit log need ``Authorization: Bearer <token>``
  (401 when missing or not a bearer credential, 403 when wrong or the role is too low;
  compared with :func:`hmac.compare_digest`): a per-user API token, or the server's shared
  token, which acts as the bootstrap admin.
* HTML forms carry a CSRF token bound to the server-side session (or, before login, to a
  random pre-session cookie) and need a session login (or a token typed into the form).
* Values written through the app obey the two-person rule (:mod:`lnsynth.web.curation`).
* Every input is validated in :mod:`lnsynth.web.validation`; bad input gets 400/422
  naming the field, never a 5xx.  Templates autoescape everything and responses carry
  a strict Content-Security-Policy (no inline script).
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
from pathlib import Path
from typing import Any, Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.exceptions import HTTPException as StarletteHTTPException

from lnsynth import __version__
from lnsynth.evidence.schema import REGIMENS

from .auth import Auth
from .curation import counts_sentence, status_label
from .deps import MAX_BODY, ApiError, page
from .deps import api_error_body as _api_error_body
from .routers import accounts, curation, records, screening, trials
from .routers.analysis import make_router as _analysis_router
from .routers.questions import make_router as _questions_router
from .security import CSP, GuardConfig, protect  # noqa: F401  (CSP re-exported)
from .store import Store, open_store

DISCLAIMER = "lnsynth summarises evidence and simulates hypotheses; it does not prescribe."
_log = logging.getLogger("lnsynth.web")
HERE = Path(__file__).resolve().parent
__all__ = ["create_app", "ApiError", "MAX_BODY", "DISCLAIMER", "CSP"]


def _fmt_weeks(w: Optional[float]) -> str:
    if w is None:
        return "not stated"
    w = float(w)
    wk = f"{int(w)}" if w.is_integer() else f"{w:g}"
    months = w * 12 / 52
    return f"{wk} wk (≈{months:.0f} mo)" if w >= 8 else f"{wk} wk"


def _num(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float) and v.is_integer():
        return repr(v)
    return str(v)


def create_app(db_path: Path | str, token: Optional[str] = None, *, allowed_hosts=None) -> FastAPI:
    """Build the app on the SQLite store at ``db_path`` (created and seeded if new).

    ``token`` is the bearer secret for writes; ``None`` falls back to the
    ``LNSYNTH_TOKEN`` environment variable (and without either, writes are refused).
    ``allowed_hosts``: Host names answered besides 127.0.0.1, localhost and [::1] (and
    ``$LNSYNTH_ALLOWED_HOSTS``); any other ``Host`` gets 400 (:mod:`lnsynth.web.security`).
    """
    store = open_store(db_path)  # $LNSYNTH_DATABASE_URL (PostgreSQL) when set, else the SQLite file db_path
    if token is None:
        token = os.environ.get("LNSYNTH_TOKEN") or None
    if token is not None and not token.strip():
        raise ValueError("the token is blank: it could never match (set a real LNSYNTH_TOKEN or none)")
    auth = Auth(store, token)

    # no interactive docs and no /openapi.json: the API is documented in the README, and a schema served
    # while the docs pages are off only maps the write surface for an attacker
    app = FastAPI(title="lnsynth", version=__version__, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.store = store  # the routers reach these through lnsynth.web.deps (get_store, get_auth, page)
    app.state.auth = auth
    app.state.env = _templates(store)
    app.state.trial_index = trials.TrialIndex(store)
    protect(app, GuardConfig.build(allowed_hosts, max_body=MAX_BODY))  # Host allow-list, body limits, headers
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    _error_handlers(app)

    # the order matters where paths overlap: /trials/new (curation) before /trials/{trial_id} (trials)
    app.include_router(_questions_router(store, page, lambda detail: ApiError(404, detail)))
    app.include_router(curation.router)
    app.include_router(accounts.router)
    app.include_router(screening.router)  # two-person screening (issue 22)
    app.include_router(trials.router)
    app.include_router(records.outcomes_router)  # one router per record kind, the same contract
    app.include_router(records.adverse_events_router)
    app.include_router(_analysis_router(store, page))
    return app


def _templates(store: Store) -> Environment:
    """The Jinja environment of the pages (autoescaped; globals the templates use)."""
    env = Environment(
        loader=FileSystemLoader(str(HERE / "templates")),
        autoescape=select_autoescape(default=True, default_for_string=True),
    )
    env.globals.update(
        DISCLAIMER=DISCLAIMER,
        fmt_weeks=_fmt_weeks,
        num=_num,
        REGIMENS=REGIMENS,
        status_label=status_label,
        verification=lambda: counts_sentence(store.verification_counts()),
    )
    # plain text (autoescaped on output), unlike |tojson which emits \u003c-style escapes
    env.filters["pretty"] = lambda x: json.dumps(x, ensure_ascii=False, indent=1, sort_keys=True)
    return env


def busy_errors() -> tuple[type[BaseException], ...]:
    """The errors that mean "the write lock was not obtained in time": SQLite's ``OperationalError`` (busy
    timeout) and, when psycopg is installed, PostgreSQL's lock timeout (``LockNotAvailable``) and a cancelled
    statement (``QueryCanceled``, statement timeout)."""
    errors: list[type[BaseException]] = [sqlite3.OperationalError]
    try:
        from psycopg import errors as pg_errors
    except ImportError:
        return tuple(errors)
    errors += [pg_errors.LockNotAvailable, pg_errors.QueryCanceled]
    return tuple(errors)


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api") or request.url.path == "/healthz"


def _error_handlers(app: FastAPI) -> None:
    """JSON errors on the API (``detail``, ``error``, ``fields``), the error page elsewhere; 503 when busy."""

    async def _api_error(request: Request, e: ApiError):
        return JSONResponse(_api_error_body(e), status_code=e.status, headers=e.headers)

    async def _rve(request: Request, e: RequestValidationError):
        detail = [
            {
                "loc": list(x.get("loc", ())),
                "field": str(x.get("loc", ("", ""))[-1]),
                "msg": x.get("msg"),
                "type": x.get("type"),
            }
            for x in e.errors()
        ]
        return JSONResponse(_api_error_body(ApiError(422, detail)), status_code=422)

    async def _busy(request: Request, e: Exception):
        # the write lock was not obtained within the busy timeout: nothing was written
        return JSONResponse(
            {"detail": "store busy, nothing was written; retry", "error": str(e)},
            status_code=503,
            headers={"Retry-After": "1"},
        )

    async def _bug(request: Request, e: Exception):
        # a bug, not a user error: logged with its traceback, answered as a plain 500 (no internals on the page)
        _log.exception("unhandled error on %s %s", request.method, request.url.path)
        if _is_api(request):
            return JSONResponse({"detail": "internal error (logged)", "error": "internal error"}, status_code=500)
        return page(request, "error.html", {"status": 500, "message": "internal error (logged)"}, status=500)

    async def _http(request: Request, e: StarletteHTTPException):
        if _is_api(request):
            return JSONResponse(
                {"detail": e.detail, "error": str(e.detail)},
                status_code=e.status_code,
                headers=getattr(e, "headers", None),
            )
        return page(request, "error.html", {"status": e.status_code, "message": e.detail}, status=e.status_code)

    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _rve)
    for exc in busy_errors():
        app.add_exception_handler(exc, _busy)
    app.add_exception_handler(Exception, _bug)
    app.add_exception_handler(StarletteHTTPException, _http)

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
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.exceptions import HTTPException as StarletteHTTPException

from lnsynth.evidence.load import currency
from lnsynth.evidence.schema import ENDPOINTS, REGIMEN_CLASS, REGIMENS

from . import analysis as an
from .auth import Auth, AuthError, Principal
from .curation import counts_sentence, status_label
from .store import Conflict, Forbidden, NotFound, Store
from .security import CSP, GuardConfig, protect  # noqa: F401  (CSP re-exported)
from .validation import ascii_int, ascii_number, json_errors, json_int
from .validation import FIELDS, err, form_to_typed, update_values, validate_outcome, version_of

DISCLAIMER = "lnsynth summarises evidence and simulates hypotheses; it does not prescribe."
_log = logging.getLogger("lnsynth.web")
HERE = Path(__file__).resolve().parent
MAX_BODY = 64 * 1024


class ApiError(Exception):
    def __init__(self, status: int, detail: Any, headers: Optional[dict] = None, extra: Optional[dict] = None):
        super().__init__(str(detail))
        self.status, self.detail, self.headers, self.extra = status, detail, headers, extra or {}


def _api_error_body(e: ApiError) -> dict:
    body: dict[str, Any] = {"detail": e.detail}
    if isinstance(e.detail, list):
        body["fields"] = [d.get("field") for d in e.detail]
        body["error"] = "; ".join(f"{d.get('field')}: {d.get('msg')}" for d in e.detail)
    else:
        body["error"] = str(e.detail)
    body.update(e.extra)
    return body


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
    store = Store(Path(db_path))
    if token is None:
        token = os.environ.get("LNSYNTH_TOKEN") or None
    if token is not None and not token.strip():
        raise ValueError("the token is blank: it could never match (set a real LNSYNTH_TOKEN or none)")
    auth = Auth(store, token)

    # no interactive docs and no /openapi.json: the API is documented in the README, and a schema served
    # while the docs pages are off only maps the write surface for an attacker
    app = FastAPI(title="lnsynth", version="0.1", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.store = store
    app.state.auth = auth
    protect(app, GuardConfig.build(allowed_hosts, max_body=MAX_BODY))  # Host allow-list, body limits, headers
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    env = Environment(loader=FileSystemLoader(str(HERE / "templates")),
                      autoescape=select_autoescape(default=True, default_for_string=True))
    env.globals.update(DISCLAIMER=DISCLAIMER, fmt_weeks=_fmt_weeks, num=_num, REGIMENS=REGIMENS,
                       status_label=status_label, verification=lambda: counts_sentence(store.verification_counts()))
    # plain text (autoescaped on output), unlike |tojson which emits \u003c-style escapes
    env.filters["pretty"] = lambda x: json.dumps(x, ensure_ascii=False, indent=1, sort_keys=True)

    # ------------------------------------------------------------ errors
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, e: ApiError):
        return JSONResponse(_api_error_body(e), status_code=e.status, headers=e.headers)

    @app.exception_handler(RequestValidationError)
    async def _rve(request: Request, e: RequestValidationError):
        detail = [{"loc": list(x.get("loc", ())), "field": str(x.get("loc", ("", ""))[-1]), "msg": x.get("msg"),
                   "type": x.get("type")} for x in e.errors()]
        return JSONResponse(_api_error_body(ApiError(422, detail)), status_code=422)

    @app.exception_handler(sqlite3.OperationalError)
    async def _busy(request: Request, e: sqlite3.OperationalError):
        # the write lock was not obtained within the busy timeout: nothing was written
        return JSONResponse({"detail": "store busy, nothing was written; retry", "error": str(e)},
                            status_code=503, headers={"Retry-After": "1"})

    @app.exception_handler(Exception)
    async def _bug(request: Request, e: Exception):
        # a bug, not a user error: logged with its traceback, answered as a plain 500 (no internals on the page)
        _log.exception("unhandled error on %s %s", request.method, request.url.path)
        if request.url.path.startswith("/api") or request.url.path == "/healthz":
            return JSONResponse({"detail": "internal error (logged)", "error": "internal error"}, status_code=500)
        return page(request, "error.html", {"status": 500, "message": "internal error (logged)"}, status=500)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, e: StarletteHTTPException):
        if request.url.path.startswith("/api") or request.url.path == "/healthz":
            return JSONResponse({"detail": e.detail, "error": str(e.detail)}, status_code=e.status_code,
                                headers=getattr(e, "headers", None))
        return page(request, "error.html", {"status": e.status_code, "message": e.detail}, status=e.status_code)

    # ------------------------------------------------------------ helpers
    def csrf_token(request: Request) -> str:
        return auth.csrf(request)

    def logged_in(request: Request) -> bool:
        return auth.user(request) is not None

    def page(request: Request, name: str, ctx: dict, status: int = 200) -> HTMLResponse:
        user = auth.user(request)
        ctx = {"request": request, "csrf": csrf_token(request), "logged_in": user is not None, "user": user,
               "path": request.url.path, **ctx}
        resp = HTMLResponse(env.get_template(name).render(**ctx), status_code=status)
        auth.finish(request, resp)
        if user is not None:
            resp.headers["Cache-Control"] = "no-store"
        return resp

    def client(request: Request) -> str:
        return request.client.host if request.client else "unknown"

    def principal(request: Request, role: str = "curator") -> Principal:
        """The bearer token's user, with at least ``role``."""
        try:
            p = auth.bearer(request)
        except AuthError as e:
            raise ApiError(e.status, e.message, headers=e.headers) from None
        if not p.has(role):
            raise ApiError(403, f"user {p.name!r} has role {p.role!r}; this needs {role!r} or above")
        request.state.principal = p
        return p

    def bearer(request: Request, role: str = "curator") -> str:
        p = principal(request, role)
        return f"api:bearer:{p.name}@{client(request)}"

    async def json_body(request: Request, allow_empty: bool = False) -> Any:
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
            raise ApiError(400, [{"loc": ["body"], "field": "body", "msg": "empty body: expected a JSON object",
                                  "type": "json_invalid"}])

        def _bad_const(c: str):
            raise ValueError(f"{c} is not valid JSON")

        try:
            data = json.loads(raw, parse_constant=_bad_const, parse_int=json_int)
        except (ValueError, RecursionError) as exc:
            msg = str(exc) if not isinstance(exc, RecursionError) else "nested too deeply"
            raise ApiError(400, [{"loc": ["body"], "field": "body", "msg": f"malformed JSON: {msg[:200]}",
                                  "type": "json_invalid"}]) from None
        bad = json_errors(data)  # lone surrogates (SQLite stores UTF-8) and 5,000-digit numbers, by field
        if bad:
            raise ApiError(422, bad)
        return data

    def parse_id(outcome_id: str) -> int:
        oid = ascii_int(outcome_id, 1, 10 ** 12)  # ASCII digits only ("²".isdigit() is True)
        if oid is None:
            raise ApiError(404, f"no outcome {outcome_id[:40]!r}")
        return oid

    # ------------------------------------------------------------ trial summaries (cached per write)
    cache: dict[str, Any] = {"gen": None, "frame_gen": None}
    static: dict[str, dict] = {}

    def static_summary(st) -> dict:
        d = static.get(st.id)
        if d is None:
            d = {
                "id": st.id, "label": st.label, "acronym": st.acronym, "year": st.year,
                "design": st.design.value, "population": st.population.value if st.population else None,
                "setting": st.setting.value if st.setting else None,
                "n_randomised": st.n_randomised.value if st.n_randomised else None,
                "follow_up_weeks": st.follow_up.weeks if st.follow_up else None,
                "arms": [{"id": a.id, "label": a.label, "regimen": a.regimen,
                          "regimen_class": REGIMEN_CLASS.get(a.regimen), "phase": a.phase,
                          "n": a.n.value if a.n else None} for a in st.arms],
                "regimens": [a.regimen for a in st.arms],
            }
            static[st.id] = d
        return d

    def summaries() -> list[dict]:
        """Trial objects of /api/trials: static study facts + live outcome statistics."""
        gen = store.generation()
        if cache["gen"] == gen:
            return cache["trials"]
        stats = store.outcome_stats()
        trials = []
        for st in store.study_shells():
            sd = stats.get(st.id, {"n": 0, "endpoints": set(), "timepoints": set()})
            trials.append({**static_summary(st), "endpoints": sorted(sd["endpoints"]),
                           "timepoints_weeks": sorted(sd["timepoints"]), "n_outcomes": sd["n"]})
        cache.update(gen=gen, trials=trials)
        return trials

    def filter_trials(trials: list[dict], q: dict[str, str]) -> tuple[list[dict], list[str]]:
        problems: list[str] = []
        out = trials
        drug, comp = q.get("drug") or "", q.get("comparator") or ""
        try:
            dspec = an.spec_set(drug) if drug else None
        except ValueError:
            problems.append(f"drug: unknown regimen or class {drug!r}")
            dspec = None
        try:
            cspec = an.spec_set(comp) if comp else None
        except ValueError:
            problems.append(f"comparator: unknown regimen or class {comp!r}")
            cspec = None

        def arms_match(t: dict) -> bool:
            regs = [a["regimen"] for a in t["arms"]]
            if dspec is not None and cspec is not None:
                return any(an._match(a, dspec) and an._match(b, cspec)
                           for i, a in enumerate(regs) for j, b in enumerate(regs) if i != j)
            if dspec is not None:
                return any(an._match(a, dspec) for a in regs)
            if cspec is not None:
                return any(an._match(a, cspec) for a in regs)
            return True

        out = [t for t in out if arms_match(t)]
        pop = (q.get("population") or "").strip().lower()
        if pop:
            out = [t for t in out if pop in (t["population"] or "").lower()]
        ep = (q.get("endpoint") or "").strip().lower()
        if ep:
            if ep not in ENDPOINTS:
                problems.append(f"endpoint: unknown endpoint {ep!r}")
            out = [t for t in out if ep in t["endpoints"]]
        tp = (q.get("timepoint") or "").strip()
        if tp:
            w = ascii_number(tp)
            if w is not None:
                out = [t for t in out if any(abs(w - x) < 1e-9 for x in t["timepoints_weeks"])]
            else:
                problems.append(f"timepoint: expected a number of weeks, got {tp[:40]!r}")
        return out, problems

    # ================================================================== API
    from .routers.questions import make_router as _questions_router

    app.include_router(_questions_router(store, page, lambda detail: ApiError(404, detail)))

    from .routers.curation import make_router as _curation_router

    app.include_router(_curation_router(store, auth, page, ApiError, json_body))

    @app.get("/healthz")
    def healthz():
        return {"status": "ok", "trials": len(store.trial_ids()), "generation": store.generation()}

    @app.get("/api/evidence")
    def api_evidence():
        """Evidence currency: search date, sources searched, trials included, what is new since the review."""
        return currency(store.evidence())

    def prisma_flow() -> dict:
        """PRISMA 2020 flow of the systematic search (data/search), or an error note if the files are bad."""
        from lnsynth.evidence.search import SearchDataError, load_search, prisma

        try:
            data = load_search()
            flow = prisma(data)
        except SearchDataError as exc:
            return {"error": str(exc)}
        return {**flow.contract(), "identified_total": flow.identified_total,
                "excluded_screening_reasons": flow.excluded_screening_reasons,
                "identified_other": flow.identified_other, "date_searched": str(data.protocol.date_searched),
                "trials": flow.trials}

    @app.get("/api/prisma")
    def api_prisma():
        """PRISMA 2020 flow of the systematic search: the `lnsynth prisma --format json` keys, plus reasons and trials."""
        out = prisma_flow()
        if "error" in out:
            raise ApiError(500, f"search data: {out['error']}")
        return out

    @app.get("/api/trials")
    def api_trials(request: Request):
        trials = summaries()
        q = {k: request.query_params.get(k, "") for k in ("drug", "comparator", "population", "endpoint", "timepoint")}
        out, problems = filter_trials(trials, q)
        if problems:
            raise ApiError(422, [err(p.split(":")[0], p, "value_error") | {"loc": ["query", p.split(":")[0]]}
                                 for p in problems])
        return out

    @app.get("/api/trials/{trial_id}")
    def api_trial(trial_id: str):
        trials = summaries()
        for t in trials:
            if t["id"] == trial_id:
                return t
        raise ApiError(404, f"unknown trial {trial_id[:80]!r}")

    @app.get("/api/trials/{trial_id}/outcomes")
    def api_outcomes(trial_id: str):
        try:
            return store.outcomes(trial_id)
        except NotFound:
            raise ApiError(404, f"unknown trial {trial_id[:80]!r}") from None

    def arms_of(trial_id: str) -> list[str]:
        try:
            return [a["id"] for a in store.study_doc(trial_id)["arms"]]
        except NotFound:
            raise ApiError(404, f"unknown trial {trial_id[:80]!r}") from None

    @app.post("/api/trials/{trial_id}/outcomes", status_code=201)
    async def api_create(trial_id: str, request: Request):
        actor = bearer(request)
        body = await json_body(request)
        arms = await run_in_threadpool(arms_of, trial_id)
        values, errors = validate_outcome(body, arms)
        if errors:
            raise ApiError(422, errors)
        try:
            rec = await run_in_threadpool(store.create_outcome, trial_id, values, actor, "api",
                                          request.state.principal.name)
        except NotFound:
            raise ApiError(404, f"unknown trial {trial_id[:80]!r}") from None
        return JSONResponse(rec, status_code=201, headers={"Location": f"/api/trials/{trial_id}/outcomes/{rec['id']}"})

    @app.get("/api/trials/{trial_id}/outcomes/{outcome_id}")
    def api_outcome(trial_id: str, outcome_id: str):
        arms_of(trial_id)
        try:
            return store.outcome(trial_id, parse_id(outcome_id))
        except NotFound as e:
            raise ApiError(404, str(e)) from None

    @app.put("/api/trials/{trial_id}/outcomes/{outcome_id}")
    async def api_update(trial_id: str, outcome_id: str, request: Request):
        actor = bearer(request)
        body = await json_body(request)
        arms = await run_in_threadpool(arms_of, trial_id)
        oid = parse_id(outcome_id)
        try:
            current = await run_in_threadpool(store.outcome, trial_id, oid)
        except NotFound as e:
            raise ApiError(404, str(e)) from None
        version, values, errors = update_values(current, body, FIELDS, validate_outcome, arms)
        if errors:
            raise ApiError(422, errors)
        try:
            return await run_in_threadpool(store.update_outcome, trial_id, oid, version, values, actor,
                                           request.state.principal.name)
        except NotFound as e:
            raise ApiError(404, str(e)) from None
        except Conflict as c:
            raise ApiError(409, f"version conflict: you sent version {version}, the record is at version "
                           f"{c.current['version']}; re-read it and retry", extra={"current": c.current}) from None

    @app.delete("/api/trials/{trial_id}/outcomes/{outcome_id}")
    async def api_delete(trial_id: str, outcome_id: str, request: Request):
        actor = bearer(request)
        qv = request.query_params.get("version")
        body = await json_body(request, allow_empty=True)
        errors: list[dict] = []
        if qv is not None:
            version = version_of(qv, errors)
        elif isinstance(body, dict) and "version" in body:
            version = version_of(body["version"], errors)
        else:
            version = None
            errors.append(err("version", "version is required (query parameter ?version= or JSON body)", "missing"))
        await run_in_threadpool(arms_of, trial_id)
        oid = parse_id(outcome_id)
        if errors:
            raise ApiError(422, errors)
        try:
            before = await run_in_threadpool(store.delete_outcome, trial_id, oid, version, actor,
                                             request.state.principal.name)
        except NotFound as e:
            raise ApiError(404, str(e)) from None
        except Forbidden as e:  # the two-person rule: the proposer of a deletion cannot confirm it
            raise ApiError(403, str(e)) from None
        except Conflict as c:
            raise ApiError(409, f"version conflict: you sent version {version}, the record is at version "
                           f"{c.current['version']}; re-read it and retry", extra={"current": c.current}) from None
        from .routers.curation import delete_answer

        return delete_answer(before)  # 200 deleted, or 202 pending deletion (a verified value needs a second person)

    @app.get("/api/audit")
    def api_audit(request: Request):
        bearer(request, "viewer")
        lim = request.query_params.get("limit")
        n_lim = ascii_int(lim, 1, 10 ** 6) if lim is not None else None
        if lim is not None and n_lim is None:
            raise ApiError(422, [{"loc": ["query", "limit"], "field": "limit",
                                  "msg": "limit must be a whole number from 1 to 1000000 (digits 0-9)",
                                  "type": "int_parsing"}])
        return store.audit(n_lim)

    # ================================================================ pages
    @app.get("/", include_in_schema=False)
    def root():
        return RedirectResponse("/trials", status_code=303)

    @app.get("/trials", response_class=HTMLResponse, include_in_schema=False)
    def trials_page(request: Request):
        trials = summaries()
        q = {k: request.query_params.get(k, "") for k in ("drug", "comparator", "population", "endpoint", "timepoint")}
        shown, problems = filter_trials(trials, q)
        regs = sorted({a["regimen"] for t in trials for a in t["arms"]})
        classes = sorted({REGIMEN_CLASS.get(r, r) for r in regs})
        choices = ["CNI-any"] + classes + [r for r in regs if r not in classes]
        eps = sorted({e for t in trials for e in t["endpoints"]})
        tps = sorted({w for t in trials for w in t["timepoints_weeks"]})
        return page(request, "trials.html", {"trials": shown, "total": len(trials), "q": q, "problems": problems,
                                             "choices": choices, "endpoints": eps, "timepoints": tps,
                                             "currency": currency(store.evidence()), "title": "Trials",
                                             "prisma": prisma_flow()})

    def trial_context(trial_id: str) -> dict:
        try:
            study = store.study_shell(trial_id)
        except NotFound:
            raise StarletteHTTPException(404, f"unknown trial {trial_id[:80]!r}") from None
        t = static_summary(study)
        study_numbers = [r for r in _provenance_rows(study, skip=("outcomes",))]
        outcomes = []
        arm_by_id = {a.id: a for a in study.arms}
        for rec, model in store.outcome_models(trial_id):
            arm = arm_by_id.get(rec["arm"])
            prov = list(_provenance_rows(model, prefix=""))
            if model.n is None and arm is not None and arm.n is not None:
                prov.append({"field": "n (arm size)", "value": arm.n.value, "source": arm.n.provenance.source,
                             "location": arm.n.provenance.location, "quote": arm.n.provenance.quote,
                             "derived": arm.n.provenance.derived, "rule": arm.n.provenance.rule})
            outcomes.append({"rec": rec, "model": model, "arm": arm, "prov": prov})
        return {"t": t, "study": study, "study_numbers": study_numbers, "outcomes": outcomes,
                "endpoints": sorted(ENDPOINTS), "aes": store.adverse_events(trial_id),
                "trial_status": store.trial_status(trial_id)}

    @app.get("/trials/{trial_id}", response_class=HTMLResponse, include_in_schema=False)
    def trial_page(request: Request, trial_id: str):
        ctx = trial_context(trial_id)
        added = request.query_params.get("added")
        return page(request, "trial.html", {**ctx, "errors": {}, "values": {}, "added": added,
                                            "title": ctx["t"]["label"]})

    @app.post("/trials/{trial_id}/outcomes", response_class=HTMLResponse, include_in_schema=False)
    async def trial_form(request: Request, trial_id: str):
        try:
            form = await request.form()
            data = {k: v for k, v in form.items() if isinstance(v, str)}
        except (ValueError, KeyError, UnicodeDecodeError, AssertionError):  # malformed multipart/urlencoded body
            return page(request, "error.html", {"status": 400, "message": "could not read the form"}, status=400)
        if not auth.csrf_ok(request, data.get("csrf_token", "")):
            return page(request, "error.html", {"status": 403, "message": "CSRF check failed: reload the page and "
                                                "submit the form again"}, status=403)
        ctx = await run_in_threadpool(trial_context, trial_id)
        errors: dict[str, str] = {}
        who = auth.user(request) or (auth.from_token(data["token"].strip(), "form token")
                                     if data.get("token", "").strip() else None)
        if who is not None and who.has("curator"):
            actor = f"form:{'session' if who.via == 'session' else 'token'}:{who.name}@{client(request)}"
        else:
            errors["token"] = ("token is required (or log in)" if who is None and not data.get("token") else
                               "invalid token" if who is None else
                               f"user {who.name!r} has role {who.role!r}: adding values needs 'curator'")
            actor = ""
        typed, conv = form_to_typed(data)
        arms = [a["id"] for a in ctx["t"]["arms"]]
        values, verrs = validate_outcome(typed, arms)
        for e in conv + verrs:
            errors.setdefault(e["field"], e["msg"])
        if errors:
            vals = {k: data.get(k, "") for k in FIELDS}
            return page(request, "trial.html", {**ctx, "errors": errors, "values": vals, "added": None,
                                                "title": ctx["t"]["label"]}, status=400 if "token" not in errors
                        or len(errors) > 1 else 403)
        rec = await run_in_threadpool(store.create_outcome, trial_id, values, actor, "form", who.name)
        return RedirectResponse(f"/trials/{trial_id}?{urlencode({'added': rec['id']})}#outcome-{rec['id']}",
                                status_code=303)

    from .routers.analysis import make_router as _analysis_router

    app.include_router(_analysis_router(store, page))

    @app.get("/audit", response_class=HTMLResponse, include_in_schema=False)
    def audit_page(request: Request):
        rows = store.audit(200) if logged_in(request) else None
        return page(request, "audit.html", {"rows": rows, "title": "Audit log"})

    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    def login_page(request: Request):
        return page(request, "login.html", {"error": None, "next": _safe_next(request.query_params.get("next")),
                                            "title": "Log in"})

    @app.post("/login", response_class=HTMLResponse, include_in_schema=False)
    async def login(request: Request):
        try:
            form = await request.form()
        except (ValueError, KeyError, UnicodeDecodeError, AssertionError):  # malformed multipart/urlencoded body
            return page(request, "error.html", {"status": 400, "message": "could not read the form"}, status=400)
        nxt = _safe_next(str(form.get("next", "")))
        if not auth.csrf_ok(request, form.get("csrf_token", "")):
            return page(request, "error.html", {"status": 403, "message": "CSRF check failed"}, status=403)
        username = str(form.get("username", ""))
        try:
            who = await run_in_threadpool(auth.login, client(request), username, str(form.get("password", "")),
                                          str(form.get("token", "")))
        except AuthError as e:
            resp = page(request, "login.html", {"error": e.message, "next": nxt, "username": username[:64],
                                                "title": "Log in"}, status=e.status)
            if e.status == 429 and e.headers:
                resp.headers.update(e.headers)
            return resp
        old = request.cookies.get("lnsynth_session")
        resp = RedirectResponse(nxt or "/trials", status_code=303)
        if old:  # a fresh session id at every login (no session fixation)
            auth.end_session(request, resp)
        auth.start_session(resp, who, client(request))
        return resp

    @app.post("/logout", include_in_schema=False)
    async def logout(request: Request):
        try:
            form = await request.form()
        except (ValueError, KeyError, UnicodeDecodeError, AssertionError):
            return page(request, "error.html", {"status": 400, "message": "could not read the form"}, status=400)
        if not auth.csrf_ok(request, form.get("csrf_token", "")):
            return page(request, "error.html", {"status": 403, "message": "CSRF check failed"}, status=403)
        resp = RedirectResponse("/trials", status_code=303)
        # the session row is deleted: a replayed cookie is refused; everywhere=1 ends all the user's sessions
        auth.end_session(request, resp, everywhere=str(form.get("everywhere", "")) in ("1", "on", "true"),
                         ip=client(request))
        return resp

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon():
        return Response(status_code=204)

    return app


def _safe_next(n: Optional[str]) -> str:
    n = (n or "").strip()
    return n if n.startswith("/") and not n.startswith("//") and "\\" not in n else ""


def _provenance_rows(obj: Any, prefix: str = "", skip: tuple = ()) -> list[dict]:
    """(field, value, provenance) for every sourced value inside a schema model."""
    rows: list[dict] = []

    def walk(o: Any, path: str) -> None:
        prov = getattr(o, "provenance", None)
        if prov is not None and hasattr(o, "value"):
            rows.append({"field": path, "value": o.value, "unit": getattr(o, "unit", None), "source": prov.source,
                         "location": prov.location, "quote": prov.quote, "derived": prov.derived, "rule": prov.rule,
                         "candidates": getattr(o, "candidates", None)})
            return
        if isinstance(o, (list, tuple)):
            for i, x in enumerate(o):
                walk(x, f"{path}[{getattr(x, 'id', None) or i}]")
            return
        fields = getattr(type(o), "model_fields", None)
        if isinstance(fields, dict):
            for name in fields:
                if name in skip or name == "tables":
                    continue
                v = getattr(o, name)
                if v is not None:
                    walk(v, f"{path}.{name}" if path else name)

    walk(obj, prefix)
    return rows

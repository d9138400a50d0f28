"""Trials: the trial list and pages, the add-an-outcome form of a trial page, health, evidence currency,
PRISMA and the audit log (API and pages).

The trial objects of ``/api/trials`` join static study facts (kept per trial) with live outcome statistics,
rebuilt once per store generation (:class:`TrialIndex`, one per app in ``app.state.trial_index``).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from lnsynth.evidence.load import currency
from lnsynth.evidence.schema import ENDPOINTS, REGIMEN_CLASS

from .. import analysis as an
from ..auth import Auth
from ..deps import ApiError, api_user, client, get_auth, get_store, page
from ..store import NotFound, Store
from ..validation import FIELDS, ascii_int, ascii_number, err, form_to_typed, validate_outcome


class TrialIndex:
    """The trial summaries of ``/api/trials`` and the trial pages, cached per store generation."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._static: dict[str, dict] = {}
        self._gen: Any = None
        self._trials: list[dict] = []

    def static_summary(self, st) -> dict:
        d = self._static.get(st.id)
        if d is None:
            d = {
                "id": st.id,
                "label": st.label,
                "acronym": st.acronym,
                "year": st.year,
                "design": st.design.value,
                "population": st.population.value if st.population else None,
                "setting": st.setting.value if st.setting else None,
                "n_randomised": st.n_randomised.value if st.n_randomised else None,
                "follow_up_weeks": st.follow_up.weeks if st.follow_up else None,
                "arms": [
                    {
                        "id": a.id,
                        "label": a.label,
                        "regimen": a.regimen,
                        "regimen_class": REGIMEN_CLASS.get(a.regimen),
                        "phase": a.phase,
                        "n": a.n.value if a.n else None,
                    }
                    for a in st.arms
                ],
                "regimens": [a.regimen for a in st.arms],
            }
            self._static[st.id] = d
        return d

    def summaries(self) -> list[dict]:
        """Trial objects of /api/trials: static study facts + live outcome statistics."""
        gen = self.store.generation()
        if self._gen == gen:
            return self._trials
        stats = self.store.outcome_stats()
        trials = []
        for st in self.store.study_shells():
            sd = stats.get(st.id, {"n": 0, "endpoints": set(), "timepoints": set()})
            trials.append(
                {
                    **self.static_summary(st),
                    "endpoints": sorted(sd["endpoints"]),
                    "timepoints_weeks": sorted(sd["timepoints"]),
                    "n_outcomes": sd["n"],
                }
            )
        self._gen, self._trials = gen, trials
        return trials


def get_index(request: Request) -> TrialIndex:
    """The app's :class:`TrialIndex` (dependency)."""
    return request.app.state.trial_index


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
            return any(
                an._match(a, dspec) and an._match(b, cspec)
                for i, a in enumerate(regs)
                for j, b in enumerate(regs)
                if i != j
            )
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


def prisma_flow() -> dict:
    """PRISMA 2020 flow of the systematic search (data/search), or an error note if the files are bad."""
    from lnsynth.evidence.search import SearchDataError, load_search, prisma

    try:
        data = load_search()
        flow = prisma(data)
    except SearchDataError as exc:
        return {"error": str(exc)}
    return {
        **flow.contract(),
        "identified_total": flow.identified_total,
        "excluded_screening_reasons": flow.excluded_screening_reasons,
        "identified_other": flow.identified_other,
        "date_searched": str(data.protocol.date_searched),
        "trials": flow.trials,
    }


router = APIRouter()


# ================================================================ API
@router.get("/healthz")
def healthz(store: Store = Depends(get_store)):
    return {"status": "ok", "trials": len(store.trial_ids()), "generation": store.generation()}


@router.get("/api/evidence")
def api_evidence(store: Store = Depends(get_store)):
    """Evidence currency: search date, sources searched, trials included, what is new since the review."""
    return currency(store.evidence())


@router.get("/api/prisma")
def api_prisma():
    """PRISMA 2020 flow of the systematic search: the `lnsynth prisma --format json` keys, plus reasons and trials."""
    out = prisma_flow()
    if "error" in out:
        raise ApiError(500, f"search data: {out['error']}")
    return out


@router.get("/api/trials")
def api_trials(request: Request, index: TrialIndex = Depends(get_index)):
    trials = index.summaries()
    q = {k: request.query_params.get(k, "") for k in ("drug", "comparator", "population", "endpoint", "timepoint")}
    out, problems = filter_trials(trials, q)
    if problems:
        raise ApiError(
            422, [err(p.split(":")[0], p, "value_error") | {"loc": ["query", p.split(":")[0]]} for p in problems]
        )
    return out


@router.get("/api/trials/{trial_id}")
def api_trial(trial_id: str, index: TrialIndex = Depends(get_index)):
    trials = index.summaries()
    for t in trials:
        if t["id"] == trial_id:
            return t
    raise ApiError(404, f"unknown trial {trial_id[:80]!r}")


@router.get("/api/audit")
def api_audit(request: Request, store: Store = Depends(get_store)):
    api_user(request, "viewer")
    lim = request.query_params.get("limit")
    n_lim = ascii_int(lim, 1, 10**6) if lim is not None else None
    if lim is not None and n_lim is None:
        raise ApiError(
            422,
            [
                {
                    "loc": ["query", "limit"],
                    "field": "limit",
                    "msg": "limit must be a whole number from 1 to 1000000 (digits 0-9)",
                    "type": "int_parsing",
                }
            ],
        )
    return store.audit(n_lim)


# ================================================================ pages
@router.get("/", include_in_schema=False)
def root():
    return RedirectResponse("/trials", status_code=303)


@router.get("/trials", response_class=HTMLResponse, include_in_schema=False)
def trials_page(request: Request, store: Store = Depends(get_store), index: TrialIndex = Depends(get_index)):
    trials = index.summaries()
    q = {k: request.query_params.get(k, "") for k in ("drug", "comparator", "population", "endpoint", "timepoint")}
    shown, problems = filter_trials(trials, q)
    regs = sorted({a["regimen"] for t in trials for a in t["arms"]})
    classes = sorted({REGIMEN_CLASS.get(r, r) for r in regs})
    choices = ["CNI-any"] + classes + [r for r in regs if r not in classes]
    eps = sorted({e for t in trials for e in t["endpoints"]})
    tps = sorted({w for t in trials for w in t["timepoints_weeks"]})
    return page(
        request,
        "trials.html",
        {
            "trials": shown,
            "total": len(trials),
            "q": q,
            "problems": problems,
            "choices": choices,
            "endpoints": eps,
            "timepoints": tps,
            "currency": currency(store.evidence()),
            "title": "Trials",
            "prisma": prisma_flow(),
        },
    )


def trial_context(store: Store, index: "TrialIndex", trial_id: str) -> dict:
    try:
        study = store.study_shell(trial_id)
    except NotFound:
        raise StarletteHTTPException(404, f"unknown trial {trial_id[:80]!r}") from None
    t = index.static_summary(study)
    study_numbers = [r for r in _provenance_rows(study, skip=("outcomes",))]
    outcomes = []
    arm_by_id = {a.id: a for a in study.arms}
    for rec, model in store.outcome_models(trial_id):
        arm = arm_by_id.get(rec["arm"])
        prov = list(_provenance_rows(model, prefix=""))
        if model.n is None and arm is not None and arm.n is not None:
            prov.append(
                {
                    "field": "n (arm size)",
                    "value": arm.n.value,
                    "source": arm.n.provenance.source,
                    "location": arm.n.provenance.location,
                    "quote": arm.n.provenance.quote,
                    "derived": arm.n.provenance.derived,
                    "rule": arm.n.provenance.rule,
                }
            )
        outcomes.append({"rec": rec, "model": model, "arm": arm, "prov": prov})
    return {
        "t": t,
        "study": study,
        "study_numbers": study_numbers,
        "outcomes": outcomes,
        "endpoints": sorted(ENDPOINTS),
        "aes": store.adverse_events(trial_id),
        "trial_status": store.trial_status(trial_id),
    }


@router.get("/trials/{trial_id}", response_class=HTMLResponse, include_in_schema=False)
def trial_page(
    request: Request, trial_id: str, store: Store = Depends(get_store), index: TrialIndex = Depends(get_index)
):
    ctx = trial_context(store, index, trial_id)
    added = request.query_params.get("added")
    return page(request, "trial.html", {**ctx, "errors": {}, "values": {}, "added": added, "title": ctx["t"]["label"]})


@router.post("/trials/{trial_id}/outcomes", response_class=HTMLResponse, include_in_schema=False)
async def trial_form(
    request: Request,
    trial_id: str,
    store: Store = Depends(get_store),
    auth: Auth = Depends(get_auth),
    index: TrialIndex = Depends(get_index),
):
    try:
        form = await request.form()
        data = {k: v for k, v in form.items() if isinstance(v, str)}
    except (ValueError, KeyError, UnicodeDecodeError, AssertionError):  # malformed multipart/urlencoded body
        return page(request, "error.html", {"status": 400, "message": "could not read the form"}, status=400)
    if not auth.csrf_ok(request, data.get("csrf_token", "")):
        return page(
            request,
            "error.html",
            {"status": 403, "message": "CSRF check failed: reload the page and submit the form again"},
            status=403,
        )
    ctx = await run_in_threadpool(trial_context, store, index, trial_id)
    errors: dict[str, str] = {}
    who = auth.user(request) or (
        auth.from_token(data["token"].strip(), "form token") if data.get("token", "").strip() else None
    )
    if who is not None and who.has("curator"):
        actor = f"form:{'session' if who.via == 'session' else 'token'}:{who.name}@{client(request)}"
    else:
        errors["token"] = (
            "token is required (or log in)"
            if who is None and not data.get("token")
            else "invalid token"
            if who is None
            else f"user {who.name!r} has role {who.role!r}: adding values needs 'curator'"
        )
        actor = ""
    typed, conv = form_to_typed(data)
    arms = [a["id"] for a in ctx["t"]["arms"]]
    values, verrs = validate_outcome(typed, arms)
    for e in conv + verrs:
        errors.setdefault(e["field"], e["msg"])
    if errors:
        vals = {k: data.get(k, "") for k in FIELDS}
        return page(
            request,
            "trial.html",
            {**ctx, "errors": errors, "values": vals, "added": None, "title": ctx["t"]["label"]},
            status=400 if "token" not in errors or len(errors) > 1 else 403,
        )
    rec = await run_in_threadpool(store.create_outcome, trial_id, values, actor, "form", who.name)
    return RedirectResponse(
        f"/trials/{trial_id}?{urlencode({'added': rec['id']})}#outcome-{rec['id']}", status_code=303
    )


@router.get("/audit", response_class=HTMLResponse, include_in_schema=False)
def audit_page(request: Request, store: Store = Depends(get_store), auth: Auth = Depends(get_auth)):
    rows = store.audit(200) if auth.user(request) is not None else None
    return page(request, "audit.html", {"rows": rows, "title": "Audit log"})


@router.get("/favicon.ico", include_in_schema=False)
def favicon():
    return Response(status_code=204)


def _provenance_rows(obj: Any, prefix: str = "", skip: tuple = ()) -> list[dict]:
    """(field, value, provenance) for every sourced value inside a schema model."""
    rows: list[dict] = []

    def walk(o: Any, path: str) -> None:
        prov = getattr(o, "provenance", None)
        if prov is not None and hasattr(o, "value"):
            rows.append(
                {
                    "field": path,
                    "value": o.value,
                    "unit": getattr(o, "unit", None),
                    "source": prov.source,
                    "location": prov.location,
                    "quote": prov.quote,
                    "derived": prov.derived,
                    "rule": prov.rule,
                    "candidates": getattr(o, "candidates", None),
                }
            )
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

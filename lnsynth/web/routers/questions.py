"""Clinical questions: ``GET /api/questions``, ``GET /api/questions/{id}`` and their pages.

Every number comes from :func:`lnsynth.analyses.answer.answer` applied to the store's evidence
(the same function ``lnsynth answer`` and the report call), so the API returns exactly the
objects of ``lnsynth answer ID --format json``.
"""

from __future__ import annotations

from typing import Callable

from typing import Optional

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from markupsafe import Markup
from starlette.exceptions import HTTPException

from lnsynth.analyses.answer import answer
from lnsynth.analyses.baselines import BaselineRiskError, add_user_baseline, check_user_risk
from lnsynth.analyses.questions import QuestionError, get_question, load_questions
from lnsynth.analyses.updates import latest_notices, notices_for
from lnsynth.evidence.load import currency
from lnsynth.report.sof import answer_html
from lnsynth.report.thresholds import cached_thresholds, notice_html, thresholds_html

from ..curation import superseded
from ..validation import ascii_number

BASELINE_HELP = "baseline_risk must be a plain decimal number strictly between 0 and 1 (e.g. 0.35)"


def user_baseline(request: Request) -> tuple[Optional[float], Optional[str]]:
    """``?baseline_risk=R`` as (risk, None), (None, None) when absent or empty, (None, error) when invalid."""
    raw = request.query_params.get("baseline_risk")
    if raw is None or not raw.strip():
        return None, None
    num = ascii_number(raw[:64]) if len(raw) <= 64 else None
    if num is None:
        return None, f"{BASELINE_HELP}; got {raw[:40]!r}"
    try:
        return check_user_risk(num), None
    except BaselineRiskError:
        return None, f"{BASELINE_HELP}; got {raw[:40]!r}"


def make_router(store, page: Callable, not_found: Callable[[str], Exception]) -> APIRouter:
    """The questions router on ``store``; ``page(request, template, ctx)`` renders HTML and
    ``not_found(detail)`` builds the app's 404 error."""
    router = APIRouter()
    threshold_cache: dict = {}  # {store generation: {question: new_trial_thresholds}}: it refits, so once per evidence

    def _question(qid: str):
        try:
            return get_question(qid)
        except QuestionError:
            raise not_found(f"unknown question {qid[:80]!r}; see /api/questions") from None

    @router.get("/api/questions")
    def api_questions():
        return [q.summary_dict() for q in load_questions()]

    def _evidence():
        return superseded(store.evidence())[0]  # the store's curation rule, as on every analysis page

    @router.get("/api/questions/{qid}")
    def api_question(qid: str, request: Request):
        _question(qid)
        risk, bad = user_baseline(request)
        if bad:
            raise HTTPException(422, bad)
        d = answer(_evidence(), qid).to_dict()
        return add_user_baseline(d, risk) if risk is not None else d

    @router.get("/questions", response_class=HTMLResponse, include_in_schema=False)
    def questions_page(request: Request):
        ev = store.evidence()
        return page(request, "questions.html", {"questions": [q.summary_dict() for q in load_questions()],
                                                "currency": currency(ev), "title": "Clinical questions"})

    @router.get("/questions/{qid}", response_class=HTMLResponse, include_in_schema=False)
    def question_page(request: Request, qid: str):
        q = _question(qid)
        ev = _evidence()
        risk, bad = user_baseline(request)
        d = answer(ev, qid).to_dict()
        if risk is not None:
            d = add_user_baseline(d, risk)
        raw = request.query_params.get("baseline_risk", "")
        gen = store.generation()
        if gen not in threshold_cache:
            threshold_cache.clear()  # the evidence changed: every question's threshold analysis is stale
        th = cached_thresholds(ev, qid, threshold_cache.setdefault(gen, {}))
        notice = notice_html(notices_for(latest_notices(store), qid), qid)
        return page(request, "question.html", {"q": q.summary_dict(), "sof": Markup(answer_html(d)),
                                               "thresholds": Markup(thresholds_html(th, q, d)), "notice": Markup(notice),
                                               "currency": currency(ev), "title": q.title,
                                               "baseline_risk": risk, "baseline_raw": raw[:40], "baseline_error": bad},
                    status=422 if bad else 200)

    return router

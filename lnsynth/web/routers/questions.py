"""Clinical questions: ``GET /api/questions``, ``GET /api/questions/{id}`` and their pages.

Every number comes from :func:`lnsynth.analyses.answer.answer` applied to the store's evidence
(the same function ``lnsynth answer`` and the report call), so the API returns exactly the
objects of ``lnsynth answer ID --format json``.
"""

from __future__ import annotations

from typing import Callable

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from markupsafe import Markup

from lnsynth.analyses.answer import answer
from lnsynth.analyses.questions import QuestionError, get_question, load_questions
from lnsynth.evidence.load import currency
from lnsynth.report.sof import answer_html

from ..curation import superseded


def make_router(store, page: Callable, not_found: Callable[[str], Exception]) -> APIRouter:
    """The questions router on ``store``; ``page(request, template, ctx)`` renders HTML and
    ``not_found(detail)`` builds the app's 404 error."""
    router = APIRouter()

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
    def api_question(qid: str):
        _question(qid)
        return answer(_evidence(), qid).to_dict()

    @router.get("/questions", response_class=HTMLResponse, include_in_schema=False)
    def questions_page(request: Request):
        ev = store.evidence()
        return page(request, "questions.html", {"questions": [q.summary_dict() for q in load_questions()],
                                                "currency": currency(ev), "title": "Clinical questions"})

    @router.get("/questions/{qid}", response_class=HTMLResponse, include_in_schema=False)
    def question_page(request: Request, qid: str):
        q = _question(qid)
        ev = _evidence()
        a = answer(ev, qid)
        return page(request, "question.html", {"q": q.summary_dict(), "sof": Markup(answer_html(a)),
                                               "currency": currency(ev), "title": q.title})

    return router

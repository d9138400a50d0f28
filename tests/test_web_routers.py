"""The web app is split into routers that call the analysis layer; a bug is a logged 500, never page text."""

from __future__ import annotations

import logging

import pytest

pytest.importorskip("fastapi")
from fastapi.routing import APIRoute  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from lnsynth.web import analysis as an  # noqa: E402
from lnsynth.web import create_app  # noqa: E402


@pytest.fixture()
def client(tmp_path):
    return TestClient(create_app(tmp_path / "s.sqlite"), raise_server_exceptions=False)


def _routes(routes):
    for r in routes:
        inner = getattr(r, "original_router", None)
        if inner is not None:
            yield from _routes(inner.routes)
        elif isinstance(r, APIRoute):
            yield r


def test_routes_come_from_routers(client):
    paths = {r.path: r.endpoint.__module__ for r in _routes(client.app.routes)}
    assert paths["/api/questions/{qid}"] == "lnsynth.web.routers.questions"
    assert paths["/analysis"] == paths["/network"] == "lnsynth.web.routers.analysis"


def test_a_bug_is_a_logged_500_not_page_text(client, monkeypatch, caplog):
    def boom(*a, **k):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(an, "run_pairwise", boom)
    with caplog.at_level(logging.ERROR, logger="lnsynth.web"):
        r = client.get("/analysis")
    assert r.status_code == 500 and "secret internals" not in r.text and "internal error" in r.text
    assert any("secret internals" in (rec.exc_text or "") or "unhandled error" in rec.getMessage() for rec in caplog.records)


def test_a_user_error_is_shown_on_the_page(client):
    r = client.get("/analysis?outcome=complete+remission&treatment=TAC&control=TAC")
    assert r.status_code == 200 and "overlap" in r.text


def test_network_page_names_every_trial_left_out_and_the_reference(client):
    r = client.get("/network?outcome=complete+remission&measure=OR&method=REML&node=class")
    assert r.status_code == 200
    assert "Liu et al. 2015" in r.text  # the largest trial is in (approximate count, flagged)
    assert "saxena2024" in r.text and "not randomised" in r.text
    assert "IV cyclophosphamide" in r.text


def test_evidence_currency_on_the_web(client):
    cur = client.get("/api/evidence").json()
    assert cur["searched"] == "2026-12-08" and "rovin2021" in cur["new_since_review"]
    assert "Evidence searched 2026-12-08" in client.get("/trials").text
    assert "Evidence searched 2026-12-08" in client.get("/questions").text

"""Browser tests: Playwright driving Debian's chromium against a real uvicorn server.

Skipped (with the reason) when /usr/bin/chromium or the playwright package is missing;
CI installs chromium with apt.  Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import re

import pytest

from _browser import browser, page, require_browser, screenshot, unexpected  # noqa: F401 (fixtures)

TOKEN = "browser-token-42"

sync_api = require_browser()
pytest.importorskip("fastapi")

from lnsynth.web import DISCLAIMER, create_app  # noqa: E402
from lnsynth.web.server import running  # noqa: E402


@pytest.fixture(scope="module")
def base_url(tmp_path_factory):
    app = create_app(tmp_path_factory.mktemp("browser") / "store.db", TOKEN)
    with running(app) as base:
        yield base
    app.state.store.close()


def shot(pg, name: str) -> None:
    screenshot(pg, f"web-{name}")


def rows(pg) -> list[str]:
    return pg.locator("#trials tbody tr[data-trial]").evaluate_all("els => els.map(e => e.dataset.trial)")


def test_list_filter_open_and_curate(page, base_url):
    pg = page
    pg.goto(f"{base_url}/trials")
    assert pg.locator("#disclaimer").inner_text() == DISCLAIMER
    all_rows = rows(pg)
    assert "bao2008" in all_rows and len(all_rows) >= 5
    shot(pg, "trials")

    # filter: multitarget (CNI+MMF) against IV cyclophosphamide; the select submits on change
    with pg.expect_navigation():
        pg.select_option("#f-drug", "CNI+MMF")
    with pg.expect_navigation():
        pg.select_option("#f-comparator", "IVCYC")
    assert "drug=CNI%2BMMF" in pg.url and "comparator=IVCYC" in pg.url
    filtered = rows(pg)
    assert "bao2008" in filtered and len(filtered) < len(all_rows)
    assert all(t in all_rows for t in filtered)
    assert re.match(rf"{len(filtered)} of {len(all_rows)} trials", pg.locator("#trial-count").inner_text())
    shot(pg, "trials-filtered")

    # open a trial: numbers with their provenance
    with pg.expect_navigation():
        pg.click("#trials a[href='/trials/bao2008']")
    assert pg.locator("h1").inner_text().startswith("Bao et al. 2008")
    assert pg.locator("#outcomes").get_by_text("round(pct/100*n) with pct=65, n=20").count() >= 1
    n_before = pg.locator("#outcomes tbody tr[data-outcome]").count()
    shot(pg, "trial")

    # bad form: events > n -> message next to the field, nothing stored
    pg.select_option("#f-arm", "mt")
    pg.select_option("#f-outcome", "complete remission")
    pg.fill("#f-events", "25")
    pg.fill("#f-n", "20")
    pg.fill("#f-timepoint_weeks", "26")
    pg.fill("#f-source", "peleg2020")
    pg.fill("#f-location", "Table 1")
    pg.fill("#f-quote", 'Browser <script>window.pwned=1</script> entry')
    pg.fill("#f-token", TOKEN)
    with pg.expect_navigation():
        pg.click("#f-submit")
    err = pg.locator("#err-events")
    assert err.is_visible() and "must not exceed n" in err.inner_text()
    assert pg.locator("#f-events").input_value() == "25"  # the entry is kept for correction
    assert pg.locator("#outcomes tbody tr[data-outcome]").count() == n_before
    shot(pg, "form-error")

    # good form: corrected and submitted -> listed with its provenance, script shown as text
    pg.fill("#f-events", "12")
    pg.fill("#f-token", TOKEN)
    with pg.expect_navigation():
        pg.click("#f-submit")
    assert pg.locator("#added-msg").is_visible()
    assert pg.locator("#outcomes tbody tr[data-outcome]").count() == n_before + 1
    new_row = pg.locator("#outcomes tbody tr[data-outcome]").last
    assert "12 / 20" in new_row.inner_text()
    assert "<script>window.pwned=1</script>" in new_row.inner_text()
    assert pg.evaluate("window.pwned") is None
    shot(pg, "trial-added")
    assert not unexpected(pg), pg.problems  # no CSP violations or JS errors


def test_analysis_network_simulator_pages(page, base_url):
    pg = page
    pg.goto(f"{base_url}/analysis?outcome=complete+remission&treatment=CNI-any&control=non-CNI&measure=RR&method=REML")
    assert pg.locator("#forest svg").count() == 1
    assert pg.locator("#pooled tbody tr").count() == 1
    assert pg.locator("#disclaimer").inner_text() == DISCLAIMER
    shot(pg, "analysis")
    pg.goto(f"{base_url}/network?outcome=complete+remission&measure=OR&method=REML&node=class")
    assert pg.locator("#netgraph svg circle").count() >= 3
    assert pg.locator("#league tr").count() >= 4
    shot(pg, "network")
    pg.goto(f"{base_url}/simulator")
    assert pg.locator("#disclaimer").inner_text() == DISCLAIMER
    if pg.locator("#sim-form").count():
        pg.select_option("#s-protocol", "bao2008")
        pg.fill("#s-n", "200")
        with pg.expect_navigation():
            pg.click("#s-run")
        assert pg.locator("#sim-result tbody tr").count() >= 2
    else:
        assert pg.locator("#sim-unavailable").count() == 1
    shot(pg, "simulator")
    pg.goto(f"{base_url}/login?next=/audit")
    pg.fill("#token", TOKEN)
    with pg.expect_navigation():
        pg.click("form.narrow button[type=submit]")
    assert pg.url.endswith("/audit") and pg.locator("#audit tbody tr").count() >= 1
    shot(pg, "audit")
    assert not unexpected(pg), pg.problems

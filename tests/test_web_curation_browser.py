"""Curation in Chromium (Playwright): named logins, the two-person rule, trial / adverse-event pages.

A value entered by one curator is shown as pending and left out of the pairwise analysis until a
second curator verifies it in the review queue; then the analysis uses it.  Skipped (with the
reason) when /usr/bin/chromium or the playwright package is missing, as tests/test_web_browser.py.
Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import pytest

from _browser import browser, page, require_browser, screenshot, unexpected  # noqa: F401 (fixtures)

TOKEN = "curation-browser-token-0123"
USERS = {"alice": ("curator", "alice-password-1"), "bob": ("curator", "bob-password-22"),
         "carol": ("reviewer", "carol-password-3")}
ANALYSIS = ("/analysis?outcome=complete+remission&treatment=CNI%2BMMF&control=IVCYC&measure=RR&method=FE"
            "&timepoint=latest")

sync_api = require_browser()
pytest.importorskip("fastapi")
pytest.importorskip("argon2")

import lnsynth.web.auth as auth_mod  # noqa: E402
from lnsynth.web import create_app  # noqa: E402
from lnsynth.web.server import running  # noqa: E402


@pytest.fixture(scope="module")
def base_url(tmp_path_factory):
    from argon2 import PasswordHasher

    saved = auth_mod._HASHER
    auth_mod._HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)  # fast, for the test only
    app = create_app(tmp_path_factory.mktemp("curation") / "store.db", TOKEN)
    store = app.state.store
    for name, (role, pw) in USERS.items():
        store.add_user(name, role, auth_mod.hash_password(pw), "test")
    with running(app) as base:
        yield base
    store.close()
    auth_mod._HASHER = saved


def shot(pg, name: str) -> None:
    screenshot(pg, f"web-curation-{name}")


def login(pg, base: str, name: str, password: str | None = None, nxt: str = "/trials") -> None:
    pg.goto(f"{base}/login?next={nxt}")
    pg.fill("#username", name)
    pg.fill("#password", password or USERS[name][1])
    with pg.expect_navigation():
        pg.click("#login-submit")


def logout(pg) -> None:
    with pg.expect_navigation():
        pg.click("header form[action='/logout'] button")


def pooled_rows(pg) -> str:
    return pg.locator("main").inner_text()


def test_value_excluded_from_analysis_until_second_curator_verifies(page, base_url):
    pg = page
    pg.goto(base_url + ANALYSIS)
    assert "13 / 20" in pooled_rows(pg)  # Bao 2008, multitarget arm at 9 months (repository value)

    login(pg, base_url, "alice", nxt="/trials/bao2008")
    assert pg.locator("#whoami").inner_text() == "alice (curator)"
    assert pg.locator("#f-token").count() == 0  # logged in: no token field
    pg.select_option("#f-arm", "mt")
    pg.select_option("#f-outcome", "complete remission")
    pg.fill("#f-events", "14")
    pg.fill("#f-n", "20")
    pg.fill("#f-timepoint_weeks", "39")
    pg.fill("#f-source", "peleg2020")
    pg.fill("#f-location", "Table 1")
    pg.fill("#f-quote", "complete remission 14/20 at 9 months")
    with pg.expect_navigation():
        pg.click("#f-submit")
    assert pg.locator("#added-msg").is_visible()
    row = pg.locator("#outcomes tbody tr[data-outcome]").last
    rid = row.get_attribute("data-outcome")
    assert row.locator(".status").get_attribute("data-status") == "pending"
    assert "entered by alice" in row.inner_text()
    shot(pg, "pending")

    # one curator's entry: the analysis still uses the repository value
    pg.goto(base_url + ANALYSIS)
    text = pooled_rows(pg)
    assert "13 / 20" in text and "14 / 20" not in text
    assert "1 pending" in pg.locator("#verification").inner_text()

    # alice cannot verify her own entry
    pg.goto(f"{base_url}/review")
    item = pg.locator(f"#review-outcome-{rid}")
    assert item.count() == 1 and item.locator(f"#own-outcome-{rid}").is_visible()
    assert item.locator(f"#verify-outcome-{rid}").count() == 0
    logout(pg)

    # bob checks it against the quote in the queue and verifies
    login(pg, base_url, "bob", nxt="/review")
    item = pg.locator(f"#review-outcome-{rid}")
    side = item.locator(f"#side-outcome-{rid}")
    assert "complete remission 14/20 at 9 months" in side.inner_text() and "Entry (alice)" in side.inner_text()
    shot(pg, "queue")
    with pg.expect_navigation():
        item.locator(f"#verify-outcome-{rid}").click()
    assert pg.locator("#review-done").is_visible() and pg.locator(f"#review-outcome-{rid}").count() == 0

    pg.goto(base_url + ANALYSIS)
    text = pooled_rows(pg)
    assert "14 / 20" in text and "13 / 20" not in text  # verified by two people: now analysed
    assert "1 value verified by two people" in pg.locator("#verification").inner_text()
    shot(pg, "verified-analysis")
    pg.goto(f"{base_url}/trials/bao2008")
    row = pg.locator(f"#outcome-{rid}")
    assert row.locator(".status").get_attribute("data-status") == "verified"
    assert "verified by bob" in row.inner_text()
    assert not unexpected(pg), pg.problems


def test_add_trial_adverse_event_dispute_and_delete(page, base_url):
    pg = page
    login(pg, base_url, "alice", nxt="/trials/new")
    # server-side validation names the field
    pg.fill("#t-id", "Not An Id")
    pg.fill("#t-year", "²⁰²⁴")
    with pg.expect_navigation():
        pg.click("#t-submit")
    for f in ("id", "year", "label", "design", "source", "location", "quote", "arm_id_1"):
        assert pg.locator(f"#err-{f}").is_visible(), f
    assert pg.locator("#t-id").input_value() == "Not An Id"  # the entry is kept for correction
    shot(pg, "trial-form-errors")
    vals = {"#t-id": "smith2024", "#t-label": "Smith et al. 2024", "#t-year": "2024", "#t-design": "open-label RCT",
            "#t-n_randomised": "40", "#t-source": "smith2024_src", "#t-location": "Methods",
            "#t-quote": "40 patients <b>were</b> randomised", "#t-arm_id_1": "tac", "#t-arm_label_1": "Tacrolimus",
            "#t-arm_n_1": "20", "#t-arm_id_2": "mmf", "#t-arm_label_2": "Mycophenolate", "#t-arm_n_2": "20"}
    for sel, v in vals.items():
        pg.fill(sel, v)
    pg.select_option("#t-arm_regimen_1", "TAC")
    pg.select_option("#t-arm_regimen_2", "MMF")
    with pg.expect_navigation():
        pg.click("#t-submit")
    assert pg.url.endswith("/trials/smith2024")
    assert pg.locator("#trial-status").get_attribute("data-status") == "pending"
    assert pg.locator("#arms tbody tr").count() == 2
    assert "40 patients <b>were</b> randomised" in pg.locator("#study-provenance").inner_text()  # text, not HTML

    # an adverse event with its provenance; events > n is refused, naming the field
    with pg.expect_navigation():
        pg.click("#add-ae-link")
    pg.select_option("#e-arm", "tac")
    pg.fill("#e-event", "Pneumonia")
    pg.fill("#e-category", "infection")
    pg.fill("#e-events", "25")
    pg.fill("#e-n", "20")
    pg.fill("#e-source", "smith2024_src")
    pg.fill("#e-location", "Table 3")
    pg.fill("#e-quote", "Pneumonia 3/20")
    with pg.expect_navigation():
        pg.click("#e-submit")
    assert "must not exceed n" in pg.locator("#err-events").inner_text()
    pg.fill("#e-events", "3")
    with pg.expect_navigation():
        pg.click("#e-submit")
    ae_row = pg.locator("#adverse-events tbody tr[data-ae]").last
    ae_id = ae_row.get_attribute("data-ae")
    assert "3 / 20" in ae_row.inner_text() and ae_row.locator(".status").get_attribute("data-status") == "pending"
    logout(pg)

    # bob verifies the trial, then reads the adverse event differently: a dispute, side by side
    login(pg, base_url, "bob", nxt="/trials/smith2024")
    with pg.expect_navigation():
        pg.click("#verify-trial")
    assert pg.locator("#trial-status").get_attribute("data-status") == "verified"
    pg.goto(f"{base_url}/review")
    key = f"adverse_event-{ae_id}"
    pg.fill(f"#read-{key}-events", "4")
    pg.fill(f"#note-{key}", "Table 3 prints 4/20")
    with pg.expect_navigation():
        pg.click(f"#dispute-{key}")
    item = pg.locator(f"#review-{key}")
    assert item.get_attribute("data-status") == "disputed"
    side = item.locator(f"#side-{key}").inner_text()
    assert "Entry (alice)" in side and "Reading by bob" in side and "Pneumonia 3/20" in side
    assert item.locator("td.differs").inner_text() == "4"
    shot(pg, "dispute")
    logout(pg)

    # carol (reviewer) resolves with bob's reading; then alice deletes it again
    login(pg, base_url, "carol", nxt="/review")
    with pg.expect_navigation():
        pg.locator(f"#review-{key} button[id^='adopt-{key}-']").click()
    assert pg.locator(f"#review-{key}").count() == 0
    pg.goto(f"{base_url}/trials/smith2024")
    row = pg.locator(f"#ae-{ae_id}")
    assert "4 / 20" in row.inner_text() and row.locator(".status").get_attribute("data-status") == "verified"
    logout(pg)
    login(pg, base_url, "alice", nxt="/trials/smith2024")
    with pg.expect_navigation():
        pg.click(f"#edit-ae-{ae_id}")
    assert pg.locator("#e-events").input_value() == "4"
    pg.fill("#e-location", "Table 3, safety set")
    with pg.expect_navigation():
        pg.click("#e-submit")
    assert pg.locator("#saved-msg").is_visible()
    assert pg.locator(f"#ae-{ae_id} .status").get_attribute("data-status") == "pending"
    with pg.expect_navigation():
        pg.click(f"#delete-ae-{ae_id}")
    # deleting a verified value is a proposal until a second person confirms it (issue 26)
    assert "pending deletion" in pg.locator(f"#ae-{ae_id}").inner_text()
    shot(pg, "trial-after")
    assert not unexpected(pg), pg.problems


def test_replayed_cookie_after_logout_is_refused_in_browser(browser, base_url):
    ctx = browser.new_context()
    pg = ctx.new_page()
    login(pg, base_url, "alice", nxt="/audit")
    assert pg.locator("#audit tbody tr").count() >= 1
    cookies = [c for c in ctx.cookies() if c["name"] == "lnsynth_session"]
    assert cookies and cookies[0]["httpOnly"] and cookies[0]["sameSite"] == "Strict"
    logout(pg)
    ctx.close()
    thief = browser.new_context()
    thief.add_cookies(cookies)  # the captured cookie, replayed
    pg2 = thief.new_page()
    pg2.goto(f"{base_url}/audit")
    assert pg2.locator("#audit").count() == 0 and pg2.locator("#whoami").count() == 0
    thief.close()

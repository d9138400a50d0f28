"""Shared set-up of the Chromium (Playwright) tests: skip rules, launch flags and the page fixtures.

A test module calls :func:`require_browser` at import (module-level skip with the reason when
/usr/bin/chromium or the playwright package is missing; CI installs chromium with apt) and imports
the ``browser`` and ``page`` fixtures from here.  Each ``page`` collects console errors and page
errors in ``page.problems``.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("LNSYNTH_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


def require_browser():
    """Skip the calling module unless Chromium and playwright are present; return playwright.sync_api."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium) "
                    "to run the browser tests", allow_module_level=True)
    return pytest.importorskip("playwright.sync_api", reason="playwright Python package not installed")


@pytest.fixture(scope="module")
def browser():
    from playwright import sync_api

    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture()
def page(browser):
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = ctx.new_page()
    problems: list[str] = []
    pg.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: problems.append(str(e)))
    pg.problems = problems  # type: ignore[attr-defined]
    yield pg
    ctx.close()


def screenshot(pg, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    pg.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def unexpected(pg) -> list[str]:
    """Console errors other than deliberate 4xx answers (a bad form, a refused write)."""
    return [p for p in pg.problems if "Failed to load resource" not in p]

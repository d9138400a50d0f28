"""The HTML report builds from the embedded data, parses, is self-contained and accessible."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from lnsynth.report.build import build_report


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.imgs, self.urls, self.ids, self.stack_errors = [], [], [], 0
        self.sections = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a)
        for k in ("src", "href"):
            if k in a:
                self.urls.append(a[k])
        if tag == "section":
            self.sections.append(a.get("id"))


@pytest.fixture(scope="module")
def report_html(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    path = build_report(out, progress=False)
    return path.read_text(encoding="utf-8")


def test_report_parses_and_has_sections(report_html):
    p = _Collect()
    p.feed(report_html)
    p.close()
    assert report_html.startswith("<!DOCTYPE html>")
    assert {"overview", "questions", "tables", "evidence", "network", "sensitivity", "simulator"} <= set(p.sections)
    top = [x for x in p.sections if x and not x.startswith("q-")]
    assert top[:2] == ["overview", "questions"]  # the report leads with the per-question summaries of findings
    assert "Evidence searched 2026-12-08" in report_html
    assert "could not be built" not in report_html
    assert "Not medical advice" in report_html


def test_every_figure_has_alt_text_and_is_inline(report_html):
    p = _Collect()
    p.feed(report_html)
    assert len(p.imgs) >= 10
    for img in p.imgs:
        assert img.get("alt") and len(img["alt"]) > 20
        assert img["src"].startswith("data:image/")


def test_no_external_urls(report_html):
    p = _Collect()
    p.feed(report_html)
    for u in p.urls:
        assert u.startswith("#") or u.startswith("data:"), u
    assert not re.search(r"""(src|href)\s*=\s*["']?https?://""", report_html)


def test_tables_in_report_carry_provenance(report_html):
    assert 'id="table1"' in report_html and 'id="table2"' in report_html
    assert "Bao et al. 2008" in report_html
    assert 'class="num" title="peleg2020, Table 1' in report_html


class _TableGrab(HTMLParser):
    """Rows of the table with a given id, as lists of cell texts."""

    def __init__(self, table_id):
        super().__init__()
        self.table_id, self.inside, self.rows, self._row, self._cell = table_id, False, [], None, None

    def handle_starttag(self, tag, attrs):
        if tag == "table" and dict(attrs).get("id") == self.table_id:
            self.inside = True
        elif self.inside and tag == "tr":
            self._row = []
        elif self.inside and tag in ("td", "th"):
            self._cell = ""

    def handle_endtag(self, tag):
        if tag == "table" and self.inside:
            self.inside = False
        elif self.inside and tag in ("td", "th") and self._row is not None:
            self._row.append(self._cell)
            self._cell = None
        elif self.inside and tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None

    def handle_data(self, data):
        if self.inside and self._cell is not None:
            self._cell += data


def test_summary_of_findings_tables_render_the_answers(report_html):
    """Each question's SoF table in the report shows the Answer objects' numbers (test_questions
    checks the embedded objects against the CLI and the web API)."""
    from lnsynth.analyses.answer import answer_all
    from lnsynth.evidence import load_evidence

    for a in answer_all(load_evidence()):
        assert f"id='q-{a.id}'" in report_html
        for o in a.to_dict()["outcomes"]:
            if o["estimate"] is not None:
                assert f"{o['measure']} {o['estimate']:.2f} ({o['ci_low']:.2f} to {o['ci_high']:.2f})" in report_html
            else:
                assert "not estimable" in report_html


def test_report_renders_in_chromium_without_console_errors(tmp_path_factory, report_html):
    from pathlib import Path

    if not Path("/usr/bin/chromium").exists():
        pytest.skip("Debian chromium not installed (.ci/run installs it)")
    playwright = pytest.importorskip("playwright.sync_api")
    out = tmp_path_factory.mktemp("shot") / "index.html"
    out.write_text(report_html, encoding="utf-8")
    art = Path(__file__).resolve().parents[1] / "test-artifacts"
    art.mkdir(exist_ok=True)
    errors = []
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                              args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                    "--disable-component-update", "--disable-sync", "--no-first-run"])
        page = b.new_page(viewport={"width": 1200, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(out.as_uri())
        page.wait_for_load_state("load")
        n_img = page.evaluate("Array.from(document.images).filter(i => i.complete && i.naturalWidth > 0).length")
        assert n_img >= 10
        page.screenshot(path=str(art / "report-top.png"))
        for sid in ("questions", "q-cni-addon-mmf", "tables", "network", "sensitivity", "simulator"):
            page.locator(f"#{sid}").scroll_into_view_if_needed()
            page.screenshot(path=str(art / f"report-{sid}.png"))
        b.close()
    assert not errors, errors


def test_html_ids_are_unique(report_html):
    ids = re.findall(r"""\sid=["']([^"']+)["']""", report_html)
    dup = {i for i in ids if ids.count(i) > 1}
    assert not dup, dup


def test_report_says_how_many_values_two_people_verified(report_html):
    """Issue 16: the report states the verification status of its values (the embedded data is repository
    curation; none of it is claimed as verified by two people)."""
    from lnsynth.evidence import load_evidence

    n = len(load_evidence().provenance_rows())
    assert "id='verification'" in report_html
    assert f"all {n} values are <strong>curated in the repository</strong>" in report_html
    assert "<strong>0</strong> have been verified by two people" in report_html

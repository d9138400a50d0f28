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
    assert {"overview", "tables", "evidence"} <= set(p.sections)
    assert "Not medical advice" in report_html


def test_every_figure_has_alt_text_and_is_inline(report_html):
    p = _Collect()
    p.feed(report_html)
    assert len(p.imgs) >= 3
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

"""The systematic search as data (issue 20): loading, located errors, deduplication, PRISMA 2020 flow,
the `lnsynth prisma` contract and the flow diagram."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import yaml  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from lnsynth.cli import app  # noqa: E402
from lnsynth.evidence import load_evidence  # noqa: E402
from lnsynth.evidence.search import (  # noqa: E402
    CONTRACT_KEYS,
    SearchDataError,
    consistency_warnings,
    deduplicate,
    load_search,
    prisma,
    search_dir,
)

runner = CliRunner()


@pytest.fixture(scope="module")
def data():
    return load_search()


@pytest.fixture(scope="module")
def flow(data):
    return prisma(data)


# ----------------------------------------------------------------------------- the embedded search
def test_counts_add_up(data, flow):
    hits = sum(q.hits for q in data.queries)
    assert flow.identified_total == hits == sum(len(r.found_by) for r in data.records)
    assert flow.identified_total - flow.duplicates == flow.screened == len(data.unique())
    assert flow.screened - flow.excluded_screening == flow.sought
    assert flow.sought - flow.not_retrieved == flow.assessed
    assert flow.assessed - sum(flow.excluded_full.values()) == flow.reports_included
    assert sum(flow.excluded_screening_reasons.values()) == flow.excluded_screening
    assert 0 < flow.studies_included <= flow.reports_included
    assert flow.duplicates > 0  # mirrors of the same page exist and are found by computation
    flow.check()


def test_identified_per_source_matches_query_log(data, flow):
    per_source: dict[str, int] = {}
    for q in data.queries:
        per_source[q.source] = per_source.get(q.source, 0) + q.hits
    assert flow.identified == dict(sorted(per_source.items()))
    assert set(flow.identified_other) <= set(flow.identified)
    # first pass (2026-12-07) and the second pass on the awaiting_extraction leads (2026-12-08, q40-q59)
    assert {q.date.isoformat() for q in data.queries} <= {"2026-12-07", "2026-12-08"}


def test_reasons_are_from_the_fixed_list(data):
    fixed = set(data.protocol.exclusion_reasons)
    used = {r.reason for r in data.records if r.reason}
    assert used <= fixed
    assert {"not_randomised", "no_cni_arm", "review_or_commentary", "awaiting_extraction"} <= fixed


def test_every_included_trial_is_in_the_evidence_base(data, flow):
    ids = {s.id for s in load_evidence().studies}
    included = {r.trial for r in data.unique() if r.full == "include"}
    assert included and included <= ids
    assert set(flow.trials) == included
    assert {"zheng2022", "mok2016", "liu2015", "rovin2021"} <= included


def test_duplicates_are_consistent_with_the_record_kept(data):
    assert consistency_warnings(data) == []
    # two mirrors of one registry record (same NCT) are one record
    assert data.duplicate_of["r013"] == "r010" and data.duplicate_of["r010"] is None


# ----------------------------------------------------------------------------- deduplication
def test_dedup_by_pmid_doi_nct_title_year_and_url():
    recs = [
        {"id": "a", "pmid": "123", "title": "Alpha trial", "year": 2010},
        {"id": "b", "pmid": "123", "title": "Alpha trial (mirror)", "year": 2010},  # PMID
        {"id": "c", "doi": "10.1000/XYZ", "title": "Beta", "year": 2011},
        {"id": "d", "doi": "10.1000/xyz", "title": "Beta copy", "year": 2011},  # DOI, case-insensitive
        {"id": "e", "nct": "NCT00000001", "title": "Gamma registry"},
        {"id": "f", "nct": "NCT00000001", "title": "Gamma registry mirror"},  # NCT
        {"id": "g", "title": "Delta: a randomized trial!", "year": 2015},
        {"id": "h", "title": "delta  a RANDOMIZED trial", "year": 2015},  # title + year, normalised
        {"id": "i", "title": "Delta: a randomized trial", "year": 2016},  # same title, other year: distinct
        {"id": "j", "url": "https://www.example.org/x/", "title": "Epsilon"},
        {"id": "k", "url": "http://example.org/x", "title": "Epsilon page"},  # URL
        {"id": "l", "pmid": "999", "doi": "10.1/q", "title": "Zeta", "year": 2020},
        {"id": "m", "doi": "10.1/q", "title": "Zeta other", "year": 2020},
        {"id": "n", "title": "Zeta other", "year": 2020},  # transitive: n -> m -> l
    ]
    dup = deduplicate(recs)
    assert dup == {"a": None, "b": "a", "c": None, "d": "c", "e": None, "f": "e", "g": None, "h": "g", "i": None,
                   "j": None, "k": "j", "l": None, "m": "l", "n": "l"}


# ----------------------------------------------------------------------------- a synthetic search
def _write(tmp: Path, records: list[dict], queries: list[dict] | None = None) -> Path:
    root = tmp / "search"
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(search_dir() / "protocol.yaml", root / "protocol.yaml")
    queries = queries if queries is not None else [
        {"id": "q1", "query": "x", "source": "A", "date": "2026-12-07", "hits": 3},
        {"id": "q2", "query": "y", "source": "B", "date": "2026-12-07", "hits": 2},
    ]
    (root / "queries.yaml").write_text(yaml.safe_dump({"queries": queries}, allow_unicode=True))
    (root / "records.yaml").write_text(yaml.safe_dump({"records": records}, allow_unicode=True))
    studies = tmp / "studies"
    studies.mkdir(exist_ok=True)
    (studies / "trialx.yaml").write_text("id: trialx\n")
    return root


def _synthetic():
    return [
        {"id": "r1", "title": "T one", "year": 2020, "pmid": "1", "found_by": ["q1", "q2"], "screen": "include",
         "full": "include", "trial": "trialx"},
        {"id": "r2", "title": "T one", "year": 2020, "found_by": ["q1"], "screen": "include", "full": "include",
         "trial": "trialx"},  # duplicate of r1 by title + year
        {"id": "r3", "title": "A review", "found_by": ["q1"], "screen": "exclude", "reason": "review_or_commentary"},
        {"id": "r4", "title": "Registry only", "nct": "NCT00000009", "found_by": ["q2"], "screen": "include",
         "full": "not_retrieved"},
    ]


def test_synthetic_flow(tmp_path):
    flow = prisma(load_search(_write(tmp_path, _synthetic())))
    assert flow.contract() == {"identified": {"A": 3, "B": 2}, "duplicates": 2, "screened": 3, "excluded_screening": 1,
                               "sought": 2, "not_retrieved": 1, "assessed": 1, "excluded_full": {},
                               "studies_included": 1, "reports_included": 1}


@pytest.mark.parametrize("change, expected", [
    (lambda rs: rs[2].update(reason="because"), ["records.yaml", "record r3", "'reason'", "fixed list"]),
    (lambda rs: rs[2].pop("screen"), ["records.yaml", "record r3", "'screen'"]),
    (lambda rs: rs[0].update(pmid="PMC12"), ["records.yaml", "record r1", "'pmid'"]),
    (lambda rs: rs[0].update(found_by=["q1", "q9"]), ["record r1", "'found_by'", "q9"]),
    (lambda rs: rs[3].update(full="include"), ["record r4", "needs the trial"]),
    (lambda rs: rs[0].update(trial="nosuchtrial"), ["record r1", "'trial'", "nosuchtrial", "no study file"]),
    (lambda rs: rs[2].update(full="include"), ["record r3", "excluded at screening"]),
    (lambda rs: rs.append(dict(rs[2])), ["record r3", "duplicate id"]),
])
def test_bad_records_give_located_errors(tmp_path, change, expected):
    recs = _synthetic()
    change(recs)
    with pytest.raises(SearchDataError) as exc:
        load_search(_write(tmp_path, recs))
    msg = str(exc.value)
    for part in expected:
        assert part in msg, msg


def test_hits_must_match_records(tmp_path):
    qs = [{"id": "q1", "query": "x", "source": "A", "date": "2026-12-07", "hits": 4},
          {"id": "q2", "query": "y", "source": "B", "date": "2026-12-07", "hits": 2}]
    with pytest.raises(SearchDataError, match=r"queries.yaml: query q1: field 'hits': 4 hits logged but 3 records"):
        load_search(_write(tmp_path, _synthetic(), qs))


def test_bad_yaml_and_protocol_are_located(tmp_path):
    root = _write(tmp_path, _synthetic())
    (root / "records.yaml").write_text("records: [unclosed\n")
    with pytest.raises(SearchDataError, match="records.yaml: not valid YAML"):
        load_search(root)
    root = _write(tmp_path, _synthetic())
    proto = yaml.safe_load((root / "protocol.yaml").read_text())
    del proto["question"]["comparator"]
    (root / "protocol.yaml").write_text(yaml.safe_dump(proto))
    with pytest.raises(SearchDataError, match=r"protocol.yaml: protocol: field 'question'.*comparator"):
        load_search(root)


# ----------------------------------------------------------------------------- CLI contract
def test_cli_json_has_exactly_the_contract_keys(flow):
    res = runner.invoke(app, ["prisma", "--format", "json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert list(out) == list(CONTRACT_KEYS)
    assert out == flow.contract()
    assert all(isinstance(out[k], dict) for k in ("identified", "excluded_full"))
    assert all(isinstance(out[k], int) for k in CONTRACT_KEYS if k not in ("identified", "excluded_full"))


def test_cli_table_and_bad_folder(tmp_path):
    res = runner.invoke(app, ["prisma"])
    assert res.exit_code == 0 and "studies_included" in res.stdout and "duplicates" in res.stdout
    recs = _synthetic()
    recs[2]["reason"] = "because"
    res = runner.invoke(app, ["prisma", "--search", str(_write(tmp_path, recs)), "--format", "json"])
    assert res.exit_code == 2
    assert "record r3" in res.stderr and "Traceback" not in res.stderr


def test_cli_out_writes_only_under_the_given_folder(tmp_path):
    out = tmp_path / "figs"
    res = runner.invoke(app, ["prisma", "--format", "json", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["prisma.png", "prisma.svg"]
    assert (out / "prisma.png").stat().st_size > 1000


# ----------------------------------------------------------------------------- figure
def test_figure_is_sized_from_its_text(flow):
    from matplotlib.patches import FancyBboxPatch

    from lnsynth.plots.prisma import prisma_figure
    from lnsynth.plots.style import renderer

    fig = prisma_figure(flow)
    r = renderer(fig)
    fig.canvas.draw()
    W, H = fig.canvas.get_width_height()
    boxes = [p.get_window_extent(r) for p in fig.axes[0].patches if isinstance(p, FancyBboxPatch)]
    texts = [t for t in list(fig.axes[0].texts) + list(fig.texts) if t.get_text().strip()]
    assert any(f"(n = {flow.screened})" in t.get_text() for t in texts)
    for t in texts:
        bb = t.get_window_extent(r)
        assert bb.x0 >= -1 and bb.y0 >= -1 and bb.x1 <= W + 1 and bb.y1 <= H + 1, t.get_text()
        if "(n =" in t.get_text():  # every count lies inside its own box
            assert any(b.x0 - 1 <= bb.x0 and bb.x1 <= b.x1 + 1 and b.y0 - 1 <= bb.y0 and bb.y1 <= b.y1 + 1
                       for b in boxes), t.get_text()
    longer = prisma(load_search())
    longer.excluded_full = {**longer.excluded_full, "a_much_longer_reason_name_that_needs_more_room_than_any": 1}
    assert prisma_figure(longer).get_size_inches()[0] > fig.get_size_inches()[0]


# ----------------------------------------------------------------------------- report and web app
def test_report_section(flow):
    from lnsynth.report.prisma import section_prisma

    sec = section_prisma(None, {})
    assert sec.id == "search" and len(sec.figures) == 1
    assert 'src="data:image/svg+xml;base64,' in sec.html and "https://" not in sec.html
    assert f"{flow.identified_total} records identified" in sec.html
    # eligible trials without a study file are listed (since the v4 pass they are all no_usable_data, e.g. chen2011)
    assert "zheng2022" in sec.html and "chen2011" in sec.html and "no_usable_data" in sec.html


def test_web_api_and_trials_page(tmp_path, flow):
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient

    from lnsynth.web import create_app

    with TestClient(create_app(tmp_path / "store.db", "test-token-prisma-1")) as c:
        res = c.get("/api/prisma")
        assert res.status_code == 200, res.text
        body = res.json()
        assert {k: body[k] for k in CONTRACT_KEYS} == flow.contract()
        assert body["identified_total"] == flow.identified_total and body["date_searched"] == "2026-12-08"
        page = c.get("/trials")
        assert page.status_code == 200
        assert 'id="prisma"' in page.text and f'<td class="num">{flow.screened}</td>' in page.text

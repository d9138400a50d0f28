"""Issue 20, part 4: primary reports before the review (peleg2020), conflicts kept and flagged.

The numbers asserted here are those printed by the primary pages registered in
``lnsynth/evidence/data/sources/primary_v3.yaml`` (read 2026-12-07) and ``mok2016_pubmed``.
"""

from __future__ import annotations

import io
import warnings

import pandas as pd
import pytest
from typer.testing import CliRunner

from lnsynth.cli import app
from lnsynth.evidence import load_evidence
from lnsynth.evidence.checks import run_checks
from lnsynth.evidence.load import EvidenceError, load_study_file

runner = CliRunner()

REVIEW_ONLY_TRIALS = ("liu2015", "bao2008", "li2012", "zavada2010", "yap2012", "zhang2017", "austin2009", "moroni2006")
PRIMARY_TYPES = {"peer-reviewed article", "trial-registry results", "abstract", "conference abstract"}


@pytest.fixture(scope="module")
def ev():
    return load_evidence()


@pytest.fixture(scope="module")
def prov():
    res = runner.invoke(app, ["provenance", "--format", "csv"])
    assert res.exit_code == 0, res.output
    return pd.read_csv(io.StringIO(res.output))


def test_mok_flares_come_from_the_primary_abstract(ev):
    of = ev.outcomes_frame()
    fl = of[(of["study"] == "mok2016") & (of["endpoint"] == "kidney flare")]
    # the review's 38% vs 54% are set aside; the primary's proteinuric / nephritic flares are used
    assert not ((fl["source"] == "peleg2020") & fl["percent"].isin([38, 54])).any()
    five = fl[fl["source"] == "mok2016_pubmed"].set_index("outcome_id")["percent"].to_dict()
    assert five == {"pflare5y_mmf_pm": 24, "nflare5y_mmf_pm": 18, "pflare5y_tac_pm": 35, "nflare5y_tac_pm": 27}
    allrows = ev.outcomes_frame(superseded=True)
    allrows = allrows[allrows["study"] == "mok2016"].set_index("outcome_id")
    assert "pflare5y_tac_pm" in allrows.loc["flare_tac", "superseded_by"]
    # both records are kept in the evidence base
    assert {"flare_mmf", "flare_tac"} <= {o.id for o in ev.study("mok2016").outcomes}


def test_mok_review_flare_counts_never_reach_a_pooled_comparison(ev):
    from lnsynth.analyses.selection import pairwise_data

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for approx in (False, True):
            d = pairwise_data(ev, "kidney flare", "TAC", "MMF", warn=False, approximate=approx)
            rows = d.frame[d.frame["study"] == "mok2016"]
            for recs in rows.get("records", pd.Series(dtype=object)):
                assert "flare_tac" not in recs and "flare_mmf" not in recs


def test_liu_any_infection_is_any_adverse_event_in_the_primary(ev):
    af = ev.adverse_events_frame()
    liu = af[af["study"] == "liu2015"]
    assert not ((liu["category"] == "infection") & (liu["events"] == 91)).any()
    anyae = liu[liu["category"] == "adverse events"].set_index("arm")
    assert (int(anyae.loc["mt", "events"]), int(anyae.loc["mt", "n"])) == (91, 181)
    assert (int(anyae.loc["ivc", "events"]), int(anyae.loc["ivc", "n"])) == (95, 181)
    assert set(anyae["source"]) == {"liu2015_medbullets"}
    rev = next(a for a in ev.study("liu2015").adverse_events if a.id == "ae_any_infection_mt")
    assert rev.conflict_with == ["ae_any_mt_pm"] and rev.events.value == 91  # kept as the review prints it


def test_bao_overall_remission_and_control_pneumonia_are_reported(ev):
    of = ev.outcomes_frame()
    bao = of[(of["study"] == "bao2008") & (of["endpoint"] == "overall remission") & (of["source"] == "bao2008_pubmed")]
    got = {(r.arm, round(r.timepoint_weeks)): (int(r.events), int(r.n)) for r in bao.itertuples()}
    assert got[("mt", 26)] == (18, 20) and got[("ivc", 26)] == (9, 20)
    assert got[("mt", 39)] == (19, 20) and got[("ivc", 39)] == (11, 20)
    pr = of[(of["study"] == "bao2008") & (of["endpoint"] == "partial remission")]
    assert sorted(pr["events"].astype(int)) == [6, 8, 8, 8]
    af = ev.adverse_events_frame()
    pn = af[(af["study"] == "bao2008") & (af["category"] == "pneumonia") & (af["arm"] == "ivc")]
    assert len(pn) == 1 and int(pn["events"].iloc[0]) == 1


def test_zavada_response_is_not_remission(ev):
    of = ev.outcomes_frame()
    z = of[(of["study"] == "zavada2010") & (of["timepoint_weeks"] == 39)]
    resp = z[z["endpoint"] == "kidney response"].set_index("arm")
    assert resp.loc["cyc", "percent"] == 52 and int(resp.loc["cyc", "events"]) == 11 and resp.loc["csa", "percent"] == 43
    rem = z[z["endpoint"] == "complete remission"].set_index("arm")
    assert (rem.loc["cyc", "percent"], rem.loc["csa", "percent"]) == (24, 26)
    assert (int(rem.loc["cyc", "n"]), int(rem.loc["csa", "n"])) == (21, 19)
    # the review's 'remission' 52% / 43% records are kept but set aside
    assert "remission" not in set(z["endpoint"])
    allz = ev.outcomes_frame(superseded=True)
    assert set(allz.loc[allz["outcome_id"].isin(["rem_ind_cyc", "rem_ind_csa"]), "endpoint"]) == {"remission"}


def test_conflicts_appear_in_the_provenance_csv(prov):
    assert list(prov.columns)[:11] == ["study", "field", "value", "source", "location", "quote", "derived", "rule",
                                       "url", "source_type", "accessed"]
    assert list(prov.columns)[-1] == "conflict_with"

    def cw(study, field):
        r = prov[(prov["study"] == study) & (prov["field"] == field)]
        assert len(r) == 1, (study, field)
        return r["conflict_with"].iloc[0]

    assert "pflare5y_mmf_pm (mok2016_pubmed)" in cw("mok2016", "outcomes[flare_mmf].percent")
    assert "flare_mmf (peleg2020)" in cw("mok2016", "outcomes[pflare5y_mmf_pm].percent")  # both directions
    assert "ae_any_mt_pm (liu2015_medbullets)" in cw("liu2015", "adverse_events[ae_any_infection_mt].events")
    assert "resp_ind_cyc_pm" in cw("zavada2010", "outcomes[rem_ind_cyc].percent")
    assert pd.isna(cw("liu2015", "outcomes[cr_mt].percent"))  # empty when no conflict
    n_conf = prov["conflict_with"].notna().sum()
    assert 0 < n_conf < len(prov)


def test_primary_record_wins_over_the_review_at_the_same_timepoint(ev):
    from lnsynth.analyses.selection import pairwise_data

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = pairwise_data(ev, "complete remission", "TAC+MMF", "IVCYC", timepoint=24, warn=False, approximate=True)
    recs = dict(zip(d.frame["study"], d.frame["records"]))
    assert "cr24_mt_pm" in recs["liu2015"] and "cr_mt" not in recs["liu2015"]
    assert {"cr6_mt_pm", "cr6_ivc_pm"} <= set(recs["bao2008"])
    assert set(d.frame.set_index("study").loc["bao2008", "source_types"]) == {"abstract"}


def test_every_review_only_trial_has_a_primary_source_or_says_what_was_searched(ev):
    types = {s.id: s.type for s in ev.sources}
    for sid in REVIEW_ONLY_TRIALS:
        s = ev.study(sid)
        prim = [p for p in s.publications if p.role == "primary" and types.get(p.source) in PRIMARY_TYPES]
        if prim:
            continue
        assert any("Primary report NOT reached" in n and "search tool" in n for n in s.notes), sid
    reached = {"liu2015", "bao2008", "zavada2010", "austin2009", "moroni2006", "zhang2017"}
    for sid in reached:
        assert any(p.role == "primary" and types.get(p.source) in PRIMARY_TYPES for p in ev.study(sid).publications), sid
    # where the primary page showed numbers, values were re-extracted from it
    srcs = {r.source for r in ev.provenance_rows() if r.study in reached - {"zhang2017"}}
    for src in ("liu2015_medbullets", "bao2008_pubmed", "zavada2010_pubmed", "austin2009_abstract", "moroni2006_pubmed"):
        assert src in srcs, src


def test_validator_lists_each_conflict(ev):
    f = [x for x in run_checks(ev, quotes=False) if x.kind == "conflict"]
    studies = {x.study for x in f}
    assert {"mok2016", "liu2015", "zavada2010"} <= studies
    assert all("both kept" in x.message for x in f)


def test_unknown_conflict_record_is_a_clear_error(tmp_path):
    y = tmp_path / "demo2001.yaml"
    y.write_text(
        "id: demo2001\nlabel: Demo 2001\nyear: 2001\n"
        "design: {value: RCT, loc: Table 1, quote: 'RCT'}\n"
        "arms:\n  - {id: a, label: A, regimen: TAC}\n"
        "outcomes:\n"
        "  - id: cr_a\n    arm: a\n    endpoint: complete remission\n    conflict_with: [no_such_record]\n"
        "    percent: {value: 50, unit: '%', loc: Table 1, quote: '50%'}\n",
        encoding="utf-8",
    )
    with pytest.raises(EvidenceError, match=r"demo2001.yaml.*conflict_with.*no_such_record"):
        load_study_file(y)


# ---------------------------------------------------------------------------------------------------------
# Second pass (2026-12-08): every value whose only source is the review is either restated by a primary
# record (``same_as`` / ``conflict_with`` from a non-review source) or registered in
# ``search/review_only.yaml`` with what was searched (``not_shown``) or the primary quote that shows a
# descriptive value no record can restate (``shown``). ``python tests/test_primary_sources.py [DATA_DIR]``
# prints the count per trial (the before/after of the closing note).
# ---------------------------------------------------------------------------------------------------------
import re  # noqa: E402
import sys  # noqa: E402
from collections import Counter  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Iterator, Optional  # noqa: E402

import yaml  # noqa: E402

from lnsynth.evidence.load import EvidenceBase, _walk_quantities, data_dir  # noqa: E402
from lnsynth.evidence.schema import MAX_EXTERNAL_QUOTE, Study  # noqa: E402

REGISTER = "search/review_only.yaml"
_RECORD = re.compile(r"^(outcomes|adverse_events|facts|contrasts|baseline)\[([a-z0-9_]+)\]\.?(\w*)")
_ARM = re.compile(r"^arms\[(\w+)\]\.(\w+)")


def _main_source(rec) -> Optional[str]:
    """Source of a record's main number (fact/baseline quantity, contrast estimate, else the count)."""
    for f in ("quantity", "estimate", "events", "percent", "rate", "mean", "median", "n"):
        q = getattr(rec, f, None)
        if q is not None and hasattr(q, "provenance"):
            return q.provenance.source
    return None


def _norm(ref: str, facts: set[str]) -> str:
    """A ``same_as`` reference as a coverage key: ``fact.value`` is the fact's ``quantity``."""
    rid, _, fld = ref.partition(".")
    if rid in facts and fld == "value":
        return f"{rid}.quantity"
    return ref


def _covered_keys(study: Study, review: set[str]) -> set[str]:
    """Keys (``record``, ``record.field``, ``n_randomised``, ``arm.<id>.n``, ``follow_up``) that a
    non-review record restates (``same_as``) or contradicts (``conflict_with``), closed over
    review-to-review ``same_as`` chains."""
    recs = {r.id: r for r in [*study.outcomes, *study.adverse_events, *study.facts, *study.contrasts, *study.baseline]}
    facts = {f.id for f in study.facts}
    cov: set[str] = set()
    for r in recs.values():
        src = _main_source(r)
        sa = getattr(r, "same_as", None)
        if src is not None and src not in review:
            if sa:
                cov.add(_norm(sa, facts))
            cov.update(getattr(r, "conflict_with", None) or [])
        else:
            if sa and sa.split(".")[0] in recs and _main_source(recs[sa.split(".")[0]]) not in review:
                cov.add(r.id)
            for o in getattr(r, "conflict_with", None) or []:
                if o in recs and _main_source(recs[o]) not in review:
                    cov.add(r.id)
    changed = True
    while changed:
        changed = False
        for r in recs.values():
            sa = getattr(r, "same_as", None)
            if sa and r.id not in cov:
                key = _norm(sa, facts)
                if key in cov or key.split(".")[0] in cov:
                    cov.add(r.id)
                    changed = True
    return cov


def _keys(path: str) -> list[str]:
    m = _RECORD.match(path)
    if m:
        return [m.group(2), f"{m.group(2)}.{m.group(3)}"]
    m = _ARM.match(path)
    if m:
        return [f"arm.{m.group(1)}.{m.group(2)}"]
    return [path.split(".")[0]]


def review_only_values(ev: EvidenceBase) -> Iterator[tuple[str, str, object]]:
    """Every (study, field path, value) sourced to a review and restated by no primary record.

    RoB 2 quotes (``rob.*``) are judgements' bases, not values, and are left out; published syntheses
    (Hannah 2016, Palmer 2017) are secondary by nature and are not studies."""
    review = {s.id for s in ev.sources if s.type == "review"}
    for st in ev.studies:
        cov = _covered_keys(st, review)
        for path, value, prov in _walk_quantities(st, ""):
            if prov.source not in review or path.startswith("rob."):
                continue
            if any(k in cov for k in _keys(path)):
                continue
            yield st.id, path, value


def load_register(root: Optional[Path] = None) -> list[dict]:
    """Entries of ``search/review_only.yaml`` (a list under ``entries``)."""
    p = (root or data_dir()) / REGISTER
    raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    return list(raw.get("entries", []))


def registered(entries: list[dict]) -> dict[tuple[str, str], dict]:
    """(study, field path) -> its register entry."""
    out: dict[tuple[str, str], dict] = {}
    for e in entries:
        for f in e.get("fields", []):
            out[(e["study"], f)] = e
    return out


@pytest.fixture(scope="module")
def entries() -> list[dict]:
    return load_register()


def test_every_review_only_value_is_registered(ev, entries):
    reg = registered(entries)
    missing = [(s, f) for s, f, _v in review_only_values(ev) if (s, f) not in reg]
    assert not missing, f"{len(missing)} review-only values neither restated by a primary source nor registered: {missing[:10]}"


def test_register_is_not_stale(ev, entries):
    """A registered field exists, is sourced to the review, and (for not_shown) is still review-only."""
    ro = {(s, f) for s, f, _v in review_only_values(ev)}
    review = {s.id for s in ev.sources if s.type == "review"}
    paths = {(st.id, p) for st in ev.studies for p, _v, prov in _walk_quantities(st, "") if prov.source in review}
    for (study, field), e in registered(entries).items():
        assert (study, field) in paths, f"register: {study} {field} is not a review-sourced value"
        if e["status"] == "not_shown":
            assert (study, field) in ro, f"register: {study} {field} is restated by a primary record now; drop it"


def test_register_entries_are_complete(ev, entries):
    known = {s.id: s for s in ev.sources}
    studies = {s.id for s in ev.studies}
    assert entries, "empty register"
    for e in entries:
        assert e.get("study") in studies, e
        assert e.get("status") in ("not_shown", "shown"), e
        assert e.get("fields"), e
        assert str(e.get("date", "")) == "2026-12-08" or str(e.get("date", "")).startswith("2026-12"), e
        if e["status"] == "not_shown":
            assert e.get("searched") and len(e["searched"]) > 20, f"{e['study']}: say what was searched"
            for sid in e.get("looked_in", []):
                assert sid in known or sid.startswith("http"), f"{e['study']}: looked_in {sid!r} is neither a source id nor a URL"
        else:
            src = known.get(e.get("source"))
            assert src is not None and src.type != "review", f"{e['study']}: 'shown' needs a non-review source id"
            assert e.get("location") and e.get("quote"), e
            assert len(" ".join(e["quote"].split())) <= MAX_EXTERNAL_QUOTE, f"{e['study']}: quote too long"


def test_primary_records_outrank_the_review(ev):
    """Where a primary record restates a review value, selection keeps the primary (source rank)."""
    df = ev.outcomes_frame()
    row = df[(df["study"] == "mok2013") & (df["outcome_id"] == "resp12_mt_pm")]
    assert len(row) == 1 and int(row.iloc[0]["events"]) == 14
    review_rank = int(df[df["source"] == "peleg2020"]["source_rank"].iloc[0])
    assert int(row.iloc[0]["source_rank"]) < review_rank


def test_conflicts_found_in_this_pass_are_flagged(ev):
    """Mok 2013's 'infection not requiring hospitalization (12/21)' disagrees with the article (27% of 33 events)."""
    st = ev.study("mok2013")
    rec = next(a for a in st.adverse_events if a.id == "ae_minor_infection_pm")
    assert rec.conflict_with == ["ae_infection_mt"] and rec.events.value == 9
    ae = ev.adverse_events_frame()
    assert "ae_infection_mt" not in set(ae[ae["study"] == "mok2013"]["ae_id"])  # superseded by the primary


if __name__ == "__main__":  # pragma: no cover - the count for the closing note
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else None
    ev = load_evidence(root)
    vals = list(review_only_values(ev))
    reg = registered(load_register(root)) if (root or data_dir()).joinpath(REGISTER).exists() else {}
    c = Counter(s for s, _f, _v in vals)
    print(f"review-only values: {len(vals)} in {len(c)} trials; registered not_shown "
          f"{sum(1 for s, f, _ in vals if reg.get((s, f), {}).get('status') == 'not_shown')}, shown "
          f"{sum(1 for s, f, _ in vals if reg.get((s, f), {}).get('status') == 'shown')}")
    for s, n in sorted(c.items(), key=lambda x: -x[1]):
        print(f"  {s}: {n}")

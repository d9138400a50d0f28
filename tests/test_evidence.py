"""Evidence base: loading, provenance, rebuilt tables, consistency checks, bad input."""

from __future__ import annotations

import io
import re
import textwrap
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from lnsynth.cli import app
from lnsynth.evidence import EvidenceError, load_evidence, load_study_file
from lnsynth.evidence.checks import check_consistency, check_quotes, normalise
from lnsynth.evidence.derive import count_candidates, nearest_count, percent_of
from lnsynth.evidence.schema import Outcome, Provenance, Quantity
from lnsynth.evidence.tables import build_table, cell_refs

runner = CliRunner()

TABLE1_IDS = {"moroni2006", "bao2008", "zavada2010", "yap2012", "li2012", "mok2013", "liu2015", "mok2016", "zhang2017", "rovin2019"}


@pytest.fixture(scope="module")
def ev():
    return load_evidence()


def _source_table_rows(source_text: str, header_start: str) -> list[list[str]]:
    """Tab-separated rows of a table in the source, HTML stripped, trial name without '(ref)'."""
    lines = source_text.splitlines()
    start = next(i for i, l in enumerate(lines) if l.startswith(header_start))
    rows = []
    for l in lines[start + 1 :]:
        if not l.strip():
            if rows:
                break
            continue
        cells = [normalise(c) for c in l.split("\t")]
        cells[0] = re.sub(r"\s*\(\d+\)$", "", cells[0])
        rows.append(cells)
    return rows


def test_loads_all_table_trials(ev):
    ids = {s.id for s in ev.studies}
    missing = TABLE1_IDS - ids
    assert not missing, f"Table 1 trials missing from the evidence base: {sorted(missing)}"
    assert {"hannah2016", "palmer2017"} <= {s.id for s in ev.syntheses}


def test_every_quote_is_verbatim(ev, source_text_path):
    bad = check_quotes(ev)
    assert not bad, "\n".join(str(b) for b in bad[:20])
    # and the check is real: a tampered quote is caught
    text = normalise(source_text_path.read_text(encoding="utf-8"))
    assert normalise("Tacrolimus/MMF: 65% complete remission") in text
    assert normalise("Tacrolimus/MMF: 66% complete remission") not in text


@pytest.mark.parametrize("table,header", [("table1", "Trial\tDesign"), ("table2", "Trial\tCalcineurin")])
def test_rebuilt_tables_match_the_printed_tables(ev, source_text_path, table, header):
    printed = _source_table_rows(source_text_path.read_text(encoding="utf-8"), header)
    rebuilt = build_table(ev, table).drop(columns=["study"])
    assert len(rebuilt) == len(printed), f"{table}: {len(rebuilt)} rows rebuilt, {len(printed)} printed"
    for (_, row), cells in zip(rebuilt.iterrows(), printed):
        assert [str(x) for x in row.tolist()] == cells


@pytest.mark.parametrize("table", ["table1", "table2"])
def test_table_numbers_are_printed_records(ev, table):
    """Every number in Tables 1-2 comes from a stored, non-derived record."""
    from lnsynth.evidence.tables import _prov_for_ref

    refs = cell_refs(ev, table)
    assert refs
    for sid, col, ref in refs:
        prov = _prov_for_ref(ev.study(sid), ref)
        assert not prov.derived, f"{sid} {col} {ref} is derived but printed in {table}"
        assert prov.location.lower().startswith(table.replace("table", "table ")), (sid, ref, prov.location)


@pytest.mark.parametrize("table", ["table1", "table2"])
def test_templates_hold_no_literal_numbers(ev, table):
    allowed = {"100"}  # "flares/100 patient yr" is a unit, not data
    for s in ev.studies:
        for t in s.tables:
            if t.table != table:
                continue
            for key, cell in t.cells.items():
                literal = re.sub(r"\{[^}]+\}", "", cell.template)
                nums = set(re.findall(r"\d+(?:\.\d+)?", literal)) - allowed
                assert not nums, f"{s.id} {table}.{key} has numbers typed into its template: {nums}"


def test_every_value_has_provenance(ev):
    df = ev.provenance_frame()
    # issue 20 contract: the existing columns are kept, in order, and `conflict_with` is added
    assert list(df.columns) == ["study", "field", "value", "source", "location", "quote", "derived", "rule",
                                "url", "source_type", "accessed", "conflict_with"]
    assert (df["quote"].str.len() > 0).all()
    assert df.loc[df["derived"], "rule"].notna().all()
    assert df.loc[~df["derived"], "rule"].isna().all()


def test_derived_counts_follow_their_rule(ev):
    errors = [f for f in check_consistency(ev) if f.level == "error"]
    assert not errors, "\n".join(map(str, errors))
    df = ev.outcomes_frame()
    d = df[(df["events_derived"] == True) & df["percent"].notna() & df["events_rule"].fillna("").str.startswith("round(")]  # noqa: E712
    assert len(d) > 0
    for _, r in d.iterrows():  # counts derived from a printed percentage (sums of counts have their own rule)
        cands = count_candidates(r["percent"], int(r["n"]))
        assert r["events"] in cands
        assert tuple(cands) == r["events_candidates"]


def test_known_source_problems_are_flagged(ev):
    f = check_consistency(ev)
    kinds = {(x.study, x.kind) for x in f}
    # Liu 2015: diarrhoea printed as 14/81 in an arm of 181
    assert ("liu2015", "denominator") in kinds
    # Zhang 2017: 5.47% of 116 is not reproduced by any count
    assert ("zhang2017", "percent") in kinds
    # text vs table: Liu 2015 N 368 (text) vs 362 (Table 1); pneumonia 3.9% (text) vs 13/181 (Table 2)
    from lnsynth.evidence.checks import check_restatements

    tv = [x for x in check_restatements(ev) if x.study == "liu2015"]
    assert any("n_assigned_text" in x.field for x in tv)
    assert any("pneumonia" in x.field for x in tv)
    assert not any("remission" in x.field for x in tv)  # text and Table 1 agree there
    assert all(x.level == "warning" for x in tv)


def test_precision_is_kept(ev):
    values = {(r.study, r.field): r.value for r in ev.provenance_rows()}
    liu = [v for (s, f), v in values.items() if s == "liu2015" and isinstance(v, float) and v == 63.0]
    assert liu and all(isinstance(v, float) for v in liu)
    assert Quantity(value=63.0, provenance=Provenance(source="x", location="y", quote="z")).text == "63.0"
    assert Quantity(value=5.47, provenance=Provenance(source="x", location="y", quote="z")).text == "5.47"
    assert Quantity(value=60, provenance=Provenance(source="x", location="y", quote="z")).text == "60"


# ----------------------------------------------------------------------------- bad input

GOOD = """
id: test2020
label: Test et al. 2020
year: 2020
design: {value: RCT, loc: Table 1, quote: "RCT"}
n_randomised: {value: 40, loc: Table 1, quote: "40"}
arms:
  - id: a
    label: A
    regimen: TAC
    n: {value: 20, loc: Table 2, quote: "(2/20)"}
  - id: b
    label: B
    regimen: MMF
    n: {value: 20, loc: Table 2, quote: "(2/20)"}
outcomes:
  - id: cr_a
    arm: a
    endpoint: complete remission
    events: {value: 5, loc: Table 1, quote: "5/20"}
    n: {value: 20, loc: Table 1, quote: "5/20"}
"""


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "test2020.yaml"
    p.write_text(textwrap.dedent(text))
    return p


def test_good_yaml_loads(tmp_path):
    s = load_study_file(_write(tmp_path, GOOD))
    assert s.outcomes[0].events.value == 5


@pytest.mark.parametrize(
    "old,new,field,needle",
    [
        ('events: {value: 5, loc: Table 1, quote: "5/20"}', 'events: {value: 25, loc: Table 1, quote: "25/20"}', "outcomes[0](cr_a)", "events (25) > n (20)"),
        ('regimen: TAC\n    n: {value: 20', 'regimen: TAC\n    n: {value: -20', "arms[0](a).n", "positive integer"),
        ('events: {value: 5, loc: Table 1, quote: "5/20"}', 'events: {value: 5, loc: Table 1}', "outcomes[0](cr_a).events", "quote"),
        ("    arm: a\n", "    arm: zz\n", "<root>", "unknown arm 'zz'"),
        ("regimen: MMF", "regimen: FOO", "arms[1](b).regimen", "unknown regimen"),
    ],
)
def test_bad_yaml_fails_with_one_clear_message(tmp_path, old, new, field, needle):
    assert old in GOOD
    p = _write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(EvidenceError) as ei:
        load_study_file(p)
    msg = str(ei.value)
    assert "test2020.yaml" in msg and "test2020" in msg
    assert field in msg or field == "<root>"
    assert needle in msg
    assert len(msg.splitlines()) == 1, msg


def test_bad_directory_is_reported_by_cli(tmp_path):
    (tmp_path / "studies").mkdir()
    _write(tmp_path / "studies", GOOD.replace('quote: "5/20"}', "}", 1))
    res = runner.invoke(app, ["validate", "--data", str(tmp_path)])
    assert res.exit_code == 2
    assert "test2020" in res.output and "quote" in res.output


# ----------------------------------------------------------------------------- CLI


def test_cli_table1_csv(ev):
    res = runner.invoke(app, ["table1", "--format", "csv"])
    assert res.exit_code == 0, res.output
    df = pd.read_csv(io.StringIO(res.output), dtype=str)
    assert list(df.columns) == ["Trial", "Design", "N", "Outcome Measure", "Treatment Arms", "Follow-Up Duration", "Response Rate"]
    assert df["Trial"].iloc[0].startswith("Moroni et al. 2006")
    bao = df[df["Trial"] == "Bao et al. 2008"].iloc[0]
    assert bao["N"] == "40" and "65% complete remission" in bao["Response Rate"]
    liu = df[df["Trial"] == "Liu et al. 2015"].iloc[0]
    assert "63.0% overall" in liu["Response Rate"]


@pytest.mark.parametrize("fmt", ["md", "html"])
def test_cli_tables_other_formats(fmt):
    for t in ("table1", "table2"):
        res = runner.invoke(app, [t, "--format", fmt])
        assert res.exit_code == 0, res.output
        assert "Bao et al. 2008" in res.output


def test_cli_provenance_covers_table_numbers(ev):
    res = runner.invoke(app, ["provenance", "--format", "csv"])
    assert res.exit_code == 0
    df = pd.read_csv(io.StringIO(res.output))
    # issue 20 contract: the existing columns are kept, in order, and `conflict_with` is added
    assert list(df.columns) == ["study", "field", "value", "source", "location", "quote", "derived", "rule",
                                "url", "source_type", "accessed", "conflict_with"]
    for sid in TABLE1_IDS:
        assert (df["study"] == sid).any()
    res = runner.invoke(app, ["provenance", "--format", "json"])
    assert res.exit_code == 0 and res.output.lstrip().startswith("[")


def test_cli_validate_passes_with_warnings():
    res = runner.invoke(app, ["validate"])
    assert res.exit_code == 0, res.output
    assert "0 errors" in res.output


def test_cli_trials():
    res = runner.invoke(app, ["trials", "--format", "json"])
    assert res.exit_code == 0
    assert "bao2008" in res.output


# ----------------------------------------------------------------------------- properties


@given(n=st.integers(1, 400), e=st.integers(0, 400), d=st.integers(0, 2))
def test_count_candidates_contains_the_true_count(n, e, d):
    e = min(e, n)
    pct = percent_of(e, n, d)
    printed = int(pct) if d == 0 else float(pct)
    cands = count_candidates(printed, n)
    assert e in cands
    for c in cands:
        assert percent_of(c, n, d) == pct


@given(pct=st.integers(0, 100), n=st.integers(1, 500))
def test_nearest_count_reproduces_when_possible(pct, n):
    c = count_candidates(pct, n)
    if c:
        assert nearest_count(pct, n) in c


@settings(max_examples=60)
@given(events=st.integers(-5, 60), n=st.integers(-5, 60))
def test_outcome_schema_accepts_exactly_valid_counts(events, n):
    prov = {"source": "s", "location": "l", "quote": "q"}
    data = {"id": "o", "arm": "a", "endpoint": "complete remission", "events": {"value": events, "provenance": prov}, "n": {"value": n, "provenance": prov}}
    valid = events >= 0 and n > 0 and events <= n
    if valid:
        assert Outcome.model_validate(data).events.value == events
    else:
        with pytest.raises(Exception):
            Outcome.model_validate(data)


@given(v=st.one_of(st.integers(0, 10_000), st.floats(0, 1000, allow_nan=False).map(lambda x: round(x, 2))))
def test_quantity_text_round_trips(v):
    q = Quantity(value=v, provenance=Provenance(source="s", location="l", quote="q"))
    assert type(q.value) is type(v)
    assert (int(q.text) if isinstance(v, int) else float(q.text)) == v

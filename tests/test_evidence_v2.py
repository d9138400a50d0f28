"""Evidence base v2: source register, trials with publications and links, RoB 2, structured outcomes,
evidence currency, and the evidence brought up to date (contracts of `lnsynth trials` and `provenance`)."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from lnsynth.cli import app
from lnsynth.evidence import EvidenceError, load_evidence
from lnsynth.evidence.checks import run_checks
from lnsynth.evidence.load import currency, data_dir
from lnsynth.evidence.schema import MAX_EXTERNAL_QUOTE

runner = CliRunner()


@pytest.fixture(scope="module")
def ev():
    return load_evidence()


def test_source_register_has_type_url_and_date_for_every_external_source(ev):
    ext = [s for s in ev.sources if s.type != "review"]
    assert len(ext) >= 20
    for s in ext:
        assert s.url and s.url.startswith("http"), s.id
        assert s.accessed is not None, s.id
    types = {s.type for s in ext}
    assert {"abstract", "trial-registry results"} <= types
    # mirrors say what they copy
    assert any(s.mirror_of for s in ext)


def test_quotes_from_external_sources_are_short(ev):
    ext = {s.id for s in ev.sources if s.type != "review"}
    rows = [r for r in ev.provenance_rows() if r.source in ext]
    assert len(rows) >= 150  # "at least 150 new sourced values"
    assert all(len(" ".join(r.quote.split())) <= MAX_EXTERNAL_QUOTE for r in rows)


def test_at_least_ten_new_trials_or_publications(ev):
    new = [t for t in ev.trial_records() if t["latest_year"] >= 2021 or any(p["role"] != "review" for p in t["publications"])]
    assert len(new) >= 10
    ids = {s.id for s in ev.studies}
    assert {"rovin2021", "saxena2024", "zheng2022", "amudalapalli2025", "ong2005", "mendonca2017", "rathi2016"} <= ids


def test_trial_links_and_publications(ev):
    aurora2 = ev.study("saxena2024")
    assert not aurora2.randomised and aurora2.n_randomised is None and aurora2.n_enrolled is not None
    assert ("continuation_of", "rovin2021") in {(ln.type, ln.trial) for ln in aurora2.links}
    assert ("maintenance_phase_of", "liu2015") in {(ln.type, ln.trial) for ln in ev.study("zhang2017").links}
    mok = ev.study("mok2016")
    roles = {p.role for p in mok.publications}
    assert {"primary", "follow-up"} <= roles  # Mok 2016 and its 10-year follow-up (Mok 2020)


def test_coding_fixes(ev):
    mor = ev.study("moroni2006")
    for o in mor.outcomes:
        if o.endpoint in ("activity index", "chronicity index"):
            assert o.n is not None and o.n.value in (14, 15) and o.analysis_set == "biopsied subset"
    for sid in ("li2012", "mok2016"):
        s = ev.study(sid)
        six = [o for o in s.outcomes if o.timepoint is not None and o.timepoint.unit == "month" and o.timepoint.value == 6
               and o.timepoint.provenance.source == "peleg2020"]
        assert six and all(o.timepoint.weeks == 24 for o in six), sid  # Table 1 prints 24 wk
    mok = ev.study("mok2016")
    for o in mok.outcomes:
        if o.id in ("flare_mmf", "flare_tac", "or_mmf", "or_tac"):
            assert o.timepoint is not None, o.id
    liu_pneu = [a for a in ev.study("liu2015").adverse_events if a.id == "ae_pneumonia_mt"][0]
    assert liu_pneu.serious is None and liu_pneu.category == "pneumonia"
    assert ev.study("appel2009").design.value.startswith("randomised")
    assert ev.study("appel2009").arm("cyc").regimen == "IVCYC"
    for sid in ("mok2013", "karasawa2018"):
        s = ev.study(sid)
        assert not s.randomised and s.n_randomised is None and s.n_enrolled is not None


def test_secondary_figure_disagreeing_with_primary_is_flagged(ev):
    f = [x for x in run_checks(ev, quotes=False) if x.kind == "secondary-vs-primary"]
    assert any(x.study == "palmer2017" and "1.86" in x.message and "1.74" in x.message for x in f)


def test_induction_network_has_a_closed_loop_across_trials(ev):
    import networkx as nx

    from lnsynth.analyses.network_data import arm_level_data

    d = arm_level_data(ev, "complete remission", approximate=True, warn=False)
    g = nx.Graph()
    for _, x in d.frame.groupby("study"):
        t = list(x["treatment"])
        g.add_edges_from((a, b) for i, a in enumerate(t) for b in t[i + 1:])
    assert nx.cycle_basis(g), "no closed loop in the induction network"


def test_cli_trials_contract_and_since():
    res = runner.invoke(app, ["trials", "--format", "json"])
    assert res.exit_code == 0, res.output
    recs = json.loads(res.stdout[res.stdout.index("["):res.stdout.rindex("]") + 1])
    assert all({"id", "publications", "links"} <= set(t) for t in recs)
    assert all({"source", "year"} <= set(p) for t in recs for p in t["publications"])
    assert "Evidence searched 2026-12-08" in res.output
    new = runner.invoke(app, ["trials", "--since", "2021", "--format", "json"])
    ids = {t["id"] for t in json.loads(new.stdout[new.stdout.index("["):new.stdout.rindex("]") + 1])}
    assert {"rovin2021", "saxena2024", "zheng2022"} <= ids and "bao2008" not in ids


def test_cli_provenance_keeps_columns_and_adds_url_type_accessed():
    res = runner.invoke(app, ["provenance", "--format", "csv"])
    assert res.exit_code == 0
    df = pd.read_csv(io.StringIO(res.stdout))
    assert list(df.columns)[:8] == ["study", "field", "value", "source", "location", "quote", "derived", "rule"]
    assert {"url", "source_type", "accessed"} <= set(df.columns)
    ext = df[df["source"] != "peleg2020"]
    assert ext["url"].notna().all() and ext["accessed"].notna().all()


def test_currency_is_stated(ev):
    c = currency(ev)
    assert c["searched"] == "2026-12-08" and c["sources_searched"] and "rovin2021" in c["new_since_review"]


def test_curation_lists_every_new_source(ev):
    text = (data_dir() / "CURATION.md").read_text(encoding="utf-8")
    for s in ev.sources:
        if s.type != "review":
            assert f"`{s.id}`" in text, s.id


def _copy(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    shutil.copytree(data_dir(), root)
    return root


def _edit(path: Path, fn) -> None:
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    fn(raw)
    path.write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True), encoding="utf-8")


@pytest.mark.parametrize("change,needle", [
    (lambda r: r["rob"].update(randomisation={"judgement": "low"}), "rob.randomisation"),
    (lambda r: r["links"].append({"type": "continuation_of", "trial": "nosuch2020"}), "links[1].trial"),
    (lambda r: r["outcomes"][0].update(analysis_set="sometimes"), "analysis_set"),
    (lambda r: r.update(n_randomised={"value": 216, "loc": "x", "quote": "216"}), "n_randomised"),
])
def test_schema_v2_errors_name_file_trial_and_field(tmp_path, change, needle):
    root = _copy(tmp_path)
    _edit(root / "studies" / "saxena2024.yaml", change)
    with pytest.raises(EvidenceError) as e:
        load_evidence(root)
    msg = str(e.value)
    assert "saxena2024" in msg and needle.split("[")[0] in msg, msg


def test_long_external_quote_is_an_error(tmp_path):
    root = _copy(tmp_path)

    def lengthen(r):
        r["n_enrolled"]["quote"] = "x " * 120
    _edit(root / "studies" / "saxena2024.yaml", lengthen)
    with pytest.raises(EvidenceError, match="at most 160"):
        load_evidence(root)
    res = runner.invoke(app, ["validate", "--data", str(root)])
    assert res.exit_code == 2 and "saxena2024" in res.output

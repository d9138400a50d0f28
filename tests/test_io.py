"""Own-data input (lnsynth.io.read_table, `lnsynth meta/nma --input`): metafor-identical results from CSV,
XLSX and RevMan 5 files, the JSON/CSV/markdown contract, and a corpus of bad inputs that must each exit 2
with a one-line message naming the file, row and column."""
from __future__ import annotations

import json
import math
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lnsynth.cli import app
from lnsynth.io import DataError, DataWarning, read_table

REPO = Path(__file__).resolve().parents[1]
EX = REPO / "docs" / "examples"
REF = Path(__file__).resolve().parent / "reference"
runner = CliRunner()

XLSX_COLUMNS = "study=Trial,ai=Events (BCG),n1i=N (BCG),ci=Events (control),n2i=N (control)"


def _ref(name):
    return json.loads((REF / name).read_text())


def _case(dataset, method, test):
    return next(c for c in _ref("pairwise_reference.json")["cases"]
                if c["dataset"] == dataset and c["method"] == method and c["test"] == test)


def _close(a, b, tol=1e-9):
    assert math.isclose(a, b, rel_tol=tol, abs_tol=1e-12), (a, b)


def _sorted_es(td, measure):
    es = td.effect_sizes(measure)
    order = np.argsort(np.array(td.labels, dtype=object))
    return np.array(td.labels, dtype=object)[order], es.yi[order], es.vi[order]


# ------------------------------------------------------------------------------- metafor parity
@pytest.fixture(scope="module")
def bcg_tables():
    return {
        "csv": read_table(EX / "bcg.csv"),
        "xlsx": read_table(EX / "bcg.xlsx", columns=XLSX_COLUMNS),
        "xls": read_table(EX / "bcg.xls", columns=XLSX_COLUMNS),
        "rm5": read_table(EX / "bcg-and-stroke.rm5", sheet="1.1"),
    }


@pytest.mark.parametrize("fmt", ["csv", "xlsx", "xls", "rm5"])
@pytest.mark.parametrize("method,test", [("REML", "z"), ("REML", "knha"), ("DL", "z"), ("FE", "z"), ("PM", "knha")])
def test_bcg_file_matches_metafor(bcg_tables, fmt, method, test):
    td = bcg_tables[fmt]
    assert td.layout == "binary" and td.k == 13 and td.measure == "RR"
    ds = next(d for d in _ref("pairwise_reference.json")["datasets"] if d["name"] == "bcg_logRR")
    csv_labels, yi, vi = _sorted_es(bcg_tables["csv"], "RR")
    labels, yi2, vi2 = _sorted_es(td, "RR")
    assert list(labels) == list(csv_labels)
    np.testing.assert_array_equal(yi, yi2)
    np.testing.assert_array_equal(vi, vi2)
    if fmt == "csv":  # file order = dat.bcg order
        np.testing.assert_allclose(td.effect_sizes("RR").yi, ds["yi"], rtol=1e-13)
        np.testing.assert_allclose(td.effect_sizes("RR").vi, ds["vi"], rtol=1e-13)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = td.meta_analysis("RR", method=method, test=test)
    ref = _case("bcg_logRR", method, test)
    for key in ("estimate", "se", "ci_low", "ci_high", "pi_low", "pi_high", "q", "i2"):
        _close(getattr(res, key), ref[key], 1e-7)
    _close(res.tau2, ref["tau2"], 1e-7)


def test_bcg_or_from_csv_matches_metafor():
    res = read_table(EX / "bcg.csv", measure="OR").meta_analysis(method="REML")
    ref = _case("bcg_logOR", "REML", "z")
    for key in ("estimate", "se", "tau2", "ci_low", "ci_high"):
        _close(getattr(res, key), ref[key], 1e-7)


def test_continuous_csv_and_rm5_match_metafor():
    ds = next(d for d in _ref("pairwise_reference.json")["datasets"] if d["name"] == "normand1999_MD")
    csv_td = read_table(EX / "normand1999.csv")
    assert csv_td.layout == "continuous" and csv_td.measure == "MD"
    np.testing.assert_allclose(csv_td.effect_sizes().yi, ds["yi"], rtol=1e-13)
    np.testing.assert_allclose(csv_td.effect_sizes().vi, ds["vi"], rtol=1e-13)
    rm5 = read_table(EX / "bcg-and-stroke.rm5", sheet="2.1")
    assert rm5.measure == "MD" and rm5.labels == csv_td.labels
    np.testing.assert_array_equal(rm5.effect_sizes().yi, csv_td.effect_sizes().yi)
    ref = _case("normand1999_MD", "REML", "z")
    res = rm5.meta_analysis(method="REML")
    _close(res.estimate, ref["estimate"], 1e-7)
    _close(res.tau2, ref["tau2"], 1e-7)


def test_subgroup_and_meta_regression_from_csv_match_metafor():
    ref = _ref("sensitivity_reference.json")
    td = read_table(EX / "bcg.csv")
    sref = next(c for c in ref["subgroup"] if c["data"] == "bcg" and c["method"] == "DL" and c["test"] == "z")
    sg = td.subgroup_analysis("alloc", method="DL")
    assert list(sg.groups) == sref["groups"]
    np.testing.assert_allclose(sg.separate["estimate"], sref["separate_estimate"], rtol=1e-9)
    _close(sg.test_separate["q"], sref["q_between"], 1e-9)
    _close(sg.test_common["q"], sref["qm"], 1e-7)
    rref = next(c for c in ref["regression"] if c["data"] == "bcg" and c["mods"] == ["ablat"]
                and c["method"] == "REML" and c["test"] == "z")
    reg = td.meta_regression("ablat", method="REML")
    np.testing.assert_allclose(reg.coefficients, rref["coefficients"], rtol=1e-7)
    _close(reg.tau2, rref["tau2"], 1e-6)


def test_rm5_subgroups_are_read_from_the_file():
    td = read_table(EX / "bcg-and-stroke.rm5", sheet="1.1")
    sg = td.subgroup_analysis("subgroup", method="DL")
    sref = next(c for c in _ref("sensitivity_reference.json")["subgroup"]
                if c["data"] == "bcg" and c["method"] == "DL" and c["test"] == "z")
    _close(sg.test_separate["q"], sref["q_between"], 1e-9)


def test_rm5_with_several_outcomes_warns_which_it_reads():
    with pytest.warns(DataWarning, match=r"2 outcomes; reading 1\.1 'Tuberculosis'"):
        td = read_table(EX / "bcg-and-stroke.rm5")
    assert td.outcome == "1.1 Tuberculosis" and td.labels[0] == "Frimodt-Moller et al 1973"


def test_network_csv_matches_metafor():
    case = next(c for c in _ref("network_reference.json")["cases"] if c["name"] == "hasselblad1998")
    td = read_table(EX / "smoking_arms.csv", layout="arms")
    fit = td.network("OR", method="REML", reference=case["reference"])
    ref = case["fits"]["REML"]
    re_ = fit.relative_effects().set_index("treatment")
    for t, est, se in zip(ref["params"], ref["estimate"], ref["se"]):
        _close(re_.loc[t, "estimate"], est, 1e-6)
        _close(re_.loc[t, "se"], se, 1e-6)


def test_generic_yi_sei_and_bi_di_columns(tmp_path):
    td = read_table(EX / "bcg.csv")
    es = td.effect_sizes("RR")
    p = tmp_path / "gen.csv"
    p.write_text("study,yi,sei\n" + "".join(f"{lab},{float(y)!r},{math.sqrt(float(v))!r}\n" for lab, y, v in zip(td.labels, es.yi, es.vi)))
    g = read_table(p, measure="RR")
    assert g.layout == "generic"
    ref = _case("bcg_logRR", "REML", "z")
    _close(g.meta_analysis(method="REML").estimate, ref["estimate"], 1e-9)
    # metafor's ai/bi/ci/di (non-events) instead of totals
    q = tmp_path / "abcd.csv"
    d = td.data
    q.write_text("trial,ai,bi,ci,di\n" + "".join(
        f"{lab},{int(a)},{int(n1 - a)},{int(c)},{int(n2 - c)}\n"
        for lab, a, n1, c, n2 in zip(td.labels, d["events_treat"], d["n_treat"], d["events_ctrl"], d["n_ctrl"])))
    t2 = read_table(q, measure="RR")
    np.testing.assert_array_equal(t2.effect_sizes().yi, es.yi)


def test_double_zero_studies_dropped_with_a_warning_for_ratio_measures(tmp_path):
    p = tmp_path / "z.csv"
    p.write_text("study,ai,n1i,ci,n2i\nA,0,10,0,12\nB,3,10,1,10\nC,5,20,2,20\nD,4,15,4,16\n")
    td = read_table(p)
    with pytest.warns(DataWarning, match=r"dropped 1 study .*'A' \(row 2\)"):
        res = td.meta_analysis("RR")
    assert res.k == 3
    with pytest.warns(DataWarning, match=r"kept 1 study .*'A' \(row 2\)"):
        assert td.meta_analysis("RR", drop00=False).k == 4
    with pytest.warns(DataWarning, match="kept"):  # RD: double zeros are informative, kept (and said)
        assert td.meta_analysis("RD").k == 4


# ------------------------------------------------------------------------------------------ CLI
def test_cli_meta_json_contract(tmp_path):
    out = tmp_path / "out"
    r = runner.invoke(app, ["meta", "--input", str(EX / "bcg.csv"), "--measure", "RR", "--method", "REML",
                            "--test", "knha", "--format", "json", "--out", str(out)])
    assert r.exit_code == 0, r.output
    p = json.loads(r.stdout)
    for key in ("k", "measure", "method", "test", "estimate", "ci_low", "ci_high", "pi_low", "pi_high", "tau2", "i2",
                "q", "q_pvalue", "log_estimate", "log_ci_low", "log_ci_high", "se", "pvalue", "studies"):
        assert key in p, key
    ref = _case("bcg_logRR", "REML", "knha")
    _close(p["log_estimate"], ref["estimate"], 1e-7)
    _close(p["estimate"], math.exp(ref["estimate"]), 1e-7)
    _close(p["ci_low"], math.exp(ref["ci_low"]), 1e-7)
    assert p["k"] == 13 and p["measure"] == "RR" and p["test"] == "knha" and len(p["studies"]) == 13
    assert p["studies"][0]["row"] == 2 and p["studies"][0]["events_treat"] == 4
    assert isinstance(p["studies"][0]["n_treat"], int)
    for name in ("summary.md", "summary.csv", "summary.json", "forest.png"):
        assert (out / name).stat().st_size > 100, name
    assert json.loads((out / "summary.json").read_text())["k"] == 13
    md = (out / "summary.md").read_text()
    assert "RR (back-transformed)" in md and "log RR (model scale)" in md and "nan" not in md.lower()
    csv_text = (out / "summary.csv").read_text()
    assert "model_estimate" in csv_text.splitlines()[0] and "nan" not in csv_text.lower()


def test_cli_meta_csv_has_both_scales_and_md_has_no_nan(tmp_path):
    r = runner.invoke(app, ["meta", "-i", str(EX / "bcg.csv"), "--format", "csv", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    import io

    import pandas as pd

    df = pd.read_csv(io.StringIO(r.stdout))
    assert {"estimate", "model_estimate", "ci_low", "model_ci_low"} <= set(df.columns)
    _close(float(df.loc[0, "estimate"]), math.exp(float(df.loc[0, "model_estimate"])), 1e-12)
    r = runner.invoke(app, ["meta", "-i", str(EX / "normand1999.csv"), "--method", "FE", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert "nan" not in r.stdout.lower() and "MD" in r.stdout


def test_cli_meta_subgroup_moderator_xlsx_rm5(tmp_path):
    r = runner.invoke(app, ["meta", "-i", str(EX / "bcg.csv"), "--subgroup", "alloc", "--moderator", "ablat",
                            "--method", "DL", "--format", "json", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    p = json.loads(r.stdout)
    assert [g["subgroup"] for g in p["subgroup"]["groups"]] == ["alternate", "random", "systematic"]
    assert p["moderator"]["names"] == ["intrcpt", "ablat"]
    r = runner.invoke(app, ["meta", "-i", str(EX / "bcg.xlsx"), "--columns", XLSX_COLUMNS, "--format", "json",
                            "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    _close(json.loads(r.stdout)["log_estimate"], _case("bcg_logRR", "REML", "z")["estimate"], 1e-7)
    r = runner.invoke(app, ["meta", "-i", str(EX / "bcg-and-stroke.rm5"), "--sheet", "1.1", "--format", "json",
                            "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    _close(json.loads(r.stdout)["log_estimate"], _case("bcg_logRR", "REML", "z")["estimate"], 1e-7)


def test_cli_meta_without_out_writes_nothing(tmp_path, monkeypatch):
    """Issue 21: files only under a path the user gave; without --out nothing is written."""
    monkeypatch.chdir(tmp_path)
    shutil.copy(EX / "bcg.csv", tmp_path / "bcg.csv")
    r = runner.invoke(app, ["meta", "--input", "bcg.csv"])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bcg.csv"]
    r = runner.invoke(app, ["meta", "--input", "bcg.csv", "--out", "res"])
    assert r.exit_code == 0, r.output
    assert {"summary.md", "summary.csv", "summary.json", "forest.png"} <= {p.name for p in (tmp_path / "res").iterdir()}


def test_cli_evidence_meta_writes_into_out_only(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, ["meta", "--outcome", "complete remission", "--treatment", "CNI+MMF", "--control", "MMF",
                            "--format", "csv"])
    assert r.exit_code == 0, r.output
    assert list(tmp_path.iterdir()) == []
    assert "model_estimate" in r.stdout.splitlines()[0]
    r = runner.invoke(app, ["meta", "--outcome", "complete remission", "--treatment", "CNI+MMF", "--control", "MMF",
                            "--format", "csv", "--out", "out", "--fig-format", "png"])
    assert r.exit_code == 0, r.output
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert (tmp_path / "out" / "forest.png").exists()


def test_cli_nma_input(tmp_path):
    r = runner.invoke(app, ["nma", "--input", str(EX / "smoking_arms.csv"), "--reference", "no_contact",
                            "--format", "json", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    p = json.loads(r.stdout)
    assert p["reference"] == "no_contact" and p["n_studies"] == 24
    for name in ("league.csv", "summary.json", "network.png", "nma-forest.png"):
        assert (tmp_path / name).stat().st_size > 100, name


def test_cli_version_and_short_help():
    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and r.stdout.strip().startswith("lnsynth ")
    r = runner.invoke(app, ["-h"])
    assert r.exit_code == 0 and "meta" in r.stdout
    r = runner.invoke(app, ["meta", "-h"])
    assert r.exit_code == 0 and "--input" in r.stdout


def test_cli_data_folder_without_yaml_exits_2(tmp_path):
    r = runner.invoke(app, ["trials", "--data", str(tmp_path)])
    assert r.exit_code == 2 and "no evidence YAML" in r.stderr and "Traceback" not in r.output


def test_cli_meta_needs_input_or_evidence_options(tmp_path):
    r = runner.invoke(app, ["meta", "--outcome", "complete remission", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "--treatment" in r.stderr


def test_serve_says_what_to_install(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "uvicorn" else real(name, *a))
    r = runner.invoke(app, ["serve"])
    assert r.exit_code == 2
    assert "uvicorn" in r.stderr and "lnsynth[web]" in r.stderr and "Traceback" not in r.output


# ------------------------------------------------------------------------------ bad input corpus
GOOD = "study,ai,n1i,ci,n2i\nA,4,20,6,21\nB,3,18,7,19\nC,10,40,12,41\n"
CONT = "study,m1i,sd1i,n1i,m2i,sd2i,n2i\nA,5.1,1.2,20,6.3,1.1,21\nB,4.8,1.0,18,6.0,1.3,19\n"
ARMS = "study,treatment,events,n\nS1,A,5,20\nS1,B,8,20\nS2,A,4,22\nS2,C,9,21\nS3,B,7,19\nS3,C,6,20\n"

# (name, filename, content, extra args, command, expected substrings in the message)
CORPUS = [
    ("empty file", "e.csv", "", [], "meta", ["e.csv", "empty"]),
    ("whitespace only", "w.csv", "  \n\n", [], "meta", ["w.csv", "empty"]),
    ("header only", "h.csv", "study,ai,n1i,ci,n2i\n", [], "meta", ["h.csv", "no data rows"]),
    ("unknown column in --columns", "u.csv", GOOD, ["--columns", "study=Trial"], "meta",
     ["u.csv", "row 1", "column 'Trial'"]),
    ("unknown field in --columns", "f.csv", GOOD, ["--columns", "foo=ai"], "meta", ["f.csv", "unknown field 'foo'"]),
    ("missing required column", "m.csv", "study,ai,n1i,ci\nA,4,20,6\n", [], "meta", ["m.csv", "row 1", "n2i"]),
    ("non-numeric cell", "n.csv", GOOD.replace("B,3,", "B,three,"), [], "meta", ["n.csv", "row 3", "column 'ai' (B)", "three"]),
    ("missing cell", "mc.csv", GOOD.replace("C,10,40,", "C,10,,"), [], "meta", ["mc.csv", "row 4", "column 'n1i' (C)", "missing"]),
    ("NA cell", "na.csv", GOOD.replace("A,4,20,6,21", "A,4,20,NA,21"), [], "meta", ["na.csv", "row 2", "column 'ci' (D)"]),
    ("events > n", "en.csv", GOOD.replace("A,4,20", "A,24,20"), [], "meta", ["en.csv", "row 2", "column 'ai' (B)", "exceed"]),
    ("control events > n", "en2.csv", GOOD.replace("B,3,18,7,19", "B,3,18,27,19"), [], "meta", ["en2.csv", "row 3", "column 'ci' (D)"]),
    ("negative events", "ne.csv", GOOD.replace("A,4,", "A,-4,"), [], "meta", ["ne.csv", "row 2", "column 'ai' (B)", "negative"]),
    ("negative n", "nn.csv", GOOD.replace("C,10,40,12,41", "C,10,40,12,-41"), [], "meta", ["nn.csv", "row 4", "column 'n2i' (E)"]),
    ("zero n", "zn.csv", GOOD.replace("A,4,20,6,21", "A,0,0,6,21"), [], "meta", ["zn.csv", "row 2", "column 'n1i' (C)"]),
    ("negative SD", "sd.csv", CONT.replace("A,5.1,1.2", "A,5.1,-1.2"), [], "meta", ["sd.csv", "row 2", "column 'sd1i' (C)", "negative"]),
    ("zero SD", "sd0.csv", CONT.replace("B,4.8,1.0,18,6.0,1.3", "B,4.8,1.0,18,6.0,0"), [], "meta", ["sd0.csv", "row 3", "column 'sd2i' (F)"]),
    ("missing study label", "ms.csv", GOOD.replace("B,3,", ",3,"), [], "meta", ["ms.csv", "row 3", "column 'study' (A)"]),
    ("extra cell", "x.csv", GOOD.replace("C,10,40,12,41", "C,10,40,12,41,7"), [], "meta", ["x.csv", "row 4", "column F"]),
    ("duplicate header", "d.csv", "study,ai,ai,ci,n2i\nA,1,2,3,4\n", [], "meta", ["d.csv", "row 1", "duplicate"]),
    ("empty header cell", "eh.csv", "study,,n1i,ci,n2i\nA,1,2,3,4\n", [], "meta", ["eh.csv", "row 1", "column B"]),
    ("infinite value", "inf.csv", GOOD.replace("A,4,20", "A,4,inf"), [], "meta", ["inf.csv", "row 2", "column 'n1i' (C)"]),
    ("decimal comma", "dc.csv", CONT.replace(",", ";").replace("5.1", "5,1"), [], "meta", ["dc.csv", "row 2", "column 'm1i' (B)", "decimal comma"]),
    ("unknown measure", "um.csv", GOOD, ["--measure", "XYZ"], "meta", ["um.csv", "unknown measure 'XYZ'"]),
    ("HR on 2x2 counts", "hr.csv", GOOD, ["--measure", "HR"], "meta", ["hr.csv", "row 1", "HR"]),
    ("MD on 2x2 counts", "md.csv", GOOD, ["--measure", "MD"], "meta", ["md.csv", "row 1", "m1i"]),
    ("subgroup column absent", "sg.csv", GOOD, ["--subgroup", "region"], "meta", ["sg.csv", "row 1", "column 'region'"]),
    ("subgroup cell missing", "sgm.csv", "study,ai,n1i,ci,n2i,region\nA,4,20,6,21,EU\nB,3,18,7,19,\nC,1,9,2,9,US\n",
     ["--subgroup", "region"], "meta", ["sgm.csv", "row 3", "column 'region' (F)"]),
    ("moderator cell missing", "mod.csv", "study,ai,n1i,ci,n2i,dose\nA,4,20,6,21,1\nB,3,18,7,19,2\nC,1,9,2,9,.\nD,5,30,9,31,4\n",
     ["--moderator", "dose"], "meta", ["mod.csv", "row 4", "column 'dose' (F)"]),
    ("negative variance", "vi.csv", "study,yi,vi\nA,0.1,0.04\nB,0.3,-0.02\n", [], "meta", ["vi.csv", "row 3", "column 'vi' (C)"]),
    ("zero standard error", "se.csv", "study,yi,sei\nA,0.1,0.2\nB,0.3,0\n", [], "meta", ["se.csv", "row 3", "column 'sei' (C)"]),
    ("all studies double zero", "dz.csv", "study,ai,n1i,ci,n2i\nA,0,10,0,10\nB,0,12,0,11\n", [], "meta", ["dz.csv", "every study"]),
    ("MH with means", "mh.csv", CONT, ["--method", "MH"], "meta", ["mh.csv", "MH"]),
    ("file not found", "missing.csv", None, [], "meta", ["missing.csv", "not found"]),
    ("long format to meta", "arms.csv", ARMS, [], "meta", ["arms.csv", "nma --input"]),
    ("nma: wide file", "wide.csv", GOOD, [], "nma", ["wide.csv", "row 1", "treatment"]),
    ("nma: single-arm study", "one.csv", ARMS + "S4,A,3,10\n", [], "nma", ["one.csv", "row 8", "single arm"]),
    ("nma: duplicate arm", "dup.csv", ARMS.replace("S2,C,9,21", "S2,A,9,21"), [], "nma", ["dup.csv", "row 5", "twice"]),
    ("nma: events > n", "nen.csv", ARMS.replace("S3,B,7,19", "S3,B,27,19"), [], "nma", ["nen.csv", "row 6", "column 'events' (C)"]),
    ("nma: unknown reference", "ref.csv", ARMS, ["--reference", "Z"], "nma", ["ref.csv", "reference treatment 'Z'"]),
    ("nma: HR", "nhr.csv", ARMS, ["--measure", "HR"], "nma", ["nhr.csv", "HR"]),
]


def _write(tmp_path, fname, content):
    p = tmp_path / fname
    if content is not None:
        p.write_text(content)
    return p


@pytest.mark.parametrize("name,fname,content,args,cmd,expect", CORPUS, ids=[c[0] for c in CORPUS])
def test_bad_input_exits_2_naming_the_place(tmp_path, name, fname, content, args, cmd, expect):
    p = _write(tmp_path, fname, content)
    r = runner.invoke(app, [cmd, "--input", str(p), *args, "--out", str(tmp_path / "out")])
    assert r.exit_code == 2, (r.exit_code, r.output)
    assert "Traceback" not in r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    msg = r.stderr.strip().splitlines()
    errors = [m for m in msg if m.startswith("lnsynth: error:")]
    assert len(errors) == 1, r.stderr
    for e in expect:
        assert e in errors[0], (e, errors[0])


def _xlsx(path, rows):
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    for r in rows:
        ws.append(r)
    wb.save(path)
    return path


def test_bad_xlsx_cells_are_located_by_row_and_column_letter(tmp_path):
    p = _xlsx(tmp_path / "bad.xlsx", [["study", "ai", "n1i", "ci", "n2i"], ["A", 4, 20, 6, 21], ["B", "x", 18, 7, 19]])
    with pytest.raises(DataError, match=r"bad\.xlsx, row 3, column 'ai' \(B\): not a number: 'x'"):
        read_table(p)
    p = _xlsx(tmp_path / "gt.xlsx", [[None], ["study", "ai", "n1i", "ci", "n2i"], ["A", 4, 20, 6, 21], ["B", 30, 18, 7, 19]])
    with pytest.raises(DataError, match=r"row 4, column 'ai' \(B\).*exceed"):
        read_table(p)
    r = runner.invoke(app, ["meta", "-i", str(p), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "row 4" in r.stderr
    r = runner.invoke(app, ["meta", "-i", str(p), "--sheet", "nope", "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "sheet 'nope' not found" in r.stderr
    fake = tmp_path / "fake.xlsx"
    fake.write_text("study,ai\n")
    r = runner.invoke(app, ["meta", "-i", str(fake), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "fake.xlsx" in r.stderr and "Excel" in r.stderr


def test_xls_cells_are_located_by_sheet_row_and_column_letter(tmp_path):
    """Excel 97-2003 .xls (xlrd): the same checks and messages as .xlsx, per sheet."""
    p = Path(__file__).parent / "data" / "bad.xls"  # sheets "data" (a text cell) and "gt" (events > n)
    with pytest.raises(DataError, match=r"bad\.xls \[data\], row 3, column 'ai' \(B\): not a number: 'x'"):
        read_table(p)
    with pytest.raises(DataError, match=r"\[gt\], row 4, column 'ai' \(B\).*exceed"):
        read_table(p, sheet="gt")
    r = runner.invoke(app, ["meta", "-i", str(p), "--sheet", "3", "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "sheet 3 does not exist" in r.stderr
    fake = tmp_path / "fake.xls"
    fake.write_text("study,ai\n")
    r = runner.invoke(app, ["meta", "-i", str(fake), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "fake.xls" in r.stderr and "Excel 97-2003" in r.stderr


def test_bad_rm5_files(tmp_path):
    good = (EX / "bcg-and-stroke.rm5").read_text()
    p = tmp_path / "broken.rm5"
    p.write_text(good[: len(good) // 2])
    r = runner.invoke(app, ["meta", "-i", str(p), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "broken.rm5" in r.stderr and "XML" in r.stderr
    p = tmp_path / "gt.rm5"
    p.write_text(good.replace('EVENTS_1="4" ', 'EVENTS_1="400" ', 1))
    with pytest.raises(DataError) as exc:
        read_table(p, sheet="1.1")
    assert "gt.rm5" in str(exc.value) and "column EVENTS_1" in str(exc.value) and "row " in str(exc.value)
    r = runner.invoke(app, ["meta", "-i", str(EX / "bcg-and-stroke.rm5"), "--sheet", "9.9", "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "outcome '9.9' not found" in r.stderr


def test_blank_interior_row_is_skipped_with_a_warning(tmp_path):
    p = tmp_path / "b.csv"
    p.write_text("study,ai,n1i,ci,n2i\nA,4,20,6,21\n,,,,\nB,3,18,7,19\n\n")
    with pytest.warns(DataWarning, match=r"row 3: blank row skipped"):
        td = read_table(p)
    assert td.rows == (2, 4)


# --------------------------------------------------------------------------- figures written by --out
def test_cli_meta_writes_every_figure_format(tmp_path):
    r = runner.invoke(app, ["meta", "-i", str(EX / "bcg.csv"), "--format", "json", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    for name in ("forest.png", "forest.svg", "forest.pdf", "funnel.png", "funnel.svg", "funnel.pdf"):
        assert (tmp_path / name).stat().st_size > 100, name
    assert (tmp_path / "forest.pdf").read_bytes()[:4] == b"%PDF"
    svg = (tmp_path / "forest.svg").read_text()
    # arm events/N and the default favours labels are drawn (matplotlib keeps SVG text as glyphs; the
    # labels survive as <!-- comments -->)
    assert "favours control" in svg and "favours treatment" in svg and "Events/N" in svg and "4/123" in svg


def test_cli_meta_favours_option_and_funnel_skipped_for_k_below_3(tmp_path):
    p = tmp_path / "two.csv"
    p.write_text("study,ai,n1i,ci,n2i\nA,4,20,6,21\nB,3,18,7,19\n")
    out = tmp_path / "o"
    r = runner.invoke(app, ["meta", "-i", str(p), "--favours", "fewer deaths,more deaths", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert not (out / "funnel.png").exists() and (out / "forest.svg").exists()
    assert any("funnel plot not drawn: k = 2" in n for n in json.loads((out / "summary.json").read_text())["notes"])
    svg = (out / "forest.svg").read_text()
    assert "fewer deaths" in svg and "favours control" not in svg
    r = runner.invoke(app, ["meta", "-i", str(p), "--favours", "only-one", "--out", str(out)])
    assert r.exit_code == 2 and "--favours" in r.stderr


def test_cli_meta_fig_format(tmp_path):
    r = runner.invoke(app, ["meta", "-i", str(EX / "bcg.csv"), "--fig-format", "png", "--out", str(tmp_path / "a")])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "a").glob("*.*") if p.suffix != ".json" and p.stem != "summary") \
        == ["forest.png", "funnel.png"]
    r = runner.invoke(app, ["meta", "-i", str(EX / "bcg.csv"), "--fig-format", "png,eps", "--out", str(tmp_path / "b")])
    assert r.exit_code == 2 and "--fig-format" in r.stderr and "'png,eps'" in r.stderr
    assert not (tmp_path / "b").exists()


def test_cli_meta_subgroup_forest(tmp_path):
    r = runner.invoke(app, ["meta", "-i", str(EX / "bcg.csv"), "--subgroup", "alloc", "--format", "json",
                            "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    svg = (tmp_path / "forest.svg").read_text()
    assert "Test for subgroup differences" in svg and "Subtotal" in svg and "systematic" in svg


def test_cli_meta_mh_correct(tmp_path):
    from lnsynth.pairwise import meta_analysis

    got = {}
    for flag in ("--mh-correct", "--no-mh-correct"):
        r = runner.invoke(app, ["meta", "-i", str(EX / "bcg.csv"), "--measure", "OR", "--method", "MH", flag,
                                "--format", "json", "--plot", "", "--out", str(tmp_path)])
        assert r.exit_code == 0, r.output
        got[flag] = json.loads(r.stdout)["cmh_test"]
    es = read_table(EX / "bcg.csv").effect_sizes("OR")
    for flag, correct in (("--mh-correct", True), ("--no-mh-correct", False)):
        want = meta_analysis(es, method="MH", correct=correct).extra["cmh"]
        assert got[flag]["statistic"] == pytest.approx(float(want), rel=1e-12)
        assert got[flag]["continuity_correction"] is correct
    assert got["--mh-correct"]["statistic"] < got["--no-mh-correct"]["statistic"]


def test_cli_nma_writes_svg_figures(tmp_path):
    r = runner.invoke(app, ["nma", "--input", str(EX / "smoking_arms.csv"), "--format", "csv", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    for name in ("league.csv", "network.svg", "nma-forest.svg"):
        assert (tmp_path / name).stat().st_size > 100, name


# --------------------------------------------------------------------------- rich tables only on a terminal
def test_trials_and_questions_print_csv_when_piped():
    r = runner.invoke(app, ["questions"])  # CliRunner's stdout is not a terminal
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines()[0].startswith("id,") and "\u2503" not in r.stdout and "\u2501" not in r.stdout
    r = runner.invoke(app, ["trials"])
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines()[0].startswith("id,label,")


def test_explicit_table_format_is_plain_text_when_piped():
    r = runner.invoke(app, ["questions", "--format", "table"])
    assert r.exit_code == 0, r.output
    assert "clinical questions" in r.stdout and "cni-addon-mmf" in r.stdout
    assert not any(ch in r.stdout for ch in "\u2503\u2501\u250f\u2502\u2500\u256d")  # no rich box drawing

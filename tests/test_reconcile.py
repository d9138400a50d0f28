"""Reconciliation of the stored syntheses' included-trial lists against the evidence base."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from lnsynth.cli import app
from lnsynth.evidence import load_evidence
from lnsynth.evidence.load import data_dir
from lnsynth.evidence.reconcile import (
    NOT_REACHABLE,
    REASONS,
    STATUSES,
    ReconcileError,
    exclusion_reasons,
    load_reconciliation,
    missing_eligible,
    reconcile,
    reconciliation_path,
)

runner = CliRunner()


@pytest.fixture(scope="module")
def ev():
    return load_evidence()


@pytest.fixture(scope="module")
def contract(ev):
    return reconcile(ev)


def test_contract_keys_and_statuses(contract):
    assert isinstance(contract, list) and contract
    for entry in contract:
        assert set(entry) == {"synthesis", "trials"}
        assert entry["trials"], entry["synthesis"]
        for t in entry["trials"]:
            assert set(t) == {"citation", "status", "trial", "reason"}
            assert t["status"] in STATUSES
            assert isinstance(t["citation"], str) and t["citation"].strip()
            if t["status"] == "in_base":
                assert isinstance(t["trial"], str) and t["reason"] is None
            else:
                assert t["trial"] is None
                assert isinstance(t["reason"], str) and t["reason"]
            if t["status"] == "excluded":
                assert t["reason"] in exclusion_reasons()  # a code of the protocol's fixed list, never free text


def test_every_in_base_trial_exists_as_a_study_file(ev, contract):
    studies = {p.stem for p in (Path(ev.root) / "studies").glob("*.yaml")}
    in_base = [t["trial"] for e in contract for t in e["trials"] if t["status"] == "in_base"]
    assert set(in_base) <= studies
    assert set(in_base) <= {s.id for s in ev.studies}


def test_every_synthesis_file_has_a_reconciliation_entry(ev, contract):
    files = {p.stem for p in (Path(ev.root) / "syntheses").glob("*.yaml")}
    assert files == {e["synthesis"] for e in contract}
    assert {s.id for s in ev.syntheses} == files


def test_protocol_reasons_are_accepted(ev):
    assert set(REASONS) <= exclusion_reasons()
    assert {"not_randomised", "no_cni_arm", "duplicate_report", "awaiting_extraction"} <= exclusion_reasons()


def test_unreachable_lists_are_said_so(contract):
    by = {e["synthesis"]: e["trials"] for e in contract}
    # Hannah 2016's list is reachable nowhere: one not_found entry with the fixed reason
    assert by["hannah2016"] == [{"citation": by["hannah2016"][0]["citation"], "status": "not_found",
                                 "trial": None, "reason": NOT_REACHABLE}]


def _copy_data(tmp_path: Path) -> Path:
    dst = tmp_path / "data"
    shutil.copytree(data_dir(), dst)
    return dst


def _rewrite(root: Path, edit) -> None:
    p = reconciliation_path(root)
    raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    edit(raw)
    p.write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True), encoding="utf-8")


def test_in_base_trial_without_a_study_file_is_an_error(tmp_path, ev):
    root = _copy_data(tmp_path)
    _rewrite(root, lambda raw: raw["syntheses"][0]["trials"].append(
        {"citation": "Nobody 1999", "status": "in_base", "trial": "nobody1999"}))
    with pytest.raises(ReconcileError, match="nobody1999"):
        load_reconciliation(ev, reconciliation_path(root))


def test_an_existing_study_can_be_listed_in_base(tmp_path, ev):
    root = _copy_data(tmp_path)
    sid = ev.studies[0].id
    _rewrite(root, lambda raw: raw["syntheses"][0]["trials"].append(
        {"citation": "a stored trial", "status": "in_base", "trial": sid}))
    recs = load_reconciliation(ev, reconciliation_path(root))
    assert any(t.status == "in_base" and t.trial == sid for t in recs[0].trials)


def test_awaiting_extraction_is_promoted_when_the_study_exists(tmp_path, ev):
    root = _copy_data(tmp_path)
    sid = ev.studies[0].id
    _rewrite(root, lambda raw: raw["syntheses"][0]["trials"].extend([
        {"citation": "stored since", "status": "excluded", "reason": "awaiting_extraction", "expected_trial": sid},
        {"citation": "not stored yet", "status": "excluded", "reason": "awaiting_extraction", "expected_trial": "zz_none2000"},
    ]))
    recs = load_reconciliation(ev, reconciliation_path(root))
    got = {t.citation: t for t in recs[0].trials}
    assert got["stored since"].status == "in_base" and got["stored since"].trial == sid and got["stored since"].promoted
    assert got["not stored yet"].status == "excluded" and got["not stored yet"].trial is None
    assert "not stored yet" in [m["citation"] for m in missing_eligible(recs)]
    assert "stored since" not in [m["citation"] for m in missing_eligible(recs)]


@pytest.mark.parametrize("bad, match", [
    ({"citation": "x", "status": "maybe"}, "status"),
    ({"citation": "x", "status": "excluded", "reason": "did_not_like_it"}, "exclusion reason"),
    ({"citation": "x", "status": "not_found"}, "reason"),
    ({"citation": "", "status": "not_found", "reason": NOT_REACHABLE}, "citation"),
    ({"citation": "x", "status": "excluded", "reason": "no_cni_arm", "trial": "liu2015"}, "only an in_base"),
    ({"citation": "x", "status": "not_found", "reason": NOT_REACHABLE, "colour": "red"}, "unknown field"),
    ({"citation": "x", "status": "not_found", "reason": NOT_REACHABLE, "source": {"url": "u", "quote": "q" * 200}}, "at most"),
])
def test_bad_entries_name_the_field(tmp_path, ev, bad, match):
    root = _copy_data(tmp_path)
    _rewrite(root, lambda raw: raw["syntheses"][0]["trials"].append(bad))
    with pytest.raises(ReconcileError, match=match):
        load_reconciliation(ev, reconciliation_path(root))


def test_a_synthesis_without_an_entry_is_an_error(tmp_path, ev):
    root = _copy_data(tmp_path)
    _rewrite(root, lambda raw: raw["syntheses"].pop(0))
    with pytest.raises(ReconcileError, match="without a reconciliation entry"):
        load_reconciliation(ev, reconciliation_path(root))


def test_cli_json_is_the_contract(contract):
    res = runner.invoke(app, ["reconcile", "--format", "json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout) == contract


def test_cli_default_is_a_readable_table(contract):
    res = runner.invoke(app, ["reconcile"])
    assert res.exit_code == 0, res.output
    first = contract[0]
    assert first["synthesis"] in res.stdout and "not_found" in res.stdout
    assert "in base" in res.stdout  # per-synthesis counts in the caption


def test_cli_missing_lists_awaiting_extraction(ev):
    recs = load_reconciliation(ev)
    res = runner.invoke(app, ["reconcile", "--missing", "--format", "json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout) == missing_eligible(recs)


def test_cli_user_error_exits_2(tmp_path):
    root = _copy_data(tmp_path)
    _rewrite(root, lambda raw: raw["syntheses"][0]["trials"].append({"citation": "x", "status": "maybe"}))
    res = runner.invoke(app, ["reconcile", "--data", str(root)])
    assert res.exit_code == 2
    assert "status" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["reconcile", "--format", "xml"])
    assert res.exit_code == 2

"""Living evidence (issue 22): records in (PubMed/MEDLINE, PubMed XML, RIS, ClinicalTrials.gov v2 JSON, CSV),
deduplicated against the search log and the store; evidence snapshots and `lnsynth update`.

The fixtures under tests/data/records/ hold one record that IS in the search log
(evidence/data/search/records.yaml: PMID 19688181 / its title / DOI, NCT01316133) and invented
"Test fixture" records (PMIDs 99000xxx, DOIs 10.9999/..., NCT099000xx) that are in no database.
"""
from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lnsynth.analyses.updates import StateDir, compare, crossed, snapshot_id
from lnsynth.cli import app
from lnsynth.evidence import load_evidence
from lnsynth.evidence.records_io import RecordsFormatError, dedup_against, parse_records
from lnsynth.evidence.search import load_search
from lnsynth.web.store import Store

runner = CliRunner()
DATA = Path(__file__).parent / "data" / "records"


@pytest.fixture(scope="module")
def log():
    return load_search()


def _log_id(log, **key) -> str:
    (k, v), = key.items()
    return next(r.id for r in log.records if str(getattr(r, k) or "") == v)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory) -> Path:
    """A seeded store, made once and copied per test (seeding takes seconds)."""
    p = tmp_path_factory.mktemp("seed") / "seed.sqlite"
    Store(p).close()
    return p


@pytest.fixture()
def db(seeded, tmp_path) -> Path:
    p = tmp_path / "store.sqlite"
    shutil.copy(seeded, p)
    return p


def _table(db: Path, sql: str) -> list:
    with sqlite3.connect(db) as c:
        return c.execute(sql).fetchall()


# ----------------------------------------------------------------------------- parsers
GOOD = [  # file, format, records, index of the search-log duplicate, the key it shares, the log field and value
    ("pubmed.nbib", "medline", 2, 0, "pmid", "pmid", "19688181"),
    ("pubmed.xml", "pubmed-xml", 2, 0, "pmid", "pmid", "19688181"),
    ("records.ris", "ris", 2, 0, "doi", "doi", "10.1177/0961203310371155"),
    ("ctgov.json", "ctgov", 2, 0, "registry", "nct", "NCT01316133"),
    ("records.csv", "csv", 3, 0, "title", "pmid", "19688181"),
]


@pytest.mark.parametrize("name,fmt,n,dup,key,field,value", GOOD)
def test_each_format_parses_and_dedups_against_the_search_log(log, name, fmt, n, dup, key, field, value):
    got_fmt, recs = parse_records(DATA / name)
    assert got_fmt == fmt and len(recs) == n
    assert [r.number for r in recs] == list(range(1, n + 1))
    assert all(r.title for r in recs)
    dups = dedup_against(recs, [(f"search log {r.id}", r) for r in log.records])
    assert dups[dup] == f"search log {_log_id(log, **{field: value})} ({key})"
    assert [d for i, d in enumerate(dups) if i != dup] == [None] * (n - 1)  # the invented records are new


def test_fields_of_each_format():
    _, nb = parse_records(DATA / "pubmed.nbib")
    r = nb[1]
    assert (r.pmid, r.doi, r.year, r.line) == ("99000001", "10.9999/lnsynth.test.0001", 2026, 13)
    assert r.title.startswith("Test fixture: tacrolimus versus") and "class III/IV" in r.title  # continuation lines
    assert "METHODS: None" in r.abstract
    # a registration cited by an article is kept, but is not a dedup key (a new report of a known trial is new)
    assert r.registration == "NCT09900001" and r.nct is None
    _, xml = parse_records(DATA / "pubmed.xml")
    assert xml[1].title.startswith("Test fixture: voclosporin added to mycophenolate in class V lupus")  # <i> flattened
    assert xml[1].abstract == "BACKGROUND: Invented abstract used only by the lnsynth test suite. RESULTS: None."
    assert (xml[1].doi, xml[1].year, xml[1].registration, xml[1].line) == ("10.9999/lnsynth.test.0004", 2026,
                                                                           "NCT09900004", 24)
    _, ris = parse_records(DATA / "records.ris")
    assert (ris[1].pmid, ris[1].year, ris[1].line) == ("99000007", 2026, 7)  # PMID from the PubMed URL, PY 2026///
    _, ct = parse_records(DATA / "ctgov.json")
    assert [x.has_results for x in ct] == [False, True]  # posted results flag
    assert (ct[1].nct, ct[1].year, ct[1].kind) == ("NCT09900008", 2024, "registry")
    _, single = parse_records(DATA / "ctgov_single.json")
    assert len(single) == 1 and single[0].nct == "NCT09900009" and single[0].title.startswith("Test fixture: a single")
    _, rows = parse_records(DATA / "records.csv")
    assert rows[1].abstract.startswith("Invented abstract") and rows[2].nct == "NCT09900011"


BAD = [  # file, record, line, field
    ("bad.nbib", 2, 5, "pmid"),
    ("bad.xml", 2, 12, "(xml)"),
    ("bad.ris", 2, 8, "PY"),
    ("bad_ctgov.json", 2, 10, "protocolSection.identificationModule.nctId"),
    ("bad.csv", 2, 3, "nct"),
]


@pytest.mark.parametrize("name,record,line,field", BAD)
def test_malformed_file_is_located(name, record, line, field):
    with pytest.raises(RecordsFormatError) as exc:
        parse_records(DATA / name)
    assert f"{name}: record {record}: line {line}: field '{field}'" in exc.value.errors[0]


def test_dedup_within_the_file_and_against_queued_records():
    _, recs = parse_records(DATA / "pubmed.nbib")
    recs = recs + [recs[1]]
    dups = dedup_against(recs, [("screening record 7", {"id": "7", "doi": "10.1007/S10165-009-0218-5"})])
    assert dups == ["screening record 7 (doi)", None, "record 2 of this file (pmid)"]  # DOIs compare lower-cased


# ----------------------------------------------------------------------------- records import (CLI)
@pytest.mark.parametrize("name,fmt,n,dup,key,field,value", GOOD)
def test_cli_import_queues_new_records_once(db, log, name, fmt, n, dup, key, field, value):
    before = _table(db, "SELECT COUNT(*) FROM screening_records")[0][0]
    res = runner.invoke(app, ["records", "import", str(DATA / name), "--db", str(db), "--format", "json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert (out["new"], out["duplicates"], out["errors"]) == (n - 1, 1, [])
    assert out["duplicate_records"][0]["duplicate_of"].startswith(f"search log {_log_id(log, **{field: value})}")
    rows = _table(db, "SELECT source_file, format, record_number, title, status, imported_at FROM screening_records"
                      " ORDER BY id")
    assert len(rows) == before + n - 1
    assert all(r[0].endswith(name) and r[1] == fmt and r[4] == "awaiting title/abstract screening" and r[5]
               for r in rows)
    assert [r[2] for r in rows] == [i + 1 for i in range(n) if i != dup]
    # the same file again: every record is now a duplicate (of the search log or of the queued records)
    res = runner.invoke(app, ["records", "import", str(DATA / name), "--db", str(db), "--format", "json"])
    again = json.loads(res.stdout)
    assert (res.exit_code, again["new"], again["duplicates"]) == (0, 0, n)
    assert all(d["duplicate_of"].startswith(("search log", "screening record")) for d in again["duplicate_records"])
    assert len(_table(db, "SELECT id FROM screening_records")) == before + n - 1


@pytest.mark.parametrize("name,record,line,field", BAD)
def test_cli_malformed_file_exits_2_and_writes_nothing(db, tmp_path, name, record, line, field):
    snap = [_table(db, f"SELECT * FROM {t}") for t in ("screening_records", "audit", "meta")]
    res = runner.invoke(app, ["records", "import", str(DATA / name), "--db", str(db), "--format", "json"])
    assert res.exit_code == 2
    err = res.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in res.output
    assert f"{name}: record {record}: line {line}: field '{field}'" in err and "nothing written" in err
    out = json.loads(res.stdout)
    assert (out["new"], out["duplicates"]) == (0, 0) and f"record {record}" in out["errors"][0]
    assert [_table(db, f"SELECT * FROM {t}") for t in ("screening_records", "audit", "meta")] == snap
    fresh = tmp_path / "never.sqlite"  # a malformed file does not even create the store
    assert runner.invoke(app, ["records", "import", str(DATA / name), "--db", str(fresh)]).exit_code == 2
    assert not fresh.exists()


def test_cli_user_errors(db, tmp_path):
    for args in (["records", "import", str(tmp_path / "missing.ris"), "--db", str(db)],
                 ["records", "import", str(DATA / "records.ris"), "--db", str(db), "--as", "endnote"],
                 ["records", "import", str(DATA / "records.ris"), "--db", str(tmp_path)],
                 ["update", "--format", "json"],
                 ["update", "--db", str(db), "--state", str(tmp_path / "s")]):
        res = runner.invoke(app, args)
        assert res.exit_code == 2, args
        assert res.stderr.startswith("lnsynth: error:") and "Traceback" not in res.output
    res = runner.invoke(app, ["records", "import", str(DATA / "records.ris"), "--db", str(db)],
                        env={"LNSYNTH_DATABASE_URL": "postgresql://panel@localhost/lnsynth"})
    assert res.exit_code == 2 and "LNSYNTH_DATABASE_URL" in res.stderr  # a server that is not there: a clear error
    assert "Traceback" not in res.output
    (tmp_path / "notdb.sqlite").write_text("not a database\n")
    res = runner.invoke(app, ["records", "import", str(DATA / "records.ris"), "--db", str(tmp_path / "notdb.sqlite")])
    assert res.exit_code == 2 and "not an lnsynth SQLite store" in res.stderr


# ----------------------------------------------------------------------------- comparison rules (no analyses)
def _row(q="q", o="cr", k=2, est=1.5, lo=1.1, hi=2.0, cert="low", trials=("a", "b"), measure="RR"):
    return {"question": q, "outcome": o, "measure": measure, "k": k, "estimate": est, "ci_low": lo, "ci_high": hi,
            "certainty": cert, "per1000": None, "trials": list(trials)}


def test_compare_first_run_changes_and_thresholds():
    first = compare(None, [_row()])
    assert first == [{"question": "q", "outcome": "cr", "before": None,
                      "after": {"k": 2, "estimate": 1.5, "ci_low": 1.1, "ci_high": 2.0, "certainty": "low"},
                      "added_trials": ["a", "b"], "removed_trials": [], "crossed": []}]
    assert compare([_row()], [_row()]) == []  # nothing changed, nothing reported
    ch = compare([_row()], [_row(k=3, est=1.2, lo=0.9, hi=1.6, trials=("a", "b", "c"))])
    assert ch[0]["added_trials"] == ["c"]
    assert ch[0]["crossed"] == ["ci_null: CI above the null (1) -> CI includes the null (1)"]
    assert crossed(_row(cert="low"), _row(cert="moderate")) == ["certainty: low -> moderate"]
    assert crossed(_row(measure="RD", lo=-0.1, hi=0.2), _row(measure="RD", lo=0.01, hi=0.2)) == \
        ["ci_null: CI includes the null (0) -> CI above the null (0)"]
    assert crossed(_row(lo=None, hi=None), _row(lo=0.8, hi=1.3)) == []  # no conclusion before nor after
    assert crossed(_row(), _row(lo=None, hi=None, est=None, k=0)) == ["ci_null: CI above the null (1) -> not estimable"]

    class Q:  # a question declaring its own thresholds (read defensively)
        thresholds = [{"outcome": "cr", "field": "ci_low", "value": 1.25}, {"certainty_levels": 2}]

    assert crossed(_row(lo=1.3), _row(lo=1.2), Q()) == ["ci_low 1.25: 1.3 -> 1.2"]
    assert crossed(_row(cert="low"), _row(cert="moderate"), Q()) == []  # two levels asked


def test_compare_uses_each_questions_declared_thresholds():
    """The catalogue's declared thresholds (issue 22, item 4) are named in ``crossed``; a row of an older
    snapshot without the watched field (``per1000_low``) crosses nothing on it."""
    from lnsynth.analyses.questions import load_questions

    qmap = {q.id: q for q in load_questions()}
    q = qmap["voclosporin-addon-mmf"]
    mid = next(t for t in q.thresholds if t.field == "per1000_low")
    b = {**_row(q=q.id, o="complete_remission", lo=1.4), "per1000_low": mid.value + 40}
    a = {**_row(q=q.id, o="complete_remission", lo=1.1, k=3, trials=("a", "b", "c")), "per1000_low": mid.value - 20}
    ch = compare([b], [a], qmap)
    assert ch[0]["added_trials"] == ["c"]
    assert ch[0]["crossed"] == [f"{mid.label} (per1000_low {mid.value:g}): {mid.value + 40:.4g} -> {mid.value - 20:.4g}"]
    old = {k: v for k, v in b.items() if k != "per1000_low"}  # stored before the field existed
    assert compare([old], [a], qmap)[0]["crossed"] == []
    assert compare([b], [a], {})[0]["crossed"] == []  # without the question: the defaults only


def test_state_dir_round_trip(tmp_path):
    st = StateDir(tmp_path / "state")
    assert st.latest_answer_snapshot() is None and not (tmp_path / "state").exists()  # nothing written by reading
    st.save_answer_snapshot("ab" * 32, [_row()])
    st.save_answer_snapshot("cd" * 32, [_row(k=3)])
    last = st.latest_answer_snapshot()
    assert (last["run"], last["snapshot"], last["rows"][0]["k"]) == (2, "cd" * 32, 3)
    (tmp_path / "state" / "latest.json").write_text("{")
    res = runner.invoke(app, ["update", "--state", str(tmp_path / "state")])
    assert res.exit_code == 2 and "unreadable" in res.stderr


def test_snapshot_id_is_a_content_hash():
    ev = load_evidence()
    assert snapshot_id(ev) == snapshot_id(load_evidence()) and len(snapshot_id(ev)) == 64


# ----------------------------------------------------------------------------- update end to end
def _update(*args) -> tuple[int, dict]:
    res = runner.invoke(app, ["update", "--format", "json", *args])
    assert res.exit_code in (0, 3), res.output
    return res.exit_code, json.loads(res.stdout)


def test_update_evidence_dir_first_run_then_an_added_trial_crosses(tmp_path):
    code, full = _update("--state", str(tmp_path / "s1"))
    assert code == 0 and full["previous"] is None and len(full["snapshot"]) == 64
    assert full["changed"] and all(c["before"] is None and c["crossed"] == [] for c in full["changed"])
    assert {"k", "estimate", "ci_low", "ci_high", "certainty"} == set(full["changed"][0]["after"])
    # a significant single-trial row: without its trial the row is not estimable; adding it crosses
    src = Path(load_evidence().root)
    cand = [c for c in full["changed"] if c["after"]["k"] == 1 and c["after"]["ci_low"] is not None
            and (c["after"]["ci_low"] > 1 or c["after"]["ci_high"] < 1) and len(c["added_trials"]) == 1
            and (src / "studies" / f"{c['added_trials'][0]}.yaml").is_file()]
    if not cand:
        pytest.skip("no single-trial row whose CI excludes the null in the current evidence")
    trial = cand[0]["added_trials"][0]
    data = tmp_path / "data"
    shutil.copytree(src, data)
    (data / "studies" / f"{trial}.yaml").unlink()
    code, without = _update("--state", str(tmp_path / "s2"), "--data", str(data))
    assert code == 0 and without["previous"] is None and without["snapshot"] != full["snapshot"]
    code, back = _update("--state", str(tmp_path / "s2"))  # the package data: the trial is added
    assert code == 3
    assert back["previous"] == without["snapshot"] and back["snapshot"] == full["snapshot"]
    row = next(c for c in back["changed"] if (c["question"], c["outcome"]) == (cand[0]["question"], cand[0]["outcome"]))
    assert row["added_trials"] == [trial] and row["before"]["k"] == 0 and row["after"] == cand[0]["after"]
    assert any(x.startswith("ci_null: not estimable -> CI") for x in row["crossed"])
    assert all(c["added_trials"] == [trial] and c["removed_trials"] == [] for c in back["changed"])  # only its rows
    assert len(list((tmp_path / "s2").glob("answers-*.json"))) == 2  # files only under --state


def test_update_store_added_verified_trial(db):
    code, first = _update("--db", str(db))
    assert code == 0 and first["previous"] is None and first["changed"]
    assert _table(db, "SELECT COUNT(DISTINCT run), COUNT(*) FROM answer_snapshots")[0] == (1, len(first["changed"]))
    code, same = _update("--db", str(db))
    assert (code, same["previous"], same["changed"]) == (0, first["snapshot"], [])
    assert same["snapshot"] == first["snapshot"]
    assert _table(db, "SELECT COUNT(DISTINCT run) FROM answer_snapshots")[0][0] == 1  # an unchanged run adds nothing
    # a second copy of a trial the answers use, entered by one curator and verified by another
    used = next(c for c in first["changed"] if c["after"]["k"] and c["after"]["estimate"] is not None)
    src = used["added_trials"][0]
    store = Store(db)
    try:
        store.add_user("alice", "curator", None, "setup")
        store.add_user("bob", "reviewer", None, "setup")
        doc = {k: v for k, v in store.study_doc(src).items() if k not in ("status",)}
        new_id = f"{src}_copy"
        doc["id"] = new_id
        store.create_trial(doc, "test", "alice")
        for rec in store.outcomes(src):
            vals = {f: rec.get(f) for f in ("arm", "outcome", "events", "n", "timepoint_weeks", "source", "location",
                                            "quote")}
            made = store.create_record("outcome", new_id, vals, "test", user="alice")
            store.verify_record("outcome", new_id, made["id"], made["version"], "bob", "test")
        store.verify_trial(new_id, "bob", "test")
    finally:
        store.close()
    code, after = _update("--db", str(db))
    assert after["previous"] == first["snapshot"] and after["snapshot"] != first["snapshot"]
    assert _table(db, "SELECT COUNT(DISTINCT run), COUNT(DISTINCT snapshot) FROM answer_snapshots")[0] == (2, 2)
    rows = [c for c in after["changed"] if new_id in c["added_trials"]]
    assert rows and all(c["after"]["k"] == c["before"]["k"] + 1 for c in rows)
    assert code == (3 if any(c["crossed"] for c in after["changed"]) else 0)


def test_cli_import_dedups_against_the_stores_evidence_sources(db, log, tmp_path):
    in_log = {r.pmid for r in log.records if r.pmid}
    src = next((s for s in load_evidence().sources if getattr(s, "pmid", None) and str(s.pmid) not in in_log), None)
    if src is None:
        pytest.skip("every source PMID is also in the search log")
    f = tmp_path / "one.csv"
    f.write_text(f"title,year,pmid\nTest fixture: a record carrying the PMID of source {src.id},2020,{src.pmid}\n")
    res = runner.invoke(app, ["records", "import", str(f), "--db", str(db), "--format", "json"])
    out = json.loads(res.stdout)
    assert (res.exit_code, out["new"], out["duplicates"]) == (0, 0, 1)
    assert out["duplicate_records"][0]["duplicate_of"] == f"evidence source {src.id} (pmid)"

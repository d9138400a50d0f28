"""Living evidence (issue 22): ``records import`` queues records for screening; ``update`` re-runs the answers."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from lnsynth.cli.common import _load, _plain_warnings, _user_error


records_app = typer.Typer(help="Bibliographic records in for screening: PubMed/MEDLINE (.nbib/.txt), PubMed XML, RIS, "
                          "ClinicalTrials.gov API v2 JSON, CSV.", no_args_is_help=True)


def _open_store(db: Optional[Path], must_exist: bool = False):
    """The command's store: $LNSYNTH_DATABASE_URL (a PostgreSQL server) when set, else the SQLite file --db."""
    from lnsynth.web.store import StoreUnavailable, open_cli_store

    try:
        return open_cli_store(db, must_exist=must_exist)
    except StoreUnavailable as exc:
        raise _user_error(str(exc)) from None


def _uses_server() -> bool:
    from lnsynth.web.store import StoreUnavailable, uses_server

    try:
        return uses_server()
    except StoreUnavailable as exc:
        raise _user_error(str(exc)) from None


@records_app.command("import")
def records_import(
    file: Path = typer.Argument(..., metavar="FILE", help="The exported records file."),
    db: Optional[Path] = typer.Option(None, "--db", help="SQLite store of 'lnsynth serve' (created and seeded if new); "
                                      "not used when $LNSYNTH_DATABASE_URL names a PostgreSQL database."),
    fmt: str = typer.Option("text", "--format", help="text (default) or json: {new, duplicates, errors}."),
    as_: Optional[str] = typer.Option(None, "--as", help="Input format when the extension does not tell: medline, "
                                      "pubmed-xml, ris, ctgov or csv."),
    search: Optional[Path] = typer.Option(None, "--search", help="Search folder whose records.yaml is the search log "
                                          "to deduplicate against (default: the embedded evidence/data/search)."),
) -> None:
    """Queue new records for title/abstract screening, deduplicated against the search log and the store.

    Duplicates share a PMID, DOI, registry id (registry records), normalised URL or normalised
    title + year with a search-log record, a record already queued, a source of the store's
    evidence, or an earlier record of the file. A malformed file exits 2 naming file, record, line and field, and nothing is written.
    """
    from lnsynth.evidence.records_io import FORMATS, RecordsFormatError, dedup_against, parse_records
    from lnsynth.evidence.search import SearchDataError, load_search

    if fmt not in ("text", "json"):
        raise _user_error(f"--format: expected text or json, got {fmt!r}")
    if as_ is not None and as_ not in FORMATS:
        raise _user_error(f"--as: expected one of {', '.join(FORMATS)}, got {as_!r}")
    try:
        kind, recs = parse_records(file, as_)
    except RecordsFormatError as exc:
        if fmt == "json":
            sys.stdout.write(json.dumps({"new": 0, "duplicates": 0, "errors": exc.errors}, indent=2) + "\n")
        raise _user_error(f"records import: {exc}; nothing written")
    try:
        log = load_search(search)
    except SearchDataError as exc:
        raise _user_error(f"search data: {exc}")
    store = _open_store(db)
    try:
        known: list[tuple[str, Any]] = [(f"search log {r.id}", r) for r in log.records]
        known += [(f"screening record {r['id']}", r) for r in store.screening_records()]
        known += [(f"evidence source {s.get('id')}", s) for s in json.loads(store.meta("sources") or "[]")
                  if isinstance(s, dict)]
        dups = dedup_against(recs, known)
        new = [r for r, d in zip(recs, dups) if d is None]
        ids = store.queue_screening([r.to_dict() for r in new], str(file), kind)
    finally:
        store.close()
    out: dict[str, Any] = {"new": len(new), "duplicates": len(recs) - len(new), "errors": [], "file": str(file), "format": kind,
           "queued": [{"id": i, "record": r.number, "title": r.title} for i, r in zip(ids, new)],
           "duplicate_records": [{"record": r.number, "title": r.title, "duplicate_of": d}
                                 for r, d in zip(recs, dups) if d is not None]}
    if fmt == "json":
        sys.stdout.write(json.dumps(out, indent=2, ensure_ascii=False) + "\n")
        return
    typer.echo(f"{file} ({kind}): {out['new']} new record(s) queued for title/abstract screening, "
               f"{out['duplicates']} duplicate(s)")
    for d in out["duplicate_records"]:
        typer.echo(f"  record {d['record']}: duplicate of {d['duplicate_of']}")


def _fmt_num(x) -> str:
    return "-" if x is None else f"{x:.3g}"


def update_cmd(
    db: Optional[Path] = typer.Option(None, "--db", help="SQLite store of 'lnsynth serve': its verified evidence is "
                                      "analysed and the answers are stored in it (table answer_snapshots)."),
    data: Optional[Path] = typer.Option(None, "--data", help="Evidence directory (without --db; default: the embedded "
                                        "package data)."),
    state: Optional[Path] = typer.Option(None, "--state", help="Without --db: the folder where the answer snapshots "
                                         "are kept as JSON (created if missing)."),
    fmt: str = typer.Option("text", "--format", help="text (default) or json: {snapshot, previous, changed}."),
) -> None:
    """Re-run every question, compare each summary-of-findings row with the last snapshot, store the new one.

    Exit status 0 when no decision threshold was crossed, 3 when one was (for a scheduler), 2 on a
    user error. Default thresholds: the CI moving across the null, certainty changing by a level; each
    question's own, declared in its catalogue file (``thresholds:``), are named when crossed.
    """
    from lnsynth.analyses.updates import StateDir, UpdateError, run_update

    if fmt not in ("text", "json"):
        raise _user_error(f"--format: expected text or json, got {fmt!r}")
    if db is not None and (data is not None or state is not None):
        raise _user_error("--db stores its own snapshots and analyses its own evidence: give --db alone, "
                          "or --data/--state without --db")
    use_store = db is not None or (data is None and state is None and _uses_server())  # $LNSYNTH_DATABASE_URL
    if not use_store and state is None:
        raise _user_error("give --db STORE, or --state DIR for the folder where the answer snapshots are kept")
    store = None
    try:
        if use_store:
            store = _open_store(db)
            ev, backend = store.evidence(), store
        else:
            assert state is not None  # refused above without --db, a server store or --state
            ev, backend = _load(data), StateDir(state)
        with _plain_warnings():
            res = run_update(ev, backend)
    except UpdateError as exc:
        raise _user_error(str(exc)) from None
    finally:
        if store is not None:
            store.close()
    out = {k: res[k] for k in ("snapshot", "previous", "changed")}
    if fmt == "json":
        sys.stdout.write(json.dumps(out, indent=2, ensure_ascii=False, allow_nan=False) + "\n")
    else:
        typer.echo(f"snapshot {res['snapshot'][:12]} (previous: {(res['previous'] or 'none')[:12]}); "
                   f"{len(res['changed'])} row(s) changed")
        for c in res["changed"]:
            b, a = c["before"] or {}, c["after"] or {}
            line = (f"  {c['question']} / {c['outcome']}: k {b.get('k')} -> {a.get('k')}, estimate "
                    f"{_fmt_num(b.get('estimate'))} -> {_fmt_num(a.get('estimate'))}, certainty {b.get('certainty')}"
                    f" -> {a.get('certainty')}")
            line += f"; added {', '.join(c['added_trials'])}" if c["added_trials"] else ""
            line += f"; removed {', '.join(c['removed_trials'])}" if c.get("removed_trials") else ""
            typer.echo(line + (f"; CROSSED: {'; '.join(c['crossed'])}" if c["crossed"] else ""))
    if res["crossed_any"]:
        raise typer.Exit(3)


def threshold_cmd(
    question: Optional[str] = typer.Argument(None, metavar="[ID]", help="Question id (lnsynth questions)."),
    network: Optional[str] = typer.Option(None, "--network", metavar="OUTCOME", help="Instead of a question: the "
                                          "network threshold analysis (Phillippo et al.) of OUTCOME, per study and contrast."),
    method: str = typer.Option("REML", "--method", help="--network: FE or a tau2 estimator (as lnsynth nma)."),
    small_values: Optional[str] = typer.Option(None, "--small-values", help="--network: good or bad (default: bad "
                                               "for remission and response outcomes, else good)."),
    data: Optional[Path] = typer.Option(None, "--data", help="Evidence directory (default: the embedded package data)."),
    fmt: str = typer.Option("text", "--format", help="text (default) or json."),
) -> None:
    """What would change the answer: the smallest new trial (patients per arm) that moves a question's
    headline conclusion across each of its thresholds; or, with --network OUTCOME, how much each study's
    or contrast's estimate could change before the best treatment changes."""
    from lnsynth.analyses.questions import QuestionError
    from lnsynth.analyses.threshold import network_thresholds, network_to_text, new_trial_thresholds, to_text

    if fmt not in ("text", "json"):
        raise _user_error(f"--format: expected text or json, got {fmt!r}")
    if (question is None) == (network is None):
        raise _user_error("give a question ID, or --network OUTCOME (not both)")
    if small_values not in (None, "good", "bad"):
        raise _user_error(f"--small-values: expected good or bad, got {small_values!r}")
    from lnsynth.analyses.questions import get_question

    try:
        if question is not None:
            get_question(question)  # an unknown id is refused before the evidence is loaded
    except QuestionError as exc:
        raise _user_error(str(exc)) from None
    ev = _load(data)
    try:
        with _plain_warnings():
            res = (network_thresholds(ev, network, method=method, small_values=small_values) if network is not None
                   else new_trial_thresholds(ev, question))
    except (QuestionError, ValueError) as exc:
        raise _user_error(str(exc)) from None
    if fmt == "json":
        sys.stdout.write(json.dumps(res, indent=2, ensure_ascii=False, default=str) + "\n")
    else:
        sys.stdout.write(network_to_text(res) if network is not None else to_text(res))

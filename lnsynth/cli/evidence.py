"""Commands over the evidence base: trials, reconcile, prisma, validate, table1, table2, provenance."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Literal, Optional

import typer

from lnsynth.cli.common import (
    DataFormat, DataOpt, ListFormat, TableFormat, _LIST_FORMAT_HELP, _list_format, _load, _out_dir,
    _print_table, _save_fig, _user_error, emit, err, escape,
)


def trials(
    fmt: Optional[ListFormat] = typer.Option(None, "--format", help=_LIST_FORMAT_HELP),
    since: Optional[int] = typer.Option(None, "--since", help="Only trials with a publication from this year on (e.g. 2021: what is new since the review)."),
    data: Optional[Path] = DataOpt,
) -> None:
    """List the stored trials, their publications and links, and the evidence date."""
    from lnsynth.evidence.load import currency

    fmt = _list_format(fmt)
    ev = _load(data)
    recs = ev.trial_records(since=since)
    cur = currency(ev)
    if fmt == ListFormat.json:
        sys.stdout.write(json.dumps(recs, indent=2, ensure_ascii=False) + "\n")
        err.print(escape(cur["statement"]), highlight=False)
    elif fmt == ListFormat.csv:
        import pandas as pd

        records = [{"id": r["id"], "label": r["label"], "year": r["year"], "latest_year": r["latest_year"], "design": r["design"],
                 "randomised": r["randomised"], "n": r["n_randomised"] or r["n_enrolled"],
                 "regimens": ", ".join(a["regimen"] for a in r["arms"]),
                 "publications": "; ".join(f"{p['source']} ({p['year']}, {p['role']})" for p in r["publications"]),
                 "links": "; ".join(f"{ln['type']} {ln['trial']}" for ln in r["links"])} for r in recs]
        sys.stdout.write(pd.DataFrame(records).to_csv(index=False))
        err.print(escape(cur["statement"]), highlight=False)
    else:
        from rich.table import Table

        title = f"{len(recs)} trials" + (f" with publications from {since} on" if since else " in the evidence base")
        t = Table(title=title, caption=cur["statement"])
        cols = ["id", "label", "randomised", "n", "regimens", "publications", "links"]
        for c in cols:
            t.add_column(c)
        rows: list[list[str]] = []
        for r in recs:
            roles = sorted({p["role"] for p in r["publications"]})
            rows.append([r["id"], r["label"], "yes" if r["randomised"] else "no", str(r["n_randomised"] or r["n_enrolled"] or ""),
                         ", ".join(a["regimen"] for a in r["arms"]),
                         f"{len(r['publications'])} ({', '.join(roles)}; latest {r['latest_year']})",
                         "; ".join(f"{ln['type']} {ln['trial']}" for ln in r["links"])])
            t.add_row(*rows[-1])
        _print_table(t, cols, rows)


def reconcile(
    fmt: ListFormat = typer.Option(ListFormat.table, "--format", help="table (default, readable), csv or json (the contract: "
                                   "[{synthesis, trials: [{citation, status, trial, reason}]}])."),
    missing: bool = typer.Option(False, "--missing", help="Only the eligible trials cited by a synthesis that are not in the base."),
    data: Optional[Path] = DataOpt,
) -> None:
    """Each stored synthesis's included trials against the evidence base: in_base, excluded (reason) or not_found."""
    from lnsynth.evidence.reconcile import ReconcileError, load_reconciliation, missing_eligible, summary_rows

    ev = _load(data)
    try:
        recs = load_reconciliation(ev)
    except ReconcileError as exc:
        raise _user_error(f"reconciliation: {exc}")
    if missing:
        rows = missing_eligible(recs)
        if fmt == ListFormat.json:
            sys.stdout.write(json.dumps(rows, indent=2, ensure_ascii=False) + "\n")
            return
        flat = [[r["citation"], r["expected_trial"] or "", ", ".join(r["cited_by"]), r["detail"] or ""] for r in rows]
        cols = ["citation", "expected_trial", "cited_by", "detail"]
    else:
        if fmt == ListFormat.json:
            sys.stdout.write(json.dumps([r.contract() for r in recs], indent=2, ensure_ascii=False) + "\n")
            return
        flat = [[r.synthesis, t.citation, t.status, t.trial or "", t.reason_text()] for r in recs for t in r.trials]
        cols = ["synthesis", "citation", "status", "trial", "reason"]
    if fmt == ListFormat.csv:
        import csv

        w = csv.writer(sys.stdout, lineterminator="\n")
        w.writerow(cols)
        w.writerows(flat)
        return
    from rich.table import Table

    if missing:
        title = f"{len(flat)} eligible trial(s) cited by a stored synthesis and not in the evidence base"
        caption = "excluded with reason awaiting_extraction in data/search/reconciliation.yaml"
    else:
        title = f"Included trials of {len(recs)} stored syntheses against the evidence base"
        caption = "; ".join(f"{s['synthesis']}: {s['in_base']} in base, {s['excluded']} excluded, {s['not_found']} not found"
                            + (f" (says {s['n_included']})" if s["n_included"] is not None else "") for s in summary_rows(recs))
    t = Table(title=title, caption=caption)
    for c in cols:
        t.add_column(c)
    for row in flat:
        t.add_row(*[escape(x) for x in row])
    _print_table(t, cols, flat)


def prisma(
    fmt: ListFormat = typer.Option(ListFormat.table, "--format", help="table (default), csv or json (the contract: "
                                   "{identified, duplicates, screened, excluded_screening, sought, not_retrieved, "
                                   "assessed, excluded_full, studies_included, reports_included})."),
    out: Optional[Path] = typer.Option(None, "--out", help="Also write the PRISMA 2020 flow diagram (prisma.png, "
                                       "prisma.svg) into this folder."),
    search: Optional[Path] = typer.Option(None, "--search", help="Search folder (protocol.yaml, queries.yaml, "
                                          "records.yaml; default: the embedded evidence/data/search)."),
) -> None:
    """The PRISMA 2020 flow of the systematic search, computed from the search log and the screened records."""
    from lnsynth.evidence.search import SearchDataError, load_search, stale_awaiting
    from lnsynth.evidence.search import prisma as _prisma

    try:
        data = load_search(search)
        flow = _prisma(data)
    except SearchDataError as exc:
        raise _user_error(f"search data: {exc}")
    for rid, trial in stale_awaiting(data):
        sys.stderr.write(f"lnsynth: warning: record {rid} is excluded as awaiting_extraction but trial {trial} now has "
                         "a study file: include it\n")
    if out is not None:
        from lnsynth.plots.prisma import prisma_figure

        _save_fig(prisma_figure(flow), [_out_dir(out) / "prisma.png", out / "prisma.svg"], "PRISMA 2020 flow diagram")
    if fmt == ListFormat.json:
        sys.stdout.write(json.dumps(flow.contract(), indent=2, ensure_ascii=False) + "\n")
        return
    rows = [["identified", "", str(flow.identified_total)]]
    rows += [["identified", src, str(n)] for src, n in flow.identified.items()]
    rows += [["duplicates", "", str(flow.duplicates)], ["screened", "", str(flow.screened)],
             ["excluded_screening", "", str(flow.excluded_screening)]]
    rows += [["excluded_screening", r, str(n)] for r, n in flow.excluded_screening_reasons.items()]
    rows += [["sought", "", str(flow.sought)], ["not_retrieved", "", str(flow.not_retrieved)],
             ["assessed", "", str(flow.assessed)], ["excluded_full", "", str(sum(flow.excluded_full.values()))]]
    rows += [["excluded_full", r, str(n)] for r, n in flow.excluded_full.items()]
    rows += [["studies_included", "", str(flow.studies_included)], ["reports_included", "", str(flow.reports_included)]]
    cols = ["box", "detail", "n"]
    if fmt == ListFormat.csv:
        import csv

        w = csv.writer(sys.stdout, lineterminator="\n")
        w.writerow(cols)
        w.writerows(rows)
        return
    from rich.table import Table

    t = Table(title=f"PRISMA 2020 flow (searched {data.protocol.date_searched}; {len(data.queries)} queries/steps)",
              caption="Counts computed from data/search/records.yaml; duplicates (computed, never typed) include "
                      "pages returned by several queries.")
    for c in cols:
        t.add_column(c)
    for row in rows:
        t.add_row(*[escape(x) for x in row])
    _print_table(t, cols, rows)


def validate(
    quotes: bool = typer.Option(True, help="Check every quote against the source text when it is available."),
    strict: bool = typer.Option(False, help="Exit non-zero on warnings too."),
    data: Optional[Path] = DataOpt,
) -> None:
    """Validate the evidence files: schema errors are fatal; suspected source errors are warnings."""
    from lnsynth.evidence.checks import find_source_text, run_checks

    ev = _load(data)
    findings = run_checks(ev, quotes=quotes)
    n_err = sum(f.level == "error" for f in findings)
    n_warn = sum(f.level == "warning" for f in findings)
    for f in findings:
        style = "red" if f.level == "error" else "yellow"
        err.print(f"[{style}]{escape(str(f))}[/]", highlight=False, soft_wrap=True)
    src_found = all(find_source_text(s.filename) for s in ev.sources if s.filename)
    n_values = len(ev.provenance_rows())
    typer.echo(
        f"{len(ev.studies)} studies, {len(ev.syntheses)} syntheses, {n_values} sourced values: "
        f"{n_err} errors, {n_warn} warnings (suspected source errors; printed values kept)"
        + ("" if src_found or not quotes else "; quotes not checked: source text not found")
    )
    if n_err or (strict and n_warn):
        raise typer.Exit(1)


def _table(name: Literal["table1", "table2"], fmt: TableFormat, data: Optional[Path]) -> None:
    from lnsynth.evidence import tables

    ev = _load(data)
    df = tables.build_table(ev, name)
    if fmt == TableFormat.csv:
        sys.stdout.write(df.drop(columns=["study"]).to_csv(index=False))
    elif fmt == TableFormat.md:
        sys.stdout.write(tables.to_markdown(df, name))
    else:
        sys.stdout.write(tables.to_html(ev, name) + "\n")


def table1(fmt: TableFormat = typer.Option(TableFormat.md, "--format"), data: Optional[Path] = DataOpt) -> None:
    """The review's Table 1 (selected trials) rebuilt from the data."""
    _table("table1", fmt, data)


def table2(fmt: TableFormat = typer.Option(TableFormat.md, "--format"), data: Optional[Path] = DataOpt) -> None:
    """The review's Table 2 (adverse events) rebuilt from the data."""
    _table("table2", fmt, data)


def provenance(
    fmt: DataFormat = typer.Option(DataFormat.csv, "--format"),
    numbers_only: bool = typer.Option(False, help="Only numeric values (omit text such as design)."),
    data: Optional[Path] = DataOpt,
) -> None:
    """Every stored value with its source, location, verbatim quote and derivation rule."""
    ev = _load(data)
    df = ev.provenance_frame(numbers_only=numbers_only)
    emit(fmt, csv=df, json_=lambda: df.to_dict(orient="records"), ensure_ascii=True, default=str)

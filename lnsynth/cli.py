"""Command-line interface: ``lnsynth`` (also ``python -m lnsynth``).

lnsynth summarises published evidence and simulates hypotheses; it does not prescribe.
"""

from __future__ import annotations

import contextlib
import json
import sys
import warnings
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from lnsynth import DISCLAIMER, __version__
from lnsynth import registry as _registry

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    help=f"lnsynth {__version__}: evidence on calcineurin inhibitors in lupus nephritis. {DISCLAIMER}",
)
def Console(*args, **kwargs):  # noqa: N802 - rich's class, imported when first used (start-up)
    from rich.console import Console as _Console

    return _Console(*args, **kwargs)


def escape(text: str) -> str:
    from rich.markup import escape as _escape

    return _escape(text)


class _LazyConsole:
    """rich Console on stderr, created on first use: most commands never print through it."""

    def __init__(self, **kwargs):
        self._kwargs, self._console = kwargs, None

    def __getattr__(self, name):
        if self._console is None:
            self._console = Console(**self._kwargs)
        return getattr(self._console, name)


err = _LazyConsole(stderr=True)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"lnsynth {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", "-V", callback=_version_callback, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """lnsynth: evidence on calcineurin inhibitors in lupus nephritis (and your own meta-analyses: meta/nma --input)."""


class TableFormat(str, Enum):
    csv = "csv"
    md = "md"
    html = "html"


class DataFormat(str, Enum):
    csv = "csv"
    json = "json"


class ListFormat(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"


_LIST_FORMAT_HELP = ("table (the default on a terminal; a plain-text table when stdout is not a terminal), "
                     "csv (the default when piped or redirected) or json.")


def _list_format(fmt: Optional[ListFormat]) -> ListFormat:
    """--format not given: a rich table on a terminal, CSV when stdout is piped or redirected."""
    if fmt is not None:
        return fmt
    return ListFormat.table if sys.stdout.isatty() else ListFormat.csv


def _print_table(table, columns: list[str], rows: list[list[str]]) -> None:
    """A rich box table on a terminal; a plain-text table (tabulate) otherwise (``--format table`` piped)."""
    if sys.stdout.isatty():
        Console().print(table)
        return
    from tabulate import tabulate

    if table.title:
        sys.stdout.write(f"{table.title}\n\n")
    sys.stdout.write(tabulate(rows, headers=columns, tablefmt="simple", disable_numparse=True) + "\n")
    if table.caption:
        sys.stdout.write(f"\n{table.caption}\n")


@contextlib.contextmanager
def _warnings_to_stderr(category: type = Warning):
    """Record warnings raised in the block and print them to stderr afterwards (markup-escaped)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", category)
        yield
    for c in caught:
        err.print(f"[yellow]warning: {escape(str(c.message))}[/]", highlight=False)


def _load(data: Optional[Path]):
    from lnsynth.evidence import EvidenceError, load_evidence

    if data is not None and data.is_dir() and not any(data.rglob("*.yaml")):
        sys.stderr.write(f"lnsynth: error: --data {data}: no evidence YAML files in this folder (it needs studies/*.yaml "
                         "and sources.yaml as `lnsynth export` writes them); for your own table use "
                         "`lnsynth meta --input FILE`\n")
        raise typer.Exit(2)
    if data is not None and data.is_file():
        sys.stderr.write(f"lnsynth: error: --data {data}: is a file; --data takes an evidence folder (YAML); "
                         "for your own table use `lnsynth meta --input FILE`\n")
        raise typer.Exit(2)
    try:
        return load_evidence(data)
    except EvidenceError as exc:
        err.print(f"[bold red]evidence error[/]\n{escape(str(exc))}")
        raise typer.Exit(2)


DataOpt = typer.Option(None, "--data", help="Evidence directory (default: the embedded package data).")


@app.command()
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

        rows = [{"id": r["id"], "label": r["label"], "year": r["year"], "latest_year": r["latest_year"], "design": r["design"],
                 "randomised": r["randomised"], "n": r["n_randomised"] or r["n_enrolled"],
                 "regimens": ", ".join(a["regimen"] for a in r["arms"]),
                 "publications": "; ".join(f"{p['source']} ({p['year']}, {p['role']})" for p in r["publications"]),
                 "links": "; ".join(f"{ln['type']} {ln['trial']}" for ln in r["links"])} for r in recs]
        sys.stdout.write(pd.DataFrame(rows).to_csv(index=False))
        err.print(escape(cur["statement"]), highlight=False)
    else:
        from rich.table import Table

        title = f"{len(recs)} trials" + (f" with publications from {since} on" if since else " in the evidence base")
        t = Table(title=title, caption=cur["statement"])
        cols = ["id", "label", "randomised", "n", "regimens", "publications", "links"]
        for c in cols:
            t.add_column(c)
        rows = []
        for r in recs:
            roles = sorted({p["role"] for p in r["publications"]})
            rows.append([r["id"], r["label"], "yes" if r["randomised"] else "no", str(r["n_randomised"] or r["n_enrolled"] or ""),
                         ", ".join(a["regimen"] for a in r["arms"]),
                         f"{len(r['publications'])} ({', '.join(roles)}; latest {r['latest_year']})",
                         "; ".join(f"{ln['type']} {ln['trial']}" for ln in r["links"])])
            t.add_row(*rows[-1])
        _print_table(t, cols, rows)


@app.command()
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


@app.command()
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


@app.command()
def questions(fmt: Optional[ListFormat] = typer.Option(None, "--format", help=_LIST_FORMAT_HELP)) -> None:
    """List the catalogue of clinical questions (PICO, relation, outcomes, analysis plan)."""
    fmt = _list_format(fmt)
    from lnsynth.analyses.questions import QuestionError, load_questions

    try:
        qs = [q.summary_dict() for q in load_questions()]
    except QuestionError as exc:
        err.print(f"[red]{escape(str(exc))}[/]")
        raise typer.Exit(2)
    if fmt == ListFormat.json:
        sys.stdout.write(json.dumps(qs, indent=2, ensure_ascii=False) + "\n")
    elif fmt == ListFormat.csv:
        import pandas as pd

        sys.stdout.write(pd.DataFrame([{**q, "outcomes": "; ".join(q["outcomes"]), "plan": json.dumps(q["plan"]),
                                        "intervention_regimens": ",".join(q["intervention_regimens"]),
                                        "comparator_regimens": ",".join(q["comparator_regimens"])} for q in qs]).to_csv(index=False))
    else:
        from rich.table import Table

        t = Table(title=f"{len(qs)} clinical questions (lnsynth answer ID)")
        cols = ["id", "relation", "population", "intervention", "comparator"]
        for c in cols:
            t.add_column(c)
        rows = [[str(q[c]) for c in cols] for q in qs]
        for row in rows:
            t.add_row(*row)
        _print_table(t, cols, rows)


class AnswerFormat(str, Enum):
    table = "table"
    md = "md"
    json = "json"
    csv = "csv"


@app.command()
def answer(
    question_id: str = typer.Argument(..., help="A question id (see `lnsynth questions`)."),
    fmt: AnswerFormat = typer.Option(AnswerFormat.table, "--format"),
    baseline_risk: Optional[str] = typer.Option(None, "--baseline-risk", metavar="R", help="A panel's own baseline (control) risk, 0 < R < 1: adds the row 'user' to every outcome's baseline_risks (absolute effects per 1000 from R)."),
    data: Optional[Path] = DataOpt,
) -> None:
    """Answer one clinical question: inclusion table, summary of findings with GRADE certainty."""
    from lnsynth.analyses.answer import answer as _answer
    from lnsynth.analyses.baselines import BaselineRiskError, add_user_baseline, check_user_risk
    from lnsynth.analyses.questions import QuestionError
    from lnsynth.report.sof import answer_markdown, sof_frame_rows

    user_risk = None
    if baseline_risk is not None:
        try:
            user_risk = check_user_risk(baseline_risk)
        except BaselineRiskError as exc:
            raise _user_error(f"--baseline-risk: {exc}")
    ev = _load(data)
    try:
        a = _answer(ev, question_id)
    except QuestionError as exc:
        err.print(f"[red]{escape(str(exc))}[/]")
        raise typer.Exit(2)
    d = a.to_dict()
    if user_risk is not None:
        d = add_user_baseline(d, user_risk)
    if fmt == AnswerFormat.json:
        sys.stdout.write(json.dumps(d, indent=2, ensure_ascii=False) + "\n")
    elif fmt == AnswerFormat.csv:
        import pandas as pd

        base = a.to_frame()
        extra = pd.DataFrame(sof_frame_rows(d)).drop(columns=["outcome_id"])
        sys.stdout.write(pd.concat([base, extra], axis=1).to_csv(index=False))
    else:
        sys.stdout.write(answer_markdown(d) + "\n")
        typer.echo(DISCLAIMER)


@app.command()
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


def _table(name: str, fmt: TableFormat, data: Optional[Path]) -> None:
    from lnsynth.evidence import tables

    ev = _load(data)
    df = tables.build_table(ev, name)
    if fmt == TableFormat.csv:
        sys.stdout.write(df.drop(columns=["study"]).to_csv(index=False))
    elif fmt == TableFormat.md:
        sys.stdout.write(tables.to_markdown(df, name))
    else:
        sys.stdout.write(tables.to_html(ev, name) + "\n")


@app.command()
def table1(fmt: TableFormat = typer.Option(TableFormat.md, "--format"), data: Optional[Path] = DataOpt) -> None:
    """The review's Table 1 (selected trials) rebuilt from the data."""
    _table("table1", fmt, data)


@app.command()
def table2(fmt: TableFormat = typer.Option(TableFormat.md, "--format"), data: Optional[Path] = DataOpt) -> None:
    """The review's Table 2 (adverse events) rebuilt from the data."""
    _table("table2", fmt, data)


@app.command()
def provenance(
    fmt: DataFormat = typer.Option(DataFormat.csv, "--format"),
    numbers_only: bool = typer.Option(False, help="Only numeric values (omit text such as design)."),
    data: Optional[Path] = DataOpt,
) -> None:
    """Every stored value with its source, location, verbatim quote and derivation rule."""
    ev = _load(data)
    df = ev.provenance_frame(numbers_only=numbers_only)
    if fmt == DataFormat.csv:
        sys.stdout.write(df.to_csv(index=False))
    else:
        sys.stdout.write(json.dumps(df.to_dict(orient="records"), indent=2, default=str) + "\n")


@app.command()
def report(
    out: Path = typer.Option(Path("report"), "--out", help="Output directory (index.html is written there)."),
    data: Optional[Path] = DataOpt,
) -> None:
    """Build the self-contained HTML evidence report."""
    from lnsynth.report.build import build_report

    path = build_report(out, data=data)
    typer.echo(f"wrote {path}")


def _user_error(msg: str) -> typer.Exit:
    """Print one line 'lnsynth: error: ...' to stderr; return the Exit(2) to raise."""
    sys.stderr.write("lnsynth: error: " + " ".join(str(msg).split()) + "\n")
    return typer.Exit(2)


@contextlib.contextmanager
def _plain_warnings():
    """Record warnings in the block; print each as one plain line on stderr afterwards."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        try:
            yield
        finally:
            for c in caught:
                sys.stderr.write("lnsynth: warning: " + " ".join(str(c.message).split()) + "\n")


def _out_dir(out: Path) -> Path:
    if out.exists() and not out.is_dir():
        raise _user_error(f"--out {out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _save_fig(fig, path, what: str) -> None:
    """Save ``fig`` to ``path`` (or to each of a list of paths: one figure, several formats) and close it."""
    from lnsynth.plots.style import save

    paths = save(fig, path, dpi=150)
    sys.stderr.write(f"lnsynth: {what} written to {', '.join(str(p) for p in paths)}\n")


DEFAULT_FAVOURS = ("favours control", "favours treatment")


def _favours(spec: Optional[str]) -> Optional[tuple[str, str]]:
    """--favours "left,right" -> (left, right); '' -> None (no labels); None -> the default."""
    if spec is None:
        return DEFAULT_FAVOURS
    if not spec.strip():
        return None
    parts = [x.strip() for x in spec.split(",")]
    if len(parts) != 2 or not all(parts):
        raise _user_error(f"--favours: expected two labels separated by a comma (left,right), got {spec!r}")
    return parts[0], parts[1]


FIG_FORMATS = ("png", "svg", "pdf")


def _fig_formats(spec: str) -> tuple[str, ...]:
    """--fig-format "png,svg" -> ("png", "svg"), checked against FIG_FORMATS."""
    fmts = tuple(dict.fromkeys(x.strip().lower().lstrip(".") for x in spec.split(",") if x.strip()))
    bad = [f for f in fmts if f not in FIG_FORMATS]
    if bad or not fmts:
        raise _user_error(f"--fig-format: expected one or more of {', '.join(FIG_FORMATS)} separated by commas, "
                          f"got {spec!r}")
    return fmts


def _write_pairwise(payload: dict, res, out: Optional[Path], plot: Optional[str], labels=None, *, arm_data=None,
                    favours=None, subgroup=None, formats: tuple[str, ...] = FIG_FORMATS) -> None:
    """summary.md|csv|json and, unless plot == '', forest.* and funnel.* (each of ``formats``) in OUT.

    Without ``--out`` (``out`` None) nothing is written except a forest plot to a ``--plot`` path the user gave.
    ``plot``: None for OUT/forest.{formats}; a path for that forest file only; '' for no figures.
    ``subgroup``: (SubgroupResult, groups) for the subgroup forest; ``arm_data``: events/N (or mean/SD/N)
    per arm for the forest's columns; ``favours``: (left, right) labels under its axis.
    """
    from lnsynth.io import json_safe, summary_csv, summary_markdown

    import numpy as np

    k = int(np.asarray(res.yi).size)
    if out is None and not plot:
        return  # files only under a path the user gave (--out or --plot)
    funnel = plot != "" and k >= 3 and out is not None
    if plot != "" and k < 3:
        payload.setdefault("notes", []).append(f"funnel plot not drawn: k = {k} (a funnel plot needs at least 3 studies)")
    if out is not None:
        (out / "summary.json").write_text(json.dumps(json_safe(payload), indent=2, ensure_ascii=False) + "\n")
        (out / "summary.csv").write_text(summary_csv(payload))
        (out / "summary.md").write_text(summary_markdown(payload))
        sys.stderr.write(f"lnsynth: summary.md, summary.csv, summary.json written to {out}\n")
    if plot == "":
        return
    from lnsynth.plots.forest import forest_plot, subgroup_forest_plot

    ratio = _registry.is_ratio(res.measure) if res.measure else False
    kw = {"transf": "exp"} if ratio else {}
    if arm_data is not None:
        kw["arm_data"] = arm_data
    if favours is not None:
        kw["favours"] = tuple(favours)
    paths = [out / f"forest.{ext}" for ext in formats] if plot is None else [Path(plot)]
    if subgroup is not None:
        sg, groups = subgroup
        fig = subgroup_forest_plot(sg, groups, labels=labels if labels is not None else res.labels,
                                   measure=res.measure, **kw)
    else:
        fig = forest_plot(res, labels=labels, **kw)
    _save_fig(fig, paths, "subgroup forest plot" if subgroup is not None else "forest plot")
    if funnel:
        from lnsynth.plots.funnel import funnel_plot

        _save_fig(funnel_plot(res, transf="exp" if ratio else None), [out / f"funnel.{ext}" for ext in formats],
                  "funnel plot")


def _print_pairwise(payload: dict, fmt: "ListFormat") -> None:
    from lnsynth.io import json_safe, summary_csv, summary_markdown

    if fmt == ListFormat.json:
        sys.stdout.write(json.dumps(json_safe(payload), indent=2, ensure_ascii=False) + "\n")
    elif fmt == ListFormat.csv:
        sys.stdout.write(summary_csv(payload))
    else:
        sys.stdout.write(summary_markdown(payload))


def _meta_from_file(input_: Path, columns, sheet, measure, method, test, subgroup, moderator, drop00, fmt, out, plot,
                    mh_correct=True, favours=None, formats=FIG_FORMATS):
    from lnsynth.io import DataError, pairwise_summary, read_table, regression_summary, subgroup_summary
    from lnsynth.pairwise import meta_analysis

    try:
        with _plain_warnings():
            td = read_table(input_, columns=columns, measure=measure or None, sheet=sheet)
            if td.layout.startswith("arms"):
                raise DataError("one row per arm (study, treatment, ...) is the network layout: use "
                                "`lnsynth nma --input`; for a pairwise meta-analysis give one row per study "
                                "(study, ai, n1i, ci, n2i | m1i, sd1i, n1i, m2i, sd2i, n2i | yi, vi)", file=td.file)
            code = td.check_measure(measure or None)
            use = td if td.layout == "generic" else td.usable(code, drop00)
            kept = set(use.rows)
            dropped = [{"study": lab, "row": r, "reason": "no events (or only events) in both arms (drop00)"}
                       for lab, r in zip(td.labels, td.rows) if r not in kept]
            es = use.effect_sizes(code, drop00=False) if td.layout != "generic" else use.effect_sizes(code)
            res = meta_analysis(es, method=method, test=test, correct=mh_correct)
            payload = pairwise_summary(res, table=use, dropped=dropped)
            if "cmh" in res.extra:
                payload["cmh_test"] = {"statistic": float(res.extra["cmh"]), "pvalue": float(res.extra["cmh_pvalue"]),
                                       "df": 1, "continuity_correction": bool(mh_correct)}
            sg_fig = None
            if subgroup:
                sg = use.subgroup_analysis(subgroup, code, method=method if method.upper() not in ("MH", "PETO") else "FE",
                                           test=test, drop00=False)
                payload["subgroup"] = {"column": subgroup, **subgroup_summary(sg, code)}
                sg_fig = (sg, list(use.column(subgroup, numeric=False)))
            if moderator:
                cols = [c.strip() for c in moderator.split(",") if c.strip()]
                reg = use.meta_regression(cols, code, method=method if method.upper() not in ("MH", "PETO") else "FE",
                                          test=test, drop00=False)
                payload["moderator"] = {"columns": cols, **regression_summary(reg)}
    except DataError as exc:
        raise _user_error(str(exc))
    except ValueError as exc:
        raise _user_error(f"{input_}: {exc}")
    arm_data = {f: use.data[f] for f in use.data} if td.layout in ("binary", "continuous") else None
    fav = _favours(favours) if td.layout != "generic" or favours else None
    _print_pairwise(payload, fmt)
    _write_pairwise(payload, res, _out_dir(out) if out is not None else None, plot, labels=list(use.labels), arm_data=arm_data, favours=fav,
                    subgroup=sg_fig, formats=formats)


@app.command()
def meta(
    input_: Optional[Path] = typer.Option(None, "--input", "-i", help="Your own data: .csv, .tsv, .xlsx or RevMan 5 .rm5, one row per study (metafor column names: study, ai, n1i, ci, n2i | m1i, sd1i, n1i, m2i, sd2i, n2i | yi, vi or yi, sei)."),
    columns: Optional[str] = typer.Option(None, "--columns", help="Map fields to your headers, e.g. study=Trial,ai=ev_trt,n1i=n_trt,ci=ev_ctl,n2i=n_ctl."),
    sheet: Optional[str] = typer.Option(None, "--sheet", help="Excel sheet (name or number) or RevMan outcome (e.g. 1.2)."),
    outcome: Optional[str] = typer.Option(None, "--outcome", help='Evidence base: endpoint, e.g. "complete remission".'),
    treatment: Optional[str] = typer.Option(None, "--treatment", help="Evidence base: regimen codes/classes, comma-separated (e.g. TAC+MMF, CNI, CNI-any)."),
    control: Optional[str] = typer.Option(None, "--control", help="Evidence base: regimen codes/classes for the comparator (e.g. IVCYC)."),
    measure: Optional[str] = typer.Option(None, "--measure", help="Effect measure: " + ", ".join(_registry.measure_codes()) + " (default: RR for counts, MD for means, the file's for RevMan)."),
    method: str = typer.Option("REML", "--method", help="Estimator: " + ", ".join(f"{m['code']} ({m['name']})" for m in _registry.methods_table()) + "."),
    test: str = typer.Option("z", "--test", help="z or knha (Knapp-Hartung)."),
    subgroup: Optional[str] = typer.Option(None, "--subgroup", help="--input: column whose values define subgroups (test for subgroup differences)."),
    moderator: Optional[str] = typer.Option(None, "--moderator", help="--input: column(s) for a meta-regression, comma-separated (numeric as is, text as factors)."),
    drop00: Optional[bool] = typer.Option(None, "--drop00/--keep00", help="--input: drop studies with no events (or only events) in both arms (default: drop for ratio measures, keep for RD)."),
    timepoint: str = typer.Option("latest", "--timepoint", help="Evidence base: latest, earliest or weeks when a study reports several."),
    fmt: ListFormat = typer.Option(ListFormat.table, "--format", help="stdout: table (plain markdown), json or csv."),
    out: Optional[Path] = typer.Option(None, "--out", help="Folder for summary.md, summary.csv, summary.json, forest.* and funnel.* (nothing is written without it, except a --plot file)."),
    plot: Optional[str] = typer.Option(None, "--plot", help="Forest plot file (png/svg/pdf; default OUT/forest.* and OUT/funnel.* in each --fig-format); '' for no figures."),
    fig_format: str = typer.Option("png,svg,pdf", "--fig-format", help="Formats of OUT/forest.* and OUT/funnel.*, comma-separated: png, svg, pdf (each format is one more drawing: 'png' alone is fastest)."),
    favours: Optional[str] = typer.Option(None, "--favours", help='Forest plot labels under the axis, "left,right" (default "favours control,favours treatment": a desirable outcome, effects > 1 (or > 0) meaning more events in treatment; for a harmful outcome give "favours treatment,favours control"; "" for none).'),
    mh_correct: bool = typer.Option(True, "--mh-correct/--no-mh-correct", help="--method MH, OR: continuity correction in the Cochran-Mantel-Haenszel test (metafor rma.mh correct=TRUE, the default)."),
    approximate: bool = typer.Option(True, "--approximate/--strict", help="Default (the one policy of every surface): use round(pct/100*n) where no count reproduces a printed percentage, flagged; --strict leaves such trials out (with a warning)."),
    data: Optional[Path] = DataOpt,
) -> None:
    """Pairwise meta-analysis of your own file (--input) or of any comparison across the stored trials
    (--outcome/--treatment/--control; an explorer that can mix add-on and substitution trials; for a clinical
    answer with its certainty use `lnsynth answer ID`)."""
    if method.upper() not in _registry.methods("pairwise"):
        raise _user_error(f"--method: unknown method {method!r}; valid: {', '.join(_registry.methods('pairwise'))}")
    if test.lower() not in ("z", "knha"):
        raise _user_error(f"--test: unknown test {test!r}; valid: z, knha")
    formats = _fig_formats(fig_format)
    if input_ is not None:
        if outcome or treatment or control:
            raise _user_error("give either --input FILE or --outcome/--treatment/--control (the evidence base), not both")
        _meta_from_file(input_, columns, sheet, measure, method, test, subgroup, moderator, drop00, fmt, out, plot,
                        mh_correct=mh_correct, favours=favours, formats=formats)
        return
    if not (outcome and treatment and control):
        missing = [o for o, v in (("--outcome", outcome), ("--treatment", treatment), ("--control", control)) if not v]
        raise _user_error("give --input FILE (your data) or all of --outcome, --treatment and --control "
                          f"(the evidence base); missing: {', '.join(missing)}")
    if subgroup or moderator or columns or sheet:
        raise _user_error("--subgroup, --moderator, --columns and --sheet need --input FILE")
    measure = (measure or "RR").upper()
    if measure not in _registry.measure_codes():
        raise _user_error(f"--measure: unknown measure {measure!r}; valid: {', '.join(_registry.measure_codes())}")
    if measure not in _registry.measures_for("binary"):
        raise _user_error(f"--measure {measure}: the evidence base holds event counts; valid: {', '.join(_registry.measures_for('binary'))}")
    from lnsynth.analyses.selection import SelectionWarning, pairwise_data
    from lnsynth.io import pairwise_summary
    from lnsynth.pairwise import effect_sizes, meta_analysis

    ev = _load(data)
    try:
        tp = timepoint if timepoint in ("latest", "earliest") else float(timepoint)
    except ValueError:
        raise _user_error(f"--timepoint: expected latest, earliest or a number of weeks, got {timepoint!r}")
    with _warnings_to_stderr(SelectionWarning):
        try:
            d = pairwise_data(ev, outcome, treatment, control, timepoint=tp, approximate=approximate)
        except ValueError as exc:
            raise _user_error(str(exc))
    if d.k == 0:
        err.print(f"[red]no study compares {treatment} with {control} on {outcome} with usable counts[/]")
        raise typer.Exit(1)
    from lnsynth.analyses.questions import COMPONENTS, relation_between

    rel: dict[str, list[str]] = {}
    for r in d.frame.itertuples():
        for ti in str(r.treatment_regimen).split(","):
            for ci in str(r.control_regimen).split(","):
                if ti in COMPONENTS and ci in COMPONENTS:
                    rel.setdefault(relation_between(ti, ci), []).append(r.study)
    if len(rel) > 1:
        err.print("[yellow]warning: this comparison mixes relations: "
                  + escape("; ".join(f"{k}: {', '.join(sorted(set(v)))}" for k, v in rel.items()))
                  + " — a clinical question never does (see `lnsynth questions`)[/]", highlight=False)
    try:
        with _warnings_to_stderr():
            es = effect_sizes(measure, labels=d.labels, **d.counts())
            res = meta_analysis(es, method=method, test=test, correct=mh_correct)
    except ValueError as exc:
        raise _user_error(str(exc))
    study = d.frame[["label", "timepoint_weeks", "treatment_arms", "events_treat", "n_treat", "control_arms", "events_ctrl", "n_ctrl", "derived"]]
    summary = pairwise_summary(res, labels=d.labels)
    summary["notes"] = list(d.notes())
    if fmt == ListFormat.json:
        payload = {"outcome": outcome, "treatment": treatment, "control": control, **summary,
                   "measure": measure, "method": method.upper(), "test": test,
                   "result": {k: (v.item() if hasattr(v, "item") else v) for k, v in res.to_dict().items()},
                   "studies": json.loads(study.to_json(orient="records")), "notes": d.notes()}
        from lnsynth.io import json_safe

        sys.stdout.write(json.dumps(json_safe(payload), indent=2, default=str) + "\n")
    elif fmt == ListFormat.csv:
        from lnsynth.io import summary_csv

        sys.stdout.write(summary_csv(summary))
    else:
        sys.stdout.write(study.to_string(index=False, na_rep="") + "\n\n")
        typer.echo(res.summary())
        for n in d.notes():
            typer.echo(f"note: {n}")
        typer.echo(DISCLAIMER)
    _write_pairwise(summary, res, _out_dir(out) if out is not None else None, plot, labels=d.labels, favours=_favours(favours),
                    formats=formats,
                    arm_data={c: d.frame[c].to_numpy(dtype=float) for c in ("events_treat", "n_treat", "events_ctrl", "n_ctrl")})


class MdFormat(str, Enum):
    md = "md"
    csv = "csv"
    json = "json"


def _nma_outputs(fit, rel, rank, payload: dict, fmt: "MdFormat", out: Optional[Path], plot: Optional[str], title: str,
                 n_studies: int, patients, notes) -> None:
    import math as _m

    from lnsynth.io import json_safe

    ratio = _registry.is_ratio(fit.measure)
    if fmt == MdFormat.csv:
        sys.stdout.write(rel.to_csv(index=False))
    elif fmt == MdFormat.json:
        sys.stdout.write(json.dumps(json_safe(payload), indent=2, ensure_ascii=False) + "\n")
    else:
        scale = f"log {fit.measure}" if ratio else fit.measure
        typer.echo(f"## Network meta-analysis: {title} ({fit.method}, {scale}; reference {fit.reference})\n")
        typer.echo(f"{n_studies} studies" + (f", {int(patients)} patients" if patients is not None else "")
                   + f"; tau2 = {float(fit.tau2):.4g}\n")
        head = "| treatment | estimate (model scale) | se | ci_low | ci_high |" + (" ratio [95% CI] |" if ratio else "") + " P-score |"
        typer.echo(head)
        typer.echo("|" + "---|" * (head.count("|") - 1))
        for r in rel.itertuples():
            extra = (f" {_m.exp(r.estimate):.2f} [{_m.exp(r.ci_low):.2f}, {_m.exp(r.ci_high):.2f}] |" if ratio else "")
            typer.echo(f"| {r.treatment} | {r.estimate:.4f} | {r.se:.4f} | {r.ci_low:.4f} | {r.ci_high:.4f} |{extra} {r.pscore:.3f} |")
        typer.echo("")
        for n in notes:
            typer.echo(f"- note: {n}")
    from lnsynth.plots.network import network_graph, nma_forest

    if out is None:  # files only under a path the user gave
        if plot:
            _save_fig(network_graph(fit), [Path(plot)], "network graph")
        return
    out = _out_dir(out)
    fit.league_table(exponentiate=ratio).to_csv(out / "league.csv")
    (out / "summary.json").write_text(json.dumps(json_safe(payload), indent=2, ensure_ascii=False) + "\n")
    sys.stderr.write(f"lnsynth: league.csv, summary.json written to {out}\n")
    _save_fig(network_graph(fit), [out / "network.png", out / "network.svg"] + ([Path(plot)] if plot else []),
              "network graph")
    _save_fig(nma_forest(fit), [out / "nma-forest.png", out / "nma-forest.svg"], "network forest plot")


@app.command()
def nma(
    input_: Optional[Path] = typer.Option(None, "--input", "-i", help="Your own arm-level data (.csv, .tsv, .xlsx): one row per arm, columns study, treatment, events, n (or study, treatment, mean, sd, n)."),
    columns: Optional[str] = typer.Option(None, "--columns", help="Map fields to your headers, e.g. study=Trial,treatment=Arm,events=r,n=N."),
    sheet: Optional[str] = typer.Option(None, "--sheet", help="Excel sheet (name or number)."),
    reference: Optional[str] = typer.Option(None, "--reference", help="--input: reference treatment (default: first in sorted order)."),
    small_values: Optional[str] = typer.Option(None, "--small-values", help="P-scores: 'good' (small effects are desirable) or 'bad' (default: bad for the evidence base's remission, good for --input)."),
    outcome: str = typer.Option("complete remission", "--outcome", help='Evidence base: endpoint, e.g. "complete remission".'),
    method: str = typer.Option("REML", "--method", help="Network model: " + ", ".join(_registry.methods("network")) + "."),
    measure: Optional[str] = typer.Option(None, "--measure", help="Measure: " + ", ".join(_registry.network_measures()) + " (default OR; MD for means)."),
    approximate: bool = typer.Option(True, "--approximate/--strict", help="Use round(pct/100*n) where no count reproduces a printed % (flagged)."),
    fmt: MdFormat = typer.Option(MdFormat.md, "--format"),
    out: Optional[Path] = typer.Option(None, "--out", help="Folder for league.csv, summary.json, network.png|svg and nma-forest.png|svg (nothing is written without it, except a --plot file)."),
    plot: str = typer.Option("", "--plot", help="Write the network graph to this file (as well as OUT/network.png with --out; png/svg)."),
    data: Optional[Path] = DataOpt,
) -> None:
    """Network meta-analysis of your own arm-level file (--input) or of the induction regimens on the stored
    trials (reference: IV cyclophosphamide)."""
    if method.upper() not in _registry.methods("network"):
        raise _user_error(f"--method: {method!r} is not a network model; valid: {', '.join(_registry.methods('network'))}")
    if measure and measure.upper() not in _registry.network_measures():
        where = f"{input_}: " if input_ is not None else ""
        raise _user_error(f"{where}--measure: {measure!r} is not available for network meta-analysis; valid: {', '.join(_registry.network_measures())}")
    if small_values not in (None, "good", "bad"):
        raise _user_error(f"--small-values: expected good or bad, got {small_values!r}")
    from lnsynth.network import network_meta_analysis

    if input_ is not None:
        from lnsynth.io import DataError, read_table

        try:
            with _plain_warnings():
                td = read_table(input_, columns=columns, measure=measure or None, sheet=sheet, layout="arms")
                fit = td.network(measure or None, method=method.upper(), reference=reference)
        except DataError as exc:
            raise _user_error(str(exc))
        except ValueError as exc:
            raise _user_error(f"{input_}: {exc}")
        sv = small_values or "good"
        rel = fit.relative_effects()
        rank = fit.pscores(small_values=sv)
        rel = rel.assign(pscore=rel["treatment"].map(rank))
        df = td.frame()
        notes = [f"{s}: dropped (no information on the {fit.measure})" for s in fit.dropped_studies]
        payload = {"file": td.file, **fit.to_dict(), "small_values": sv,
                   "relative_effects": json.loads(fit.to_frame().assign(pscore=lambda x: x["treatment"].map(rank)).to_json(orient="records")),
                   "pscores": {k: float(v) for k, v in rank.items()},
                   "arms": json.loads(df.to_json(orient="records")), "notes": notes}
        _nma_outputs(fit, rel, rank, payload, fmt, out, plot, str(td.file), fit.n_studies,
                     float(df["n"].sum()) if "n" in df else None, notes)
        return
    from lnsynth.analyses.network_data import REFERENCE_NODE, arm_level_data

    measure = (measure or "OR").upper()
    if measure not in _registry.network_measures("binary"):
        raise _user_error(f"--measure {measure}: the evidence base holds event counts; valid: {', '.join(_registry.network_measures('binary'))}")
    ev = _load(data)
    with _warnings_to_stderr():
        d = arm_level_data(ev, outcome, approximate=approximate)
        if d.k < 2:
            err.print(f"[red]fewer than two studies with usable counts for {outcome}[/]")
            raise typer.Exit(1)
        try:
            fit = network_meta_analysis(d.frame, study="study", treatment="treatment", events="events", n="n",
                                        measure=measure, reference=REFERENCE_NODE, method=method.upper())
        except ValueError as exc:
            raise _user_error(str(exc))
    rel = fit.relative_effects()
    rank = fit.pscores(small_values=small_values or "bad")
    rel = rel.assign(pscore=rel["treatment"].map(rank))
    notes = list(d.notes) + [f"{s}: excluded ({w})" for s, w in d.excluded]
    payload = {"outcome": outcome, "measure": measure, "method": method.upper(), "reference": REFERENCE_NODE,
               "tau2": float(fit.tau2), "relative_effects": json.loads(rel.to_json(orient="records")),
               "pscores": {k: float(v) for k, v in rank.items()}, "studies": json.loads(d.frame.to_json(orient="records")),
               "notes": notes}
    _nma_outputs(fit, rel, rank, payload, fmt, out, plot, outcome, d.k, d.patients, notes)
    if fmt == MdFormat.md:
        typer.echo(f"\n{DISCLAIMER}")


@app.command()
def rederive(
    fmt: MdFormat = typer.Option(MdFormat.md, "--format"),
    nma_outcome: str = typer.Option("complete remission", "--nma-outcome"),
    data: Optional[Path] = DataOpt,
) -> None:
    """Hannah 2016 and Palmer 2017 re-derived from the stored trials, beside the published estimates."""
    from lnsynth.analyses.rederive import rederive as _rederive

    ev = _load(data)
    res = _rederive(ev, nma_outcome=nma_outcome)
    if fmt == MdFormat.csv:
        sys.stdout.write(res.frame.to_csv(index=False))
    elif fmt == MdFormat.json:
        sys.stdout.write(json.dumps(res.to_dict(), indent=2, default=str) + "\n")
    else:
        sys.stdout.write(res.to_markdown())
        for n in res.notes:
            typer.echo(f"- note: {n}")
        typer.echo(f"\n{DISCLAIMER}")


@app.command()
def sensitivity(
    method: Optional[str] = typer.Option(None, "--method", help="tau² estimator of the refitted variants (default: each question's plan)."),
    test: Optional[str] = typer.Option(None, "--test", help="z or knha for the refitted variants (default: each question's plan)."),
    question: Optional[list[str]] = typer.Option(None, "--question", help="Question id(s) to analyse (repeatable or comma list; default all)."),
    fmt: MdFormat = typer.Option(MdFormat.md, "--format"),
    figures: str = typer.Option("", "--figures", help="Directory to write the figures (PNG) into."),
    data: Optional[Path] = DataOpt,
) -> None:
    """Sensitivity analyses of the questions' answers: leave-one-out, timepoint, population, CNI type, dose, count policy, estimator."""
    from lnsynth.analyses.questions import QuestionError
    from lnsynth.analyses.sensitivity import run_sensitivity

    ev = _load(data)
    try:
        with _warnings_to_stderr():
            rep = run_sensitivity(ev, question or None, method=method, test=test)
    except (QuestionError, ValueError) as exc:
        err.print(f"[red]{escape(str(exc))}[/]")
        raise typer.Exit(2)
    if fmt == MdFormat.csv:
        sys.stdout.write(rep.to_frame().to_csv(index=False))
    elif fmt == MdFormat.json:
        sys.stdout.write(json.dumps(rep.to_dict(), indent=2, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(rep.to_markdown())
        typer.echo(f"\n{DISCLAIMER}")
    if figures:
        out = Path(figures)
        out.mkdir(parents=True, exist_ok=True)
        import matplotlib.pyplot as plt

        from lnsynth.plots.sensitivity import sensitivity_figures

        for i, fig in enumerate(sensitivity_figures(rep), 1):
            fig.savefig(out / f"sensitivity-{i}.png", bbox_inches="tight", dpi=120)
            plt.close(fig)
        err.print(f"figures written to {out}")


simulate_app = typer.Typer(no_args_is_help=True, help="Mechanistic simulator: hypothesis-generating simulation, not treatment advice.")
app.add_typer(simulate_app, name="simulate")
SIM_NOTE = "Hypothesis-generating simulation, not treatment advice."


def _progress_bar(total: int, description: str):
    from rich.console import Console as _Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    prog = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=_Console(stderr=True))
    task = prog.add_task(description, total=total)
    return prog, task


def _sim_bank(data, seed: int, scheduler: str, structure: str = "base"):
    """(evidence, calibration bank, scheduler) with a progress bar while the bank is built."""
    from lnsynth.simulate import calibrate
    from lnsynth.simulate.calibrate import n_calibration_draws

    ev = _load(data)
    sched = None if scheduler == "serial" else scheduler
    prog, task = _progress_bar(n_calibration_draws(), f"calibrating {structure} (cached after the first run)")
    with prog:
        bank = calibrate(ev, seed=seed, scheduler=sched, progress=lambda: prog.advance(task), structure=structure)
        prog.update(task, completed=n_calibration_draws())
    return ev, bank, sched


def _sim_validation(data, seed, scheduler, model="simulator", external=True):
    from lnsynth.simulate.validate import external_bank, structure_banks, validate

    ev, bank, sched = _sim_bank(data, seed, scheduler)
    eb = external_bank(bank, ev, seed=seed, scheduler=None if sched == "auto" else sched) if external else None
    alt = structure_banks(ev, seed=seed, scheduler=sched) if model == "stacked" else None
    return ev, bank, eb, validate(ev, bank=bank, model=model, ext_bank=eb, alt_banks=alt, seed=seed, scheduler=sched)


class SimModel(str, Enum):
    simulator = "simulator"
    null = "null"
    stacked = "stacked"


_SCHED_HELP = "auto, serial, local (2-worker Dask LocalCluster) or a scheduler address."


@simulate_app.command("validate")
def simulate_validate(
    fmt: ListFormat = typer.Option(ListFormat.table, "--format"),
    model: SimModel = typer.Option(SimModel.simulator, "--model", help="simulator (base structure), null (random-effects pooling of the other trials' arms of the same endpoint family and regimen class) or stacked (structural alternatives mixed by stacking weights)."),
    seed: int = typer.Option(2024, "--seed"),
    scheduler: str = typer.Option("auto", "--scheduler", help=_SCHED_HELP),
    data: Optional[Path] = DataOpt,
) -> None:
    """Proper-scoring validation: every held-out (loto) and external row with its 95% predictive interval and
    log predictive probability; counts are patients (flare rates: `simulate validate-rates`)."""
    from lnsynth.simulate.calibrate import unclassified_outcomes
    from lnsynth.simulate.validate import validation_summary

    ev, _, _, df = _sim_validation(data, seed, scheduler, model.value)
    s = validation_summary(df)
    if fmt == ListFormat.csv:
        sys.stdout.write(df.to_csv(index=False))
    elif fmt == ListFormat.json:
        sys.stdout.write(json.dumps({"model": model.value, "rows": json.loads(df.to_json(orient="records")), "summary": s},
                                    indent=2, default=str) + "\n")
    else:
        Console().print(df.to_string(index=False), highlight=False)
        for k in ("loto", "external"):
            if k in s:
                typer.echo(f"{k}: {s[k]['rows']} held-out rows, total log score {s[k]['log_score']:.1f}, "
                           f"{100 * s[k]['coverage']:.0f}% inside their 95% predictive interval ({model.value}).")
    left = unclassified_outcomes(ev)
    if left:
        err.print("stored outcomes of simulated trials not in params/validation.yaml: " + ", ".join(left))
    err.print(SIM_NOTE)


@simulate_app.command("scores")
def simulate_scores(
    fmt: ListFormat = typer.Option(ListFormat.table, "--format"),
    seed: int = typer.Option(2024, "--seed"),
    scheduler: str = typer.Option("auto", "--scheduler", help=_SCHED_HELP),
    data: Optional[Path] = DataOpt,
) -> None:
    """Simulator vs the meta-analytic null: total and per-trial log scores and 95% coverage (loto, external)."""
    from lnsynth.simulate.validate import compare, validate

    ev, bank, eb, sim = _sim_validation(data, seed, scheduler)
    null = validate(ev, bank=bank, model="null", ext_bank=eb)
    c = compare(sim, null)
    pt = c["per_trial"]
    if fmt == ListFormat.csv:
        sys.stdout.write(pt.to_csv(index=False))
    elif fmt == ListFormat.json:
        sys.stdout.write(json.dumps({"totals": c["totals"], "per_trial": json.loads(pt.to_json(orient="records")),
                                     "beats_null": c["beats_null"]}, indent=2, default=str) + "\n")
    else:
        Console().print(pt.to_string(index=False), highlight=False)
        for k, t in c["totals"].items():
            typer.echo(f"{k}: {t['rows']} rows in {t['trials']} trials; log score simulator {t['log_score_sim']:.1f} vs "
                       f"null {t['log_score_null']:.1f}; coverage {100 * t['coverage_sim']:.0f}% vs {100 * t['coverage_null']:.0f}%.")
        typer.echo("The simulator " + ("beats" if c["beats_null"] else "does NOT beat")
                   + " the meta-analytic null by the issue's criterion.")
    err.print(SIM_NOTE)


@simulate_app.command("validate-rates")
def simulate_validate_rates(
    fmt: ListFormat = typer.Option(ListFormat.table, "--format"),
    model: SimModel = typer.Option(SimModel.simulator, "--model", help="simulator or null."),
    seed: int = typer.Option(2024, "--seed"),
    scheduler: str = typer.Option("auto", "--scheduler", help=_SCHED_HELP),
    data: Optional[Path] = DataOpt,
) -> None:
    """Rows whose events can exceed n (flare counts over person-time), scored like `simulate validate`;
    intervals as events per patient-year."""
    from lnsynth.simulate.validate import validate_rates

    if model == SimModel.stacked:
        err.print("[red]--model stacked is not available for rates; use simulator or null[/]")
        raise typer.Exit(2)
    ev, bank, _ = _sim_bank(data, seed, scheduler)
    df = validate_rates(ev, bank=bank, model=model.value)
    if fmt == ListFormat.csv:
        sys.stdout.write(df.to_csv(index=False))
    elif fmt == ListFormat.json:
        sys.stdout.write(df.to_json(orient="records", indent=2) + "\n")
    else:
        Console().print(df.to_string(index=False) if len(df) else f"no rate rows the {model.value} can predict", highlight=False)
    err.print(SIM_NOTE)


@simulate_app.command("identify")
def simulate_identify(
    fmt: ListFormat = typer.Option(ListFormat.table, "--format"),
    structure: str = typer.Option("base", "--structure", help="Model structure (params/validation.yaml structures)."),
    seed: int = typer.Option(2024, "--seed"),
    scheduler: str = typer.Option("auto", "--scheduler", help=_SCHED_HELP),
    data: Optional[Path] = DataOpt,
) -> None:
    """Posterior/prior 95% width ratio of each free parameter ('not identified by the data' when close to 1)."""
    from lnsynth.simulate.params import structures
    from lnsynth.simulate.validate import prior_posterior_widths

    if structure not in structures():
        err.print(f"[red]--structure: unknown structure {structure!r}; valid: {', '.join(structures())}[/]")
        raise typer.Exit(2)
    _, bank, _ = _sim_bank(data, seed, scheduler, structure)
    df = prior_posterior_widths(bank)
    if fmt == ListFormat.csv:
        sys.stdout.write(df.to_csv(index=False))
    elif fmt == ListFormat.json:
        sys.stdout.write(df.to_json(orient="records", indent=2) + "\n")
    else:
        Console().print(df.to_string(index=False), highlight=False)
    err.print(SIM_NOTE)


@simulate_app.command("question")
def simulate_question(
    which: str = typer.Argument(..., help="a: non-immune share of 6-month remission; b: flares after taper; c: power on a hard endpoint; d: 6/12/24-month remission."),
    plot: str = typer.Option("", "--plot", help="Write the question's figure to this file."),
    fmt: MdFormat = typer.Option(MdFormat.md, "--format"),
) -> None:
    """Answer one of the review's questions with an interval (and a figure)."""
    from lnsynth.simulate import answer

    if which not in ("a", "b", "c", "d"):
        err.print(f"[red]question must be one of a, b, c, d; got {which!r}[/]")
        raise typer.Exit(2)
    res = answer(which)
    if fmt == MdFormat.csv:
        sys.stdout.write(res.table.to_csv(index=False))
    elif fmt == MdFormat.json:
        sys.stdout.write(json.dumps({"estimate": res.estimate, "low": res.low, "high": res.high, "unit": res.unit,
                                     "summary": res.summary, "table": json.loads(res.table.to_json(orient="records"))}, indent=2, default=str) + "\n")
    else:
        typer.echo(res.text())
    if plot:
        from lnsynth.plots.simulate import question_figure

        question_figure(res).savefig(plot, bbox_inches="tight", dpi=120)
        err.print(f"figure written to {plot}")
    err.print(SIM_NOTE)


@simulate_app.command("sweep")
def simulate_sweep(
    scheduler: str = typer.Option("local", "--scheduler", help="local (2-worker Dask LocalCluster), serial, or a scheduler ADDRESS."),
    n: int = typer.Option(2000, "--n", help="Virtual patients per arm and grid point."),
    seed: int = typer.Option(0, "--seed"),
    fmt: DataFormat = typer.Option(DataFormat.csv, "--format"),
) -> None:
    """Parameter sweep of the regimens protocol, fanned out with Dask."""
    from lnsynth.simulate import sweep

    sched = None if scheduler == "serial" else scheduler
    df = sweep(n=n, seed=seed, scheduler=sched)
    if fmt == DataFormat.csv:
        sys.stdout.write(df.to_csv(index=False))
    else:
        sys.stdout.write(df.to_json(orient="records", indent=2) + "\n")
    err.print(SIM_NOTE)


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8000, "--port"),
    allowed_host: Optional[list[str]] = typer.Option(None, "--allowed-host", metavar="NAME", help="Host name the server answers to, besides 127.0.0.1, localhost, [::1] and the --host address (repeatable; also $LNSYNTH_ALLOWED_HOSTS, comma-separated). Other Host headers get 400 (DNS rebinding)."),
    db: Path = typer.Option(Path("lnsynth.sqlite"), "--db", help="SQLite store (seeded from the package data on first start)."),
    token_file: Optional[Path] = typer.Option(None, "--token-file", help="File whose first line is the shared bootstrap-admin token (default: $LNSYNTH_TOKEN, else one is generated). Never on the command line: it would show in `ps`."),
    insecure_dev_token: bool = typer.Option(False, "--insecure-dev-token", help="Allow a token shorter than 16 characters (local development only)."),
    token: Optional[str] = typer.Option(None, "--token", hidden=True, help="Refused: a token on the command line shows in `ps`."),
    forwarded_allow_ips: Optional[str] = typer.Option(None, "--forwarded-allow-ips", metavar="IPS", help="Comma-separated addresses of reverse proxies whose X-Forwarded-For is trusted (default: none; the connection's address is used for throttling and the audit)."),
) -> None:
    """Run the local web app (browse, analyse and curate the evidence). Needs the 'web' extra.

    Curators log in with named accounts (see 'lnsynth users'); the shared token acts as the bootstrap admin.
    """
    if token is not None:
        raise _user_error("--token: a token on the command line shows in `ps` and shell history; put it in "
                          "$LNSYNTH_TOKEN or in a file given with --token-file")
    import importlib.util

    missing = [m for m in ("fastapi", "uvicorn", "multipart", "itsdangerous", "httpx", "argon2") if importlib.util.find_spec(m) is None]
    if missing:
        pkg = {"multipart": "python-multipart", "argon2": "argon2-cffi"}
        sys.stderr.write("lnsynth: error: the web app needs the 'web' extra (missing: "
                         + ", ".join(pkg.get(m, m) for m in missing)
                         + f"); install it with: {sys.executable} -m pip install 'lnsynth[web]' "
                         "(from a checkout: pip install -e '.[web]'; `make report` installs it)\n")
        raise typer.Exit(2)
    from lnsynth.web import serve as _serve
    from lnsynth.web.auth import check_token, read_token

    try:
        shared = read_token(token_file)
        check_token(shared, insecure_dev_token)
    except ValueError as exc:
        raise _user_error(f"{'--token-file' if token_file else 'LNSYNTH_TOKEN'}: {exc}") from None
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else ("[::1]" if host == "::" else (f"[{host}]" if ":" in host else host))
    every = " (listening on every interface)" if host in ("0.0.0.0", "::", "") else ""
    sys.stderr.write(f"lnsynth serve: http://{shown}:{port}/{every} (store {db}; Ctrl+C to stop)\n")
    sys.stderr.flush()
    _serve(host, port, db, shared, allowed_hosts=allowed_host or None, insecure_dev_token=insecure_dev_token,
           forwarded_allow_ips=forwarded_allow_ips)


users_app = typer.Typer(help="Named curators of the web app's store: add, list, change, make API tokens.",
                        no_args_is_help=True)
app.add_typer(users_app, name="users")


def _users_store(db: Path):
    if not db.exists():
        raise _user_error(f"--db {db}: no store there (start `lnsynth serve --db {db}` once to create it)")
    from lnsynth.web.store import Store

    return Store(db)


def _read_password(what: str) -> str:
    """The password from $LNSYNTH_PASSWORD, else asked twice on a terminal, else the first line of stdin."""
    import getpass
    import os

    pw = os.environ.get("LNSYNTH_PASSWORD")
    if pw is None:
        if sys.stdin.isatty():
            pw = getpass.getpass(f"password for {what}: ")
            if getpass.getpass("again: ") != pw:
                raise _user_error("the passwords differ")
        else:
            pw = sys.stdin.readline().rstrip("\r\n")
    return pw


@users_app.command("add")
def users_add(
    name: str = typer.Argument(..., help="Username (lowercase letters, digits, '_', '.', '-')."),
    role: str = typer.Option(..., "--role", help="viewer, curator, reviewer or admin."),
    db: Path = typer.Option(Path("lnsynth.sqlite"), "--db", help="SQLite store of 'lnsynth serve' (created if new)."),
) -> None:
    """Add a user; the password is read from $LNSYNTH_PASSWORD or stdin (never from the command line)."""
    from lnsynth.web.auth import hash_password, password_problem, username_problem
    from lnsynth.web.store import ROLES, Conflict, Store

    if username_problem(name):
        raise _user_error(f"NAME: {username_problem(name)}")
    if role not in ROLES:
        raise _user_error(f"--role: expected one of {', '.join(ROLES)}, got {role!r}")
    pw = _read_password(name)
    if password_problem(pw):
        raise _user_error(f"password: {password_problem(pw)}")
    store = Store(db)  # the first admin may be made before the first `serve`
    try:
        store.add_user(name, role, hash_password(pw), "cli")
    except Conflict:
        raise _user_error(f"NAME: user {name!r} exists (use 'lnsynth users set')") from None
    finally:
        store.close()
    typer.echo(f"user {name} added with role {role}")


@users_app.command("list")
def users_list(db: Path = typer.Option(Path("lnsynth.sqlite"), "--db")) -> None:
    """List the users and their roles."""
    store = _users_store(db)
    try:
        for u in store.users():
            typer.echo(f"{u['name']}\t{u['role']}\t{'active' if u['active'] else 'inactive'}")
    finally:
        store.close()


@users_app.command("set")
def users_set(
    name: str = typer.Argument(...),
    role: Optional[str] = typer.Option(None, "--role"),
    password: bool = typer.Option(False, "--password", help="Set a new password (read like 'users add')."),
    deactivate: bool = typer.Option(False, "--deactivate", help="Disable the account (ends its sessions and tokens)."),
    db: Path = typer.Option(Path("lnsynth.sqlite"), "--db"),
) -> None:
    """Change a user's role or password, or deactivate the account."""
    from lnsynth.web.auth import hash_password, password_problem
    from lnsynth.web.store import ROLES, NotFound

    if role is not None and role not in ROLES:
        raise _user_error(f"--role: expected one of {', '.join(ROLES)}, got {role!r}")
    h = None
    if password:
        pw = _read_password(name)
        if password_problem(pw):
            raise _user_error(f"password: {password_problem(pw)}")
        h = hash_password(pw)
    store = _users_store(db)
    try:
        store.update_user(name, "cli", role=role, password_hash=h, active=False if deactivate else None)
    except NotFound as exc:
        raise _user_error(f"NAME: {exc}") from None
    finally:
        store.close()
    typer.echo(f"user {name} updated")


@users_app.command("token")
def users_token(
    name: str = typer.Argument(...),
    label: str = typer.Option("", "--label"),
    db: Path = typer.Option(Path("lnsynth.sqlite"), "--db"),
) -> None:
    """Make an API token for a user and print it once (only its SHA-256 is stored)."""
    from lnsynth.web.auth import digest, new_api_token
    from lnsynth.web.store import NotFound

    store = _users_store(db)
    tok = new_api_token()
    try:
        store.add_api_token(name, digest(tok), label, "cli")
    except NotFound as exc:
        raise _user_error(f"NAME: {exc}") from None
    finally:
        store.close()
    typer.echo(tok)


@app.command("export")
def export_cmd(
    db: Path = typer.Option(..., "--db", help="SQLite store written by 'lnsynth serve'."),
    out: Path = typer.Option(Path("evidence-export"), "--out", help="Directory for the YAML layout (studies/, syntheses/, sources.yaml)."),
    audit: bool = typer.Option(False, "--audit", help="Also write the audit trail (who entered, changed, verified, deleted; logins) as audit.jsonl."),
) -> None:
    """Write the web app's store back to the YAML layout that 'load_evidence(dir)' reads."""
    from lnsynth.web import export as _export

    try:
        _export(db, out, audit=audit)
    except FileNotFoundError as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(2)
    typer.echo(f"exported to {out}")


@app.command("import")
def import_cmd(
    source: Path = typer.Argument(..., metavar="FILE_OR_DIR", help="A directory written by 'lnsynth export' (sources.yaml, studies/, syntheses/) or one study YAML file."),
    db: Path = typer.Option(..., "--db", help="SQLite store of 'lnsynth serve' (created and seeded if new)."),
) -> None:
    """Import an export into the web app's store (round trip of 'lnsynth export'); refuses incomplete provenance.

    Everything is checked first, by the evidence loader: a value without source, location or
    quote, an unknown source or a bad field stops the import (exit 2, naming file, trial and
    field) and nothing is written. Trials identical to the store's are left alone; changed ones
    replace the store's (audited); new ones are added. Stop or restart a running server afterwards.
    """
    from lnsynth.web.store import ImportRefused, Store, import_store

    if not source.exists():
        err.print(f"[red]lnsynth import: {escape(str(source))}: no such file or directory (missing)[/]")
        raise typer.Exit(2)
    store = Store(db)
    try:
        res = import_store(store, source)
    except ImportRefused as exc:
        err.print(f"[red]lnsynth import: refused, nothing written: {escape(str(exc))}[/]")
        raise typer.Exit(2)
    finally:
        store.close()
    typer.echo(f"imported {source} into {db}: {len(res['added'])} trial(s) added, {len(res['replaced'])} replaced, "
               f"{len(res['unchanged'])} unchanged; {len(res['sources_added'])} source(s) added")
    for k in ("added", "replaced"):
        if res[k]:
            typer.echo(f"  {k}: {', '.join(res[k])}")


# ----------------------------------------------------------------------------- living evidence (issue 22)
records_app = typer.Typer(help="Bibliographic records in for screening: PubMed/MEDLINE (.nbib/.txt), PubMed XML, RIS, "
                          "ClinicalTrials.gov API v2 JSON, CSV.", no_args_is_help=True)
app.add_typer(records_app, name="records")


def _sqlite_db(db: Path) -> Path:
    """The SQLite store path; a server database URL (LNSYNTH_DATABASE_URL) is refused, not ignored."""
    import os

    url = os.environ.get("LNSYNTH_DATABASE_URL", "").strip()
    if url and not url.startswith("sqlite"):
        raise _user_error(f"LNSYNTH_DATABASE_URL={url.split('://')[0]}://...: only the SQLite store (--db FILE) is "
                          "supported by this version; unset LNSYNTH_DATABASE_URL")
    if db.exists() and not db.is_file():
        raise _user_error(f"--db {db}: not a file")
    return db


def _open_store(db: Path):
    import sqlite3

    from lnsynth.web.store import Store

    try:
        return Store(_sqlite_db(db))
    except sqlite3.DatabaseError as exc:
        raise _user_error(f"--db {db}: not an lnsynth SQLite store ({exc})") from None


@records_app.command("import")
def records_import(
    file: Path = typer.Argument(..., metavar="FILE", help="The exported records file."),
    db: Path = typer.Option(..., "--db", help="SQLite store of 'lnsynth serve' (created and seeded if new)."),
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
        known = [(f"search log {r.id}", r) for r in log.records]
        known += [(f"screening record {r['id']}", r) for r in store.screening_records()]
        known += [(f"evidence source {s.get('id')}", s) for s in json.loads(store.meta("sources") or "[]")
                  if isinstance(s, dict)]
        dups = dedup_against(recs, known)
        new = [r for r, d in zip(recs, dups) if d is None]
        ids = store.queue_screening([r.to_dict() for r in new], str(file), kind)
    finally:
        store.close()
    out = {"new": len(new), "duplicates": len(recs) - len(new), "errors": [], "file": str(file), "format": kind,
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


@app.command("update")
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
    user error. Default thresholds: the CI moving across the null, certainty changing by a level.
    """
    from lnsynth.analyses.updates import StateDir, UpdateError, run_update

    if fmt not in ("text", "json"):
        raise _user_error(f"--format: expected text or json, got {fmt!r}")
    if db is not None and (data is not None or state is not None):
        raise _user_error("--db stores its own snapshots and analyses its own evidence: give --db alone, "
                          "or --data/--state without --db")
    if db is None and state is None:
        raise _user_error("give --db STORE, or --state DIR for the folder where the answer snapshots are kept")
    store = None
    try:
        if db is not None:
            store = _open_store(db)
            ev, backend = store.evidence(), store
        else:
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


def main() -> None:  # pragma: no cover - thin wrapper
    # headless figure rendering for the CLI, the report and the web server threads, chosen at the
    # entry point (never by a module at import); an explicit MPLBACKEND wins
    import os

    os.environ.setdefault("MPLBACKEND", "Agg")
    app()


if __name__ == "__main__":  # pragma: no cover
    main()

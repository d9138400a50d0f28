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
from rich.console import Console
from rich.markup import escape

from lnsynth import DISCLAIMER, __version__
from lnsynth import registry as _registry

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help=f"lnsynth {__version__}: evidence on calcineurin inhibitors in lupus nephritis. {DISCLAIMER}",
)
err = Console(stderr=True)


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

    try:
        return load_evidence(data)
    except EvidenceError as exc:
        err.print(f"[bold red]evidence error[/]\n{exc}")
        raise typer.Exit(2)


DataOpt = typer.Option(None, "--data", help="Evidence directory (default: the embedded package data).")


@app.command()
def trials(
    fmt: ListFormat = typer.Option(ListFormat.table, "--format"),
    since: Optional[int] = typer.Option(None, "--since", help="Only trials with a publication from this year on (e.g. 2021: what is new since the review)."),
    data: Optional[Path] = DataOpt,
) -> None:
    """List the stored trials, their publications and links, and the evidence date."""
    from lnsynth.evidence.load import currency

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
        for c in ["id", "label", "randomised", "n", "regimens", "publications", "links"]:
            t.add_column(c)
        for r in recs:
            roles = sorted({p["role"] for p in r["publications"]})
            t.add_row(r["id"], r["label"], "yes" if r["randomised"] else "no", str(r["n_randomised"] or r["n_enrolled"] or ""),
                      ", ".join(a["regimen"] for a in r["arms"]),
                      f"{len(r['publications'])} ({', '.join(roles)}; latest {r['latest_year']})",
                      "; ".join(f"{ln['type']} {ln['trial']}" for ln in r["links"]))
        Console().print(t)


@app.command()
def questions(fmt: ListFormat = typer.Option(ListFormat.table, "--format")) -> None:
    """List the catalogue of clinical questions (PICO, relation, outcomes, analysis plan)."""
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
        for c in ["id", "relation", "population", "intervention", "comparator"]:
            t.add_column(c)
        for q in qs:
            t.add_row(q["id"], q["relation"], q["population"], q["intervention"], q["comparator"])
        Console().print(t)


class AnswerFormat(str, Enum):
    table = "table"
    md = "md"
    json = "json"
    csv = "csv"


@app.command()
def answer(
    question_id: str = typer.Argument(..., help="A question id (see `lnsynth questions`)."),
    fmt: AnswerFormat = typer.Option(AnswerFormat.table, "--format"),
    data: Optional[Path] = DataOpt,
) -> None:
    """Answer one clinical question: inclusion table, summary of findings with GRADE certainty."""
    from lnsynth.analyses.answer import answer as _answer
    from lnsynth.analyses.questions import QuestionError
    from lnsynth.report.sof import answer_markdown

    ev = _load(data)
    try:
        a = _answer(ev, question_id)
    except QuestionError as exc:
        err.print(f"[red]{escape(str(exc))}[/]")
        raise typer.Exit(2)
    if fmt == AnswerFormat.json:
        sys.stdout.write(json.dumps(a.to_dict(), indent=2, ensure_ascii=False) + "\n")
    elif fmt == AnswerFormat.csv:
        sys.stdout.write(a.to_frame().to_csv(index=False))
    else:
        sys.stdout.write(answer_markdown(a) + "\n")
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


@app.command()
def meta(
    outcome: str = typer.Option(..., "--outcome", help='Endpoint, e.g. "complete remission".'),
    treatment: str = typer.Option(..., "--treatment", help="Regimen codes/classes, comma-separated (e.g. TAC+MMF, CNI, CNI-any)."),
    control: str = typer.Option(..., "--control", help="Regimen codes/classes for the comparator (e.g. IVCYC)."),
    measure: str = typer.Option("RR", "--measure", help="Binary measure: " + ", ".join(_registry.measures_for("binary")) + "."),
    method: str = typer.Option("REML", "--method", help="Estimator: " + ", ".join(f"{m['code']} ({m['name']})" for m in _registry.methods_table()) + "."),
    test: str = typer.Option("z", "--test", help="z or knha."),
    timepoint: str = typer.Option("latest", "--timepoint", help="latest, earliest or weeks when a study reports several."),
    fmt: ListFormat = typer.Option(ListFormat.table, "--format"),
    plot: str = typer.Option("forest.png", "--plot", help="Forest plot file (png/svg/pdf); '' to skip."),
    approximate: bool = typer.Option(True, "--approximate/--strict", help="Default (the one policy of every surface): use round(pct/100*n) where no count reproduces a printed percentage, flagged; --strict leaves such trials out (with a warning)."),
    data: Optional[Path] = DataOpt,
) -> None:
    """Pairwise meta-analysis of any comparison across the stored trials (an explorer; it can mix add-on and
    substitution trials). For a clinical answer with its certainty use `lnsynth answer ID`."""
    from lnsynth.analyses.selection import SelectionWarning, pairwise_data
    from lnsynth.pairwise import effect_sizes, meta_analysis

    ev = _load(data)
    tp = timepoint if timepoint in ("latest", "earliest") else float(timepoint)
    with _warnings_to_stderr(SelectionWarning):
        try:
            d = pairwise_data(ev, outcome, treatment, control, timepoint=tp, approximate=approximate)
        except ValueError as exc:
            err.print(f"[red]{exc}[/]")
            raise typer.Exit(2)
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
    es = effect_sizes(measure.upper(), labels=d.labels, **d.counts())
    with _warnings_to_stderr():
        res = meta_analysis(es, method=method, test=test)
    study = d.frame[["label", "timepoint_weeks", "treatment_arms", "events_treat", "n_treat", "control_arms", "events_ctrl", "n_ctrl", "derived"]]
    if fmt == ListFormat.json:
        payload = {"outcome": outcome, "treatment": treatment, "control": control, "measure": measure.upper(), "method": method.upper(), "test": test,
                   "result": {k: (v.item() if hasattr(v, "item") else v) for k, v in res.to_dict().items()},
                   "studies": json.loads(study.to_json(orient="records")), "notes": d.notes()}
        sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")
    elif fmt == ListFormat.csv:
        sys.stdout.write(res.to_frame().to_csv(index=False))
    else:
        Console().print(study.to_string(index=False), highlight=False)
        typer.echo("")
        typer.echo(res.summary())
        for n in d.notes():
            typer.echo(f"note: {n}")
        typer.echo(DISCLAIMER)
    if plot:
        from lnsynth.plots.forest import forest_plot

        fig = forest_plot(res, labels=d.labels, transf="exp" if measure.upper() in ("RR", "OR") else None)
        fig.savefig(plot, bbox_inches="tight")
        err.print(f"forest plot written to {plot}")


class MdFormat(str, Enum):
    md = "md"
    csv = "csv"
    json = "json"


@app.command()
def nma(
    outcome: str = typer.Option("complete remission", "--outcome", help='Endpoint, e.g. "complete remission".'),
    method: str = typer.Option("REML", "--method", help="Network model: " + ", ".join(_registry.methods("network")) + "."),
    measure: str = typer.Option("OR", "--measure", help="Binary measure: " + ", ".join(_registry.network_measures("binary")) + "."),
    approximate: bool = typer.Option(True, "--approximate/--strict", help="Use round(pct/100*n) where no count reproduces a printed % (flagged)."),
    fmt: MdFormat = typer.Option(MdFormat.md, "--format"),
    plot: str = typer.Option("", "--plot", help="Write the network graph to this file (png/svg)."),
    data: Optional[Path] = DataOpt,
) -> None:
    """Network meta-analysis of induction regimens on the stored trials (reference: IV cyclophosphamide)."""
    from lnsynth.analyses.network_data import REFERENCE_NODE, arm_level_data
    from lnsynth.network import network_meta_analysis

    ev = _load(data)
    with _warnings_to_stderr():
        d = arm_level_data(ev, outcome, approximate=approximate)
        if d.k < 2:
            err.print(f"[red]fewer than two studies with usable counts for {outcome}[/]")
            raise typer.Exit(1)
        try:
            fit = network_meta_analysis(d.frame, study="study", treatment="treatment", events="events", n="n",
                                        measure=measure.upper(), reference=REFERENCE_NODE, method=method.upper())
        except ValueError as exc:
            err.print(f"[red]{exc}[/]")
            raise typer.Exit(2)
    rel = fit.relative_effects()
    rank = fit.pscores(small_values="bad")
    rel = rel.assign(pscore=rel["treatment"].map(rank))
    if fmt == MdFormat.csv:
        sys.stdout.write(rel.to_csv(index=False))
    elif fmt == MdFormat.json:
        payload = {"outcome": outcome, "measure": measure.upper(), "method": method.upper(), "reference": REFERENCE_NODE,
                   "tau2": float(fit.tau2), "relative_effects": json.loads(rel.to_json(orient="records")),
                   "pscores": {k: float(v) for k, v in rank.items()}, "studies": json.loads(d.frame.to_json(orient="records")),
                   "notes": list(d.notes) + [f"{s}: excluded ({w})" for s, w in d.excluded]}
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
    else:
        typer.echo(f"## Network meta-analysis: {outcome} ({method.upper()}, log {measure.upper()}; reference {REFERENCE_NODE})\n")
        typer.echo(f"{d.k} studies, {d.patients} patients; tau2 = {float(fit.tau2):.4g}\n")
        typer.echo("| treatment | estimate (log) | se | ci_low | ci_high | ratio [95% CI] | P-score |")
        typer.echo("|---|---|---|---|---|---|---|")
        import math as _m
        for r in rel.itertuples():
            typer.echo(f"| {r.treatment} | {r.estimate:.4f} | {r.se:.4f} | {r.ci_low:.4f} | {r.ci_high:.4f} | "
                       f"{_m.exp(r.estimate):.2f} [{_m.exp(r.ci_low):.2f}, {_m.exp(r.ci_high):.2f}] | {r.pscore:.3f} |")
        typer.echo("")
        for n in list(d.notes) + [f"{s}: excluded ({w})" for s, w in d.excluded]:
            typer.echo(f"- note: {n}")
        typer.echo(f"\n{DISCLAIMER}")
    if plot:
        from lnsynth.plots.network import network_graph

        network_graph(fit).savefig(plot, bbox_inches="tight")
        err.print(f"network graph written to {plot}")


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
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    prog = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err)
    task = prog.add_task(description, total=total)
    return prog, task


@simulate_app.command("validate")
def simulate_validate(
    fmt: ListFormat = typer.Option(ListFormat.table, "--format"),
    seed: int = typer.Option(2024, "--seed"),
    scheduler: str = typer.Option("auto", "--scheduler", help="auto, serial, local (2-worker Dask LocalCluster) or a scheduler address."),
    data: Optional[Path] = DataOpt,
) -> None:
    """Leave-one-trial-out validation: 95% predictive intervals for every held-out arm."""
    from lnsynth.simulate import calibrate, validate_loo, validation_summary
    from lnsynth.simulate.calibrate import n_calibration_draws

    ev = _load(data)
    sched = None if scheduler == "serial" else scheduler
    prog, task = _progress_bar(n_calibration_draws(), "calibrating (cached after the first run)")
    with prog:
        bank = calibrate(ev, seed=seed, scheduler=sched, progress=lambda: prog.advance(task))
        prog.update(task, completed=n_calibration_draws())
    df = validate_loo(ev, seed=seed, scheduler=sched, bank=bank)
    s = validation_summary(df)
    if fmt == ListFormat.csv:
        sys.stdout.write(df.to_csv(index=False))
    elif fmt == ListFormat.json:
        sys.stdout.write(json.dumps({"rows": json.loads(df.to_json(orient="records")), "summary": s}, indent=2, default=str) + "\n")
    else:
        Console().print(df.to_string(index=False), highlight=False)
        typer.echo(f"\n{s['n_inside']}/{s['n_arms']} held-out arms inside their 95% predictive interval "
                   f"({100 * s['coverage']:.0f}%); median width {s['median_width_ratio']:.2f}x the binomial width.")
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
    db: Path = typer.Option(Path("lnsynth.sqlite"), "--db", help="SQLite store (seeded from the package data on first start)."),
    token: Optional[str] = typer.Option(None, "--token", envvar="LNSYNTH_TOKEN", help="Bearer token for writes (default: $LNSYNTH_TOKEN, else generated)."),
) -> None:
    """Run the local web app (browse, analyse and curate the evidence). Needs the 'web' extra."""
    try:
        from lnsynth.web import serve as _serve
    except ImportError as exc:  # pragma: no cover - depends on extras
        err.print(f"[red]the web app needs the 'web' extra: pip install 'lnsynth[web]' ({exc})[/]")
        raise typer.Exit(2)
    _serve(host, port, db, token)


@app.command("export")
def export_cmd(
    db: Path = typer.Option(..., "--db", help="SQLite store written by 'lnsynth serve'."),
    out: Path = typer.Option(Path("evidence-export"), "--out", help="Directory for the YAML layout (studies/, syntheses/, sources.yaml)."),
) -> None:
    """Write the web app's store back to the YAML layout that 'load_evidence(dir)' reads."""
    from lnsynth.web import export as _export

    try:
        _export(db, out)
    except FileNotFoundError as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(2)
    typer.echo(f"exported to {out}")


def main() -> None:  # pragma: no cover - thin wrapper
    # headless figure rendering for the CLI, the report and the web server threads, chosen at the
    # entry point (never by a module at import); an explicit MPLBACKEND wins
    import os

    os.environ.setdefault("MPLBACKEND", "Agg")
    app()


if __name__ == "__main__":  # pragma: no cover
    main()

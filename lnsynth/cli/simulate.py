"""``lnsynth simulate ...``: the mechanistic simulator (hypothesis-generating, not treatment advice)."""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from lnsynth.cli.common import Console, DataFormat, DataOpt, ListFormat, MdFormat, _load, emit, err


simulate_app = typer.Typer(no_args_is_help=True, help="Mechanistic simulator: hypothesis-generating simulation, not treatment advice.")
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
    emit(fmt, csv=df, json_=df, text=lambda: Console().print(
        df.to_string(index=False) if len(df) else f"no rate rows the {model.value} can predict", highlight=False))
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
    emit(fmt, csv=df, json_=df, text=lambda: Console().print(df.to_string(index=False), highlight=False))
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
    emit(fmt, csv=res.table, text=lambda: typer.echo(res.text()), ensure_ascii=True, default=str,
         json_=lambda: {"estimate": res.estimate, "low": res.low, "high": res.high, "unit": res.unit,
                        "summary": res.summary, "table": json.loads(res.table.to_json(orient="records"))})
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
    emit(fmt, csv=df, json_=df)
    err.print(SIM_NOTE)


@simulate_app.command("predict")
def simulate_predict(
    design: Path = typer.Option(..., "--design", help="Design FILE (YAML or JSON): trials with arms and rows, no outcomes."),
    fmt: ListFormat = typer.Option(ListFormat.json, "--format", help="json (the contract: pmf per row), table or csv (no pmf)."),
    model: str = typer.Option("stacked", "--model", help="stacked (default), mbma, null or simulator."),
    seed: int = typer.Option(2024, "--seed"),
) -> None:
    """Predict each row of a planned trial from its design (issue 23); never reads outcomes of a trial it names."""
    from lnsynth.cli.common import _user_error
    from lnsynth.simulate.design import DesignError
    from lnsynth.simulate.predict import predict_file, table_text

    try:
        out = predict_file(design, model, seed)
    except DesignError as e:
        raise _user_error(str(e))
    if fmt == ListFormat.table:
        typer.echo(table_text(out))
    elif fmt == ListFormat.csv:
        import pandas as pd

        sys.stdout.write(pd.DataFrame([{k: v for k, v in r.items() if k != "pmf"} for r in out["rows"]]).to_csv(index=False))
    else:
        sys.stdout.write(json.dumps(out) + "\n")
    err.print(SIM_NOTE)


@simulate_app.command("predict-validate")
def simulate_predict_validate(
    fmt: ListFormat = typer.Option(ListFormat.table, "--format"),
    model: str = typer.Option("stacked", "--model", help="mbma, null, null_arm (covariate-free), simulator or stacked."),
    seed: int = typer.Option(2024, "--seed"),
) -> None:
    """Blind scores of the trial predictor (issue 23) in the `simulate validate` layout; set = loto, external or
    time (fit on trials to 2019, predict 2020+). Minutes on first run, then cached."""
    from lnsynth.cli.common import _user_error
    from lnsynth.simulate.predict_score import MODELS, scores, validate_frame

    if model not in MODELS:
        raise _user_error(f"--model: unknown model {model!r} (valid: {', '.join(MODELS)})")
    df = validate_frame(scores(seed), model)
    if fmt == ListFormat.csv:
        sys.stdout.write(df.to_csv(index=False))
    elif fmt == ListFormat.json:
        sys.stdout.write(json.dumps({"model": model, "rows": json.loads(df.to_json(orient="records"))}, default=str) + "\n")
    else:
        Console().print(df.to_string(index=False), highlight=False)
        for k, d in df.groupby("set"):
            typer.echo(f"{k}: {len(d)} rows, total log score {d.log_pred.sum():.1f} ({model}).")
    err.print(SIM_NOTE)

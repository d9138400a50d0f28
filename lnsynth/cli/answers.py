"""Clinical questions and their analyses: questions, answer, rederive, sensitivity, report."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from lnsynth import DISCLAIMER
from lnsynth.cli.common import (
    AnswerFormat, DataOpt, ListFormat, MdFormat, _LIST_FORMAT_HELP, _list_format, _load, _print_table,
    _user_error, _warnings_to_stderr, emit, err, escape,
)


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


def report(
    out: Path = typer.Option(Path("report"), "--out", help="Output directory (index.html is written there)."),
    data: Optional[Path] = DataOpt,
    state: Optional[Path] = typer.Option(None, "--state", help="Folder of 'lnsynth update --state': each question "
                                         "shows what the latest update changed and the thresholds it crossed."),
    db: Optional[Path] = typer.Option(None, "--db", help="Report the evidence of the curation store (the SQLite file "
                                      "of 'lnsynth serve', or $LNSYNTH_DATABASE_URL) with its latest 'lnsynth update' "
                                      "notices, instead of the YAML evidence."),
    from_store: bool = typer.Option(False, "--store", help="Report the curation store named by "
                                    "$LNSYNTH_DATABASE_URL (PostgreSQL), as --db does for a SQLite file."),
) -> None:
    """Build the self-contained HTML evidence report."""
    from lnsynth.analyses.updates import StateDir, UpdateError
    from lnsynth.report.build import build_report

    if db is not None or from_store:
        if state is not None or data is not None:
            raise _user_error("--db/--store report the curation store's evidence; do not combine them with "
                              "--state or --data")
        from lnsynth.cli.living import _open_store

        store = _open_store(db, must_exist=True)
        try:
            path = build_report(out, ev=store.evidence(), snapshots=store)
        finally:
            store.close()
        typer.echo(f"wrote {path}")
        return
    snapshots = None
    if state is not None:
        if not state.is_dir():
            raise _user_error(f"--state {state}: no such folder (written by 'lnsynth update --state')")
        try:
            snapshots = StateDir(state)
            snapshots.latest_answer_snapshot()  # an unreadable folder fails here, with its name
        except UpdateError as exc:
            raise _user_error(str(exc)) from None
    path = build_report(out, data=data, snapshots=snapshots)
    typer.echo(f"wrote {path}")


def rederive(
    fmt: MdFormat = typer.Option(MdFormat.md, "--format"),
    nma_outcome: str = typer.Option("complete remission", "--nma-outcome"),
    data: Optional[Path] = DataOpt,
) -> None:
    """Hannah 2016 and Palmer 2017 re-derived from the stored trials, beside the published estimates."""
    from lnsynth.analyses.rederive import rederive as _rederive

    ev = _load(data)
    res = _rederive(ev, nma_outcome=nma_outcome)
    emit(fmt, res, csv=res.frame, ensure_ascii=True, default=str)
    if fmt == MdFormat.md:
        for n in res.notes:
            typer.echo(f"- note: {n}")
        typer.echo(f"\n{DISCLAIMER}")


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
    emit(fmt, rep)
    if fmt == MdFormat.md:
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

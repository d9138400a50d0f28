"""``lnsynth meta``: pairwise meta-analysis of a user's file or of a comparison across the stored trials."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from lnsynth import DISCLAIMER
from lnsynth import registry as _registry
from lnsynth.cli.common import (
    DataOpt, ListFormat, _load, _out_dir, _plain_warnings, _save_fig, _user_error, _warnings_to_stderr, err, escape,
)


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
    kw: dict[str, Any] = {"transf": "exp"} if ratio else {}
    if arm_data is not None:
        kw["arm_data"] = arm_data
    if favours is not None:
        kw["favours"] = tuple(favours)
    if plot is None:
        assert out is not None  # returned above when neither --out nor --plot was given
        paths = [out / f"forest.{ext}" for ext in formats]
    else:
        paths = [Path(plot)]
    if subgroup is not None:
        sg, groups = subgroup
        fig = subgroup_forest_plot(sg, groups, labels=labels if labels is not None else res.labels,
                                   measure=res.measure, **kw)
    else:
        fig = forest_plot(res, labels=labels, **kw)
    _save_fig(fig, paths, "subgroup forest plot" if subgroup is not None else "forest plot")
    if funnel and out is not None:
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


_METHOD_HELP = "Estimator: " + ", ".join(f"{m['code']} ({m['name']})" for m in _registry.methods_table()) + "."


def meta(
    input_: Optional[Path] = typer.Option(None, "--input", "-i", help="Your own data: .csv, .tsv, .xlsx or RevMan 5 .rm5, one row per study (metafor column names: study, ai, n1i, ci, n2i | m1i, sd1i, n1i, m2i, sd2i, n2i | yi, vi or yi, sei)."),
    columns: Optional[str] = typer.Option(None, "--columns", help="Map fields to your headers, e.g. study=Trial,ai=ev_trt,n1i=n_trt,ci=ev_ctl,n2i=n_ctl."),
    sheet: Optional[str] = typer.Option(None, "--sheet", help="Excel sheet (name or number) or RevMan outcome (e.g. 1.2)."),
    outcome: Optional[str] = typer.Option(None, "--outcome", help='Evidence base: endpoint, e.g. "complete remission".'),
    treatment: Optional[str] = typer.Option(None, "--treatment", help="Evidence base: regimen codes/classes, comma-separated (e.g. TAC+MMF, CNI, CNI-any)."),
    control: Optional[str] = typer.Option(None, "--control", help="Evidence base: regimen codes/classes for the comparator (e.g. IVCYC)."),
    measure: Optional[str] = typer.Option(None, "--measure", help="Effect measure: " + ", ".join(_registry.measure_codes()) + " (default: RR for counts, MD for means, the file's for RevMan)."),
    method: str = typer.Option("REML", "--method", help=_METHOD_HELP),
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

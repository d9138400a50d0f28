"""``lnsynth nma``: network meta-analysis of a user's arm-level file or of the stored trials."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from lnsynth import DISCLAIMER
from lnsynth import registry as _registry
from lnsynth.cli.common import (
    DataOpt, MdFormat, _load, _out_dir, _plain_warnings, _save_fig, _user_error, err,
)


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
    from lnsynth.analyses.network_data import REFERENCE_NODE
    from lnsynth.analyses.network_evidence import evidence_network
    from rich.markup import escape

    measure = (measure or "OR").upper()
    if measure not in _registry.network_measures("binary"):
        raise _user_error(f"--measure {measure}: the evidence base holds event counts; valid: {', '.join(_registry.network_measures('binary'))}")
    ev = _load(data)
    net = evidence_network(ev, outcome, measure=measure, method=method.upper(), approximate=approximate, min_studies=1)
    d = net.data
    if d.k < 2:
        err.print(f"[red]fewer than two studies with usable counts for {outcome}[/]")
    for w in net.warnings:
        err.print(f"[yellow]warning: {escape(w)}[/]", highlight=False)
    if d.k < 2:
        raise typer.Exit(1)
    if net.error is not None:
        raise _user_error(net.error)
    fit = net.fit
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


def cinema_cmd(
    outcome: str = typer.Argument("complete remission", help='Endpoint of the induction network, e.g. "complete remission".'),
    fmt: str = typer.Option("text", "--format", help="text (markdown table and reasons) or json."),
    rule: str = typer.Option("majority", "--rule", help="Within-study bias / indirectness rule: majority, average or highest."),
    data: Optional[Path] = DataOpt,
) -> None:
    """CINeMA confidence (six domains, with reasons) for every estimate of the induction network on the stored trials."""
    from lnsynth.analyses.cinema import cinema_text, network_cinema
    from lnsynth.io import json_safe

    if fmt not in ("text", "json"):
        raise _user_error(f"--format: expected text or json, got {fmt!r}")
    ev = _load(data)
    try:
        nc = network_cinema(ev, outcome, rule=rule)
    except ValueError as exc:
        raise _user_error(str(exc))
    if fmt == "json":
        sys.stdout.write(json.dumps(json_safe(nc.to_dict()), indent=2, ensure_ascii=False) + "\n")
        return
    typer.echo(cinema_text(nc) + f"\n{DISCLAIMER}")

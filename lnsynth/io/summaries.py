"""Summaries of a fit for the command line: JSON-safe values, the summary dict, its markdown and CSV."""

from __future__ import annotations

import csv
import math
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from .. import registry
from .readers import _COUNTS

if TYPE_CHECKING:
    from .tables import TableData


def json_safe(x: Any) -> Any:
    """``x`` with NumPy scalars/arrays made Python and every non-finite float made None (JSON null)."""
    if isinstance(x, dict):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    if isinstance(x, np.ndarray):
        return [json_safe(v) for v in x.tolist()]
    if isinstance(x, (np.bool_, bool)):
        return bool(x)
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        x = float(x)
        return x if math.isfinite(x) else None
    return x


def _num(x: Any) -> float | None:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _back(measure: str | None, ni=None):
    """(function model -> reported scale, scale name) for a measure code (identity for unknown/GEN)."""
    try:
        m = registry.measure(measure) if measure else None
    except ValueError:
        m = None
    if m is None:
        return (lambda x: np.asarray(x, dtype=float)), "identity"
    f = registry.back_transform(m.code)
    if m.back_transform == "transf.ipft.hm":
        return (lambda x: f(x, ni=ni)), m.scale
    return f, m.scale


def pairwise_summary(res, *, table: TableData | None = None, dropped: Sequence[dict] = (),
                     labels: Sequence[str] | None = None) -> dict[str, Any]:
    """The JSON contract of ``lnsynth meta``: pooled result on the reported scale (ratio scale for ratio
    measures; the metafor ``transf`` inverse for PLO/PAS/PFT) and on the model scale (``model_*``;
    ``log_*`` for log-scale measures, else null), heterogeneity, and one record per study."""
    from scipy.special import ndtri

    measure = res.measure
    ni = table.data.get("n") if table is not None else None
    f, scale = _back(measure, ni)
    is_log = scale == "log"
    fv = lambda x: _num(f(x))  # noqa: E731
    out: dict[str, Any] = {
        "k": int(res.k), "measure": measure, "method": res.method, "test": res.test, "level": float(res.level),
        "scale": scale,
        "estimate": fv(res.estimate), "ci_low": fv(res.ci_low), "ci_high": fv(res.ci_high),
        "pi_low": fv(res.pi_low), "pi_high": fv(res.pi_high),
        "tau2": _num(res.tau2), "tau2_ci_low": _num(res.tau2_ci_low), "tau2_ci_high": _num(res.tau2_ci_high),
        "i2": _num(res.i2), "h2": _num(res.h2), "q": _num(res.q), "q_df": max(int(res.k) - 1, 0),
        "q_pvalue": _num(res.q_pvalue),
        "log_estimate": _num(res.estimate) if is_log else None,
        "log_ci_low": _num(res.ci_low) if is_log else None,
        "log_ci_high": _num(res.ci_high) if is_log else None,
        "model_estimate": _num(res.estimate), "model_ci_low": _num(res.ci_low), "model_ci_high": _num(res.ci_high),
        "model_pi_low": _num(res.pi_low), "model_pi_high": _num(res.pi_high),
        "se": _num(res.se), "zval": _num(res.zval), "pvalue": _num(res.pvalue),
    }
    if table is not None:
        out["file"] = table.file
        if table.outcome:
            out["outcome"] = table.outcome
    crit = float(ndtri(1 - (1 - res.level) / 2))
    labs = list(labels if labels is not None else (res.labels or [f"Study {i + 1}" for i in range(len(res.yi))]))
    studies = []
    for i, lab in enumerate(labs):
        y, v = float(res.yi[i]), float(res.vi[i])
        s = math.sqrt(v)
        rec: dict[str, Any] = {"study": lab}
        if table is not None:
            rec["row"] = int(table.rows[i])
            for fld, arr in table.data.items():
                x = float(arr[i])
                rec[fld] = int(x) if fld in _COUNTS and x.is_integer() else x
        rec.update(yi=_num(y), vi=_num(v), se=_num(s), estimate=fv(y), ci_low=fv(y - crit * s),
                   ci_high=fv(y + crit * s), weight=_num(res.weights[i]))
        studies.append(rec)
    out["studies"] = studies
    out["dropped"] = list(dropped)
    return out


def subgroup_summary(sg, measure: str | None) -> dict[str, Any]:
    """Per-subgroup pooled results (separate tau^2, reported scale) and both tests for subgroup differences."""
    f, _ = _back(measure)
    s = sg.separate
    groups = []
    for j, g in enumerate(sg.groups):
        groups.append({"subgroup": str(g), "k": int(sg.k[j]), "estimate": _num(f(s["estimate"][j])),
                       "ci_low": _num(f(s["ci_low"][j])), "ci_high": _num(f(s["ci_high"][j])),
                       "model_estimate": _num(s["estimate"][j]), "se": _num(s["se"][j]), "pvalue": _num(s["pvalue"][j]),
                       "tau2": _num(s["tau2"][j]), "i2": _num(s["i2"][j]), "q": _num(s["q"][j])})
    return json_safe({"groups": groups, "test_separate": dict(sg.test_separate), "test_common": dict(sg.test_common),
                      "method": sg.method, "test": sg.test})


def regression_summary(reg) -> dict[str, Any]:
    """Coefficients (model scale), the omnibus test of the moderators, residual heterogeneity, R^2."""
    return json_safe(reg.to_dict())


def _fmt(x: Any, digits: int = 2) -> str:
    if x is None:
        return ""
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    if isinstance(x, float):
        if not math.isfinite(x):
            return ""
        return f"{x:.{digits}f}"
    return str(x)


def _p(p: float | None) -> str:
    if p is None:
        return ""
    return "< 0.0001" if p < 1e-4 else f"{p:.4f}"


def summary_markdown(s: dict[str, Any]) -> str:
    """``summary.md`` of a :func:`pairwise_summary` payload (with ``subgroup``/``moderator`` sections if present)."""
    from tabulate import tabulate

    m = s.get("measure") or "effect"
    pct = int(round(100 * s.get("level", 0.95)))
    title = f"# Meta-analysis: {m}, {s['method']}, test {s['test']}"
    lines = [title, ""]
    if s.get("file"):
        lines.append(f"Data: `{s['file']}`" + (f", outcome {s['outcome']}" if s.get("outcome") else "") + f"; k = {s['k']} studies.")
        lines.append("")
    scale_name = {"log": f"log {m}", "identity": m}.get(s["scale"], f"{m} ({s['scale']} scale)")
    rows = []
    if s["scale"] != "identity":
        rows.append([f"{m} (back-transformed)", _fmt(s["estimate"]), f"{_fmt(s['ci_low'])} to {_fmt(s['ci_high'])}",
                     f"{_fmt(s['pi_low'])} to {_fmt(s['pi_high'])}" if s.get("tau2") not in (None, 0.0) or s["method"] not in ("FE", "MH", "PETO") else "", "", ""])
    rows.append([f"{scale_name} (model scale)", _fmt(s["model_estimate"], 4),
                 f"{_fmt(s['model_ci_low'], 4)} to {_fmt(s['model_ci_high'], 4)}",
                 f"{_fmt(s['model_pi_low'], 4)} to {_fmt(s['model_pi_high'], 4)}", _fmt(s["se"], 4), _p(s["pvalue"])])
    lines.append(tabulate(rows, headers=["scale", "estimate", f"{pct}% CI", f"{pct}% PI", "SE", "p"], tablefmt="github"))
    lines.append("")
    het = f"Heterogeneity: Q = {_fmt(s['q'])} (df = {s['q_df']}, p {_p(s['q_pvalue'])}), I² = {_fmt(s['i2'], 1)}%"
    if s.get("tau2") is not None and s["method"] not in ("FE", "MH", "PETO"):
        het += f", τ² = {_fmt(s['tau2'], 4)}"
        if s.get("tau2_ci_low") is not None:
            het += f" [{_fmt(s['tau2_ci_low'], 4)}, {_fmt(s['tau2_ci_high'], 4)}]"
    lines += [het + ".", ""]
    if s.get("subgroup"):
        sg = s["subgroup"]
        lines += [f"## Subgroups by `{sg.get('column', '')}` (separate τ², {sg['method']})", ""]
        lines.append(tabulate([[g["subgroup"], g["k"], _fmt(g["estimate"]), f"{_fmt(g['ci_low'])} to {_fmt(g['ci_high'])}",
                                _fmt(g["tau2"], 4), _fmt(g["i2"], 1)] for g in sg["groups"]],
                              headers=["subgroup", "k", m, f"{pct}% CI", "τ²", "I² %"], tablefmt="github"))
        ts, tc = sg["test_separate"], sg["test_common"]
        lines += ["", f"Test for subgroup differences: Q = {_fmt(ts['q'])} (df = {ts['df']}, p {_p(ts['pvalue'])}) "
                  f"with separate τ²; QM = {_fmt(tc['q'])} (p {_p(tc['pvalue'])}) with a common τ² (meta-regression).", ""]
    if s.get("moderator"):
        r = s["moderator"]
        lines += [f"## Meta-regression on `{', '.join(r.get('columns', []))}` ({r['method']}, model scale)", ""]
        lines.append(tabulate([[n, _fmt(b, 4), _fmt(se, 4), f"{_fmt(lo, 4)} to {_fmt(hi, 4)}", _p(p)]
                               for n, b, se, lo, hi, p in zip(r["names"], r["coefficients"], r["se"], r["ci_low"],
                                                              r["ci_high"], r["pvalue"])],
                              headers=["term", "estimate", "SE", f"{pct}% CI", "p"], tablefmt="github"))
        lines += ["", f"Test of moderators: QM = {_fmt(r['qm'])} (df = {', '.join(str(d) for d in r['qm_df'] if d is not None)}, "
                  f"p {_p(r['qm_pvalue'])}); residual heterogeneity QE = {_fmt(r['qe'])} (p {_p(r['qe_pvalue'])}), "
                  f"τ² = {_fmt(r['tau2'], 4)}, R² = {_fmt(r['r2'], 1)}%.", ""]
    lines += ["## Studies", ""]
    st = s["studies"]
    fields = [k for k in (st[0] if st else {}) if k not in ("study", "row", "yi", "vi", "se", "estimate", "ci_low",
                                                             "ci_high", "weight")]
    head = ["study"] + (["row"] if st and "row" in st[0] else []) + fields + [m, f"{pct}% CI", "weight %"]
    body = []
    for r in st:
        body.append([r["study"]] + ([r["row"]] if "row" in r else []) + [_fmt(r[k], 4) if isinstance(r[k], float) else _fmt(r[k]) for k in fields]
                    + [_fmt(r["estimate"]), f"{_fmt(r['ci_low'])} to {_fmt(r['ci_high'])}", _fmt(r["weight"], 1)])
    lines.append(tabulate(body, headers=head, tablefmt="github", disable_numparse=True))
    if s.get("dropped"):
        lines += ["", "Left out: " + "; ".join(f"{d['study']} (row {d['row']}): {d['reason']}" if d.get("row") else
                                                f"{d['study']}: {d['reason']}" for d in s["dropped"])]
    for n in s.get("notes", []):
        lines.append(f"- note: {n}")
    return "\n".join(lines) + "\n"


_CSV_KEYS = ("k", "measure", "method", "test", "level", "scale", "estimate", "ci_low", "ci_high", "pi_low", "pi_high",
             "model_estimate", "model_ci_low", "model_ci_high", "model_pi_low", "model_pi_high", "se", "zval", "pvalue",
             "tau2", "tau2_ci_low", "tau2_ci_high", "i2", "h2", "q", "q_df", "q_pvalue")


def summary_csv(s: dict[str, Any]) -> str:
    """``summary.csv``: one labelled row for the pooled result (both scales), one per subgroup if any."""
    import io as _io

    buf = _io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["row_type", "subgroup", *_CSV_KEYS])
    cell = lambda v: "" if v is None else (repr(v) if isinstance(v, float) else str(v))  # noqa: E731
    w.writerow(["overall", "", *[cell(s.get(k)) for k in _CSV_KEYS]])
    for g in (s.get("subgroup") or {}).get("groups", []):
        w.writerow(["subgroup", g["subgroup"], *[cell(g.get(k)) if k in ("k", "estimate", "ci_low", "ci_high", "model_estimate",
                                                                        "se", "pvalue", "tau2", "i2", "q") else
                                                 (cell(s.get(k)) if k in ("measure", "method", "test", "level", "scale") else "")
                                                 for k in _CSV_KEYS]])
    return buf.getvalue()

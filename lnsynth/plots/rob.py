"""Risk-of-bias traffic-light panel beside a forest plot (as robvis' ``rob_forest`` / RevMan).

:func:`add_rob_panel` takes a figure drawn by :func:`lnsynth.plots.forest.forest_plot`, the study
labels in the forest's order and one RoB 2 assessment per study, and draws to the right of the
forest's effect column one row per study -- in the forest's rows -- with a dot for each RoB 2
domain (D1 randomisation, D2 deviations from intended interventions, D3 missing outcome data,
D4 measurement of the outcome, D5 selection of the reported result) and the overall judgement.
Colour and symbol both carry the judgement (Okabe-Ito colours, readable without colour):
low ``+`` green, some concerns ``-`` yellow, high ``x`` vermillion, no information ``?`` grey,
not assessed: an empty circle.

Judgements may be given as :class:`lnsynth.evidence.schema.RiskOfBias` objects, as mappings
(``D1..D5, overall`` or the schema's domain names or the contract keys ``randomisation,
deviations, missing, measurement, selection, overall``) or ``None`` (not assessed).

Sterne JAC et al. RoB 2: a revised tool for assessing risk of bias in randomised trials. BMJ
2019;366:l4898.  McGuinness LA, Higgins JPT. Risk-of-bias VISualization (robvis). Res Synth Methods
2021;12:55-61.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from .style import FONT_FAMILY, FONT_SIZE, OKABE_ITO, fit_canvas

COLUMNS = ("D1", "D2", "D3", "D4", "D5", "Overall")
DOMAIN_NAMES = {"D1": "Randomisation process", "D2": "Deviations from intended interventions",
                "D3": "Missing outcome data", "D4": "Measurement of the outcome",
                "D5": "Selection of the reported result", "Overall": "Overall"}
_SCHEMA = ("randomisation", "deviations", "missing_data", "measurement", "selective_reporting")
_CONTRACT = ("randomisation", "deviations", "missing", "measurement", "selection")
#: judgement -> (face colour, symbol)
STYLE = {"low": (OKABE_ITO["bluish_green"], "+"), "some concerns": (OKABE_ITO["yellow"], "\u2212"),
         "high": (OKABE_ITO["vermillion"], "\u00d7"), "no information": ("#9E9E9E", "?"),
         "not assessed": ("#FFFFFF", "")}


def _norm(j: Any) -> str:
    if j is None:
        return "not assessed"
    if hasattr(j, "judgement"):
        j = j.judgement
    if isinstance(j, Mapping):
        j = j.get("judgement")
    s = str(j).strip().lower()
    if s in ("unclear", "moderate"):
        s = "some concerns"
    if s not in STYLE:
        raise ValueError(f"risk-of-bias judgement {j!r}: use low, some concerns, high or no information")
    return s


def judgements_row(rob: Any) -> dict[str, str]:
    """One study's ``{D1..D5, Overall}`` judgements from a RiskOfBias, a mapping or ``None``."""
    if rob is None:
        return {c: "not assessed" for c in COLUMNS}
    if hasattr(rob, "overall") and callable(rob.overall):
        out = {f"D{i + 1}": _norm(getattr(rob, d, None)) for i, d in enumerate(_SCHEMA)}
        out["Overall"] = _norm(rob.overall())
        return out
    if not isinstance(rob, Mapping):
        raise TypeError(f"risk of bias: expected a RiskOfBias, a mapping or None, got {type(rob).__name__}")
    low = {str(k).lower(): v for k, v in rob.items()}
    out = {}
    for i in range(5):
        keys = (f"d{i + 1}", _SCHEMA[i], _CONTRACT[i])
        v = next((low[k] for k in keys if k in low), None)
        out[f"D{i + 1}"] = _norm(v)
    out["Overall"] = _norm(low.get("overall"))
    return out


def rob_table(labels: Sequence[str], robs: Sequence[Any]) -> pd.DataFrame:
    """Rows in the order of ``labels`` (the forest's): ``study, D1..D5, Overall``."""
    if len(labels) != len(robs):
        raise ValueError(f"rob: {len(robs)} assessments for {len(labels)} studies")
    return pd.DataFrame([{"study": str(lab), **judgements_row(r)} for lab, r in zip(labels, robs)],
                        columns=["study", *COLUMNS])


def _row_ys(ax, labels: Sequence[str]) -> tuple[list[float], float | None]:
    """y of each study row (the forest's label texts, in order) and of the header row ("Study")."""
    texts = [t for t in ax.texts]
    used: set[int] = set()
    ys = []
    for lab in labels:
        hit = next((i for i, t in enumerate(texts) if i not in used and t.get_text() == str(lab)), None)
        if hit is None:
            raise ValueError(f"rob panel: study {lab!r} is not a row of this forest plot")
        used.add(hit)
        ys.append(float(texts[hit].get_position()[1]))
    head = next((float(t.get_position()[1]) for t in texts if t.get_text() == "Study"), None)
    return ys, head


def add_rob_panel(fig, labels: Sequence[str], robs: Sequence[Any], *, ax=None, column_width: float = 0.26,
                  legend: bool = True):
    """Draw the RoB 2 traffic-light panel to the right of a forest plot; returns ``fig``.

    Parameters
    ----------
    fig : Figure drawn by :func:`lnsynth.plots.forest.forest_plot`
    labels : the study labels in the forest's order (as passed to ``forest_plot``)
    robs : one assessment per study (RiskOfBias, mapping, or None)
    ax : the forest's axes (default ``fig.axes[0]``)
    column_width : inches per judgement column
    legend : a key to the domains and judgements under the panel

    The panel is an axes labelled ``"rob"`` sharing the forest's y coordinates; its scatter has one
    point per (study, column) and ``panel.rob_table`` holds the judgements drawn.
    """
    import matplotlib.pyplot as plt  # noqa: F401 - ensures a backend

    ax = ax or fig.axes[0]
    tab = rob_table(labels, robs)
    ys, y_head = _row_ys(ax, labels)
    W, _ = fig.get_size_inches()
    p = ax.get_position()
    width = column_width * len(COLUMNS)
    r = fig.canvas.get_renderer()
    right = max(fig.get_tightbbox(r).x1, p.x1 * W)  # inches
    pax = fig.add_axes([(right + 0.12) / W, p.y0, width / W, p.height], label="rob")
    pax.set_ylim(ax.get_ylim())
    pax.set_xlim(0.5, len(COLUMNS) + 0.5)
    pax.axis("off")
    xs, yy, fc, syms = [], [], [], []
    for y, (_, row) in zip(ys, tab.iterrows()):
        for j, c in enumerate(COLUMNS):
            col, sym = STYLE[row[c]]
            xs.append(j + 1)
            yy.append(y)
            fc.append(col)
            syms.append(sym)
    sc = pax.scatter(xs, yy, s=110, c=fc, edgecolors="#444444", linewidths=0.6, zorder=3)
    for x, y, s in zip(xs, yy, syms):
        if s:
            pax.text(x, y, s, ha="center", va="center", fontsize=FONT_SIZE - 1, fontweight="bold",
                     family=FONT_FAMILY, color="#000000", zorder=4)
    if y_head is not None:
        for j, c in enumerate(COLUMNS):
            pax.text(j + 1, y_head, c if c != "Overall" else "All", ha="center", va="center", fontsize=FONT_SIZE - 1,
                     fontweight="bold", family=FONT_FAMILY)
        pax.text((len(COLUMNS) + 1) / 2, y_head + 1, "Risk of bias (RoB 2)", ha="center", va="center",
                 fontsize=FONT_SIZE - 1, fontweight="bold", family=FONT_FAMILY, clip_on=False)
    if legend:
        key = [f"{c} {DOMAIN_NAMES[c].lower()}" for c in COLUMNS[:5]]
        shown = [j for j in ("low", "some concerns", "high", "no information") if (tab[list(COLUMNS)] == j).any().any()]
        marks = [f"{STYLE[j][1]} {j}" for j in shown]
        if (tab[list(COLUMNS)] == "not assessed").any().any():
            marks.append("\u25cb not assessed")
        key += ["All: overall judgement", "  ".join(marks)]
        pax.text(0.0, -0.02, "\n".join(key), transform=pax.transAxes, ha="left", va="top", fontsize=FONT_SIZE - 2,
                 family=FONT_FAMILY, clip_on=False)
    pax.rob_table = tab  # type: ignore[attr-defined]
    pax.rob_points = sc  # type: ignore[attr-defined]
    fit_canvas(fig, pad=0.02)
    _widen_to_content(fig)
    return fig


def _widen_to_content(fig, pad: float = 0.2) -> None:
    """Grow the canvas right and down (axes keep their size and place in inches) so that every text
    fits with ``pad`` inches to spare (text extents vary a little with the output resolution)."""
    r = fig.canvas.get_renderer()
    W, H = fig.get_size_inches()
    bb = fig.get_tightbbox(r)  # inches
    newW = max(W, bb.x1 + pad)
    dy = max(0.0, pad - bb.y0)
    if newW - W < 1e-6 and dy < 1e-6:
        return
    newH = H + dy
    for a in fig.axes:
        p = a.get_position()
        a.set_position([p.x0 * W / newW, (p.y0 * H + dy) / newH, p.width * W / newW, p.height * H / newH])
    fig.set_size_inches(newW, newH, forward=False)


__all__ = ["COLUMNS", "DOMAIN_NAMES", "STYLE", "add_rob_panel", "judgements_row", "rob_table"]

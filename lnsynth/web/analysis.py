"""Analyses behind the web pages: study selection, pairwise and network runs, SVG figures.

All figures are inline SVG built here; every piece of text placed in them goes through
:func:`markupsafe.escape`, so data typed into the store cannot inject markup.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import pandas as pd
from markupsafe import Markup, escape

from lnsynth.evidence.schema import REGIMEN_CLASS

from lnsynth import registry
from lnsynth.stats import Z95

_log = logging.getLogger("lnsynth.web")

RATIO = set(registry.ratio_measures())
# binary two-group measures and the methods of the registry (the same lists as the CLI help)
PAIRWISE_MEASURES = tuple(m for m in ("RR", "OR", "RD") if m in registry.measures_for("binary"))
PAIRWISE_METHODS = ("REML",) + tuple(m for m in registry.methods() if m != "REML")
NETWORK_MEASURES = tuple(m for m in ("OR", "RR", "RD") if m in registry.network_measures("binary"))
NETWORK_METHODS = ("REML",) + tuple(m for m in registry.methods("network") if m != "REML")
CLASSES = sorted(set(REGIMEN_CLASS.values()))
from lnsynth.analyses.selection import ALIASES as SPECIAL  # noqa: E402  (one definition of CNI-any / non-CNI)


def regimen_choices() -> list[str]:
    return list(SPECIAL) + CLASSES + sorted(REGIMEN_CLASS)


def spec_set(spec: str) -> set[str]:
    items = {s.strip() for s in str(spec).split(",") if s.strip()}
    out: set[str] = set()
    for it in items:
        out |= SPECIAL.get(it, {it})
    unknown = out - set(REGIMEN_CLASS) - set(CLASSES)
    if unknown:
        raise ValueError(f"unknown regimen or class {sorted(unknown)}")
    return out


def _match(regimen: str, spec: set[str]) -> bool:
    return regimen in spec or REGIMEN_CLASS.get(regimen) in spec


# --------------------------------------------------------------------- pairwise
@dataclass
class PairwiseRun:
    rows: list[dict] = field(default_factory=list)
    excluded: list[tuple[str, str]] = field(default_factory=list)
    pooled: Optional[dict] = None
    svg: Optional[Markup] = None
    warnings: list[str] = field(default_factory=list)
    error: Optional[str] = None
    measure: str = "RR"
    method: str = "REML"
    notes: list[str] = field(default_factory=list)


def select_pairs(ev, outcome: str, treatment: str, control: str,
                 timepoint: str = "latest") -> tuple[list[dict], list[tuple[str, str]], list[str]]:
    """One two-group comparison per study, by the shared selection of the analysis layer
    (:func:`lnsynth.analyses.selection.pairwise_data`, the function ``lnsynth meta`` and the clinical
    questions use), with the same default approximate-count policy (on, flagged).

    Returns the rows, the studies left out with the reason, and notes (approximations, combined
    arms, superseded entries).
    """
    from lnsynth.analyses.selection import pairwise_data

    from .curation import superseded

    ev, dropped = superseded(ev)
    tp: Any = timepoint
    if timepoint not in ("latest", "earliest"):
        from .validation import ascii_number

        tp = ascii_number(timepoint)  # plain ASCII decimal only (float() also takes "١٢", "1_0", "inf")
        if tp is None:
            raise ValueError(f"timepoint: expected 'latest', 'earliest' or weeks, got {str(timepoint)[:40]!r}")
    d = pairwise_data(ev, outcome, ",".join(sorted(spec_set(treatment))), ",".join(sorted(spec_set(control))),
                      timepoint=tp, warn=False, approximate=True)
    rows = [{
        "study": r.study, "label": r.label,
        "timepoint_weeks": None if pd.isna(r.timepoint_weeks) else float(r.timepoint_weeks),
        "treat_arms": f"{r.treatment_arms} ({r.treatment_regimen})",
        "ctrl_arms": f"{r.control_arms} ({r.control_regimen})",
        "events_t": int(r.events_treat), "n_t": int(r.n_treat), "events_c": int(r.events_ctrl), "n_c": int(r.n_ctrl),
        "combined": int(r.combined_arms) > 1, "approximate": bool(r.approximate), "derived": bool(r.derived),
    } for r in d.frame.itertuples()]
    notes = [f"{s}: {w}" for s, w in dropped] + [n for n in d.notes() if ": excluded (" not in n]
    notes += [f"{s}: {w}" for s, w in d.set_aside]
    return rows, list(d.excluded), notes


def run_pairwise(ev, outcome: str, treatment: str, control: str, measure: str,
                 method: str, timepoint: str = "latest") -> PairwiseRun:
    run = PairwiseRun(measure=measure, method=method)
    try:
        if measure not in PAIRWISE_MEASURES:
            raise ValueError(f"measure: choose one of {', '.join(PAIRWISE_MEASURES)}")
        if method not in PAIRWISE_METHODS:
            raise ValueError(f"method: choose one of {', '.join(PAIRWISE_METHODS)}")
        rows, run.excluded, run.notes = select_pairs(ev, outcome, treatment, control, timepoint)
        run.rows = rows
        if not rows:
            raise ValueError("no study compares these arms on this outcome with events and n in both arms")
        from lnsynth.effects import effect_sizes
        from lnsynth.pairwise import meta_analysis

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            es = effect_sizes(measure if measure != "PETO" else "OR",
                              events_treat=[r["events_t"] for r in rows], n_treat=[r["n_t"] for r in rows],
                              events_ctrl=[r["events_c"] for r in rows], n_ctrl=[r["n_c"] for r in rows],
                              labels=[r["label"] for r in rows])
            res = meta_analysis(es, method=method)
        run.warnings = sorted({str(w.message) for w in caught})
        ratio = measure in RATIO
        f = math.exp if ratio else (lambda x: x)
        yi = np.asarray(res.yi, dtype=float)
        vi = np.asarray(res.vi, dtype=float)
        wts = np.asarray(res.weights, dtype=float)
        for i, r in enumerate(rows):
            if i < len(yi) and np.isfinite(yi[i]) and np.isfinite(vi[i]):
                half = Z95 * math.sqrt(vi[i])
                r.update(est=f(yi[i]), lo=f(yi[i] - half), hi=f(yi[i] + half),
                         weight=float(wts[i]) if i < len(wts) and np.isfinite(wts[i]) else None)
            else:
                r.update(est=None, lo=None, hi=None, weight=None)
        run.pooled = {
            "estimate": f(res.estimate), "ci_low": f(res.ci_low), "ci_high": f(res.ci_high),
            "pvalue": res.pvalue, "tau2": res.tau2, "i2": res.i2, "q": res.q, "q_pvalue": res.q_pvalue,
            "k": int(res.k), "pi_low": f(res.pi_low) if np.isfinite(res.pi_low) else None,
            "pi_high": f(res.pi_high) if np.isfinite(res.pi_high) else None,
        }
        run.svg = engine_forest_svg(res, xlabel=f"{measure}: {treatment} vs {control}"
                                    + (" (log scale)" if ratio else ""))
        if run.svg is None:  # plotting module unavailable or failed: the built-in SVG
            run.svg = forest_svg(rows, run.pooled, log_scale=ratio, xlabel=f"{measure}: {treatment} vs {control}")
    except ValueError as exc:  # engines and selection raise ValueError naming the user's problem
        run.error = str(exc)
    return run


# ------------------------------------------------------------------ cache
class AnalysisCache:
    """Results of :func:`run_pairwise` / :func:`run_network`, invalidated only by writes they depend on.

    The key of a result is its parameters plus a digest of exactly the data the analysis reads:
    for every trial in the evidence, its study-level facts (arms, regimens, sizes) and its outcome
    records *for the analysed endpoint*, plus the set of endpoints present (named in "no such
    outcome" messages) and the source register.  A write to another endpoint, to an adverse event,
    or a value left out of the analyses under the two-person rule leaves the digest -- and so the
    cached result -- unchanged; a write the analysis does read changes it.  The digest is computed
    from the :class:`~lnsynth.evidence.load.EvidenceBase` the analysis would run on (not from row
    counters), so it can never miss a change that reaches the analysis.  Per-trial digests are
    memoised on the (immutable) Study objects, which :meth:`Store.evidence` reuses for trials a
    write did not touch, so a lookup costs little more than a dictionary access per trial.

    Concurrent requests for the same missing result wait for one computation instead of each
    running it (single flight).  At most ``size`` results are kept (least recently used first out).
    """

    def __init__(self, size: int = 256):
        self.size = size
        self._lock = threading.Lock()
        self._results: "OrderedDict[tuple, Any]" = OrderedDict()
        self._inflight: dict[tuple, threading.Event] = {}
        self._per_study: dict[int, tuple[Any, str, dict[str, str]]] = {}
        self._per_ev: dict[int, tuple[Any, str, frozenset]] = {}
        self.hits = self.misses = 0

    # ---------------------------------------------------------- digests
    @staticmethod
    def _h(obj: Any) -> str:
        return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()

    def _study_digests(self, st) -> tuple[str, dict[str, str]]:
        hit = self._per_study.get(id(st))
        if hit is not None and hit[0] is st:
            return hit[1], hit[2]
        shell = self._h(st.model_dump(mode="json", exclude={"outcomes", "adverse_events"}))
        by_ep: dict[str, list] = {}
        for o in st.outcomes:
            by_ep.setdefault(o.endpoint, []).append(o.model_dump(mode="json"))
        eps = {ep: self._h(v) for ep, v in by_ep.items()}
        if len(self._per_study) > 4096:  # trials are few; stale objects are dropped wholesale
            self._per_study.clear()
        self._per_study[id(st)] = (st, shell, eps)
        return shell, eps

    def _ev_digest(self, ev) -> tuple[str, frozenset]:
        hit = self._per_ev.get(id(ev))
        if hit is not None and hit[0] is ev:
            return hit[1], hit[2]
        src = self._h([x.model_dump(mode="json") for x in ev.sources])
        endpoints = frozenset(ep for st in ev.studies for ep in self._study_digests(st)[1])
        if len(self._per_ev) > 64:
            self._per_ev.clear()
        self._per_ev[id(ev)] = (ev, src, endpoints)
        return src, endpoints

    def data_key(self, ev, endpoint: str) -> str:
        """Digest of the data an analysis of ``endpoint`` reads from ``ev``."""
        src, endpoints = self._ev_digest(ev)
        parts = [src, sorted(endpoints)]
        for st in ev.studies:
            shell, eps = self._study_digests(st)
            parts.append((st.id, shell, eps.get(endpoint)))
        return self._h(parts)

    def endpoints(self, ev) -> list[str]:
        """Endpoints present in ``ev`` (for the forms), without building a data frame."""
        return sorted(self._ev_digest(ev)[1])

    # ---------------------------------------------------------- lookup
    def get(self, key: tuple, compute):
        """The cached value for ``key``, computing it once (other callers wait) when missing."""
        with self._lock:
            if key in self._results:
                self._results.move_to_end(key)
                self.hits += 1
                return self._results[key]
            flight = self._inflight.get(key)
            owner = flight is None
            if owner:
                flight = self._inflight[key] = threading.Event()
                self.misses += 1
        if not owner:
            flight.wait(300)
            with self._lock:
                if key in self._results:
                    self.hits += 1
                    return self._results[key]
            return compute()  # the computation we waited for failed: try ourselves (a bug will surface)
        try:
            value = compute()
            with self._lock:
                self._results[key] = value
                while len(self._results) > self.size:
                    self._results.popitem(last=False)
            return value
        finally:
            with self._lock:
                self._inflight.pop(key, None)
            flight.set()

    def pairwise(self, ev, outcome: str, treatment: str, control: str, measure: str, method: str,
                 timepoint: str = "latest") -> "PairwiseRun":
        key = ("pairwise", outcome, treatment, control, measure, method, timepoint, self.data_key(ev, outcome))
        return self.get(key, lambda: run_pairwise(ev, outcome, treatment, control, measure, method, timepoint))

    def network(self, ev, outcome: str, measure: str, method: str, node: str = "class") -> "NetworkRun":
        key = ("network", outcome, measure, method, node, self.data_key(ev, outcome))
        return self.get(key, lambda: run_network(ev, outcome, measure, method, node))


_PLOT_LOCK = threading.Lock()  # pyplot keeps global state; pages render in a thread pool
_PRESENTATION = {"fill", "fill-opacity", "fill-rule", "stroke", "stroke-width", "stroke-opacity", "stroke-linecap",
                 "stroke-linejoin", "stroke-dasharray", "stroke-dashoffset", "stroke-miterlimit", "opacity",
                 "clip-path", "font-size", "font-family", "font-weight", "font-style", "text-anchor", "visibility",
                 "display", "color"}


def csp_safe_svg(svg: str) -> str:
    """Make matplotlib's SVG embeddable under ``style-src 'self'`` (no inline CSS).

    Drops the XML prolog, DOCTYPE, metadata and ``<style>`` element, and turns every
    ``style="prop: value; ..."`` into the equivalent SVG presentation attributes.
    """
    svg = re.sub(r"<\?xml[^>]*\?>|<!DOCTYPE[^>]*>|<metadata>.*?</metadata>|<style[^>]*>.*?</style>", "", svg,
                 flags=re.S)
    svg = re.sub(r"<defs>\s*</defs>", "", svg)

    def attrs(m: re.Match) -> str:
        out = []
        for decl in m.group(1).split(";"):
            prop, _, val = decl.partition(":")
            prop, val = prop.strip().lower(), val.strip()
            if prop in _PRESENTATION and val:
                out.append(f'{prop}="{escape(val)}"')
        return " ".join(out)

    svg = re.sub(r'style="([^"]*)"', attrs, svg)
    # defaults the dropped <style> gave every element
    svg = svg.replace("<svg ", '<svg class="forest-engine" role="img" aria-label="Forest plot" '
                      'stroke-linejoin="round" stroke-linecap="butt" ', 1)
    return svg.strip()


def _figure_svg(draw, label: str) -> Optional[Markup]:
    """Run ``draw()`` (returns a matplotlib Figure) and inline it as CSP-safe SVG; None on failure."""
    try:
        import io

        import matplotlib.pyplot as plt

        with _PLOT_LOCK:
            fig = draw()
            try:
                buf = io.StringIO()
                fig.savefig(buf, format="svg", metadata={"Date": None}, bbox_inches="tight")
            finally:
                plt.close(fig)
        svg = csp_safe_svg(buf.getvalue()).replace('aria-label="Forest plot"', f'aria-label="{escape(label)}"', 1)
    except (ImportError, ValueError, RuntimeError, OSError, TypeError):  # a figure problem: fall back, and log it
        _log.exception("figure %r could not be drawn; the page uses its own SVG", label)
        return None
    if re.search(r"<script|<foreignObject|\son[a-z]+=|javascript:", svg, re.I):  # never expected from matplotlib
        return None
    return Markup(svg)


def engine_forest_svg(res, xlabel: str) -> Optional[Markup]:
    """The metafor-style forest plot of :mod:`lnsynth.plots.forest` as inline, CSP-safe SVG."""
    try:
        from lnsynth.plots.forest import forest_plot
    except ImportError:
        return None
    return _figure_svg(lambda: forest_plot(res, xlabel=xlabel), "Forest plot")


def engine_nma_forest_svg(res) -> Optional[Markup]:
    """:func:`lnsynth.plots.network.nma_forest` (each treatment vs the reference) as inline SVG."""
    try:
        from lnsynth.plots.network import nma_forest
    except ImportError:
        return None
    return _figure_svg(lambda: nma_forest(res), "Network forest plot")


def _fmt(x: Optional[float], d: int = 2) -> str:
    if x is None or not np.isfinite(x):
        return "NA"
    return f"{x:.{d}f}"


def forest_svg(rows: list[dict], pooled: dict, log_scale: bool, xlabel: str) -> Markup:
    """A forest plot as inline SVG (study squares sized by weight, pooled diamond)."""
    good = [r for r in rows if r.get("est") is not None]
    vals = [v for r in good for v in (r["lo"], r["hi"])] + [pooled["ci_low"], pooled["ci_high"]]
    vals = [v for v in vals if v is not None and np.isfinite(v) and (v > 0 or not log_scale)]
    tr = (lambda v: math.log(v)) if log_scale else (lambda v: v)
    null = 1.0 if log_scale else 0.0
    lo_v = min([tr(v) for v in vals] + [tr(null)])
    hi_v = max([tr(v) for v in vals] + [tr(null)])
    if hi_v - lo_v < 1e-9:
        lo_v, hi_v = lo_v - 1, hi_v + 1
    pad = (hi_v - lo_v) * 0.05
    lo_v, hi_v = lo_v - pad, hi_v + pad
    W, left, right, top, rh = 760, 230, 200, 30, 24
    pw = W - left - right
    H = top + rh * (len(rows) + 2) + 40
    X = lambda v: left + (tr(v) - lo_v) / (hi_v - lo_v) * pw  # noqa: E731
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="forest" role="img" viewBox="0 0 {W} {H}" '
           f'width="{W}" height="{H}" aria-label="Forest plot">',
           f'<text x="10" y="18" class="hdr">Study</text><text x="{W - right + 10}" y="18" class="hdr">'
           f'Estimate [95% CI]</text><text x="{W - 50}" y="18" class="hdr">Weight</text>']
    maxw = max([r["weight"] or 0 for r in good] + [1e-9])
    for i, r in enumerate(rows):
        y = top + rh * i + rh / 2
        out.append(f'<text x="10" y="{y + 4:.1f}">{escape(r["label"])}</text>')
        if r.get("est") is None:
            out.append(f'<text x="{W - right + 10}" y="{y + 4:.1f}">not estimable</text>')
            continue
        x1, x2, xc = X(max(r["lo"], 1e-300) if log_scale else r["lo"]), X(r["hi"]), X(r["est"])
        x1, x2 = max(x1, left), min(x2, left + pw)
        s = 4 + 8 * math.sqrt((r["weight"] or 0) / maxw)
        out.append(f'<line x1="{x1:.1f}" x2="{x2:.1f}" y1="{y:.1f}" y2="{y:.1f}" class="ci"/>')
        out.append(f'<rect x="{xc - s / 2:.1f}" y="{y - s / 2:.1f}" width="{s:.1f}" height="{s:.1f}" class="sq"/>')
        out.append(f'<text x="{W - right + 10}" y="{y + 4:.1f}">{_fmt(r["est"])} [{_fmt(r["lo"])}, '
                   f'{_fmt(r["hi"])}]</text>')
        out.append(f'<text x="{W - 50}" y="{y + 4:.1f}">{_fmt(r["weight"], 1)}%</text>')
    y = top + rh * (len(rows) + 0.5) + rh / 2
    xl, xc, xh = X(pooled["ci_low"]), X(pooled["estimate"]), X(pooled["ci_high"])
    out.append(f'<polygon points="{xl:.1f},{y:.1f} {xc:.1f},{y - 8:.1f} {xh:.1f},{y:.1f} {xc:.1f},{y + 8:.1f}" '
               f'class="diamond"/>')
    out.append(f'<text x="10" y="{y + 4:.1f}" class="hdr">Pooled (k = {pooled["k"]})</text>')
    out.append(f'<text x="{W - right + 10}" y="{y + 4:.1f}" class="hdr">{_fmt(pooled["estimate"])} '
               f'[{_fmt(pooled["ci_low"])}, {_fmt(pooled["ci_high"])}]</text>')
    axis_y = top + rh * (len(rows) + 1.5)
    out.append(f'<line x1="{left}" x2="{left + pw}" y1="{axis_y:.1f}" y2="{axis_y:.1f}" class="axis"/>')
    xn = X(null)
    out.append(f'<line x1="{xn:.1f}" x2="{xn:.1f}" y1="{top - 6}" y2="{axis_y:.1f}" class="null"/>')
    ticks = _ticks(lo_v, hi_v, log_scale)
    for t in ticks:
        xt = left + (tr(t) - lo_v) / (hi_v - lo_v) * pw
        out.append(f'<line x1="{xt:.1f}" x2="{xt:.1f}" y1="{axis_y:.1f}" y2="{axis_y + 5:.1f}" class="axis"/>')
        out.append(f'<text x="{xt:.1f}" y="{axis_y + 18:.1f}" text-anchor="middle">{escape(_g(t))}</text>')
    out.append(f'<text x="{left + pw / 2:.1f}" y="{axis_y + 34:.1f}" text-anchor="middle">{escape(xlabel)}</text>')
    out.append("</svg>")
    return Markup("".join(out))


def _g(t: float) -> str:
    return f"{t:g}"


def _ticks(lo: float, hi: float, log_scale: bool) -> list[float]:
    if log_scale:
        cands = [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100]
        return [c for c in cands if lo <= math.log(c) <= hi]
    step = 10 ** math.floor(math.log10((hi - lo) / 4 or 1))
    for m in (1, 2, 5, 10):
        if (hi - lo) / (step * m) <= 6:
            step *= m
            break
    start = math.ceil(lo / step) * step
    out, v = [], start
    while v <= hi + 1e-12:
        out.append(round(v, 10))
        v += step
    return out


# ---------------------------------------------------------------------- network
@dataclass
class NetworkRun:
    arms: list[dict] = field(default_factory=list)
    edges: list[dict] = field(default_factory=list)
    nodes: list[str] = field(default_factory=list)
    league: Optional[list[list[str]]] = None
    ranking: Optional[list[tuple[str, float]]] = None
    summary: Optional[dict] = None
    svg: Optional[Markup] = None
    forest: Optional[Markup] = None
    error: Optional[str] = None
    warnings: list[str] = field(default_factory=list)
    excluded: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def network_arms(ev, outcome: str, node: str = "class") -> tuple[list[dict], list[tuple[str, str]], list[str], str]:
    """Arm-level rows for one outcome by the shared network selection
    (:func:`lnsynth.analyses.network_data.arm_level_data`, as ``lnsynth nma`` and the report), with the
    reference chosen by the analysis (IV cyclophosphamide), never by sort order.

    Returns rows, studies left out with the reason, notes and the reference node.
    """
    rows, excluded, notes, ref, _ = _network_evidence(ev, outcome, node, fit=False)
    return rows, excluded, notes, ref


def _network_evidence(ev, outcome: str, node: str = "class", fit: bool = False, measure: str = "OR",
                      method: str = "REML") -> tuple[list[dict], list[tuple[str, str]], list[str], str, Any]:
    """:func:`network_arms` plus the :class:`~lnsynth.analyses.network_evidence.EvidenceNetwork` it came from."""
    from lnsynth.analyses.network_data import INDUCTION_NODES, REFERENCE_NODE
    from lnsynth.analyses.network_evidence import evidence_network

    from .curation import superseded

    ev, dropped = superseded(ev)
    if node == "class":
        nodes, ref = INDUCTION_NODES, REFERENCE_NODE
    else:
        nodes, ref = {k: k for k in INDUCTION_NODES}, "IVCYC"
    net = evidence_network(ev, outcome, nodes=nodes, reference=ref, fit=fit, measure=measure, method=method,
                           min_studies=1)
    d = net.data
    rows = [{"study": r.study, "label": r.label, "node": r.treatment, "events": int(r.events), "n": int(r.n),
             "timepoint_weeks": None if pd.isna(r.timepoint_weeks) else float(r.timepoint_weeks),
             "approximate": bool(r.approximate)} for r in d.frame.itertuples()]
    return rows, list(d.excluded), [f"{s}: {w}" for s, w in dropped] + list(d.notes), ref, net


def run_network(ev, outcome: str, measure: str, method: str, node: str = "class") -> NetworkRun:
    run = NetworkRun()
    try:
        if measure not in NETWORK_MEASURES:
            raise ValueError(f"measure: choose one of {', '.join(NETWORK_MEASURES)}")
        if method not in NETWORK_METHODS:
            raise ValueError(f"method: choose one of {', '.join(NETWORK_METHODS)}")
        run.arms, run.excluded, run.notes, ref, net = _network_evidence(ev, outcome, node, fit=True, measure=measure,
                                                                        method=method)
        by_study: dict[str, list[str]] = {}
        for a in run.arms:
            by_study.setdefault(a["study"], []).append(a["node"])
        counts: dict[tuple[str, str], int] = {}
        for nodes in by_study.values():
            for i in range(len(nodes)):
                for j in range(i + 1, len(nodes)):
                    k = tuple(sorted((nodes[i], nodes[j])))
                    counts[k] = counts.get(k, 0) + 1
        run.nodes = sorted({a["node"] for a in run.arms})
        run.edges = [{"a": a, "b": b, "k": k} for (a, b), k in sorted(counts.items())]
        run.svg = network_svg(run.nodes, run.edges)
        if not run.arms:
            raise ValueError("no study has counts for two or more treatments on this outcome")
        if net.error is not None:
            raise ValueError(net.error)
        res = net.fit
        run.warnings = sorted(set(net.fit_warnings))
        lt = res.league_table(exponentiate=measure in RATIO)
        run.league = [[""] + list(lt.columns)] + [[str(i)] + [str(v) for v in row] for i, row in
                                                   zip(lt.index, lt.values.tolist())]
        try:
            ps = res.pscores(small_values="bad")
            run.ranking = sorted(((str(k), float(v)) for k, v in ps.items()), key=lambda x: -x[1])
        except ValueError:  # ranking is a nicety; the league table is the result
            run.ranking = None
        run.forest = engine_nma_forest_svg(res)
        run.summary = {"n_studies": res.n_studies, "treatments": list(res.treatments),
                       "reference": getattr(res, "reference", None), "tau2": getattr(res, "tau2", None)}
    except ValueError as exc:  # a user-facing problem (no data, bad choice); anything else is a logged 500
        run.error = str(exc)
    return run


def network_svg(nodes: list[str], edges: list[dict]) -> Markup:
    W = H = 420
    cx, cy, R = W / 2, H / 2, 150
    pos = {}
    for i, nd in enumerate(nodes):
        ang = -math.pi / 2 + 2 * math.pi * i / max(len(nodes), 1)
        pos[nd] = (cx + R * math.cos(ang), cy + R * math.sin(ang))
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="netgraph" role="img" viewBox="0 0 {W} {H}" '
           f'width="{W}" height="{H}" aria-label="Network graph">']
    for e in edges:
        (x1, y1), (x2, y2) = pos[e["a"]], pos[e["b"]]
        out.append(f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" class="edge" '
                   f'stroke-width="{1.5 + 2.5 * e["k"]:.1f}"/>')
        out.append(f'<text x="{(x1 + x2) / 2:.1f}" y="{(y1 + y2) / 2 - 4:.1f}" class="elabel">{e["k"]}</text>')
    for nd, (x, y) in pos.items():
        out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="34" class="node"/>')
        out.append(f'<text x="{x:.1f}" y="{y + 4:.1f}" text-anchor="middle" class="nlabel">{escape(nd)}</text>')
    out.append("</svg>")
    return Markup("".join(out))


# -------------------------------------------------------------------- simulator
SIM_MAX_N = 5000


def simulator() -> tuple[Optional[Any], str]:
    """``(lnsynth.simulate module, "")`` when the simulator can be used, else ``(None, why not)``."""
    try:
        import lnsynth.simulate as sim
    except ImportError as exc:  # an optional part not installed: "not available"; never fake results
        return None, f"lnsynth.simulate cannot be imported ({type(exc).__name__}: {exc})"
    missing = [n for n in ("run_protocol", "load_protocols") if not callable(getattr(sim, n, None))]
    if missing:
        return None, f"lnsynth.simulate does not provide {', '.join(missing)}"
    return sim, ""


def _assumptions(node: Any, path: str = "") -> list[dict]:
    """Values a protocol marks ``assumption: true`` (with the stated reason)."""
    out: list[dict] = []
    if isinstance(node, dict):
        if node.get("assumption") is True:
            val = node.get("value", node.get("level", node.get("drug", "")))
            out.append({"where": path or "protocol", "value": val, "why": node.get("why", "")})
        for k, v in node.items():
            if k not in ("assumption", "why"):
                out += _assumptions(v, f"{path}.{k}" if path else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            ident = v.get("arm") or v.get("drug") if isinstance(v, dict) else None
            out += _assumptions(v, f"{path}[{ident or i}]")
    return out


def run_simulation(sim, protocol_id: str, n: int, seed: int) -> dict:
    """Simulate every arm of a stored protocol; returns rows plus the protocol's assumptions."""
    prots = sim.load_protocols()
    prot = prots[protocol_id]
    res = sim.run_protocol(protocol_id, n=n, seed=seed)
    regimen = {a.arm: a.regimen for a in prot.arms}
    rows = [{"arm": arm, "regimen": regimen.get(arm, ""), "endpoint": ep, "value": float(v[0]),
             "exposure": float(v[1]), "n_included": int(v[2])} for (arm, ep), v in res.items()]
    return {"rows": rows, "protocol": prot, "assumptions": _assumptions(prot.raw)}

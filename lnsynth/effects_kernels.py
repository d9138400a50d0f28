"""The kernels of :func:`lnsynth.effects.effect_sizes`: one function per family of measures.

Each measure's entry in :mod:`lnsynth.registry` names its kernel here (``Measure.kernel``);
``effect_sizes`` validates the arguments, converts the input fields and calls
``getattr(effects_kernels, registry.measure(code).kernel)(KernelInput(...))``.  A kernel checks the
values its measures need (messages name the field and the study), computes ``yi``/``vi`` on the
model scale exactly as metafor's ``escalc`` (version 3.8-1) and returns a :class:`KernelOutput`
(``yi``, ``vi``, the studies ``dropped`` by ``drop00``, the ``raw`` cells kept on
:class:`lnsynth.effects.EffectSizes`, and how to treat and explain non-finite results).
Arrays are ``(B, k)``; ``effect_sizes`` runs the kernel under ``np.errstate(divide="ignore",
invalid="ignore")`` and sets missing and dropped studies to NaN afterwards.

The input checks and the zero-cell correction shared by the kernels (and by
:mod:`lnsynth.pairwise.mh` and :mod:`lnsynth.pairwise.firth`, through :mod:`lnsynth.effects`) live
here too.

References
----------
Viechtbauer W (2010). Conducting meta-analyses in R with the metafor package.
*Journal of Statistical Software* 36(3), 1-48 (function ``escalc``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np

__all__ = ["KernelInput", "KernelOutput", "KERNELS"] + [
    "binary",
    "continuous",
    "proportion",
    "incidence_rate",
    "log_incidence_rate",
    "correlation",
    "standardized_mean_change",
    "rate_comparison",
]


@dataclass(frozen=True)
class KernelInput:
    """What a kernel receives from :func:`lnsynth.effects.effect_sizes`.

    Attributes
    ----------
    measure : str
        The upper-case measure code.
    arrs : dict of str to numpy.ndarray
        The measure's required fields (:func:`lnsynth.registry.required_fields`), each ``(B, k)``.
    present : numpy.ndarray
        Boolean ``(B, k)``: False for a missing study (NaN in every field).
    one_d : bool
        The input was ``(k,)`` (messages then give the index only).
    labels : tuple of str or None
        Study labels, for messages.
    add, to, drop00, vtype
        The zero-cell correction, ``drop00`` and variance type, already checked.
    """

    measure: str
    arrs: dict[str, np.ndarray]
    present: np.ndarray
    one_d: bool
    labels: tuple[str, ...] | None
    add: float
    to: str
    drop00: bool
    vtype: str


class KernelOutput(NamedTuple):
    """What a kernel returns.

    Attributes
    ----------
    yi, vi : numpy.ndarray
        Outcomes and sampling variances on the model scale, ``(B, k)``.
    dropped : numpy.ndarray
        Boolean ``(B, k)``: studies removed by ``drop00``.
    raw : dict of str to numpy.ndarray
        Raw cells kept on :class:`lnsynth.effects.EffectSizes` (``ai``...``di``, ``x1i``...``t2i``).
    keep_yi : bool
        Keep a finite ``yi`` where only ``vi`` is undefined (escalc does so for COR and ZCOR).
    nonfinite_reason : str or None
        Why a study can get a non-finite ``yi``/``vi``, for the warning; None: the zero-cell settings.
    """

    yi: np.ndarray
    vi: np.ndarray
    dropped: np.ndarray
    raw: dict[str, np.ndarray]
    keep_yi: bool = False
    nonfinite_reason: str | None = None


# --------------------------------------------------------------------------
# input checks (messages name the field and the study)
# --------------------------------------------------------------------------
def _where(labels: Sequence[str] | None, idx: tuple[int, ...]) -> str:
    """'study 'x' (index 3)' or, for a batch, '(analysis 1, index 3)'."""
    i = idx[-1]
    pos = f"index {i}" if len(idx) == 1 else f"analysis {idx[0]}, index {i}"
    if labels is not None:
        return f"study {labels[i]!r} ({pos})"
    return f"study at {pos}"


def _fail(mask: np.ndarray, one_d: bool, labels: Sequence[str] | None, fmt: Callable[[int, int, str], str]) -> None:
    """Raise for the first True cell in ``mask``; ``fmt(b, i, where)`` gives the text."""
    if mask.any():
        b, i = (int(j) for j in np.argwhere(mask)[0])
        idx = (i,) if one_d else (b, i)
        raise ValueError(fmt(b, i, _where(labels, idx)))


def _g(v: Any) -> str:
    return f"{v:g}"


def _check_count(a: dict[str, np.ndarray], name: str, present: np.ndarray, one_d: bool, labels: Sequence[str] | None) -> None:
    x = a[name]
    _fail(present & (x < 0), one_d, labels,
          lambda b, i, w: f"{name} is negative for {w}: {_g(x[b, i])}")


def _check_events_n(a: dict[str, np.ndarray], ev: str, n: str, present: np.ndarray, one_d: bool,
                    labels: Sequence[str] | None) -> None:
    _check_count(a, ev, present, one_d, labels)
    N = a[n]
    _fail(present & (N <= 0), one_d, labels,
          lambda b, i, w: f"{n} must be > 0 for {w}: {_g(N[b, i])}")
    E = a[ev]
    _fail(present & (E > N), one_d, labels,
          lambda b, i, w: f"{ev} > {n} for {w}: {_g(E[b, i])} > {_g(N[b, i])}")


def _check_positive(a: dict[str, np.ndarray], name: str, present: np.ndarray, one_d: bool, labels: Sequence[str] | None,
                    what: str = "> 0") -> None:
    x = a[name]
    _fail(present & ~(x > 0), one_d, labels,
          lambda b, i, w: f"{name} must be {what} for {w}: {_g(x[b, i])}")

# --------------------------------------------------------------------------
# zero-cell correction
# --------------------------------------------------------------------------
def _zero_correct(
    cells: list[np.ndarray], present: np.ndarray, add: float, to: str
) -> list[np.ndarray]:
    """Add ``add`` to ``cells`` as escalc's ``to`` option says.

    ``only0``: studies with any zero cell; ``all``: every study; ``if0all``:
    every study of an analysis (row) in which some study has a zero cell;
    ``none``: nothing.  Studies not ``present`` (missing/dropped) are skipped.
    """
    if to == "none" or add == 0:
        return [c.copy() for c in cells]
    id0 = np.zeros_like(present)
    for c in cells:
        id0 |= c == 0
    id0 &= present
    if to == "all":
        sel = present
    elif to == "only0":
        sel = id0
    else:  # if0all
        sel = present & id0.any(axis=-1, keepdims=True)
    return [np.where(sel, c + add, c) for c in cells]


def _drop_double_zero(
    e1: np.ndarray, ne1: np.ndarray | None, e2: np.ndarray, ne2: np.ndarray | None, present: np.ndarray
) -> np.ndarray:
    """Mask of studies with no events in both arms (or, for 2x2 tables, no non-events in both)."""
    m = (e1 == 0) & (e2 == 0)
    if ne1 is not None:
        m |= (ne1 == 0) & (ne2 == 0)
    out: np.ndarray = m & present
    return out


def _wmean_rows(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Row-wise weighted mean ignoring NaN (metafor's ``.wmean(na.rm=TRUE)``)."""
    ok = ~(np.isnan(x) | np.isnan(w))
    xs = np.where(ok, x, 0.0)
    ws = np.where(ok, w, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        out: np.ndarray = (xs * ws).sum(axis=-1, keepdims=True) / ws.sum(axis=-1, keepdims=True)
    return out


# --------------------------------------------------------------------------
# binary 2x2 tables (shared with lnsynth.pairwise.mh)
# --------------------------------------------------------------------------
def _binary_yi_vi(
    ai: np.ndarray,
    bi: np.ndarray,
    ci: np.ndarray,
    di: np.ndarray,
    measure: str,
    present: np.ndarray,
    add: float,
    to: str,
    drop00: bool,
    vtype: str = "LS",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """escalc outcomes for 2x2 tables given as (B, k) arrays.

    Returns ``yi, vi, dropped`` where ``dropped`` marks studies removed by
    ``drop00``.
    """
    dropped = (
        _drop_double_zero(ai, bi, ci, di, present) if drop00 else np.zeros_like(present)
    )
    use = present & ~dropped
    a, b, c, d = _zero_correct([ai, bi, ci, di], use, add, to)
    nan = np.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        n1 = a + b
        n2 = c + d
        p1 = a / n1
        p2 = c / n2
        if measure == "RR":
            yi = np.log(p1) - np.log(p2)
            vi = 1 / a - 1 / n1 + 1 / c - 1 / n2
        elif measure == "OR":
            yi = np.log(p1 / (1 - p1)) - np.log(p2 / (1 - p2))
            vi = 1 / a + 1 / b + 1 / c + 1 / d
        elif measure == "RD":
            yi = p1 - p2
            if vtype == "LS":
                vi = p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2
            elif vtype == "UB":
                vi = p1 * (1 - p1) / (n1 - 1) + p2 * (1 - p2) / (n2 - 1)
            else:  # AV
                u1 = np.where(use, p1, nan)
                u2 = np.where(use, p2, nan)
                m1 = _wmean_rows(u1, np.where(use, n1, nan))
                m2 = _wmean_rows(u2, np.where(use, n2, nan))
                vi = m1 * (1 - m1) / n1 + m2 * (1 - m2) / n2
        elif measure == "PETO":
            n = n1 + n2
            xt = a + c
            yt = b + d
            E = xt * n1 / n
            V = xt * yt * (n1 / n) * (n2 / n) / (n - 1)
            yi = (a - E) / V
            vi = 1 / V
        elif measure == "AS":
            yi = np.arcsin(np.sqrt(p1)) - np.arcsin(np.sqrt(p2))
            vi = 1 / (4 * n1) + 1 / (4 * n2)
        else:  # pragma: no cover - guarded by callers
            raise ValueError(f"unknown binary measure {measure!r}")
    yi = np.where(use, yi, nan)
    vi = np.where(use, vi, nan)
    yi, vi = _recode_nonfinite(yi, vi)
    return yi, vi, dropped


def _recode_nonfinite(yi: np.ndarray, vi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """As escalc: a study whose yi or vi is +-Inf or NaN gets NaN for both;
    a negative vi becomes NaN."""
    bad = ~(np.isfinite(yi) & np.isfinite(vi))
    yi = np.where(bad, np.nan, yi)
    vi = np.where(bad | (vi < 0), np.nan, vi)
    return yi, vi


def _validate_binary(
    arrs: dict[str, np.ndarray], present: np.ndarray, one_d: bool, labels: Sequence[str] | None,
    names: tuple[str, str, str, str] = ("events_treat", "n_treat", "events_ctrl", "n_ctrl"),
) -> None:
    e1, n1, e2, n2 = names
    _check_events_n(arrs, e1, n1, present, one_d, labels)
    _check_events_n(arrs, e2, n2, present, one_d, labels)


# --------------------------------------------------------------------------
# kernels (named by the registry: Measure.kernel)
# --------------------------------------------------------------------------
def binary(inp: KernelInput) -> KernelOutput:
    """RR, OR, RD, PETO, AS: 2x2 tables from events and group sizes (:func:`_binary_yi_vi`)."""
    m, arrs, present, one_d, lab = inp.measure, inp.arrs, inp.present, inp.one_d, inp.labels
    add, to, drop00, vtype = inp.add, inp.to, inp.drop00, inp.vtype
    _validate_binary(arrs, present, one_d, lab)
    ai = arrs["events_treat"]
    bi = arrs["n_treat"] - ai
    ci = arrs["events_ctrl"]
    di = arrs["n_ctrl"] - ci
    yi, vi, dropped = _binary_yi_vi(ai, bi, ci, di, m, present, add, to, drop00, vtype)
    raw = dict(ai=ai, bi=bi, ci=ci, di=di)
    return KernelOutput(yi, vi, dropped, raw)


def continuous(inp: KernelInput) -> KernelOutput:
    """MD, SMD, ROM: two groups' means, SDs and sizes."""
    m, arrs, present, one_d, lab = inp.measure, inp.arrs, inp.present, inp.one_d, inp.labels
    vtype = inp.vtype
    nan = np.nan
    raw: dict[str, np.ndarray] = {}
    dropped = np.zeros_like(present)
    for g in ("treat", "ctrl"):
        _check_positive(arrs, f"n_{g}", present, one_d, lab)
        _check_positive(arrs, f"sd_{g}", present, one_d, lab)
    m1, m2 = arrs["mean_treat"], arrs["mean_ctrl"]
    s1, s2 = arrs["sd_treat"], arrs["sd_ctrl"]
    n1, n2 = arrs["n_treat"], arrs["n_ctrl"]
    N = n1 + n2
    mdf = N - 2
    sp = np.sqrt(((n1 - 1) * s1**2 + (n2 - 1) * s2**2) / mdf)
    if m == "MD":
        yi = m1 - m2
        vi = s1**2 / n1 + s2**2 / n2 if vtype in ("LS", "UB") else sp**2 * (1 / n1 + 1 / n2)
    elif m == "SMD":
        _fail(present & (mdf <= 1), one_d, lab,
              lambda b, i, w: f"n_treat + n_ctrl must be > 3 for SMD (bias correction undefined) for {w}: "
              f"{_g(n1[b, i])} + {_g(n2[b, i])}")
        from scipy.special import gammaln

        cm = np.exp(gammaln(mdf / 2) - np.log(np.sqrt(mdf / 2)) - gammaln((mdf - 1) / 2))
        d = (m1 - m2) / sp
        yi = cm * d
        if vtype == "LS":
            vi = 1 / n1 + 1 / n2 + yi**2 / (2 * N)
        elif vtype == "UB":
            vi = 1 / n1 + 1 / n2 + (1 - (mdf - 2) / (mdf * cm**2)) * yi**2
        elif vtype == "LS2":
            vi = cm**2 * (1 / n1 + 1 / n2 + d**2 / (2 * N))
        else:  # AV
            ybar = _wmean_rows(np.where(present, yi, nan), np.where(present, N, nan))
            vi = 1 / n1 + 1 / n2 + ybar**2 / (2 * N)
    else:  # ROM
        ratio = m1 / m2
        _fail(present & ~(ratio > 0), one_d, lab,
              lambda b, i, w: f"mean_treat / mean_ctrl must be > 0 for ROM (log ratio of means) for {w}: "
              f"{_g(m1[b, i])} / {_g(m2[b, i])}")
        yi = np.log(ratio)
        if vtype == "LS":
            vi = s1**2 / (n1 * m1**2) + s2**2 / (n2 * m2**2)
        elif vtype == "HO":
            vi = sp**2 / (n1 * m1**2) + sp**2 / (n2 * m2**2)
        elif vtype == "AV":
            cv1 = _wmean_rows(np.where(present, s1 / m1, nan), np.where(present, n1, nan))
            cv2 = _wmean_rows(np.where(present, s2 / m2, nan), np.where(present, n2, nan))
            vi = cv1**2 / n1 + cv2**2 / n2
        else:  # AVHO
            w1 = np.where(present, n1 * s1 / m1, 0.0).sum(-1, keepdims=True)
            w2 = np.where(present, n2 * s2 / m2, 0.0).sum(-1, keepdims=True)
            cv = (w1 + w2) / np.where(present, N, 0.0).sum(-1, keepdims=True)
            vi = cv**2 * (1 / n1 + 1 / n2)
    return KernelOutput(yi, vi, dropped, raw)


def proportion(inp: KernelInput) -> KernelOutput:
    """PR, PLO, PAS, PFT: one group's events out of n."""
    m, arrs, present, one_d, lab = inp.measure, inp.arrs, inp.present, inp.one_d, inp.labels
    add, to, vtype = inp.add, inp.to, inp.vtype
    nan = np.nan
    raw: dict[str, np.ndarray] = {}
    dropped = np.zeros_like(present)
    _check_events_n(arrs, "events", "n", present, one_d, lab)
    xi0 = arrs["events"]
    mi0 = arrs["n"] - xi0
    xi, mi = _zero_correct([xi0, mi0], present, add, to)
    ni = xi + mi
    p = xi / ni
    if m == "PR":
        yi = p
        if vtype == "LS":
            vi = p * (1 - p) / ni
        elif vtype == "UB":
            vi = p * (1 - p) / (ni - 1)
        else:
            pb = _wmean_rows(np.where(present, p, nan), np.where(present, ni, nan))
            vi = pb * (1 - pb) / ni
    elif m == "PLO":
        yi = np.log(p / (1 - p))
        if vtype == "LS":
            vi = 1 / xi + 1 / mi
        else:
            pb = _wmean_rows(np.where(present, p, nan), np.where(present, ni, nan))
            vi = 1 / (pb * ni) + 1 / ((1 - pb) * ni)
    elif m == "PAS":
        yi = np.arcsin(np.sqrt(p))
        vi = 1 / (4 * ni)
    else:  # PFT
        yi = 0.5 * (np.arcsin(np.sqrt(xi / (ni + 1))) + np.arcsin(np.sqrt((xi + 1) / (ni + 1))))
        vi = 1 / (4 * ni + 2)
    return KernelOutput(yi, vi, dropped, raw)


def _one_group_rate(inp: KernelInput) -> tuple[np.ndarray, np.ndarray]:
    """Checked, zero-corrected events and person-time of one group (IR, IRLN)."""
    arrs, present, one_d, lab = inp.arrs, inp.present, inp.one_d, inp.labels
    _check_count(arrs, "events", present, one_d, lab)
    _check_positive(arrs, "time", present, one_d, lab)
    (xi,) = _zero_correct([arrs["events"]], present, inp.add, inp.to)
    return xi, arrs["time"]


def incidence_rate(inp: KernelInput) -> KernelOutput:
    """IR: one group's events per unit person-time."""
    xi, ti = _one_group_rate(inp)
    yi = xi / ti
    vi = yi / ti
    return KernelOutput(yi, vi, np.zeros_like(inp.present), {})


def log_incidence_rate(inp: KernelInput) -> KernelOutput:
    """IRLN: one group's log incidence rate."""
    xi, ti = _one_group_rate(inp)
    yi = np.log(xi / ti)
    vi = 1 / xi
    return KernelOutput(yi, vi, np.zeros_like(inp.present), {})


def correlation(inp: KernelInput) -> KernelOutput:
    """COR, ZCOR: a correlation and its sample size (vi NaN when n <= 3)."""
    m, arrs, present, one_d, lab = inp.measure, inp.arrs, inp.present, inp.one_d, inp.labels
    vtype = inp.vtype
    nan = np.nan
    raw: dict[str, np.ndarray] = {}
    dropped = np.zeros_like(present)
    r = arrs["cor"]
    _fail(present & ~(np.abs(r) <= 1), one_d, lab,
          lambda b, i, w: f"cor must be in [-1, 1] for {w}: {_g(r[b, i])}")
    _check_positive(arrs, "n", present, one_d, lab)
    ni = arrs["n"]
    if m == "COR":
        yi = r.copy()
        rb = r if vtype == "LS" else _wmean_rows(np.where(present, r, nan), np.where(present, ni, nan))
        vi = (1 - rb**2) ** 2 / (ni - 1)
    else:
        yi = 0.5 * np.log((1 + r) / (1 - r))
        vi = 1 / (ni - 3)
    vi = np.where(ni <= 3, nan, vi)
    return KernelOutput(yi, vi, dropped, raw, keep_yi=True, nonfinite_reason="n <= 3 or |cor| = 1")


def standardized_mean_change(inp: KernelInput) -> KernelOutput:
    """SMCC, SMCR: one group measured twice."""
    m, arrs, present, one_d, lab = inp.measure, inp.arrs, inp.present, inp.one_d, inp.labels
    vtype = inp.vtype
    raw: dict[str, np.ndarray] = {}
    dropped = np.zeros_like(present)
    r = arrs["cor"]
    _fail(present & ~(np.abs(r) <= 1), one_d, lab,
          lambda b, i, w: f"cor must be in [-1, 1] for {w}: {_g(r[b, i])}")
    _check_positive(arrs, "n", present, one_d, lab)
    sds = ("sd_time1", "sd_time2") if m == "SMCC" else ("sd_time1",)
    for name in sds:
        _check_positive(arrs, name, present, one_d, lab)
    ni = arrs["n"]
    _fail(present & (ni <= 2), one_d, lab,
          lambda b, i, w: f"n must be > 2 for {m} (bias correction undefined) for {w}: {_g(ni[b, i])}")
    from scipy.special import gammaln

    mi = ni - 1
    cm = np.exp(gammaln(mi / 2) - np.log(np.sqrt(mi / 2)) - gammaln((mi - 1) / 2))
    s1 = arrs["sd_time1"]
    if m == "SMCC":
        s2 = arrs["sd_time2"]
        sdd = np.sqrt(s1**2 + s2**2 - 2 * r * s1 * s2)
    else:
        sdd = s1
    d = (arrs["mean_time1"] - arrs["mean_time2"]) / sdd
    yi = cm * d
    a0 = 1 / ni if m == "SMCC" else 2 * (1 - r) / ni
    vi = a0 + yi**2 / (2 * ni) if vtype == "LS" else cm**2 * (a0 + d**2 / (2 * ni))
    return KernelOutput(yi, vi, dropped, raw, nonfinite_reason="a change-score SD of 0" if m == "SMCC" else None)


def rate_comparison(inp: KernelInput) -> KernelOutput:
    """IRR, IRD: events and person-time in two groups."""
    m, arrs, present, one_d, lab = inp.measure, inp.arrs, inp.present, inp.one_d, inp.labels
    add, to, drop00 = inp.add, inp.to, inp.drop00
    for g in ("treat", "ctrl"):
        _check_count(arrs, f"events_{g}", present, one_d, lab)
        _check_positive(arrs, f"time_{g}", present, one_d, lab)
    x1, x2 = arrs["events_treat"], arrs["events_ctrl"]
    t1, t2 = arrs["time_treat"], arrs["time_ctrl"]
    dropped = _drop_double_zero(x1, None, x2, None, present) if drop00 else np.zeros_like(present)
    use = present & ~dropped
    c1, c2 = _zero_correct([x1, x2], use, add, to)
    if m == "IRR":
        yi = np.log(c1 / t1) - np.log(c2 / t2)
        vi = 1 / c1 + 1 / c2
    else:  # IRD
        yi = c1 / t1 - c2 / t2
        vi = c1 / t1**2 + c2 / t2**2
    raw = dict(x1i=x1, t1i=t1, x2i=x2, t2i=t2)
    return KernelOutput(yi, vi, dropped, raw)


#: Every kernel by name (``Measure.kernel`` in :mod:`lnsynth.registry`).
KERNELS: dict[str, Callable[[KernelInput], KernelOutput]] = {
    "binary": binary,
    "continuous": continuous,
    "proportion": proportion,
    "incidence_rate": incidence_rate,
    "log_incidence_rate": log_incidence_rate,
    "correlation": correlation,
    "standardized_mean_change": standardized_mean_change,
    "rate_comparison": rate_comparison,
}

"""Study-level effect sizes (the Python counterpart of metafor's ``escalc``).

Every measure here reproduces R's ``metafor::escalc`` (version 3.8-1) with the
same defaults (``add=1/2, to="only0", drop00=FALSE, vtype="LS"``) to about
1e-12 relative; ``tests/test_effects.py`` checks this against stored R output.

Inputs may be scalars, lists, NumPy arrays or pandas Series, shaped ``(k,)``
(one data set of ``k`` studies) or ``(B, k)`` (a batch of ``B`` data sets that
share the study axis).  A study whose fields are *all* NaN is a missing study
in that analysis and gets ``yi = vi = NaN``; any other invalid input raises a
``ValueError`` that names the field and the study.

:func:`effect_sizes` holds no per-measure code: it checks the arguments, reads the
measure's entry in :mod:`lnsynth.registry` (required fields, accepted ``vtype``
values, default ``add`` and the name of its kernel) and calls that kernel of
:mod:`lnsynth.effects_kernels`.  Adding a measure is one registry entry plus its
kernel (``CONTRIBUTING.md``).

References
----------
Viechtbauer W (2010). Conducting meta-analyses in R with the metafor package.
*Journal of Statistical Software* 36(3), 1-48 (function ``escalc``).
"""

from __future__ import annotations

import math
import sys
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from . import effects_kernels, registry
from .effects_kernels import (  # noqa: F401  (_binary_yi_vi is re-exported for lnsynth.pairwise.mh)
    _binary_yi_vi,
    _recode_nonfinite,
    _where,
)

if TYPE_CHECKING:  # pandas and scipy are imported where used, so importing effects stays light
    import pandas as pd

__all__ = [
    "EffectSizes",
    "EffectSizeWarning",
    "effect_sizes",
    "MEASURES",
    "RATIO_MEASURES",
]


class EffectSizeWarning(UserWarning):
    """A study was dropped (``drop00``) or produced a non-finite outcome."""


#: Required input fields for every supported measure (source of truth: :mod:`lnsynth.registry`).
_REQUIRED: dict[str, tuple[str, ...]] = {m: registry.required_fields(m) for m in registry.escalc_measures()}

MEASURES: tuple[str, ...] = tuple(_REQUIRED)

#: Measures on a log scale (back-transform with ``exp``): the registry's ratio measures computed here.
RATIO_MEASURES: frozenset[str] = frozenset(registry.ratio_measures()) & frozenset(MEASURES)

_TO_OPTIONS = ("all", "only0", "if0all", "none")

_ALL_FIELDS = (
    "events_treat", "n_treat", "events_ctrl", "n_ctrl",
    "mean_treat", "sd_treat", "mean_ctrl", "sd_ctrl",
    "events", "n", "time", "time_treat", "time_ctrl",
    "cor", "mean_time1", "mean_time2", "sd_time1", "sd_time2",
)


# --------------------------------------------------------------------------
# result object
# --------------------------------------------------------------------------
def _ro(a: np.ndarray | None) -> np.ndarray | None:
    if a is None:
        return None
    a = np.array(a, dtype=float, copy=True)
    a.flags.writeable = False
    return a


@dataclass(frozen=True)
class EffectSizes:
    """Study-level outcomes ``yi`` with sampling variances ``vi``.

    Attributes
    ----------
    measure : str
        One of :data:`MEASURES` (metafor ``escalc`` codes).
    yi, vi : numpy.ndarray
        Outcomes and sampling variances, shape ``(k,)`` or ``(B, k)``, on the
        model scale (log scale for RR/OR/IRR/ROM; PETO is a log odds ratio;
        IRLN a log rate; ZCOR Fisher's z).
        Missing or dropped studies are NaN.
    labels : tuple of str or None
        Study labels (length ``k``).
    ai, bi, ci, di : numpy.ndarray or None
        Raw (uncorrected) 2x2 cells for binary two-group measures: events and
        non-events in the treatment arm (``ai``, ``bi``) and in the control arm
        (``ci``, ``di``).  Kept as given even for studies removed by ``drop00``.
    x1i, t1i, x2i, t2i : numpy.ndarray or None
        Raw event counts and person-times per arm for ``IRR`` and ``IRD``.
    add, to, drop00, vtype
        The zero-cell settings and variance type actually used.

    Notes
    -----
    Arrays are read-only.  For ``PR`` with ``to="none"`` and 0 (or ``n``)
    events metafor gives ``vi = 0`` and so does this class; a fixed/random
    effects model (``meta_analysis``) needs ``vi > 0``.
    """

    measure: str
    yi: np.ndarray
    vi: np.ndarray
    labels: tuple[str, ...] | None = None
    ai: np.ndarray | None = None
    bi: np.ndarray | None = None
    ci: np.ndarray | None = None
    di: np.ndarray | None = None
    x1i: np.ndarray | None = None
    t1i: np.ndarray | None = None
    x2i: np.ndarray | None = None
    t2i: np.ndarray | None = None
    add: float = 0.5
    to: str = "only0"
    drop00: bool = False
    vtype: str = "LS"

    @property
    def is_ratio(self) -> bool:
        """True when ``yi`` is a log ratio (RR, OR, PETO, IRR, ROM)."""
        return self.measure in RATIO_MEASURES

    @property
    def k(self) -> int:
        """Number of studies (length of the study axis)."""
        return int(self.yi.shape[-1])

    @property
    def is_batch(self) -> bool:
        """True for a ``(B, k)`` batch of analyses."""
        return self.yi.ndim == 2

    def _raw(self) -> dict[str, np.ndarray]:
        out = {}
        for name in ("ai", "bi", "ci", "di", "x1i", "t1i", "x2i", "t2i"):
            v = getattr(self, name)
            if v is not None:
                out[name] = v
        return out

    def to_frame(self) -> pd.DataFrame:
        """Long data frame: ``label, yi, vi`` plus raw counts.

        For a batch an ``analysis`` column (0..B-1) comes first.
        """
        import pandas as pd

        labels = list(self.labels) if self.labels is not None else [str(i) for i in range(self.k)]
        cols: dict[str, Any] = {}
        if self.is_batch:
            B = self.yi.shape[0]
            cols["analysis"] = np.repeat(np.arange(B), self.k)
            cols["label"] = labels * B
        else:
            cols["label"] = labels
        cols["yi"] = self.yi.ravel()
        cols["vi"] = self.vi.ravel()
        for name, v in self._raw().items():
            cols[name] = v.ravel()
        return pd.DataFrame(cols)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (NaN kept as float NaN)."""
        d: dict[str, Any] = {
            "measure": self.measure,
            "yi": self.yi.tolist(),
            "vi": self.vi.tolist(),
            "labels": list(self.labels) if self.labels is not None else None,
            "add": self.add,
            "to": self.to,
            "drop00": self.drop00,
            "vtype": self.vtype,
            "is_ratio": self.is_ratio,
        }
        for name, v in self._raw().items():
            d[name] = v.tolist()
        return d

    def summary(self) -> str:
        """Short human-readable table of the outcomes."""
        df = self.to_frame()
        df["sei"] = np.sqrt(df["vi"])
        head = (
            f"EffectSizes: measure={self.measure}"
            f"{' (log scale)' if self.is_ratio else ''}, k={self.k}"
            f"{f', B={self.yi.shape[0]}' if self.is_batch else ''}; "
            f"add={self.add}, to={self.to!r}, drop00={self.drop00}, vtype={self.vtype!r}"
        )
        return head + "\n" + str(df.to_string(index=False, float_format=lambda x: f"{x:.4f}"))

    def __repr__(self) -> str:  # compact
        return (
            f"EffectSizes(measure={self.measure!r}, shape={self.yi.shape}, "
            f"add={self.add}, to={self.to!r}, drop00={self.drop00})"
        )


# --------------------------------------------------------------------------
# input handling
# --------------------------------------------------------------------------
def _as_array(name: str, x: Any) -> np.ndarray:
    try:
        pd = sys.modules.get("pandas")  # not imported: x cannot be a pandas object (keeps start-up light)
        if pd is not None and isinstance(x, (pd.Series, pd.DataFrame)):
            # nullable dtypes (Int64, Float64) carry pd.NA: map it to NaN
            x = x.to_numpy(dtype=float, na_value=np.nan)
        arr = np.asarray(x, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric; got non-numeric input ({exc})") from None
    if arr.dtype.kind not in "f":
        raise ValueError(f"{name} must be numeric")
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim > 2:
        raise ValueError(f"{name} must be 1-D (k,) or 2-D (B, k); got shape {arr.shape}")
    if np.isinf(arr).any():
        idx = tuple(int(j) for j in np.argwhere(np.isinf(arr))[0])
        raise ValueError(f"{name} is infinite at {('index ' + str(idx[-1])) if len(idx) == 1 else idx}")
    return arr


def _prepare(
    fields: dict[str, Any], required: Sequence[str], labels: Any, context: str
) -> tuple[dict[str, np.ndarray], np.ndarray, tuple[str, ...] | None, bool]:
    """Convert, check shapes and partial missingness.

    Returns the arrays as 2-D ``(B, k)``, the ``present`` mask, labels, and
    whether the input was 1-D.
    """
    arrs: dict[str, np.ndarray] = {}
    for name in required:
        if fields.get(name) is None:
            raise ValueError(f"{context} requires field '{name}' (missing); required: {', '.join(required)}")
        arrs[name] = _as_array(name, fields[name])
    first = required[0]
    shape = arrs[first].shape
    for name in required[1:]:
        if arrs[name].shape != shape:
            sa, sb = arrs[first].shape, arrs[name].shape
            la = sa[-1] if len(sa) == 1 else sa
            lb = sb[-1] if len(sb) == 1 else sb
            raise ValueError(
                f"length mismatch: {first} has length {la} but {name} has length {lb}"
            )
    one_d = len(shape) == 1
    k = shape[-1]
    if k == 0:
        raise ValueError(f"{first} is empty (no studies)")
    lab: tuple[str, ...] | None = None
    if labels is not None:
        if isinstance(labels, str):
            labels = [labels]
        lab = tuple(str(s) for s in (labels.tolist() if hasattr(labels, "tolist") else labels))
        if len(lab) != k:
            raise ValueError(f"length mismatch: labels has length {len(lab)} but {first} has length {k}")
    arrs = {n: (a[None, :] if one_d else a) for n, a in arrs.items()}
    nan = np.stack([np.isnan(a) for a in arrs.values()])
    allnan = nan.all(axis=0)
    partial = nan.any(axis=0) & ~allnan
    if partial.any():
        b, i = (int(j) for j in np.argwhere(partial)[0])
        idx = (i,) if one_d else (b, i)
        missing = [n for n, a in arrs.items() if np.isnan(a[b, i])]
        given = [n for n, a in arrs.items() if not np.isnan(a[b, i])]
        raise ValueError(
            f"{missing[0]} is missing (NaN) for {_where(lab, idx)} while "
            f"{', '.join(given)} {'is' if len(given) == 1 else 'are'} present; "
            "a missing study must be NaN in every field"
        )
    return arrs, np.asarray(~allnan), lab, one_d


# --------------------------------------------------------------------------
# public function
# --------------------------------------------------------------------------
def effect_sizes(
    measure: str,
    *,
    events_treat: Any = None,
    n_treat: Any = None,
    events_ctrl: Any = None,
    n_ctrl: Any = None,
    mean_treat: Any = None,
    sd_treat: Any = None,
    mean_ctrl: Any = None,
    sd_ctrl: Any = None,
    events: Any = None,
    n: Any = None,
    time: Any = None,
    time_treat: Any = None,
    time_ctrl: Any = None,
    cor: Any = None,
    mean_time1: Any = None,
    mean_time2: Any = None,
    sd_time1: Any = None,
    sd_time2: Any = None,
    labels: Sequence[str] | None = None,
    add: float | None = None,
    to: str = "only0",
    drop00: bool = False,
    vtype: str = "LS",
) -> EffectSizes:
    r"""Compute study-level effect sizes as metafor's ``escalc`` does.

    Parameters
    ----------
    measure : str
        Outcome measure (metafor code):

        Two-group binary (``events_treat, n_treat, events_ctrl, n_ctrl``), with
        cells :math:`a=e_1, b=n_1-e_1, c=e_2, d=n_2-e_2` after the zero-cell
        correction, :math:`p_1=a/n_1`, :math:`p_2=c/n_2`:

        * ``RR`` log risk ratio: :math:`y=\log p_1-\log p_2`,
          :math:`v=1/a-1/n_1+1/c-1/n_2`.
        * ``OR`` log odds ratio: :math:`y=\log\frac{ad}{bc}`,
          :math:`v=1/a+1/b+1/c+1/d` (Woolf 1955).
        * ``RD`` risk difference: :math:`y=p_1-p_2`,
          ``LS`` :math:`v=p_1(1-p_1)/n_1+p_2(1-p_2)/n_2`; ``UB`` divides by
          :math:`n_j-1`; ``AV`` uses the sample-size weighted mean risks.
        * ``PETO`` Peto's log odds ratio (Yusuf et al. 1985):
          :math:`y=(a-E)/V`, :math:`v=1/V`, with :math:`E=(a+c)n_1/N` and
          :math:`V=(a+c)(b+d)n_1n_2/(N^2(N-1))`.
        * ``AS`` arcsine square-root risk difference (Rücker et al. 2009):
          :math:`y=\arcsin\sqrt{p_1}-\arcsin\sqrt{p_2}`,
          :math:`v=1/(4n_1)+1/(4n_2)`.

        Two-group continuous (``mean_*, sd_*, n_*``):

        * ``MD`` raw mean difference :math:`y=m_1-m_2`,
          :math:`v=s_1^2/n_1+s_2^2/n_2` (``LS``/``UB``) or
          :math:`s_p^2(1/n_1+1/n_2)` (``HO``).
        * ``SMD`` Hedges' *g* (Hedges 1981): :math:`d=(m_1-m_2)/s_p` with
          :math:`s_p^2=((n_1-1)s_1^2+(n_2-1)s_2^2)/m`, :math:`m=n_1+n_2-2`,
          exact bias correction
          :math:`c(m)=\Gamma(m/2)/(\sqrt{m/2}\,\Gamma((m-1)/2))`,
          :math:`y=c(m)d`; ``LS`` (default) :math:`v=1/n_1+1/n_2+y^2/(2(n_1+n_2))`,
          ``UB`` :math:`v=1/n_1+1/n_2+(1-(m-2)/(m c(m)^2))y^2`,
          ``LS2`` :math:`v=c(m)^2(1/n_1+1/n_2+d^2/(2(n_1+n_2)))`,
          ``AV`` uses the weighted mean :math:`\bar y` in place of :math:`y`.
          Needs :math:`n_1+n_2>3`.
        * ``ROM`` log ratio of means (Hedges, Gurevitch & Curtis 1999):
          :math:`y=\log(m_1/m_2)`, ``LS`` :math:`v=s_1^2/(n_1m_1^2)+s_2^2/(n_2m_2^2)`;
          ``HO`` uses :math:`s_p`; ``AV``/``AVHO`` averaged coefficients of
          variation.  Needs :math:`m_1/m_2>0`.

        Single group proportions (``events, n``) with :math:`x` events,
        :math:`p=x/n` (after correction of :math:`x` and :math:`n-x`):

        * ``PR`` raw proportion, :math:`v=p(1-p)/n` (``LS``), ``UB`` uses
          :math:`n-1`, ``AV`` the weighted mean proportion.
        * ``PLO`` logit, :math:`v=1/x+1/(n-x)`.
        * ``PAS`` arcsine square root, :math:`y=\arcsin\sqrt p`, :math:`v=1/(4n)`.
        * ``PFT`` Freeman-Tukey double arcsine (Freeman & Tukey 1950):
          :math:`y=\tfrac12(\arcsin\sqrt{x/(n+1)}+\arcsin\sqrt{(x+1)/(n+1)})`,
          :math:`v=1/(4n+2)`.

        Rates:

        * ``IR`` incidence rate (``events, time``): :math:`y=x/t`, :math:`v=x/t^2`.
        * ``IRLN`` log incidence rate (``events, time``): :math:`y=\log(x/t)`,
          :math:`v=1/x`.
        * ``IRR`` log incidence rate ratio (``events_treat, time_treat,
          events_ctrl, time_ctrl``): :math:`y=\log(x_1/t_1)-\log(x_2/t_2)`,
          :math:`v=1/x_1+1/x_2`.
        * ``IRD`` incidence rate difference (same fields):
          :math:`y=x_1/t_1-x_2/t_2`, :math:`v=x_1/t_1^2+x_2/t_2^2`
          (Rothman, Greenland & Lash 2008).  ``add``/``to``/``drop00`` act
          on the event counts as for IRR.

        Correlations (``cor`` = :math:`r`, ``n``):

        * ``COR`` raw correlation, :math:`y=r`, ``LS``
          :math:`v=(1-r^2)^2/(n-1)` (Olkin & Pratt 1958); ``AV`` puts the
          n-weighted mean :math:`\bar r` in place of :math:`r`.
        * ``ZCOR`` Fisher's z (Fisher 1921): :math:`y=\tfrac12\log\frac{1+r}{1-r}`,
          :math:`v=1/(n-3)`.

          For both, ``vi`` is NaN (with an :class:`EffectSizeWarning`) when
          :math:`n\le3`, as escalc; :math:`|r|>1` is an error.

        Change scores of one group measured twice (``mean_time1, mean_time2,
        sd_time1, sd_time2, n, cor``; ``cor`` is the correlation between the
        occasions), with :math:`c(m)` the exact bias correction of SMD at
        :math:`m=n-1`:

        * ``SMCC`` standardized mean change with change-score
          standardization (Gibbons, Hedeker & Davis 1993; Becker 1988):
          :math:`s_d=\sqrt{s_1^2+s_2^2-2rs_1s_2}`,
          :math:`y=c(m)(m_1-m_2)/s_d`; ``LS`` :math:`v=1/n+y^2/(2n)`,
          ``LS2`` :math:`v=c(m)^2(1/n+d^2/(2n))` with :math:`d=(m_1-m_2)/s_d`.
        * ``SMCR`` raw-score standardization (Becker 1988; Morris 2000),
          without ``sd_time2``: :math:`y=c(m)(m_1-m_2)/s_1`; ``LS``
          :math:`v=2(1-r)/n+y^2/(2n)`, ``LS2``
          :math:`v=c(m)^2(2(1-r)/n+d^2/(2n))`.

          Both need :math:`n>2` (the bias correction is undefined otherwise).
    events_treat, n_treat, events_ctrl, n_ctrl, mean_treat, sd_treat, mean_ctrl, sd_ctrl, events, n, time, time_treat, time_ctrl : array-like
        Study data, shape ``(k,)`` or ``(B, k)``; a study with NaN in every
        required field is missing (``yi = vi = NaN``).  Fields the measure
        does not use must be left ``None``.
    labels : sequence of str, optional
        Study labels (used in messages and :meth:`EffectSizes.to_frame`).
    add : float or None, default None
        Amount added to cells by the zero-cell correction.  ``None`` means
        escalc's default when ``add`` is not given: 0.5, except 0 for AS,
        PAS and PFT.  (escalc also applies ``add`` to AS/PAS/PFT when it is
        given explicitly, so ``add=0.5`` here equals ``escalc(..., add=1/2)``.)
    to : {"only0", "all", "if0all", "none"}
        Which studies get ``add``: those with a zero cell (``only0``), all
        studies (``all``), all studies of an analysis if any has a zero cell
        (``if0all``, applied per row of a batch), or none.  Zero cells are
        checked in all four cells of a 2x2 table, in both event counts for
        IRR, in events and non-events for proportions and in events for IR.
        Continuous measures ignore ``add``/``to``.
    drop00 : bool, default False
        For binary two-group measures (studies with no events in both arms or
        only events in both arms) and IRR/IRD (no events in both arms): set such
        studies' ``yi``/``vi`` to NaN (an :class:`EffectSizeWarning` names
        them).  Ignored by other measures, as in escalc.
    vtype : str, default "LS"
        Variance estimator, for RD, PR, PLO, MD, SMD, ROM, COR, SMCC, SMCR (see above).

    Returns
    -------
    EffectSizes

    Raises
    ------
    ValueError
        Unknown measure or ``to``/``vtype``; a required field missing or an
        unused field given; non-numeric input; fields of different length;
        a partially missing study; negative counts; events > n; n <= 0;
        sd <= 0; non-positive time; SMD with n_treat + n_ctrl <= 3; ROM with
        means of opposite sign or zero.  Messages name the field and study.

    Warns
    -----
    EffectSizeWarning
        When ``drop00`` removes a study, or when (with ``to="none"`` or
        ``add=0``) a study gets a non-finite ``yi``/``vi`` as in metafor.

    Notes
    -----
    With the default correction every valid study gets finite ``yi`` and
    ``vi``.  ``vi`` can still be 0 for RD/PR/AS-type measures only when the
    correction is switched off (``to="none"`` or ``add=0``); for ``PR`` with
    ``to="none"`` and 0 or ``n`` events metafor gives ``vi = 0``, which is
    reproduced here, but inverse-variance pooling (``meta_analysis``) needs
    ``vi > 0``.

    References
    ----------
    Viechtbauer W (2010), metafor, J Stat Softw 36(3) -- ``escalc``.
    Hedges LV (1981), Distribution theory for Glass's estimator of effect
    size and related estimators, J Educ Stat 6:107-128.
    Yusuf S et al. (1985), Beta blockade during and after myocardial
    infarction, Prog Cardiovasc Dis 27:335-371.
    Freeman MF, Tukey JW (1950), Ann Math Stat 21:607-611.
    Fisher RA (1921), On the 'probable error' of a coefficient of correlation
    deduced from a small sample, Metron 1:3-32.
    Olkin I, Pratt JW (1958), Unbiased estimation of certain correlation
    coefficients, Ann Math Stat 29:201-211.
    Becker BJ (1988), Synthesizing standardized mean-change measures, Br J
    Math Stat Psychol 41:257-278.
    Gibbons RD, Hedeker DR, Davis JM (1993), J Educ Stat 18:271-279.
    Morris SB (2000), Distribution of the standardized mean change effect
    size for meta-analysis on repeated measures, Br J Math Stat Psychol 53:17-29.
    Rothman KJ, Greenland S, Lash TL (2008), Modern Epidemiology, 3rd ed.

    Examples
    --------
    >>> es = effect_sizes("ZCOR", cor=[0.3, 0.5], n=[53, 103])
    >>> [round(float(x), 4) for x in es.yi], [round(float(x), 4) for x in es.vi]
    ([0.3095, 0.5493], [0.02, 0.01])
    >>> es = effect_sizes("IRD", events_treat=[4], time_treat=[100.0], events_ctrl=[9], time_ctrl=[120.0])
    >>> round(float(es.yi[0]), 4)
    -0.035
    """
    if not isinstance(measure, str):
        raise ValueError(f"measure must be a string, one of {', '.join(MEASURES)}")
    m = measure.upper()
    if m not in _REQUIRED:
        raise ValueError(f"unknown measure {measure!r}; valid measures: {', '.join(MEASURES)}")
    entry = registry.measure(m)  # kernel, variance types and default ``add`` (one entry per measure)
    if to not in _TO_OPTIONS:
        raise ValueError(f"unknown to={to!r}; valid: {', '.join(_TO_OPTIONS)}")
    valid_vt = entry.vtypes
    if vtype not in valid_vt:
        raise ValueError(f"vtype={vtype!r} not available for measure {m}; valid: {', '.join(valid_vt)}")
    if add is None:
        add = entry.add_default
    try:
        add = float(add)
    except (TypeError, ValueError):
        raise ValueError(f"add must be a number, got {add!r}") from None
    if not math.isfinite(add) or add < 0:
        raise ValueError(f"add must be a finite number >= 0, got {add}")
    drop00 = bool(drop00)

    given = dict(
        events_treat=events_treat, n_treat=n_treat, events_ctrl=events_ctrl, n_ctrl=n_ctrl,
        mean_treat=mean_treat, sd_treat=sd_treat, mean_ctrl=mean_ctrl, sd_ctrl=sd_ctrl,
        events=events, n=n, time=time, time_treat=time_treat, time_ctrl=time_ctrl,
        cor=cor, mean_time1=mean_time1, mean_time2=mean_time2, sd_time1=sd_time1, sd_time2=sd_time2,
    )
    required = _REQUIRED[m]
    extra = [f for f in _ALL_FIELDS if given[f] is not None and f not in required]
    if extra:
        raise ValueError(
            f"field(s) {', '.join(extra)} not used by measure {m} (it needs {', '.join(required)})"
        )
    arrs, present, lab, one_d = _prepare(given, required, labels, f"measure {m}")
    nan = np.nan
    kernel = effects_kernels.KERNELS[entry.kernel]
    inp = effects_kernels.KernelInput(m, arrs, present, one_d, lab, add, to, drop00, vtype)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = kernel(inp)
    yi, vi, dropped, raw = out.yi, out.vi, out.dropped, out.raw

    yi = np.where(present & ~dropped, yi, nan)
    vi = np.where(present & ~dropped, vi, nan)

    if dropped.any():
        where = [_where(lab, (int(i),) if one_d else (int(b), int(i))) for b, i in np.argwhere(dropped)]
        warnings.warn(
            f"drop00=True: {m} set to NaN (no events or only events in both groups) for "
            + "; ".join(where),
            EffectSizeWarning,
            stacklevel=2,
        )
    with np.errstate(invalid="ignore"):
        bad = present & ~dropped & ~(np.isfinite(yi) & np.isfinite(vi) & ~(vi < 0))
    yi_kept = yi
    yi, vi = _recode_nonfinite(yi, vi)
    if out.keep_yi:  # escalc keeps r (or z) when only the variance is undefined (n <= 3)
        yi = np.where(present & np.isfinite(yi_kept), yi_kept, yi)
    if bad.any():
        where = [_where(lab, (int(i),) if one_d else (int(b), int(i))) for b, i in np.argwhere(bad)]
        why = out.nonfinite_reason or f"zero cells with to={to!r}, add={add}"
        warnings.warn(
            f"{m}: yi/vi not estimable (+-Inf/NaN recoded to NaN as escalc does; {why}) for " + "; ".join(where),
            EffectSizeWarning,
            stacklevel=2,
        )

    def shape(a: np.ndarray) -> np.ndarray:
        out = _ro(a[0] if one_d else a)
        assert out is not None
        return out

    return EffectSizes(
        measure=m,
        yi=shape(yi),
        vi=shape(vi),
        labels=lab,
        add=add,
        to=to,
        drop00=drop00,
        vtype=vtype,
        **{k_: shape(v) for k_, v in raw.items()},
    )

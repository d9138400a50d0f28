"""One registry of effect measures and of pooling methods / tau^2 estimators.

Every engine module (``effects``, ``pairwise``, ``network``) and every layer above it
reads which measures exist, which are ratios, what each needs as input, how each is
back-transformed, which kernel of :mod:`lnsynth.effects_kernels` computes it, and which
pooling methods exist (and where they are available) from here, so that these facts are
stated once.  The module imports only the standard
library at import time (NumPy is imported inside the back-transform functions).

Measure codes are metafor's ``escalc`` codes (plus ``HR``, a log hazard ratio given as
``yi``/``sei``); method codes are metafor's ``rma(method=)`` codes plus ``MH`` and
``PETO`` (``rma.mh``, ``rma.peto``).

Examples
--------
>>> from lnsynth import registry
>>> registry.measure("RR").is_ratio
True
>>> registry.null_value("OR", "back")
1.0
>>> registry.methods("network")
('FE', 'DL', 'REML', 'ML', 'PM')

References
----------
Viechtbauer W (2010). Conducting meta-analyses in R with the metafor package.
*Journal of Statistical Software* 36(3), 1-48 (functions ``escalc``, ``rma``,
``rma.mh``, ``rma.peto``, ``transf``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Literal

__all__ = [
    "Measure", "Method", "MEASURE_KINDS", "METHOD_KINDS",
    "measure", "all_measures", "measure_codes", "escalc_measures", "measures_for", "network_measures",
    "ratio_measures", "is_ratio", "required_fields", "back_transform", "null_value",
    "method", "all_methods", "methods", "iv_methods", "random_effects_methods", "fixed_effect_methods",
    "method_measures", "measures_table", "methods_table",
    "LIKELIHOOD_MODELS", "likelihood_models", "likelihood_model",
    "TAU2_ESTIMATORS", "tau2_estimators", "tau2_estimator",
]

#: Kinds of outcome data a measure is computed from (see :func:`measures_for`).
MEASURE_KINDS = ("binary", "continuous", "proportion", "incidence", "time-to-event", "correlation", "change")
#: Kinds of model a pooling method is available for (see :func:`methods`).
METHOD_KINDS = ("pairwise", "network")

_BINARY = ("events_treat", "n_treat", "events_ctrl", "n_ctrl")
_CONTINUOUS = ("mean_treat", "sd_treat", "n_treat", "mean_ctrl", "sd_ctrl", "n_ctrl")
_PROPORTION = ("events", "n")

_FLEISS = ("Fleiss JL, Berlin JA (2009). Effect sizes for dichotomous data. In: Cooper H, Hedges LV, "
           "Valentine JC (eds), The Handbook of Research Synthesis and Meta-Analysis, 2nd ed. Russell Sage, "
           "237-253.")
_METAFOR = "Viechtbauer W (2010). Conducting meta-analyses in R with the metafor package. J Stat Softw 36(3):1-48."
_ROTHMAN = "Rothman KJ, Greenland S, Lash TL (2008). Modern Epidemiology, 3rd ed. Lippincott Williams & Wilkins."
_VIECHTBAUER2005 = ("Viechtbauer W (2005). Bias and efficiency of meta-analytic variance estimators in the "
                    "random-effects model. J Educ Behav Stat 30:261-293.")
_HEDGES_OLKIN = "Hedges LV, Olkin I (1985). Statistical Methods for Meta-Analysis. Academic Press."
_FISHER1921 = ("Fisher RA (1921). On the 'probable error' of a coefficient of correlation deduced from a small "
               "sample. Metron 1:3-32.")
_OLKIN_PRATT = ("Olkin I, Pratt JW (1958). Unbiased estimation of certain correlation coefficients. Ann Math "
                "Stat 29:201-211. " + _HEDGES_OLKIN)
_BECKER1988 = ("Becker BJ (1988). Synthesizing standardized mean-change measures. Br J Math Stat Psychol "
               "41:257-278.")
_GIBBONS1993 = ("Gibbons RD, Hedeker DR, Davis JM (1993). Estimation of effect size from a series of experiments "
                "involving paired comparisons. J Educ Stat 18:271-279.")
_MORRIS2000 = ("Morris SB (2000). Distribution of the standardized mean change effect size for meta-analysis on "
               "repeated measures. Br J Math Stat Psychol 53:17-29.")
_YUSUF = ("Yusuf S, Peto R, Lewis J, Collins R, Sleight P (1985). Beta blockade during and after myocardial "
          "infarction: an overview of the randomized trials. Prog Cardiovasc Dis 27:335-371.")


@dataclass(frozen=True)
class Measure:
    """One effect measure.

    Attributes
    ----------
    code : str
        metafor ``escalc`` code (``HR``: log hazard ratio supplied as ``yi``/``sei``).
    name : str
        Full name, as used for axis labels ("Risk Ratio").
    kind : str
        One of :data:`MEASURE_KINDS`.
    groups : int
        1 for single-group measures (PR, PLO, PAS, PFT, IR, IRLN, COR, ZCOR, SMCC, SMCR),
        2 for comparisons.
    scale : str
        The model scale: ``"log"`` (log of a ratio), ``"log-rate"`` (log of a single-group
        rate, IRLN), ``"identity"``, ``"logit"``, ``"arcsine"``, ``"freeman-tukey"`` or
        ``"fisher-z"`` (ZCOR).
    back_transform : str
        Name of the back-transformation to the natural scale: ``"exp"`` (ratios),
        ``"exp-rate"`` (the same function for a log rate, named apart so that ``"exp"``
        always means a ratio), ``"identity"`` or the metafor ``transf`` function
        (``"transf.ilogit"``, ``"transf.iarcsin"``, ``"transf.ipft.hm"``,
        ``"transf.ztor"``); :func:`back_transform` returns the callable.
    required : tuple of str
        Input fields of :func:`lnsynth.effects.effect_sizes` (empty for ``HR``).
    is_ratio : bool
        True for a ratio measure: model scale log, null value 0 there and 1 on the
        back-transformed scale.
    description : str
        One line.
    reference : str
        The paper (or book) to cite.
    network : bool
        Available for network meta-analysis (:func:`lnsynth.network.network_meta_analysis`).
    escalc : bool
        Computed from raw data by :func:`lnsynth.effects.effect_sizes`.
    kernel : str
        The function of :mod:`lnsynth.effects_kernels` that computes ``yi``/``vi``
        (:func:`lnsynth.effects.effect_sizes` looks it up here); empty for ``HR``.
    vtypes : tuple of str
        The variance types ``effect_sizes(vtype=)`` accepts (escalc's ``vtype``), the default first.
    add_default : float
        The zero-cell correction ``add`` when none is given (escalc: 0.5; 0 for AS, PAS, PFT).
    """

    code: str
    name: str
    kind: str
    groups: int
    scale: str
    back_transform: str
    required: tuple[str, ...]
    is_ratio: bool
    description: str
    reference: str
    network: bool = False
    escalc: bool = True
    kernel: str = ""
    vtypes: tuple[str, ...] = ("LS",)
    add_default: float = 0.5

    def null_value(self, scale: Literal["model", "back"] = "model") -> float | None:
        """See :func:`null_value`."""
        return null_value(self.code, scale)


@dataclass(frozen=True)
class Method:
    """One pooling method (and, for random-effects methods, its tau^2 estimator).

    Attributes
    ----------
    code : str
        metafor ``method`` code (``MH``, ``PETO``: ``rma.mh``, ``rma.peto``).
    name : str
        Full name.
    inverse_variance : bool
        Pools ``yi`` with weights ``1 / (vi + tau^2)`` (the methods of ``rma``).
    random_effects : bool
        Estimates a between-study variance tau^2.
    network : bool
        Available for network meta-analysis (FE, DL, REML, ML, PM; for the network DL
        is the generalised method of moments of Jackson, White & Riley 2012 and PM solves
        the generalised Q(tau^2) = m - p).
    measures : tuple of str or None
        The only measures the method accepts (``MH``: OR, RR, RD; ``PETO``: OR, PETO);
        None for any measure.
    description : str
        One line.
    reference : str
        The paper to cite.
    """

    code: str
    name: str
    inverse_variance: bool
    random_effects: bool
    network: bool
    measures: tuple[str, ...] | None
    description: str
    reference: str


# ----------------------------------------------------------------------------------------- measures
# Order: effects.MEASURES (escalc measures), then HR.
_MEASURES: tuple[Measure, ...] = (
    Measure("RR", "Risk Ratio", "binary", 2, "log", "exp", _BINARY, True,
            "Log risk ratio of events, treatment vs control.",
            "Katz D, Baptista J, Azen SP, Pike MC (1978). Obtaining confidence intervals for the risk ratio "
            "in cohort studies. Biometrics 34:469-474. " + _FLEISS, network=True,
            kernel="binary"),
    Measure("OR", "Odds Ratio", "binary", 2, "log", "exp", _BINARY, True,
            "Log odds ratio of events, treatment vs control (Woolf variance).",
            "Woolf B (1955). On estimating the relation between blood group and disease. Ann Hum Genet "
            "19:251-253. " + _FLEISS, network=True,
            kernel="binary"),
    Measure("RD", "Risk Difference", "binary", 2, "identity", "identity", _BINARY, False,
            "Difference in event proportions, treatment minus control.", _FLEISS, network=True,
            kernel="binary", vtypes=("LS", "UB", "AV")),
    Measure("PETO", "Odds Ratio (Peto)", "binary", 2, "log", "exp", _BINARY, True,
            "Peto's one-step log odds ratio (observed minus expected events over the hypergeometric variance).",
            _YUSUF,
            kernel="binary"),
    Measure("AS", "Arcsine Risk Difference", "binary", 2, "arcsine", "identity", _BINARY, False,
            "Difference of arcsine square-root transformed proportions (no zero-cell correction).",
            "Rücker G, Schwarzer G, Carpenter J, Olkin I (2009). Why add anything to nothing? The arcsine "
            "difference as a measure of treatment effect in meta-analysis with zero cells. Stat Med 28:721-738.",
            kernel="binary", add_default=0.0),
    Measure("MD", "Mean Difference", "continuous", 2, "identity", "identity", _CONTINUOUS, False,
            "Raw difference of means, treatment minus control.",
            "Borenstein M, Hedges LV, Higgins JPT, Rothstein HR (2009). Introduction to Meta-Analysis. Wiley.",
            network=True,
            kernel="continuous", vtypes=("LS", "UB", "HO")),
    Measure("SMD", "Standardized Mean Difference", "continuous", 2, "identity", "identity", _CONTINUOUS, False,
            "Bias-corrected standardized mean difference (Hedges' g).",
            "Hedges LV (1981). Distribution theory for Glass's estimator of effect size and related "
            "estimators. J Educ Stat 6:107-128.", network=True,
            kernel="continuous", vtypes=("LS", "UB", "LS2", "AV")),
    Measure("ROM", "Ratio of Means", "continuous", 2, "log", "exp", _CONTINUOUS, True,
            "Log ratio of means (response ratio), treatment over control.",
            "Hedges LV, Gurevitch J, Curtis PS (1999). The meta-analysis of response ratios in experimental "
            "ecology. Ecology 80:1150-1156.",
            kernel="continuous", vtypes=("LS", "HO", "AV", "AVHO")),
    Measure("PR", "Proportion", "proportion", 1, "identity", "identity", _PROPORTION, False,
            "Raw proportion of events in one group.", _METAFOR,
            kernel="proportion", vtypes=("LS", "UB", "AV")),
    Measure("PLO", "Proportion (logit)", "proportion", 1, "logit", "transf.ilogit", _PROPORTION, False,
            "Logit-transformed proportion of events in one group.", _METAFOR,
            kernel="proportion", vtypes=("LS", "AV")),
    Measure("PAS", "Proportion (arcsine)", "proportion", 1, "arcsine", "transf.iarcsin", _PROPORTION, False,
            "Arcsine square-root transformed proportion of events in one group.", _METAFOR,
            kernel="proportion", add_default=0.0),
    Measure("PFT", "Proportion (Freeman-Tukey)", "proportion", 1, "freeman-tukey", "transf.ipft.hm",
            _PROPORTION, False,
            "Freeman-Tukey double-arcsine transformed proportion; back-transformed with the harmonic mean n.",
            "Freeman MF, Tukey JW (1950). Transformations related to the angular and the square root. Ann Math "
            "Stat 21:607-611. Miller JJ (1978). The inverse of the Freeman-Tukey double arcsine "
            "transformation. Am Stat 32:138.",
            kernel="proportion", add_default=0.0),
    Measure("IR", "Incidence Rate", "incidence", 1, "identity", "identity", ("events", "time"), False,
            "Raw incidence rate (events per unit person-time) in one group.", _ROTHMAN,
            kernel="incidence_rate"),
    Measure("IRR", "Incidence Rate Ratio", "incidence", 2, "log", "exp",
            ("events_treat", "time_treat", "events_ctrl", "time_ctrl"), True,
            "Log ratio of incidence rates, treatment over control.", _ROTHMAN,
            kernel="rate_comparison"),
    Measure("IRD", "Incidence Rate Difference", "incidence", 2, "identity", "identity",
            ("events_treat", "time_treat", "events_ctrl", "time_ctrl"), False,
            "Difference of incidence rates (events per unit person-time), treatment minus control.", _ROTHMAN,
            kernel="rate_comparison"),
    Measure("IRLN", "Incidence Rate (log)", "incidence", 1, "log-rate", "exp-rate", ("events", "time"), False,
            "Log incidence rate in one group (a log rate, not a ratio: back-transformed with exp).", _ROTHMAN,
            kernel="log_incidence_rate"),
    Measure("COR", "Correlation", "correlation", 1, "identity", "identity", ("cor", "n"), False,
            "Raw Pearson correlation coefficient, sampling variance (1 - r^2)^2 / (n - 1).", _OLKIN_PRATT,
            kernel="correlation", vtypes=("LS", "AV")),
    Measure("ZCOR", "Correlation (Fisher z)", "correlation", 1, "fisher-z", "transf.ztor", ("cor", "n"), False,
            "Fisher r-to-z transformed correlation, sampling variance 1 / (n - 3).", _FISHER1921,
            kernel="correlation"),
    Measure("SMCC", "Standardized Mean Change (change-score SD)", "change", 1, "identity", "identity",
            ("mean_time1", "mean_time2", "sd_time1", "sd_time2", "n", "cor"), False,
            "Bias-corrected standardized mean change, standardized by the SD of the change scores.",
            _GIBBONS1993 + " " + _BECKER1988,
            kernel="standardized_mean_change", vtypes=("LS", "LS2")),
    Measure("SMCR", "Standardized Mean Change (raw-score SD)", "change", 1, "identity", "identity",
            ("mean_time1", "mean_time2", "sd_time1", "n", "cor"), False,
            "Bias-corrected standardized mean change, standardized by the SD at the first occasion.",
            _BECKER1988 + " " + _MORRIS2000,
            kernel="standardized_mean_change", vtypes=("LS", "LS2")),
    Measure("HR", "Hazard Ratio", "time-to-event", 2, "log", "exp", (), True,
            "Log hazard ratio, supplied as yi with its standard error (not computed from raw data).",
            "Parmar MKB, Torri V, Stewart L (1998). Extracting summary statistics to perform meta-analyses of "
            "the published literature for survival endpoints. Stat Med 17:2815-2834.", escalc=False),
)
_BY_MEASURE = {m.code: m for m in _MEASURES}
#: Order in which network meta-analysis lists its measures (binary, then continuous).
_NETWORK_ORDER = ("OR", "RR", "RD", "MD", "SMD")

# ------------------------------------------------------------------------------------------ methods
# Order: pairwise.METHODS.
_METHODS: tuple[Method, ...] = (
    Method("FE", "Fixed-effect (inverse-variance)", True, False, True, None,
           "Common-effect model, weights 1/vi.", _HEDGES_OLKIN),
    Method("MH", "Mantel-Haenszel", False, False, False, ("OR", "RR", "RD", "IRR", "IRD"),
           "Mantel-Haenszel fixed-effect pooling of 2x2 tables, or of events and person-time (rma.mh).",
           "Mantel N, Haenszel W (1959). Statistical aspects of the analysis of data from retrospective "
           "studies of disease. J Natl Cancer Inst 22:719-748."),
    Method("PETO", "Peto", False, False, False, ("OR", "PETO"),
           "Peto's one-step fixed-effect odds ratio from 2x2 tables (rma.peto).", _YUSUF),
    Method("DL", "DerSimonian-Laird", True, True, True, None,
           "Random effects; method-of-moments tau^2 with inverse-variance weights.",
           "DerSimonian R, Laird N (1986). Meta-analysis in clinical trials. Control Clin Trials 7:177-188."),
    Method("REML", "Restricted maximum likelihood", True, True, True, None,
           "Random effects; tau^2 maximising the restricted likelihood.", _VIECHTBAUER2005),
    Method("ML", "Maximum likelihood", True, True, True, None,
           "Random effects; tau^2 maximising the likelihood.", _VIECHTBAUER2005),
    Method("PM", "Paule-Mandel", True, True, True, None,
           "Random effects; tau^2 setting the generalised Q statistic to k - 1.",
           "Paule RC, Mandel J (1982). Consensus values and weighting factors. J Res Natl Bur Stand "
           "87:377-385."),
    Method("SJ", "Sidik-Jonkman", True, True, False, None,
           "Random effects; tau^2 by the Sidik-Jonkman estimator.",
           "Sidik K, Jonkman JN (2005). Simple heterogeneity variance estimation for meta-analysis. J R Stat "
           "Soc C (Appl Stat) 54:367-384."),
    Method("HE", "Hedges (Hedges-Olkin)", True, True, False, None,
           "Random effects; unweighted method-of-moments tau^2.",
           "Hedges LV (1983). A random effects model for effect sizes. Psychol Bull 93:388-395. " + _HEDGES_OLKIN),
    Method("EB", "Empirical Bayes", True, True, False, None,
           "Random effects; empirical Bayes tau^2 (Morris).",
           "Morris CN (1983). Parametric empirical Bayes inference: theory and applications. J Am Stat Assoc "
           "78:47-55."),
)
_BY_METHOD = {m.code: m for m in _METHODS}


def _key(code: Any, table: dict[str, Any], what: str) -> str:
    if not isinstance(code, str) or code.upper() not in table:
        raise ValueError(f"unknown {what} {code!r}; valid: {', '.join(table)}")
    return code.upper()


# ------------------------------------------------------------------------------- measure functions
def measure(code: str) -> Measure:
    """The registry entry of one measure (case-insensitive).

    Raises
    ------
    ValueError
        For an unknown code (the message lists the valid ones).
    """
    return _BY_MEASURE[_key(code, _BY_MEASURE, "measure")]


def all_measures() -> tuple[Measure, ...]:
    """Every measure entry, in registry order."""
    return _MEASURES


def measure_codes() -> tuple[str, ...]:
    """Every measure code, in registry order (escalc measures, then HR)."""
    return tuple(_BY_MEASURE)


def escalc_measures() -> tuple[str, ...]:
    """Measures computed from raw data by :func:`lnsynth.effects.effect_sizes` (``effects.MEASURES``)."""
    return tuple(m.code for m in _MEASURES if m.escalc)


def measures_for(kind: str) -> tuple[str, ...]:
    """Measure codes for one kind of data: one of :data:`MEASURE_KINDS`."""
    if kind not in MEASURE_KINDS:
        raise ValueError(f"unknown kind {kind!r}; valid: {', '.join(MEASURE_KINDS)}")
    return tuple(m.code for m in _MEASURES if m.kind == kind)


def network_measures(kind: str | None = None) -> tuple[str, ...]:
    """Measures available for network meta-analysis (OR, RR, RD, MD, SMD), optionally of one kind."""
    out = tuple(c for c in _NETWORK_ORDER if _BY_MEASURE[c].network)
    return out if kind is None else tuple(c for c in out if c in measures_for(kind))


def ratio_measures() -> tuple[str, ...]:
    """Ratio measures (log model scale, null 1 when back-transformed): RR, OR, PETO, ROM, IRR, HR."""
    return tuple(m.code for m in _MEASURES if m.is_ratio)


def is_ratio(code: Any) -> bool:
    """True when ``code`` names a ratio measure; False for None and for unknown codes."""
    return isinstance(code, str) and code.upper() in _BY_MEASURE and _BY_MEASURE[code.upper()].is_ratio


def required_fields(code: str) -> tuple[str, ...]:
    """Input fields :func:`lnsynth.effects.effect_sizes` needs for ``code`` (empty for HR)."""
    return measure(code).required


def _identity(x: Any, **_: Any) -> Any:
    return x


def _exp(x: Any, **_: Any) -> Any:
    import numpy as np

    return np.exp(x)


def _ilogit(x: Any, **_: Any) -> Any:
    """metafor ``transf.ilogit``: the logistic function."""
    import numpy as np

    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=float)))


def _iarcsin(x: Any, **_: Any) -> Any:
    """metafor ``transf.iarcsin``: ``sin(x)^2``, 0 below 0 and 1 above pi/2."""
    import numpy as np

    x = np.asarray(x, dtype=float)
    z = np.sin(x) ** 2
    z = np.where(x < 0, 0.0, z)
    return np.where(x > math.asin(1.0), 1.0, z)


def _pft(p: Any, n: Any) -> Any:
    import numpy as np

    x = p * n
    return 0.5 * (np.arcsin(np.sqrt(x / (n + 1))) + np.arcsin(np.sqrt((x + 1) / (n + 1))))


def _ipft_hm(x: Any, *, ni: Any = None, **_: Any) -> Any:
    """metafor ``transf.ipft.hm``: inverse Freeman-Tukey with the harmonic mean of the study sizes ``ni``."""
    import numpy as np

    if ni is None:
        raise ValueError("ni: the PFT back-transform needs the study sizes (ni=...), as transf.ipft.hm")
    ni = np.asarray(ni, dtype=float)
    nhm = 1.0 / np.nanmean(1.0 / ni)
    x = np.asarray(x, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        s = np.sin(2 * x)
        z = 0.5 * (1 - np.sign(np.cos(2 * x)) * np.sqrt(1 - (s + (s - 1 / s) / nhm) ** 2))
    z = np.where(x > _pft(1.0, nhm), 1.0, z)
    return np.where(x < _pft(0.0, nhm), 0.0, z)


def _ztor(x: Any, **_: Any) -> Any:
    """metafor ``transf.ztor``: Fisher z back to a correlation, ``tanh(z)``."""
    import numpy as np

    return np.tanh(np.asarray(x, dtype=float))


_BACK: dict[str, Callable[..., Any]] = {
    "identity": _identity, "exp": _exp, "exp-rate": _exp, "transf.ztor": _ztor, "transf.ilogit": _ilogit, "transf.iarcsin": _iarcsin,
    "transf.ipft.hm": _ipft_hm,
}


def back_transform(code: str) -> Callable[..., Any]:
    """The function taking a model-scale value (scalar or array) to the natural scale.

    ``exp`` for ratio measures, identity for differences, means and raw proportions/rates, and
    the metafor ``transf`` inverse for PLO, PAS and PFT.  The PFT inverse needs the study sizes:
    ``back_transform("PFT")(x, ni=n)``.
    """
    return _BACK[measure(code).back_transform]


def null_value(code: str, scale: Literal["model", "back"] = "model") -> float | None:
    """The value of no effect for a comparison measure.

    Parameters
    ----------
    code : str
        Measure code.
    scale : {"model", "back"}
        ``"model"``: the scale the model is fitted on (0 for every comparison, log for ratios);
        ``"back"``: after :func:`back_transform` (1 for ratio measures, 0 otherwise).

    Returns
    -------
    float or None
        None for single-group measures (a proportion or rate has no null value).
    """
    if scale not in ("model", "back"):
        raise ValueError(f"scale: expected 'model' or 'back', got {scale!r}")
    m = measure(code)
    if m.groups == 1:
        return None
    return 1.0 if (m.is_ratio and scale == "back") else 0.0


# -------------------------------------------------------------------------------- method functions
def method(code: str) -> Method:
    """The registry entry of one pooling method (case-insensitive)."""
    return _BY_METHOD[_key(code, _BY_METHOD, "method")]


def all_methods() -> tuple[Method, ...]:
    """Every method entry, in registry order (``pairwise.METHODS``)."""
    return _METHODS


def methods(kind: Literal["pairwise", "network"] = "pairwise", *, inverse_variance: bool | None = None,
            random_effects: bool | None = None) -> tuple[str, ...]:
    """Method codes available for ``kind`` models, optionally filtered.

    ``methods()`` is ``pairwise.METHODS``; ``methods("network")`` is
    ``("FE", "DL", "REML", "ML", "PM")``;
    ``methods(inverse_variance=True)`` the inverse-variance methods (those of meta-regression,
    influence diagnostics, GOSH and the bias tests).
    """
    if kind not in METHOD_KINDS:
        raise ValueError(f"unknown kind {kind!r}; valid: {', '.join(METHOD_KINDS)}")
    out = []
    for m in _METHODS:
        if kind == "network" and not m.network:
            continue
        if inverse_variance is not None and m.inverse_variance != inverse_variance:
            continue
        if random_effects is not None and m.random_effects != random_effects:
            continue
        out.append(m.code)
    return tuple(out)


def iv_methods() -> tuple[str, ...]:
    """Inverse-variance methods: FE and the random-effects tau^2 estimators."""
    return methods(inverse_variance=True)


def random_effects_methods(kind: Literal["pairwise", "network"] = "pairwise") -> tuple[str, ...]:
    """Methods that estimate tau^2."""
    return methods(kind, random_effects=True)


def fixed_effect_methods(kind: Literal["pairwise", "network"] = "pairwise") -> tuple[str, ...]:
    """Methods without tau^2: FE, MH, PETO (network: FE)."""
    return methods(kind, random_effects=False)


def method_measures(code: str) -> tuple[str, ...] | None:
    """Measures a method is restricted to (MH: OR, RR, RD; PETO: OR, PETO); None for any measure."""
    return method(code).measures


# ------------------------------------------------------------------------------------ tables
def measures_table() -> list[dict[str, Any]]:
    """One dict per measure (every field), e.g. for CLI help or a web form."""
    from dataclasses import asdict

    return [asdict(m) for m in _MEASURES]


def methods_table() -> list[dict[str, Any]]:
    """One dict per method (every field), e.g. for CLI help or a web form."""
    from dataclasses import asdict

    return [asdict(m) for m in _METHODS]


# ------------------------------------------------------------------------ exact-likelihood models
# Kept apart from the inverse-variance/MH/Peto methods above (``methods()`` and ``meta_analysis`` do not
# accept them): they take 2x2 counts or arm-level events, not yi/vi.  Reused fields of :class:`Method`:
# ``inverse_variance`` False, ``random_effects`` whether tau^2 is estimated, ``network`` for NMA models.
_STIJNEN2010 = ("Stijnen T, Hamza TH, Ozdemir P (2010). Random effects meta-analysis of event outcome in the "
                "framework of the generalized linear mixed model with applications in sparse data. Stat Med "
                "29:3046-3067.")
_DIAS_TSD2 = ("Dias S, Welton NJ, Sutton AJ, Ades AE (2011, updated 2016). NICE DSU Technical Support Document 2: "
              "a generalised linear modelling framework for pairwise and network meta-analysis of randomised "
              "controlled trials. http://www.nicedsu.org.uk")
LIKELIHOOD_MODELS: tuple[Method, ...] = (
    Method("UM.FS", "Binomial-normal GLMM, fixed study effects", False, True, False, ("OR",),
           "Pairwise log OR; binomial likelihood, normal random effect integrated by adaptive Gauss-Hermite "
           "quadrature (metafor rma.glmm model='UM.FS'); lnsynth.pairwise.glmm.glmm_meta_analysis.",
           "Turner RM, Omar RZ, Yang M, Goldstein H, Thompson SG (2000). Stat Med 19:3417-3432. " + _STIJNEN2010),
    Method("CM.EL", "Conditional GLMM, exact (non-central hypergeometric) likelihood", False, True, False, ("OR",),
           "Pairwise log OR conditional on each study's total events (metafor rma.glmm model='CM.EL'); "
           "lnsynth.pairwise.glmm.glmm_meta_analysis.",
           "van Houwelingen HC, Zwinderman KH, Stijnen T (1993). Stat Med 12:2273-2284. " + _STIJNEN2010),
    Method("BAYES-BIN", "Bayesian NMA, binomial likelihood, logit link (NICE TSD2)", False, True, True, ("OR",),
           "Fixed or random effects network of arm-level events, NUTS via NumPyro (extra 'bayes'); "
           "lnsynth.network.bayes.bayesian_nma.", _DIAS_TSD2),
)
_BY_LIKELIHOOD = {m.code: m for m in LIKELIHOOD_MODELS}


def likelihood_models(kind: Literal["pairwise", "network"] | None = None) -> tuple[str, ...]:
    """Codes of the exact-likelihood models (``UM.FS``, ``CM.EL``; network: ``BAYES-BIN``)."""
    if kind is not None and kind not in METHOD_KINDS:
        raise ValueError(f"unknown kind {kind!r}; valid: {', '.join(METHOD_KINDS)}")
    return tuple(m.code for m in LIKELIHOOD_MODELS if kind is None or m.network == (kind == "network"))


def likelihood_model(code: str) -> Method:
    """The registry entry of one exact-likelihood model (case-insensitive)."""
    return _BY_LIKELIHOOD[_key(code, _BY_LIKELIHOOD, "likelihood model")]


# ----------------------------------------------------------------- further tau^2 estimators (rma.uni)
# metafor's rma(method=) estimators that meta_analysis's compiled kernel does not run; each entry names its kernel
# in lnsynth.pairwise.tau2 (dispatch by code there).  Kept apart from _METHODS so that meta_analysis, the CLI and
# the web form keep their method list.
_HUNTER_SCHMIDT = ("Hunter JE, Schmidt FL (2004). Methods of Meta-Analysis: Correcting Error and Bias in Research "
                   "Findings, 2nd ed. Sage.")
TAU2_ESTIMATORS: tuple[Method, ...] = (
    Method("HS", "Hunter-Schmidt", True, True, False, None,
           "Random effects; tau^2 = (Q_FE - k) / sum(1/vi) (kernel: lnsynth.pairwise.tau2.estimate_tau2).",
           _HUNTER_SCHMIDT + " " + _VIECHTBAUER2005),
    Method("HSk", "Hunter-Schmidt, small-sample corrected", True, True, False, None,
           "Random effects; tau^2 = (k/(k-p) Q_FE - k) / sum(1/vi) (kernel: lnsynth.pairwise.tau2.estimate_tau2).",
           _HUNTER_SCHMIDT + " Brannick MT, Potter SM, Benitez B, Morris SB (2019). Bias and precision of "
           "alternate estimators in meta-analysis: benefits of blending Schmidt-Hunter and Hedges approaches. "
           "Organ Res Methods 22:490-514."),
    Method("GENQ", "Generalised Q-statistic estimator", True, True, False, None,
           "Random effects; method of moments with user weights a_i, as rma(weights=, method='GENQ') "
           "(kernel: lnsynth.pairwise.tau2.estimate_tau2).",
           "DerSimonian R, Kacker R (2007). Random-effects model for meta-analysis of clinical trials: an update. "
           "Contemp Clin Trials 28:105-114."),
)
_BY_TAU2 = {m.code.upper(): m for m in TAU2_ESTIMATORS}


def tau2_estimators() -> tuple[str, ...]:
    """Codes of the further tau^2 estimators (``HS``, ``HSk``, ``GENQ``; :mod:`lnsynth.pairwise.tau2`)."""
    return tuple(m.code for m in TAU2_ESTIMATORS)


def tau2_estimator(code: str) -> Method:
    """The registry entry of one further tau^2 estimator (case-insensitive)."""
    return _BY_TAU2[_key(code, _BY_TAU2, "tau^2 estimator")]

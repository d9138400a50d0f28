"""Pairwise meta-analysis: batched inverse-variance engine matching metafor's rma().

Public API: :func:`meta_analysis`, :class:`MetaResult`, :class:`MetaBatchResult`,
and :func:`effect_sizes` (re-exported lazily from :mod:`lnsynth.effects`); meta-regression,
subgroups, small-study tests and GOSH/influence are re-exported from their modules, the
scipy.optimize-heavy ones (bias, regression, subgroup) lazily, so ``meta_analysis`` starts fast.
Model follow-ups (metafor ``confint``, ``anova``, ``fitstats``, ``residuals``, ``rstandard``,
``blup``, ``ranef``): :func:`tau2_conf_int`, :func:`anova`, :func:`fit_stats`, :func:`residuals`,
:func:`rstandard`, :func:`blup`, :func:`ranef`; :func:`breslow_day` (``rma.mh``'s BD/Tarone).
metafor's ``robust``, ``permutest``, ``rma.ls`` and the HS/HSk/GENQ estimators: :func:`robust`,
:func:`permutation_test`, :func:`location_scale`, :func:`meta_analysis_tau2` / :func:`estimate_tau2`.
"""
from .api import METHODS, TESTS, MetaAnalysisWarning, meta_analysis
from .results import DICT_KEYS, MetaBatchResult, MetaResult

# Submodules whose names equal their main function (``gosh``, ``influence``) must be imported
# eagerly: once a submodule is loaded, Python binds the package attribute to the module.  Both
# are light (numpy, scipy.special), so this costs little at start-up.
from .gosh import gosh  # noqa: E402
from .influence import baujat, cumulative, influence, leave_one_out  # noqa: E402
from .residuals import blup, ranef, residuals, rstandard  # noqa: E402
from .robust import robust  # noqa: E402  (cluster-robust CR1/CR2; numpy + scipy.special only)
from .location_scale import location_scale  # noqa: E402  (rma.ls; numpy + scipy.special at import)

# name -> (module, attribute): imported on first access (module ``__getattr__``)
_LAZY: dict[str, tuple[str, str]] = {
    "egger_test": ("lnsynth.pairwise.bias", "egger_test"),
    "fail_safe_n": ("lnsynth.pairwise.bias", "fail_safe_n"),
    "rank_test": ("lnsynth.pairwise.bias", "rank_test"),
    "trim_and_fill": ("lnsynth.pairwise.bias", "trim_and_fill"),
    "meta_regression": ("lnsynth.pairwise.regression", "meta_regression"),
    "subgroup_analysis": ("lnsynth.pairwise.subgroup", "subgroup_analysis"),
    "glmm_meta_analysis": ("lnsynth.pairwise.glmm", "glmm_meta_analysis"),
    "multilevel_meta_analysis": ("lnsynth.pairwise.multilevel", "multilevel_meta_analysis"),
    "selection_model": ("lnsynth.pairwise.selection", "selection_model"),
    "firth_meta_analysis": ("lnsynth.pairwise.firth", "firth_meta_analysis"),
    "GLMMResult": ("lnsynth.pairwise.glmm", "GLMMResult"),
    "anova": ("lnsynth.pairwise.modeltests", "anova"),
    "fit_stats": ("lnsynth.pairwise.modeltests", "fit_stats"),
    "tau2_conf_int": ("lnsynth.pairwise.confint", "tau2_conf_int"),
    "breslow_day": ("lnsynth.pairwise.mh", "breslow_day"),
    "permutation_test": ("lnsynth.pairwise.permutation", "permutation_test"),
    "meta_analysis_tau2": ("lnsynth.pairwise.tau2", "meta_analysis_tau2"),
    "estimate_tau2": ("lnsynth.pairwise.tau2", "estimate_tau2"),
}
_EAGER = ["gosh", "baujat", "cumulative", "influence", "leave_one_out", "blup", "ranef", "residuals", "rstandard",
          "robust", "location_scale"]

__all__ = ["meta_analysis", "effect_sizes", *_EAGER, *sorted(_LAZY), "MetaResult", "MetaBatchResult", "MetaAnalysisWarning",
           "DICT_KEYS", "METHODS", "TESTS"]


def __getattr__(name):
    if name == "effect_sizes":
        from lnsynth.effects import effect_sizes

        return effect_sizes
    if name in _LAZY:
        import importlib

        mod, attr = _LAZY[name]
        value = getattr(importlib.import_module(mod), attr)
        globals()[name] = value  # later look-ups skip __getattr__
        return value
    raise AttributeError(f"module 'lnsynth.pairwise' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))

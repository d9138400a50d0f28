"""Pairwise meta-analysis: batched inverse-variance engine matching metafor's rma().

Public API: :func:`meta_analysis`, :class:`MetaResult`, :class:`MetaBatchResult`,
and :func:`effect_sizes` (re-exported lazily from :mod:`lnsynth.effects`); meta-regression,
subgroups, influence, small-study tests and GOSH are re-exported lazily from their modules.
"""
from .api import METHODS, TESTS, MetaAnalysisWarning, meta_analysis
from .results import DICT_KEYS, MetaBatchResult, MetaResult

_LAZY = {
    "meta_regression": ("lnsynth.pairwise.regression", "meta_regression"),
    "subgroup_analysis": ("lnsynth.pairwise.subgroup", "subgroup_analysis"),
    "leave_one_out": ("lnsynth.pairwise.influence", "leave_one_out"),
    "cumulative": ("lnsynth.pairwise.influence", "cumulative"),
    "influence": ("lnsynth.pairwise.influence", "influence"),
    "baujat": ("lnsynth.pairwise.influence", "baujat"),
    "egger_test": ("lnsynth.pairwise.bias", "egger_test"),
    "rank_test": ("lnsynth.pairwise.bias", "rank_test"),
    "trim_and_fill": ("lnsynth.pairwise.bias", "trim_and_fill"),
    "fail_safe_n": ("lnsynth.pairwise.bias", "fail_safe_n"),
    "gosh": ("lnsynth.pairwise.gosh", "gosh"),
    "run_sensitivity": ("lnsynth.pairwise.sensitivity", "run_sensitivity"),
}


__all__ = ["meta_analysis", "effect_sizes", *sorted(_LAZY), "MetaResult", "MetaBatchResult", "MetaAnalysisWarning",
           "DICT_KEYS", "METHODS", "TESTS"]


def __getattr__(name):
    if name == "effect_sizes":
        from lnsynth.effects import effect_sizes

        return effect_sizes
    if name in _LAZY:
        import importlib

        mod, attr = _LAZY[name]
        return getattr(importlib.import_module(mod), attr)
    raise AttributeError(f"module 'lnsynth.pairwise' has no attribute {name!r}")

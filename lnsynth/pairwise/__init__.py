"""Pairwise meta-analysis: batched inverse-variance engine matching metafor's rma().

Public API: :func:`meta_analysis`, :class:`MetaResult`, :class:`MetaBatchResult`,
and :func:`effect_sizes` (re-exported lazily from :mod:`lnsynth.effects`); meta-regression,
subgroups, influence, small-study tests and GOSH are re-exported lazily from their modules.
"""
from .api import METHODS, TESTS, MetaAnalysisWarning, meta_analysis
from .results import DICT_KEYS, MetaBatchResult, MetaResult

# Submodules whose names equal their main function (``gosh``, ``influence``) must be imported
# eagerly: once a submodule is loaded, Python binds the package attribute to the module.
from .bias import egger_test, fail_safe_n, rank_test, trim_and_fill  # noqa: E402
from .gosh import gosh  # noqa: E402
from .influence import baujat, cumulative, influence, leave_one_out  # noqa: E402
from .regression import meta_regression  # noqa: E402
from .subgroup import subgroup_analysis  # noqa: E402

_LAZY: dict[str, tuple[str, str]] = {}
_EAGER = ["egger_test", "fail_safe_n", "rank_test", "trim_and_fill", "gosh", "baujat", "cumulative", "influence",
          "leave_one_out", "meta_regression", "subgroup_analysis"]

__all__ = ["meta_analysis", "effect_sizes", *_EAGER, *sorted(_LAZY), "MetaResult", "MetaBatchResult", "MetaAnalysisWarning",
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

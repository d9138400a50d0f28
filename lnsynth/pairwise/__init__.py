"""Pairwise meta-analysis: batched inverse-variance engine matching metafor's rma().

Public API: :func:`meta_analysis`, :class:`MetaResult`, :class:`MetaBatchResult`,
and :func:`effect_sizes` (re-exported lazily from :mod:`lnsynth.effects`).
"""
from .api import METHODS, TESTS, MetaAnalysisWarning, meta_analysis
from .results import DICT_KEYS, MetaBatchResult, MetaResult

__all__ = ["meta_analysis", "effect_sizes", "MetaResult", "MetaBatchResult", "MetaAnalysisWarning",
           "DICT_KEYS", "METHODS", "TESTS"]


def __getattr__(name):
    if name == "effect_sizes":
        from lnsynth.effects import effect_sizes

        return effect_sizes
    raise AttributeError(f"module 'lnsynth.pairwise' has no attribute {name!r}")

"""Network meta-analysis (contrast-based consistency model, FE and REML).

Public API
----------
network_meta_analysis : fit the model; returns :class:`NMAResult`.
NMAResult : frozen dataclass with relative effects, league table, P-scores,
    SUCRA, Q decomposition, design-by-treatment test and node-splitting.
"""

from .data import MEASURES, NetworkData, StudyContrasts, prepare
from .model import NMAResult, fit, network_meta_analysis
from .ranking import pscores, sucra

__all__ = [
    "MEASURES", "NMAResult", "NetworkData", "StudyContrasts", "fit", "network_meta_analysis",
    "prepare", "pscores", "sucra",
]

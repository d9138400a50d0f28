"""Network meta-analysis: contrast-based consistency model, fixed and random effects.

Public API
----------
network_meta_analysis(df, study=, treatment=, events=, n=, measure="OR", reference=, method="REML")
    Arm-level binary data (OR, RR, RD), arm-level continuous data
    (``mean=, sd=, n=``; MD, SMD) or contrast-level data (``yi=, vi=, treat1=,
    treat2=``, plus ``cov=`` for multi-arm studies).  Returns :class:`NMAResult`.
NMAResult
    Frozen dataclass: ``relative_effects()``, ``pairwise_effects()``,
    ``league_table()``, ``pscores()``, ``sucra()``, ``ranking()``,
    ``q_decomposition()``, ``design_by_treatment()``, ``node_split()``,
    ``summary()``, ``to_dict()``, ``to_frame()``; attributes ``tau2``,
    ``reference``, ``treatments``, ``estimate``, ``vcov``, ``Q``.

The model is the one metafor fits with ``rma.mv(yi, V, mods = X, intercept =
FALSE, random = ~ comp | study, rho = 1/2)``; see :mod:`lnsynth.network.model`
(fitting), :mod:`lnsynth.network.data` (input conventions, baseline arms,
zero-cell correction), :mod:`lnsynth.network.ranking` and
:mod:`lnsynth.network.inconsistency`.  Plots live in
:mod:`lnsynth.plots.network` (not imported here).

Example
-------
>>> res = network_meta_analysis(arms, study="study", treatment="arm", events="remission",
...                             n="n", measure="OR", reference="CYC", method="REML")
>>> res.relative_effects()          # log OR vs CYC
>>> res.ranking(small_values="bad")  # remission: larger is better
"""

from .data import MEASURES, NetworkData, StudyContrasts, prepare
from .inconsistency import design_by_treatment, node_split, q_decomposition
from .model import NMAResult, fit, network_meta_analysis
from .ranking import pscores, sucra

__all__ = [
    "MEASURES", "NMAResult", "NetworkData", "StudyContrasts", "design_by_treatment", "fit",
    "network_meta_analysis", "node_split", "prepare", "pscores", "q_decomposition", "sucra",
]

"""Network meta-analysis: contrast-based consistency model, fixed and random effects.

Public API
----------
network_meta_analysis(df, study=, treatment=, events=, n=, measure="OR", reference=, method="REML",
                      test="z")
    tau^2 by ``method`` = FE, REML, ML, PM or DL (``registry.methods("network")``);
    ``test`` = "z", "t" or "hk" (Hartung-Knapp).
    Arm-level binary data (OR, RR, RD), arm-level continuous data
    (``mean=, sd=, n=``; MD, SMD) or contrast-level data (``yi=, vi=, treat1=,
    treat2=``, plus ``cov=`` for multi-arm studies).  Returns :class:`NMAResult`.
NMAResult
    Frozen dataclass: ``relative_effects()``, ``pairwise_effects()``,
    ``league_table()``, ``pscores()``, ``sucra()``, ``ranking()``,
    ``q_decomposition()``, ``design_by_treatment()``, ``node_split()``,
    ``prediction_intervals()``, ``heterogeneity()`` (I^2 with CI), ``conf_int(level)``,
    ``summary()``, ``to_dict()``, ``to_frame()``; attributes ``tau2``,
    ``reference``, ``treatments``, ``estimate``, ``vcov``, ``Q``.

Inconsistency, evidence flow, ranking and small-study effects (all take an ``NMAResult``):
``design_by_treatment`` (random effects with the full design-by-treatment model's tau^2,
``tau2_within``), ``node_split`` (``method="back-calculation"`` or ``"exclusion"``),
``direct_evidence_proportions``, ``net_heat``, ``contribution_matrix`` / ``hat_matrix``,
``rank_probabilities`` / ``sucra_from_probabilities`` / ``cumulative_rank_probabilities``,
``comparison_adjusted_funnel``; ``network_meta_regression`` fits one study-level covariate.

Batched fits (bootstrap / simulation replicates): ``fit_batch(list_of_NetworkData)`` and
``fit_arrays(y, V, X, q)`` return :class:`NMABatchResult`; ``fit_design_by_treatment`` fits the
full design-by-treatment interaction model with its own tau^2.

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
from .contribution import ContributionMatrix, contribution_matrix, hat_matrix
from .funnel import AdjustedFunnel, comparison_adjusted_funnel
from .inconsistency import (NetHeat, design_by_treatment, direct_evidence_proportions, net_heat, node_split,
                            q_decomposition, tau2_within)
from .model import (NMABatchResult, NMAResult, fit, fit_arrays, fit_batch, fit_design_by_treatment,
                    heterogeneity_stats, network_meta_analysis)
from .ranking import (cumulative_rank_probabilities, mean_rank, pscores, rank_probabilities, sucra,
                      sucra_from_probabilities)
from .regression import NMRResult, network_meta_regression
from .bayes import BayesNMAResult, bayesian_nma  # NumPyro/JAX are imported only when a model is fitted

__all__ = [
    "MEASURES", "NMAResult", "NetworkData", "StudyContrasts", "design_by_treatment", "fit",
    "network_meta_analysis", "node_split", "prepare", "pscores", "q_decomposition", "sucra",
    "AdjustedFunnel", "ContributionMatrix", "NMRResult", "NetHeat", "comparison_adjusted_funnel",
    "contribution_matrix", "cumulative_rank_probabilities", "direct_evidence_proportions", "hat_matrix",
    "mean_rank", "net_heat", "network_meta_regression", "rank_probabilities", "sucra_from_probabilities",
    "tau2_within",
    "NMABatchResult", "fit_arrays", "fit_batch", "fit_design_by_treatment", "heterogeneity_stats",
    "BayesNMAResult", "bayesian_nma",
]

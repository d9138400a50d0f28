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
``cinema(res, rob, indirectness, roe=...)`` rates every estimate on CINeMA's six domains
(:mod:`lnsynth.network.cinema`).

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
>>> import pandas as pd
>>> arms = pd.DataFrame({"study": ["s1", "s1", "s2", "s2", "s3", "s3"],
...                      "arm": ["CYC", "TAC", "CYC", "MMF", "TAC", "MMF"],
...                      "remission": [10, 18, 12, 15, 20, 16], "n": [40, 40, 50, 50, 45, 45]})
>>> res = network_meta_analysis(arms, study="study", treatment="arm", events="remission",
...                             n="n", measure="OR", reference="CYC", method="REML")
>>> res.relative_effects()[["treatment", "estimate", "ci_low", "ci_high"]].round(2)  # log OR vs CYC
  treatment  estimate  ci_low  ci_high
0       MMF      0.38   -0.35     1.11
1       TAC      0.82    0.06     1.57
>>> res.pscores(small_values="bad").round(2).to_dict()  # remission: larger is better
{'CYC': 0.09, 'MMF': 0.48, 'TAC': 0.93}
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
from .cinema import CinemaResult, cinema, roe_from_ratio, study_contributions
from .rare import RareNMAResult, netmetabin  # noqa: E402  (MH / NCH rare-event NMA, netmeta netmetabin)
from .component import CNMAResult, combination_matrix, component_nma, discomb, netcomb  # component NMA

__all__ = [
    "MEASURES", "NMAResult", "NetworkData", "StudyContrasts", "design_by_treatment", "fit",
    "network_meta_analysis", "node_split", "prepare", "pscores", "q_decomposition", "sucra",
    "AdjustedFunnel", "ContributionMatrix", "NMRResult", "NetHeat", "comparison_adjusted_funnel",
    "contribution_matrix", "cumulative_rank_probabilities", "direct_evidence_proportions", "hat_matrix",
    "mean_rank", "net_heat", "network_meta_regression", "rank_probabilities", "sucra_from_probabilities",
    "tau2_within",
    "NMABatchResult", "fit_arrays", "fit_batch", "fit_design_by_treatment", "heterogeneity_stats",
    "BayesNMAResult", "bayesian_nma",
    "CinemaResult", "cinema", "roe_from_ratio", "study_contributions",
    "RareNMAResult", "netmetabin",
    "CNMAResult", "combination_matrix", "component_nma", "discomb", "netcomb",
]

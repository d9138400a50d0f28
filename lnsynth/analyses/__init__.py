"""Analyses of the stored evidence: the engines applied to the evidence base.

- :mod:`lnsynth.analyses.network_data`: arm-level network data sets from the trials;
- :mod:`lnsynth.analyses.rederive`: the review's syntheses (Hannah 2016, Palmer 2017) re-derived.
"""

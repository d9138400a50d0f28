"""The one application layer between the evidence base and the engines.

- :mod:`lnsynth.analyses.questions`: the catalogue of clinical questions (PICO with the relation
  between intervention and comparator: add-on, substitution, multitarget, maintenance);
- :mod:`lnsynth.analyses.answer`: one pipeline per question (selection with reasons, effect sizes,
  model, certainty); the CLI, the report and the web app all call :func:`~lnsynth.analyses.answer.answer`;
- :mod:`lnsynth.analyses.grade`: GRADE certainty (five domains) and absolute effects;
- :mod:`lnsynth.analyses.network_data`: arm-level network data sets from the trials;
- :mod:`lnsynth.analyses.rederive`: the review's syntheses (Hannah 2016, Palmer 2017) re-derived.
"""

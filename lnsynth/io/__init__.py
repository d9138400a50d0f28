"""Read a researcher's own data: CSV, TSV, Excel ``.xlsx``/``.xls`` and RevMan 5 ``.rm5`` files.

:func:`read_table` returns a :class:`TableData` that gives the inputs of
:func:`lnsynth.effects.effect_sizes` (and fits :func:`lnsynth.pairwise.meta_analysis`,
subgroup analyses, meta-regressions and network meta-analyses) from the same numbers.

Column names follow metafor (``escalc``) by default, matched case-insensitively:

==============  ====================================================================
layout          columns
==============  ====================================================================
binary          ``study, ai, n1i, ci, n2i`` (or ``bi``/``di`` non-events instead of
                ``n1i``/``n2i``; or ``events_treat, n_treat, events_ctrl, n_ctrl``)
continuous      ``study, m1i, sd1i, n1i, m2i, sd2i, n2i`` (or ``mean_treat, ...``)
generic         ``study, yi, vi`` or ``study, yi, sei`` (model scale: log for ratios)
proportion      ``study, xi, ni`` (or ``events, n``)
incidence       ``study, x1i, t1i, x2i, t2i`` (IRR) or ``study, xi, ti`` (IR)
arms (NMA)      ``study, treatment, events, n`` or ``study, treatment, mean, sd, n``
==============  ====================================================================

``columns={"study": "Trial", "ai": "ev_trt", ...}`` maps fields (metafor or lnsynth
names) to the file's own headers.  Every problem with the file raises a
:class:`DataError` naming the file, the row (1-based as a spreadsheet shows it, the
header being row 1) and the column; nothing is turned into NaN silently and no row is
left out without a :class:`DataWarning` saying which and why.

The package: :mod:`.readers` (file formats to cells), :mod:`.tables` (cells to :class:`TableData`,
:func:`read_table`) and :mod:`.summaries` (a fit's JSON, markdown and CSV summary for the command line).
"""
from __future__ import annotations

from .readers import FIELD_ALIASES, LAYOUTS, DataError, DataWarning, parse_columns
from .summaries import (json_safe, pairwise_summary, regression_summary, subgroup_summary, summary_csv,
                        summary_markdown)
from .tables import TableData, read_table

__all__ = ["DataError", "DataWarning", "TableData", "read_table", "parse_columns", "FIELD_ALIASES", "LAYOUTS",
           "json_safe", "pairwise_summary", "subgroup_summary", "regression_summary", "summary_markdown",
           "summary_csv"]

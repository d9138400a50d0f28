"""Shared plotting style: Okabe-Ito colour-blind-safe palette and one rc style.

Computation modules never import this package; plotting is opt-in.
"""
from __future__ import annotations

from contextlib import contextmanager

import matplotlib
import matplotlib.pyplot as plt

# Okabe & Ito (2008) colour-universal-design palette
OKABE_ITO = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky_blue": "#56B4E9",
    "bluish_green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish_purple": "#CC79A7",
}
PALETTE = tuple(OKABE_ITO.values())[1:] + (OKABE_ITO["black"],)

STUDY_COLOR = OKABE_ITO["blue"]
POOLED_COLOR = OKABE_ITO["vermillion"]
PI_COLOR = OKABE_ITO["orange"]
NULL_COLOR = "#555555"

RC = {
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.spines.left": False,
    "axes.prop_cycle": matplotlib.cycler(color=list(PALETTE)),
    "savefig.dpi": 150,
    "figure.dpi": 100,
}


@contextmanager
def lnsynth_style():
    """Context manager applying the lnsynth rc style."""
    with plt.rc_context(RC):
        yield

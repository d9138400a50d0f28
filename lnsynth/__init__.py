"""lnsynth: evidence on calcineurin inhibitors in lupus nephritis.

lnsynth summarises published evidence and simulates hypotheses; it does not
prescribe. Nothing it prints is treatment advice.
"""

__version__ = "0.1.0"

DISCLAIMER = (
    "lnsynth summarises published evidence and simulates hypotheses; it does not "
    "prescribe. Its output is not medical advice."
)

"""Mechanistic simulator of calcineurin inhibition in lupus nephritis (hypothesis-generating simulation,
not treatment advice).

Modules: :mod:`.pk`, :mod:`.pd`, :mod:`.immune`, :mod:`.kidney` (equations), :mod:`.engine` (vectorised
Numba kernel, common random numbers), :mod:`.protocols` (virtual trials linked to stored trials),
:mod:`.endpoints`, :mod:`.calibrate` (simulation-based likelihood, importance sampling),
:mod:`.validate` (proper scoring of leave-one-trial-out and external predictions), :mod:`.null` (the
meta-analytic null it is scored against), :mod:`.questions` (the review's four questions, with envelopes over
structures and priors), :mod:`.sweep` (Dask fan-out). Parameters and provenance: ``params/model.yaml``;
frozen validation protocol: ``params/validation.yaml``; changes: ``params/CHANGELOG.md``.
"""

from .calibrate import calibrate, targets
from .core import run_protocol, simulate_arm
from .params import check_provenance, default_params, provenance_frame
from .protocols import load_protocols, trial_protocols
from .questions import (
    QuestionResult,
    answer,
    question_flares_after_taper,
    question_hard_endpoint_power,
    question_nonimmune_share,
    question_remission_horizon,
)
from .sweep import sweep
from .validate import (compare, external_bank, prior_posterior_widths, scorecard, validate_loo, validate_rates,
                       validation_summary)

__all__ = [
    "calibrate", "targets", "run_protocol", "simulate_arm", "check_provenance", "default_params",
    "provenance_frame", "load_protocols", "trial_protocols", "QuestionResult", "answer",
    "question_flares_after_taper", "question_hard_endpoint_power", "question_nonimmune_share",
    "question_remission_horizon", "sweep", "validate_loo", "validation_summary", "validate_rates",
    "compare", "external_bank", "prior_posterior_widths", "scorecard",
]

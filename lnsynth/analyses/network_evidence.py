"""The evidence network of the stored trials, assembled once.

:func:`evidence_network` selects the arm-level data of one outcome
(:func:`lnsynth.analyses.network_data.arm_level_data`) and fits the contrast-based network
meta-analysis (:func:`lnsynth.network.network_meta_analysis`).  The report, ``lnsynth nma``,
the web network page, :func:`lnsynth.analyses.rederive.rederive`, CINeMA and the threshold
analysis all call it, so they analyse the same network the same way.  Warnings raised while
selecting or fitting are recorded on the result (never silenced wholesale); each caller decides
whether to show them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional

from .network_data import REFERENCE_NODE, ArmData, arm_level_data

__all__ = ["EvidenceNetwork", "evidence_network"]


@dataclass
class EvidenceNetwork:
    """Arm-level data, fit and what was left out, for one outcome.

    Attributes
    ----------
    data : ArmData
        The selected arms (``data.frame`` has ``study``, ``treatment``, ``events``, ``n``...).
    fit : NMAResult or None
        The fitted network; ``None`` when it was not fitted (``fit=False``, too few studies,
        reference missing) or the model raised (``error`` says why).
    excluded : list of (study, reason)
        Studies left out of the network with the reason.
    warnings : list of str
        Messages of the warnings raised while selecting the data (``data_warnings``) and
        fitting (``fit_warnings``), in order, de-duplicated.
    error : str or None
        Why there is no fit, when there is none.
    """

    data: ArmData
    fit: Any = None
    excluded: list[tuple[str, str]] = field(default_factory=list)
    data_warnings: list[str] = field(default_factory=list)
    fit_warnings: list[str] = field(default_factory=list)
    error: Optional[str] = None

    @property
    def warnings(self) -> list[str]:
        return list(dict.fromkeys(self.data_warnings + self.fit_warnings))

    @property
    def notes(self) -> list[str]:
        return list(self.data.notes)

    @property
    def converged(self) -> Optional[bool]:
        """The fit's ``converged`` flag when the model exposes one, else ``None``."""
        c = getattr(self.fit, "converged", None)
        return None if c is None else bool(c)

    def __iter__(self) -> Iterator[Any]:
        """Unpack as ``data, fit, excluded``."""
        return iter((self.data, self.fit, self.excluded))


def _messages(caught: list[warnings.WarningMessage]) -> list[str]:
    return list(dict.fromkeys(str(w.message) for w in caught))


def evidence_network(
    ev: Any,
    outcome: str,
    *,
    measure: str = "OR",
    method: str = "REML",
    approximate: bool = True,
    nodes: Optional[dict[str, str]] = None,
    reference: str = REFERENCE_NODE,
    fit: bool = True,
    min_studies: int = 2,
    raise_errors: bool = False,
) -> EvidenceNetwork:
    """Select and fit the network of the stored trials for ``outcome``.

    Parameters
    ----------
    ev : EvidenceBase
    outcome : str
        Endpoint, e.g. ``"complete remission"``.
    measure, method : str
        Network measure (default OR) and model (default REML).
    approximate : bool
        Passed to :func:`~lnsynth.analyses.network_data.arm_level_data`.
    nodes : dict, optional
        Regimen code -> node (default the induction classes).
    reference : str
        Reference node (default IV cyclophosphamide).
    fit : bool
        Fit the model (default) or return the data only.
    min_studies : int
        Fewer studies than this: no fit (``error`` says so).  The reference must also be present
        when ``min_studies >= 2``.
    raise_errors : bool
        Re-raise a ``ValueError`` from the model instead of recording it in ``error``.

    Returns
    -------
    EvidenceNetwork
        Unpacks as ``data, fit, excluded``; also carries the warnings and the error.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = arm_level_data(ev, outcome, nodes=nodes, approximate=approximate, warn=True, reference=reference)
    out = EvidenceNetwork(data=data, excluded=list(data.excluded), data_warnings=_messages(caught))
    if not fit:
        return out
    if data.k < min_studies:
        out.error = f"fewer than two studies with usable counts for {outcome}"
        return out
    if min_studies >= 2 and reference not in set(data.frame["treatment"]):
        out.error = f"the reference {reference} has no arm with usable counts for {outcome}"
        return out
    from lnsynth.network import network_meta_analysis

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            out.fit = network_meta_analysis(data.frame, study="study", treatment="treatment", events="events", n="n",
                                            measure=measure, reference=reference, method=method)
        except ValueError as exc:
            if raise_errors:
                raise
            out.error = str(exc)
    out.fit_warnings = _messages(caught)
    return out

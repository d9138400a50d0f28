"""Arm-level data sets for network meta-analysis built from the evidence base.

Arms are mapped to network nodes (regimen groups). Several arms of one study in the
same node (e.g. the two voclosporin doses of AURA-LV) are combined by summing events
and n. Studies left out are announced with a warning naming them and the reason.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Optional, Union

import pandas as pd

from lnsynth.analyses.selection import (
    SelectionWarning,
    approximate_counts,
    choose_timepoint,
    missing_counts_reason,
    one_record_per_arm,
)

#: Induction-regimen nodes, as Palmer 2017 groups them (multitarget; CNI alone; MMF; IV cyclophosphamide).
INDUCTION_NODES: dict[str, str] = {
    "TAC+MMF": "Multitarget (TAC+MMF)",
    "TAC": "CNI alone",
    "CSA": "CNI alone",
    "VCS23.7+MMF": "Voclosporin+MMF",
    "VCS39.5+MMF": "Voclosporin+MMF",
    "MMF": "MMF",
    "PBO+MMF": "MMF",
    "MPS": "MMF",
    "IVCYC": "IV cyclophosphamide",
    "IVCYC-LOW": "IV cyclophosphamide",
    "IVCYC-HIGH": "IV cyclophosphamide",
    "CYC": "IV cyclophosphamide",
    "PRED": "Corticosteroids alone",
    "TAC+AZA": "Modified multitarget (TAC+AZA)",
    "OBI+MMF": "Obinutuzumab+MMF",
    "BEL+SOC": "Belimumab+standard therapy",
    "PBO+SOC": "Standard therapy (MMF or CYC-AZA)",
}
REFERENCE_NODE = "IV cyclophosphamide"


@dataclass(frozen=True)
class ArmData:
    outcome: str
    frame: pd.DataFrame  # study, label, treatment, events, n, derived, approximate, arms, timepoint_weeks
    excluded: tuple[tuple[str, str], ...]
    notes: tuple[str, ...]

    @property
    def k(self) -> int:
        return self.frame["study"].nunique() if len(self.frame) else 0

    @property
    def patients(self) -> int:
        return int(self.frame["n"].sum()) if len(self.frame) else 0


def arm_level_data(
    ev,
    outcome: str,
    nodes: Optional[dict[str, str]] = None,
    phase: Optional[str] = None,
    timepoint: Union[str, float] = "latest",
    max_weeks: Optional[float] = None,
    approximate: bool = False,
    include_route_unstated: bool = True,
    warn: bool = True,
    reference: Optional[str] = REFERENCE_NODE,
) -> ArmData:
    """One row per (study, node) with events and n for ``outcome``.

    Parameters
    ----------
    nodes : regimen code -> node name (default :data:`INDUCTION_NODES`); arms whose
        regimen is not mapped are ignored.
    phase : keep results of this phase only (default ``None``: all; the regimen nodes already
        leave maintenance-only comparators such as azathioprine out).
    timepoint : ``"latest"``, ``"earliest"`` or weeks (closest), applied per study to the
        timepoints reported for every included arm.
    approximate : use ``round(pct/100*n)`` where a printed percentage is reproduced by no
        integer count (flagged ``approximate``); otherwise such studies are left out.
    include_route_unstated : map ``CYC`` (cyclophosphamide, route not stated in the
        source) to the IV cyclophosphamide node (flagged in the notes).
    reference : the node the network is analysed against (default IV cyclophosphamide, chosen
        by the analysis, never by sort order); trials not connected to it are left out with
        that reason.

    Only randomised trials enter; one record per arm is used when a trial's result is stored from
    several documents (:func:`lnsynth.analyses.selection.one_record_per_arm`).
    """
    nodes = dict(INDUCTION_NODES if nodes is None else nodes)
    if not include_route_unstated:
        nodes.pop("CYC", None)
    of = ev.outcomes_frame()
    of = of[(of["endpoint"] == outcome) & of["regimen"].isin(nodes)]
    if phase is not None:
        of = of[of["phase"].fillna("induction").str.startswith(phase)]
    if max_weeks is not None:
        of = of[of["timepoint_weeks"].isna() | (of["timepoint_weeks"] <= max_weeks)]
    rows, excluded, notes = [], [], []
    randomised = {st.id: st.randomised for st in ev.studies}
    for sid, g in of.groupby("study", sort=False):
        g = g.assign(node=g["regimen"].map(nodes))
        if g["node"].nunique() < 2:
            continue
        if not randomised.get(sid, True):
            excluded.append((sid, "not randomised"))
            continue
        g, set_aside = one_record_per_arm(g)
        notes.extend(f"{g['study_label'].iloc[0]}: {x}" for x in set_aside)
        # timepoints reported for every node of the study
        per_node = [set(x["timepoint_weeks"].dropna()) for _, x in g.groupby("node")]
        common = sorted(set.intersection(*per_node)) if all(per_node) else []
        if common:
            tp = choose_timepoint(common, timepoint)
            g = g[g["timepoint_weeks"] == tp]
        elif any(per_node):
            excluded.append((sid, "arms reported at different timepoints"))
            continue
        else:
            tp = None
        approx = pd.Series(False, index=g.index)
        if approximate:
            g, approx = approximate_counts(g)
        why = missing_counts_reason(g)
        if why is not None:
            excluded.append((sid, f"no events/n: {why}"))
            continue
        if (g["regimen"] == "CYC").any():
            notes.append(f"{g['study_label'].iloc[0]}: cyclophosphamide route not stated in the source; counted as IV cyclophosphamide")
        for node, x in g.groupby("node", sort=False):
            rows.append(
                {
                    "study": sid,
                    "label": x["study_label"].iloc[0],
                    "treatment": node,
                    "events": int(x["events"].sum()),
                    "n": int(x["n"].sum()),
                    "derived": bool(x["events_derived"].fillna(False).any() or x["n_derived"].fillna(False).any()),
                    "approximate": bool(approx[x.index].any()),
                    "arms": " + ".join(x["arm_label"]),
                    "timepoint_weeks": tp,
                }
            )
            if len(x) > 1:
                notes.append(f"{x['study_label'].iloc[0]}: arms {', '.join(x['arm_label'])} combined as {node}")
            if approx[x.index].any():
                notes.append(f"{x['study_label'].iloc[0]}: {node} count approximated (printed percentage reproduced by no integer count)")
    if warn:
        for sid, why in excluded:
            warnings.warn(f"study {sid!r} left out of the {outcome} network: {why}", SelectionWarning, stacklevel=2)
    frame = pd.DataFrame(rows, columns=["study", "label", "treatment", "events", "n", "derived", "approximate", "arms", "timepoint_weeks"])
    if reference is not None and len(frame):
        frame, gone = _connected_to(frame, reference)
        excluded.extend(gone)
        if warn:
            for sid, why in gone:
                warnings.warn(f"study {sid!r} left out of the {outcome} network: {why}", SelectionWarning, stacklevel=2)
    return ArmData(outcome, frame, tuple(excluded), tuple(notes))


def _connected_to(frame: pd.DataFrame, reference: str) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """Keep the trials whose nodes connect to ``reference``; the others are left out with the reason."""
    import networkx as nx

    g = nx.Graph()
    for sid, x in frame.groupby("study", sort=False):
        t = list(x["treatment"])
        g.add_nodes_from(t)
        g.add_edges_from((a, b) for i, a in enumerate(t) for b in t[i + 1:])
    if reference not in g:
        return frame.iloc[0:0], [(sid, f"no trial reaches the reference {reference!r}") for sid in frame["study"].unique()]
    comp = nx.node_connected_component(g, reference)
    keep = frame.groupby("study")["treatment"].transform(lambda t: t.isin(comp).all())
    gone = [(sid, f"its arms ({', '.join(x['treatment'])}) are not connected to {reference}")
            for sid, x in frame[~keep].groupby("study", sort=False)]
    return frame[keep].reset_index(drop=True), gone

"""Selecting two-group comparisons from the evidence base for pairwise meta-analysis.

:func:`pairwise_data` picks, for one endpoint, every study that has an arm matching
the treatment specification and an arm matching the control specification, with
events and n. Rows that cannot be used are not dropped silently: each exclusion is
recorded with its reason and announced with a warning.

Regimen specifications are comma-separated lists of regimen codes (``TAC+MMF``) or
regimen classes (``CNI``, ``CNI+MMF``, ``MMF``, ``IVCYC``...); an arm matches when its
code or class is listed. ``CNI-any`` matches every arm containing a calcineurin
inhibitor (classes ``CNI`` and ``CNI+MMF``).
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass, field
from typing import Optional, Union

import pandas as pd

from lnsynth.evidence.schema import REGIMEN_CLASS

ALIASES = {
    "CNI-any": {"CNI", "CNI+MMF", "CNI+AZA"},
    "non-CNI": set(REGIMEN_CLASS.values()) - {"CNI", "CNI+MMF", "CNI+AZA"},
}


class SelectionWarning(UserWarning):
    """A study was left out of an analysis; the message says which and why."""


def _spec(spec: Union[str, list[str], set[str]]) -> set[str]:
    items = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else list(spec)
    out: set[str] = set()
    for it in items:
        out |= ALIASES.get(it, {it})
    known = set(REGIMEN_CLASS) | set(REGIMEN_CLASS.values())
    unknown = out - known
    if unknown:
        raise ValueError(f"unknown regimen code or class {sorted(unknown)}; known codes: {sorted(REGIMEN_CLASS)}, classes: {sorted(set(REGIMEN_CLASS.values()))}")
    return out


def _codes(spec: set[str]) -> set[str]:
    return {code for code, cls in REGIMEN_CLASS.items() if code in spec or cls in spec}


def _check_overlap(tspec: set[str], cspec: set[str]) -> None:
    both = _codes(tspec) & _codes(cspec)
    if both:
        raise ValueError(f"treatment and control specifications overlap: both match regimen(s) {sorted(both)}")


def _matches(row, spec: set[str]) -> bool:
    return row["regimen"] in spec or row["regimen_class"] in spec


@dataclass(frozen=True)
class PairwiseData:
    """Study-level two-group counts for one endpoint, with what was left out and why."""

    outcome: str
    treatment: str
    control: str
    frame: pd.DataFrame
    excluded: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    set_aside: tuple[tuple[str, str], ...] = field(default_factory=tuple)  # (study, duplicate record not used)

    @property
    def k(self) -> int:
        return len(self.frame)

    def counts(self) -> dict:
        f = self.frame
        return dict(
            events_treat=f["events_treat"].to_numpy(),
            n_treat=f["n_treat"].to_numpy(),
            events_ctrl=f["events_ctrl"].to_numpy(),
            n_ctrl=f["n_ctrl"].to_numpy(),
        )

    @property
    def labels(self) -> list[str]:
        return self.frame["label"].tolist()

    @property
    def patients(self) -> int:
        return int(self.frame["n_treat"].sum() + self.frame["n_ctrl"].sum()) if self.k else 0

    def notes(self) -> list[str]:
        out = []
        for _, r in self.frame.iterrows():
            bits = []
            if r["derived"]:
                bits.append("counts derived from printed percentages/arm sizes")
            if r["ambiguous"]:
                bits.append(f"several counts fit the printed percentage: {r['candidates']}")
            if r.get("approximate", False):
                bits.append("approximate count: printed percentage reproduced by no integer count, round(pct/100*n) used")
            if r["combined_arms"] > 1:
                bits.append(f"{r['combined_arms']} treatment arms combined")
            if bits:
                out.append(f"{r['label']}: " + "; ".join(bits))
        out += [f"{s}: excluded ({why})" for s, why in self.excluded]
        return out


def choose_timepoint(tps: list[float], timepoint: Union[str, float]) -> float:
    """Pick one of a study's sorted timepoints: ``"latest"``, ``"earliest"`` or the closest to a number of weeks."""
    if timepoint == "latest":
        return tps[-1]
    if timepoint == "earliest":
        return tps[0]
    return min(tps, key=lambda w: abs(w - float(timepoint)))


#: What the one count policy says (shown on every answer; benefits and harms alike).
COUNT_POLICY = ("one count policy for benefits and harms: a record that prints a percentage but no count gets "
                "round(pct/100*n) on its own denominator (else the arm size); flagged derived when that count "
                "reproduces the printed percentage, approximate when no integer count does; a cumulative incidence "
                "(time-to-event estimate) and several percentage-only sub-types of one endpoint in one arm are never "
                "converted")

_TIME_TO_EVENT = ("cumulative incidence", "kaplan", "probability of", "time-to-event")


def _time_to_event(text) -> bool:
    t = str(text or "").lower()
    return any(w in t for w in _TIME_TO_EVENT)


def approximate_counts(df: pd.DataFrame, n_col: str = "n", text_col: str = "label") -> tuple[pd.DataFrame, pd.Series]:
    """The one count policy (:data:`COUNT_POLICY`), for outcome and adverse-event rows alike.

    A row with a printed percentage, no count and a denominator (``n_col``) gets
    ``round(pct/100*n)``: ``events_derived`` is set; the returned mask marks the rows where no
    integer count reproduces the printed percentage (``approximate``). Rows whose wording
    (``text_col``) says the percentage is a time-to-event estimate (cumulative incidence,
    Kaplan-Meier) are left without a count. Returns the filled copy and the approximate mask.
    """
    from lnsynth.evidence.derive import count_candidates, nearest_count

    df = df.copy()
    n = df[n_col] if n_col in df else pd.Series(float("nan"), index=df.index)
    text = df[text_col] if text_col in df else pd.Series("", index=df.index)
    m = df["events"].isna() & n.notna() & df["percent"].notna()
    m &= pd.Series([not _time_to_event(t) for t in text], index=df.index)
    approx = pd.Series(False, index=df.index)
    if m.any():
        vals, flags = [], []
        for p, nn in zip(df.loc[m, "percent"], n[m]):
            c = nearest_count(p, int(nn))
            vals.append(c)
            flags.append(c not in count_candidates(p, int(nn)))
        df.loc[m, "events"] = vals
        df.loc[m, "events_derived"] = True
        if n_col != "n" and "n" in df:
            df.loc[m & df["n"].isna(), "n"] = n[m & df["n"].isna()]
        approx.loc[m] = flags
    return df, approx


def _subtypes(df: pd.DataFrame, text_col: str = "label") -> pd.Series:
    """Percentage-only rows that share an arm (and timepoint) with another percentage-only row of a
    different wording and a different percentage: sub-types of one endpoint (proteinuric and nephritic
    flares) that no count policy may turn into the endpoint (a patient can be in both). The same
    percentage under two wordings is one result stored from two documents, not sub-types."""
    key = ["arm"] + (["timepoint_weeks"] if "timepoint_weeks" in df else [])
    po = df["events"].isna() & df["percent"].notna()
    out = pd.Series(False, index=df.index)
    if not po.any():
        return out
    d = df[po].assign(_tp=df.loc[po, key[-1]].fillna(-1.0) if len(key) > 1 else 0)
    for _, g in d.groupby(["arm", "_tp"]):
        if g[text_col].fillna("").nunique() > 1 and g["percent"].nunique() > 1:
            out.loc[g.index] = True
    return out


def _policy(df: pd.DataFrame, n_col: str = "n", text_col: str = "label") -> tuple[pd.DataFrame, pd.Series]:
    """:func:`approximate_counts` on the rows that are not sub-types (see :func:`_subtypes`)."""
    keep = ~df["subtype"].fillna(False).astype(bool) if "subtype" in df else pd.Series(True, index=df.index)
    if keep.all():
        return approximate_counts(df, n_col, text_col)
    filled, m = approximate_counts(df[keep], n_col, text_col)
    out = df.copy()
    out.loc[filled.index, filled.columns] = filled
    mask = pd.Series(False, index=df.index)
    mask.loc[m.index] = m
    return out, mask


def missing_counts_reason(df: pd.DataFrame) -> Optional[str]:
    """Why rows of ``df`` have no events/n (``None`` when all have both)."""
    bad = df[df["events"].isna() | df["n"].isna()]
    if bad.empty:
        return None
    from lnsynth.evidence.derive import count_candidates

    def why(r) -> str:
        if pd.isna(r.n):
            return "arm size not reported"
        if pd.isna(r.percent):
            return "no count or percentage"
        if bool(getattr(r, "subtype", False)):
            return f"{r.percent}% is one of several sub-types of the endpoint reported for this arm (no count of the endpoint itself)"
        if _time_to_event(getattr(r, "label", "")):
            return f"{r.percent}% is a cumulative incidence (time-to-event estimate), not a count of {int(r.n)}"
        if count_candidates(r.percent, int(r.n)):
            return f"{r.percent}% stored without a count (its denominator is not stated in the source)"
        return f"{r.percent}% of {int(r.n)} is reproduced by no count"

    return "; ".join(f"arm {r.arm_label!r}: " + why(r) for r in bad.itertuples())


def one_record_per_arm(df: pd.DataFrame, key: tuple[str, ...] = ("arm", "timepoint_weeks")) -> tuple[pd.DataFrame, list[str]]:
    """Keep one record per arm (and timepoint) when a trial's result is stored more than once.

    A trial reported by several documents (the review, the primary article, registry results, a
    news story) or under several definitions (two response criteria in one table) has several
    records for one arm at one timepoint; summing them would double the arm.  The record kept is,
    in order: from the best-ranked source (:data:`lnsynth.evidence.load.SOURCE_RANK`: article,
    registry, abstract, conference abstract, review, secondary summary, news), flagged as the
    publication's primary endpoint, with usable counts, printed rather than derived, first in the file.
    Returns the reduced frame and one note per record set aside.
    """
    if df.empty:
        return df, []
    d = df.assign(
        _tp=df["timepoint_weeks"].fillna(-1.0) if "timepoint_weeks" in df else -1.0,
        _rank=df["source_rank"] if "source_rank" in df else 0,
        _primary=(~df["primary"].fillna(False).astype(bool)).astype(int) if "primary" in df else 1,
        _usable=(df["events"].isna() | df["n"].isna()).astype(int) if "n" in df else df["events"].isna().astype(int),
        _derived=df["events_derived"].fillna(False).astype(bool).astype(int) if "events_derived" in df else 0,
        _order=range(len(df)),
    )
    k = [c if c != "timepoint_weeks" else "_tp" for c in key]
    d = d.sort_values(k + ["_rank", "_primary", "_usable", "_derived", "_order"])
    keep = ~d.duplicated(subset=k, keep="first")
    notes = []
    kept = d[keep].set_index(k)
    for _, r in d[~keep].iterrows():
        idx = tuple(r[c] for c in k) if len(k) > 1 else r[k[0]]
        w = kept.loc[idx]
        if isinstance(w, pd.DataFrame):
            w = w.iloc[0]
        rid = r.get("outcome_id", None) if "outcome_id" in r else r.get("ae_id", None)
        wid = w.get("outcome_id", None) if "outcome_id" in w else w.get("ae_id", None)
        notes.append(f"arm {r['arm_label']!r}: record {rid} ({r.get('source', None)}) set aside; "
                     f"{wid} ({w.get('source', None)}) used for the same arm and timepoint")
    out = d[keep].sort_values("_order").drop(columns=["_tp", "_rank", "_primary", "_usable", "_derived", "_order"])
    return out, notes


def _totals(df: pd.DataFrame) -> tuple:
    """Every total event count the side's arms admit (candidate counts per arm, summed)."""
    per_arm = [r.events_candidates if isinstance(r.events_candidates, tuple) and len(r.events_candidates) else (int(r.events),) for r in df.itertuples()]
    return tuple(sorted({sum(x) for x in itertools.product(*per_arm)}))


def adverse_event_data(
    ev,
    category: str,
    treatment: Union[str, list[str]],
    control: Union[str, list[str]],
    warn: bool = True,
    approximate: bool = False,
    allow_nonrandomised: bool = False,
    periods: Optional[tuple[Optional[str], ...]] = None,
) -> PairwiseData:
    """Two-group adverse-event counts for one event ``category`` (e.g. ``"death"``).

    Within a study, the event wording reported for *both* sides is used (the review often
    gives an event for the CNI arm only, in Table 2, and for both arms in the text); the
    denominator is the record's own when printed, else the arm size. Studies reporting
    the category for one side only are not comparisons and are left out with that reason;
    studies whose counts are incomplete are left out with a warning.

    ``approximate`` applies the same count policy as efficacy (:data:`COUNT_POLICY`): a
    percentage without a count becomes ``round(pct/100*n)`` on the record's denominator (else
    the arm size), flagged. ``periods`` keeps only records of these periods (``None`` = not stated).
    """
    tspec, cspec = _spec(treatment), _spec(control)
    _check_overlap(tspec, cspec)
    af = ev.adverse_events_frame()
    if af.empty or category not in set(af["category"]):
        raise ValueError(f"no adverse-event category {category!r}; available: {sorted(set(af['category'])) if len(af) else []}")
    af = af[af["category"] == category]
    if periods is not None:
        af = af[af["period"].isin([x for x in periods if x]) | (af["period"].isna() & (None in periods))]
    af = af.assign(regimen_class=af["regimen"].map(REGIMEN_CLASS), wording=af["event"].str.lower().str.strip())
    rows, excluded, set_aside = [], [], []
    randomised = {s.id: s.randomised for s in ev.studies}
    for sid, g in af.groupby("study", sort=False):
        t = g[g.apply(lambda r: _matches(r, tspec), axis=1)]
        c = g[g.apply(lambda r: _matches(r, cspec), axis=1)]
        if not t.empty and not c.empty and not randomised.get(sid, True) and not allow_nonrandomised:
            excluded.append((sid, "not randomised (arms are not randomised groups)"))
            continue
        common = sorted(set(t["wording"]) & set(c["wording"]))
        if t.empty and c.empty:
            continue
        if t.empty or c.empty:
            side_ = "treatment" if c.empty else "control"
            excluded.append((sid, f"{category} reported for the {side_} arm(s) only ({', '.join(sorted(set((t if c.empty else c)['arm_label'])))}): not a comparison"))
            continue
        if not common and len(set(t["wording"])) == 1 and len(set(c["wording"])) == 1:
            # one wording per side, one the other's prefix ("deaths" / "deaths (pulmonary embolism 1)"):
            # the same event with an annotation, not a different definition
            wt, wc = t["wording"].iloc[0], c["wording"].iloc[0]
            if wt.startswith(wc) or wc.startswith(wt):
                common = [min(wt, wc, key=len)]
                t, c = t.assign(wording=common[0]), c.assign(wording=common[0])
        if not common:
            excluded.append((sid, f"{category} worded differently in the two arms ({sorted(set(t['wording']))} vs {sorted(set(c['wording']))}): not combined"))
            continue
        # prefer a wording both arms report with usable counts (after the count policy)
        w = common[0]
        t0, c0 = t, c
        for cand in common:
            tt, cc = t0[t0["wording"] == cand], c0[c0["wording"] == cand]
            if tt["events"].notna().all() and cc["events"].notna().all():
                w = cand
                break
        t, c = t0[t0["wording"] == w], c0[c0["wording"] == w]
        (t, nt), (c, nc) = one_record_per_arm(t, ("arm",)), one_record_per_arm(c, ("arm",))
        set_aside += [(sid, x) for x in nt + nc]
        t = t.assign(n_used=t["n"].where(t["n"].notna(), t["arm_n"]), label=t["event"])
        c = c.assign(n_used=c["n"].where(c["n"].notna(), c["arm_n"]), label=c["event"])
        mt = pd.Series(False, index=t.index)
        mc = pd.Series(False, index=c.index)
        if approximate:
            (t, mt), (c, mc) = approximate_counts(t, "n_used", "label"), approximate_counts(c, "n_used", "label")
        side = []
        for df in (t, c):
            n = df["n_used"]
            if df["events"].isna().any() or n.isna().any():
                side = None
                break
            side.append((int(df["events"].sum()), int(n.sum()), bool(df["events_derived"].fillna(False).any() or df["n_derived"].fillna(False).any())))
        if side is None:
            both = pd.concat([t, c]).assign(n=lambda d: d["n_used"])
            why = missing_counts_reason(both) or "incomplete counts"
            excluded.append((sid, f"incomplete counts for {w!r}: {why}"))
            continue
        both = pd.concat([t, c])
        periods_ = sorted({str(p) for p in both["period"].dropna()})
        kinds = sorted({str(p) for p in both["count_type"].dropna()})
        rows.append(
            {
                "study": sid,
                "label": g["study_label"].iloc[0],
                "year": None,
                "timepoint_weeks": None,
                "treatment_arms": " + ".join(t["arm_label"]),
                "control_arms": " + ".join(c["arm_label"]),
                "treatment_regimen": ",".join(sorted(set(t["regimen"]))),
                "control_regimen": ",".join(sorted(set(c["regimen"]))),
                "events_treat": side[0][0],
                "events_treat_candidates": (side[0][0],),
                "events_ctrl_candidates": (side[1][0],),
                "n_treat": side[0][1],
                "events_ctrl": side[1][0],
                "n_ctrl": side[1][1],
                "derived": side[0][2] or side[1][2],
                "ambiguous": False,
                "candidates": [],
                "combined_arms": max(len(t), len(c)),
                "approximate": bool(mt.any() or mc.any()),
                "event": w,
                "period": ", ".join(periods_) if periods_ else None,
                "count_type": ", ".join(kinds) if kinds else None,
                "population": None,
                "setting": ev.study(sid).setting.value if ev.study(sid).setting else None,
                "records": tuple(both["ae_id"]),
                "sources": tuple(sorted(set(both["source"].dropna()))),
                "source_types": tuple(sorted(set(both["source_type"].dropna()))),
            }
        )
    if warn:
        for sid, why in excluded:
            warnings.warn(f"study {sid!r} left out of {category} {treatment} vs {control}: {why}", SelectionWarning, stacklevel=2)
    frame = pd.DataFrame(rows)
    if frame.empty:
        frame = pd.DataFrame(columns=["study", "label", "events_treat", "n_treat", "events_ctrl", "n_ctrl", "derived", "ambiguous", "candidates", "combined_arms", "approximate"])
    return PairwiseData(category, ",".join(sorted(tspec)), ",".join(sorted(cspec)), frame.reset_index(drop=True), tuple(excluded),
                        tuple(set_aside))


def pairwise_data(
    ev,
    outcome: str,
    treatment: Union[str, list[str]],
    control: Union[str, list[str]],
    timepoint: Union[str, float] = "latest",
    max_weeks: Optional[float] = None,
    warn: bool = True,
    approximate: bool = False,
    min_weeks: Optional[float] = None,
    allow_nonrandomised: bool = False,
    phases: Optional[tuple[str, ...]] = None,
) -> PairwiseData:
    """Build the two-group data set for ``outcome`` comparing ``treatment`` with ``control``.

    Parameters
    ----------
    ev : EvidenceBase
    outcome : endpoint name, e.g. ``"complete remission"``.
    treatment, control : regimen specifications (see module docstring).
    timepoint : ``"latest"`` (default), ``"earliest"``, or a number of weeks (the closest
        available timepoint is used) when a study reports the endpoint more than once.
    max_weeks : ignore results later than this many weeks (e.g. 26 for 6-month remission).
    min_weeks : ignore results earlier than this many weeks.
    approximate : apply the count policy (:data:`COUNT_POLICY`): a percentage stored without a
        count becomes ``round(pct/100*n)``, flagged ``approximate`` where no integer count
        reproduces it. Off by default: such studies are left out with a warning.
    allow_nonrandomised : keep a study whose arms are not randomised groups (a continuation that
        keeps its parent trial's randomised assignment; the caller states the indirectness).
    phases : keep only records whose phase (the record's, else its arm's) is one of these.

    Several arms of one study matching the same side (e.g. two voclosporin doses) are
    combined by summing events and n (Cochrane Handbook 23.3.4), and flagged.
    """
    tspec, cspec = _spec(treatment), _spec(control)
    _check_overlap(tspec, cspec)
    of = ev.outcomes_frame()
    if outcome not in set(of["endpoint"]):
        raise ValueError(f"no outcome {outcome!r} in the evidence base; available: {sorted(set(of['endpoint']))}")
    of = of[of["endpoint"] == outcome]
    if phases is not None:
        of = of[of["phase"].isin(phases)]
    if max_weeks is not None:
        of = of[of["timepoint_weeks"].isna() | (of["timepoint_weeks"] <= max_weeks)]
    if min_weeks is not None:
        of = of[of["timepoint_weeks"].isna() | (of["timepoint_weeks"] >= min_weeks)]
    rows, excluded, set_aside = [], [], []
    randomised = {s.id: s.randomised for s in ev.studies}
    for sid, g in of.groupby("study", sort=False):
        t = g[g.apply(lambda r: _matches(r, tspec), axis=1)]
        c = g[g.apply(lambda r: _matches(r, cspec), axis=1)]
        if t.empty or c.empty:
            continue  # not a study of this comparison: nothing to warn about
        if not randomised.get(sid, True) and not allow_nonrandomised:
            excluded.append((sid, "not randomised (arms are not randomised groups)"))
            continue
        sub = _subtypes(pd.concat([t, c]))
        t, c = t.assign(subtype=sub[t.index]), c.assign(subtype=sub[c.index])
        (t, nt), (c, nc) = one_record_per_arm(t), one_record_per_arm(c)
        set_aside += [(sid, x) for x in nt + nc]
        mt = pd.Series(False, index=t.index)
        mc = pd.Series(False, index=c.index)
        if approximate:
            (t, mt), (c, mc) = _policy(t), _policy(c)
        tps = sorted(set(t["timepoint_weeks"].dropna()) & set(c["timepoint_weeks"].dropna()))

        def _usable(d):
            return set(d.loc[d["events"].notna() & d["n"].notna(), "timepoint_weeks"].dropna())

        usable = sorted(_usable(t) & _usable(c))
        if not tps:
            tp = None
            if t["timepoint_weeks"].notna().any() or c["timepoint_weeks"].notna().any():
                excluded.append((sid, "treatment and control results reported at different timepoints"))
                continue
        else:
            # among the timepoints with usable counts in both arms when there are any
            tp = choose_timepoint(usable or tps, timepoint)
        if tp is not None:
            t = t[t["timepoint_weeks"] == tp]
            c = c[c["timepoint_weeks"] == tp]
        approx = bool(mt[t.index].any() or mc[c.index].any())
        both = pd.concat([t, c])
        why = missing_counts_reason(both)
        if why is not None:
            excluded.append((sid, f"no events/n for {outcome}: {why}"))
            continue
        cands = [x for x in both["events_candidates"] if isinstance(x, tuple)]
        rows.append(
            {
                "study": sid,
                "label": g["study_label"].iloc[0],
                "year": int(g["year"].iloc[0]),
                "timepoint_weeks": tp,
                "treatment_arms": " + ".join(t["arm_label"]),
                "control_arms": " + ".join(c["arm_label"]),
                "treatment_regimen": ",".join(sorted(set(t["regimen"]))),
                "control_regimen": ",".join(sorted(set(c["regimen"]))),
                "events_treat": int(t["events"].sum()),
                "events_treat_candidates": _totals(t),
                "events_ctrl_candidates": _totals(c),
                "n_treat": int(t["n"].sum()),
                "events_ctrl": int(c["events"].sum()),
                "n_ctrl": int(c["n"].sum()),
                "derived": bool(both["events_derived"].fillna(False).any() or both["n_derived"].fillna(False).any()),
                "ambiguous": any(len(x) > 1 for x in cands),
                "candidates": [x for x in cands if len(x) > 1],
                "combined_arms": max(len(t), len(c)),
                "approximate": approx,
                "population": g["population"].iloc[0],
                "setting": g["setting"].iloc[0],
                "records": tuple(both["outcome_id"]),
                "sources": tuple(sorted(set(both["source"].dropna()))),
                "source_types": tuple(sorted(set(both["source_type"].dropna()))),
            }
        )
    frame = pd.DataFrame(rows)
    if frame.empty:
        frame = pd.DataFrame(columns=["study", "label", "year", "timepoint_weeks", "events_treat", "n_treat", "events_ctrl", "n_ctrl", "derived", "ambiguous", "candidates", "combined_arms", "approximate"])
    if warn:
        for sid, why in excluded:
            warnings.warn(f"study {sid!r} left out of {outcome} {treatment} vs {control}: {why}", SelectionWarning, stacklevel=2)
    return PairwiseData(outcome, ",".join(sorted(tspec)), ",".join(sorted(cspec)), frame.reset_index(drop=True), tuple(excluded),
                        tuple(set_aside))

"""Reconciliation of published syntheses' included-trial lists against the evidence base.

Each stored synthesis (``data/syntheses/<id>.yaml``: Palmer 2017, Hannah 2016, the 2023-2026 network
meta-analyses, ...) has one entry in ``data/search/reconciliation.yaml`` listing every trial it
includes, as far as a reachable source (abstract, full-text table, forest plot) lists them.  Each
listed trial is

``in_base``
    stored in the evidence base; ``trial`` names its study file stem.  Whether that file exists is
    **computed** when the reconciliation is loaded, never trusted from the YAML: a trial marked
    ``in_base`` whose study is missing is a :class:`ReconcileError`.
``excluded``
    not in the base, with a ``reason`` from the protocol's fixed list (``not_randomised``,
    ``wrong_population``, ``no_cni_arm``, ``duplicate_report``, ``no_usable_data``,
    ``not_lupus_nephritis``, ``awaiting_extraction``, or any other reason of ``search/protocol.yaml``).  ``awaiting_extraction`` marks an
    eligible trial that is simply not extracted yet; with ``expected_trial`` (the study file stem it
    will have) it is reported ``in_base`` as soon as that study file exists.
``not_found``
    the synthesis's list is not reachable (``reason``: ``included-trial list not reachable``), so
    the trial (or the rest of the list) cannot be named.

The contract (``lnsynth reconcile --format json``) is a list of
``{synthesis, trials: [{citation, status, trial, reason}]}``; :func:`reconcile` returns it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import yaml

from .load import EvidenceBase, data_dir
from .schema import MAX_EXTERNAL_QUOTE

STATUSES = ("in_base", "excluded", "not_found")

#: Exclusion reasons (the protocol's fixed list); ``search/protocol.yaml``'s ``exclusion_reasons``
#: are accepted as well when that file exists.
REASONS = (
    "not_randomised",
    "wrong_population",
    "no_cni_arm",
    "duplicate_report",
    "no_usable_data",
    "not_lupus_nephritis",
    "awaiting_extraction",
)

NOT_REACHABLE = "included-trial list not reachable"

_TRIAL_KEYS = {"citation", "status", "trial", "reason", "detail", "expected_trial", "source"}
_SYNTH_KEYS = {"synthesis", "n_included", "list_sought", "trials"}
_SOURCE_KEYS = {"url", "loc", "quote"}


class ReconcileError(ValueError):
    """A problem in the reconciliation file, naming the file, the synthesis entry and the field."""


@dataclass(frozen=True)
class ListedTrial:
    """One trial as a synthesis lists it, and where it stands against the evidence base."""

    citation: str
    status: str
    trial: Optional[str]
    reason: Optional[str]
    detail: Optional[str] = None
    expected_trial: Optional[str] = None
    source: Optional[dict] = None
    promoted: bool = False  # awaiting_extraction whose expected study file now exists

    def contract(self) -> dict:
        """The contract record: ``{citation, status, trial, reason}`` (an exclusion's reason is its code)."""
        return {"citation": self.citation, "status": self.status, "trial": self.trial, "reason": self.reason}

    def reason_text(self) -> str:
        """The reason with its detail, for readable output (``code: detail``)."""
        if self.reason and self.detail and self.status == "excluded":
            return f"{self.reason}: {self.detail}"
        return self.reason or ""


@dataclass(frozen=True)
class SynthesisReconciliation:
    """The reconciliation of one stored synthesis."""

    synthesis: str
    label: str
    n_included: Optional[int]
    list_sought: str
    trials: tuple[ListedTrial, ...] = field(default_factory=tuple)

    def counts(self) -> dict[str, int]:
        """Number of listed entries per status."""
        return {s: sum(t.status == s for t in self.trials) for s in STATUSES}

    def contract(self) -> dict:
        return {"synthesis": self.synthesis, "trials": [t.contract() for t in self.trials]}


def reconciliation_path(root: Union[str, Path, None] = None) -> Path:
    """``<evidence dir>/search/reconciliation.yaml`` (package data by default)."""
    base = Path(root) if root is not None else data_dir()
    return base / "search" / "reconciliation.yaml"


def _protocol_reasons(root: Path) -> set[str]:
    p = root / "search" / "protocol.yaml"
    if not p.is_file():
        return set()
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError:
        return set()
    reasons = raw.get("exclusion_reasons") if isinstance(raw, dict) else None
    if isinstance(reasons, dict):
        return {str(k) for k in reasons}
    if isinstance(reasons, list):
        return {str(r["id"]) if isinstance(r, dict) and "id" in r else str(r) for r in reasons}
    return set()


def exclusion_reasons(root: Union[str, Path, None] = None) -> frozenset[str]:
    """The accepted exclusion reasons: :data:`REASONS` plus ``search/protocol.yaml``'s ``exclusion_reasons``."""
    base = Path(root) if root is not None else data_dir()
    return frozenset(REASONS) | frozenset(_protocol_reasons(base))


def _text(v: Any) -> Optional[str]:
    return None if v is None else " ".join(str(v).split()) or None


def _check_source(src: Any, where: str) -> Optional[dict]:
    if src is None:
        return None
    if not isinstance(src, dict):
        raise ReconcileError(f"{where}.source: expected a mapping with url, loc, quote")
    extra = set(src) - _SOURCE_KEYS
    if extra:
        raise ReconcileError(f"{where}.source: unknown field(s) {sorted(extra)}; allowed {sorted(_SOURCE_KEYS)}")
    if not _text(src.get("url")):
        raise ReconcileError(f"{where}.source.url: missing (the page where the list is shown)")
    quote = _text(src.get("quote"))
    if quote and len(quote) > MAX_EXTERNAL_QUOTE:
        raise ReconcileError(f"{where}.source.quote: {len(quote)} characters; at most {MAX_EXTERNAL_QUOTE}")
    return {k: _text(src.get(k)) for k in ("url", "loc", "quote") if src.get(k) is not None}


def _parse_trial(raw: Any, where: str, trial_ids: set[str], reasons: set[str]) -> ListedTrial:
    if not isinstance(raw, dict):
        raise ReconcileError(f"{where}: expected a mapping (citation, status, trial, reason)")
    extra = set(raw) - _TRIAL_KEYS
    if extra:
        raise ReconcileError(f"{where}: unknown field(s) {sorted(extra)}; allowed {sorted(_TRIAL_KEYS)}")
    citation = _text(raw.get("citation"))
    if not citation:
        raise ReconcileError(f"{where}.citation: missing (the trial as the synthesis lists it)")
    status = raw.get("status")
    if status not in STATUSES:
        raise ReconcileError(f"{where}.status: {status!r} is not one of {list(STATUSES)}")
    trial = _text(raw.get("trial"))
    reason = _text(raw.get("reason"))
    expected = _text(raw.get("expected_trial"))
    source = _check_source(raw.get("source"), where)
    detail = _text(raw.get("detail"))
    if status == "in_base":
        if not trial:
            raise ReconcileError(f"{where}.trial: an in_base trial names its study (a file stem of data/studies/)")
        if trial not in trial_ids:
            raise ReconcileError(f"{where}.trial: {trial!r} is marked in_base but the evidence base has no such study "
                                 f"(data/studies/{trial}.yaml)")
        return ListedTrial(citation, status, trial, None, detail, expected, source)
    if trial:
        raise ReconcileError(f"{where}.trial: only an in_base entry names a trial (use expected_trial for one awaiting extraction)")
    if status == "excluded":
        if reason not in reasons:
            raise ReconcileError(f"{where}.reason: {reason!r} is not an exclusion reason; one of {sorted(reasons)}")
        if expected and reason != "awaiting_extraction":
            raise ReconcileError(f"{where}.expected_trial: only for reason awaiting_extraction")
        if expected and expected in trial_ids:
            # computed: the study has been added since the entry was written
            return ListedTrial(citation, "in_base", expected, None, detail, expected, source, promoted=True)
        return ListedTrial(citation, status, None, reason, detail, expected, source)
    if not reason:
        raise ReconcileError(f"{where}.reason: a not_found entry says why (e.g. {NOT_REACHABLE!r})")
    return ListedTrial(citation, status, None, reason, detail, expected, source)


def load_reconciliation(ev: EvidenceBase, path: Union[str, Path, None] = None) -> list[SynthesisReconciliation]:
    """Load and validate ``search/reconciliation.yaml`` against the evidence base ``ev``.

    Raises
    ------
    ReconcileError
        On a malformed file, an unknown synthesis, a trial marked ``in_base`` whose study file does
        not exist, an exclusion reason outside the fixed list, or a stored synthesis left without an
        entry.
    """
    p = Path(path) if path is not None else reconciliation_path(ev.root)
    if not p.is_file():
        raise ReconcileError(f"{p}: no reconciliation file")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ReconcileError(f"{p.name}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("syntheses"), list):
        raise ReconcileError(f"{p.name}: expected a mapping with a 'syntheses' list")
    synth = {s.id: s for s in ev.syntheses}
    trial_ids = {s.id for s in ev.studies}
    reasons = set(exclusion_reasons(p.parent.parent))
    out: list[SynthesisReconciliation] = []
    seen: set[str] = set()
    for i, entry in enumerate(raw["syntheses"]):
        where = f"{p.name}: syntheses[{i}]"
        if not isinstance(entry, dict):
            raise ReconcileError(f"{where}: expected a mapping")
        sid = entry.get("synthesis")
        where = f"{p.name}: synthesis {sid!r}"
        extra = set(entry) - _SYNTH_KEYS
        if extra:
            raise ReconcileError(f"{where}: unknown field(s) {sorted(extra)}; allowed {sorted(_SYNTH_KEYS)}")
        if sid not in synth:
            raise ReconcileError(f"{where}: no such synthesis in data/syntheses/; known: {sorted(synth)}")
        if sid in seen:
            raise ReconcileError(f"{where}: listed twice")
        seen.add(sid)
        trials = entry.get("trials")
        if not isinstance(trials, list) or not trials:
            raise ReconcileError(f"{where}.trials: expected a non-empty list (a not_found entry when the list is not reachable)")
        n_inc = entry.get("n_included")
        if n_inc is not None and (isinstance(n_inc, bool) or not isinstance(n_inc, int) or n_inc < 0):
            raise ReconcileError(f"{where}.n_included: expected a non-negative integer or null")
        listed = tuple(_parse_trial(t, f"{where}.trials[{j}]", trial_ids, reasons) for j, t in enumerate(trials))
        out.append(SynthesisReconciliation(sid, synth[sid].label, n_inc, _text(entry.get("list_sought")) or "", listed))
    missing = sorted(set(synth) - seen)
    if missing:
        raise ReconcileError(f"{p.name}: stored synthesis(es) without a reconciliation entry: {missing}")
    return out


def reconcile(ev: EvidenceBase, path: Union[str, Path, None] = None) -> list[dict]:
    """The contract: ``[{synthesis, trials: [{citation, status, trial, reason}]}]``, one per stored synthesis."""
    return [r.contract() for r in load_reconciliation(ev, path)]


def missing_eligible(recs: list[SynthesisReconciliation]) -> list[dict]:
    """Eligible trials cited by a synthesis but not in the base (``excluded``/``awaiting_extraction``).

    One row per trial (grouped by ``expected_trial`` when given, else by citation), naming every
    synthesis that cites it.
    """
    rows: dict[str, dict] = {}
    for r in recs:
        for t in r.trials:
            if t.status != "excluded" or t.reason != "awaiting_extraction":
                continue
            key = t.expected_trial or t.citation.lower()
            row = rows.setdefault(key, {"citation": t.citation, "expected_trial": t.expected_trial,
                                        "detail": t.detail, "cited_by": []})
            if r.synthesis not in row["cited_by"]:
                row["cited_by"].append(r.synthesis)
    return list(rows.values())


def summary_rows(recs: list[SynthesisReconciliation]) -> list[dict]:
    """Per synthesis: the number it says it includes and the counts per status."""
    return [{"synthesis": r.synthesis, "label": r.label, "n_included": r.n_included, **r.counts()} for r in recs]


__all__ = [
    "NOT_REACHABLE",
    "REASONS",
    "STATUSES",
    "ListedTrial",
    "ReconcileError",
    "SynthesisReconciliation",
    "load_reconciliation",
    "missing_eligible",
    "reconcile",
    "reconciliation_path",
    "exclusion_reasons",
    "summary_rows",
]

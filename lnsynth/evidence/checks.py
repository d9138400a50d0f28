"""Consistency checks on the evidence base (``lnsynth validate``).

Schema errors are fatal and raised by the loader. The checks here look for
*suspected errors in the source*; they never change a stored value, they report:

- ``denominator``: an outcome/adverse-event denominator that differs from its arm size
  (e.g. the review prints Liu 2015 diarrhoea as 14/81 in an arm of 181);
- ``percent``: a printed percentage that no integer count of the arm reproduces at the
  printed precision;
- ``arm-sum``: arm sizes that do not add up to the randomised N;
- ``derived``: a derived count that does not follow its own rule / candidates;
- ``quote``: a quote not found verbatim in the source text (only when the source
  text is available, see :func:`find_source_text`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .derive import count_candidates, decimals_of
from .load import EvidenceBase, _walk_quantities


@dataclass(frozen=True)
class Finding:
    level: str  # "warning" | "error"
    kind: str
    study: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.level.upper()} [{self.kind}] {self.study}: {self.field}: {self.message}"


def normalise(text: str) -> str:
    """Strip HTML tags and collapse whitespace (the only normalisation quotes get)."""
    text = re.sub(r"<[^>]+>", "", text)
    return re.sub(r"\s+", " ", text).strip()


def find_source_text(filename: str, extra_dirs: Optional[list[Path]] = None) -> Optional[Path]:
    """Locate a source document: ``$LNSYNTH_SOURCES``, ``../shared/sources`` of the repo or cwd."""
    cands: list[Path] = []
    if os.environ.get("LNSYNTH_SOURCES"):
        cands.append(Path(os.environ["LNSYNTH_SOURCES"]))
    if os.environ.get("LNSYNTH_SHARED"):
        cands.append(Path(os.environ["LNSYNTH_SHARED"]) / "sources")
    here = Path(__file__).resolve()
    for up in (here.parents[2], here.parents[3], Path.cwd(), Path.cwd().parent):
        cands.append(up / "shared" / "sources")
        cands.append(up.parent / "shared" / "sources")
    cands.extend(extra_dirs or [])
    for d in cands:
        p = d / filename
        if p.exists():
            return p
    return None


def check_quotes(ev: EvidenceBase) -> list[Finding]:
    out: list[Finding] = []
    texts: dict[str, Optional[str]] = {}
    for src in ev.sources:
        p = find_source_text(src.filename) if src.filename else None
        texts[src.id] = normalise(p.read_text(encoding="utf-8")) if p else None
    for rec in list(ev.studies) + list(ev.syntheses):
        for path, _v, prov in _walk_quantities(rec, ""):
            text = texts.get(prov.source)
            if text is None:
                continue
            if normalise(prov.quote) not in text:
                out.append(Finding("error", "quote", rec.id, path, f"quote not found verbatim in {prov.source}: {prov.quote!r}"))
    return out


def check_consistency(ev: EvidenceBase) -> list[Finding]:
    out: list[Finding] = []
    for s in ev.studies:
        arm_n = {a.id: (a.n.value if a.n else None) for a in s.arms}
        # arms summing to N (only for parallel-group trials with all arm sizes known)
        if s.n_randomised is not None and all(v is not None for v in arm_n.values()) and len(arm_n) > 1:
            tot = sum(arm_n.values())
            if tot != s.n_randomised.value:
                out.append(
                    Finding("warning", "arm-sum", s.id, "arms[*].n", f"arm sizes {arm_n} sum to {tot}, randomised N is {s.n_randomised.value}")
                )
        records = [("outcomes", o) for o in s.outcomes] + [("adverse_events", a) for a in s.adverse_events]
        for kind, r in records:
            a_n = arm_n.get(r.arm)
            n_q = r.n
            n = n_q.value if n_q is not None else a_n
            declared_subset = getattr(r, "analysis_set", None) not in (None, "ITT", "not stated")
            if n_q is not None and a_n is not None and n_q.value != a_n and not declared_subset:
                out.append(
                    Finding(
                        "warning",
                        "denominator",
                        s.id,
                        f"{kind}[{r.id}].n",
                        f"denominator {n_q.value} differs from the size of arm {r.arm!r} ({a_n}); printed value kept",
                    )
                )
            if r.percent is not None and n is not None:
                cands = count_candidates(r.percent.value, n)
                if not cands:
                    out.append(
                        Finding(
                            "warning",
                            "percent",
                            s.id,
                            f"{kind}[{r.id}].percent",
                            f"{r.percent.text}% is not reproduced by any count out of n={n} (arm {r.arm!r}); "
                            "percentage kept, no count derived",
                        )
                    )
                if r.events is not None and r.events.provenance.derived:
                    if r.events.value not in cands:
                        out.append(
                            Finding("error", "derived", s.id, f"{kind}[{r.id}].events",
                                    f"derived count {r.events.value} does not reproduce {r.percent.text}% of {n} (candidates {cands})")
                        )
                    elif r.events.candidates is not None and sorted(r.events.candidates) != cands:
                        out.append(
                            Finding("error", "derived", s.id, f"{kind}[{r.id}].events",
                                    f"stored candidates {r.events.candidates} differ from the counts that reproduce {r.percent.text}% of {n}: {cands}")
                        )
                    elif r.events.candidates is None and len(cands) > 1:
                        out.append(
                            Finding("error", "derived", s.id, f"{kind}[{r.id}].events",
                                    f"several counts reproduce {r.percent.text}% of {n} ({cands}); keep all as candidates")
                        )
            if r.events is not None and n is not None and r.events.value > n and getattr(r, "count_type", None) != "events":
                out.append(Finding("error", "events", s.id, f"{kind}[{r.id}].events", f"events {r.events.value} > n {n}"))
            if r.events is not None and not r.events.provenance.derived and r.percent is not None and n is not None:
                pct = 100.0 * r.events.value / n
                if abs(pct - float(r.percent.value)) > 0.5 * 10 ** (-decimals_of(r.percent.value)) + 1e-9:
                    out.append(
                        Finding("warning", "percent", s.id, f"{kind}[{r.id}]",
                                f"printed {r.events.value}/{n} = {pct:.2f}% but printed percentage is {r.percent.text}%")
                    )
    return out


def check_restatements(ev: EvidenceBase) -> list[Finding]:
    """Records declared ``same_as`` another (text vs table) must agree; disagreement is a warning."""
    from .load import resolve_ref

    out: list[Finding] = []
    for s in ev.studies:
        recs = {r.id: r for r in list(s.outcomes) + list(s.adverse_events)}
        for f in s.facts:
            if f.same_as:
                try:
                    other = resolve_ref(s, f.same_as)
                except KeyError as exc:
                    out.append(Finding("error", "same_as", s.id, f"facts[{f.id}].same_as", str(exc)))
                    continue
                if other != f.quantity.text:
                    out.append(Finding("warning", "text-vs-table", s.id, f"facts[{f.id}]",
                                       f"{f.what}: {f.quantity.text} ({f.quantity.provenance.location}) but {f.same_as} = {other}; both kept"))
        for r in recs.values():
            if not r.same_as:
                continue
            o = recs.get(r.same_as)
            if o is None:
                out.append(Finding("error", "same_as", s.id, f"{r.id}.same_as", f"unknown record {r.same_as!r}"))
                continue
            for fld in ("events", "percent"):
                a, b = getattr(r, fld), getattr(o, fld)
                if a is not None and b is not None and a.value != b.value:
                    out.append(Finding("warning", "text-vs-table", s.id, f"{r.id}.{fld}",
                                       f"{a.text} ({a.provenance.location}{', derived' if a.provenance.derived else ''}) but {o.id} gives "
                                       f"{b.text} ({b.provenance.location}); both kept"))
    return out


def _relative_gap(a: float, b: float) -> float:
    return abs(a - b) / max(abs(a), abs(b), 1e-12)


def check_syntheses(ev: EvidenceBase) -> list[Finding]:
    """A secondary figure that disagrees with the primary source (``primary_of``) is flagged.

    E.g. the review quotes Palmer 2017's calcineurin-inhibitor-alone OR as 1.74 [1.09, 2.79]; when
    Palmer's own abstract is stored, the estimate that restates it names it with ``primary_of`` and
    any difference in estimate or CI limits (beyond the printed rounding) is a warning.
    """
    out: list[Finding] = []
    index = {(sy.id, e.id): e for sy in ev.syntheses for e in sy.estimates}
    facts = {(sy.id, f.id): f for sy in ev.syntheses for f in sy.facts}
    for sy in ev.syntheses:
        for e in sy.estimates:
            if not e.primary_of:
                continue
            other, _, est = e.primary_of.partition(".")
            p = index.get((other, est))
            if p is None and (other, est) in facts:
                # the primary source prints only the point estimate (e.g. its CI is not visible)
                f = facts[(other, est)]
                a, b = e.estimate, f.quantity
                tol = 0.5 * 10 ** (-min(decimals_of(a.value), decimals_of(b.value))) + 1e-9
                if abs(float(a.value) - float(b.value)) > tol:
                    out.append(Finding("warning", "secondary-vs-primary", sy.id, f"estimates[{e.id}]",
                                       f"{sy.label} as quoted ({a.provenance.source}) gives {e.measure} {a.text} "
                                       f"[{e.ci_low.text}, {e.ci_high.text}]; the primary source {b.provenance.source} "
                                       f"({e.primary_of}) prints {b.text}; both kept, analyses use the primary"))
                continue
            if p is None:
                out.append(Finding("error", "primary_of", sy.id, f"estimates[{e.id}].primary_of", f"unknown estimate {e.primary_of!r}"))
                continue
            diffs = []
            for fld in ("estimate", "ci_low", "ci_high"):
                a, b = getattr(e, fld), getattr(p, fld)
                tol = 0.5 * 10 ** (-min(decimals_of(a.value), decimals_of(b.value))) + 1e-9
                if abs(float(a.value) - float(b.value)) > tol:
                    diffs.append(f"{fld} {a.text} vs {b.text}")
            if e.measure != p.measure:
                diffs.append(f"measure {e.measure} vs {p.measure}")
            if diffs:
                out.append(Finding("warning", "secondary-vs-primary", sy.id, f"estimates[{e.id}]",
                                   f"{sy.label} as quoted ({e.estimate.provenance.source}) differs from the primary "
                                   f"source {p.estimate.provenance.source} ({e.primary_of}): " + "; ".join(diffs)
                                   + "; both kept, analyses use the primary"))
    return out


def check_sources(ev: EvidenceBase) -> list[Finding]:
    """Records resting only on a secondary summary or news page are reported (the certainty rating
    downgrades them); every trial with external sources should list its publications."""
    out: list[Finding] = []
    by_id = {s.id: s for s in ev.sources}
    for s in list(ev.studies) + list(ev.syntheses):
        per_source: dict[str, list[str]] = {}
        for path, _v, prov in _walk_quantities(s, ""):
            src = by_id.get(prov.source)
            if src is not None and src.secondary:
                per_source.setdefault(src.id, []).append(path)
        for sid, paths in per_source.items():
            src = by_id[sid]
            shown = ", ".join(paths[:4]) + (f" and {len(paths) - 4} more" if len(paths) > 4 else "")
            out.append(Finding("warning", "secondary-source", s.id, shown,
                               f"{len(paths)} value(s) rest on a {src.type} ({sid}); keep looking for the primary source"))
    for s in ev.studies:
        for ln in s.links:
            if ln.type in ("continuation_of", "subset_of") and s.randomised and s.n_randomised is None and s.n_enrolled is not None:
                out.append(Finding("warning", "design", s.id, "randomised",
                                   f"{ln.type} {ln.trial} with only n_enrolled: set randomised: false if patients were not re-randomised"))
    return out


def check_conflicts(ev: EvidenceBase) -> list[Finding]:
    """Every declared conflict between sources (``conflict_with``), once per pair: which record is
    used (the better-ranked source, e.g. the trial's own abstract) and which is set aside (the review)."""
    from .load import conflict_map

    out: list[Finding] = []
    by_id = {s.id: s for s in ev.sources}
    for s in ev.studies:
        recs = {r.id: r for r in list(s.outcomes) + list(s.adverse_events) + list(s.facts)}
        cmap = conflict_map(s, by_id)
        for rid, e in cmap.items():
            for oid, osrc in e["with"]:
                note = recs[rid].conflict_note or recs[oid].conflict_note or ""
                if oid in e["superseded_by"]:
                    msg = f"disagrees with {oid} ({osrc}); both kept, analyses use {oid}"
                elif rid < oid and rid not in cmap[oid]["superseded_by"]:
                    msg = f"disagrees with {oid} ({osrc}), a source of equal rank; both kept"
                else:
                    continue
                out.append(Finding("warning", "conflict", s.id, rid, msg + (f": {note}" if note else "")))
    return out


def run_checks(ev: EvidenceBase, quotes: bool = True) -> list[Finding]:
    out = check_consistency(ev) + check_restatements(ev) + check_syntheses(ev) + check_sources(ev) + check_conflicts(ev)
    if quotes:
        out.extend(check_quotes(ev))
    return out

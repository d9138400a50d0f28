"""Loading the evidence base from YAML (package data or a directory).

Layout (``lnsynth/evidence/data``)::

    sources.yaml            list of Source records
    studies/<id>.yaml       one Study per file
    syntheses/<id>.yaml     one Synthesis (published meta-analysis) per file

YAML shorthand: a mapping with a ``quote`` key and no ``provenance`` key is a value
with inline provenance.  ``loc`` stands for ``location``; ``source`` defaults to the
file's top-level ``source`` key (itself defaulting to ``peleg2020``).  So::

    n_randomised: {value: 40, loc: Table 1, quote: "Bao et al. 2008 (18) RCT 40"}

expands to ``{value: 40, provenance: {source: peleg2020, location: Table 1, quote: ...}}``.
A derived value adds ``derived: true`` and ``rule: ...`` (and ``candidates: [...]``).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Optional, Union

import pandas as pd
import yaml
from pydantic import BaseModel, ValidationError

from .schema import (
    REGIMEN_CLASS,
    REGIMENS,
    MAX_EXTERNAL_QUOTE,
    Criterion,
    Fact,
    Publication,
    Provenance,
    Quantity,
    RiskOfBias,
    Source,
    Study,
    Synthesis,
    Text,
    Timepoint,
    format_number,
)

DEFAULT_SOURCE = "peleg2020"

#: Preference between documents reporting the same result (lower is preferred): the trial's own
#: article first, then its registry results, abstracts, the review, secondary summaries, news.
SOURCE_RANK = {
    "peer-reviewed article": 0,
    "trial-registry results": 1,
    "abstract": 2,
    "conference abstract": 3,
    "review": 4,
    "secondary summary": 5,
    "news": 6,
}
_PROV_KEYS = {"source", "loc", "location", "quote", "derived", "rule"}


class EvidenceError(ValueError):
    """A fatal problem in the evidence files, naming file, study and field."""


def data_dir() -> Path:
    return Path(str(resources.files("lnsynth.evidence") / "data"))


def _expand(node: Any, default_source: str) -> Any:
    """Expand the inline-provenance shorthand recursively."""
    if isinstance(node, list):
        return [_expand(x, default_source) for x in node]
    if not isinstance(node, dict):
        return node
    if ("quote" in node or "loc" in node or "location" in node) and "provenance" not in node:
        prov = {
            "source": node.get("source", default_source),
            "location": node.get("location", node.get("loc")),
            "quote": node.get("quote"),
        }
        prov = {k: v for k, v in prov.items() if v is not None}
        if "derived" in node:
            prov["derived"] = node["derived"]
        if "rule" in node:
            prov["rule"] = node["rule"]
        rest = {k: _expand(v, default_source) for k, v in node.items() if k not in _PROV_KEYS}
        rest["provenance"] = prov
        return rest
    return {k: _expand(v, default_source) for k, v in node.items()}


def _loc_of(err: dict, raw: Any) -> str:
    """Human-readable field path; names outcome/arm ids where the path crosses a list."""
    parts: list[str] = []
    node = raw
    for p in err.get("loc", ()):
        if isinstance(p, int) and isinstance(node, list):
            item = node[p] if p < len(node) else None
            ident = item.get("id") if isinstance(item, dict) else None
            parts[-1] = f"{parts[-1]}[{p}]" + (f"({ident})" if ident else "")
            node = item
        else:
            parts.append(str(p))
            node = node.get(p) if isinstance(node, dict) else None
    return ".".join(parts) or "<root>"


def _format_validation(path: Path, study_id: str, exc: ValidationError, raw: Any) -> str:
    lines = []
    for e in exc.errors():
        lines.append(f"{path.name}: study {study_id!r}: field {_loc_of(e, raw)}: {e['msg']}")
    return "\n".join(lines)


def _read_yaml(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as fh:
            return yaml.safe_load(fh)
    except yaml.YAMLError as exc:  # pragma: no cover - message passthrough
        raise EvidenceError(f"{path.name}: not valid YAML: {exc}") from None


def _load_model(path: Union[str, Path], model):
    path = Path(path)
    raw = _read_yaml(path)
    if not isinstance(raw, dict):
        raise EvidenceError(f"{path.name}: expected a mapping at the top level")
    sid = str(raw.get("id", path.stem))
    src = raw.pop("source", DEFAULT_SOURCE) if isinstance(raw.get("source"), str) else DEFAULT_SOURCE
    data = _expand(raw, src)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise EvidenceError(_format_validation(path, sid, exc, data)) from None


def load_study_file(path: Union[str, Path]) -> Study:
    """Load and validate one study YAML; errors name the file, the study and the field."""
    return _load_model(path, Study)


def load_synthesis_file(path: Union[str, Path]) -> Synthesis:
    """Load and validate one published meta-analysis (Synthesis) YAML."""
    return _load_model(path, Synthesis)


@dataclass(frozen=True)
class ProvenanceRow:
    study: str
    field: str
    value: Any
    source: str
    location: str
    quote: str
    derived: bool
    rule: Optional[str]
    url: Optional[str] = None
    source_type: Optional[str] = None
    accessed: Optional[str] = None
    conflict_with: Optional[str] = None  # "record (source); ..." of records from other sources that disagree


PROVENANCE_COLUMNS = ["study", "field", "value", "source", "location", "quote", "derived", "rule",
                      "url", "source_type", "accessed", "conflict_with"]

_RECORD_PATH = re.compile(r"^(outcomes|adverse_events|facts)\[([a-z0-9_]+)\]")


def _record_source(rec) -> Optional[str]:
    """Source of a record's main number (a fact's quantity; else events, percent, rate, mean, median)."""
    if isinstance(rec, Fact):
        return rec.quantity.provenance.source
    q = next((getattr(rec, f) for f in ("events", "percent", "rate", "mean", "median") if getattr(rec, f, None) is not None), None)
    return q.provenance.source if q is not None else None


def conflict_map(study: Study, sources: dict) -> dict[str, dict]:
    """Records of ``study`` in a declared conflict (``conflict_with``, read in both directions).

    Returns ``{record id: {"with": [(other id, other source), ...], "superseded_by": [other ids]}}``;
    a record is superseded by a conflicting record whose source ranks better (:data:`SOURCE_RANK`:
    the trial's own article, registry or abstract before the review), so the primary wins in selection."""
    recs = {r.id: r for r in list(study.outcomes) + list(study.adverse_events) + list(study.facts)}
    pairs: set[tuple[str, str]] = set()
    for r in recs.values():
        for o in r.conflict_with or []:
            if o in recs:
                pairs |= {(r.id, o), (o, r.id)}

    def rank(rid: str) -> int:
        src = sources.get(_record_source(recs[rid]))
        return SOURCE_RANK.get(src.type if src else None, len(SOURCE_RANK))

    out: dict[str, dict] = {}
    for a, b in sorted(pairs):
        e = out.setdefault(a, {"with": [], "superseded_by": []})
        e["with"].append((b, _record_source(recs[b])))
        if rank(b) < rank(a):
            e["superseded_by"].append(b)
    return out


def _walk_quantities(obj: Any, prefix: str) -> Iterable[tuple[str, Any, Provenance]]:
    """Yield (field path, value, provenance) for every sourced value inside a model."""
    if isinstance(obj, (Quantity, Timepoint, Text, Criterion)):
        yield prefix, obj.value, obj.provenance
        return
    if isinstance(obj, list):
        for i, x in enumerate(obj):
            ident = getattr(x, "id", None)
            yield from _walk_quantities(x, f"{prefix}[{ident if ident else i}]")
        return
    if isinstance(obj, BaseModel):
        for name in type(obj).model_fields:
            if name in ("tables",):
                continue
            val = getattr(obj, name)
            if val is None:
                continue
            yield from _walk_quantities(val, f"{prefix}.{name}" if prefix else name)


@dataclass(frozen=True)
class EvidenceBase:
    """The loaded evidence: sources, studies and published syntheses (immutable)."""

    sources: tuple[Source, ...]
    studies: tuple[Study, ...]
    syntheses: tuple[Synthesis, ...]
    root: Path

    # ------------------------------------------------------------------ access
    def study(self, study_id: str) -> Study:
        for s in self.studies:
            if s.id == study_id:
                return s
        raise KeyError(f"no study {study_id!r}; known: {[s.id for s in self.studies]}")

    def synthesis(self, synth_id: str) -> Synthesis:
        for s in self.syntheses:
            if s.id == synth_id:
                return s
        raise KeyError(f"no synthesis {synth_id!r}; known: {[s.id for s in self.syntheses]}")

    def source(self, source_id: str) -> Source:
        for s in self.sources:
            if s.id == source_id:
                return s
        raise KeyError(f"no source {source_id!r}")

    # ------------------------------------------------------------------ frames
    def studies_frame(self) -> pd.DataFrame:
        rows = []
        for s in self.studies:
            rows.append(
                {
                    "study": s.id,
                    "label": s.label,
                    "year": s.year,
                    "design": s.design.value,
                    "population": s.population.value if s.population else None,
                    "setting": s.setting.value if s.setting else None,
                    "randomised": s.randomised,
                    "n_randomised": s.n_randomised.value if s.n_randomised else None,
                    "n_enrolled": s.n_enrolled.value if s.n_enrolled else None,
                    "follow_up_weeks": s.follow_up.weeks if s.follow_up else None,
                    "arms": ", ".join(a.label for a in s.arms),
                    "regimens": ", ".join(a.regimen for a in s.arms),
                }
            )
        return pd.DataFrame(rows)

    def trial_records(self, since: Optional[int] = None) -> list[dict]:
        """One JSON-ready object per trial: ``id``, ``publications: [{source, year, role, source_type, ...}]``,
        ``links: [{type, trial}]``, design, size, arms and risk of bias (``lnsynth trials --format json``).

        ``rob`` is ``{randomisation, deviations, missing, measurement, selection, overall}``, each
        ``{judgement, basis}`` (:meth:`RiskOfBias.as_contract`; a domain adds ``counts_as``, the
        judgement "no information" maps to); ``rob_overall`` repeats the overall judgement
        (``"not assessed"`` for a trial without a RoB 2 block).

        ``since``: only trials with a publication (other than the review) from that year on."""
        by_id = {x.id: x for x in self.sources}
        out = []
        for s in self.studies:
            pubs = []
            for p in s.publications:
                src = by_id.get(p.source)
                pubs.append({"source": p.source, "year": p.year, "role": p.role, "label": p.label,
                             "type": src.type if src else None, "source_type": src.type if src else None,
                             "citation": src.citation if src else None,
                             "url": src.url if src else None,
                             "accessed": src.accessed.isoformat() if src is not None and src.accessed else None})
            years = [p.year for p in s.publications if p.role != "review"] or [s.year]
            if since is not None and max(years) < since:
                continue
            out.append({
                "id": s.id, "label": s.label, "acronym": s.acronym, "year": s.year, "latest_year": max(years),
                "design": s.design.value, "randomised": s.randomised,
                "n_randomised": s.n_randomised.value if s.n_randomised else None,
                "n_enrolled": s.n_enrolled.value if s.n_enrolled else None,
                "registration": s.registration,
                "arms": [{"id": a.id, "label": a.label, "regimen": a.regimen, "phase": a.phase,
                          "n": a.n.value if a.n else None} for a in s.arms],
                "publications": pubs,
                "links": [{"type": ln.type, "trial": ln.trial} for ln in s.links],
                "rob_overall": (s.rob or RiskOfBias()).overall(),
                "rob": (s.rob or RiskOfBias()).as_contract(),
                "values": sum(1 for _ in _walk_quantities(s, "")),
            })
        return out

    def arms_frame(self) -> pd.DataFrame:
        rows = []
        for s in self.studies:
            for a in s.arms:
                rows.append(
                    {
                        "study": s.id,
                        "arm": a.id,
                        "label": a.label,
                        "regimen": a.regimen,
                        "regimen_class": REGIMEN_CLASS.get(a.regimen),
                        "phase": a.phase,
                        "n": a.n.value if a.n else None,
                        "n_derived": a.n.provenance.derived if a.n else None,
                    }
                )
        return pd.DataFrame(rows)

    def _sources_dict(self) -> dict:
        return {x.id: x for x in self.sources}

    def _source_info(self, rec) -> dict:
        """Source of a record's main number (events, else percent, rate, mean, median) and its rank."""
        by_id = getattr(self, "_sources_by_id", None)
        if by_id is None:
            by_id = {x.id: x for x in self.sources}
            object.__setattr__(self, "_sources_by_id", by_id)
        q = next((getattr(rec, f) for f in ("events", "percent", "rate", "mean", "median") if getattr(rec, f, None) is not None), None)
        sid = q.provenance.source if q is not None else None
        src = by_id.get(sid)
        stype = src.type if src else None
        return {"source": sid, "source_type": stype, "source_rank": SOURCE_RANK.get(stype, len(SOURCE_RANK))}

    def outcomes_frame(self, superseded: bool = False) -> pd.DataFrame:
        """One row per arm-level outcome with events/n (derived flags), percent, rate, mean/SD.

        ``source``, ``source_type`` and ``source_rank`` name the document the record's number comes
        from (rank 0 = primary article ... see :data:`SOURCE_RANK`), so a selection can prefer the
        primary report when a trial's result is stored from several publications.
        ``conflict_with`` lists the records of other sources that disagree with the row (see
        :func:`conflict_map`); ``superseded_by`` those among them from a better-ranked source. A
        superseded row (the review where the trial's own report disagrees) is left out unless
        ``superseded=True``, so every analysis uses the primary."""
        rows = []
        for s in self.studies:
            cmap = conflict_map(s, self._sources_dict())
            for o in s.outcomes:
                if cmap.get(o.id, {}).get("superseded_by") and not superseded:
                    continue
                a = s.arm(o.arm)
                n = o.n if o.n is not None else a.n
                rows.append(
                    {
                        "study": s.id,
                        "study_label": s.label,
                        "year": s.year,
                        "outcome_id": o.id,
                        "arm": a.id,
                        "arm_label": a.label,
                        "regimen": a.regimen,
                        "regimen_class": REGIMEN_CLASS.get(a.regimen),
                        "endpoint": o.endpoint,
                        "label": o.label,
                        "phase": o.phase or a.phase,
                        "arm_phase": a.phase,
                        "timepoint_weeks": o.timepoint.weeks if o.timepoint else None,
                        "timepoint": o.timepoint.text if o.timepoint else None,
                        "percent": o.percent.value if o.percent else None,
                        "events": o.events.value if o.events else None,
                        "events_derived": o.events.provenance.derived if o.events else None,
                        "events_candidates": tuple(o.events.candidates) if o.events and o.events.candidates else None,
                        "events_rule": o.events.provenance.rule if o.events else None,
                        "n": n.value if n else None,
                        "n_derived": n.provenance.derived if n else None,
                        "rate": o.rate.value if o.rate else None,
                        "rate_unit": o.rate.unit if o.rate else None,
                        "mean": o.mean.value if o.mean else None,
                        "sd": o.sd.value if o.sd else None,
                        "population": s.population.value if s.population else None,
                        "setting": s.setting.value if s.setting else None,
                        "analysis_set": o.analysis_set,
                        "primary": o.primary,
                        **self._source_info(o),
                        **_conflict_cols(cmap, o.id),
                    }
                )
        return _keep_printed(pd.DataFrame(rows), rows, ["percent", "rate", "mean", "sd"])

    def adverse_events_frame(self, superseded: bool = False) -> pd.DataFrame:
        """One row per arm-level adverse event; ``conflict_with`` / ``superseded_by`` and the
        ``superseded`` switch as in :meth:`outcomes_frame`."""
        rows = []
        for s in self.studies:
            cmap = conflict_map(s, self._sources_dict())
            for ae in s.adverse_events:
                if cmap.get(ae.id, {}).get("superseded_by") and not superseded:
                    continue
                a = s.arm(ae.arm)
                rows.append(
                    {
                        "study": s.id,
                        "study_label": s.label,
                        "ae_id": ae.id,
                        "arm": a.id,
                        "arm_label": a.label,
                        "regimen": a.regimen,
                        "event": ae.event,
                        "category": ae.category,
                        "events": ae.events.value if ae.events else None,
                        "events_derived": ae.events.provenance.derived if ae.events else None,
                        "n": ae.n.value if ae.n else None,
                        "n_derived": ae.n.provenance.derived if ae.n else None,
                        "arm_n": a.n.value if a.n else None,
                        "percent": ae.percent.value if ae.percent else None,
                        "period": ae.period,
                        "count_type": ae.count_type,
                        **self._source_info(ae),
                        **_conflict_cols(cmap, ae.id),
                    }
                )
        return _keep_printed(pd.DataFrame(rows), rows, ["percent"])

    def provenance_rows(self) -> list[ProvenanceRow]:
        rows: list[ProvenanceRow] = []
        by_id = {s.id: s for s in self.sources}

        def row(owner: str, path: str, value: Any, prov: Provenance) -> ProvenanceRow:
            src = by_id.get(prov.source)
            url = (src.url if src.url else None) if src else None
            if src is not None and url is None and src.doi:
                url = f"https://doi.org/{src.doi}"
            return ProvenanceRow(
                owner, path, value, prov.source, prov.location, prov.quote, prov.derived, prov.rule,
                url, src.type if src else None,
                src.accessed.isoformat() if src is not None and src.accessed else None,
            )

        for s in list(self.studies) + list(self.syntheses):
            cmap = conflict_map(s, by_id) if isinstance(s, Study) else {}
            for path, value, prov in _walk_quantities(s, ""):
                r = row(s.id, path, value, prov)
                m = _RECORD_PATH.match(path)
                if m and m.group(2) in cmap:
                    r = dataclasses.replace(r, conflict_with="; ".join(
                        f"{oid} ({osrc})" for oid, osrc in cmap[m.group(2)]["with"]))
                rows.append(r)
        return rows

    def provenance_frame(self, numbers_only: bool = False) -> pd.DataFrame:
        """Columns ``study, field, value, source, location, quote, derived, rule, url, source_type, accessed,
        conflict_with`` (the last empty unless the value's record disagrees with another source's record)."""
        rows = [dataclasses.asdict(r) for r in self.provenance_rows()]
        df = pd.DataFrame(rows, columns=PROVENANCE_COLUMNS)
        if numbers_only:
            df = df[df["value"].map(lambda v: isinstance(v, (int, float)) and not isinstance(v, bool))]
        return df.reset_index(drop=True)


def currency(ev: "EvidenceBase") -> dict:
    """Evidence currency: search date, sources searched, trials included and what is new since the review."""
    path = ev.root / "currency.yaml" if Path(ev.root).is_dir() else data_dir() / "currency.yaml"
    meta = (_read_yaml(path) or {}) if path.exists() else {}
    years = {}
    for s in ev.studies:
        ys = [p.year for p in s.publications if p.role != "review"] or [s.year]
        years[s.id] = max(ys)
    searched = meta.get("searched")
    return {
        "searched": str(searched) if searched else None,
        "base_review": meta.get("base_review"),
        "sources_searched": list(meta.get("sources_searched", [])),
        "method": meta.get("method"),
        "trials": len(ev.studies),
        "syntheses": len(ev.syntheses),
        "trial_ids": sorted(s.id for s in ev.studies),
        "new_since_review": sorted(sid for sid, y in years.items() if y >= 2021),
        "latest_publication_year": max(years.values()) if years else None,
        "statement": (f"Evidence searched {searched} (" + "; ".join(meta.get("sources_searched", [])[:3]) + "); "
                      f"{len(ev.studies)} trials, {sum(1 for y in years.values() if y >= 2021)} with publications from 2021 on."
                      if searched else "Evidence search date not recorded."),
    }


def _conflict_cols(cmap: dict, rid: str) -> dict:
    e = cmap.get(rid)
    if not e:
        return {"conflict_with": None, "superseded_by": None}
    return {"conflict_with": "; ".join(f"{o} ({src})" for o, src in e["with"]),
            "superseded_by": "; ".join(e["superseded_by"]) or None}


def _keep_printed(df: pd.DataFrame, rows: list[dict], cols: list[str]) -> pd.DataFrame:
    """Keep printed numbers as printed (int 67 stays int, 63.0 stays float) instead of
    letting pandas upcast a mixed column to float64 (which would lose the printed precision)."""
    for c in cols:
        if c in df:
            df[c] = pd.Series([r.get(c) for r in rows], index=df.index, dtype=object)
    return df


def resolve_ref(study: Study, ref: str) -> str:
    """``n_randomised`` | ``follow_up`` | ``<record id>.<field>`` | ``arm.<arm id>.n``."""
    parts = ref.split(".")
    if parts in (["n_randomised"], ["n_enrolled"]):
        q = getattr(study, parts[0])
        if q is None:
            raise KeyError(f"{study.id}: {parts[0]} missing")
        return q.text
    if parts == ["follow_up"]:
        if study.follow_up is None:
            raise KeyError(f"{study.id}: follow_up missing")
        return format_number(study.follow_up.value)
    if parts[0] == "arm" and len(parts) == 3:
        arm = study.arm(parts[1])
        q = getattr(arm, parts[2])
        if q is None:
            raise KeyError(f"{study.id}: arm {parts[1]} has no {parts[2]}")
        return q.text
    if len(parts) == 2:
        rid, field = parts
        for rec in list(study.outcomes) + list(study.adverse_events) + list(study.facts):
            if rec.id == rid:
                q = rec.quantity if isinstance(rec, Fact) and field == "value" else getattr(rec, field)
                if q is None:
                    raise KeyError(f"{study.id}: record {rid} has no {field}")
                return q.text
        raise KeyError(f"{study.id}: no record {rid!r} (template reference {ref!r})")
    raise KeyError(f"{study.id}: cannot resolve template reference {ref!r}")


_REF = re.compile(r"\{([a-zA-Z0-9_.]+)\}")


def render_template(study: Study, template: str) -> str:
    return _REF.sub(lambda m: resolve_ref(study, m.group(1)), template)


def template_refs(template: str) -> list[str]:
    return _REF.findall(template)


def load_evidence(path: Union[str, Path, None] = None) -> EvidenceBase:
    """Load and validate the evidence base (package data by default).

    Raises
    ------
    EvidenceError
        On any schema error, naming the file, the study and the field.
    """
    root = Path(path) if path is not None else data_dir()
    if not root.is_dir():
        raise EvidenceError(f"evidence directory {root} does not exist")
    sources: list[Source] = []
    source_files = [root / "sources.yaml"] + (sorted((root / "sources").glob("*.yaml")) if (root / "sources").is_dir() else [])
    for sp in source_files:
        if not sp.exists():
            continue
        raw = _read_yaml(sp) or []
        if not isinstance(raw, list):
            raise EvidenceError(f"{sp.name}: expected a list of sources")
        for i, item in enumerate(raw):
            if not isinstance(item, dict):
                raise EvidenceError(f"{sp.name}: entry {i}: expected a mapping")
            try:
                sources.append(Source.model_validate(item))
            except ValidationError as exc:
                lines = [f"{sp.name}: source {item.get('id', i)!r}: field {_loc_of(e, item)}: {e['msg']}" for e in exc.errors()]
                raise EvidenceError("\n".join(lines)) from None
    sids = [s.id for s in sources]
    dup_s = sorted({x for x in sids if sids.count(x) > 1})
    if dup_s:
        raise EvidenceError(f"source register: duplicate source ids {dup_s}")
    studies = [load_study_file(p) for p in sorted((root / "studies").glob("*.yaml"))]
    syntheses = [load_synthesis_file(p) for p in sorted((root / "syntheses").glob("*.yaml"))] if (root / "syntheses").is_dir() else []
    ids = [s.id for s in studies] + [s.id for s in syntheses]
    dup = sorted({x for x in ids if ids.count(x) > 1})
    if dup:
        raise EvidenceError(f"duplicate study/synthesis ids across files: {dup}")
    known_sources = {s.id: s for s in sources}
    trial_ids = {s.id for s in studies}
    if known_sources:
        for s in list(studies) + list(syntheses):
            for path_, _v, prov in _walk_quantities(s, ""):
                src = known_sources.get(prov.source)
                if src is None:
                    raise EvidenceError(
                        f"{s.id}.yaml: study {s.id!r}: field {path_}: unknown source {prov.source!r}; "
                        f"known: {sorted(known_sources)}"
                    )
                if src.external and len(" ".join(prov.quote.split())) > MAX_EXTERNAL_QUOTE:
                    raise EvidenceError(
                        f"{s.id}.yaml: study {s.id!r}: field {path_}: quote from {src.id!r} has "
                        f"{len(prov.quote)} characters; a quote from a source other than the review is the "
                        f"shortest fragment showing the number (at most {MAX_EXTERNAL_QUOTE})"
                    )
    for s in studies:
        for i, pub in enumerate(s.publications):
            if known_sources and pub.source not in known_sources:
                raise EvidenceError(f"{s.id}.yaml: study {s.id!r}: field publications[{i}].source: unknown source {pub.source!r}")
        for i, ln in enumerate(s.links):
            if ln.trial not in trial_ids:
                raise EvidenceError(f"{s.id}.yaml: study {s.id!r}: field links[{i}].trial: unknown trial {ln.trial!r}")
            if ln.trial == s.id:
                raise EvidenceError(f"{s.id}.yaml: study {s.id!r}: field links[{i}].trial: a trial cannot link to itself")
    for sy in syntheses:
        for i, t in enumerate(sy.included_trials):
            if t not in trial_ids:
                raise EvidenceError(f"{sy.id}.yaml: synthesis {sy.id!r}: field included_trials[{i}]: unknown trial {t!r}")
        for e in sy.estimates:
            if e.primary_of is not None:
                other, _, est = e.primary_of.partition(".")
                target = next((y for y in syntheses if y.id == other), None)
                if target is None or not any(x.id == est for x in list(target.estimates) + list(target.facts)):
                    raise EvidenceError(f"{sy.id}.yaml: synthesis {sy.id!r}: field estimates({e.id}).primary_of: unknown estimate {e.primary_of!r}")
    studies = [_with_publications(s, known_sources) for s in studies]
    return EvidenceBase(tuple(sources), tuple(studies), tuple(syntheses), root)


def _with_publications(study: Study, sources: dict) -> Study:
    """A v1 file lists no publications: every source its values quote becomes one (the review with
    role ``review``), so every trial answers which documents its numbers come from."""
    used: list[str] = []
    for _p, _v, prov in _walk_quantities(study, ""):
        if prov.source not in used:
            used.append(prov.source)
    listed = {p.source for p in study.publications}
    extra = []
    for sid in used:
        if sid in listed:
            continue
        src = sources.get(sid)
        role = "review" if (src is None or src.type == "review") else (
            "secondary summary" if src.type == "secondary summary" else "news" if src.type == "news" else
            "registry" if src.type == "trial-registry results" else "secondary-analysis")
        year = 2020 if sid == DEFAULT_SOURCE else study.year
        extra.append(Publication(source=sid, year=year, role=role, label="values quoted from this source"))
    if not extra:
        return study
    return study.model_copy(update={"publications": list(study.publications) + extra})


__all__ = [
    "EvidenceBase",
    "EvidenceError",
    "load_evidence",
    "load_study_file",
    "load_synthesis_file",
    "render_template",
    "resolve_ref",
    "template_refs",
    "REGIMENS",
]

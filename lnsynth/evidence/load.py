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
    AdverseEvent,
    Fact,
    Outcome,
    Provenance,
    Quantity,
    Source,
    Study,
    Synthesis,
    Text,
    Timepoint,
    format_number,
)

DEFAULT_SOURCE = "peleg2020"
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


def _walk_quantities(obj: Any, prefix: str) -> Iterable[tuple[str, Any, Provenance]]:
    """Yield (field path, value, provenance) for every sourced value inside a model."""
    if isinstance(obj, (Quantity, Timepoint)):
        yield prefix, obj.value, obj.provenance
        return
    if isinstance(obj, Text):
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
                    "n_randomised": s.n_randomised.value if s.n_randomised else None,
                    "follow_up_weeks": s.follow_up.weeks if s.follow_up else None,
                    "arms": ", ".join(a.label for a in s.arms),
                    "regimens": ", ".join(a.regimen for a in s.arms),
                }
            )
        return pd.DataFrame(rows)

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

    def outcomes_frame(self) -> pd.DataFrame:
        """One row per arm-level outcome with events/n (derived flags), percent, rate, mean/SD."""
        rows = []
        for s in self.studies:
            for o in s.outcomes:
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
                    }
                )
        return _keep_printed(pd.DataFrame(rows), rows, ["percent", "rate", "mean", "sd"])

    def adverse_events_frame(self) -> pd.DataFrame:
        rows = []
        for s in self.studies:
            for ae in s.adverse_events:
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
                    }
                )
        return _keep_printed(pd.DataFrame(rows), rows, ["percent"])

    def provenance_rows(self) -> list[ProvenanceRow]:
        rows: list[ProvenanceRow] = []
        for s in self.studies:
            for path, value, prov in _walk_quantities(s, ""):
                rows.append(ProvenanceRow(s.id, path, value, prov.source, prov.location, prov.quote, prov.derived, prov.rule))
        for sy in self.syntheses:
            for path, value, prov in _walk_quantities(sy, ""):
                rows.append(ProvenanceRow(sy.id, path, value, prov.source, prov.location, prov.quote, prov.derived, prov.rule))
        return rows

    def provenance_frame(self, numbers_only: bool = False) -> pd.DataFrame:
        """Columns ``study, field, value, source, location, quote, derived, rule``."""
        rows = [dataclasses.asdict(r) for r in self.provenance_rows()]
        df = pd.DataFrame(rows, columns=["study", "field", "value", "source", "location", "quote", "derived", "rule"])
        if numbers_only:
            df = df[df["value"].map(lambda v: isinstance(v, (int, float)) and not isinstance(v, bool))]
        return df.reset_index(drop=True)


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
    if parts == ["n_randomised"]:
        if study.n_randomised is None:
            raise KeyError(f"{study.id}: n_randomised missing")
        return study.n_randomised.text
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
    sp = root / "sources.yaml"
    if sp.exists():
        raw = _read_yaml(sp) or []
        for i, item in enumerate(raw):
            try:
                sources.append(Source.model_validate(item))
            except ValidationError as exc:
                raise EvidenceError(_format_validation(sp, str(item.get("id", i)), exc, item)) from None
    studies = [load_study_file(p) for p in sorted((root / "studies").glob("*.yaml"))]
    syntheses = [load_synthesis_file(p) for p in sorted((root / "syntheses").glob("*.yaml"))] if (root / "syntheses").is_dir() else []
    ids = [s.id for s in studies] + [s.id for s in syntheses]
    dup = sorted({x for x in ids if ids.count(x) > 1})
    if dup:
        raise EvidenceError(f"duplicate study/synthesis ids across files: {dup}")
    known_sources = {s.id for s in sources}
    if known_sources:
        for s in list(studies) + list(syntheses):
            for path_, _v, prov in _walk_quantities(s, ""):
                if prov.source not in known_sources:
                    raise EvidenceError(
                        f"{s.id}.yaml: study {s.id!r}: field {path_}: unknown source {prov.source!r}; "
                        f"known: {sorted(known_sources)}"
                    )
    return EvidenceBase(tuple(sources), tuple(studies), tuple(syntheses), root)


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

"""Simulator parameters with provenance, loaded from ``params/model.yaml``.

Every parameter carries a ``source`` + verbatim ``quote`` or ``assumption: true`` with the range considered
and why (see the YAML header). Free parameters (``calibrate:``) are fitted by
:mod:`lnsynth.simulate.calibrate`; their YAML ``value`` is only a default.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

import yaml

_GROUPS = ("pk", "pd", "immune", "kidney", "endpoints")


@dataclass(frozen=True)
class Param:
    name: str
    group: str
    value: float
    unit: str | None = None
    source: str | None = None
    quote: str | None = None
    assumption: bool = False
    range: tuple[float, float] | None = None
    why: str | None = None
    prior: tuple[float, float] | None = None
    prior_scale: str | None = None
    note: str | None = None
    leak: str | None = None

    @property
    def calibrated(self) -> bool:
        return self.prior is not None

    @property
    def provenance(self) -> str:
        if self.calibrated:
            return "calibrated"
        if self.source:
            return "sourced"
        return "assumption"


@lru_cache(maxsize=1)
def _raw() -> dict:
    text = resources.files("lnsynth.simulate").joinpath("params/model.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def structures() -> dict[str, dict]:
    """Structural alternatives of the model (``structures:`` in ``params/validation.yaml``): name -> per-parameter
    overrides of ``params/model.yaml`` entries (e.g. a ``calibrate`` block that frees a parameter)."""
    text = resources.files("lnsynth.simulate").joinpath("params/validation.yaml").read_text(encoding="utf-8")
    st = yaml.safe_load(text).get("structures") or {}
    return {"base": {}, **{k: (v or {}).get("overrides", {}) for k, v in st.items() if k != "base"}}


def structure_bank_settings(structure: str | None) -> dict:
    """Calibration-bank settings of a structure (``bank:`` of ``structures`` in params/validation.yaml,
    over the top-level ``bank:``)."""
    text = resources.files("lnsynth.simulate").joinpath("params/validation.yaml").read_text(encoding="utf-8")
    raw = yaml.safe_load(text)
    out = dict(raw.get("bank") or {})
    st = (raw.get("structures") or {}).get(structure or "base") or {}
    out.update(st.get("bank") or {})
    return out


def structure_notes() -> dict[str, str]:
    text = resources.files("lnsynth.simulate").joinpath("params/validation.yaml").read_text(encoding="utf-8")
    st = yaml.safe_load(text).get("structures") or {}
    return {k: (v or {}).get("why", "") for k, v in st.items()}


def load_param_table(structure: str | None = None) -> dict[str, Param]:
    """All parameters keyed by name, with their provenance (``structure``: a structural alternative from
    ``params/validation.yaml``; None or "base" = params/model.yaml as is)."""
    raw = _raw()
    over = {}
    if structure not in (None, "base"):
        sts = structures()
        if structure not in sts:
            raise ValueError(f"unknown model structure {structure!r}; valid: {', '.join(sts)}")
        over = sts[structure]
    out: dict[str, Param] = {}
    for g in _GROUPS:
        for name, d in raw[g].items():
            if name in over:
                d = {**d, **over[name]}
            cal = d.get("calibrate")
            out[name] = Param(
                name=name,
                group=g,
                value=float(d["value"]),
                unit=d.get("unit"),
                source=d.get("source"),
                quote=d.get("quote"),
                assumption=bool(d.get("assumption", False)),
                range=tuple(d["range"]) if d.get("range") is not None else None,
                why=d.get("why"),
                prior=tuple(cal["prior"]) if cal else None,
                prior_scale=cal.get("scale", "linear") if cal else None,
                note=d.get("note"),
                leak=d.get("leak"),
            )
    return out


def model_version() -> int:
    """Version of ``params/model.yaml`` (changes are recorded in ``params/CHANGELOG.md``)."""
    return int(_raw().get("version", 1))


def leaks() -> dict[str, str]:
    """Parameters whose value, prior or role was chosen after looking at held-out outcomes (name -> note)."""
    return {k: p.leak for k, p in load_param_table().items() if p.leak}


def sources() -> dict[str, dict]:
    return copy.deepcopy(_raw().get("sources", {}))


def default_params() -> dict[str, float]:
    """Name -> value (defaults; calibrated parameters at their YAML default)."""
    return {k: p.value for k, p in load_param_table().items()}


def free_parameters(structure: str | None = None) -> list[Param]:
    return [p for p in load_param_table(structure).values() if p.calibrated]


def check_provenance() -> list[str]:
    """Problems with parameter provenance (empty list when every parameter is documented)."""
    problems = []
    srcs = sources()
    for p in load_param_table().values():
        if p.calibrated:
            if not p.why:
                problems.append(f"{p.name}: calibrated parameter without 'why'")
            continue
        if p.source:
            if p.source not in srcs:
                problems.append(f"{p.name}: unknown source {p.source!r}")
            if not p.quote:
                problems.append(f"{p.name}: source without quote")
        elif p.assumption:
            if p.range is None or not p.why:
                problems.append(f"{p.name}: assumption needs range and why")
        else:
            problems.append(f"{p.name}: neither source nor assumption")
    return problems


def provenance_frame():
    import pandas as pd

    rows = []
    srcs = sources()
    for p in load_param_table().values():
        rows.append(
            {
                "parameter": p.name,
                "module": p.group,
                "value": p.value,
                "unit": p.unit or "",
                "provenance": p.provenance,
                "source": (srcs.get(p.source, {}).get("title", p.source) if p.source else ""),
                "address": (srcs.get(p.source, {}).get("address", "") if p.source else ""),
                "quote": p.quote or "",
                "range_or_prior": str(p.prior if p.calibrated else p.range),
                "why": p.why or "",
                "leak": p.leak or "",
            }
        )
    return pd.DataFrame(rows)


@dataclass
class ParamSet:
    values: dict[str, float] = field(default_factory=default_params)

    def with_(self, **kw) -> "ParamSet":
        v = dict(self.values)
        for k, x in kw.items():
            if k not in v:
                raise KeyError(f"unknown parameter {k!r}")
            v[k] = float(x)
        return ParamSet(v)

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


def load_param_table() -> dict[str, Param]:
    """All parameters keyed by name, with their provenance."""
    raw = _raw()
    out: dict[str, Param] = {}
    for g in _GROUPS:
        for name, d in raw[g].items():
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
            )
    return out


def sources() -> dict[str, dict]:
    return copy.deepcopy(_raw().get("sources", {}))


def default_params() -> dict[str, float]:
    """Name -> value (defaults; calibrated parameters at their YAML default)."""
    return {k: p.value for k, p in load_param_table().items()}


def free_parameters() -> list[Param]:
    return [p for p in load_param_table().values() if p.calibrated]


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

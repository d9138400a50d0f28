"""Virtual-trial protocols (``protocols/*.yaml``) and their weekly schedules.

A protocol is linked to a stored trial (``study`` = evidence study id) and lists arms (``arm`` = stored arm
id), drugs with doses/targets and week ranges, steroid schemes, population modifiers, the randomisation
week (maintenance trials simulate the induction run-in first), an optional entry condition, and the
endpoint definitions with their default timepoints. Every choice carries provenance (``quote`` from the
review or a public page, or ``assumption``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

import numpy as np
import yaml

from . import pk as _pk
from .engine import Population, Schedule
from .pd import ec50_for

WEIGHT_KG = 60.0  # assumption: typical LN patient weight for mg/kg -> mg (see protocols' notes)
STEROID_UNIT_MG = 36.0  # 0.6 mg/kg/day x 60 kg = 1 steroid unit


def steroid_scheme(name: str, weeks: int, start: int = 0, maint_mg: float | None = None) -> np.ndarray:
    """Prednisone mg/day per week (pulse methylprednisolone counted as extra units in week 0).

    ``high``: 0.6 mg/kg/day for 4 weeks, -5 mg/day every 2 weeks, then -2.5 mg/day every 2 weeks to
    10 mg/day (Liu 2015 schedule as reported: liu2015_news). ``low``: rapid taper 25 -> 2.5 mg/day by week 16
    (AURA-LV 'rapidly tapered corticosteroids', peleg2020; exact doses assumed). ``maint``: constant
    ``maint_mg`` (default 7.5 mg/day, assumption).
    """
    mg = np.zeros(weeks)
    if name == "high":
        d = 36.0
        for w in range(start, weeks):
            k = w - start
            if k < 4:
                d = 36.0
            elif d > 20.0:
                d = max(20.0, 36.0 - 5.0 * ((k - 4) // 2 + 1))
            else:
                d = max(maint_mg or 10.0, 20.0 - 2.5 * ((k - 4 - 6) // 2 + 1))
            mg[w] = d
        if start < weeks:
            mg[start] += 3 * 36.0  # pulse methylprednisolone x3 days ~ extra units in week 0 (assumption)
    elif name == "low":
        for w in range(start, weeks):
            k = w - start
            mg[w] = max(2.5, 25.0 - 22.5 * k / 16.0)
    elif name == "maint":
        mg[start:] = maint_mg if maint_mg is not None else 7.5
    elif name == "none":
        pass
    else:
        raise ValueError(f"unknown steroid scheme {name!r}")
    return mg / STEROID_UNIT_MG


@dataclass
class ArmSpec:
    arm: str
    regimen: str
    drugs: list[dict]
    label: str = ""


@dataclass
class EndpointSpec:
    name: str
    kind: str  # cr | pr | or | flare | flare_rate | relapse | composite
    week: float | None
    opts: dict = field(default_factory=dict)


@dataclass
class Protocol:
    id: str
    study: str | None
    label: str
    weeks: int
    visit_every: int
    randomise_week: int
    entry: str | None
    population: Population
    arms: list[ArmSpec]
    endpoints: dict[str, EndpointSpec]
    use_endpoints: list[str] | None
    raw: dict
    sens_shift: float = 0.0
    entry_week: int | None = None

    def arm(self, arm_id: str) -> ArmSpec:
        for a in self.arms:
            if a.arm == arm_id:
                return a
        raise KeyError(arm_id)


def _v(x):
    return x["value"] if isinstance(x, dict) else x


def parse_protocol(d: dict) -> Protocol:
    pop = d.get("population", {})
    population = Population(
        upcr_median=float(_v(pop.get("upcr_median", 3.0))),
        upcr_log_sd=float(_v(pop.get("upcr_log_sd", 0.6))),
        egfr_mean=float(_v(pop.get("egfr_mean", 90.0))),
        egfr_sd=float(_v(pop.get("egfr_sd", 25.0))),
    )
    sens_shift = float(_v(pop.get("sens_shift", 0.0)))
    arms = [ArmSpec(a["arm"], a["regimen"], a["drugs"], a.get("label", a["arm"])) for a in d["arms"]]
    eps = {}
    for name, e in d.get("endpoints", {}).items():
        e = dict(e)
        kind = e.pop("kind")
        week = e.pop("week", None)
        for k in ("quote", "assumption", "why", "loc", "source", "note", "leak"):
            e.pop(k, None)
        eps[name] = EndpointSpec(name, kind, None if week is None else float(week), e)
    return Protocol(
        id=d["id"],
        study=d.get("study"),
        label=d.get("label", d["id"]),
        weeks=int(_v(d["weeks"])),
        visit_every=int(d.get("visit_every", 4)),
        randomise_week=int(_v(d.get("randomise_week", 0))),
        entry=d.get("entry"),
        population=population,
        arms=arms,
        endpoints=eps,
        use_endpoints=d.get("use_endpoints"),
        raw=d,
        sens_shift=sens_shift,
        entry_week=int(_v(d["entry_week"])) if d.get("entry_week") is not None else None,
    )


@lru_cache(maxsize=None)
def _load_all() -> dict[str, Protocol]:
    out = {}
    root = resources.files("lnsynth.simulate").joinpath("protocols")
    for f in sorted(root.iterdir(), key=lambda x: x.name):
        if f.name.endswith(".yaml"):
            p = parse_protocol(yaml.safe_load(f.read_text(encoding="utf-8")))
            out[p.id] = p
    return out


def load_protocols() -> dict[str, Protocol]:
    """All protocol files keyed by protocol id."""
    return dict(_load_all())


def trial_protocols() -> dict[str, Protocol]:
    """Protocols linked to a stored trial (``study`` set)."""
    return {k: v for k, v in _load_all().items() if v.study}


def build_schedule(arm: ArmSpec, weeks: int, p: dict) -> Schedule:
    """Weekly input arrays for one arm from its drug list and the PK/PD parameters ``p``."""
    css = np.zeros(weeks)
    ec50 = np.full(weeks, np.nan)
    decay = np.zeros(weeks)
    bg = np.zeros(weeks)
    cyc = np.zeros(weeks)
    ster = np.zeros(weeks)
    for dr in arm.drugs:
        name = dr["drug"]
        w0 = int(dr.get("from", 0))
        w1 = min(int(dr.get("to", weeks)), weeks)
        if w1 <= w0:
            continue
        ww = np.arange(w0, w1)
        lv0 = float(dr.get("level", 0.0))
        lv1 = float(dr.get("level_end", lv0))
        lev = lv0 + (lv1 - lv0) * (ww - w0) / max(w1 - w0 - 1, 1)
        if name in _pk.CNI_CODES:
            mode = dr["mode"]
            css[ww] = [_pk.reference_level(name, mode, x, p) for x in lev]
            ec50[ww] = ec50_for(name, p)
            decay[ww] = _pk.weekly_decay(_pk.half_life(name, p))
        elif name == "MMF":
            bg[ww] += lev / p["mmf_unit_g_day"]
        elif name == "AZA":
            bg[ww] += p["aza_units"] * (lev if "level" in dr else 1.0)
        elif name in ("IVCYC", "CYC"):
            units = p["nih_cyc_units"] * (lev if "level" in dr else np.ones(len(ww)))
            cyc[ww] += units
            tail = np.arange(w1, weeks)
            cyc[tail] += units[-1] * np.exp(-(tail - w1 + 1) / p["cyc_persist_weeks"])
        elif name == "PRED":
            ster += steroid_scheme(dr.get("scheme", "high"), weeks, start=w0, maint_mg=dr.get("maint_mg"))
            if "to" in dr:
                ster[w1:] = 0.0
                if dr.get("then_maint_mg") is not None:
                    ster[w1:] = float(dr["then_maint_mg"]) / STEROID_UNIT_MG
        else:
            raise ValueError(f"unknown drug {name!r} in arm {arm.arm}")
    # A week with no CNI keeps decaying from the last CNI's level: use the last CNI's decay factor.
    last, last_ec50 = 0.0, 1.0
    for w in range(weeks):
        if decay[w] > 0:
            last, last_ec50 = decay[w], ec50[w]
        elif css[w] == 0:
            decay[w] = last
            ec50[w] = last_ec50
    return Schedule(weeks, css, ec50, decay, bg, cyc, ster)

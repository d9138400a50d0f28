"""Trial designs for the trial predictor (issue 23): the input schema of ``lnsynth simulate predict`` and the
stored trials' design facts (``params/design.yaml``) joined to their scored rows.

A design holds only facts fixed before outcomes::

    trials:
      - id: mytrial
        year: 2027
        region: multinational        # REGIONS
        population: {baseline_upcr: 3.5, class_v_share: null, black_share: null, asian_share: null,
                     hispanic_share: null, relapsed_share: null}
        arms: [{id: a, regimen: PBO+MMF, phase: induction, steroid: low, n: 150}]
        rows: [{arm: a, endpoint_family: complete_remission, week: 52, upcr_max: 0.5, analysis_set: itt, n: 150}]

Unknown fields or codes raise :class:`DesignError` naming every one of them (the CLI exits 2).

Examples
--------
>>> d = parse_design({"trials": [{"id": "x", "year": 2027, "region": "europe", "population": {},
...     "arms": [{"id": "a", "regimen": "MMF", "phase": "induction", "steroid": None, "n": 10}],
...     "rows": [{"arm": "a", "endpoint_family": "overall_remission", "week": 24, "n": 10}]}]})
>>> d[0].rows[0].n
10
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

REGIONS = ("multinational", "east-asia", "south-asia", "europe", "north-america", "latin-america",
           "middle-east-africa", "other")
STEROIDS = ("high", "reduced", "low")
PHASES = ("induction", "maintenance")
FAMILIES = ("complete_remission", "overall_remission", "flare", "treatment_failure")
POPULATION_FIELDS = ("baseline_upcr", "class_v_share", "black_share", "asian_share", "hispanic_share",
                     "relapsed_share")
#: evidence regimen codes (``regimen`` of lnsynth/evidence/data/studies/*.yaml outcomes, 2026-12-08)
REGIMENS = ("AZA", "BEL+SOC", "CSA", "CYC", "IVCYC", "IVCYC-HIGH", "IVCYC-LOW", "MMF", "OBI+MMF", "PBO+MMF",
            "PBO+SOC", "PRED", "TAC", "TAC+AZA", "TAC+MMF", "VCS23.7+MMF", "VCS39.5+MMF")
#: evidence regimen class of each code (used by the meta-analytic null)
REGIMEN_CLASS = {"AZA": "AZA", "BEL+SOC": "BEL+SOC", "CSA": "CNI", "CYC": "CYC", "IVCYC": "IVCYC",
                 "IVCYC-HIGH": "IVCYC", "IVCYC-LOW": "IVCYC", "MMF": "MMF", "OBI+MMF": "OBI+MMF", "PBO+MMF": "MMF",
                 "PBO+SOC": "SOC", "PRED": "PRED", "TAC": "CNI", "TAC+AZA": "CNI+AZA", "TAC+MMF": "CNI+MMF",
                 "VCS23.7+MMF": "CNI+MMF", "VCS39.5+MMF": "CNI+MMF"}
TRIAL_FIELDS = ("id", "year", "region", "population", "arms", "rows")
ARM_FIELDS = ("id", "regimen", "phase", "steroid", "n")
ROW_FIELDS = ("arm", "endpoint_family", "week", "upcr_max", "analysis_set", "n")
#: protocol endpoint kind -> predictor family (composite and flare-rate rows are not predicted)
KIND_FAMILY = {"cr": "complete_remission", "or": "overall_remission", "pr": "overall_remission",
               "flare": "flare", "relapse": "flare"}


class DesignError(ValueError):
    """Invalid design file: the message names every offending field or code."""


@dataclass(frozen=True)
class Arm:
    id: str
    regimen: str
    phase: str
    steroid: str | None
    n: int


@dataclass(frozen=True)
class Row:
    arm: str
    endpoint_family: str
    week: float
    n: int
    upcr_max: float | None = None
    analysis_set: str | None = None


@dataclass
class TrialDesign:
    id: str
    year: int | None
    region: str | None
    population: dict
    arms: dict[str, Arm]
    rows: list[Row]
    events: list[int | None] = field(default_factory=list)  # stored outcomes only (never read from a FILE)


def _num(v, where: str, errs: list, lo: float | None = None, hi: float | None = None, integer: bool = False):
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        errs.append(f"{where}: not a number ({v!r})")
        return None
    if integer and int(v) != v:
        errs.append(f"{where}: not a whole number ({v!r})")
        return None
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        errs.append(f"{where}: {v!r} outside [{lo}, {hi}]")
        return None
    return int(v) if integer else float(v)


def _unknown(d: dict, allowed, where: str, errs: list) -> None:
    for k in d:
        if k not in allowed:
            errs.append(f"{where}: unknown field {k!r} (allowed: {', '.join(allowed)})")


def _code(v, allowed, where: str, errs: list, nullable: bool = True):
    if v is None and nullable:
        return None
    if v not in allowed:
        errs.append(f"{where}: unknown code {v!r} (valid: {', '.join(allowed)})")
        return None
    return v


def parse_design(obj, source: str = "design") -> list[TrialDesign]:
    """Validate a design object (parsed YAML/JSON) and return its trials; :class:`DesignError` lists every
    unknown field or code, missing required field and bad value (file / trial / arm / row)."""
    errs: list[str] = []
    if not isinstance(obj, dict):
        raise DesignError(f"{source}: top level must be a mapping with key 'trials'")
    _unknown(obj, ("trials",), source, errs)
    trials = obj.get("trials")
    if not isinstance(trials, list) or not trials:
        raise DesignError("; ".join(errs + [f"{source}: 'trials' must be a non-empty list"]))
    out, seen = [], set()
    for i, t in enumerate(trials):
        w = f"{source}: trials[{i}]"
        if not isinstance(t, dict):
            errs.append(f"{w}: not a mapping")
            continue
        _unknown(t, TRIAL_FIELDS, w, errs)
        tid = t.get("id")
        if not isinstance(tid, str) or not tid:
            errs.append(f"{w}: missing 'id'")
            tid = f"#{i}"
        w = f"{source}: trial {tid}"
        if tid in seen:
            errs.append(f"{w}: duplicate id")
        seen.add(tid)
        year = _num(t.get("year"), f"{w}: year", errs, 1950, 2100, integer=True)
        region = _code(t.get("region"), REGIONS, f"{w}: region", errs)
        pop = t.get("population") or {}
        if not isinstance(pop, dict):
            errs.append(f"{w}: population must be a mapping")
            pop = {}
        _unknown(pop, POPULATION_FIELDS, f"{w}: population", errs)
        popv = {}
        for k in POPULATION_FIELDS:
            hi = None if k == "baseline_upcr" else 1.0
            popv[k] = _num(pop.get(k), f"{w}: population.{k}", errs, 0.0, hi)
        arms: dict[str, Arm] = {}
        for j, a in enumerate(t.get("arms") or []):
            wa = f"{w}: arms[{j}]"
            if not isinstance(a, dict):
                errs.append(f"{wa}: not a mapping")
                continue
            _unknown(a, ARM_FIELDS, wa, errs)
            aid = a.get("id")
            if not isinstance(aid, str) or not aid:
                errs.append(f"{wa}: missing 'id'")
                continue
            reg = _code(a.get("regimen"), REGIMENS, f"{wa}: regimen", errs, nullable=False)
            ph = _code(a.get("phase", "induction"), PHASES, f"{wa}: phase", errs, nullable=False)
            st = _code(a.get("steroid"), STEROIDS, f"{wa}: steroid", errs)
            n = _num(a.get("n"), f"{wa}: n", errs, 1, None, integer=True)
            if aid in arms:
                errs.append(f"{wa}: duplicate arm id {aid!r}")
            arms[aid] = Arm(aid, reg or "", ph or "induction", st, n or 0)
        if not arms:
            errs.append(f"{w}: no arms")
        rows = []
        for j, r in enumerate(t.get("rows") or []):
            wr = f"{w}: rows[{j}]"
            if not isinstance(r, dict):
                errs.append(f"{wr}: not a mapping")
                continue
            _unknown(r, ROW_FIELDS, wr, errs)
            arm = r.get("arm")
            if arm not in arms:
                errs.append(f"{wr}: arm {arm!r} not among the trial's arms ({', '.join(arms)})")
            fam = _code(r.get("endpoint_family"), FAMILIES, f"{wr}: endpoint_family", errs, nullable=False)
            week = _num(r.get("week"), f"{wr}: week", errs, 1, 1040)
            if week is None and "week" not in r:
                errs.append(f"{wr}: missing 'week'")
            n = _num(r.get("n"), f"{wr}: n", errs, 1, 100000, integer=True)
            if n is None:
                n = arms[arm].n if arm in arms and arms[arm].n else None
                if n is None:
                    errs.append(f"{wr}: missing 'n' (neither the row nor its arm gives one)")
            c = _num(r.get("upcr_max"), f"{wr}: upcr_max", errs, 0.01, 20)
            aset = r.get("analysis_set")
            if aset is not None and not isinstance(aset, str):
                errs.append(f"{wr}: analysis_set must be a string or null")
            if week is not None and n is not None and fam and arm in arms:
                rows.append(Row(arm, fam, week, n, c, aset))
        if not rows and not t.get("rows"):
            errs.append(f"{w}: no rows to predict")
        out.append(TrialDesign(tid, year, region, popv, arms, rows))
    if errs:
        raise DesignError("; ".join(errs))
    return out


def load_design_file(path: str | Path) -> list[TrialDesign]:
    """Read a design FILE (YAML or JSON) and validate it (:func:`parse_design`)."""
    import json

    import yaml

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise DesignError(f"{p}: cannot read ({e.strerror})") from None
    try:
        obj = json.loads(text) if p.suffix.lower() == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as e:
        raise DesignError(f"{p}: not valid {'JSON' if p.suffix.lower() == '.json' else 'YAML'} ({e})") from None
    return parse_design(obj, str(p))


# ------------------------------------------------------------------------------------------ stored trials
@lru_cache(maxsize=1)
def design_params() -> dict:
    """``params/design.yaml`` (design facts of the stored trials, with provenance)."""
    from importlib import resources

    import yaml

    return yaml.safe_load(resources.files("lnsynth.simulate").joinpath("params/design.yaml")
                          .read_text(encoding="utf-8"))


def _val(x):
    return x.get("value") if isinstance(x, dict) else x


def stored_trials(ev=None, sets: tuple[str, ...] = ("loto", "external")) -> list[TrialDesign]:
    """Stored trials as designs with their observed counts (``events``), built from the validation protocol's
    binomial rows of the predictor's families (held-out rows only) and ``params/design.yaml``
    (``TrialDesign.rows`` aligned with ``TrialDesign.events``)."""
    by: dict = {}
    for t, _, _ in stored_targets(ev, sets):
        by.setdefault(t.id, t)
    return list(by.values())


@lru_cache(maxsize=4)
def _stored(sets: tuple[str, ...]):
    from .calibrate import external_targets, targets, trial_protocols

    dp = design_params()["trials"]
    prots = trial_protocols()
    tg = []
    if "loto" in sets:
        tg += targets()
    if "external" in sets:
        tg += external_targets()
    trials: dict[str, TrialDesign] = {}
    out = []
    for t in tg:
        prot = prots[t.trial]
        kind = prot.endpoints[t.endpoint].kind
        fam = KIND_FAMILY.get(kind)
        if t.kind != "binom" or fam is None or not t.held_out:
            continue
        d = dp.get(t.trial)
        if d is None:
            raise ValueError(f"params/design.yaml: no design for stored trial {t.trial!r}")
        if t.trial not in trials:
            pop = {k: None for k in POPULATION_FIELDS}
            for k, v in (d.get("population") or {}).items():
                if k in pop:
                    pop[k] = _val(v)
            st = _val(d.get("steroid"))
            arms = {}
            for a in prot.arms:
                n = max([x.n for x in tg if x.trial == t.trial and x.arm == a.arm] or [0])
                arms[a.arm] = Arm(a.arm, a.regimen, (d.get("arms") or {}).get(a.arm, "induction"), st, n)
            trials[t.trial] = TrialDesign(t.trial, d.get("year"), _val(d.get("region")), pop, arms, [], [])
        ed = (d.get("endpoints") or {}).get(t.endpoint) or {}
        row = Row(t.arm, fam, float(t.week), int(t.n), _val(ed.get("upcr_max")), ed.get("analysis_set"))
        trials[t.trial].rows.append(row)
        trials[t.trial].events.append(int(t.events))
        out.append((trials[t.trial], t, len(trials[t.trial].rows) - 1))
    return out


def stored_targets(ev=None, sets: tuple[str, ...] = ("loto", "external")):
    """[(TrialDesign, Target, k)] for every stored row the predictor scores; ``k`` indexes the design's
    ``rows``/``events``."""
    return _stored(tuple(sets))

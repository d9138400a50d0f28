"""Schema of the evidence base (pydantic v2).

Every number stored in lnsynth is a :class:`Quantity`: the value *as printed*
(``63.0`` stays ``63.0``; ``5.47`` stays ``5.47``), its unit, and a
:class:`Provenance` saying which document, where in it, and the verbatim quote it
came from.  A number computed from printed numbers (a count from a percentage, an
arm size from N minus the other arms) is ``derived=True`` with the ``rule`` used,
and when more than one integer fits the printed figure every candidate is kept in
``candidates``.

Hard errors (schema violations) raise :class:`pydantic.ValidationError`; the loader
re-raises them as :class:`EvidenceError` naming file, study and field.  Suspected
errors *in the source* (a denominator that differs from the arm size, a percentage
no count reproduces) are not schema errors: the printed value is kept and
:mod:`lnsynth.evidence.checks` reports them as warnings.
"""

from __future__ import annotations

from typing import Annotated, Literal, Optional, Union

from pydantic import AfterValidator, Field, field_validator, model_validator

from lnsynth import registry
from lnsynth.evidence.rob import (  # noqa: F401  (re-exported: public import path)
    NO_INFORMATION, NO_INFORMATION_MAPS_TO, ROB_CONTRACT_KEYS, ROB_DOMAINS, ROB_JUDGEMENTS, RiskOfBias,
    RobJudgement, _rob_alias,
)
from lnsynth.evidence.values import (  # noqa: F401  (re-exported: public import path)
    MAX_EXTERNAL_QUOTE, SECONDARY_TYPES, SOURCE_TYPES, Number, Provenance, Quantity, Source, Text, _Frozen,
    format_number,
)


class Drug(_Frozen):
    name: str
    dose: Optional[Text] = None
    target_level: Optional[Text] = None
    numbers: list["Fact"] = Field(default_factory=list)


class Arm(_Frozen):
    """A randomised (or observed) group.

    ``regimen`` is a normalised code used by the analyses (see ``REGIMENS``);
    ``label`` is the arm as the source prints it (e.g. ``"Tacrolimus/MMF"``).
    """

    id: str = Field(pattern=r"^[a-z0-9_]+$")
    label: str
    regimen: str
    drugs: list[Drug] = Field(default_factory=list)
    background: Optional[Text] = None
    phase: Literal["induction", "maintenance", "induction+maintenance"] = "induction"
    n: Optional[Quantity] = None

    @field_validator("regimen")
    @classmethod
    def _known_regimen(cls, v: str) -> str:
        if v not in REGIMENS:
            raise ValueError(f"unknown regimen {v!r}; known: {sorted(REGIMENS)}")
        return v

    @field_validator("n")
    @classmethod
    def _n_positive(cls, q: Optional[Quantity]) -> Optional[Quantity]:
        if q is not None and (not isinstance(q.value, int) or q.value <= 0):
            raise ValueError(f"arm size must be a positive integer, got {q.value!r}")
        return q


class Timepoint(_Frozen):
    """A timepoint as printed (value + unit) with provenance; ``weeks`` converts it."""

    value: Number
    unit: Literal["week", "month", "year"]
    provenance: Provenance
    qualifier: Optional[str] = None  # e.g. "median", "end of induction"
    reported_weeks: Optional[Quantity] = None  # the same timepoint where the source also prints it in weeks

    @property
    def weeks(self) -> float:
        """Weeks: as the source prints them when it does (``reported_weeks``: Table 1's "24 wk" for
        "6 mo"), else 1 month = 52/12 weeks and 1 year = 52 weeks (a conversion, not data)."""
        if self.reported_weeks is not None:
            return float(self.reported_weeks.value)
        return float(self.value) * {"week": 1.0, "month": 52.0 / 12.0, "year": 52.0}[self.unit]

    @property
    def text(self) -> str:
        return f"{format_number(self.value)} {self.unit}{'' if self.value == 1 else 's'}"


ENDPOINTS = {
    "complete remission",
    "partial remission",
    "overall remission",
    "kidney response",
    "no response",
    "remission",
    "at least partial remission",
    "kidney flare",
    "kidney relapse",
    "treatment failure",
    "kidney failure",
    "relapse",
    "composite kidney outcome",
    "adverse events",
    "serious adverse events",
    "withdrawal due to adverse events",
    "death",
    "activity index",
    "chronicity index",
    "eGFR decline",
    "doubling of serum creatinine",
    "end-stage kidney disease",
    "disease activity remission",
    "proteinuria",
    "eGFR",
}


def _known_endpoint(v: str) -> str:
    if v not in ENDPOINTS:
        raise ValueError(f"unknown endpoint {v!r}; known: {sorted(ENDPOINTS)}")
    return v


Endpoint = Annotated[str, AfterValidator(_known_endpoint)]
"""An endpoint name of :data:`ENDPOINTS` (outcomes and contrasts)."""


def _check_counts(events: Optional[Quantity], n: Optional[Quantity]) -> None:
    """events: non-negative integer; n: positive integer; events <= n (shared by outcomes and AEs)."""
    if events is not None and (not isinstance(events.value, int) or events.value < 0):
        raise ValueError(f"events must be a non-negative integer, got {events.value!r}")
    if n is not None and (not isinstance(n.value, int) or n.value <= 0):
        raise ValueError(f"n must be a positive integer, got {n.value!r}")
    if events is not None and n is not None and events.value > n.value:
        raise ValueError(f"events ({events.value}) > n ({n.value})")


ANALYSIS_SETS = (
    "ITT",
    "mITT",
    "per-protocol",
    "safety",
    "completers",
    "biopsied subset",
    "responders",
    "not stated",
)
"""Analysis set (which patients a record's denominator counts)."""


class Criterion(_Frozen):
    """One part of an outcome definition (a threshold with its unit, or a condition), sourced.

    ``proteinuria: {value: 0.5, unit: "mg/mg UPCR", comparator: "<="}``;
    ``egfr: {value: "no decrease >20% from baseline"}``.
    """

    value: Union[Number, str]
    unit: Optional[str] = None
    comparator: Optional[Literal["<", "<=", ">", ">=", "="]] = None
    provenance: Provenance


class OutcomeCriteria(_Frozen):
    """A structured outcome definition: proteinuria threshold, eGFR criterion, steroid and rescue
    conditions.  Each part is optional and sourced; absent means the source does not state it."""

    proteinuria: Optional[Criterion] = None
    egfr: Optional[Criterion] = None
    steroid: Optional[Criterion] = None
    rescue: Optional[Criterion] = None
    other: Optional[Criterion] = None


class Outcome(_Frozen):
    """An arm-level result: a proportion (percent and/or events/n), a rate, or a continuous summary.

    ``events`` may be derived from ``percent`` and ``n`` (then ``derived`` with the rule
    and, where several counts fit, ``candidates``).  ``n`` is the record's own denominator
    when it differs from the arm size (a biopsied subset, a per-protocol set); ``analysis_set``
    says which patients it counts.  Rates carry their ``person_time``; continuous outcomes carry
    mean/SD or median/quartiles, with ``change`` true for change from baseline (false: final value).
    """

    id: str = Field(pattern=r"^[a-z0-9_]+$")
    arm: str
    endpoint: Endpoint
    definition: Optional[Text] = None
    timepoint: Optional[Timepoint] = None
    phase: Optional[str] = None
    percent: Optional[Quantity] = None
    events: Optional[Quantity] = None
    n: Optional[Quantity] = None
    rate: Optional[Quantity] = None
    mean: Optional[Quantity] = None
    sd: Optional[Quantity] = None
    ci_low: Optional[Quantity] = None
    ci_high: Optional[Quantity] = None
    label: Optional[str] = None  # wording as printed, e.g. "complete remission after induction"
    same_as: Optional[str] = None  # id of another record reporting the same result (checked for agreement)
    primary: Optional[bool] = None  # the publication's primary endpoint
    analysis_set: Optional[Literal[ANALYSIS_SETS]] = None  # type: ignore[valid-type]
    criteria: Optional[OutcomeCriteria] = None
    person_time: Optional[Quantity] = None
    median: Optional[Quantity] = None
    q1: Optional[Quantity] = None
    q3: Optional[Quantity] = None
    change: Optional[bool] = None  # continuous: True = change from baseline, False = final value
    conflict_with: Optional[list[str]] = None  # ids of records (same study) from another source that disagree
    conflict_note: Optional[str] = None  # what the disagreement is

    @model_validator(mode="after")
    def _consistent(self) -> "Outcome":
        if all(getattr(self, f) is None for f in ("percent", "events", "rate", "mean", "median")):
            raise ValueError("an outcome needs at least one of percent, events, rate, mean, median")
        if self.person_time is not None and self.rate is None and self.events is None:
            raise ValueError("person_time given without a rate or events")
        if self.person_time is not None and not (self.person_time.value > 0):
            raise ValueError(f"person_time must be > 0, got {self.person_time.value}")
        if self.change is not None and self.mean is None and self.median is None:
            raise ValueError("'change' is only meaningful for a continuous outcome (mean or median)")
        _check_counts(self.events, self.n)
        if self.percent is not None and not (0 <= self.percent.value <= 100):
            raise ValueError(f"percent must be within 0-100, got {self.percent.value}")
        if self.sd is not None and self.sd.value < 0:
            raise ValueError(f"sd must be >= 0, got {self.sd.value}")
        return self


class AdverseEvent(_Frozen):
    """An adverse event count in one arm, as printed (e.g. ``"Pneumonia (13/181)"``)."""

    id: str = Field(pattern=r"^[a-z0-9_]+$")
    arm: str
    event: str  # as printed, e.g. "New HTN"
    category: str  # normalised, e.g. "hypertension", "infection", "death"
    events: Optional[Quantity] = None
    n: Optional[Quantity] = None
    percent: Optional[Quantity] = None
    serious: Optional[bool] = None  # only when the source says the event was serious
    same_as: Optional[str] = None  # id of another record reporting the same event (checked for agreement)
    period: Optional[Literal["induction", "maintenance", "overall"]] = None
    count_type: Optional[Literal["patients", "events"]] = None  # patients with >=1 event, or number of events
    conflict_with: Optional[list[str]] = None  # ids of records (same study) from another source that disagree
    conflict_note: Optional[str] = None

    @model_validator(mode="after")
    def _consistent(self) -> "AdverseEvent":
        if self.events is None and self.percent is None:
            raise ValueError("an adverse event needs events or percent")
        if self.count_type == "events":
            # a number of events may exceed the number of patients: check signs only
            _check_counts(self.events, None)
            _check_counts(None, self.n)
        else:
            _check_counts(self.events, self.n)
        return self


class Fact(_Frozen):
    """Any other quantitative statement about a study (centres, countries, doses, biopsies)."""

    id: str = Field(pattern=r"^[a-z0-9_]+$")
    what: str
    quantity: Quantity
    arm: Optional[str] = None
    same_as: Optional[str] = None  # reference (``n_randomised`` or ``<record id>.<field>``) this fact restates
    conflict_with: Optional[list[str]] = None  # ids of records (same study) from another source that disagree
    conflict_note: Optional[str] = None


class Contrast(_Frozen):
    """A between-arm effect as the source reports it (hazard ratio, odds ratio, mean difference).

    Ratio measures are stored on the ratio scale as printed; ``treatment`` and ``control`` are arm ids.
    """

    id: str = Field(pattern=r"^[a-z0-9_]+$")
    endpoint: Endpoint
    treatment: str
    control: str
    measure: Literal["RR", "OR", "HR", "RD", "MD", "SMD", "IRR"]
    estimate: Quantity
    ci_low: Optional[Quantity] = None
    ci_high: Optional[Quantity] = None
    p_value: Optional[Quantity] = None
    timepoint: Optional[Timepoint] = None
    adjusted: Optional[bool] = None
    analysis_set: Optional[Literal[ANALYSIS_SETS]] = None  # type: ignore[valid-type]
    label: Optional[str] = None

    @model_validator(mode="after")
    def _ordered(self) -> "Contrast":
        lo = self.ci_low.value if self.ci_low else None
        hi = self.ci_high.value if self.ci_high else None
        if lo is not None and hi is not None and not (lo <= self.estimate.value <= hi):
            raise ValueError(f"estimate {self.estimate.value} outside its CI [{lo}, {hi}]")
        if registry.is_ratio(self.measure):
            for name, v in (("estimate", self.estimate.value), ("ci_low", lo), ("ci_high", hi)):
                if v is not None and v <= 0:
                    raise ValueError(f"{name} of a ratio measure must be > 0, got {v}")
        return self


BASELINE_KINDS = ("age", "female", "asian", "race", "egfr", "creatinine", "proteinuria", "class_mix",
                  "prior_therapy", "disease_duration", "other")


class Baseline(_Frozen):
    """A baseline characteristic of one arm (or the whole trial when ``arm`` is omitted)."""

    id: str = Field(pattern=r"^[a-z0-9_]+$")
    what: Literal[BASELINE_KINDS]  # type: ignore[valid-type]
    stat: Literal["mean", "median", "percent", "n", "sd", "iqr_low", "iqr_high", "range_low", "range_high"]
    quantity: Quantity
    arm: Optional[str] = None
    label: Optional[str] = None


class Publication(_Frozen):
    """One report of a trial (the primary article, a follow-up, registry results...)."""

    source: str
    year: int
    role: Literal["primary", "follow-up", "secondary-analysis", "registry", "secondary summary", "news",
                  "review"] = "primary"
    label: Optional[str] = None


LINK_TYPES = ("continuation_of", "maintenance_phase_of", "follow_up_of", "extension_of", "subset_of")


class TrialLink(_Frozen):
    """A typed link to another trial file (e.g. AURORA 2 ``continuation_of`` AURORA 1)."""

    type: Literal[LINK_TYPES]  # type: ignore[valid-type]
    trial: str
    note: Optional[str] = None


class TableCell(_Frozen):
    """How the study's row of a review table is printed.

    ``template`` is the cell's printed wording with ``{ref}`` placeholders; each ref
    names a stored number (``n``, ``follow_up``, ``outcome_id.percent``,
    ``ae_id.events`` ...) so the rebuilt table takes every number from the data.
    """

    template: str


class TableRow(_Frozen):
    table: Literal["table1", "table2"]
    order: int
    cells: dict[str, TableCell]


class Study(_Frozen):
    """A trial (or observational study) as reported in a source."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*[0-9]{4}[a-z0-9_]*$")
    label: str  # as the review prints it, e.g. "Bao et al. 2008"
    acronym: Optional[str] = None
    year: int
    reference: Optional[str] = None  # bibliographic reference as printed in the source's list
    design: Text
    population: Optional[Text] = None
    setting: Optional[Text] = None
    randomised: bool = True
    registration: Optional[str] = None
    n_randomised: Optional[Quantity] = None
    n_enrolled: Optional[Quantity] = None  # non-randomised cohorts and continuations
    follow_up: Optional[Timepoint] = None
    publications: list[Publication] = Field(default_factory=list)
    links: list[TrialLink] = Field(default_factory=list)
    rob: Optional[RiskOfBias] = None
    arms: list[Arm]
    outcomes: list[Outcome] = Field(default_factory=list)
    contrasts: list[Contrast] = Field(default_factory=list)
    adverse_events: list[AdverseEvent] = Field(default_factory=list)
    baseline: list[Baseline] = Field(default_factory=list)
    facts: list[Fact] = Field(default_factory=list)
    tables: list[TableRow] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _references(self) -> "Study":
        arm_ids = [a.id for a in self.arms]
        if len(set(arm_ids)) != len(arm_ids):
            raise ValueError(f"duplicate arm ids in {arm_ids}")
        if not self.arms:
            raise ValueError("a study needs at least one arm")
        known = set(arm_ids)
        for kind, items in (("outcomes", self.outcomes), ("adverse_events", self.adverse_events)):
            for i, it in enumerate(items):
                if it.arm not in known:
                    raise ValueError(f"{kind}[{i}] ({it.id}): unknown arm {it.arm!r}; arms are {sorted(known)}")
        for kind, items in (("facts", self.facts), ("baseline", self.baseline)):
            for i, f in enumerate(items):
                if f.arm is not None and f.arm not in known:
                    raise ValueError(f"{kind}[{i}] ({f.id}): unknown arm {f.arm!r}; arms are {sorted(known)}")
        for i, c in enumerate(self.contrasts):
            for side in ("treatment", "control"):
                if getattr(c, side) not in known:
                    raise ValueError(f"contrasts[{i}] ({c.id}): unknown {side} arm {getattr(c, side)!r}; arms are {sorted(known)}")
        if not self.randomised and self.n_randomised is not None:
            raise ValueError("a non-randomised study has no 'n_randomised'; use 'n_enrolled'")
        if self.n_enrolled is not None and (not isinstance(self.n_enrolled.value, int) or self.n_enrolled.value <= 0):
            raise ValueError(f"n_enrolled must be a positive integer, got {self.n_enrolled.value!r}")
        ids = ([o.id for o in self.outcomes] + [a.id for a in self.adverse_events] + [f.id for f in self.facts]
               + [c.id for c in self.contrasts] + [b.id for b in self.baseline])
        dup = {x for x in ids if ids.count(x) > 1}
        if dup:
            raise ValueError(f"duplicate record ids: {sorted(dup)}")
        for kind, items in (("outcomes", self.outcomes), ("adverse_events", self.adverse_events), ("facts", self.facts)):
            for it in items:
                for other in it.conflict_with or []:
                    if other == it.id or other not in ids:
                        raise ValueError(f"{kind}[{it.id}].conflict_with: {other!r} is not another record of this study")
        if self.n_randomised is not None and (
            not isinstance(self.n_randomised.value, int) or self.n_randomised.value <= 0
        ):
            raise ValueError(f"n_randomised must be a positive integer, got {self.n_randomised.value!r}")
        return self

    @property
    def n_total(self) -> Optional[Quantity]:
        """Patients randomised (randomised trials) or enrolled (others)."""
        return self.n_randomised if self.n_randomised is not None else self.n_enrolled

    @property
    def primary_source(self) -> Optional[str]:
        for p in self.publications:
            if p.role == "primary":
                return p.source
        return self.publications[0].source if self.publications else None

    def arm(self, arm_id: str) -> Arm:
        for a in self.arms:
            if a.id == arm_id:
                return a
        raise KeyError(f"study {self.id}: no arm {arm_id!r}")


class SynthesisEstimate(_Frozen):
    """One pooled estimate of a published meta-analysis."""

    id: str = Field(pattern=r"^[a-z0-9_]+$")
    treatment: str  # regimen code, e.g. "TAC"
    control: str
    outcome: str
    measure: Literal["RR", "OR", "RD", "HR", "MD", "SMD"]
    estimate: Quantity
    ci_low: Quantity
    ci_high: Quantity
    label: Optional[str] = None
    primary_of: Optional[str] = None  # "<synthesis id>.<estimate id>" the primary source prints for this contrast
    k: Optional[Quantity] = None  # number of trials informing the estimate, where printed

    @model_validator(mode="after")
    def _ordered(self) -> "SynthesisEstimate":
        if not (self.ci_low.value <= self.estimate.value <= self.ci_high.value):
            raise ValueError(
                f"estimate {self.estimate.value} outside its CI [{self.ci_low.value}, {self.ci_high.value}]"
            )
        return self


class Synthesis(_Frozen):
    """A published meta-analysis quoted by a source (e.g. Hannah 2016, Palmer 2017)."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*[0-9]{4}[a-z0-9_]*$")
    label: str
    year: int
    reference: Optional[str] = None
    kind: Literal["pairwise", "network"]
    scope: Optional[Text] = None
    n_studies: Optional[Quantity] = None
    n_participants: Optional[Quantity] = None
    included_trials: list[str] = Field(default_factory=list)  # trial ids of this evidence base, where known
    search_date: Optional[Text] = None
    model: Optional[Text] = None
    outcome_definition: Optional[Text] = None
    facts: list[Fact] = Field(default_factory=list)
    estimates: list[SynthesisEstimate] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)


# Normalised regimen codes used by the analyses.
REGIMENS = {
    "TAC": "tacrolimus",
    "CSA": "cyclosporin",
    "MMF": "mycophenolate mofetil",
    "IVCYC": "intravenous cyclophosphamide",
    "CYC": "cyclophosphamide (route not stated)",
    "AZA": "azathioprine",
    "TAC+MMF": "tacrolimus + MMF (multitarget)",
    "VCS23.7+MMF": "voclosporin 23.7 mg twice daily + MMF",
    "VCS39.5+MMF": "voclosporin 39.5 mg twice daily + MMF",
    "PBO+MMF": "placebo + MMF",
    "PRED": "corticosteroids alone",
    "IVCYC-LOW": "low-dose intravenous cyclophosphamide (Euro-Lupus)",
    "IVCYC-HIGH": "high-dose intravenous cyclophosphamide",
    "TAC+AZA": "tacrolimus + azathioprine (modified multitarget)",
    "MPS": "enteric-coated mycophenolate sodium",
    "BEL+SOC": "belimumab + standard therapy (MMF or cyclophosphamide-azathioprine)",
    "PBO+SOC": "placebo + standard therapy (MMF or cyclophosphamide-azathioprine)",
    "OBI+MMF": "obinutuzumab + MMF",
}

REGIMEN_CLASS = {
    "TAC": "CNI",
    "CSA": "CNI",
    "TAC+MMF": "CNI+MMF",
    "VCS23.7+MMF": "CNI+MMF",
    "VCS39.5+MMF": "CNI+MMF",
    "MMF": "MMF",
    "PBO+MMF": "MMF",
    "IVCYC": "IVCYC",
    "IVCYC-LOW": "IVCYC",
    "IVCYC-HIGH": "IVCYC",
    "CYC": "CYC",
    "AZA": "AZA",
    "PRED": "PRED",
    "TAC+AZA": "CNI+AZA",
    "MPS": "MMF",
    "BEL+SOC": "BEL+SOC",
    "PBO+SOC": "SOC",
    "OBI+MMF": "OBI+MMF",
}

Drug.model_rebuild()

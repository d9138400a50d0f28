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

import math
from typing import Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Number = Union[int, float]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)


class Provenance(_Frozen):
    """Where a value comes from.

    Attributes
    ----------
    source : id of a :class:`Source` (e.g. ``"peleg2020"``).
    location : table or section, e.g. ``"Table 1"`` or ``"Text: Multitarget Therapy"``.
    quote : verbatim excerpt of the source that shows the value (or, for a derived
        value, the printed values it was derived from).
    derived : True when the value is computed rather than printed.
    rule : how it was computed (required when ``derived``), e.g.
        ``"round(pct/100*n) with pct=65, n=20"``.
    """

    source: str = Field(min_length=1)
    location: str = Field(min_length=1)
    quote: str = Field(min_length=1)
    derived: bool = False
    rule: Optional[str] = None

    @model_validator(mode="after")
    def _rule_when_derived(self) -> "Provenance":
        if self.derived and not self.rule:
            raise ValueError("derived value needs a 'rule' saying how it was computed")
        if not self.derived and self.rule:
            raise ValueError("'rule' given but 'derived' is false")
        return self


class Quantity(_Frozen):
    """A number with its unit and provenance.

    ``value`` keeps the printed precision: YAML ``63.0`` loads as the float 63.0 and
    is rendered back as ``63.0``; ``60`` stays the integer 60.
    ``candidates`` lists every integer that fits a printed percentage when a count is
    derived and more than one fits (the value is then the one closest to
    ``pct/100*n``).
    """

    value: Number
    unit: Optional[str] = None
    provenance: Provenance
    candidates: Optional[list[int]] = None
    note: Optional[str] = None

    @field_validator("value")
    @classmethod
    def _finite(cls, v: Number) -> Number:
        if isinstance(v, bool):
            raise ValueError("value must be a number, not a boolean")
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError("value must be finite")
        return v

    @model_validator(mode="after")
    def _candidates_derived(self) -> "Quantity":
        if self.candidates is not None:
            if not self.provenance.derived:
                raise ValueError("candidates are only meaningful for a derived value")
            if self.value not in self.candidates:
                raise ValueError(f"value {self.value} is not among its candidates {self.candidates}")
        return self

    @property
    def text(self) -> str:
        """The value as printed (``63.0`` -> ``'63.0'``)."""
        return format_number(self.value)


def format_number(v: Number) -> str:
    """Render a stored number exactly as printed: ints as ints, floats keep their digits."""
    if isinstance(v, int):
        return str(v)
    return repr(float(v))


class Text(_Frozen):
    """A descriptive value (design, population, regimen text) with provenance."""

    value: str = Field(min_length=1)
    provenance: Provenance


class Source(_Frozen):
    id: str = Field(pattern=r"^[a-z0-9_]+$")
    citation: str
    doi: Optional[str] = None
    kind: Literal["review", "trial report", "meta-analysis", "label", "other"] = "review"
    filename: Optional[str] = None


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

    @property
    def weeks(self) -> float:
        """Weeks, using 1 month = 52/12 weeks and 1 year = 52 weeks (a conversion, not data)."""
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
}


def _check_counts(events: Optional[Quantity], n: Optional[Quantity]) -> None:
    """events: non-negative integer; n: positive integer; events <= n (shared by outcomes and AEs)."""
    if events is not None and (not isinstance(events.value, int) or events.value < 0):
        raise ValueError(f"events must be a non-negative integer, got {events.value!r}")
    if n is not None and (not isinstance(n.value, int) or n.value <= 0):
        raise ValueError(f"n must be a positive integer, got {n.value!r}")
    if events is not None and n is not None and events.value > n.value:
        raise ValueError(f"events ({events.value}) > n ({n.value})")


class Outcome(_Frozen):
    """An arm-level result: a proportion (percent and/or events/n), a rate, or mean/SD.

    ``events`` may be derived from ``percent`` and ``n`` (then ``derived`` with the rule
    and, where several counts fit, ``candidates``).
    """

    id: str = Field(pattern=r"^[a-z0-9_]+$")
    arm: str
    endpoint: str
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

    @field_validator("endpoint")
    @classmethod
    def _known_endpoint(cls, v: str) -> str:
        if v not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {v!r}; known: {sorted(ENDPOINTS)}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> "Outcome":
        if all(getattr(self, f) is None for f in ("percent", "events", "rate", "mean")):
            raise ValueError("an outcome needs at least one of percent, events, rate, mean")
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
    serious: Optional[bool] = None
    same_as: Optional[str] = None  # id of another record reporting the same event (checked for agreement)

    @model_validator(mode="after")
    def _consistent(self) -> "AdverseEvent":
        if self.events is None and self.percent is None:
            raise ValueError("an adverse event needs events or percent")
        _check_counts(self.events, self.n)
        return self


class Fact(_Frozen):
    """Any other quantitative statement about a study (centres, countries, doses, biopsies)."""

    id: str = Field(pattern=r"^[a-z0-9_]+$")
    what: str
    quantity: Quantity
    arm: Optional[str] = None
    same_as: Optional[str] = None  # reference (``n_randomised`` or ``<record id>.<field>``) this fact restates


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
    n_randomised: Optional[Quantity] = None
    follow_up: Optional[Timepoint] = None
    arms: list[Arm]
    outcomes: list[Outcome] = Field(default_factory=list)
    adverse_events: list[AdverseEvent] = Field(default_factory=list)
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
        for i, f in enumerate(self.facts):
            if f.arm is not None and f.arm not in known:
                raise ValueError(f"facts[{i}] ({f.id}): unknown arm {f.arm!r}; arms are {sorted(known)}")
        ids = [o.id for o in self.outcomes] + [a.id for a in self.adverse_events] + [f.id for f in self.facts]
        dup = {x for x in ids if ids.count(x) > 1}
        if dup:
            raise ValueError(f"duplicate record ids: {sorted(dup)}")
        if self.n_randomised is not None and (
            not isinstance(self.n_randomised.value, int) or self.n_randomised.value <= 0
        ):
            raise ValueError(f"n_randomised must be a positive integer, got {self.n_randomised.value!r}")
        return self

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
}

Drug.model_rebuild()

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
from datetime import date
from typing import Annotated, Literal, Optional, Union

from pydantic import AfterValidator, AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator

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


SOURCE_TYPES = (
    "review",
    "peer-reviewed article",
    "abstract",
    "conference abstract",
    "trial-registry results",
    "secondary summary",
    "news",
)
"""Kinds of document in the source register.  ``abstract`` is the abstract of a journal article
(e.g. on PubMed); ``secondary summary`` is any document restating another's number (a
meta-analysis, a summary website); ``news`` a press release or news story.  Certainty ratings
downgrade figures that rest only on ``secondary summary`` or ``news``."""

SECONDARY_TYPES = ("secondary summary", "news")

MAX_EXTERNAL_QUOTE = 160
"""Longest quote (characters) stored from a source other than the review: the shortest fragment that
shows the number and what it counts, never more prose than that."""


class Source(_Frozen):
    """One document in the source register.

    ``type`` says what the document is (see :data:`SOURCE_TYPES`); ``url`` is the page actually
    read and ``accessed`` the date it was read; ``mirror_of`` names the canonical page when ``url``
    is a mirror or proxy copy.  The legacy ``kind`` field of v1 files is still accepted.
    """

    id: str = Field(pattern=r"^[a-z0-9_]+$")
    citation: str
    type: Literal[SOURCE_TYPES] = "review"  # type: ignore[valid-type]
    doi: Optional[str] = None
    pmid: Optional[str] = None
    pmcid: Optional[str] = None
    nct: Optional[str] = None
    url: Optional[str] = None
    accessed: Optional[date] = None
    mirror_of: Optional[str] = None
    note: Optional[str] = None
    kind: Optional[Literal["review", "trial report", "meta-analysis", "label", "other"]] = None
    filename: Optional[str] = None

    @field_validator("pmid", "nct", "pmcid", mode="before")
    @classmethod
    def _as_text(cls, v):
        return None if v is None else str(v)

    @model_validator(mode="after")
    def _external_needs_url(self) -> "Source":
        if self.filename is None and self.type != "review":
            if not self.url:
                raise ValueError(f"source {self.id!r} ({self.type}) needs the 'url' of the page read")
            if self.accessed is None:
                raise ValueError(f"source {self.id!r} ({self.type}) needs 'accessed' (date the page was read)")
        return self

    @property
    def external(self) -> bool:
        """True for a source other than a locally held document (the review)."""
        return self.filename is None

    @property
    def secondary(self) -> bool:
        return self.type in SECONDARY_TYPES


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
        if self.measure in ("RR", "OR", "HR", "IRR"):
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


ROB_DOMAINS = ("randomisation", "deviations", "missing_data", "measurement", "selective_reporting")
"""The five domains of the Cochrane risk-of-bias tool for randomised trials (RoB 2; Sterne 2019),
as attribute names of :class:`RiskOfBias` (the YAML also accepts the contract names of
:data:`ROB_CONTRACT_KEYS`)."""

ROB_CONTRACT_KEYS = {"randomisation": "randomisation", "deviations": "deviations", "missing_data": "missing",
                     "measurement": "measurement", "selective_reporting": "selection"}
"""Domain attribute -> key in ``lnsynth trials --format json`` (``rob: {randomisation, deviations,
missing, measurement, selection, overall}``)."""

ROB_JUDGEMENTS = ("low", "some concerns", "high")
"""The three judgements RoB 2 allows for a domain and overall."""

NO_INFORMATION = "no information"

NO_INFORMATION_MAPS_TO = {
    "randomisation": "some concerns",
    "deviations": "high",
    "missing_data": "high",
    "measurement": "high",
    "selective_reporting": "some concerns",
}
"""What the RoB 2 algorithm proposes for a domain whose signalling questions are all answered
"no information" (NI) (Higgins JPT, Savović J, Page MJ, Sterne JAC, RoB 2 guidance, 2019, the
domain algorithms; Cochrane Handbook v6 chapter 8):

randomisation -> some concerns
    1.2 (allocation concealed?) NI and 1.3 (baseline imbalance?) N/PN/NI give *some concerns*.
deviations -> high
    2.1/2.2 (participants/carers aware?) NI and 2.3 NI give *some concerns* for part 1, but 2.6
    (appropriate analysis for the effect of assignment?) NI and 2.7 (substantial impact?) NI give
    *high* for part 2, and the domain takes the worse part.
missing_data -> high
    3.1 (data for nearly all randomised?) NI, 3.2 N/PN (no evidence the result is unbiased),
    3.3 NI, 3.4 NI give *high*.
measurement -> high
    4.1/4.2 NI, 4.3 (assessors aware?) NI, 4.4 NI, 4.5 NI give *high*.
selective_reporting -> some concerns
    5.2/5.3 (result selected from several measurements / analyses?) NI, neither yes, give
    *some concerns*.

A domain is recorded as ``no information`` only when the reachable text says nothing that
answers its key signalling questions; when some are answered the domain gets the judgement the
algorithm proposes, with the quote.  So a bare "randomised" with nothing on concealment is
recorded either as ``some concerns`` quoting that sentence or as ``no information`` (-> some
concerns): both count the same."""


class RobJudgement(_Frozen):
    """One RoB 2 domain judgement for a trial's primary (renal response) result.

    ``judgement`` is ``low``, ``some concerns`` or ``high`` with a quoted ``basis`` (the ``value``
    says which signalling questions the quote answers and how; further quotes go in ``more``), or
    ``no information`` with ``looked_for``: what was looked for and where (``looked_in``: source
    ids), never a silent "unclear".  A ``no information`` domain may still quote what the text does
    say (``basis``), e.g. "open-label" when the deciding question (the analysis set) is unanswered.
    A ``no information`` domain counts as the judgement the RoB 2 algorithm proposes for it
    (:data:`NO_INFORMATION_MAPS_TO`, see :meth:`counts_as`).
    """

    judgement: Literal["low", "some concerns", "high", "no information"]
    basis: Optional[Text] = None
    more: list[Text] = Field(default_factory=list)
    looked_for: Optional[str] = None
    looked_in: list[str] = Field(default_factory=list)

    @field_validator("judgement", mode="before")
    @classmethod
    def _no_unclear(cls, v):
        if isinstance(v, str) and v.strip().lower() == "unclear":
            raise ValueError("'unclear' is not a RoB 2 judgement: record 'no information' with 'looked_for' "
                             "(what was looked for), or low / some concerns / high with its quoted 'basis'")
        return v

    @model_validator(mode="after")
    def _basis(self) -> "RobJudgement":
        if self.judgement == NO_INFORMATION:
            if not self.looked_for or not self.looked_for.strip():
                raise ValueError("judgement 'no information' needs 'looked_for': what was looked for, and where")
        else:
            if self.basis is None:
                raise ValueError(f"judgement {self.judgement!r} needs its quoted 'basis' "
                                 "(or 'no information' with 'looked_for')")
            if self.looked_for is not None or self.looked_in:
                raise ValueError(f"'looked_for'/'looked_in' belong to 'no information', not to {self.judgement!r}")
        return self

    def counts_as(self, domain: str) -> str:
        """The judgement used for the overall rule: itself, or for ``no information`` the RoB 2
        algorithm's proposal for ``domain`` (an attribute name of :data:`ROB_DOMAINS`)."""
        if self.judgement != NO_INFORMATION:
            return self.judgement
        return NO_INFORMATION_MAPS_TO[domain]

    def basis_text(self) -> str:
        """One line: the reasoning with each quote and its source and location, or for
        ``no information`` what was looked for (``lnsynth trials --format json``)."""
        parts = []
        if self.judgement == NO_INFORMATION:
            where = f" in {', '.join(self.looked_in)}" if self.looked_in else ""
            parts.append(f"no information: looked for {self.looked_for}{where}")
        for t in [self.basis, *self.more]:
            if t is None:
                continue
            p = t.provenance
            parts.append(f"{t.value}: \"{p.quote}\" ({p.source}, {p.location})")
        return "; ".join(parts)


def _rob_alias(name: str) -> AliasChoices:
    return AliasChoices(name, ROB_CONTRACT_KEYS[name])


class RiskOfBias(_Frozen):
    """RoB 2 (Sterne JAC et al. BMJ 2019;366:l4898) for one trial: five domain judgements.

    In YAML a trial's ``rob:`` block names all five domains (``missing_data`` may be written
    ``missing`` and ``selective_reporting`` ``selection``, the contract names); a block that leaves
    one out is an error, never a default.  ``RiskOfBias()`` with no domains is the placeholder of a
    trial nobody assessed: its :meth:`overall` is ``"not assessed"``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True, populate_by_name=True)

    randomisation: Optional[RobJudgement] = Field(default=None, validation_alias=_rob_alias("randomisation"))
    deviations: Optional[RobJudgement] = Field(default=None, validation_alias=_rob_alias("deviations"))
    missing_data: Optional[RobJudgement] = Field(default=None, validation_alias=_rob_alias("missing_data"))
    measurement: Optional[RobJudgement] = Field(default=None, validation_alias=_rob_alias("measurement"))
    selective_reporting: Optional[RobJudgement] = Field(default=None, validation_alias=_rob_alias("selective_reporting"))

    @model_validator(mode="after")
    def _all_or_none(self) -> "RiskOfBias":
        given = [d for d in ROB_DOMAINS if getattr(self, d) is not None]
        if given and len(given) < len(ROB_DOMAINS):
            missing = [ROB_CONTRACT_KEYS[d] for d in ROB_DOMAINS if getattr(self, d) is None]
            raise ValueError(f"RoB 2 domain(s) {missing} not recorded: give each a judgement with its quoted "
                             "'basis', or 'no information' with 'looked_for'")
        return self

    @property
    def assessed(self) -> bool:
        """True when all five domains are recorded."""
        return all(getattr(self, d) is not None for d in ROB_DOMAINS)

    def domain_counts_as(self) -> dict[str, str]:
        """Domain attribute -> judgement used for the overall rule (``no information`` mapped)."""
        return {d: getattr(self, d).counts_as(d) for d in ROB_DOMAINS if getattr(self, d) is not None}

    def overall(self) -> str:
        """RoB 2 overall judgement: ``high`` if any domain is high, ``low`` only if all five are
        low, otherwise ``some concerns``; a ``no information`` domain counts as the algorithm's
        proposal for it (:data:`NO_INFORMATION_MAPS_TO`).  ``"not assessed"`` when no domain is
        recorded.  (RoB 2 also allows raising "some concerns in several domains" to high; that
        reviewer's override is not applied mechanically.)"""
        if not self.assessed:
            return "not assessed"
        js = list(self.domain_counts_as().values())
        if "high" in js:
            return "high"
        if all(j == "low" for j in js):
            return "low"
        return "some concerns"

    def overall_basis(self) -> str:
        """Why :meth:`overall` is what it is, naming each domain's (mapped) judgement."""
        if not self.assessed:
            return "no RoB 2 assessment recorded"
        parts = []
        for d in ROB_DOMAINS:
            j = getattr(self, d)
            parts.append(f"{ROB_CONTRACT_KEYS[d]} {j.judgement}" + (
                f" (counts as {j.counts_as(d)})" if j.judgement == NO_INFORMATION else ""))
        return ("RoB 2 rule: high if any domain high, low only if all low, else some concerns; "
                "'no information' counts as the RoB 2 algorithm's proposal for the domain. " + "; ".join(parts))

    def as_contract(self) -> dict:
        """``{randomisation, deviations, missing, measurement, selection, overall}``, each
        ``{judgement, basis}`` (domains add ``counts_as``; JSON-ready)."""
        out: dict = {}
        for d in ROB_DOMAINS:
            j = getattr(self, d)
            if j is None:
                out[ROB_CONTRACT_KEYS[d]] = {"judgement": "not assessed", "basis": "no RoB 2 assessment recorded",
                                             "counts_as": "not assessed"}
                continue
            out[ROB_CONTRACT_KEYS[d]] = {"judgement": j.judgement, "basis": j.basis_text(), "counts_as": j.counts_as(d)}
        out["overall"] = {"judgement": self.overall(), "basis": self.overall_basis()}
        return out


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

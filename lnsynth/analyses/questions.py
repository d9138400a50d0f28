"""The catalogue of clinical questions (PICO), one YAML file each, as package data.

A clinical question names its population, the intervention and the comparator as regimen
specifications, and the **relation** between them:

``add-on``
    a calcineurin inhibitor (CNI) added to a background regimen vs the same background
    (voclosporin + MMF vs placebo + MMF);
``substitution``
    a CNI *in place of* another drug (tacrolimus vs MMF; tacrolimus vs IV cyclophosphamide);
``multitarget``
    tacrolimus + MMF vs a regimen containing neither (IV cyclophosphamide);
``maintenance``
    CNI vs another maintenance drug after induction.

A question never mixes relations: the selection step (:mod:`lnsynth.analyses.answer`)
computes each candidate trial's relation from its arms' regimen components and leaves out,
with the reason shown, any trial whose arms do not fit.

Files live in ``lnsynth/analyses/catalogue/``: one ``<id>.yaml`` per question and the shared
outcome definitions in ``_outcomes.yaml`` (a question lists them by id, or as
``{use: <id>, window: ..., endpoints: ...}`` to override parts for its population).  Each question lists the outcomes it answers, the
analysis plan (measure, model, tau² estimator, approximate-count policy, baseline-risk source).

Examples
--------
>>> from lnsynth.analyses.questions import load_questions
>>> [q.id for q in load_questions()][:2]
['voclosporin-addon-mmf', 'voclosporin-high-dose-addon-mmf']
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lnsynth.evidence.schema import ENDPOINTS, REGIMENS

RELATIONS = ("add-on", "substitution", "multitarget", "maintenance")

#: Drug components of each regimen code: the basis of the relation between two arms.
#: Placebo contributes nothing; steroids are background in every arm and not listed.
COMPONENTS: dict[str, frozenset[str]] = {
    "TAC": frozenset({"TAC"}),
    "CSA": frozenset({"CSA"}),
    "TAC+MMF": frozenset({"TAC", "MMF"}),
    "TAC+AZA": frozenset({"TAC", "AZA"}),
    "VCS23.7+MMF": frozenset({"VCS", "MMF"}),
    "VCS39.5+MMF": frozenset({"VCS", "MMF"}),
    "PBO+MMF": frozenset({"MMF"}),
    "MMF": frozenset({"MMF"}),
    "MPS": frozenset({"MMF"}),
    "IVCYC": frozenset({"CYC"}),
    "IVCYC-LOW": frozenset({"CYC"}),
    "IVCYC-HIGH": frozenset({"CYC"}),
    "CYC": frozenset({"CYC"}),
    "AZA": frozenset({"AZA"}),
    "PRED": frozenset(),
    "BEL+SOC": frozenset({"BEL", "SOC"}),
    "PBO+SOC": frozenset({"SOC"}),
    "OBI+MMF": frozenset({"OBI", "MMF"}),
}
CNI_DRUGS = frozenset({"TAC", "CSA", "VCS"})


def relation_between(intervention: str, comparator: str, phase: str = "induction") -> str:
    """The relation of two arms, from their regimen components.

    Parameters
    ----------
    intervention, comparator : regimen codes (keys of :data:`COMPONENTS`).
    phase : the arms' treatment phase; maintenance comparisons are ``"maintenance"``.

    Returns
    -------
    str
        ``add-on``, ``substitution``, ``multitarget``, ``maintenance``, or a description
        of why the pair is none of these (``"no calcineurin inhibitor in the intervention arm"``,
        ``"both arms contain a calcineurin inhibitor"``, ``"other"``).

    Examples
    --------
    >>> relation_between("VCS23.7+MMF", "PBO+MMF")
    'add-on'
    >>> relation_between("TAC", "MMF")
    'substitution'
    >>> relation_between("TAC+MMF", "IVCYC")
    'multitarget'
    """
    ci, cc = COMPONENTS[intervention], COMPONENTS[comparator]
    if not ci & CNI_DRUGS:
        return "no calcineurin inhibitor in the intervention arm"
    if cc & CNI_DRUGS:
        return "both arms contain a calcineurin inhibitor"
    if phase == "maintenance":
        return "maintenance"
    rest = ci - CNI_DRUGS
    if rest == cc:
        return "add-on"
    if not rest and cc:
        return "substitution"
    if rest and not (rest & cc) and cc:
        return "multitarget"
    return "other"


def _known_codes(values: list[str], known, what: str) -> list[str]:
    bad = [x for x in values if x not in known]
    if bad:
        raise ValueError(f"unknown {what} {bad}; known: {sorted(known)}")
    return values


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Window(_Frozen):
    min_weeks: Optional[float] = None
    max_weeks: Optional[float] = None

    def contains(self, weeks: Optional[float]) -> bool:
        if weeks is None:
            return True
        if self.min_weeks is not None and weeks < self.min_weeks:
            return False
        if self.max_weeks is not None and weeks > self.max_weeks:
            return False
        return True

    def text(self) -> str:
        lo, hi = self.min_weeks, self.max_weeks
        if lo is None and hi is None:
            return "any timepoint"
        if lo is None:
            return f"up to {hi:g} weeks"
        if hi is None:
            return f"from {lo:g} weeks"
        return f"{lo:g}-{hi:g} weeks"


class OutcomeSpec(_Frozen):
    """One outcome a question answers: what is counted, where in the evidence it is found."""

    id: str
    label: str
    kind: Literal["efficacy", "adverse event", "continuous"]
    endpoints: list[str] = Field(default_factory=list)
    categories: list[str] = Field(default_factory=list)
    window: Window = Window()
    prefer: Union[Literal["latest", "earliest"], float] = "latest"
    benefit: Literal["higher", "lower"] = "higher"
    #: which timepoint answers the row: ``window`` (``prefer`` within ``window``), ``end of induction``
    #: (the record the trial marks as end of induction, else its stated induction duration, else the
    #: latest induction-phase record in ``window``) or ``long term`` (continuation and follow-up reports
    #: keep their parent trial's randomised comparison; later than ``window.min_weeks``).
    timing: Literal["window", "end of induction", "long term"] = "window"
    #: what is counted (patients or events, over which period): shown with the row.
    counted: Optional[str] = None
    #: adverse events: the periods accepted (``None`` = period not stated); default all.
    periods: Optional[list[Optional[Literal["induction", "maintenance", "overall"]]]] = None
    #: harm (adverse event) or benefit row; shown in the report's headline.
    harm: bool = False
    #: continuous rows: how the stored arm-level facts' ``what`` begins (e.g. "eGFR slope"), in order of preference.
    facts: list[str] = Field(default_factory=list)

    @field_validator("endpoints")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        return _known_codes(v, ENDPOINTS, "endpoints")

    @model_validator(mode="after")
    def _where(self) -> "OutcomeSpec":
        if self.kind == "efficacy" and not self.endpoints:
            raise ValueError("an efficacy outcome needs 'endpoints'")
        if self.kind == "adverse event" and not self.categories:
            raise ValueError("an adverse-event outcome needs 'categories'")
        if self.kind == "continuous" and not self.facts:
            raise ValueError("a continuous outcome needs 'facts' (how the stored facts' 'what' begins)")
        return self

    def timepoint_rule(self, phase: str = "induction") -> str:
        """The rule that picks each trial's timepoint for this row, as text (shown on every row)."""
        w = self.window.text()
        if self.kind == "continuous":
            return ("as reported (the report's own period)" + ("; continuation and follow-up reports keep the parent "
                    "trial's randomised comparison (induction-confounded)" if self.timing == "long term" else ""))
        if self.kind == "adverse event":
            per = ", ".join(p or "not stated" for p in self.periods) if self.periods else "any period"
            base = f"as reported by each trial (periods accepted: {per})"
            if self.timing == "long term":
                base += ("; continuation and follow-up reports (the parent trial's randomised comparison kept: "
                         "induction-confounded) and records covering the maintenance or whole-trial period")
            return base
        if self.timing == "end of induction":
            return (f"end of induction: the result the trial marks as end of induction, else at its stated induction "
                    f"duration, else the latest induction-phase result in the window ({w}); results after a different "
                    f"maintenance are not used")
        if self.timing == "long term":
            return (f"long term: the latest result after induction (a maintenance-phase result, or {w}) of the trial or "
                    f"of its continuation / follow-up report, which keeps the parent trial's randomised comparison "
                    f"(induction-confounded: indirectness stated)")
        pick = self.prefer if isinstance(self.prefer, str) else f"closest to {self.prefer:g} weeks"
        return f"{pick} timepoint within {w}" if w != "any timepoint" else f"{pick} timepoint reported"


class Arm(_Frozen):
    label: str
    regimens: list[str]

    @field_validator("regimens")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        return _known_codes(v, REGIMENS, "regimen codes")


class Population(_Frozen):
    phase: Literal["induction", "maintenance"]
    description: str
    class_v: Literal["exclude", "include", "only"] = "exclude"


class Plan(_Frozen):
    """The analysis plan: one default approximate-count policy (``approximate: true``): a count
    that no integer reproduces from a printed percentage is ``round(pct/100*n)``, flagged on every
    surface; leaving such trials out would drop the largest trial of some comparisons."""

    measure: Literal["RR", "OR", "RD"] = "RR"
    model: Literal["random-effects", "fixed-effect"] = "random-effects"
    tau2: str = "REML"

    @field_validator("tau2")
    @classmethod
    def _known_tau2(cls, v: str) -> str:
        from lnsynth import registry

        ok = registry.random_effects_methods("pairwise")
        if v not in ok:
            raise ValueError(f"unknown tau² estimator {v!r}; known (lnsynth.registry): {', '.join(ok)}")
        return v
    test: Literal["z", "knha"] = "z"
    approximate: bool = True
    baseline_risk: Union[Literal["median-control"], float] = "median-control"
    thresholds: tuple[float, float] = (0.75, 1.25)

    @property
    def method(self) -> str:
        return "FE" if self.model == "fixed-effect" else self.tau2


class BaselineRiskSpec(_Frozen):
    """One declared baseline (assumed control) risk of a question (:mod:`lnsynth.analyses.baselines`)."""

    label: str = Field(min_length=1)
    rule: Literal["median", "lowest", "highest", "worst", "value"] = "median"
    trials: Literal["included", "evidence"] = "evidence"
    setting: Literal["any", "multinational", "asian", "other"] = "any"
    risk: Optional[float] = None
    source: Optional[str] = None
    outcomes: Optional[list[str]] = None

    @model_validator(mode="after")
    def _value_has_source(self) -> "BaselineRiskSpec":
        if self.rule == "value":
            if self.risk is None or not 0 < self.risk < 1:
                raise ValueError("rule 'value' needs 'risk' strictly between 0 and 1")
            if not (self.source or "").strip():
                raise ValueError("rule 'value' needs its 'source' (where the risk comes from)")
        elif self.risk is not None:
            raise ValueError(f"'risk' is computed by rule {self.rule!r}; give rule 'value' to declare one")
        return self


GRADE_DOMAINS = ("risk of bias", "inconsistency", "indirectness", "imprecision", "publication bias")


class PanelOverride(_Frozen):
    """A panel's override of one GRADE domain of one outcome, with its written reason (shown)."""

    downgrade: int = Field(ge=0, le=2)
    reason: str = Field(min_length=10)
    judgement: Optional[str] = None


#: the fields of a summary-of-findings row a declared threshold may watch (ratio scale for RR/OR;
#: ``per1000*``: intervention minus control events per 1000 at the answer's assumed control risk).
THRESHOLD_FIELDS = ("estimate", "ci_low", "ci_high", "per1000", "per1000_low", "per1000_high")


class Threshold(_Frozen):
    """A decision threshold set in advance (issue 22, item 4): ``lnsynth update`` names it when crossed.

    Either ``field`` + ``value`` (crossed when the row's field moves from one side of ``value`` to
    the other) or ``certainty_levels`` (crossed when the GRADE certainty changes by at least that
    many levels).  ``outcome`` omitted: every outcome of the question.  ``headline: true`` marks
    the outcome ``lnsynth threshold`` analyses.  ``assumption`` says why the value was chosen
    (a panel's choice, shown with the threshold).
    """

    outcome: Optional[str] = None
    field: Optional[Literal[THRESHOLD_FIELDS]] = None  # type: ignore[valid-type]
    value: Optional[float] = None
    certainty_levels: Optional[int] = Field(default=None, ge=1, le=3)
    label: Optional[str] = None
    headline: bool = False
    assumption: Optional[str] = None

    @model_validator(mode="after")
    def _one_kind(self) -> "Threshold":
        if (self.field is None) != (self.value is None):
            raise ValueError("a threshold on a field needs both 'field' and 'value'")
        if self.field is None and self.certainty_levels is None:
            raise ValueError("a threshold needs 'field' and 'value', or 'certainty_levels'")
        if self.field is not None and self.certainty_levels is not None:
            raise ValueError("one threshold is either 'field'/'value' or 'certainty_levels', not both")
        if self.value is not None and self.value != self.value:
            raise ValueError("'value' is not a number")
        return self

    def name(self) -> str:
        """How the threshold is named where it is crossed."""
        if self.label:
            return self.label
        if self.field is not None:
            return f"{self.field} {self.value:g}"
        return f"certainty by {self.certainty_levels} level(s)"


#: applied to every outcome whatever a question declares (lnsynth.analyses.updates): the CI's position
#: against the null (1 for ratios), and the GRADE certainty changing by one level (a question's
#: ``certainty_levels`` threshold replaces the one level).
DEFAULT_THRESHOLDS = ("ci_null: the 95% CI's position against the null (1 for RR/OR) changes",
                      "certainty: the GRADE certainty changes by at least one level")


class Question(_Frozen):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    title: str
    question: str
    population: Population
    intervention: Arm
    comparator: Arm
    relation: Literal[RELATIONS]  # type: ignore[valid-type]
    outcomes: list[OutcomeSpec]
    plan: Plan = Plan()
    #: clinical order of the catalogue (add-on first); ties by id.
    order: int = 100
    #: for a question whose intervention spans several drugs: its label lists the drugs of the trials
    #: actually included (computed by the answer), and drug indirectness is flagged.
    any_cni: bool = False
    #: assumed control risks shown beside the answer's own (default: baselines.DEFAULT_RULES).
    baseline_risks: list[BaselineRiskSpec] = Field(default_factory=list)
    #: a panel's GRADE overrides: ``{outcome_id: {domain: {downgrade, reason}}}`` (shown with the rule's judgement).
    overrides: dict[str, dict[str, PanelOverride]] = Field(default_factory=dict)
    #: decision thresholds set in advance (:class:`Threshold`); the defaults (:data:`DEFAULT_THRESHOLDS`) always apply.
    thresholds: list[Threshold] = Field(default_factory=list)

    @model_validator(mode="after")
    def _overrides_known(self) -> "Question":
        ids = {o.id for o in self.outcomes}
        for oid, doms in self.overrides.items():
            if oid not in ids:
                raise ValueError(f"overrides: no outcome {oid!r} in this question; outcomes: {sorted(ids)}")
            bad = [d for d in doms if d.strip().lower().replace("_", " ") not in GRADE_DOMAINS]
            if bad:
                raise ValueError(f"overrides.{oid}: unknown GRADE domain(s) {bad}; known: {list(GRADE_DOMAINS)}")
        for b in self.baseline_risks:
            bad = [x for x in (b.outcomes or []) if x not in ids]
            if bad:
                raise ValueError(f"baseline_risks {b.label!r}: no outcome(s) {bad} in this question")
        for i, t in enumerate(self.thresholds):
            if t.outcome is not None and t.outcome not in ids:
                raise ValueError(f"thresholds[{i}].outcome: no outcome {t.outcome!r} in this question; outcomes: {sorted(ids)}")
        heads = {t.outcome for t in self.thresholds if t.headline}
        if None in heads or len(heads) > 1:
            raise ValueError("thresholds: 'headline: true' must name one outcome (give 'outcome')")
        return self

    @model_validator(mode="after")
    def _disjoint(self) -> "Question":
        both = set(self.intervention.regimens) & set(self.comparator.regimens)
        if both:
            raise ValueError(f"intervention and comparator share regimens {sorted(both)}")
        for i in self.intervention.regimens:
            for c in self.comparator.regimens:
                rel = relation_between(i, c, self.population.phase)
                if rel != self.relation:
                    raise ValueError(f"intervention {i} vs comparator {c} is {rel!r}, not {self.relation!r}")
        return self

    def thresholds_for(self, outcome_id: str) -> list[Threshold]:
        """The declared thresholds that apply to one outcome (those naming it and those naming none)."""
        return [t for t in self.thresholds if t.outcome in (None, outcome_id)]

    @property
    def headline_outcome(self) -> OutcomeSpec:
        """The outcome ``lnsynth threshold`` analyses: the one a threshold marks ``headline``, else the
        first benefit outcome (not a harm) that is not long term, else the first outcome."""
        marked = next((t.outcome for t in self.thresholds if t.headline), None)
        for o in self.outcomes:
            if o.id == marked:
                return o
        return next((o for o in self.outcomes if not o.harm and o.kind == "efficacy" and o.timing != "long term"),
                    self.outcomes[0])

    def summary_dict(self) -> dict:
        """The catalogue entry (``lnsynth questions --format json``)."""
        return {
            "id": self.id,
            "title": self.title,
            "question": self.question,
            "population": self.population.description,
            "phase": self.population.phase,
            "intervention": self.intervention.label,
            "intervention_regimens": list(self.intervention.regimens),
            "comparator": self.comparator.label,
            "comparator_regimens": list(self.comparator.regimens),
            "relation": self.relation,
            "order": self.order,
            "outcomes": [o.label for o in self.outcomes],
            "plan": {"measure": self.plan.measure, "model": self.plan.model, "tau2": self.plan.tau2,
                     "test": self.plan.test, "approximate": self.plan.approximate,
                     "baseline_risk": self.plan.baseline_risk},
        }


class QuestionError(ValueError):
    """A question file is invalid (names the file and the field) or an id is unknown."""


def catalogue_dir() -> Path:
    return Path(str(resources.files("lnsynth.analyses") / "catalogue"))


def _read(path: Path):
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise QuestionError(f"{path.name}: not valid YAML: {exc}") from None


def load_questions(path: Union[str, Path, None] = None) -> tuple[Question, ...]:
    """Load and validate every question of the catalogue (in clinical order: ``order``, then id).

    Raises
    ------
    QuestionError
        Naming the file and the field of the first invalid question.
    """
    root = Path(path) if path is not None else catalogue_dir()
    return _load(str(root))


@lru_cache(maxsize=4)
def _load(root_s: str) -> tuple[Question, ...]:
    root = Path(root_s)
    shared = _read(root / "_outcomes.yaml") or {}
    out = []
    for p in sorted(root.glob("*.yaml")):
        if p.name.startswith("_"):
            continue
        raw = _read(p)
        if not isinstance(raw, dict):
            raise QuestionError(f"{p.name}: expected a mapping")
        outs = []
        for o in raw.get("outcomes", []):
            if isinstance(o, str):
                o = {"use": o}
            if isinstance(o, dict) and "use" in o:
                base = o["use"]
                if base not in shared:
                    raise QuestionError(f"{p.name}: outcome {base!r} is not defined in _outcomes.yaml")
                # a question may override parts of a shared definition (window, endpoints, label)
                outs.append({"id": base, **shared[base], **{k: v for k, v in o.items() if k != "use"}})
            else:
                outs.append(o)
        raw = {**raw, "outcomes": outs}
        try:
            q = Question.model_validate(raw)
        except ValidationError as exc:
            e = exc.errors()[0]
            loc = '.'.join(map(str, e['loc'])) or "(question)"
            raise QuestionError(f"{p.name}: question {raw.get('id')!r}: field {loc}: {e['msg']}") from None
        if q.id != p.stem:
            raise QuestionError(f"{p.name}: id {q.id!r} differs from the file name")
        out.append(q)
    return tuple(sorted(out, key=lambda q: (q.order, q.id)))


def get_question(qid: str, path: Union[str, Path, None] = None) -> Question:
    """The question with id ``qid``; :class:`QuestionError` lists the known ids otherwise."""
    for q in load_questions(path):
        if q.id == qid:
            return q
    raise QuestionError(f"no question {qid!r}; known: {[q.id for q in load_questions(path)]}")


__all__ = ["COMPONENTS", "DEFAULT_THRESHOLDS", "RELATIONS", "THRESHOLD_FIELDS", "Question", "OutcomeSpec", "QuestionError",
           "Threshold", "get_question", "load_questions", "relation_between"]

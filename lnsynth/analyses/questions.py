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
['class-v-cni', 'cni-addon-mmf']
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
    kind: Literal["efficacy", "adverse event"]
    endpoints: list[str] = Field(default_factory=list)
    categories: list[str] = Field(default_factory=list)
    window: Window = Window()
    prefer: Union[Literal["latest", "earliest"], float] = "latest"
    benefit: Literal["higher", "lower"] = "higher"

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
        return self


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
    """Load and validate every question of the catalogue (sorted by id).

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
            raise QuestionError(f"{p.name}: question {raw.get('id')!r}: field {'.'.join(map(str, e['loc']))}: {e['msg']}") from None
        if q.id != p.stem:
            raise QuestionError(f"{p.name}: id {q.id!r} differs from the file name")
        out.append(q)
    return tuple(out)


def get_question(qid: str, path: Union[str, Path, None] = None) -> Question:
    """The question with id ``qid``; :class:`QuestionError` lists the known ids otherwise."""
    for q in load_questions(path):
        if q.id == qid:
            return q
    raise QuestionError(f"no question {qid!r}; known: {[q.id for q in load_questions(path)]}")


__all__ = ["COMPONENTS", "RELATIONS", "Question", "OutcomeSpec", "QuestionError", "get_question",
           "load_questions", "relation_between"]

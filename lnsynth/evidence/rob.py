"""Risk-of-bias (RoB 2) part of the evidence schema: domains, judgements and the overall rule.

Split out of :mod:`lnsynth.evidence.schema`, which re-exports every name here; import from
either module.
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import AliasChoices, ConfigDict, Field, field_validator, model_validator

from lnsynth.evidence.values import Text, _Frozen

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

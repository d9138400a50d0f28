"""Primitives of the evidence schema: numbers with provenance, quoted text and the source register.

Split out of :mod:`lnsynth.evidence.schema`, which re-exports every name here; import from
either module.
"""

from __future__ import annotations

import math
from datetime import date
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

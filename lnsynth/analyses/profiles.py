"""Patient profiles of a clinical question (issue 21, item 6).

Two kinds of row, both carried with their source, location and verbatim quote:

* **review statement**: what the narrative review (peleg2020, a *secondary* source) says about a
  patient group (pregnancy and lactation, younger refractory patients, heavy proteinuria, Asian
  populations, class V), read from ``catalogue/_profiles.yaml``. Never an estimate.
* **subgroup**: what the *included* trials of the question store about a patient group: a
  subgroup fact, a subgroup outcome, a baseline share (population composition, not a subgroup
  result) or a whole trial population that *is* the group (e.g. children only). Found by scanning
  the stored study records; where nothing is stored the row says
  ``"no included trial reports this subgroup"`` (nothing is invented).

Examples
--------
>>> rows = load_profiles()
>>> any(r.profile == "pregnancy and lactation" for r in rows)
True
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Union

import yaml

from lnsynth.evidence.load import EvidenceBase
from lnsynth.evidence.schema import Provenance, Study, format_number

from .questions import catalogue_dir, load_questions

MAX_QUOTE = 160
NONE_STATEMENT = "no included trial reports this subgroup"

SUBGROUP_PROFILES: dict[str, re.Pattern] = {
    "class V and mixed V+III/IV": re.compile(
        r"class(es)?[\s_]*((iii|iv|3|4)\s*(\+|±|-|–)\s*)?(5|v)(?![a-z0-9])|membranous|\bv\s*\+\s*(iii|iv)\b"
        r"|\b(iii|iv)\s*(\+|±)\s*v\b|pure\s+v\b", re.I),
    "heavy (nephrotic-range) proteinuria": re.compile(r"nephrotic|heavy\s+proteinuria", re.I),
    "eGFR < 60": re.compile(r"e?gfr\s*(<|≤|<=|below|less than|under)\s*60\b", re.I),
    "Black and Hispanic patients": re.compile(r"\bblack\b|hispanic|latino|african", re.I),
    "Asian vs non-Asian populations": re.compile(r"asian|\basia\b", re.I),
    "children": re.compile(r"child|paediatric|pediatric|adolescen|juvenile", re.I),
}
"""Profile -> pattern searched in the included trials' population, facts, baseline and subgroup outcomes."""

_BASELINE_KIND = {"class V and mixed V+III/IV": "class_mix", "Asian vs non-Asian populations": "asian"}
"""Profile -> baseline kind reported whole (e.g. every class-mix share, not only the rows naming class V)."""

_REQUIRED = ("id", "profile", "questions", "statement", "source", "location", "quote")


class ProfileError(ValueError):
    """An invalid ``_profiles.yaml`` (the message names the file, the row and the field)."""


@dataclass(frozen=True)
class ProfileStatement:
    """One review statement about a patient group (a row of ``_profiles.yaml``)."""

    id: str
    profile: str
    questions: Union[str, tuple[str, ...]]  # "all" or question ids
    statement: str
    source: str
    location: str
    quote: str

    def applies_to(self, question_id: str) -> bool:
        return self.questions == "all" or question_id in self.questions


def profiles_path() -> Path:
    """The catalogue's ``_profiles.yaml``."""
    return catalogue_dir() / "_profiles.yaml"


def load_profiles(path: Union[str, Path, None] = None, review_text: Union[str, Path, None] = None,
                  question_ids: Optional[Iterable[str]] = None) -> tuple[ProfileStatement, ...]:
    """Load and validate the review statements.

    Parameters
    ----------
    path : the YAML file (default: the catalogue's ``_profiles.yaml``).
    review_text : the review's text file; when given (and present), every quote must occur in it verbatim.
    question_ids : known question ids (default: the catalogue's).

    Raises
    ------
    ProfileError
        Naming the file, the row (index and id) and the field.
    """
    p = Path(path) if path is not None else profiles_path()
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise ProfileError(f"{p.name}: cannot read: {e}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("profiles"), list):
        raise ProfileError(f"{p.name}: expected a mapping with a list 'profiles'")
    text = None
    if review_text is not None and Path(review_text).exists():
        text = Path(review_text).read_text(encoding="utf-8")
    known = set(question_ids) if question_ids is not None else {q.id for q in load_questions()}
    out, seen = [], set()
    for i, r in enumerate(raw["profiles"]):
        where = f"{p.name}: row {i}" + (f" ({r.get('id')})" if isinstance(r, dict) and r.get("id") else "")
        if not isinstance(r, dict):
            raise ProfileError(f"{where}: expected a mapping")
        for f in _REQUIRED:
            v = r.get(f)
            if v is None or (isinstance(v, str) and not v.strip()):
                raise ProfileError(f"{where}: field {f!r} is missing or empty")
        for f in ("id", "profile", "statement", "source", "location", "quote"):
            if not isinstance(r[f], str):
                raise ProfileError(f"{where}: field {f!r} must be text")
        unknown = set(r) - set(_REQUIRED)
        if unknown:
            raise ProfileError(f"{where}: unknown field(s) {sorted(unknown)}")
        if r["id"] in seen:
            raise ProfileError(f"{where}: field 'id' repeats {r['id']!r}")
        seen.add(r["id"])
        qs = r["questions"]
        if qs != "all":
            if not isinstance(qs, list) or not qs or not all(isinstance(x, str) for x in qs):
                raise ProfileError(f"{where}: field 'questions' must be 'all' or a list of question ids")
            bad = [x for x in qs if x not in known]
            if bad:
                raise ProfileError(f"{where}: field 'questions': unknown question id(s) {bad}")
            qs = tuple(qs)
        if len(r["quote"]) > MAX_QUOTE:
            raise ProfileError(f"{where}: field 'quote' is longer than {MAX_QUOTE} characters")
        if text is not None and r["quote"] not in text:
            raise ProfileError(f"{where}: field 'quote' is not found verbatim in {Path(review_text).name}")
        out.append(ProfileStatement(r["id"], r["profile"], qs, r["statement"], r["source"], r["location"], r["quote"]))
    return tuple(out)


def _row(profile: str, kind: str, statement: str, trials: list[str], prov: Optional[Provenance]) -> dict:
    return {"profile": profile, "kind": kind, "statement": statement, "trials": trials,
            "source": prov.source if prov else None, "location": prov.location if prov else None,
            "quote": prov.quote if prov else None, "derived": bool(prov.derived) if prov else False}


def _value(q) -> str:
    return format_number(q.value) + (f" {q.unit}" if q.unit and q.unit != "%" else (q.unit or ""))


def _study_rows(s: Study, profile: str, pat: re.Pattern) -> list[dict]:
    rows = []
    if s.population is not None and pat.search(s.population.value):
        rows.append(_row(profile, "subgroup", f"{s.label}: the whole trial population is {s.population.value}",
                         [s.id], s.population.provenance))
    for f in s.facts:
        if pat.search(f"{f.id} {f.what}"):
            arm = f" (arm {f.arm})" if f.arm else ""
            rows.append(_row(profile, "subgroup", f"{s.label}: {f.what}{arm}: {_value(f.quantity)}",
                             [s.id], f.quantity.provenance))
    for b in s.baseline:
        if pat.search(f"{b.id} {b.what} {b.label or ''}") or b.what == _BASELINE_KIND.get(profile):
            arm = f"arm {b.arm}" if b.arm else "all randomised"
            rows.append(_row(profile, "subgroup",
                             f"{s.label}: baseline {b.label or b.what} ({b.stat}, {arm}): {_value(b.quantity)}"
                             " (population composition; no subgroup result stored)", [s.id], b.quantity.provenance))
    for o in s.outcomes:
        text = f"{o.id} {o.label or ''}"
        if "subgroup" in text.lower() and pat.search(text):
            got = [(k, getattr(o, k)) for k in ("events", "n", "percent", "mean") if getattr(o, k) is not None]
            prov = got[0][1].provenance if got else None
            nums = ", ".join(f"{k} {_value(q)}" for k, q in got) or "no number stored"
            rows.append(_row(profile, "subgroup", f"{s.label}: {o.label or o.id} (arm {o.arm}): {nums}", [s.id], prov))
    return rows


def profile_rows(ev: EvidenceBase, question: str, included_trial_ids: Iterable[str],
                 statements: Optional[tuple[ProfileStatement, ...]] = None) -> tuple[dict, ...]:
    """The patient-profile rows of one question.

    Parameters
    ----------
    ev : the loaded evidence.
    question : the question id (selects the review statements that apply).
    included_trial_ids : the question's included trials (only these are scanned for subgroup records).
    statements : the review statements (default: :func:`load_profiles`).

    Returns
    -------
    tuple of dict
        ``{profile, kind: "review statement" | "subgroup", statement, trials, source, location, quote, derived}``;
        review statements first, then per profile of :data:`SUBGROUP_PROFILES` the stored subgroup
        records of the included trials, or one row saying that no included trial reports it.
    """
    statements = load_profiles() if statements is None else statements
    rows = [{"profile": st.profile, "kind": "review statement",
             "statement": st.statement + " (the review's statement; secondary source, not an estimate)",
             "trials": [], "source": st.source, "location": st.location, "quote": st.quote, "derived": False}
            for st in statements if st.applies_to(question)]
    studies = []
    for sid in dict.fromkeys(included_trial_ids):
        try:
            studies.append(ev.study(sid))
        except KeyError:
            continue
    for profile, pat in SUBGROUP_PROFILES.items():
        found = [r for s in studies for r in _study_rows(s, profile, pat)]
        rows.extend(found or [_row(profile, "subgroup", NONE_STATEMENT, [], None)])
    return tuple(rows)


__all__ = ["NONE_STATEMENT", "ProfileError", "ProfileStatement", "SUBGROUP_PROFILES", "load_profiles",
           "profile_rows", "profiles_path"]

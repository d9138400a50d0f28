"""The curation rules of the web store: supersession, the two-person rule, form validation.

A count a curator enters through the app for an arm, endpoint and timepoint that already has a
record supersedes the older record (a correction replaces, never adds to, the stored count).
Records of the package data that come from different documents are left alone: choosing among
them is the shared selection rule (:func:`lnsynth.analyses.selection.one_record_per_arm`).
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Optional

from lnsynth.evidence.load import EvidenceBase

from .validation import _CTRL, BODY_NOT_OBJECT, MAX_COUNT, err

APP_PREFIX = "web_"


def _key(o) -> tuple:
    return (o.arm, o.endpoint, o.timepoint.weeks if o.timepoint is not None else None)


def superseded(ev: EvidenceBase) -> tuple[EvidenceBase, tuple[tuple[str, str], ...]]:
    """``ev`` without the records that app-entered records supersede, and a note per record dropped.

    Returns ``ev`` itself (same object) when nothing is superseded, so analyses cached on it are reused.
    """
    notes: list[tuple[str, str]] = []
    studies = []
    changed = False
    for s in ev.studies:
        outs = list(s.outcomes)
        newest: dict[tuple, int] = {}
        for i, o in enumerate(outs):
            if o.id.startswith(APP_PREFIX):
                newest[_key(o)] = i
        if not newest:
            studies.append(s)
            continue
        keep = []
        for i, o in enumerate(outs):
            j = newest.get(_key(o))
            if j is not None and i < j:
                notes.append((s.id, f"older duplicate entry {o.id} for arm {o.arm} at the same timepoint ignored "
                                    f"(newest entry {outs[j].id} used)"))
                continue
            keep.append(o)
        if len(keep) != len(outs):
            changed = True
            studies.append(s.model_copy(update={"outcomes": keep}))
        else:
            studies.append(s)
    if not changed:
        return ev, ()
    return EvidenceBase(ev.sources, tuple(studies), ev.syntheses, ev.root), tuple(notes)


# ---------------------------------------------------------------- the two-person rule
# Systematic reviews extract data twice: a value typed into the app by one curator enters the
# analyses only once a second, different curator has checked it against its quote (store.py keeps
# the state; Store.evidence holds only approved values).  "Different" is by person and by change
# (store.check_verifier): nobody who authored a change since the last verified state, not the
# bootstrap account, not an account linked to an author by creation.  A disputed value is settled
# by a reviewer; its entrant re-saving it keeps it disputed (the replaced entry stays in the queue as
# an "earlier entry").  Deleting a value the analyses use is a proposal until a second person
# confirms.  The package's own data are the repository's curated values: they are labelled as such
# and never claimed to be double-checked.
STATUS_LABELS = {
    "repository": "curated in repository",
    "pending": "pending second curator (not in analyses)",
    "verified": "verified by two people",
    "disputed": "disputed: in the review queue (not in analyses)",
}


def status_label(rec: dict) -> str:
    """Words for a record's review status (a pending change of an approved value says what analyses use)."""
    st = rec.get("status") or "repository"
    if rec.get("deletion"):
        return (f"pending deletion (proposed by {rec['deletion'].get('by')}): a second person must confirm; "
                "analyses keep the value until then")
    if st in ("pending", "disputed") and rec.get("approved"):
        was = STATUS_LABELS[rec["approved"]["status"]]
        return f"{st}: change awaits a second curator; analyses use the earlier value ({was})"
    return STATUS_LABELS.get(st, st)


def counts_sentence(c: dict) -> str:
    """One line for pages and reports: how many values are verified by two people, and the rest."""
    v = c.get("verified", 0)
    return (f"{v} value{'' if v == 1 else 's'} verified by two people · {c.get('repository', 0)} curated in repository "
            f"(not double-checked in the app) · {c.get('pending', 0)} pending and {c.get('disputed', 0)} disputed "
            f"(left out of analyses)" + (f" · {c['pending_trials']} trials pending" if c.get("pending_trials") else ""))


# ---------------------------------------------------------------- validation of curation forms
AE_MAX = {"arm": 64, "event": 200, "category": 64, "source": 200, "location": 200, "quote": 2000}
TRIAL_ID = re.compile(r"^[a-z][a-z0-9_]*[0-9]{4}[a-z0-9_]*$")
ARM_ID = re.compile(r"^[a-z0-9_]+$")
MAX_ARMS = 6


def _text(d: dict, name: str, errors: list, limit: int, required: bool = True) -> Optional[str]:
    v = d.get(name)
    if v is None or (isinstance(v, str) and not v.strip()):
        if required:
            errors.append(err(name, f"{name} is required", "missing"))
        return None
    if not isinstance(v, str):
        errors.append(err(name, f"{name} must be a string, got {type(v).__name__}", "string_type"))
        return None
    v = v.strip()
    if len(v) > limit:
        errors.append(err(name, f"{name} is too long ({len(v)} characters; at most {limit})", "string_too_long"))
        return None
    if _CTRL.search(v) or any(0xD800 <= ord(ch) <= 0xDFFF for ch in v):
        errors.append(err(name, f"{name} contains control characters or lone surrogates", "string_pattern_mismatch"))
        return None
    return v


def _int(d: dict, name: str, errors: list, lo: int, required: bool) -> Optional[int]:
    v = d.get(name)
    if v is None or v == "":
        if required:
            errors.append(err(name, f"{name} is required", "missing"))
        return None
    if isinstance(v, str):
        if not re.fullmatch(r"[0-9]{1,9}", v.strip()):  # ASCII digits only, bounded length
            errors.append(err(name, f"{name} must be a whole number", "int_parsing"))
            return None
        v = int(v.strip())
    if isinstance(v, bool) or not isinstance(v, int):
        errors.append(err(name, f"{name} must be a whole number", "int_type"))
        return None
    if v < lo or v > MAX_COUNT:
        errors.append(err(name, f"{name} must be from {lo} to {MAX_COUNT}, got {v}", "out_of_range"))
        return None
    return v


def validate_adverse_event(data: Any, arms: Iterable[str]) -> tuple[dict, list[dict]]:
    """Check an adverse-event record (JSON values or form strings); returns (clean values, errors naming fields)."""
    if not isinstance(data, dict):
        return {}, [dict(BODY_NOT_OBJECT)]
    errors: list[dict] = []
    out: dict[str, Any] = {}
    for f in ("arm", "event", "category", "source", "location", "quote"):
        out[f] = _text(data, f, errors, AE_MAX[f])
    if out["category"] is not None:
        out["category"] = " ".join(out["category"].lower().split())
    out["events"] = _int(data, "events", errors, 0, True)
    out["n"] = _int(data, "n", errors, 1, False)
    sv = data.get("serious")
    if sv in (None, "", "unknown"):
        out["serious"] = None
    elif sv in (True, "true", "yes", "on", "1"):
        out["serious"] = True
    elif sv in (False, "false", "no", "0"):
        out["serious"] = False
    else:
        errors.append(err("serious", "serious must be yes, no or unknown", "bool_parsing"))
    arms = list(arms)
    if out.get("arm") is not None and out["arm"] not in arms:
        errors.append(err("arm", f"unknown arm {out['arm']!r}; arms of this trial: {', '.join(arms)}", "unknown_arm"))
    if out.get("events") is not None and out.get("n") is not None and out["events"] > out["n"]:
        errors.append(err("events", f"events ({out['events']}) must not exceed n ({out['n']})", "events_gt_n"))
    return out, errors


def validate_trial(form: dict[str, Any], known_ids: Iterable[str], regimens: Iterable[str]) -> tuple[dict, list[dict]]:
    """A new trial from the curation form: id, label, year, design, optional n randomised and 1-6 arms.

    Every number carries the one provenance typed with it (source, location, quote).  Returns a
    :class:`~lnsynth.evidence.schema.Study` document (without outcomes) and errors naming the field
    (arm fields are ``arm_id_1``, ``arm_label_1``, ``arm_regimen_1``, ``arm_n_1`` ...).
    """
    errors: list[dict] = []
    tid = _text(form, "id", errors, 60)
    if tid is not None and not TRIAL_ID.fullmatch(tid):
        errors.append(err("id", "id must look like 'smith2024' (lowercase letters, then a 4-digit year)", "pattern"))
    elif tid is not None and tid in set(known_ids):
        errors.append(err("id", f"a trial {tid!r} already exists", "duplicate"))
    label = _text(form, "label", errors, 200)
    year = _int(form, "year", errors, 1950, True)
    if year is not None and year > 2100:
        errors.append(err("year", "year must be from 1950 to 2100", "out_of_range"))
    design = _text(form, "design", errors, 500)
    population = _text(form, "population", errors, 500, required=False)
    n_rand = _int(form, "n_randomised", errors, 1, False)
    prov = {f: _text(form, f, errors, AE_MAX[f]) for f in ("source", "location", "quote")}
    regs = set(regimens)
    arms = []
    for i in range(1, MAX_ARMS + 1):
        keys = [f"arm_{x}_{i}" for x in ("id", "label", "regimen", "n")]
        if not any(str(form.get(k) or "").strip() for k in keys):
            continue
        aid = _text(form, keys[0], errors, 40)
        if aid is not None and not ARM_ID.fullmatch(aid):
            errors.append(err(keys[0], "arm id: lowercase letters, digits and '_' only", "pattern"))
        alabel = _text(form, keys[1], errors, 200)
        reg = _text(form, keys[2], errors, 40)
        if reg is not None and reg not in regs:
            errors.append(err(keys[2], f"unknown regimen {reg!r}", "unknown_regimen"))
        an = _int(form, keys[3], errors, 1, False)
        arms.append({"id": aid, "label": alabel, "regimen": reg, "n": an, "field": keys[0]})
    if not arms:
        errors.append(err("arm_id_1", "a trial needs at least one arm", "missing"))
    ids = [a["id"] for a in arms if a["id"]]
    for a in arms:
        if a["id"] and ids.count(a["id"]) > 1:
            errors.append(err(a["field"], f"duplicate arm id {a['id']!r}", "duplicate"))
            break
    if errors:
        return {}, errors
    p = {"source": prov["source"], "location": prov["location"], "quote": prov["quote"]}
    doc: dict[str, Any] = {"id": tid, "label": label, "year": year, "design": {"value": design, "provenance": p},
                           "arms": [{"id": a["id"], "label": a["label"], "regimen": a["regimen"],
                                     **({"n": {"value": a["n"], "provenance": p}} if a["n"] else {})} for a in arms]}
    if population:
        doc["population"] = {"value": population, "provenance": p}
    if n_rand:
        doc["n_randomised"] = {"value": n_rand, "provenance": p}
    return doc, []
